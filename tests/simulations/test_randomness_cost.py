"""Smoke run of ``simulations.randomness_cost`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.randomness_cost import METHODS, SMOKE, main


def test_smoke_run_writes_records(tmp_path: Path) -> None:
    output = tmp_path / "randomness_cost.json"
    assert main(["--smoke", "--output", str(output), "--seed", "3"]) == 0
    payload = json.loads(output.read_text())
    assert payload["script"] == "simulations.randomness_cost"
    assert payload["preset"] == "smoke" and payload["seed"] == 3 and payload["threads"] == 1
    assert isinstance(payload["commit"], str) and payload["commit"]
    assert {"processor", "torch"} <= set(payload["machine"])
    records = payload["records"]
    expected = {(method, dtype, batch, width) for batch, width in SMOKE.layouts for method, dtype, _ in METHODS}
    assert {(r["method"], r["dtype"], r["batch"], r["width"]) for r in records} == expected
    for record in records:
        assert record["values"] == record["batch"] * record["width"]
        assert record["calls"] == max(1, SMOKE.values_per_repeat // record["values"])
        assert record["nanoseconds_per_value"] > 0
        assert record["nanoseconds_per_call"] == pytest.approx(record["nanoseconds_per_value"] * record["values"])
        if record["method"] == record["reference_method"]:
            assert record["ratio_to_reference"] == 1.0
        else:
            assert record["ratio_to_reference"] > 0
