"""What a speculative round costs the host: kernel launches, host synchronizations and the sampler's own CPU time.

On a GPU every tensor operation is a kernel launch (5-10 µs of host time) and every host read of a device value
stalls the launch queue, so a round's fixed cost is what decides whether speculation pays off with a cheap target.
This benchmark measures it on a near-free chain where the sampler is everything: ``x -> 0.98 x + b + sigma noise``
in d dimensions, ``b`` a fixed vector of norm 0.5 along (1, -1, 1, ...), sigma 0.1 at every one of N steps, float32
states; the draft mean is ``0.98 x + 0.9 b``, a gap of ``0.1 |b| / sigma = 0.5`` sigma at every step (roughly 80% of
the drafted steps accepted, so both the accepting and the residual paths run). Only the public API is used:
``specdiff.sampler.plain_chain`` and ``specdiff.sampler.speculative_chain`` (fixed window ``window=L``).

Per row (d, batch B, window L, rule, mode):

- kernel-launching operations and host synchronizations (by kind) per round, from one run counted by
  :class:`specdiff.opcount.OpCounter` (``cpu_is_host=True``) under :class:`specdiff.opcount.SimulatedDevice`, with
  ``x_init`` and ``b`` on the simulated device and ``sigmas`` and the generators on the host: the placement of a GPU
  run with the states on the device. The operations of the two mean functions are counted apart (``model_*``), so
  the launches are the sampler's own. Divided by ``result.rounds``. Of them, the launches made inside the
  residual's quantile and mass (:data:`ATTRIBUTED`, the block rule's residual draw and stop probabilities) are also
  counted apart (``launches_within``; ``targets.launches_per_round.of_which``, not judged).
- the same per plain step, from a counted ``plain_chain`` run divided by N;
- the sampler's own CPU time per round and per plain step: wall time less the time spent inside the target and draft
  mean functions (``time.perf_counter`` around each call), fastest of 3 repeats (compiled: 20, a run taking
  milliseconds) after a warm-up run, one thread, plain CPU tensors (no counter, no simulation). As in
  ``simulations.overhead``, glibc is asked to keep freed memory (without it the large d = 16384 rounds spend as much
  time faulting pages in as computing).

Mode ``compiled`` passes ``compile=True`` to ``speculative_chain`` (and to ``plain_chain`` if it takes it); where the
keyword does not exist its cells are recorded as ``"unavailable"``. A compiled round (or plain step) is one graph with
the mean functions traced into it, so there the sampler's own time is the wall time, the near-free means included, for
plain and speculative sampling alike (timing the means would put a clock read inside the graph). Compiled cells are
timed only, never counted: under a dispatch mode compiled code runs its eager operations, and fusion is not seen. Each
compiled row is timed again on a chain ``longer_factor`` (4) times longer, and the two runs are split into the time each
added round costs and a fixed time per run (the per-sample keys, the first plan, the move of the statistics to the host;
:func:`steady_state`), which a 32-step run divides over its few rounds. The compiled target is judged on whole runs of N
steps, as before; the steady-state ratio is reported beside it.

The ``targets`` section evaluates the goals of the round rebuild from these measurements: at most one host
synchronization per round; at most 300 kernel-launching operations per round eager at L = 8, not growing with B
or d (at most 10% above the smallest B and d of the same rule); compiled, the sampler's own CPU time per round at
d = 64, B = 1, L = 8 at most twice a plain step's. Each is ``met``, ``not met`` or ``unavailable``.

Cells (``simulations.experiment``; wall times, so ``timed``): one per (d, B, mode), which measures plain sampling
and then every (L, rule) on the same chain and noise (the cell's seed) in one process, so the rounds and the plain
step they are compared with (the compiled target's ratio included) always come from one complete measurement.

Run ``python -m simulations.round_cost`` (5 to 10 minutes on a 2-core machine, most of it the eager d = 16384,
B = 64 cell; one thread) or ``--smoke`` (seconds). Writes
``results/round_cost.json`` (``--output`` to change it) and prints markdown tables. Besides the records (one per
cell: ``plain`` and its ``speculative`` rows), the file holds every row flattened as ``plain`` and ``cells``, the
layout of ``results/round_cost_before.json`` (the same benchmark run before the round was rebuilt, which the
results page compares with), and ``targets``.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import specdiff
from simulations.experiment import Experiment, Summary, keep_freed_memory
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.opcount import OpCounter, OpCounts, SimulatedDevice
from specdiff.sampler import plain_chain, speculative_chain

DEFAULT_SEED = 11

CONTRACTION = 0.98
DRIFT_NORM = 0.5
DRAFT_DRIFT_SCALE = 0.9
SIGMA = 0.1
DTYPE = torch.float32
RULES = ("block", "token-reflection")
MODES = ("eager", "compiled")
#: The sampler sources whose hash is recorded (the cost measured is theirs).
SOURCES = ("sampler.py", "verify.py", "residual.py", "randomness.py", "drafters.py", "policies.py", "chain.py")

#: Targets of the round rebuild.
MAX_SYNCS_PER_ROUND = 1.0
MAX_LAUNCHES_PER_ROUND = 300.0
TARGET_WINDOW = 8
MAX_GROWTH = 1.1
MAX_COMPILED_ROUND_OVER_PLAIN_STEP = 2.0
#: Functions whose launches are also counted apart (``OpCounter(attribute=...)``): the block rule's residual draw
#: (its quantile) and its stop probabilities (the residual's mass).
RESIDUAL_QUANTILE = "residual_law.residual_offset_quantile"
RESIDUAL_MASS = "residual_law.log_residual_mass"
ATTRIBUTED = (RESIDUAL_QUANTILE, RESIDUAL_MASS)


@dataclass(frozen=True)
class Config:
    dimensions: tuple[int, ...]
    batches: tuple[int, ...]
    windows: tuple[int, ...]
    steps: int
    repeats: int
    #: The compiled cells (each shape compiles once, about 20-60 s on this CPU): these dimensions and windows only.
    compiled_dimensions: tuple[int, ...] = ()
    compiled_windows: tuple[int, ...] = ()
    #: Compiled cells are also timed on a chain this many times longer (one more compile each), which splits their
    #: time into a cost per added round (or step) and a fixed cost per run; see :func:`steady_state`.
    longer_factor: int = 4
    #: Timed repeats of a compiled row (a run takes milliseconds: the fastest of many is robust to a busy machine).
    compiled_repeats: int = 20


FULL = Config(
    dimensions=(64, 16384),
    batches=(1, 64),
    windows=(4, 8, 16),
    steps=32,
    repeats=3,
    compiled_dimensions=(64,),
    compiled_windows=(8,),
)
SMOKE = Config(dimensions=(8,), batches=(1, 3), windows=(2,), steps=8, repeats=1)


@dataclass(frozen=True)
class SteadyState:
    """A run's time split into what each added round costs and what the run costs once (set-up and results).

    Attributes
    ----------
    microseconds_per_added_round : float
        ``(t_long - t_short) / (rounds_long - rounds_short)``: the time per round of a long run.
    fixed_microseconds_per_run : float
        ``t_short - rounds_short x microseconds_per_added_round``: the time that does not grow with the rounds (the
        per-sample keys, the first plan, the move of the statistics to the host), which a short run divides over
        few rounds. An estimate from two timings: where it is small against the rounds' time (large batches) their
        noise can make it come out negative.
    """

    microseconds_per_added_round: float
    fixed_microseconds_per_run: float


def steady_state(short_seconds: float, short_rounds: int, long_seconds: float, long_rounds: int) -> SteadyState:
    """Split two runs of the same sampler, with ``short_rounds < long_rounds`` rounds, into a cost per added round
    and a fixed cost per run (a straight line through the two points)."""
    if not 0 < short_rounds < long_rounds:
        raise ValueError(f"need 0 < short_rounds < long_rounds, got {short_rounds} and {long_rounds}")
    per_round = (long_seconds - short_seconds) / (long_rounds - short_rounds)
    return SteadyState(1e6 * per_round, 1e6 * (short_seconds - short_rounds * per_round))


@dataclass(frozen=True)
class RoundCell:
    """One (d, B, mode): plain sampling and every (window, rule), measured one after the other in one process."""

    dimension: int
    batch: int
    mode: str  # "eager" or "compiled"
    steps: int
    repeats: int
    windows: tuple[int, ...]  # every window of the sweep: each (window, rule) gets a row
    rules: tuple[str, ...]
    measured_windows: tuple[int, ...]  # the windows measured (compiled: limited to save compile time)
    plain_measured: bool  # compiled: whether plain sampling is measured at this d
    longer_factor: int  # compiled: also timed on a chain this many times longer (see steady_state)


class TimedMean:
    """A mean function that adds up the wall time spent inside it, its operations excluded from a counter.

    Untimed (``timed=False``) it only calls the function: a compiled round traces the mean into its graph, where a
    clock read would split the graph (and force a recompilation for every new total)."""

    def __init__(self, function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], timed: bool = True):
        self.function = function
        self.timed = timed
        self.seconds = 0.0
        self.counter: OpCounter | None = None

    def __call__(self, states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        if not self.timed:
            return self.function(states, steps)
        context: AbstractContextManager[None] = nullcontext() if self.counter is None else self.counter.excluding()
        with context:
            start = time.perf_counter()
            output = self.function(states, steps)
            self.seconds += time.perf_counter() - start
        return output


def drift(dimension: int) -> torch.Tensor:
    """``b``: norm ``DRIFT_NORM`` along (1, -1, 1, ...)."""
    sign = torch.tensor([(-1.0) ** i for i in range(dimension)], dtype=DTYPE)
    return DRIFT_NORM * sign / math.sqrt(dimension)


def means(b: torch.Tensor, timed: bool = True) -> tuple[TimedMean, TimedMean]:
    """The target mean ``0.98 x + b`` and the draft mean ``0.98 x + 0.9 b``, timed unless ``timed=False``."""
    draft_b = DRAFT_DRIFT_SCALE * b
    return (
        TimedMean(lambda states, steps: CONTRACTION * states + b, timed),
        TimedMean(lambda states, steps: CONTRACTION * states + draft_b, timed),
    )


def initial_state(batch: int, dimension: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dimension, dtype=DTYPE, generator=generator)


def compile_keywords() -> dict[str, bool]:
    """Whether ``speculative_chain`` and ``plain_chain`` take ``compile`` (another change adds it)."""
    return {
        "speculative_chain": "compile" in inspect.signature(speculative_chain).parameters,
        "plain_chain": "compile" in inspect.signature(plain_chain).parameters,
    }


def _run(
    sampler: str,
    target: TimedMean,
    draft: TimedMean,
    x_init: torch.Tensor,
    sigmas: torch.Tensor,
    seed: int,
    window: int,
    rule: Any,  # a specdiff.verify.Rule
    keywords: dict[str, Any],
) -> tuple[Any, float]:
    """One run: (result, wall seconds)."""
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    if sampler == "plain":
        result: Any = plain_chain(target, sigmas, x_init, generator=generator, **keywords)
    else:
        result = speculative_chain(
            target, draft, sigmas, x_init, window=window, rule=rule, generator=generator, **keywords
        )
    seconds = time.perf_counter() - start
    return result, seconds


def count(
    sampler: str, dimension: int, batch: int, window: int, rule: str, steps: int, seed: int, keywords: dict[str, Any]
) -> tuple[OpCounts, OpCounts, int]:
    """One counted run on the simulated device: (the sampler's counts, the mean functions' counts, rounds)."""
    simulation = SimulatedDevice()
    b = simulation.put(drift(dimension))
    x_init = simulation.put(initial_state(batch, dimension, seed))
    sigmas = torch.full((steps,), SIGMA, dtype=torch.float64)
    target, draft = means(b)
    with simulation, OpCounter(cpu_is_host=True, attribute=ATTRIBUTED) as counter:
        target.counter = draft.counter = counter
        result, _ = _run(sampler, target, draft, x_init, sigmas, seed + 1, window, rule, keywords)
    rounds = steps if sampler == "plain" else int(result.rounds)
    return counter.counts, counter.excluded, rounds


def own_seconds(
    sampler: str,
    dimension: int,
    batch: int,
    window: int,
    rule: str,
    steps: int,
    seed: int,
    repeats: int,
    keywords: dict[str, Any],
    warm_up: bool = True,
) -> tuple[list[float], int]:
    """The sampler's own seconds of ``repeats`` runs, and rounds: eager, the wall time less the mean functions';
    compiled, the wall time (the two means are traced into the compiled step or round, one multiply-add each).

    With ``warm_up`` a first run is made and not timed (the eager cells skip it: their counted run, the same sampler
    on the same shapes, is their warm-up)."""
    b = drift(dimension)
    x_init = initial_state(batch, dimension, seed)
    sigmas = torch.full((steps,), SIGMA, dtype=torch.float64)
    seconds, rounds = [], steps
    for repeat in range(repeats + 1 if warm_up else repeats):
        target, draft = means(b, timed=not keywords.get("compile", False))
        result, wall = _run(sampler, target, draft, x_init, sigmas, seed + 1, window, rule, keywords)
        if sampler != "plain":
            rounds = int(result.rounds)
        if repeat > 0 or not warm_up:
            seconds.append(wall - target.seconds - draft.seconds)
    return seconds, rounds


def _per(counts: OpCounts, model: OpCounts, number: int, top: int = 15) -> dict[str, Any]:
    own, model_per = counts.per(number), model.per(number)
    return {
        "launches": own.launches,
        "syncs": own.total_syncs,
        "syncs_by_kind": dict(own.syncs),
        "ops": own.ops,
        "host_ops": own.host_ops,
        "nonblocking_copies": own.nonblocking_copies,
        "model_launches": model_per.launches,
        "model_syncs": model_per.total_syncs,
        "top_launches": dict(own.launch_names.most_common(top)),
        "sync_sites": dict(own.sync_sites.most_common()),
        "launches_within": {name: own.launches_within[name] for name in ATTRIBUTED},
    }


def _counted(
    sampler: str, dimension: int, batch: int, window: int, rule: str, steps: int, seed: int, keywords: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    try:
        counts, model, rounds = count(sampler, dimension, batch, window, rule, steps, seed, keywords)
        # The same run twice as long: the synchronizations it adds per added round are the loop's own, without the
        # set-up's (copies of the schedule and keys to the device) and the final move of the statistics to the host.
        longer, _, longer_rounds = count(sampler, dimension, batch, window, rule, 2 * steps, seed, keywords)
    except Exception as error:  # a compiled sampler may not run under the simulation
        return None, f"{type(error).__name__}: {str(error)[:300]}"
    marginal = (longer.total_syncs - counts.total_syncs) / max(longer_rounds - rounds, 1)
    return {"rounds": rounds, **_per(counts, model, rounds), "loop_syncs": marginal}, None


def _steady_state(
    sampler: str,
    cell: RoundCell,
    window: int,
    rule: str,
    seed: int,
    keywords: dict[str, Any],
    short: tuple[list[float], int],
) -> dict[str, Any]:
    """Time the same sampler on a chain ``cell.longer_factor`` times longer (after a warm-up run, which compiles
    its shapes) and split the two into a :class:`SteadyState` (a plain step counts as a round)."""
    steps = cell.longer_factor * cell.steps
    seconds, rounds = own_seconds(
        sampler, cell.dimension, cell.batch, window, rule, steps, seed, cell.repeats, keywords, warm_up=True
    )
    split = steady_state(min(short[0]), short[1], min(seconds), rounds)
    return {
        "longer_steps": steps,
        "longer_rounds": rounds,
        "longer_microseconds_per_round_repeats": [1e6 * s / rounds for s in seconds],
        **asdict(split),
    }


def measure_plain(cell: RoundCell, seed: int) -> dict[str, Any]:
    """Plain sampling at the cell's (d, B, mode): counts per step (eager) and the sampler's own time per step."""
    keywords = compile_keywords()
    compiled = cell.mode == "compiled"
    record: dict[str, Any] = {"dimension": cell.dimension, "batch": cell.batch, "mode": cell.mode, "steps": cell.steps}
    if compiled:
        record["compiled"] = keywords["plain_chain"]
        if not keywords["speculative_chain"]:
            return {**record, "status": "unavailable", "reason": "speculative_chain takes no compile keyword"}
    if not cell.plain_measured:
        return {**record, "status": "not run", "reason": "compiled cells are limited to save compile time"}
    extra = {"compile": True} if compiled and keywords["plain_chain"] else {}
    counted: dict[str, Any] | None
    error: str | None
    if compiled:
        counted, error = None, "not counted: the counter cannot see compiled kernels"
    else:
        counted, error = _counted("plain", cell.dimension, cell.batch, 0, "block", cell.steps, seed, extra)
    seconds, _ = own_seconds(
        "plain",
        cell.dimension,
        cell.batch,
        0,
        "block",
        cell.steps,
        seed,
        cell.repeats,
        extra,
        warm_up=compiled,
    )
    record.update(
        status="measured",
        counts_per_step=counted,
        count_error=error,
        sampler_microseconds_per_step=1e6 * min(seconds) / cell.steps,
        sampler_microseconds_per_step_repeats=[1e6 * s / cell.steps for s in seconds],
        steady_state=(
            _steady_state("plain", cell, 0, "block", seed, extra, (seconds, cell.steps)) if compiled else None
        ),
    )
    return record


def measure_round(cell: RoundCell, window: int, rule: str, seed: int) -> dict[str, Any]:
    """Speculative sampling at the cell's (d, B, mode) with ``window`` and ``rule``: counts per round (eager) and
    the sampler's own time per round."""
    record: dict[str, Any] = {
        "dimension": cell.dimension,
        "batch": cell.batch,
        "window": window,
        "rule": rule,
        "mode": cell.mode,
    }
    if cell.mode == "compiled" and not compile_keywords()["speculative_chain"]:
        return {**record, "status": "unavailable", "reason": "speculative_chain takes no compile keyword"}
    if window not in cell.measured_windows:
        return {**record, "status": "not run", "reason": "compiled cells are limited to save compile time"}
    compiled = cell.mode == "compiled"
    extra = {"compile": True} if compiled else {}
    start = time.perf_counter()
    counted: dict[str, Any] | None
    error: str | None
    if compiled:
        # Compiled code is timed only: under a dispatch mode torch.compile runs nothing compiled (and the counter
        # would not see fused kernels anyway); it is never run under a counter, which could make it fall back.
        counted, error = None, "not counted: the counter cannot see compiled kernels"
    else:
        counted, error = _counted("speculative", cell.dimension, cell.batch, window, rule, cell.steps, seed, extra)
    seconds, rounds = own_seconds(
        "speculative", cell.dimension, cell.batch, window, rule, cell.steps, seed, cell.repeats, extra, compiled
    )
    record.update(
        status="measured",
        rounds=rounds,
        steps_per_round=cell.steps / rounds,
        counts_per_round=counted,
        count_error=error,
        sampler_microseconds_per_round=1e6 * min(seconds) / rounds,
        sampler_microseconds_per_round_repeats=[1e6 * s / rounds for s in seconds],
        steady_state=(
            _steady_state("speculative", cell, window, rule, seed, extra, (seconds, rounds)) if compiled else None
        ),
        seconds=time.perf_counter() - start,
    )
    return record


