"""Calibration of the real sampler against the theory: measured acceptance vs ``acceptance_probability(delta)``.

The checks are exact, not approximate (DESIGN.md §8):

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

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from simulations.common import (
    gaussian_problem,
    initial_noise,
    make_drafter,
    make_kernel,
    mixture_problem,
    write_results,
)
from simulations.controls import negative_control
from simulations.provenance import REPOSITORY_ROOT
from specdiff.policies import FixedWindow
from specdiff.sampler import SpeculativeResult, sample
from specdiff.verify import Rule
from theory.gaussian import acceptance_probability

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
    drafters=("free-reuse", "frozen", "model"),
    rules=("token-reflection", "block"),
    steps=100,
    samples=512,
    window=6,
)
SMOKE = Config(dimensions=(2,), drafters=("free-reuse", "model"), rules=("token-reflection", "block"), steps=20,
               samples=64, window=4)  # fmt: skip


@dataclass(frozen=True)
class PositionRow:
    """Window position i: measured and predicted acceptance (token) or ``P(tau >= i)`` (block)."""

    position: int
    count: int
    measured: float
    predicted: float
    z: float


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


def _logs(result: SpeculativeResult) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    return result.accepted, result.deltas, result.weights


def token_calibration(result: SpeculativeResult, delta_scale: float = 1.0) -> tuple[float, list[PositionRow], float]:
    """Martingale z-score of token acceptances against ``alpha(delta_scale * delta)``, per-position rows, and the
    predicted steps per round ``1 + sum_i prod_{j<=i} alpha_j`` averaged over rounds."""
    total, variance, predicted_steps, rounds = 0.0, 0.0, 0.0, 0
    per_position: dict[int, list[float]] = {}
    for accepted, deltas in zip(result.accepted, result.deltas, strict=True):
        alpha = acceptance_probability(delta_scale * deltas.numpy())  # (k, L)
        tau = accepted.numpy()[:, None]
        positions = np.arange(1, alpha.shape[1] + 1)[None, :]
        reached = positions <= tau + 1
        success = (positions <= tau).astype(np.float64)
        total += float(((success - alpha) * reached).sum())
        variance += float((alpha * (1 - alpha) * reached).sum())
        predicted_steps += float((1 + np.cumprod(alpha, axis=1).sum(axis=1)).sum())
        rounds += alpha.shape[0]
        for i in range(alpha.shape[1]):
            rows = reached[:, i]
            entry = per_position.setdefault(i + 1, [0, 0.0, 0.0, 0.0])
            entry[0] += int(rows.sum())
            entry[1] += float(success[rows, i].sum())
            entry[2] += float(alpha[rows, i].sum())
            entry[3] += float((alpha[rows, i] * (1 - alpha[rows, i])).sum())
    table = [
        PositionRow(i, int(c), s / c, a / c, (s - a) / np.sqrt(v) if v > 0 else 0.0)
        for i, (c, s, a, v) in sorted(per_position.items())
        if c > 0
    ]
    return total / np.sqrt(variance), table, predicted_steps / max(rounds, 1)


def block_calibration(result: SpeculativeResult) -> tuple[float, list[PositionRow], float]:
    """Self-normalized martingale z-score of ``tau - sum_i w_i`` over rounds, per-position rows and the predicted
    steps per round ``1 + sum_i w_i`` averaged over rounds."""
    differences: list[np.ndarray] = []
    per_position: dict[int, list[np.ndarray]] = {}
    predicted_steps: list[np.ndarray] = []
    for accepted, weights in zip(result.accepted, result.weights, strict=True):
        w = weights.numpy()
        tau = accepted.numpy()
        differences.append(tau - w.sum(axis=1))
        predicted_steps.append(1 + w.sum(axis=1))
        for i in range(w.shape[1]):
            per_position.setdefault(i + 1, []).append((tau >= i + 1) - w[:, i])
    all_differences = np.concatenate(differences)
    z = float(all_differences.sum() / np.sqrt((all_differences**2).sum()))
    table = []
    for position, chunks in sorted(per_position.items()):
        values = np.concatenate(chunks)
        predicted = float(
            np.concatenate(
                [weights.numpy()[:, position - 1] for weights in result.weights if weights.shape[1] >= position]
            ).mean()
        )
        table.append(PositionRow(position, values.size, predicted + float(values.mean()), predicted,
                                 float(values.sum() / np.sqrt((values**2).sum()))))  # fmt: skip
    return z, table, float(np.concatenate(predicted_steps).mean())


def calibrate(
    config: Config, problem_name: str, dimension: int, drafter: str, rule: Rule, seed: int, control: str | None = None
) -> Calibration:
    """Run the sampler on one configuration and calibrate it (``control``: see the module docstring)."""
    problem = gaussian_problem(dimension) if problem_name == "gaussian" else mixture_problem(dimension)
    kernel = make_kernel("ddpm", config.steps)
    with negative_control("first-failure" if control == "first-failure" else None):
        result = sample(
            problem.data.as_model(kernel),
            kernel,
            initial_noise(kernel, config.samples, dimension, seed),
            drafter=make_drafter(drafter, problem, kernel),
            window=FixedWindow(config.window),
            rule=rule,
            generator=torch.Generator().manual_seed(seed + 1),
        )
    if rule == "block":
        z, table, predicted = block_calibration(result)
    else:
        z, table, predicted = token_calibration(result, 0.5 if control == "scaled-delta" else 1.0)
    accepted = torch.cat(result.accepted).double()
    return Calibration(
        problem=problem_name,
        dimension=dimension,
        drafter=drafter,
        rule=rule,
        control=control,
        rounds=int(accepted.numel()),
        verified_steps=int(torch.cat(result.windows).sum()),
        measured_steps_per_round=float(1 + accepted.mean()),
        predicted_steps_per_round=predicted,
        z=z,
        rejected=abs(z) > Z_LEVEL,
        expected_rejection=control is not None,
        mean_delta=float(torch.cat([d.flatten() for d in result.deltas]).mean()),
        positions=table,
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
    runs += [("mixture", config.dimensions[0], "free-reuse", "token-reflection", "scaled-delta")]
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset (seconds)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = SMOKE if arguments.smoke else FULL
    output = arguments.output or (SMOKE_OUTPUT if arguments.smoke else DEFAULT_OUTPUT)
    start = time.perf_counter()
    records = run(config, arguments.seed)
    failed = [record for record in records if record.rejected != record.expected_rejection]
    payload: dict[str, Any] = {
        "script": "simulations.calibration",
        "preset": "smoke" if arguments.smoke else "full",
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
