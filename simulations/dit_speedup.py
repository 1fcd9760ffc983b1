"""Steps per call on the shipped digits DiT: every drafter, windows and rules, at N = 50, 200 and 1000 DDPM steps.

For each (N, drafter, rule, window) cell, ``samples`` class-conditional samples (the classes in turn) are drawn with
``specdiff.sample``; each sample's sequential cost is its rounds plus its draft cost (the frozen draft's root call,
K / depth per drafted step for early exit), as if it ran alone. Reported: steps per call ``N / mean cost``, its
standard error, the target rows a round evaluates per sample (L + 1), and the share of windows the block rule
verified (the point of ``rule="adaptive"``, which lets the window policy choose per sample and round).

Each (N, drafter, rule, window) is a cell of the experiment framework (``simulations.experiment``); the cells of one
N share their seed (``shared_seed_fields``), so they share the initial noises and the samples' generators (common
random numbers) and the comparisons between drafters, rules and windows are paired. The records hold counts of
calls, not wall times.

Run ``python -m simulations.dit_speedup`` (full) or ``--smoke`` (seconds, used by the tests). Writes
``results/dit_speedup.json`` (``results/smoke/dit_speedup.json`` with ``--smoke``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from simulations.common import network_drafter, shipped_digits
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample

DEFAULT_SEED = 23
RULE_LABELS: dict[str, RuleName] = {"token": "token-reflection", "block": "block", "adaptive": "adaptive"}
#: The shipped checkpoint the cells sample from (its bytes enter the cells' keys).
WEIGHTS = ("specdiff/models/weights/dit_digits.safetensors", "specdiff/models/weights/dit_digits.json")


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    steps : tuple of int
        The DDPM step counts N.
    drafters : tuple of str
        Network drafters (``simulations.common.NETWORK_DRAFTER_NAMES``).
    windows : tuple of int
        The fixed windows (the adaptive window is always added).
    adaptive_max_window : int
    samples : int
        Samples per cell.
    """

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
class SpeedupCell:
    """The parameters of one cell."""

    steps: int
    drafter: str
    rule: str  # "token" (reflection), "block" or "adaptive" (chosen per sample and round)
    window: str  # "1".."16" or "adaptive"
    adaptive_max_window: int
    samples: int


@dataclass(frozen=True)
class Record:
    """One cell's record."""

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


def cells(config: Config) -> list[SpeedupCell]:
    """Every (N, drafter, rule, window) cell: both fixed rules at every window, the chosen rule with the adaptive
    window (the only policy that chooses rules)."""
    windows = [str(w) for w in config.windows] + ["adaptive"]
    fixed = [
        SpeedupCell(n, drafter, rule, window, config.adaptive_max_window, config.samples)
        for n in config.steps
        for drafter in config.drafters
        for rule in ("token", "block")
        for window in windows
    ]
    chosen = [
        SpeedupCell(n, drafter, "adaptive", "adaptive", config.adaptive_max_window, config.samples)
        for n in config.steps
        for drafter in config.drafters
    ]
    return fixed + chosen


def window_policy(window: str, adaptive_max_window: int) -> WindowPolicy:
    """The adaptive window (at most ``adaptive_max_window``) for ``"adaptive"``, else a fixed window."""
    return AdaptiveWindow(max_window=adaptive_max_window) if window == "adaptive" else FixedWindow(int(window))


def measure(model: DiT, cell: SpeedupCell, seed: int) -> Record:
    """One cell: the noises use ``seed``, the samples' generators ``seed + 1``."""
    kernel = DDPMKernel(linear_schedule(1000), num_steps=cell.steps)
    noise = torch.randn(cell.samples, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(cell.samples) % 10
    with torch.no_grad():
        result = sample(
            model,
            kernel,
            noise,
            drafter=network_drafter(cell.drafter),
            window=window_policy(cell.window, cell.adaptive_max_window),
            rule=RULE_LABELS[cell.rule],
            generator=torch.Generator().manual_seed(seed + 1),
            conditioning={"y": labels},
        )
    calls = result.sample_sequential_cost
    per_sample = cell.steps / calls
    blocks = torch.cat(result.block_verified).double() if result.block_verified else torch.zeros(1)
    return Record(
        steps=cell.steps,
        drafter=cell.drafter,
        rule=cell.rule,
        window=cell.window,
        samples=cell.samples,
        steps_per_call=cell.steps / float(calls.mean()),
        steps_per_call_stderr=float(per_sample.std() / math.sqrt(cell.samples)),
        calls=float(calls.mean()),
        target_calls=float(result.sample_rounds.double().mean()),
        draft_cost=float(result.sample_draft_cost.mean()),
        rows_per_round=result.rows_per_round,
        block_fraction=float(blocks.mean()),
    )


def run_cell(cell: SpeedupCell, seed: int) -> Record:
    """One cell with the shipped model."""
    return measure(shipped_digits(), cell, seed)


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per cell."""
    return (
        f"N={record['steps']:<5} {record['drafter']:<15} {record['rule']:<8} L={record['window']:<8} steps/call "
        f"{record['steps_per_call']:6.2f} rows/round {record['rows_per_round']:5.1f} "
        f"block {record['block_fraction']:.2f}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The best steps per call at each N (a measurement: it always passes)."""
    lines = []
    for steps in config.steps:
        at_n = [record for record in records if record["steps"] == steps]
        if at_n:
            lines.append("best: " + describe(max(at_n, key=lambda record: record["steps_per_call"])))
    return Summary(text="\n".join(lines))


EXPERIMENT = Experiment(
    module="simulations.dit_speedup",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="dit_speedup.json",
    code=(*SAMPLER_CODE, "specdiff/models/dit.py", *WEIGHTS, "simulations/common.py", "simulations/dit_speedup.py"),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    describe=describe,
    shared_seed_fields=("drafter", "rule", "window", "adaptive_max_window"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EXPERIMENT", "FULL", "SMOKE", "Config", "Record", "SpeedupCell", "cells", "main", "measure", "run_cell"]
