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
run to run. Every cell therefore asks glibc (``mallopt``, where available) to keep freed memory, for plain and
speculative runs alike, and records whether it did.

Cells (``simulations.experiment``; wall times, so ``timed``): one per repeat, which warms every sampler of
``SAMPLERS`` up (a short untimed run), then times each on the same noise (the cell's seed) one after the other, and
the normals' floor, so that a repeat is a complete paired measurement whichever process runs it; and one per profiled
sampler (``PROFILED``).

Run ``python -m simulations.overhead`` (about a minute) or ``--smoke`` (seconds). Writes ``results/overhead.json``:
the records, and ``measurements`` (every sampler of every repeat), ``profiles``, ``noise_microseconds_per_state``
(of the repeat with the fastest plain run) and ``kept_freed_memory`` (in every cell).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from simulations.common import initial_noise, make_kernel, mixture_problem
from simulations.experiment import Experiment, Summary, keep_freed_memory
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.drafters import FreeDrafter
from specdiff.policies import AdaptiveWindow, FixedWindow, PlainSteps, WindowPolicy
from specdiff.sampler import sample, sample_plain
from specdiff.timing import TimedModel, median_seconds

DEFAULT_SEED = 3
#: The samplers timed in every repeat, in this order.
SAMPLERS = ("plain", "speculative-window-8", "speculative-adaptive", "speculative-plain-steps")
#: The samplers profiled (one cell each).
PROFILED = ("speculative-window-8", "speculative-adaptive")
#: Steps of the untimed warm-up run of each sampler that starts a repeat.
WARM_UP_STEPS = 10


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    dimension: int
    components: int
    batch: int
    steps: int
    repeats: int

    @property
    def workload(self) -> Workload:
        return Workload(self.dimension, self.components, self.batch, self.steps)


@dataclass(frozen=True)
class Workload:
    """What one sampler run samples: a ``components``-Gaussian mixture in ``dimension`` dimensions, ``batch``
    samples, DDPM with ``steps`` steps."""

    dimension: int
    components: int
    batch: int
    steps: int


FULL = Config(dimension=64, components=8, batch=256, steps=100, repeats=3)
SMOKE = Config(dimension=8, components=2, batch=16, steps=10, repeats=1)


@dataclass(frozen=True)
class RepeatCell:
    """One repeat: every sampler of ``SAMPLERS`` and the normals' floor, timed one after the other."""

    workload: Workload
    repeat: int


@dataclass(frozen=True)
class ProfileCell:
    """One profiled run of ``sampler``."""

    workload: Workload
    sampler: str


@dataclass(frozen=True)
class Measurement:
    """One timed run of one sampler."""

    sampler: str
    wall_seconds: float
    model_seconds: float
    overhead_fraction: float
    target_calls: int
    target_evaluations: int
    overhead_microseconds_per_state: float
    model_microseconds_per_state: float


@dataclass(frozen=True)
class RepeatRecord:
    """The record of a :class:`RepeatCell`."""

    kind: str  # "repeat"
    repeat: int
    kept_freed_memory: bool
    noise_microseconds_per_state: float
    measurements: list[Measurement]


@dataclass(frozen=True)
class ProfileRecord:
    """The record of a :class:`ProfileCell`: the parts of the run (cumulative seconds, summed over ``PARTS``), its
    total and the largest own times."""

    kind: str  # "profile"
    sampler: str
    kept_freed_memory: bool
    total_seconds: float
    part_seconds: dict[str, float]
    top_own_time: list[dict[str, Any]]


#: Parts of a profiled run: (label, [(file name, function name), ...]) whose cumulative times are added up.
PARTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("model", (("timing.py", "__call__"),)),
    ("random streams", (("randomness.py", "counter_uniforms"), ("randomness.py", "counter_normals"))),
    ("drafting", (("drafters.py", "draft"),)),
    ("verification", (("verify.py", "verify"),)),
    ("window policy", (("policies.py", "windows"), ("policies.py", "observe"))),
)


def window_policy(sampler: str) -> WindowPolicy | None:
    """A fresh window policy of a speculative sampler of ``SAMPLERS``; None for plain sampling."""
    if sampler == "plain":
        return None
    if sampler == "speculative-window-8":
        return FixedWindow(8)
    if sampler == "speculative-adaptive":
        return AdaptiveWindow()
    if sampler == "speculative-plain-steps":
        return PlainSteps()
    raise ValueError(f"unknown sampler {sampler!r}; choose from {SAMPLERS}")


