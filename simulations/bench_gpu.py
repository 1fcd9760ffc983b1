"""Benchmark: plain vs speculative sampling of the trained digits DiT, wall clock, each comparison in one cell.

The cells (``simulations.experiment``; a timed experiment: its records are wall times), in this order:

1. **Batch-cost curves** ``c(B)`` (records of ``kind: "cost-curve"``): seconds per forward call of the digits DiT
   (full depth, and the first-k-block early exits k = 1 and ``EXIT_BLOCKS``) and of the large DiT shapes of the
   preset (e.g. S/2 and XL/2: random weights, 32x32x4 latents; full depth and a quarter of it), one cell per curve.
2. **Sampling** (records of ``kind: "speedup"``): for N DDPM steps, batch sizes, rules (token, block) and drafters
   (frozen, Free Drafter reuse, Free Drafter early exit, extrapolating), each with a fixed window and with the
   adaptive policy, one cell per configuration. A cell times plain ancestral sampling and then speculative sampling
   of the same model, batch, seeds, precision and device, one right after the other, and records both wall times
   and their ratio (``speedup``). The adaptive policy is given the cost curve of the digits network and the
   sampler's own time per round (``_Case.round_overhead``), both measured in its own cell before the timed pair.
   Both samplers run eagerly unless ``--compile``: then both are compiled and, on a CUDA device, replayed from CUDA
   graphs after two warm-up rounds (plain steps) of each run (``graph="auto"``), alike; always under
   ``torch.no_grad``. Each process runs one untimed plain sampling per (N, batch, placement) before its first
   timed run there (the warm-up).
3. **Perfect drafter** (draft = target, every step accepted; ``drafter: "perfect"``): the time inside the draft's
   own calls is measured and removed, and the resulting speedup is compared with the ideal
   ``(L + 1) / (c(B (L + 1)) / c(B))`` from the digits cost curve measured in the cell: the sampler's efficiency.

**Repeated pairs.** A sampling cell times ``repeats`` pairs (plain, then speculative), one after the other, the same
seeds in every pair; ``speedup`` is the median of the pairs' speedups (``pair_speedups``; single pairs on a GPU
scattered by 2x), ``wall_seconds`` and ``baseline_wall_seconds`` the medians of each side (``pair_wall_seconds``,
``pair_baseline_wall_seconds``). Compiled (``--compile``, the ``gpu-compiled`` preset), each cell first runs its
speculative sampler once untimed, which compiles its round: compile time stays out of every timed run.

**Placement.** With ``placement="device"`` the states, the randomness and the verification live on the device with
the network; with ``"host"`` (the ``gpu-host`` preset, or ``--placement host``) they stay on the CPU and only the
network's batched calls go to the GPU (:class:`specdiff.placement.DeviceModel`), plain and speculative sampling
alike. For a small network a round of a few hundred small operations costs less on the host than as kernel launches.

Records are flat JSON: speedup records hold ``kind, model, device, placement, compiled, graphed, graph_fallbacks,
steps, batch, rule, drafter, window, target_calls, wall_seconds, baseline_wall_seconds, speedup, call_ratio`` and more
(``graphed``: compiled with the states on a CUDA device, so both samplers replay CUDA graphs; ``graph_fallbacks``:
timed runs in which a capture failed and the sampler ran without its graph, with a warning); cost-curve records hold
``kind, model, blocks, batches, seconds, device``. Top level: ``complete`` (every cell ran). Presets: ``full`` (the
H100 run), ``gpu`` (the same cells in the order a short lease wants: N = 200, 50, 1000, 100), ``gpu-host`` (the same
runs with the states on the host, without the large models' curves, which do not depend on the placement),
``gpu-compiled`` (plain and speculative sampling compiled, the headline cells first: block before token, fixed
windows, reuse and early-exit drafters; a compiled run has no perfect-drafter or adaptive cells, whose in-run timing
of the network would split the compiled round; the preset compiles up to 64 graphs of its round, within the
sampler's :data:`~specdiff.sampler.COMPILED_GRAPHS_LIMIT`), ``cpu`` (a
reduced run for a CPU-only machine) and ``smoke`` (seconds, for the tests). Options: ``--device`` (default: cuda
when available, else cpu), ``--placement device|host`` and ``--compile``. The framework's ``--max-seconds S``
starts no cell after S seconds (the results file then says ``"complete": false`` and ``sweep.not_run`` counts the
cells left); finished cells are kept in the store, so a rerun measures only the rest.

Run ``python -m simulations.bench_gpu [--preset full|gpu-host|gpu-compiled|cpu|smoke] [--device cuda]``
``[--max-seconds S]``. Writes ``results/gpu/bench_gpu.json`` (full) or ``results/smoke/gpu/bench_gpu.json`` (any other
preset): give ``--output results/gpu/bench_gpu_host.json`` to the ``gpu-host`` run, ``--output
results/gpu/bench_gpu_compiled.json`` to the ``gpu-compiled`` run and ``--output results/bench_cpu.json`` to the
``cpu`` run, the files the results page reads.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from simulations.common import EXIT_BLOCKS, network_drafter, shipped_digits
from simulations.experiment import Experiment, Summary, make_cells
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.diagnostics import calibrate_run
from specdiff.drafters import Drafter, FreeDrafter, Model, ModelDrafter
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DIT_PRESETS, DiT
from specdiff.placement import DeviceModel
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import SpeculativeResult, replayed_graph, sample, sample_plain
from specdiff.timing import TimedModel, median_seconds, timed
from specdiff.verify import Rule

DEFAULT_SEED = 0
RULES: tuple[Rule, ...] = ("token-reflection", "block")
#: Largest window of the adaptive policy.
ADAPTIVE_MAX_WINDOW = 16


@dataclass(frozen=True)
class Config:
    """Sizes and options of one run.

    Attributes
    ----------
    steps, batches : tuple of int
        The (N, batch) pairs of the sampling cells, in this order of priority (batch outer, N inner).
    drafters : tuple of str
        Network drafters (``simulations.common.network_drafter``).
    windows : tuple of str
        A fixed window length (``"8"``) or ``"adaptive"``.
    cost_batches : tuple of int
        Batch sizes of the digits cost curves (also measured in each adaptive and perfect-drafter cell).
    large_models : tuple of str
        ``DIT_PRESETS`` names whose cost curves (random weights) are measured at ``large_batches``.
    large_batches : tuple of int
    perfect_windows : tuple of int
        Windows of the perfect-drafter cells.
    repeats : int
        Timed calls per point of a cost curve, and timed (plain, speculative) pairs per sampling cell (the median is
        kept).
    placement : str
        ``"device"``: the states on the model's device; ``"host"``: on the CPU (``DeviceModel``).
    device : str or None
        Where the network runs; None: cuda when available, else cpu.
    compile : bool
        Sample with ``compile=True``, plain and speculative alike.
    rules : tuple of str
        The verification rules, in the order their cells run.
    """

    steps: tuple[int, ...]
    batches: tuple[int, ...]
    drafters: tuple[str, ...]
    windows: tuple[str, ...]
    cost_batches: tuple[int, ...]
    large_models: tuple[str, ...]
    large_batches: tuple[int, ...]
    perfect_windows: tuple[int, ...]
    repeats: int
    placement: str = "device"
    device: str | None = None
    compile: bool = False
    rules: tuple[Rule, ...] = RULES


FULL = Config(
    steps=(50, 100, 200, 1000),
    batches=(1, 64),
    drafters=("frozen", "free-nearest", "free-exit", "extrapolating"),
    windows=("8", "adaptive"),
    cost_batches=(1, 2, 4, 8, 9, 16, 17, 32, 64, 128, 256, 576, 1088),
    large_models=("S/2", "XL/2"),
    large_batches=(1, 2, 4, 8, 16, 32, 64),
    perfect_windows=(4, 8),
    repeats=5,
)
#: The full cells for a short lease: N = 200 first (the headline drafters, the perfect drafter, block against token),
#: then N = 50 (the adaptive policy where a round barely pays), then N = 1000, which costs most.
GPU = replace(FULL, steps=(200, 50, 1000, 100))
GPU_HOST = replace(
    FULL,
    steps=(200, 1000, 50, 100),  # the headline cells first, for a short lease
    large_models=(),
    large_batches=(),
    placement="host",
)
GPU_COMPILED = replace(
    FULL,
    steps=(200, 1000, 50, 100),
    drafters=("free-nearest", "free-exit"),
    windows=("8",),
    large_models=(),
    large_batches=(),
    perfect_windows=(),
    compile=True,
    rules=("block", "token-reflection"),  # each cell compiles its round first: the headline rule before the other
)
CPU = Config(
    steps=(50, 200),
    batches=(1, 8),
    drafters=("frozen", "free-nearest", "free-exit", "extrapolating"),
    windows=("8", "adaptive"),
    cost_batches=(1, 2, 4, 8, 9, 16, 17, 32, 72, 136),
    large_models=("S/2",),
    large_batches=(1, 2, 4),
    perfect_windows=(4, 8),
    repeats=3,
)
SMOKE = Config(
    steps=(12,),
    batches=(2,),
    drafters=("free-nearest", "free-exit"),
    windows=("4", "adaptive"),
    cost_batches=(1, 2, 5, 10),
    large_models=(),
    large_batches=(),
    perfect_windows=(4,),
    repeats=2,
)
#: ``gpu`` has the full preset's cells in the order of a short lease.
PRESETS: dict[str, Config] = {
    "full": FULL,
    "gpu": GPU,
    "gpu-host": GPU_HOST,
    "gpu-compiled": GPU_COMPILED,
    "cpu": CPU,
    "smoke": SMOKE,
}


@dataclass(frozen=True)
class CostCurveCell:
    """A cost curve: seconds per call of ``model``'s first ``blocks`` blocks at each batch size."""

    model: str  # "digits" (the shipped weights) or a DIT_PRESETS name (random weights)
    blocks: int
    batches: tuple[int, ...]
    repeats: int
    device: str


