"""The sampler's own overhead: the share of wall time spent outside the model calls.

Target: the exact denoiser of an 8-component Gaussian mixture in d = 64, batch 256, DDPM with N steps, on the CPU
with one thread. The model is wrapped so that the time inside its calls is measured (``time.perf_counter`` around
each call); everything else (drafting arithmetic, randomness, verification, residual sampling, bookkeeping) is the
sampler's overhead. The same is measured for plain sampling, whose overhead is the floor. Each measurement also
gives the overhead and the model time per evaluated state, so the fraction for a costlier model can be read off:
``overhead / (overhead + model)`` per state. The time to draw the d normals of one state (any exact sampler draws
at least that per evaluated state) is measured as the floor. A cProfile of the speculative runs splits the wall
time into the model, the random streams, drafting, verification, the window policy and the rest, and lists the
largest own times. ``speculative-plain-steps`` runs the speculative sampler with :class:`PlainSteps` (window 0
every round, bitwise the samples of plain sampling): what the machinery costs once an adaptive policy has fallen back.

The exact mixture denoiser allocates a few MB per call; with glibc's default dynamic mmap threshold those pages are
returned to the system and faulted in again on the next call, which made the model's own time vary threefold from
run to run. The script therefore asks glibc (``mallopt``, where available) to keep freed memory, for plain and
speculative runs alike, and records whether it did.

Run ``python -m simulations.overhead`` (about a minute) or ``--smoke``. Writes ``results/overhead.json``.
"""

from __future__ import annotations

import cProfile
import ctypes
import ctypes.util
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
from specdiff.policies import AdaptiveWindow, FixedWindow, PlainSteps, WindowPolicy
from specdiff.sampler import sample, sample_plain
from specdiff.timing import TimedModel, median_seconds

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
    overhead_microseconds_per_state: float
    model_microseconds_per_state: float


#: Parts of a profiled run: (label, [(file name, function name), ...]) whose cumulative times are added up.
PARTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("model", (("timing.py", "__call__"),)),
    ("random streams", (("randomness.py", "counter_uniforms"), ("randomness.py", "counter_normals"))),
    ("drafting", (("drafters.py", "draft"),)),
    ("verification", (("verify.py", "verify"),)),
    ("window policy", (("policies.py", "windows"), ("policies.py", "observe"))),
)

#: glibc ``mallopt`` parameters: keep up to 1 GiB of freed memory instead of unmapping it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _KEEP_BYTES = -1, -3, 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory (no mmap / trim churn); False where there is no glibc ``mallopt``."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


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
    overhead = wall - model.seconds
    return Measurement(
        sampler,
        wall,
        model.seconds,
        overhead / wall,
        calls,
        evaluations,
        1e6 * overhead / evaluations,
        1e6 * model.seconds / evaluations,
    )


def noise_microseconds_per_state(config: Config, seed: int) -> float:
    """The floor of any exact sampler of the chain: drawing the d float64 normals of one state, in one big draw
    (median of 5 after a warm-up), in microseconds per state."""
    generator = torch.Generator().manual_seed(seed)
    states = config.batch * config.steps
    seconds = median_seconds(
        lambda: torch.randn(states * config.dimension, generator=generator, dtype=torch.float64),
        torch.device("cpu"),
        repeats=5,
    )
    return 1e6 * seconds / states


def _profile(config: Config, sampler: str, policy: WindowPolicy, seed: int, top: int = 15) -> dict[str, Any]:
    """Profile one speculative run: its parts (cumulative seconds, summed over ``PARTS``) and the largest own times."""
    profiler = cProfile.Profile()
    profiler.enable()
    _measure(config, sampler, policy, seed)
    profiler.disable()
    statistics = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    parts = dict.fromkeys([label for label, _ in PARTS], 0.0)
    total = 0.0
    for (filename, line, function), (_, calls, own, cumulative, _) in statistics.items():
        name = Path(filename).name
        rows.append({"function": f"{name}:{line}({function})", "calls": calls, "own_seconds": own,
                     "cumulative_seconds": cumulative})  # fmt: skip
        if name == "overhead.py" and function == "_measure":
            total = cumulative
        for label, functions in PARTS:
            if (name, function) in functions:
                parts[label] += cumulative
    rows.sort(key=lambda row: row["own_seconds"], reverse=True)
    parts["rest of the sampler"] = total - sum(parts.values())
    return {"sampler": sampler, "total_seconds": total, "part_seconds": parts, "top_own_time": rows[:top]}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT)
    config, output = (SMOKE if arguments.smoke else FULL), arguments.output
    kept_freed_memory = keep_freed_memory()
    measurements: list[Measurement] = []
    for _ in range(config.repeats):
        measurements.append(_measure(config, "plain", None, arguments.seed))
        measurements.append(_measure(config, "speculative-window-8", FixedWindow(8), arguments.seed))
        measurements.append(_measure(config, "speculative-adaptive", AdaptiveWindow(), arguments.seed))
        measurements.append(_measure(config, "speculative-plain-steps", PlainSteps(), arguments.seed))
    for measurement in measurements:
        print(
            f"{measurement.sampler:<24} wall {measurement.wall_seconds:6.2f}s  model {measurement.model_seconds:6.2f}s"
            f"  overhead {100 * measurement.overhead_fraction:5.1f}%  calls {measurement.target_calls}"
            f"  per state: overhead {measurement.overhead_microseconds_per_state:5.2f} us,"
            f" model {measurement.model_microseconds_per_state:5.2f} us"
        )
    noise = noise_microseconds_per_state(config, arguments.seed)
    print(f"drawing the normals of one state: {noise:.2f} us")
    profiles = [
        _profile(config, "speculative-window-8", FixedWindow(8), arguments.seed),
        _profile(config, "speculative-adaptive", AdaptiveWindow(), arguments.seed),
    ]
    for profile in profiles:
        parts = ", ".join(f"{label} {seconds:.3f}s" for label, seconds in profile["part_seconds"].items())
        print(f"profile {profile['sampler']} ({profile['total_seconds']:.3f}s): {parts}")
    write_results(
        output,
        {
            "script": "simulations.overhead",
            "preset": arguments.preset,
            "seed": arguments.seed,
            "sizes": asdict(config),
            "kept_freed_memory": kept_freed_memory,
            "noise_microseconds_per_state": noise,
            "measurements": [asdict(m) for m in measurements],
            "profiles": profiles,
        },
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
