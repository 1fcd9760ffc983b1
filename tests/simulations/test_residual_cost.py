"""Smoke test of ``simulations.residual_cost`` (not a timing assertion)."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.residual_cost import SMOKE, main


def test_smoke_run_writes_records(tmp_path: Path) -> None:
    output = tmp_path / "residual_cost.json"
    assert main(["--smoke", "--output", str(output), "--seed", "3"]) == 0
    payload = json.loads(output.read_text())
    assert payload["seed"] == 3
    assert payload["preset"] == "smoke"
    assert isinstance(payload["commit"], str) and payload["commit"]
    assert payload["sizes"]["batch"] == SMOKE.batch
    assert payload["sizes"]["dimension"] == SMOKE.dimension
    assert {"processor", "torch"} <= set(payload["machine"])
    records = payload["records"]
    expected = {(method, delta, weight) for method in ("inverse_cdf", "rejection")
                for delta in SMOKE.deltas for weight in SMOKE.weights}  # fmt: skip
    assert {(record["method"], record["delta"], record["weight"]) for record in records} == expected
    for record in records:
        assert record["microseconds_per_draw"] > 0
        assert 0 < record["draws"] <= SMOKE.batch
        if record["method"] == "rejection":
            assert 0 < record["theoretical_acceptance_rate"] <= 1
            assert record["mean_proposals_per_draw"] >= 1
            assert record["expected_proposals_per_draw"] == 1 / record["theoretical_acceptance_rate"]
        else:
            assert record["draws"] == SMOKE.batch
            assert record["mean_proposals_per_draw"] is None
