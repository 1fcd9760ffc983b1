"""Smoke test of ``simulations.residual_cost`` (not a timing assertion)."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.residual_cost import METHODS, SMOKE, cells, main


def test_smoke_run_writes_records(tmp_path: Path) -> None:
    output = tmp_path / "residual_cost.json"
    assert main(["--smoke", "--output", str(output), "--seed", "3", "--store", str(tmp_path / "store")]) == 0
    payload = json.loads(output.read_text())
    assert payload["script"] == "simulations.residual_cost" and payload["passed"]
    assert payload["seed"] == 3
    assert payload["preset"] == "smoke"
    assert isinstance(payload["commit"], str) and payload["commit"]
    assert payload["config"]["batch"] == SMOKE.batch
    assert payload["config"]["dimension"] == SMOKE.dimension
    assert {"processor", "torch"} <= set(payload["machine"])
    assert payload["sweep"]["cells"] == len(cells(SMOKE)) == len(SMOKE.deltas) * len(SMOKE.weights)
    # One pair per cell, both samplers on the same (delta, weight); the flattened measurements in the same order.
    pairs = payload["records"]
    assert [(pair["delta"], pair["weight"]) for pair in pairs] == [(d, w) for d in SMOKE.deltas for w in SMOKE.weights]
    for pair in pairs:
        assert {pair[method]["method"] for method in METHODS} == set(METHODS)
        assert all(
            (pair[method]["delta"], pair[method]["weight"]) == (pair["delta"], pair["weight"]) for method in METHODS
        )
    records = payload["measurements"]
    assert records == [pair[method] for pair in pairs for method in METHODS]
    for record in records:
        assert record["microseconds_per_draw"] > 0
        assert (
            record["microseconds_per_draw_min"]
            <= record["microseconds_per_draw"]
            <= record["microseconds_per_draw_max"]
        )
        assert 0 < record["draws"] <= SMOKE.batch
        assert record["dimension"] == SMOKE.dimension and record["repeats"] == SMOKE.repeats
        if record["method"] == "rejection":
            assert 0 < record["theoretical_acceptance_rate"] <= 1
            assert record["mean_proposals_per_draw"] >= 1
            assert record["expected_proposals_per_draw"] == 1 / record["theoretical_acceptance_rate"]
        else:
            assert record["draws"] == SMOKE.batch
            assert record["mean_proposals_per_draw"] is None
