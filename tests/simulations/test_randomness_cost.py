"""Smoke run of ``simulations.randomness_cost`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.randomness_cost import METHODS, SMOKE, main


def test_smoke_run_writes_records(tmp_path: Path) -> None:
    output = tmp_path / "randomness_cost.json"
    assert main(["--smoke", "--output", str(output), "--seed", "3", "--store", str(tmp_path / "store")]) == 0
    payload = json.loads(output.read_text())
    assert payload["script"] == "simulations.randomness_cost" and payload["passed"]
    assert payload["preset"] == "smoke" and payload["seed"] == 3 and payload["sweep"]["threads"] == 1
    assert isinstance(payload["commit"], str) and payload["commit"]
    assert {"processor", "torch"} <= set(payload["machine"])
    assert payload["config"]["repeats"] == SMOKE.repeats
    # One cell per layout, holding every method (each ratio is measured within the cell).
    layouts = payload["records"]
    assert [(layout["batch"], layout["width"]) for layout in layouts] == list(SMOKE.layouts)
    for layout in layouts:
        assert [(r["method"], r["dtype"]) for r in layout["measurements"]] == [(m, d) for m, d, _ in METHODS]
        assert {(r["batch"], r["width"]) for r in layout["measurements"]} == {(layout["batch"], layout["width"])}
    records = payload["measurements"]
    assert records == [record for layout in layouts for record in layout["measurements"]]
    for record in records:
        assert record["values"] == record["batch"] * record["width"]
        assert record["calls"] == max(1, SMOKE.values_per_repeat // record["values"])
        assert record["repeats"] == SMOKE.repeats
        assert record["nanoseconds_per_value"] > 0
        assert record["nanoseconds_per_call"] == pytest.approx(record["nanoseconds_per_value"] * record["values"])
        if record["method"] == record["reference_method"]:
            assert record["ratio_to_reference"] == 1.0
        else:
            assert record["ratio_to_reference"] > 0