def measure_sampler(workload: Workload, sampler: str, seed: int) -> Measurement:
    """Run ``sampler`` once on ``workload`` (noise from ``seed``, sampling randomness from ``seed + 1``) and split
    its wall time into the model's and the rest."""
    problem = mixture_problem(workload.dimension, components=workload.components)
    kernel = make_kernel("ddpm", workload.steps)
    model = TimedModel(problem.data.as_model(kernel))
    start_noise = initial_noise(kernel, workload.batch, workload.dimension, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    policy = window_policy(sampler)
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


def noise_microseconds_per_state(workload: Workload, seed: int) -> float:
    """The floor of any exact sampler of the chain: drawing the d float64 normals of one state, in one big draw
    (median of 5 after a warm-up), in microseconds per state."""
    generator = torch.Generator().manual_seed(seed)
    states = workload.batch * workload.steps
    seconds = median_seconds(
        lambda: torch.randn(states * workload.dimension, generator=generator, dtype=torch.float64),
        torch.device("cpu"),
        repeats=5,
    )
    return 1e6 * seconds / states


def profile_sampler(workload: Workload, sampler: str, seed: int, top: int = 15) -> dict[str, Any]:
    """Profile one run of ``sampler``: its parts (cumulative seconds, summed over ``PARTS``), its total (the
    cumulative time of :func:`measure_sampler`) and the ``top`` largest own times."""
    profiler = cProfile.Profile()
    profiler.enable()
    measure_sampler(workload, sampler, seed)
    profiler.disable()
    statistics = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    parts = dict.fromkeys([label for label, _ in PARTS], 0.0)
    total = 0.0
    for (filename, line, function), (_, calls, own, cumulative, _) in statistics.items():
        name = Path(filename).name
        rows.append({"function": f"{name}:{line}({function})", "calls": calls, "own_seconds": own,
                     "cumulative_seconds": cumulative})  # fmt: skip
        if name == "overhead.py" and function == "measure_sampler":
            total = cumulative
        for label, functions in PARTS:
            if (name, function) in functions:
                parts[label] += cumulative
    rows.sort(key=lambda row: row["own_seconds"], reverse=True)
    parts["rest of the sampler"] = total - sum(parts.values())
    return {"total_seconds": total, "part_seconds": parts, "top_own_time": rows[:top]}


def cells(config: Config) -> list[RepeatCell | ProfileCell]:
    """``config.repeats`` repeat cells, then a profile cell per sampler of ``PROFILED``."""
    repeats: list[RepeatCell | ProfileCell] = [RepeatCell(config.workload, repeat) for repeat in range(config.repeats)]
    return repeats + [ProfileCell(config.workload, sampler) for sampler in PROFILED]


def run_cell(cell: RepeatCell | ProfileCell, seed: int) -> RepeatRecord | ProfileRecord:
    """A repeat (every sampler on the noise of ``seed``, then the normals' floor) or a profiled run."""
    kept = keep_freed_memory()
    if isinstance(cell, ProfileCell):
        profile = profile_sampler(cell.workload, cell.sampler, seed)
        return ProfileRecord("profile", cell.sampler, kept, **profile)
    warm_up = replace(cell.workload, steps=min(cell.workload.steps, WARM_UP_STEPS))
    for sampler in SAMPLERS:  # untimed: the first calls of a process are slower, whichever cell runs first
        measure_sampler(warm_up, sampler, seed)
    measurements = [measure_sampler(cell.workload, sampler, seed) for sampler in SAMPLERS]
    noise = noise_microseconds_per_state(cell.workload, seed + 2)
    return RepeatRecord("repeat", cell.repeat, kept, noise, measurements)


def describe_measurement(measurement: Mapping[str, Any]) -> str:
    """A printed line per measurement."""
    return (
        f"{measurement['sampler']:<24} wall {measurement['wall_seconds']:6.2f}s"
        f"  model {measurement['model_seconds']:6.2f}s  overhead {100 * measurement['overhead_fraction']:5.1f}%"
        f"  calls {measurement['target_calls']}"
        f"  per state: overhead {measurement['overhead_microseconds_per_state']:5.2f} us,"
        f" model {measurement['model_microseconds_per_state']:5.2f} us"
    )


def describe_profile(profile: Mapping[str, Any]) -> str:
    """A printed line per profile."""
    parts = ", ".join(f"{label} {seconds:.3f}s" for label, seconds in profile["part_seconds"].items())
    return f"profile {profile['sampler']} ({profile['total_seconds']:.3f}s): {parts}"


def describe(record: Mapping[str, Any]) -> str:
    """The printed lines of a cell."""
    if record["kind"] == "profile":
        return describe_profile(record)
    lines = [describe_measurement(measurement) for measurement in record["measurements"]]
    lines.append(f"drawing the normals of one state: {record['noise_microseconds_per_state']:.2f} us")
    return "\n".join(f"repeat {record['repeat']}: {line}" for line in lines)


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The measurements of every repeat, the profiles, the normals' floor of the repeat with the fastest plain run
    (so that it is compared with that run's model time), and whether every cell kept freed memory."""
    repeats = [record for record in records if record["kind"] == "repeat"]
    profiles = [
        {key: record[key] for key in ("sampler", "total_seconds", "part_seconds", "top_own_time")}
        for record in records
        if record["kind"] == "profile"
    ]
    measurements = [measurement for record in repeats for measurement in record["measurements"]]
    noise = None
    if repeats:
        fastest = min(repeats, key=lambda record: _plain(record)["wall_seconds"])
        noise = fastest["noise_microseconds_per_state"]
    lines = [describe_measurement(measurement) for measurement in measurements]
    if noise is not None:
        lines.append(f"drawing the normals of one state: {noise:.2f} us")
    lines += [describe_profile(profile) for profile in profiles]
    return Summary(
        fields={
            "kept_freed_memory": all(record["kept_freed_memory"] for record in records),
            "noise_microseconds_per_state": noise,
            "measurements": measurements,
            "profiles": profiles,
        },
        text="\n".join(lines),
    )


def _plain(record: Mapping[str, Any]) -> Mapping[str, Any]:
    return next(measurement for measurement in record["measurements"] if measurement["sampler"] == "plain")


EXPERIMENT = Experiment(
    module="simulations.overhead",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="overhead.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/models/gmm.py",
        "specdiff/timing.py",
        "simulations/common.py",
        "simulations/overhead.py",
    ),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    timed=True,
    describe=describe,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
