"""The sampler's own overhead: the share of wall time spent outside the model calls.

Target: the exact denoiser of an 8-component Gaussian mixture in d = 64, batch 256, DDPM with N steps, on the CPU
with one thread. The model is wrapped so that the time inside its calls is measured (``time.perf_counter`` around
each call); everything else (drafting arithmetic, randomness, verification, residual sampling, bookkeeping) is the
sampler's overhead. The same is measured for plain sampling, whose overhead is the floor. A cProfile of the
speculative run lists the functions where the overhead goes.

Run ``python -m simulations.overhead`` (about a minute) or ``--smoke``. Writes ``results/overhead.json``.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from simulations.common import initial_noise, make_kernel, mixture_problem, script_arguments, write_results
from simulations.provenance import REPOSITORY_ROOT
from specdiff.drafters import FreeDrafter
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import sample, sample_plain
from specdiff.timing import TimedModel

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "overhead.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "overhead.json"
DEFAULT_SEED = 3


@dataclass(frozen=True)
class Config:
    dimension: int
    components: int
    batch: int
    steps: int
    repeats: int


FULL = Config(dimension=64, components=8, batch=256, steps=100, repeats=3)
SMOKE = Config(dimension=8, components=2, batch=16, steps=10, repeats=1)


@dataclass(frozen=True)
class Measurement:
    sampler: str
    wall_seconds: float
    model_seconds: float
    overhead_fraction: float
    target_calls: int
    target_evaluations: int


def _measure(config: Config, sampler: str, policy: WindowPolicy | None, seed: int) -> Measurement:
    problem = mixture_problem(config.dimension, components=config.components)
    kernel = make_kernel("ddpm", config.steps)
    model = TimedModel(problem.data.as_model(kernel))
    start_noise = initial_noise(kernel, config.batch, config.dimension, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    if policy is None:
        result = sample_plain(model, kernel, start_noise, generator=generator)
        calls, evaluations = result.target_calls, result.target_evaluations
    else:
        speculative = sample(model, kernel, start_noise, drafter=FreeDrafter(), window=policy, generator=generator)
        calls, evaluations = speculative.target_calls, speculative.target_evaluations
    wall = time.perf_counter() - start
    return Measurement(sampler, wall, model.seconds, 1 - model.seconds / wall, calls, evaluations)


def _profile(config: Config, seed: int, top: int = 15) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    _measure(config, "speculative", FixedWindow(8), seed)
    profiler.disable()
    statistics = pstats.Stats(profiler)
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in statistics.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(filename).name}:{line}({function})", "calls": calls, "own_seconds": own,
                     "cumulative_seconds": cumulative})  # fmt: skip
    rows.sort(key=lambda row: row["own_seconds"], reverse=True)
    return rows[:top]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT)
    config, output = (SMOKE if arguments.smoke else FULL), arguments.output
    measurements: list[Measurement] = []
    for _ in range(config.repeats):
        measurements.append(_measure(config, "plain", None, arguments.seed))
        measurements.append(_measure(config, "speculative-window-8", FixedWindow(8), arguments.seed))
        measurements.append(_measure(config, "speculative-adaptive", AdaptiveWindow(), arguments.seed))
    for measurement in measurements:
        print(
            f"{measurement.sampler:<22} wall {measurement.wall_seconds:6.2f}s  model {measurement.model_seconds:6.2f}s"
            f"  overhead {100 * measurement.overhead_fraction:5.1f}%  calls {measurement.target_calls}"
        )
    profile = _profile(config, arguments.seed)
    for row in profile[:8]:
        print(f"  {row['own_seconds']:7.3f}s own  {row['calls']:>8} calls  {row['function']}")
    write_results(
        output,
        {
            "script": "simulations.overhead",
            "preset": arguments.preset,
            "seed": arguments.seed,
            "sizes": asdict(config),
            "measurements": [asdict(m) for m in measurements],
            "profile_top_own_time": profile,
        },
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
