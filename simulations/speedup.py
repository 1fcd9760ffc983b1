"""Speedup sweep: sequential target calls per sample for plain, token and block sampling with each drafter.

For Gaussian-mixture data (``simulations.common.mixture_problem``) and the exact denoiser as the target, over
N in {50, 100, 200, 1000} DDPM steps, d in {2, 64, 1024}, windows 1-16 and the adaptive policy, it measures per
sample (as if each sample ran alone, in a batch of one):

- ``calls``: sequential target calls plus the drafter's cost in target-call units (the frozen draft's root call,
  0.1 per step for the independent draft model), averaged over the samples;
- ``steps_per_call = N / calls`` and the speedup over plain sampling, which makes N calls;
- the steps per round predicted from the logged gaps (token: ``1 + sum_i prod_{j<=i} alpha(delta_j)``; block:
  ``1 + sum_i w_i``), the exact conditional expectations of the committed steps.

The token rule's two residuals accept identically, so "token" is run with reflection; "adaptive" lets the adaptive
window policy choose token-reflection or block per sample and round. The block-over-token gain at equal window is
the ratio of steps per call. Each (N, d, drafter, rule, window) is a cell of the experiment framework
(``simulations.experiment``); the cells of one (N, d, drafter) share their seed (``shared_seed_fields``), so the
rules and windows are compared on the same initial noise and sample keys (common random numbers), and the gains'
standard errors, which combine the two runs' standard errors as if independent, are conservative. The records hold
call counts, not wall times: on a GPU a round costs about one call whatever the window (see ``simulations.bench_gpu``).

Run ``python -m simulations.speedup`` (full, about an hour on one core; ``--workers K`` spreads the cells) or
``--smoke`` (seconds, used by the tests). Writes ``results/speedup.json`` (``results/smoke/speedup.json`` for the
smoke preset): the records and ``summary`` (``gains``: block over token at equal window; ``adaptive``: the adaptive
window against plain sampling and the best fixed window).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simulations.common import initial_noise, make_drafter, make_kernel, mixture_problem
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.diagnostics import calibrate_run
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample

DEFAULT_SEED = 5
#: The rules of the sweep, by their label in the records.
RULE_LABELS: dict[str, RuleName] = {"token": "token-reflection", "block": "block", "adaptive": "adaptive"}

Key = tuple[int, int, str, str, str]  # steps, dimension, drafter, rule label, window


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    steps: tuple[int, ...]
    dimensions: tuple[int, ...]
    drafters: tuple[str, ...]
    windows: tuple[int, ...]
    adaptive_max_window: int
    samples: int


FULL = Config(
    steps=(50, 100, 200, 1000),
    dimensions=(2, 64, 1024),
    drafters=("free-nearest", "free-committed", "frozen", "extrapolating", "model"),
    windows=tuple(range(1, 17)),
    adaptive_max_window=16,
    samples=32,
)
SMOKE = Config(
    steps=(20,),
    dimensions=(2,),
    drafters=("free-nearest", "model"),
    windows=(1, 4),
    adaptive_max_window=8,
    samples=8,
)


@dataclass(frozen=True)
class SpeedupCell:
    """The parameters of one run: a cell of the sweep."""

    steps: int
    dimension: int
    drafter: str
    rule: str  # a key of RULE_LABELS
    window: str  # "1".."16" or "adaptive"
    samples: int
    adaptive_max_window: int | None  # the adaptive policy's largest window; None for a fixed window


@dataclass(frozen=True)
class Record:
    """One run's costs and steps per round."""

    steps: int
    dimension: int
    drafter: str
    rule: str
    window: str  # "1".."16" or "adaptive"
    samples: int
    calls: float  # per sample: target calls + draft cost
    calls_stderr: float
    target_calls: float  # per sample
    draft_cost: float  # per sample
    plain_steps: float  # per sample
    steps_per_call: float
    speedup: float
    measured_steps_per_round: float
    predicted_steps_per_round: float
    mean_window: float
    mean_delta: float


def cells(config: Config) -> list[SpeedupCell]:
    """Every number of steps, dimension and drafter; token and block at every fixed window and the adaptive one,
    and the adaptive policy choosing the rule (with the adaptive window only)."""
    windows = [str(window) for window in config.windows] + ["adaptive"]
    return [
        SpeedupCell(
            steps,
            dimension,
            drafter,
            rule,
            window,
            config.samples,
            config.adaptive_max_window if window == "adaptive" else None,
        )
        for steps in config.steps
        for dimension in config.dimensions
        for drafter in config.drafters
        for rule in RULE_LABELS
        for window in (windows if rule != "adaptive" else ["adaptive"])
    ]


def _policy(cell: SpeedupCell) -> WindowPolicy:
    if cell.window == "adaptive":
        if cell.adaptive_max_window is None:
            raise ValueError("an adaptive window needs adaptive_max_window")
        return AdaptiveWindow(max_window=cell.adaptive_max_window)
    return FixedWindow(int(cell.window))


