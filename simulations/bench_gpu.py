"""Benchmark: plain vs speculative sampling of the trained digits DiT, wall clock, in one process per comparison.

1. **Batch-cost curves** ``c(B)``: seconds per forward call of the digits DiT and of the DiT-S/2 and XL/2 shapes
   (random weights, 32x32x4 latents), and of the first-k-block early exit.
2. **Sampling**: for N DDPM steps, batch sizes, rules (token, block) and drafters (frozen, Free Drafter reuse, Free
   Drafter early exit, extrapolating), each with a fixed window and the adaptive policy (given the measured cost
   curve and the sampler's own time per round, measured once per cell: ``_Case.round_overhead``), the wall time of
   speculative sampling against plain ancestral sampling of the same model, batch, seeds,
   precision and device, measured in the same process right before. Both run eagerly (no CUDA graphs, no
   torch.compile) under ``torch.no_grad``.
3. **Perfect drafter** (draft = target, every step accepted): the time inside the draft's own calls is measured and
   removed, and the resulting speedup is compared with the ideal ``(L + 1) / (c(B (L + 1)) / c(B))`` from the
   measured cost curve: the sampler's efficiency.

**Placement.** With ``placement="device"`` the states, the randomness and the verification live on the device with
the network; with ``"host"`` (the ``gpu-host`` preset) they stay on the CPU and only the network's batched calls go
to the GPU (:class:`specdiff.placement.DeviceModel`), plain and speculative sampling alike. For a small network a round
of a few hundred small operations costs less on the host than as kernel launches.

Records are flat JSON (``model, steps, batch, rule, drafter, window, target_calls, wall_seconds,
baseline_wall_seconds, speedup, device, commit`` and more). Presets: ``gpu`` (the H100 run: 412 s before the
per-cell measurement of the sampler's own time per round was added, which adds one plain and one speculative run
per cell), ``gpu-host`` (the same runs with the states on the host, without the large models' curves, which do not
depend on the placement), ``cpu`` (a reduced run for a CPU-only machine) and ``smoke`` (seconds, for the tests).

The JSON is rewritten after every record with ``"complete": false``, so a run that is stopped keeps what it measured;
``--max-seconds`` starts no new (N, batch) cell after that many seconds (the file then says ``"complete": false``).

Run ``python -m simulations.bench_gpu [--preset gpu|gpu-host|cpu|smoke] [--output PATH] [--max-seconds S]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulations.common import EXIT_BLOCKS, network_drafter, write_results
from simulations.provenance import REPOSITORY_ROOT, git_commit
from specdiff.diagnostics import calibrate_run
from specdiff.drafters import Drafter, FreeDrafter, Model, ModelDrafter
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DIT_PRESETS, DiT, load_pretrained
from specdiff.placement import DeviceModel
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import SpeculativeResult, sample, sample_plain
from specdiff.timing import TimedModel, median_seconds, timed
from specdiff.verify import Rule


@dataclass(frozen=True)
class Preset:
    steps: tuple[int, ...]
    batches: tuple[int, ...]
    drafters: tuple[str, ...]
    windows: tuple[str, ...]  # "8" or "adaptive"
    cost_batches: tuple[int, ...]
    large_models: tuple[str, ...]
    large_batches: tuple[int, ...]
    perfect_windows: tuple[int, ...]
    repeats: int
    placement: str = "device"  # "device": states on the model's device; "host": states on the CPU (DeviceModel)


PRESETS = {
    "gpu": Preset(
        steps=(50, 100, 200, 1000),
        batches=(1, 64),
        drafters=("frozen", "free-nearest", "free-exit", "extrapolating"),
        windows=("8", "adaptive"),
        cost_batches=(1, 2, 4, 8, 9, 16, 17, 32, 64, 128, 256, 576, 1088),
        large_models=("S/2", "XL/2"),
        large_batches=(1, 2, 4, 8, 16, 32, 64),
        perfect_windows=(4, 8),
        repeats=5,
    ),
    "gpu-host": Preset(
        steps=(200, 1000, 50, 100),  # the headline cells first, for a short lease
        batches=(1, 64),
        drafters=("frozen", "free-nearest", "free-exit", "extrapolating"),
        windows=("8", "adaptive"),
        cost_batches=(1, 2, 4, 8, 9, 16, 17, 32, 64, 128, 256, 576, 1088),
        large_models=(),
        large_batches=(),
        perfect_windows=(4, 8),
        repeats=5,
        placement="host",
    ),
    "cpu": Preset(
        steps=(50, 200),
        batches=(1, 8),
        drafters=("frozen", "free-nearest", "free-exit", "extrapolating"),
        windows=("8", "adaptive"),
        cost_batches=(1, 2, 4, 8, 9, 16, 17, 32, 72, 136),
        large_models=("S/2",),
        large_batches=(1, 2, 4),
        perfect_windows=(4, 8),
        repeats=3,
    ),
    "smoke": Preset(
        steps=(12,),
        batches=(2,),
        drafters=("free-nearest", "free-exit"),
        windows=("4", "adaptive"),
        cost_batches=(1, 2, 5, 10),
        large_models=(),
        large_batches=(),
        perfect_windows=(4,),
        repeats=1,
    ),
}
DEFAULT_OUTPUT = {
    "gpu": REPOSITORY_ROOT / "results" / "gpu" / "bench_gpu.json",
    "gpu-host": REPOSITORY_ROOT / "results" / "gpu" / "bench_gpu_host.json",
    "cpu": REPOSITORY_ROOT / "results" / "bench_cpu.json",
    "smoke": REPOSITORY_ROOT / "results" / "smoke" / "bench.json",
}


def cost_curve(
    model: DiT, batches: Sequence[int], device: torch.device, repeats: int, k: int | None = None
) -> list[float]:
    """Seconds per call of ``model`` (or its first ``k`` blocks) at each batch size, random inputs."""
    config = model.config
    seconds = []
    for batch in batches:
        x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, device=device)
        t = torch.randint(0, 1000, (batch,), device=device)
        y = torch.randint(0, config.num_classes, (batch,), device=device)
        blocks = model.depth if k is None else k

        def call(x: torch.Tensor = x, t: torch.Tensor = t, y: torch.Tensor = y, blocks: int = blocks) -> torch.Tensor:
            return model.forward_first_k(x, t, y, blocks)

        with torch.no_grad():
            seconds.append(median_seconds(call, device, repeats))
    return seconds


def _interpolated(batches: Sequence[int], seconds: Sequence[float]) -> Callable[[int], float]:
    def cost(states: int) -> float:
        return float(np.interp(states, batches, seconds))

    return cost


def run(
    preset: Preset,
    device: torch.device,
    seed: int,
    progress: bool = True,
    deadline: float | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    compiled: bool = False,
) -> dict[str, Any]:
    """Cost curves and records; ``checkpoint(partial)`` after each record, no new cell after ``deadline``;
    ``compiled`` samples with ``compile=True`` (plain and speculative alike).

    ``deadline`` is a ``time.perf_counter()`` value; the result's ``complete`` says whether every cell ran.
    """
    commit = git_commit()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model = load_pretrained("digits", device=device)
    curves: list[dict[str, Any]] = []
    digits_curve = cost_curve(model, preset.cost_batches, device, preset.repeats)
    curves.append({"model": "digits", "blocks": model.depth, "batches": preset.cost_batches, "seconds": digits_curve})
    for k in (1, EXIT_BLOCKS):
        seconds = cost_curve(model, preset.cost_batches, device, preset.repeats, k=k)
        curves.append({"model": "digits", "blocks": k, "batches": preset.cost_batches, "seconds": seconds})
    for name in preset.large_models:
        large = DiT(DIT_PRESETS[name], generator=torch.Generator().manual_seed(0)).to(device).eval()
        curves.append(
            {
                "model": name,
                "blocks": large.depth,
                "batches": preset.large_batches,
                "seconds": cost_curve(large, preset.large_batches, device, preset.repeats),
            }
        )
        quarter = max(1, large.depth // 4)
        seconds = cost_curve(large, preset.large_batches, device, preset.repeats, k=quarter)
        curves.append({"model": name, "blocks": quarter, "batches": preset.large_batches, "seconds": seconds})
        del large
    cost = _interpolated(preset.cost_batches, digits_curve)
    base = {
        "model": "digits",
        "device": device_name,
        "placement": preset.placement,
        "compiled": compiled,
        "commit": commit,
    }
    records: list[dict[str, Any]] = []

    def add(record: dict[str, Any]) -> None:
        records.append({**base, **record})
        _report(records[-1], progress)
        if checkpoint is not None:
            checkpoint({"cost_curves": curves, "records": records, "complete": False})

    if checkpoint is not None:
        checkpoint({"cost_curves": curves, "records": records, "complete": False})
    cells = [(steps, batch) for batch in preset.batches for steps in preset.steps]  # in the preset's order of priority
    for number, (steps, batch) in enumerate(cells):
        if deadline is not None and time.perf_counter() > deadline:
            print(f"time is up: {len(cells) - number} of {len(cells)} cells not run", flush=True)
            return {"cost_curves": curves, "records": records, "complete": False}
        kernel = DDPMKernel(linear_schedule(1000), num_steps=steps)
        case = _Case(model, kernel, batch, device, seed, host=preset.placement == "host", compiled=compiled)
        case.plain_seconds()  # warm-up
        for rule in ("token-reflection", "block"):
            for drafter in preset.drafters:
                for window in preset.windows:
                    add(case.speculative(rule, drafter, window, cost))
        for window_length in preset.perfect_windows:
            add(case.perfect(window_length, cost))
    return {"cost_curves": curves, "records": records, "complete": True}


class _Case:
    """One (model, N, batch) cell: plain timing and speculative runs with the same seeds.

    With ``host``, the states live on the CPU and the model is called through :class:`DeviceModel`.
    """

    def __init__(
        self,
        model: DiT,
        kernel: DDPMKernel,
        batch: int,
        device: torch.device,
        seed: int,
        host: bool,
        compiled: bool = False,
    ):
        self.kernel, self.batch, self.device, self.seed = kernel, batch, device, seed
        self.compiled = compiled  # plain and speculative sampling alike: an equally optimized baseline
        self.model: Model = DeviceModel(model, device) if host else model
        states_device = torch.device("cpu") if host else device
        self.labels = torch.arange(batch, device=states_device) % 10
        self.noise = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).to(states_device)
        self._round_overhead: float | None = None

    def generators(self) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(self.seed * 7919 + i) for i in range(self.batch)]

    def _timed(self, function: Callable[[], Any]) -> tuple[Any, float]:
        with torch.no_grad():
            return timed(function, self.device)

    def plain_seconds(self, model: Model | None = None) -> float:
        conditioning = {"y": self.labels}
        return self._timed(
            lambda: sample_plain(
                model or self.model,
                self.kernel,
                self.noise,
                generator=self.generators(),
                conditioning=conditioning,
                compile=self.compiled,
            )
        )[1]

    def _sample(
        self, drafter: Drafter, policy: WindowPolicy, rule: Rule, model: Model | None = None
    ) -> tuple[SpeculativeResult, float]:
        return self._timed(
            lambda: sample(
                model or self.model,
                self.kernel,
                self.noise,
                drafter=drafter,
                window=policy,
                rule=rule,
                generator=self.generators(),
                conditioning={"y": self.labels},
                compile=self.compiled,
            )
        )

    def round_overhead(self) -> float:
        """The sampler's own extra time per speculative round over a plain step, in network calls on the batch.

        Measured once per cell with the network timed (synchronized) inside the runs: the time outside the network per
        round of a speculative run (reuse Free Drafter, window 8, block rule) minus the time outside the network per
        step of a plain run, over the network's time per plain call. The adaptive policy charges it to every
        speculative round (``AdaptiveWindow(round_overhead=...)``).
        """
        if self._round_overhead is None:
            plain_model, speculative_model = TimedModel(self.model, self.device), TimedModel(self.model, self.device)
            steps = self.kernel.num_steps
            plain_wall = self.plain_seconds(plain_model)
            result, wall = self._sample(FreeDrafter(), FixedWindow(8), "block", speculative_model)
            plain_step = (plain_wall - plain_model.seconds) / steps
            per_round = (wall - speculative_model.seconds) / result.rounds
            self._round_overhead = max(0.0, per_round - plain_step) / (plain_model.seconds / steps)
        return self._round_overhead

    def speculative(self, rule: Rule, drafter: str, window: str, cost: Callable[[int], float]) -> dict[str, Any]:
        steps = self.kernel.num_steps
        baseline = self.plain_seconds()
        policy: WindowPolicy
        if window == "adaptive":
            policy = AdaptiveWindow(
                max_window=16,
                batch_cost=lambda m: cost(self.batch * m) / cost(self.batch),
                round_overhead=self.round_overhead(),
            )
        else:
            policy = FixedWindow(int(window))
        result, wall = self._sample(network_drafter(drafter), policy, rule)
        summary = calibrate_run(result, rule) if result.accepted else None
        return {
            "steps": steps,
            "batch": self.batch,
            "rule": "token" if rule == "token-reflection" else "block",
            "drafter": drafter,
            "window": window,
            "target_calls": result.target_calls,
            "sequential_cost": result.sequential_cost,
            "wall_seconds": wall,
            "baseline_wall_seconds": baseline,
            "baseline_target_calls": steps,
            "speedup": baseline / wall,
            "call_ratio": steps / result.target_calls,
            "measured_steps_per_round": summary.measured_steps_per_round if summary else 1.0,
            "predicted_steps_per_round": summary.predicted_steps_per_round if summary else 1.0,
            "calibration_z": summary.z if summary else None,
            "round_overhead": self._round_overhead if window == "adaptive" else None,
        }

    def perfect(self, window: int, cost: Callable[[int], float]) -> dict[str, Any]:
        steps = self.kernel.num_steps
        baseline = self.plain_seconds()
        draft_model = TimedModel(self.model, self.device)
        result, wall = self._sample(ModelDrafter(draft_model, 0.0, name="perfect"), FixedWindow(window), "block")
        without_draft = wall - draft_model.seconds
        ideal = (window + 1) / (cost(self.batch * (window + 1)) / cost(self.batch))
        return {
            "steps": steps,
            "batch": self.batch,
            "rule": "block",
            "drafter": "perfect",
            "window": str(window),
            "target_calls": result.target_calls,
            "sequential_cost": float(result.target_calls),
            "wall_seconds": wall,
            "baseline_wall_seconds": baseline,
            "baseline_target_calls": steps,
            "speedup": baseline / wall,
            "call_ratio": steps / result.target_calls,
            "draft_seconds": draft_model.seconds,
            "speedup_without_draft": baseline / without_draft,
            "ideal_speedup": ideal,
            "efficiency": baseline / without_draft / ideal,
        }


def _report(record: dict[str, Any], progress: bool) -> None:
    if not progress:
        return
    line = (
        f"N={record['steps']:<5} B={record['batch']:<3} {record['rule']:<5} {record['drafter']:<13} "
        f"L={record['window']:<8} calls {record['target_calls']:<5} speedup {record['speedup']:.2f}x "
        f"(calls {record['call_ratio']:.2f}x)"
    )
    if "efficiency" in record:
        line += f"; without the draft {record['speedup_without_draft']:.2f}x of ideal {record['ideal_speedup']:.2f}x"
        line += f" = efficiency {record['efficiency']:.0%}"
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="start no new (N, batch) cell after this")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="sample with compile=True, plain and speculative alike (the round's kernels)",
    )
    arguments = parser.parse_args(argv)
    device = torch.device(arguments.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = PRESETS[arguments.preset]
    if device.type == "cpu" or preset.placement == "host":
        torch.set_num_threads(1)  # wherever the states are on the CPU, plain and speculative runs alike
    output = arguments.output or DEFAULT_OUTPUT[arguments.preset]
    start = time.perf_counter()

    def save(results: dict[str, Any]) -> None:
        write_results(
            output,
            {
                "script": "simulations.bench_gpu",
                "preset": arguments.preset,
                "seed": arguments.seed,
                "sizes": asdict(preset),
                "max_seconds": arguments.max_seconds,
                "compiled": arguments.compile,
                "seconds": time.perf_counter() - start,
                **results,
            },
        )

    deadline = None if arguments.max_seconds is None else start + arguments.max_seconds
    results = run(preset, device, arguments.seed, deadline=deadline, checkpoint=save, compiled=arguments.compile)
    save(results)
    print(f"wrote {output} in {time.perf_counter() - start:.0f} s ({'complete' if results['complete'] else 'partial'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
