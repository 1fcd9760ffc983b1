"""Calibration of the real sampler against the theory: measured acceptance vs ``acceptance_probability(delta)``.

The checks are exact, not approximate (docs/design.md §5):

- **token rule**: given everything up to the draft of step i, step i is accepted with probability
  ``alpha(delta_i) = 2 Phi(-delta_i / 2)``, and ``delta_i`` is logged before the decision. So
  ``S = sum (1{accepted_i} - alpha(delta_i))`` over every verified step is a martingale with predictable variance
  ``V = sum alpha (1 - alpha)``, and ``z = S / sqrt(V)`` is asymptotically standard normal whatever the dependence
  between steps.
- **block rule**: ``P(tau >= i | X_1..X_i) = w_i``, so each round's ``tau - sum_i w_i`` has mean zero given the
  round's start; rounds are martingale differences and ``z = sum / sqrt(sum of squares)`` (self-normalized) is
  asymptotically standard normal.

Per window position the script also tabulates measured and predicted rates with their z-scores. A check passes
when ``|z| <= Z_LEVEL`` (two-sided level ``LEVEL`` = 1e-3). Two negative controls must be rejected: the token rule
calibrated against ``alpha(delta / 2)`` (a mis-scaled theory), and the block rule run with the ``first-failure``
control (a wrong rule) calibrated against its logged weights.

Each run (problem, dimension, drafter, rule, control) is a cell of the experiment framework
(``simulations.experiment``), with its own seed.

Run ``python -m simulations.calibration`` (full, minutes) or ``--smoke`` (seconds, used by the tests); the
framework's options (``--workers``, ``--store``, ``--verbose``, ...) apply. Writes ``results/calibration.json``
(``results/smoke/calibration.json`` for the smoke preset): the records, ``level``, ``z_level`` and ``all_passed``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from scipy import stats

from simulations.common import gaussian_problem, initial_noise, make_drafter, make_kernel, mixture_problem
from simulations.controls import rule_with_control
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.diagnostics import PositionRow, calibrate_run
from specdiff.policies import FixedWindow
from specdiff.sampler import sample
from specdiff.verify import Rule

DEFAULT_SEED = 11
#: Two-sided level of each calibration check.
LEVEL = 1e-3
#: A check rejects when ``|z|`` exceeds this.
Z_LEVEL = float(stats.norm.isf(LEVEL / 2))


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    dimensions: tuple[int, ...]
    drafters: tuple[str, ...]
    rules: tuple[Rule, ...]
    steps: int
    samples: int
    window: int


FULL = Config(
    dimensions=(2, 64, 1024),
    drafters=("free-nearest", "frozen", "model"),
    rules=("token-reflection", "block"),
    steps=100,
    samples=512,
    window=6,
)
SMOKE = Config(
    dimensions=(2,),
    drafters=("free-nearest", "model"),
    rules=("token-reflection", "block"),
    steps=20,
    samples=64,
    window=4,
)


@dataclass(frozen=True)
class CalibrationCell:
    """The parameters of one calibration run: a cell of the sweep.

    ``control`` is None for an exact run, ``"scaled-delta"`` (the theory's gap halved) or ``"first-failure"``
    (a wrong block rule) for a negative control.
    """

    problem: str  # "gaussian" or "mixture"
    dimension: int
    drafter: str
    rule: Rule
    control: str | None
    steps: int
    samples: int
    window: int


@dataclass(frozen=True)
class Calibration:
    """Calibration of one run."""

    problem: str
    dimension: int
    drafter: str
    rule: str
    control: str | None
    rounds: int
    verified_steps: int
    measured_steps_per_round: float
    predicted_steps_per_round: float
    z: float
    rejected: bool
    expected_rejection: bool
    mean_delta: float
    positions: list[PositionRow]


def cells(config: Config) -> list[CalibrationCell]:
    """Every dimension, drafter and rule on mixture data, then the two negative controls (at the first dimension)."""

    def cell(dimension: int, drafter: str, rule: Rule, control: str | None) -> CalibrationCell:
        return CalibrationCell(
            "mixture", dimension, drafter, rule, control, config.steps, config.samples, config.window
        )

    exact = [
        cell(dimension, drafter, rule, None)
        for dimension in config.dimensions
        for drafter in config.drafters
        for rule in config.rules
    ]
    controls = [
        cell(config.dimensions[0], "free-nearest", "token-reflection", "scaled-delta"),
        cell(config.dimensions[0], "model", "block", "first-failure"),
    ]
    return exact + controls


def calibrate(cell: CalibrationCell, seed: int) -> Calibration:
    """Run the sampler on one configuration and calibrate it against the theory (``control``: see the module
    docstring)."""
    problem = gaussian_problem(cell.dimension) if cell.problem == "gaussian" else mixture_problem(cell.dimension)
    kernel = make_kernel("ddpm", cell.steps)
    result = sample(
        problem.data.as_model(kernel),
        kernel,
        initial_noise(kernel, cell.samples, cell.dimension, seed),
        drafter=make_drafter(cell.drafter, problem, kernel),
        window=FixedWindow(cell.window),
        rule=rule_with_control(cell.rule, "first-failure" if cell.control == "first-failure" else None),
        generator=torch.Generator().manual_seed(seed + 1),
    )
    summary = calibrate_run(result, cell.rule, delta_scale=0.5 if cell.control == "scaled-delta" else 1.0)
    return Calibration(
        problem=cell.problem,
        dimension=cell.dimension,
        drafter=cell.drafter,
        rule=cell.rule,
        control=cell.control,
        rounds=summary.rounds,
        verified_steps=int(torch.cat(result.windows).sum()),
        measured_steps_per_round=summary.measured_steps_per_round,
        predicted_steps_per_round=summary.predicted_steps_per_round,
        z=summary.z,
        rejected=abs(summary.z) > Z_LEVEL,
        expected_rejection=cell.control is not None,
        mean_delta=float(torch.cat([d.flatten() for d in result.deltas]).nanmean()),
        positions=summary.positions,
    )


def as_expected(record: Mapping[str, Any]) -> bool:
    """Whether a calibration (as a record) came out as expected: an exact run kept, a control rejected."""
    return bool(record["rejected"]) == bool(record["expected_rejection"])


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per calibration."""
    return (
        f"d={record['dimension']:<5} {record['drafter']:<12} {record['rule']:<17} {record['control'] or '-':<14} "
        f"rounds={record['rounds']:<6} steps/round measured {record['measured_steps_per_round']:.3f} predicted "
        f"{record['predicted_steps_per_round']:.3f}  z={record['z']:+.2f}  "
        f"{'ok' if as_expected(record) else 'FAILED'}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Every calibration as expected; the level and the z threshold for the report."""
    failed = [record for record in records if not as_expected(record)]
    return Summary(
        fields={"level": LEVEL, "z_level": Z_LEVEL, "all_passed": not failed},
        passed=not failed,
        text="\n".join(
            [
                *(describe(record) for record in failed),
                f"{len(records) - len(failed)}/{len(records)} calibrations as expected",
            ]
        ),
    )


EXPERIMENT = Experiment(
    module="simulations.calibration",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="calibration.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/diagnostics.py",
        "specdiff/models/gmm.py",
        "theory/gaussian.py",
        "simulations/common.py",
        "simulations/controls.py",
        "simulations/calibration.py",
    ),
    cells=cells,
    run_cell=calibrate,
    summarize=summarize,
    describe=describe,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXPERIMENT",
    "FULL",
    "LEVEL",
    "SMOKE",
    "Z_LEVEL",
    "Calibration",
    "CalibrationCell",
    "Config",
    "as_expected",
    "calibrate",
    "cells",
    "main",
    "summarize",
]