@dataclass(frozen=True)
class SamplingCell:
    """A timed pair: plain, then speculative sampling of the digits DiT with one configuration."""

    steps: int
    batch: int
    rule: Rule
    drafter: str  # a network drafter, or "perfect" (the target itself)
    window: str  # a window length, or "adaptive"
    placement: str
    compiled: bool
    device: str
    cost_batches: tuple[int, ...]  # the digits curve measured in the cell; empty where the cell needs none
    repeats: int


#: The parameters of a cell of this experiment.
BenchCell = CostCurveCell | SamplingCell


# --- Cells ---------------------------------------------------------------------------------------------------------


def default_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cost_curve_cells(config: Config, device: str) -> list[CostCurveCell]:
    """The digits curves (full depth, 1 and ``EXIT_BLOCKS`` blocks), then each large model's (full, a quarter)."""
    digits = DIT_PRESETS["digits"].depth
    exits = (digits, 1, EXIT_BLOCKS)
    curves = [CostCurveCell("digits", blocks, config.cost_batches, config.repeats, device) for blocks in exits]
    for name in config.large_models:
        depth = DIT_PRESETS[name].depth
        for blocks in (depth, max(1, depth // 4)):
            curves.append(CostCurveCell(name, blocks, config.large_batches, config.repeats, device))
    return curves


def sampling_cells(config: Config, device: str) -> list[SamplingCell]:
    """For each (batch, N): every rule x drafter x window, then the perfect drafter at each of its windows.

    Compiled (``config.compile``), without the adaptive and perfect-drafter cells: they time the network inside the
    run (synchronized clock reads), which would split the compiled round into pieces and time something else."""

    def cell(steps: int, batch: int, rule: Rule, drafter: str, window: str) -> SamplingCell:
        needs_curve = window == "adaptive" or drafter == "perfect"
        cost_batches = config.cost_batches if needs_curve else ()
        return SamplingCell(
            steps, batch, rule, drafter, window, config.placement, config.compile, device, cost_batches, config.repeats
        )

    windows = tuple(window for window in config.windows if not (config.compile and window == "adaptive"))
    perfect_windows = () if config.compile else config.perfect_windows
    cells = []
    for batch in config.batches:
        for steps in config.steps:
            for rule in config.rules:
                for drafter in config.drafters:
                    cells += [cell(steps, batch, rule, drafter, window) for window in windows]
            cells += [cell(steps, batch, "block", "perfect", str(window)) for window in perfect_windows]
    return cells


def cells(config: Config) -> list[BenchCell]:
    """The cost curves first, then the sampling cells in the preset's order of priority."""
    device = config.device or default_device()
    return [*cost_curve_cells(config, device), *sampling_cells(config, device)]


# --- Cost curves ---------------------------------------------------------------------------------------------------


def cost_curve(
    model: DiT,
    batches: Sequence[int],
    device: torch.device,
    repeats: int,
    k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Seconds per call of ``model`` (or its first ``k`` blocks) at each batch size, random inputs from
    ``generator`` (drawn on the CPU)."""
    config = model.config
    seconds = []
    for batch in batches:
        x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, generator=generator)
        t = torch.randint(0, 1000, (batch,), generator=generator)
        y = torch.randint(0, config.num_classes, (batch,), generator=generator)
        x, t, y = x.to(device), t.to(device), y.to(device)
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


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``"cpu"``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def run_cost_curve(cell: CostCurveCell, seed: int) -> dict[str, Any]:
    """A cost-curve record; a large model gets random weights from ``seed``, the inputs come from ``seed + 1``."""
    device = torch.device(cell.device)
    if cell.model == "digits":
        model = shipped_digits(cell.device)
    else:
        model = DiT(DIT_PRESETS[cell.model], generator=torch.Generator().manual_seed(seed)).to(device).eval()
    inputs = torch.Generator().manual_seed(seed + 1)
    seconds = cost_curve(model, cell.batches, device, cell.repeats, k=cell.blocks, generator=inputs)
    return {
        "kind": "cost-curve",
        "model": cell.model,
        "blocks": cell.blocks,
        "batches": list(cell.batches),
        "seconds": seconds,
        "device": device_name(device),
    }


# --- Sampling ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimedPairs:
    """Timed (plain, speculative) pairs of one configuration, the same seeds in every run.

    Attributes
    ----------
    result : SpeculativeResult
        The last speculative run's result (every run samples the same noise).
    baseline, speculative : list of float
        Wall seconds of each pair's plain and speculative run.
    draft : list of float
        Seconds spent inside the draft's own calls in each speculative run (0 where not measured).
    """

    result: SpeculativeResult
    baseline: list[float]
    speculative: list[float]
    draft: list[float]

    @property
    def speedups(self) -> list[float]:
        return [plain / speculative for plain, speculative in zip(self.baseline, self.speculative, strict=True)]

    @property
    def speedups_without_draft(self) -> list[float]:
        return [
            plain / (speculative - draft)
            for plain, speculative, draft in zip(self.baseline, self.speculative, self.draft, strict=True)
        ]

    def fields(self) -> dict[str, Any]:
        """The record's timing fields: medians over the pairs, and every pair."""
        return {
            "wall_seconds": float(np.median(self.speculative)),
            "baseline_wall_seconds": float(np.median(self.baseline)),
            "speedup": float(np.median(self.speedups)),
            "pairs": len(self.speedups),
            "pair_wall_seconds": self.speculative,
            "pair_baseline_wall_seconds": self.baseline,
            "pair_speedups": self.speedups,
        }


#: One speculative run: its result, wall seconds and seconds inside the draft's own calls.
SpeculativeRun = Callable[[], tuple[SpeculativeResult, float, float]]


def timed_pairs(plain: Callable[[], float], speculative: SpeculativeRun, pairs: int, warm_up: bool) -> TimedPairs:
    """``pairs`` times plain sampling (``plain()`` returns its wall seconds) then ``speculative()``; with
    ``warm_up``, one untimed speculative run first (a compiled sampler compiles its round there)."""
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    if warm_up:
        speculative()
    baseline, walls, drafts = [], [], []
    for _ in range(pairs):
        baseline.append(plain())
        result, wall, draft = speculative()
        walls.append(wall)
        drafts.append(draft)
    return TimedPairs(result, baseline, walls, drafts)


class _Case:
    """One (model, N, batch) case: plain and speculative runs with the same seeds.

    The noise comes from ``seed``, sample i's generator from ``seed + 1 + i``. With ``host``, the states live on
    the CPU and the model is called through :class:`DeviceModel`.
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
        pairs: int = 1,
    ):
        self.kernel, self.batch, self.device, self.seed = kernel, batch, device, seed
        self.compiled = compiled  # plain and speculative sampling alike: an equally optimized baseline
        self.graph_fallbacks = 0  # timed runs whose CUDA graph capture failed (they ran without one)
        self.pairs = pairs  # timed (plain, speculative) pairs per configuration
        self.model: Model = DeviceModel(model, device) if host else model
        self.states_device = torch.device("cpu") if host else device
        self.labels = torch.arange(batch, device=self.states_device) % 10
        self.noise = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).to(self.states_device)

    def generators(self) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(self.seed + 1 + i) for i in range(self.batch)]

    def _timed(self, function: Callable[[], Any]) -> tuple[Any, float]:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            outcome = timed(function, self.device)
        for warning in caught:
            if "could not be captured" in str(warning.message):
                self.graph_fallbacks += 1  # graph="auto" ran a round or plain step without its CUDA graph
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return outcome

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

        Measured with the network timed (synchronized) inside the runs: the time outside the network per round of a
        speculative run (reuse Free Drafter, window 8, block rule) minus the time outside the network per step of a
        plain run, over the network's time per plain call. The adaptive policy charges it to every speculative round
        (``AdaptiveWindow(round_overhead=...)``).
        """
        plain_model, speculative_model = TimedModel(self.model, self.device), TimedModel(self.model, self.device)
        steps = self.kernel.num_steps
        plain_wall = self.plain_seconds(plain_model)
        result, wall = self._sample(FreeDrafter(), FixedWindow(8), "block", speculative_model)
        plain_step = (plain_wall - plain_model.seconds) / steps
        per_round = (wall - speculative_model.seconds) / result.rounds
        return max(0.0, per_round - plain_step) / (plain_model.seconds / steps)

    def speculative(
        self, rule: Rule, drafter: str, window: str, cost: Callable[[int], float] | None = None
    ) -> dict[str, Any]:
        """Plain then speculative sampling; ``cost`` (seconds per call on m states) is required by the adaptive
        policy, whose round overhead is measured first."""
        steps = self.kernel.num_steps
        policy: WindowPolicy
        overhead = None
        if window == "adaptive":
            if cost is None:
                raise ValueError("the adaptive policy needs the cost curve")
            overhead = self.round_overhead()
            policy = AdaptiveWindow(
                max_window=ADAPTIVE_MAX_WINDOW,
                batch_cost=lambda m: cost(self.batch * m) / cost(self.batch),
                round_overhead=overhead,
            )
        else:
            policy = FixedWindow(int(window))

        def run() -> tuple[SpeculativeResult, float, float]:
            return (*self._sample(network_drafter(drafter), policy, rule), 0.0)

        timing = timed_pairs(self.plain_seconds, run, self.pairs, warm_up=self.compiled)
        result = timing.result
        summary = calibrate_run(result, rule) if result.accepted else None
        return {
            "steps": steps,
            "batch": self.batch,
            "rule": "token" if rule == "token-reflection" else "block",
            "drafter": drafter,
            "window": window,
            "target_calls": result.target_calls,
            "sequential_cost": result.sequential_cost,
            **timing.fields(),
            "baseline_target_calls": steps,
            "call_ratio": steps / result.target_calls,
            "measured_steps_per_round": summary.measured_steps_per_round if summary else 1.0,
            "predicted_steps_per_round": summary.predicted_steps_per_round if summary else 1.0,
            "calibration_z": summary.z if summary else None,
            "round_overhead": overhead,
        }

    def perfect(self, window: int, cost: Callable[[int], float]) -> dict[str, Any]:
        """Plain then speculative sampling with the target as its own draft (block rule, fixed window)."""
        steps = self.kernel.num_steps

        def run() -> tuple[SpeculativeResult, float, float]:
            draft_model = TimedModel(self.model, self.device)
            drafter = ModelDrafter(draft_model, 0.0, name="perfect")
            return (*self._sample(drafter, FixedWindow(window), "block"), draft_model.seconds)

        timing = timed_pairs(self.plain_seconds, run, self.pairs, warm_up=self.compiled)
        without_draft = float(np.median(timing.speedups_without_draft))
        ideal = (window + 1) / (cost(self.batch * (window + 1)) / cost(self.batch))
        return {
            "steps": steps,
            "batch": self.batch,
            "rule": "block",
            "drafter": "perfect",
            "window": str(window),
            "target_calls": timing.result.target_calls,
            "sequential_cost": float(timing.result.target_calls),
            **timing.fields(),
            "baseline_target_calls": steps,
            "call_ratio": steps / timing.result.target_calls,
            "draft_seconds": float(np.median(timing.draft)),
            "pair_draft_seconds": timing.draft,
            "speedup_without_draft": without_draft,
            "ideal_speedup": ideal,
            "efficiency": without_draft / ideal,
        }


#: The (device, placement, compiled, N, batch) cases this process has already sampled once untimed.
_WARM: set[tuple[str, str, bool, int, int]] = set()


def _warm_up(case: _Case, cell: SamplingCell) -> None:
    """One untimed plain run per case and process, before its first timed run (first-call costs stay out)."""
    key = (cell.device, cell.placement, cell.compiled, cell.steps, cell.batch)
    if key not in _WARM:
        case.plain_seconds()
        _WARM.add(key)


def run_sampling(cell: SamplingCell, seed: int) -> dict[str, Any]:
    """A speedup record: the digits curve (where the cell needs it), then the timed plain and speculative runs."""
    device = torch.device(cell.device)
    model = shipped_digits(cell.device)
    kernel = DDPMKernel(linear_schedule(1000), num_steps=cell.steps)
    host = cell.placement == "host"
    case = _Case(model, kernel, cell.batch, device, seed, host=host, compiled=cell.compiled, pairs=cell.repeats)
    _warm_up(case, cell)
    cost = None
    if cell.cost_batches:
        inputs = torch.Generator().manual_seed(seed + 1)
        seconds = cost_curve(model, cell.cost_batches, device, cell.repeats, generator=inputs)
        cost = _interpolated(cell.cost_batches, seconds)
    if cell.drafter == "perfect":
        if cost is None:
            raise ValueError("a perfect-drafter cell needs the cost curve")
        record = case.perfect(int(cell.window), cost)
    else:
        record = case.speculative(cell.rule, cell.drafter, cell.window, cost)
    context = {"model": "digits", "device": device_name(device), "placement": cell.placement}
    # Both samplers run with graph="auto": they replay CUDA graphs unless a capture failed (graph_fallbacks).
    graphed = replayed_graph("auto", cell.compiled, case.states_device) == "cuda"
    flags = {"compiled": cell.compiled, "graphed": graphed, "graph_fallbacks": case.graph_fallbacks}
    return {"kind": "speedup", **context, **flags, **record}


def run_cell(cell: BenchCell, seed: int) -> dict[str, Any]:
    """The record of one cell: a cost curve or a timed plain/speculative pair."""
    if isinstance(cell, CostCurveCell):
        return run_cost_curve(cell, seed)
    return run_sampling(cell, seed)


# --- Summary -------------------------------------------------------------------------------------------------------


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per record."""
    if record["kind"] == "cost-curve":
        points = ", ".join(f"{b}: {1e3 * s:.3g} ms" for b, s in zip(record["batches"], record["seconds"], strict=True))
        return f"cost curve {record['model']}, {record['blocks']} blocks: {points}"
    line = (
        f"N={record['steps']:<5} B={record['batch']:<3} {record['rule']:<5} {record['drafter']:<13} "
        f"L={record['window']:<8} calls {record['target_calls']:<5} speedup {record['speedup']:.2f}x "
        f"(calls {record['call_ratio']:.2f}x)"
    )
    if "efficiency" in record:
        line += f"; without the draft {record['speedup_without_draft']:.2f}x of ideal {record['ideal_speedup']:.2f}x"
        line += f" = efficiency {record['efficiency']:.0%}"
    return line


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Whether every cell ran (``complete``), and a line per speedup record."""
    speedups = [record for record in records if record["kind"] == "speedup"]
    return Summary(
        fields={"complete": len(records) == len(cells(config))},
        text="\n".join(describe(record) for record in speedups),
    )


EXPERIMENT = Experiment(
    module="simulations.bench_gpu",
    description=__doc__ or "",
    presets=PRESETS,
    default_seed=DEFAULT_SEED,
    output="gpu/bench_gpu.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/models/dit.py",
        "specdiff/models/weights/dit_digits.safetensors",
        "specdiff/models/weights/dit_digits.json",
        "specdiff/placement.py",
        "specdiff/timing.py",
        "specdiff/diagnostics.py",
        "simulations/common.py",
        "simulations/bench_gpu.py",
    ),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    timed=True,
    describe=describe,
    options=("device", "placement", "compile"),
)


def run(
    config: Config, device: torch.device | str | None = None, seed: int = DEFAULT_SEED, progress: bool = True
) -> dict[str, Any]:
    """Every cell of ``config`` in this process, each with ``seed`` itself: no store, no results file.

    For quick checks (``simulations/gpu_checks.sh``) and tests: two configs that differ only in their placement then
    draw the same noise. Returns ``{"cost_curves": [...], "records": [...], "complete": True}``, the speedup records
    apart from the cost curves.
    """
    if device is not None:
        config = replace(config, device=str(device))
    records = []
    for cell in make_cells(EXPERIMENT, config, seed):
        records.append(run_cell(cell.parameters, seed))
        if progress:
            print(describe(records[-1]), flush=True)
    curves = [record for record in records if record["kind"] == "cost-curve"]
    speedups = [record for record in records if record["kind"] == "speedup"]
    return {"cost_curves": curves, "records": speedups, "complete": True}


def bench_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A bench results file, in this layout or the one before the experiment framework, as the report and the
    figures read it: ``records`` the speedup records only, ``cost_curves`` the cost curves, ``complete`` whether
    every cell ran, ``max_seconds`` the budget (None: none)."""
    records = payload["records"]
    sweep = payload.get("sweep", {})
    if "cost_curves" in payload:  # the layout before the experiment framework
        speedups, curves = list(records), list(payload["cost_curves"])
    else:
        speedups = [r for r in records if r["kind"] == "speedup"]
        curves = [r for r in records if r["kind"] == "cost-curve"]
    complete = payload.get("complete", True) and not sweep.get("not_run", 0) and not sweep.get("failed", 0)
    max_seconds = payload.get("max_seconds", sweep.get("max_seconds"))
    return {**payload, "records": speedups, "cost_curves": curves, "complete": complete, "max_seconds": max_seconds}


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXPERIMENT",
    "PRESETS",
    "BenchCell",
    "Config",
    "CostCurveCell",
    "SamplingCell",
    "cells",
    "cost_curve",
    "main",
    "run",
    "run_cell",
    "summarize",
]
