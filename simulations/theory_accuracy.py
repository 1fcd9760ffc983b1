"""Accuracy of the closed forms against independent references; writes ``results/theory_accuracy.json``.

- ``log_residual_mass`` against 60-digit mpmath evaluation of ``w Phi(delta - s*) - Phi(-s*)`` on a grid of
  ``w`` in [1e-300, 1] and ``delta`` in [1e-12, 50]; the error is ``|log R - log R_ref| / max(1, |log R_ref|)``
  (the relative error of R where R is representable).
- ``expected_accepted_length(deltas, "block")`` by grid integration against the exact constant-gap recursion
  (``constant_gap_block_profile``) and, for mixed gaps (32 steps, drawn uniformly in [0.05, 2] from the cell's seed),
  against the grid with 4x more cells.

Cells (``simulations.experiment``): the residual-mass grid; one per window of the constant-gap check; one per
repeat of the mixed-gap check. The records are deterministic (errors, no wall times: the framework records each
cell's seconds in ``sweep.cells_detail``).

Run ``python -m simulations.theory_accuracy`` (``--smoke`` for a tiny grid). Writes ``results/theory_accuracy.json``:
the records and the worst error of each check (``log_residual_mass_worst_relative_error``,
``constant_gap_vs_exact_recursion``, ``mixed_gaps_vs_4x_finer_grid``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from theory.gaussian import log_residual_mass
from theory.verification import block_profile_grid, constant_gap_block_profile

SEED = 0
#: Gaps of the constant-gap check.
CONSTANT_GAPS = (1e-6, 0.05, 0.3, 1.0, 3.0)
#: The mixed-gap check: steps, the range of the gaps, and the cells of the finer reference grid (4x the coarse
#: grid's largest default, 2400).
MIXED_STEPS = 32
MIXED_GAP_RANGE = (0.05, 2.0)
FINE_CELLS = 4 * 2400
#: The summary field of each check's worst error.
SUMMARY_FIELDS = {
    "log_residual_mass": "log_residual_mass_worst_relative_error",
    "constant_gap": "constant_gap_vs_exact_recursion",
    "mixed_gaps": "mixed_gaps_vs_4x_finer_grid",
}


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    grid_size : int
        Points of the residual-mass grid in ``delta``, and in ``w`` besides 1 and 1 - 1e-12.
    windows : tuple of int
        Windows of the constant-gap check.
    mixed_repeats : int
        Draws of the mixed gaps (one cell each).
    """

    grid_size: int
    windows: tuple[int, ...]
    mixed_repeats: int


FULL = Config(grid_size=40, windows=(2, 4, 8, 16, 32), mixed_repeats=5)
SMOKE = Config(grid_size=6, windows=(2, 8), mixed_repeats=1)


@dataclass(frozen=True)
class ResidualMassCell:
    """``log_residual_mass`` on the ``grid_size`` grid."""

    grid_size: int
    check: str = "log_residual_mass"


@dataclass(frozen=True)
class ConstantGapCell:
    """The grid block profile against the exact recursion at every gap of ``gaps``, window ``window``."""

    window: int
    gaps: tuple[float, ...]
    check: str = "constant_gap"


@dataclass(frozen=True)
class MixedGapsCell:
    """The grid block profile of ``steps`` gaps drawn uniformly in ``gap_range`` against a ``fine_cells`` grid."""

    repeat: int
    steps: int
    gap_range: tuple[float, float]
    fine_cells: int
    check: str = "mixed_gaps"


AccuracyCell = ResidualMassCell | ConstantGapCell | MixedGapsCell


@dataclass(frozen=True)
class Accuracy:
    """The record of a cell: its check, what it covered, and its worst relative error."""

    check: str  # "log_residual_mass", "constant_gap" or "mixed_gaps"
    detail: str
    worst_relative_error: float


