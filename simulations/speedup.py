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
the ratio of steps per call. All rules and windows of one (N, d, drafter) cell share their seeds
(common random numbers), so the comparisons between them are paired. Wall time on this CPU is recorded but is not
the point: on a GPU a round costs about one call whatever the window (see ``simulations.bench_gpu``).

Run ``python -m simulations.speedup`` (full) or ``--smoke``. Writes ``results/speedup.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from simulations.common import (
    initial_noise,
    make_drafter,
    make_kernel,
    mixture_problem,
    script_arguments,
    write_results,
)
from simulations.provenance import REPOSITORY_ROOT
from specdiff.diagnostics import calibrate_run
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "speedup.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "speedup.json"
DEFAULT_SEED = 5
RULE_LABELS: dict[str, RuleName] = {"token": "token-reflection", "block": "block", "adaptive": "adaptive"}


@dataclass(frozen=True)
class Config:
    steps: tuple[int, ...]
    dimensions: tuple[int, ...]
    drafters: tuple[str, ...]
    windows: tuple[int, ...]
    adaptive_max_window: int
    samples: int


FULL = Config(steps=(50, 100, 200, 1000), dimensions=(2, 64, 1024),
              drafters=("free-nearest", "free-committed", "frozen", "extrapolating", "model"),
              windows=tuple(range(1, 17)), adaptive_max_window=16, samples=32)  # fmt: skip
SMOKE = Config(steps=(20,), dimensions=(2,), drafters=("free-nearest", "model"), windows=(1, 4), adaptive_max_window=8,
               samples=8)  # fmt: skip


@dataclass(frozen=True)
class Record:
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
    wall_seconds: float


def _policy(window: str, config: Config) -> WindowPolicy:
    return AdaptiveWindow(max_window=config.adaptive_max_window) if window == "adaptive" else FixedWindow(int(window))


def measure(
    config: Config, steps: int, dimension: int, drafter: str, rule_label: str, window: str, seed: int
) -> Record:
    """One sweep cell."""
    problem = mixture_problem(dimension)
    kernel = make_kernel("ddpm", steps)
    result = sample(
        problem.data.as_model(kernel),
        kernel,
        initial_noise(kernel, config.samples, dimension, seed),
        drafter=make_drafter(drafter, problem, kernel),
        window=_policy(window, config),
        rule=RULE_LABELS[rule_label],
        generator=torch.Generator().manual_seed(seed + 1),
    )
    per_sample = result.sample_sequential_cost.numpy()
    calls = float(per_sample.mean())
    if result.accepted:
        summary = calibrate_run(result, RULE_LABELS[rule_label])
        measured, predicted = summary.measured_steps_per_round, summary.predicted_steps_per_round
        mean_window = float(torch.cat(result.windows).double().mean())
        mean_delta = float(torch.cat([d.flatten() for d in result.deltas]).nanmean())
    else:
        measured = predicted = 1.0
        mean_window = 0.0
        mean_delta = float("nan")
    return Record(
        steps=steps,
        dimension=dimension,
        drafter=drafter,
        rule=rule_label,
        window=window,
        samples=config.samples,
        calls=calls,
        calls_stderr=float(per_sample.std(ddof=1) / np.sqrt(per_sample.size)),
        target_calls=float(result.sample_rounds.double().mean()),
        draft_cost=float(result.sample_draft_cost.mean()),
        plain_steps=result.plain_steps / config.samples,
        steps_per_call=steps / calls,
        speedup=steps / calls,
        measured_steps_per_round=measured,
        predicted_steps_per_round=predicted,
        mean_window=mean_window,
        mean_delta=mean_delta,
        wall_seconds=result.wall_seconds,
    )


def summarize(records: list[Record]) -> dict[str, Any]:
    """Block-over-token gains at equal window, and the adaptive policy against plain and the best fixed window."""
    index = {(r.steps, r.dimension, r.drafter, r.rule, r.window): r for r in records}
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
                "measured_gain": block.steps_per_call / token.steps_per_call,
                "predicted_gain": block.predicted_steps_per_round / token.predicted_steps_per_round,
                "block_steps_per_call": block.steps_per_call,
                "token_steps_per_call": token.steps_per_call,
                "stderr": block.steps_per_call
                * np.hypot(block.calls_stderr / block.calls, token.calls_stderr / token.calls)
                / token.steps_per_call,
            }
        )
    adaptive = []
    for (steps, dimension, drafter, rule, window), record in index.items():
        if window != "adaptive":
            continue
        # The policy choosing the rule is compared with the best fixed window of either rule.
        rules = ("token", "block") if rule == "adaptive" else (rule,)
        fixed = [
            r
            for key, r in index.items()
            if key[:3] == (steps, dimension, drafter) and key[3] in rules and key[4] != "adaptive"
        ]
        best = min(fixed, key=lambda r: r.calls)
        adaptive.append(
            {
                "steps": steps,
                "dimension": dimension,
                "drafter": drafter,
                "rule": rule,
                "adaptive_calls": record.calls,
                "adaptive_calls_stderr": record.calls_stderr,
                "plain_calls": steps,
                "best_fixed_window": best.window,
                "best_fixed_calls": best.calls,
                "excess_over_best": record.calls / best.calls - 1,
                "excess_over_plain": record.calls / steps - 1,
            }
        )
    return {"gains": gains, "adaptive": adaptive}


def run(config: Config, seed: int, progress: bool = True) -> list[Record]:
    records = []
    index = 0
    windows = [str(w) for w in config.windows] + ["adaptive"]
    for steps in config.steps:
        for dimension in config.dimensions:
            for drafter in config.drafters:
                # Common random numbers: every rule and window of a (N, d, drafter) cell uses the same seeds (the
                # randomness is per sample), so their comparisons are paired.
                index += 1
                for rule_label in RULE_LABELS:
                    # The policy chooses the rule only with the adaptive window.
                    for window in windows if rule_label != "adaptive" else ["adaptive"]:
                        record = measure(config, steps, dimension, drafter, rule_label, window, seed + 1000 * index)
                        records.append(record)
                        if progress:
                            print(
                                f"N={steps:<5} d={dimension:<5} {drafter:<13} {rule_label:<5} L={window:<8} "
                                f"steps/call {record.steps_per_call:6.2f}  measured/predicted steps per round "
                                f"{record.measured_steps_per_round:.2f}/{record.predicted_steps_per_round:.2f}  "
                                f"{record.wall_seconds:.1f}s",
                                flush=True,
                            )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT)
    config, output = (SMOKE if arguments.smoke else FULL), arguments.output
    start = time.perf_counter()
    records = run(config, arguments.seed)
    payload: dict[str, Any] = {
        "script": "simulations.speedup",
        "preset": arguments.preset,
        "seed": arguments.seed,
        "sizes": asdict(config),
        "seconds": time.perf_counter() - start,
        "summary": summarize(records),
        "records": [asdict(record) for record in records],
    }
    write_results(output, payload)
    print(f"{len(records)} cells; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
