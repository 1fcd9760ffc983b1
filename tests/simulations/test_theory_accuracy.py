"""The accuracy script runs and reports errors within the documented targets (its tiny preset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.theory_accuracy import main


@pytest.mark.slow
def test_smoke_run_writes_accuracy_within_targets(tmp_path: Path) -> None:
    output = tmp_path / "accuracy.json"
    assert main(["--smoke", "--output", str(output)]) == 0
    record = json.loads(output.read_text())
    assert record["log_residual_mass_worst_relative_error"] < 1e-10
    assert record["constant_gap_vs_exact_recursion"] < 1e-4
    assert record["mixed_gaps_vs_4x_finer_grid"] < 1e-4
