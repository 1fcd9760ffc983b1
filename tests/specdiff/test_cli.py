"""The ``specdiff theory`` main job."""

from __future__ import annotations

import subprocess
import sys

import pytest

from specdiff.cli import format_theory_table, main, theory_table
from tests.statistics import ALPHA, z_threshold


def test_theory_table_agrees_with_its_monte_carlo_check() -> None:
    # 2 gaps x 2 windows x 2 rules = 8 z-scores, Bonferroni at ALPHA; seed fixed.
    rows = theory_table([0.5, 1.5], [2, 5], samples=20_000, dimension=4, seed=1, progress=False)
    threshold = z_threshold(ALPHA, comparisons=2 * len(rows))
    for row in rows:
        assert abs(row.token_z) < threshold and abs(row.block_z) < threshold, row
        assert row.block_expected >= row.token_expected
        assert row.block_gain >= 1.0
    text = format_theory_table(rows)
    assert "block gain" in text and text.count("\n") == len(rows) + 1


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["theory", "--deltas", "0.5", "--windows", "3", "--samples", "500", "--no-progress"]) == 0
    output = capsys.readouterr().out
    assert "E[tau] token" in output and "0.5" in output


def test_bad_arguments_exit_with_a_message() -> None:
    with pytest.raises(SystemExit, match="deltas"):
        main(["theory", "--deltas", "-1", "--no-progress"])


def test_console_entry_point_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specdiff",
            "theory",
            "--deltas",
            "1",
            "--windows",
            "2",
            "--samples",
            "200",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "block gain" in result.stdout
