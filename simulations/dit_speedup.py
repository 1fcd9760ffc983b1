"""Steps per call on the shipped digits DiT: every drafter, windows and rules, at N = 50, 200 and 1000 DDPM steps.

For each (N, drafter, rule, window) cell, ``samples`` class-conditional samples (the classes in turn) are drawn with
``specdiff.sample``; each sample's sequential cost is its rounds plus its draft cost (the frozen draft's root call,
K / depth per drafted step for early exit), as if it ran alone. Reported: steps per call ``N / mean cost``, its
standard error, the target rows a round evaluates per sample (L + 1), and the share of windows the block rule
verified (the point of ``rule="adaptive"``, which lets the window policy choose per sample and round).

All cells of one N share the initial noises and the samples' generators (common random numbers), so comparisons
between drafters, rules and windows are paired.

Run ``python -m simulations.dit_speedup`` (full) or ``--smoke``. Writes ``results/dit_speedup.json``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from simulations.common import network_drafter, script_arguments, write_results
from simulations.provenance import REPOSITORY_ROOT
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT, load_pretrained
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "dit_speedup.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "dit_speedup.json"
DEFAULT_SEED = 23
RULE_LABELS: dict[str, RuleName] = {"token": "token-reflection", "block": "block", "adaptive": "adaptive"}


@dataclass(frozen=True)
class Config:
    steps: tuple[int, ...]
    drafters: tuple[str, ...]
    windows: tuple[int, ...]
    adaptive_max_window: int
    samples: int


FULL = Config(steps=(50, 200, 1000),
              drafters=("free-nearest", "free-committed", "frozen", "extrapolating", "free-exit"),
              windows=(2, 4, 8), adaptive_max_window=16, samples=10)  # fmt: skip
SMOKE = Config(steps=(20,), drafters=("free-nearest", "frozen"), windows=(2,), adaptive_max_window=4, samples=4)


@dataclass(frozen=True)
class Record:
    steps: int
    drafter: str
    rule: str  # "token" (reflection), "block" or "adaptive" (chosen per sample and round)
    window: str  # "1".."16" or "adaptive"
    samples: int
    steps_per_call: float  # N / mean sequential cost per sample
    steps_per_call_stderr: float
    calls: float  # mean sequential cost per sample, in target calls
    target_calls: float
    draft_cost: float
    rows_per_round: float
    block_fraction: float  # share of verified windows the block rule verified
    wall_seconds: float


def cells(config: Config) -> list[tuple[int, str, str, str]]:
    """Every (N, drafter, rule, window) cell: both fixed rules at every window, the chosen rule with the adaptive
    window (the only policy that chooses rules)."""
    windows = [str(w) for w in config.windows] + ["adaptive"]
    fixed = [(n, d, r, w) for n in config.steps for d in config.drafters for r in ("token", "block") for w in windows]
    return fixed + [(n, d, "adaptive", "adaptive") for n in config.steps for d in config.drafters]


def _policy(window: str, config: Config) -> WindowPolicy:
    return AdaptiveWindow(max_window=config.adaptive_max_window) if window == "adaptive" else FixedWindow(int(window))


def measure(model: DiT, config: Config, cell: tuple[int, str, str, str], seed: int) -> Record:
    """One cell; the noises and generators depend on ``seed`` and N only."""
    steps, drafter, rule, window = cell
    kernel = DDPMKernel(linear_schedule(1000), num_steps=steps)
    noise = torch.randn(config.samples, 1, 8, 8, generator=torch.Generator().manual_seed(seed + steps))
    labels = torch.arange(config.samples) % 10
    with torch.no_grad():
        result = sample(
            model,
            kernel,
            noise,
            drafter=network_drafter(drafter),
            window=_policy(window, config),
            rule=RULE_LABELS[rule],
            generator=torch.Generator().manual_seed(seed + steps + 1),
            conditioning={"y": labels},
        )
    calls = result.sample_sequential_cost
    per_sample = steps / calls
    blocks = torch.cat(result.block_verified).double() if result.block_verified else torch.zeros(1)
    return Record(
        steps=steps,
        drafter=drafter,
        rule=rule,
        window=window,
        samples=config.samples,
        steps_per_call=steps / float(calls.mean()),
        steps_per_call_stderr=float(per_sample.std() / math.sqrt(config.samples)),
        calls=float(calls.mean()),
        target_calls=float(result.sample_rounds.double().mean()),
        draft_cost=float(result.sample_draft_cost.mean()),
        rows_per_round=result.rows_per_round,
        block_fraction=float(blocks.mean()),
        wall_seconds=result.wall_seconds,
    )


def run(config: Config, seed: int, progress: bool = True) -> list[Record]:
    model = load_pretrained()
    records = []
    for cell in cells(config):
        record = measure(model, config, cell, seed)
        records.append(record)
        if progress:
            print(
                f"N={record.steps:<5} {record.drafter:<15} {record.rule:<8} L={record.window:<8} steps/call "
                f"{record.steps_per_call:6.2f} rows/round {record.rows_per_round:5.1f} "
                f"block {record.block_fraction:.2f}  {record.wall_seconds:.1f}s",
                flush=True,
            )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT)
    config = SMOKE if arguments.smoke else FULL
    start = time.perf_counter()
    records = run(config, arguments.seed)
    payload: dict[str, Any] = {
        "script": "simulations.dit_speedup",
        "preset": arguments.preset,
        "seed": arguments.seed,
        "config": asdict(config),
        "records": [asdict(r) for r in records],
        "seconds": time.perf_counter() - start,
    }
    write_results(arguments.output, payload)
    print(f"wrote {arguments.output} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