def residual_mass_grid(grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The weights (1, 1 - 1e-12 and ``grid_size`` from 1e-300 to 1e-3 below 1) and the ``grid_size`` gaps (1e-12
    to 50) of the residual-mass check, log-spaced."""
    weights = np.concatenate([[1.0, 1 - 1e-12], np.logspace(-300, -1e-3, grid_size)])
    deltas = np.logspace(-12, np.log10(50.0), grid_size)
    return weights, deltas


def residual_mass_errors(weights: np.ndarray, deltas: np.ndarray) -> float:
    """Worst relative error of ``log_residual_mass`` over the grid ``weights x deltas``."""
    mpmath.mp.dps = 60
    worst = 0.0
    for weight in weights:
        values = log_residual_mass(weight, deltas)
        for delta, value in zip(deltas, values, strict=True):
            w, d = mpmath.mpf(float(weight)), mpmath.mpf(float(delta))
            threshold = d / 2 - mpmath.log(w) / d
            reference = float(mpmath.log(w * mpmath.ncdf(d - threshold) - mpmath.ncdf(-threshold)))
            worst = max(worst, abs(value - reference) / max(1.0, abs(reference)))
    return worst


def constant_gap_error(window: int, gaps: Sequence[float]) -> float:
    """Worst relative error of the summed grid block profile against the exact constant-gap recursion."""
    worst = 0.0
    for delta in gaps:
        grid = block_profile_grid([delta] * window).sum()
        exact = constant_gap_block_profile(delta, window).sum()
        worst = max(worst, abs(grid / exact - 1))
    return float(worst)


def mixed_gaps_error(deltas: np.ndarray, fine_cells: int) -> float:
    """Relative difference of the summed grid block profile of ``deltas`` and that on a ``fine_cells`` grid."""
    value = block_profile_grid(deltas).sum()
    fine = block_profile_grid(deltas, cells=fine_cells).sum()
    return float(abs(value / fine - 1))


def cells(config: Config) -> list[AccuracyCell]:
    """The residual-mass grid, a constant-gap cell per window and a mixed-gap cell per repeat."""
    return [
        ResidualMassCell(config.grid_size),
        *(ConstantGapCell(window, CONSTANT_GAPS) for window in config.windows),
        *(MixedGapsCell(repeat, MIXED_STEPS, MIXED_GAP_RANGE, FINE_CELLS) for repeat in range(config.mixed_repeats)),
    ]


def run_cell(cell: AccuracyCell, seed: int) -> Accuracy:
    """The worst relative error of one cell's check (the mixed gaps drawn from ``seed``)."""
    if isinstance(cell, ResidualMassCell):
        weights, deltas = residual_mass_grid(cell.grid_size)
        detail = f"{weights.size} weights x {deltas.size} gaps"
        return Accuracy(cell.check, detail, residual_mass_errors(weights, deltas))
    if isinstance(cell, ConstantGapCell):
        detail = f"L = {cell.window}, gaps {', '.join(f'{gap:g}' for gap in cell.gaps)}"
        return Accuracy(cell.check, detail, constant_gap_error(cell.window, cell.gaps))
    low, high = cell.gap_range
    deltas = np.random.default_rng(seed).uniform(low, high, size=cell.steps)
    detail = f"repeat {cell.repeat}: {cell.steps} gaps in [{low:g}, {high:g}], {cell.fine_cells} fine cells"
    return Accuracy(cell.check, detail, mixed_gaps_error(deltas, cell.fine_cells))


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per cell."""
    return f"{record['check']:<18} {record['worst_relative_error']:<10.3g} {record['detail']}"


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The worst relative error of each check, under its field name of ``SUMMARY_FIELDS``."""
    worst = {
        field: max((float(r["worst_relative_error"]) for r in records if r["check"] == check), default=None)
        for check, field in SUMMARY_FIELDS.items()
    }
    text = "\n".join(f"{field:45s} {value:.3g}" for field, value in worst.items() if value is not None)
    return Summary(fields=worst, text=text)


EXPERIMENT = Experiment(
    module="simulations.theory_accuracy",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=SEED,
    output="theory_accuracy.json",
    code=("theory/gaussian.py", "theory/verification.py", "simulations/theory_accuracy.py"),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    describe=describe,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