def measure(cell: SpeedupCell, seed: int) -> Record:
    """Sample ``cell.samples`` trajectories with the cell's drafter, rule and window, and measure their costs."""
    problem = mixture_problem(cell.dimension)
    kernel = make_kernel("ddpm", cell.steps)
    rule = RULE_LABELS[cell.rule]
    result = sample(
        problem.data.as_model(kernel),
        kernel,
        initial_noise(kernel, cell.samples, cell.dimension, seed),
        drafter=make_drafter(cell.drafter, problem, kernel),
        window=_policy(cell),
        rule=rule,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    per_sample = result.sample_sequential_cost.numpy()
    calls = float(per_sample.mean())
    if result.accepted:
        summary = calibrate_run(result, rule)
        measured, predicted = summary.measured_steps_per_round, summary.predicted_steps_per_round
        mean_window = float(torch.cat(result.windows).double().mean())
        mean_delta = float(torch.cat([d.flatten() for d in result.deltas]).nanmean())
    else:
        measured = predicted = 1.0
        mean_window = 0.0
        mean_delta = float("nan")
    return Record(
        steps=cell.steps,
        dimension=cell.dimension,
        drafter=cell.drafter,
        rule=cell.rule,
        window=cell.window,
        samples=cell.samples,
        calls=calls,
        calls_stderr=float(per_sample.std(ddof=1) / np.sqrt(per_sample.size)),
        target_calls=float(result.sample_rounds.double().mean()),
        draft_cost=float(result.sample_draft_cost.mean()),
        plain_steps=result.plain_steps / cell.samples,
        steps_per_call=cell.steps / calls,
        speedup=cell.steps / calls,
        measured_steps_per_round=measured,
        predicted_steps_per_round=predicted,
        mean_window=mean_window,
        mean_delta=mean_delta,
    )


def _index(records: Sequence[Mapping[str, Any]]) -> dict[Key, Mapping[str, Any]]:
    return {(r["steps"], r["dimension"], r["drafter"], r["rule"], r["window"]): r for r in records}


def block_gains(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Block over token at equal window, per (N, d, drafter, window): measured (steps per call) and predicted
    (steps per round) gains, with the measured gain's standard error."""
    index = _index(records)
    gains = []
    for (steps, dimension, drafter, rule, window), block in index.items():
        token = index.get((steps, dimension, drafter, "token", window))
        if rule != "block" or token is None:
            continue
        gains.append(
            {
                "steps": steps,
                "dimension": dimension,
                "drafter": drafter,
                "window": window,
                "measured_gain": block["steps_per_call"] / token["steps_per_call"],
                "predicted_gain": block["predicted_steps_per_round"] / token["predicted_steps_per_round"],
                "block_steps_per_call": block["steps_per_call"],
                "token_steps_per_call": token["steps_per_call"],
                "stderr": block["steps_per_call"]
                * float(np.hypot(block["calls_stderr"] / block["calls"], token["calls_stderr"] / token["calls"]))
                / token["steps_per_call"],
            }
        )
    return gains


def adaptive_comparisons(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The adaptive window of each rule against plain sampling and the best fixed window of that rule (of either
    rule for the policy choosing the rule)."""
    index = _index(records)
    comparisons = []
    for (steps, dimension, drafter, rule, window), record in index.items():
        if window != "adaptive":
            continue
        rules = ("token", "block") if rule == "adaptive" else (rule,)
        fixed = [
            r
            for key, r in index.items()
            if key[:3] == (steps, dimension, drafter) and key[3] in rules and key[4] != "adaptive"
        ]
        best = min(fixed, key=lambda r: r["calls"])
        comparisons.append(
            {
                "steps": steps,
                "dimension": dimension,
                "drafter": drafter,
                "rule": rule,
                "adaptive_calls": record["calls"],
                "adaptive_calls_stderr": record["calls_stderr"],
                "plain_calls": steps,
                "best_fixed_window": best["window"],
                "best_fixed_calls": best["calls"],
                "excess_over_best": record["calls"] / best["calls"] - 1,
                "excess_over_plain": record["calls"] / steps - 1,
            }
        )
    return comparisons


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per run."""
    return (
        f"N={record['steps']:<5} d={record['dimension']:<5} {record['drafter']:<13} {record['rule']:<8} "
        f"L={record['window']:<8} steps/call {record['steps_per_call']:6.2f}  measured/predicted steps per round "
        f"{record['measured_steps_per_round']:.2f}/{record['predicted_steps_per_round']:.2f}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The block-over-token gains and the adaptive-window comparisons, as the payload's ``summary``."""
    gains, adaptive = block_gains(records), adaptive_comparisons(records)
    lines = [f"{len(records)} runs; {len(gains)} block/token comparisons at equal window"]
    if gains:
        measured = [gain["measured_gain"] for gain in gains]
        lines.append(f"block over token, steps per call: {min(measured):.3f}-{max(measured):.3f}")
    if adaptive:
        worst = max(adaptive, key=lambda a: a["excess_over_best"])
        lines.append(
            f"adaptive window, worst excess over the best fixed window: {100 * worst['excess_over_best']:+.1f}% "
            f"(N = {worst['steps']}, d = {worst['dimension']}, {worst['drafter']}, {worst['rule']})"
        )
    return Summary(fields={"summary": {"gains": gains, "adaptive": adaptive}}, text="\n".join(lines))


EXPERIMENT = Experiment(
    module="simulations.speedup",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="speedup.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/diagnostics.py",
        "specdiff/models/gmm.py",
        "theory/cost.py",
        "theory/gaussian.py",
        "theory/verification.py",
        "simulations/common.py",
        "simulations/speedup.py",
    ),
    cells=cells,
    run_cell=measure,
    summarize=summarize,
    shared_seed_fields=("rule", "window", "adaptive_max_window"),
    describe=describe,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXPERIMENT",
    "FULL",
    "RULE_LABELS",
    "SMOKE",
    "Config",
    "Record",
    "SpeedupCell",
    "adaptive_comparisons",
    "block_gains",
    "cells",
    "main",
    "measure",
    "summarize",
]