def cells(config: Config) -> list[RoundCell]:
    """One cell per (d, B, mode); compiled, only ``compiled_dimensions`` and ``compiled_windows`` are measured."""
    result = []
    for dimension in config.dimensions:
        for batch in config.batches:
            for mode in MODES:
                compiled_here = dimension in config.compiled_dimensions
                if mode == "eager":
                    windows, plain_measured = config.windows, True
                else:
                    windows = tuple(w for w in config.windows if compiled_here and w in config.compiled_windows)
                    plain_measured = compiled_here
                result.append(
                    RoundCell(
                        dimension=dimension,
                        batch=batch,
                        mode=mode,
                        steps=config.steps,
                        repeats=config.repeats if mode == "eager" else config.compiled_repeats,
                        windows=config.windows,
                        rules=RULES,
                        measured_windows=windows,
                        plain_measured=plain_measured,
                        longer_factor=config.longer_factor,
                    )
                )
    return result


def run_cell(cell: RoundCell, seed: int) -> dict[str, Any]:
    """Plain sampling, then every (window, rule), at the cell's (d, B, mode), on the same chain and noise."""
    kept = keep_freed_memory()
    plain = measure_plain(cell, seed)
    speculative = [measure_round(cell, window, rule, seed) for window in cell.windows for rule in cell.rules]
    return {
        "dimension": cell.dimension,
        "batch": cell.batch,
        "mode": cell.mode,
        "kept_freed_memory": kept,
        "plain": plain,
        "speculative": speculative,
    }


