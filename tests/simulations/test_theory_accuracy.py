"""The accuracy script runs and reports errors within the documented targets (its tiny preset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.theory_accuracy import SMOKE, SUMMARY_FIELDS, cells, main


@pytest.mark.slow
def test_smoke_run_writes_accuracy_within_targets(tmp_path: Path) -> None:
    output = tmp_path / "accuracy.json"
    store = tmp_path / "store"
    assert main(["--smoke", "--output", str(output), "--store", str(store)]) == 0
    payload = json.loads(output.read_text())
    assert payload["script"] == "simulations.theory_accuracy" and payload["passed"]
    assert payload["config"]["grid_size"] == SMOKE.grid_size
    assert payload["log_residual_mass_worst_relative_error"] < 1e-10
    assert payload["constant_gap_vs_exact_recursion"] < 1e-4
    assert payload["mixed_gaps_vs_4x_finer_grid"] < 1e-4
    records = payload["records"]
    assert payload["sweep"]["cells"] == len(records) == len(cells(SMOKE)) == 1 + len(SMOKE.windows) + 1
    assert [record["check"] for record in records] == [
        "log_residual_mass",
        "constant_gap",
        "constant_gap",
        "mixed_gaps",
    ]
    for check, field in SUMMARY_FIELDS.items():
        assert payload[field] == max(r["worst_relative_error"] for r in records if r["check"] == check)
    # Deterministic records: no wall times, and the same records from a fresh rerun.
    assert all(set(record) == {"check", "detail", "worst_relative_error"} for record in records)
    again = tmp_path / "again.json"
    assert main(["--smoke", "--output", str(again), "--store", str(store), "--fresh"]) == 0
    assert json.loads(again.read_text())["records"] == records
