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

Run ``python -m simulations.calibration`` (full) or ``--smoke`` (seconds). Writes ``results/calibration.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from scipy import stats

from simulations.common import (
    gaussian_problem,
    initial_noise,
    make_drafter,
    make_kernel,
    mixture_problem,
    script_arguments,
    write_results,
)
from simulations.controls import rule_with_control
from simulations.provenance import REPOSITORY_ROOT
from specdiff.diagnostics import PositionRow, calibrate_run
from specdiff.policies import FixedWindow
from specdiff.sampler import sample
from specdiff.verify import Rule

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "calibration.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "calibration.json"
DEFAULT_SEED = 11
LEVEL = 1e-3
Z_LEVEL = float(stats.norm.isf(LEVEL / 2))


@dataclass(frozen=True)
class Config:
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
SMOKE = Config(dimensions=(2,), drafters=("free-nearest", "model"), rules=("token-reflection", "block"), steps=20,
               samples=64, window=4)  # fmt: skip


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


def calibrate(
    config: Config, problem_name: str, dimension: int, drafter: str, rule: Rule, seed: int, control: str | None = None
) -> Calibration:
    """Run the sampler on one configuration and calibrate it (``control``: see the module docstring)."""
    problem = gaussian_problem(dimension) if problem_name == "gaussian" else mixture_problem(dimension)
    kernel = make_kernel("ddpm", config.steps)
    result = sample(
        problem.data.as_model(kernel),
        kernel,
        initial_noise(kernel, config.samples, dimension, seed),
        drafter=make_drafter(drafter, problem, kernel),
        window=FixedWindow(config.window),
        rule=rule_with_control(rule, "first-failure" if control == "first-failure" else None),
        generator=torch.Generator().manual_seed(seed + 1),
    )
    summary = calibrate_run(result, rule, delta_scale=0.5 if control == "scaled-delta" else 1.0)
    return Calibration(
        problem=problem_name,
        dimension=dimension,
        drafter=drafter,
        rule=rule,
        control=control,
        rounds=summary.rounds,
        verified_steps=int(torch.cat(result.windows).sum()),
        measured_steps_per_round=summary.measured_steps_per_round,
        predicted_steps_per_round=summary.predicted_steps_per_round,
        z=summary.z,
        rejected=abs(summary.z) > Z_LEVEL,
        expected_rejection=control is not None,
        mean_delta=float(torch.cat([d.flatten() for d in result.deltas]).nanmean()),
        positions=summary.positions,
    )


def run(config: Config, seed: int, progress: bool = True) -> list[Calibration]:
    records: list[Calibration] = []
    index = 0
    runs: list[tuple[str, int, str, Rule, str | None]] = [
        ("mixture", dimension, drafter, rule, None)
        for dimension in config.dimensions
        for drafter in config.drafters
        for rule in config.rules
    ]
    runs += [("mixture", config.dimensions[0], "free-nearest", "token-reflection", "scaled-delta")]
    runs += [("mixture", config.dimensions[0], "model", "block", "first-failure")]
    for problem_name, dimension, drafter, rule, control in runs:
        index += 1
        record = calibrate(config, problem_name, dimension, drafter, rule, seed + 100 * index, control)
        records.append(record)
        if progress:
            verdict = "ok" if record.rejected == record.expected_rejection else "FAILED"
            print(
                f"d={dimension:<5} {drafter:<12} {rule:<17} {control or '-':<14} rounds={record.rounds:<6} "
                f"steps/round measured {record.measured_steps_per_round:.3f} predicted "
                f"{record.predicted_steps_per_round:.3f}  z={record.z:+.2f}  {verdict}",
                flush=True,
            )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT)
    config, output = (SMOKE if arguments.smoke else FULL), arguments.output
    start = time.perf_counter()
    records = run(config, arguments.seed)
    failed = [record for record in records if record.rejected != record.expected_rejection]
    payload: dict[str, Any] = {
        "script": "simulations.calibration",
        "preset": arguments.preset,
        "seed": arguments.seed,
        "level": LEVEL,
        "z_level": Z_LEVEL,
        "sizes": asdict(config),
        "seconds": time.perf_counter() - start,
        "all_passed": not failed,
        "records": [asdict(record) for record in records],
    }
    write_results(output, payload)
    print(f"{len(records) - len(failed)}/{len(records)} calibrations as expected; wrote {output}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