def _measured(cells: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (cell for cell in cells if cell["status"] == "measured" and cell["counts_per_round"] is not None)


def _loop_syncs(counts: dict[str, Any]) -> float:
    """Synchronizations per round in the sampling loop (per added round), else per round of the whole run."""
    return float(counts.get("loop_syncs", counts["syncs"]))


def evaluate_targets(config: Config, cells: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, Any]:
    """The rebuild's goals, each ``met``, ``not met`` or ``unavailable``, with the values they were judged on."""
    targets: dict[str, Any] = {}

    counted = list(_measured(cells))
    if counted:
        worst = max(counted, key=lambda cell: _loop_syncs(cell["counts_per_round"]))
        value = _loop_syncs(worst["counts_per_round"])
        targets["syncs_per_round"] = {
            "goal": f"at most {MAX_SYNCS_PER_ROUND:g} host synchronization per round in the loop, every cell",
            "status": "met" if value <= MAX_SYNCS_PER_ROUND else "not met",
            "worst": value,
            "worst_cell": {key: worst[key] for key in ("dimension", "batch", "window", "rule", "mode")},
        }
    else:
        targets["syncs_per_round"] = {"status": "unavailable"}

    eager = [cell for cell in _measured(cells) if cell["mode"] == "eager" and cell["window"] == TARGET_WINDOW]
    goal = (
        f"at most {MAX_LAUNCHES_PER_ROUND:g} kernel-launching ops per round, eager, L = {TARGET_WINDOW}, and not"
        f" growing with B or d (at most {MAX_GROWTH:g}x the smallest B and d of the same rule)"
    )
    if eager:
        launches = {
            f"{cell['rule']} d={cell['dimension']} B={cell['batch']}": cell["counts_per_round"]["launches"]
            for cell in eager
        }
        growth = {}
        for rule in sorted({cell["rule"] for cell in eager}):
            rows = [cell for cell in eager if cell["rule"] == rule]
            base = min(rows, key=lambda cell: (cell["dimension"], cell["batch"]))["counts_per_round"]["launches"]
            growth[rule] = max(cell["counts_per_round"]["launches"] for cell in rows) / base
        met = max(launches.values()) <= MAX_LAUNCHES_PER_ROUND and max(growth.values()) <= MAX_GROWTH
        targets["launches_per_round"] = {
            "goal": goal,
            "status": "met" if met else "not met",
            "launches_per_round": launches,
            "growth": growth,
            # Not judged: how many of them the residual's quantile and mass make (block rule only).
            "of_which": {
                name: {
                    f"{cell['rule']} d={cell['dimension']} B={cell['batch']}": cell["counts_per_round"]
                    .get("launches_within", {})
                    .get(name)
                    for cell in eager
                }
                for name in ATTRIBUTED
            },
        }
    else:
        targets["launches_per_round"] = {"goal": goal, "status": "unavailable"}

    goal = (
        f"compiled, the sampler's own CPU time per round at d = 64, B = 1, L = {TARGET_WINDOW} at most"
        f" {MAX_COMPILED_ROUND_OVER_PLAIN_STEP:g}x a plain step's"
    )
    compiled = [
        cell
        for cell in cells
        if cell["mode"] == "compiled"
        and cell["status"] == "measured"
        and (cell["dimension"], cell["batch"], cell["window"]) == (64, 1, TARGET_WINDOW)
    ]
    plain_step = {
        row["mode"]: row["sampler_microseconds_per_step"]
        for row in plain
        if row["status"] == "measured" and (row["dimension"], row["batch"]) == (64, 1)
    }
    reference = plain_step.get("compiled", plain_step.get("eager"))
    if compiled and reference:
        ratios = {cell["rule"]: cell["sampler_microseconds_per_round"] / reference for cell in compiled}
        targets["compiled_round_time"] = {
            "goal": goal,
            "status": "met" if max(ratios.values()) <= MAX_COMPILED_ROUND_OVER_PLAIN_STEP else "not met",
            "judged_on": f"whole runs of N = {config.steps} steps, their time divided by their rounds (or steps)",
            "round_over_plain_step": ratios,
            "plain_microseconds_per_step": reference,
            **_steady_state_ratios(compiled, plain),
        }
    else:
        targets["compiled_round_time"] = {"goal": goal, "status": "unavailable"}
    return targets


def _steady_state_ratios(compiled: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, Any]:
    """Beside the target (not judged): the compiled rounds' and plain step's cost per added round, their ratio,
    and each run's fixed cost, at d = 64, B = 1; empty without a compiled plain step split the same way."""
    plain_split = next(
        (
            row.get("steady_state")
            for row in plain
            if row["status"] == "measured" and row["mode"] == "compiled" and (row["dimension"], row["batch"]) == (64, 1)
        ),
        None,
    )
    if plain_split is None or not all(cell.get("steady_state") for cell in compiled):
        return {}
    per_step = plain_split["microseconds_per_added_round"]
    return {
        "steady_state_round_over_plain_step": {
            cell["rule"]: cell["steady_state"]["microseconds_per_added_round"] / per_step for cell in compiled
        },
        "steady_state_plain_microseconds_per_step": per_step,
        "fixed_microseconds_per_run": {
            "plain": plain_split["fixed_microseconds_per_run"],
            **{cell["rule"]: cell["steady_state"]["fixed_microseconds_per_run"] for cell in compiled},
        },
    }


def _kinds(syncs: dict[str, float]) -> str:
    parts = [f"{kind.replace('_', ' ')} {value:.2f}" for kind, value in syncs.items() if value > 0]
    return ", ".join(parts) or "–"


def markdown(cells: list[dict[str, Any]], plain: list[dict[str, Any]]) -> str:
    lines = [
        "| d | B | L | rule | mode | rounds | launches / round | syncs / round | by kind | host ops / round"
        " | own µs / round |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        head = f"| {cell['dimension']} | {cell['batch']} | {cell['window']} | {cell['rule']} | {cell['mode']} |"
        if cell["status"] != "measured":
            lines.append(f"{head} unavailable | | | | | |")
            continue
        counts = cell["counts_per_round"]
        if counts is None:
            numbers = "– | – | – | –"
        else:
            numbers = (
                f"{counts['launches']:.1f} | {counts['syncs']:.2f} | {_kinds(counts['syncs_by_kind'])}"
                f" | {counts['host_ops']:.1f}"
            )
        lines.append(f"{head} {cell['rounds']} | {numbers} | {cell['sampler_microseconds_per_round']:.0f} |")
    lines += [
        "",
        "| d | B | mode | launches / step | syncs / step | by kind | host ops / step | own µs / step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in plain:
        head = f"| {row['dimension']} | {row['batch']} | {row['mode']} |"
        if row["status"] != "measured":
            lines.append(f"{head} unavailable | | | | |")
            continue
        counts = row["counts_per_step"]
        numbers = (
            "– | – | – | –"
            if counts is None
            else f"{counts['launches']:.1f} | {counts['syncs']:.2f} | {_kinds(counts['syncs_by_kind'])}"
            f" | {counts['host_ops']:.1f}"
        )
        lines.append(f"{head} {numbers} | {row['sampler_microseconds_per_step']:.1f} |")
    return "\n".join(lines)


def sources_sha256() -> dict[str, str]:
    """SHA-256 of the sampler's sources that were measured (``specdiff`` as imported)."""
    package = Path(specdiff.__file__).resolve().parent
    return {
        name: hashlib.sha256((package / name).read_bytes()).hexdigest() for name in SOURCES if (package / name).exists()
    }


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per measured (window, rule) of a cell."""
    lines = []
    for row in record["speculative"]:
        if row["status"] != "measured":
            continue
        counts = row["counts_per_round"] or {}
        lines.append(
            f"d={row['dimension']} B={row['batch']} L={row['window']} {row['rule']} {row['mode']}:"
            f" rounds {row['rounds']}, launches/round {counts.get('launches', float('nan')):.1f},"
            f" syncs/round {counts.get('syncs', float('nan')):.2f},"
            f" own {row['sampler_microseconds_per_round']:.0f} µs/round ({row['seconds']:.1f} s)"
        )
    return "\n".join(lines) or f"d={record['dimension']} B={record['batch']} {record['mode']}: nothing measured"


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The rows of every cell as ``plain`` and ``cells`` (the layout of ``results/round_cost_before.json``), the
    targets judged on them, the markdown tables, and how the chain was counted and timed."""
    plain = [record["plain"] for record in records]
    rows = [row for record in records for row in record["speculative"]]
    targets = evaluate_targets(config, rows, plain)
    table = markdown(rows, plain)
    lines = [table, *(f"target {name}: {target['status']}" for name, target in targets.items())]
    return Summary(
        fields={
            "chain": {
                "target_mean": f"{CONTRACTION} * x + b",
                "draft_mean": f"{CONTRACTION} * x + {DRAFT_DRIFT_SCALE} * b",
                "b": f"norm {DRIFT_NORM} along (1, -1, 1, ...)",
                "drafter": "imperfect: a gap of 0.1 |b| / sigma = 0.5 sigma per step",
                "sigma": SIGMA,
                "dtype": str(DTYPE).removeprefix("torch."),
                "x_init": "standard normal",
            },
            "counting": (
                "specdiff.opcount.OpCounter(cpu_is_host=True) under SimulatedDevice: x_init and b on the simulated"
                " device, sigmas and generators on the host; the mean functions' operations counted apart (model_*)"
            ),
            "timing": (
                "sampler's own seconds (eager: wall less the mean functions; compiled: wall, the means traced into"
                " the compiled step or round), fastest of the repeats after a warm-up run"
                " (eager: the counted run, same code and shapes; compiled: an extra uncounted run); plain sampling"
                " and every (window, rule) of one (d, B, mode) measured in one cell, one after the other; compiled"
                " rows also timed on a chain longer_factor times longer, split into a cost per added round and a"
                " fixed cost per run (steady_state)"
            ),
            "kept_freed_memory": all(record["kept_freed_memory"] for record in records),
            "compile_keyword": compile_keywords(),
            "specdiff_path": str(Path(specdiff.__file__).resolve().parent),
            "sources_sha256": sources_sha256(),
            "plain": plain,
            "cells": rows,
            "targets": targets,
            "table": table,
        },
        text="\n".join(lines),
    )


EXPERIMENT = Experiment(
    module="simulations.round_cost",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="round_cost.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/opcount.py",
        "simulations/overhead.py",
        "simulations/round_cost.py",
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
