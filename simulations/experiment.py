"""One experiment framework: every simulation script is a configuration, a list of cells and a run function.

An :class:`Experiment` names its presets (``full`` and ``smoke``, sometimes ``medium``), how a preset becomes a list
of cells, the pure function that computes one cell's record, and how the records are summarized. :func:`main` owns
the rest: the command line, torch threads, timing, the standard header of the results file, the store of finished
cells, the progress bar, the engine (serial or Dask) and the exit code.

Cells
-----
A cell's *parameters* are a frozen dataclass holding everything its run function reads (sizes included), so the
record is a pure function of the parameters and the cell's seed. Its *identity* is the experiment's module, the
parameters and the sweep's root seed (``--seed``); its **seed** is a hash of the identity alone (less any
:attr:`Experiment.shared_seed_fields`), and its **key** a hash of the identity and of the contents of the code the
experiment measures (:attr:`Experiment.code`). So a
record does not depend on the order of the cells, on how many workers ran them or where; a rerun of the same
parameters after a change to the measured code gets a new key (the cell is recomputed) but the same seed.

Engines
-------
Without ``--workers`` or ``--scheduler`` the cells run one after the other in this process; Dask is not imported.
``--workers K`` starts a local ``dask.distributed`` cluster of K worker processes with one thread each;
``--scheduler ADDRESS`` sends the cells to an existing cluster (its workers need this repository installed). Each
cell sets torch's threads (``--threads``, 1 by default) where it runs, so K workers use K cores.

Store
-----
Each finished cell is written at once to ``<store>/<key>.json`` (``--store``; by default ``results/cells/<name>``
for the full preset, ``results/smoke/cells/<name>`` for the others), through a temporary file and an atomic rename,
so an interrupted write leaves no partial file. One file per cell, rather than one database: only the driver
writes, a file per key needs no locking or schema, a cell is removed (to recompute it) by deleting its file, and a
store on a shared file system serves a cluster as well as one machine. A rerun reads the store, skips the finished
cells whose key is unchanged and runs the rest; the results file is assembled from the store in the cells' order.
Killing a sweep loses only the cells in flight. A cell that raises is stored with its error (and retried on the
next run); the sweep runs the other cells, lists the failures at the end and exits with 1.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import numpy as np

from simulations.cells import cell_key, cell_seed, code_version, jsonable
from simulations.provenance import REPOSITORY_ROOT, git_commit, git_dirty, machine

ConfigT = TypeVar("ConfigT")
ParametersT = TypeVar("ParametersT")

#: The code every experiment's records depend on besides its own list: the seeds' derivation.
FRAMEWORK_CODE = ("simulations/cells.py",)
RESULTS = REPOSITORY_ROOT / "results"


@dataclass(frozen=True)
class Summary:
    """What an experiment adds to its results file besides the records, and whether the run passed."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    passed: bool = True
    text: str = ""  # printed at the end of the run
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)  # written as <output>.<name>.npy


@dataclass(frozen=True)
class Experiment(Generic[ConfigT, ParametersT]):
    """A simulation: presets, the cells of a preset, the run function of a cell and the summary of the records.

    Attributes
    ----------
    module : str
        The script's module, e.g. ``"simulations.exactness"``; part of every cell's identity.
    description : str
        The script's docstring (its first line is the command line's description).
    presets : mapping of str to config
        At least ``"full"`` (the default) and ``"smoke"`` (seconds; used by the tests).
    default_seed : int
    output : str
        The results file, relative to ``results/`` (the full preset) or ``results/smoke/`` (the others).
    code : tuple of str
        Repository paths of the code the records measure; their contents enter every cell's key. The results page
        flags a results file older than the last change to these paths (and to this framework).
    cells : callable
        ``config -> sequence of parameters`` (frozen dataclasses), in the order the records are written.
    run_cell : callable
        ``(parameters, seed) -> record`` (a dataclass or a JSON-able mapping). A module-level function, so that it
        pickles by reference to a Dask worker.
    summarize : callable
        ``(config, records) -> Summary``, with the records as JSON mappings (the same whether computed or resumed).
    condense : callable, optional
        ``record -> record`` as written to the results file (the store and ``summarize`` keep the whole record):
        for records too large to publish, such as a shard's samples.
    timed : bool
        Records hold wall times: the cells run one at a time in this process (``--workers`` and ``--scheduler``
        are refused), so that no two measurements share the cores.
    describe : callable, optional
        ``record -> str``: a line printed as each cell finishes (with ``--verbose``).
    options : tuple of str
        Config fields the command line may set, each as ``--field-name`` (e.g. ``device`` gives ``--device cuda``):
        a bool field becomes a flag, other fields take a value of the field's type. They enter the cells through
        ``cells``, so they are part of the cells' parameters.
    shared_seed_fields : tuple of str
        Parameter fields left out of the seed, so that cells differing only in them share one: the shards of one
        sampling job, each sample then deriving its own seed from the job's (``simulations.many_samples``), or the
        rules and windows compared on common random numbers (``simulations.speedup``). They stay in the key.
    """

    module: str
    description: str
    presets: Mapping[str, ConfigT]
    default_seed: int
    output: str
    code: tuple[str, ...]
    cells: Callable[[ConfigT], Sequence[ParametersT]]
    run_cell: Callable[[ParametersT, int], Any]
    summarize: Callable[[ConfigT, Sequence[Mapping[str, Any]]], Summary]
    timed: bool = False
    describe: Callable[[Mapping[str, Any]], str] | None = None
    options: tuple[str, ...] = ()
    shared_seed_fields: tuple[str, ...] = ()
    condense: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def config(self, preset: str, overrides: Mapping[str, Any] | None = None) -> ConfigT:
        """The config of ``preset``, with the fields in ``overrides`` (from :attr:`options`) replaced."""
        config = self.presets[preset]
        changes = {name: value for name, value in (overrides or {}).items() if value is not None}
        return dataclasses.replace(config, **changes) if changes else config  # type: ignore[type-var]

    @property
    def name(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    @property
    def measured_code(self) -> tuple[str, ...]:
        """The code whose contents enter the keys: the experiment's own list and this framework."""
        return (*self.code, *FRAMEWORK_CODE)


# --- Cells, keys and seeds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell(Generic[ParametersT]):
    """One cell of a sweep: its parameters, the key of its stored record and its seed."""

    parameters: ParametersT
    key: str
    seed: int


def make_cells(experiment: Experiment[Any, ParametersT], config: Any, root_seed: int) -> list[Cell[ParametersT]]:
    """The cells of ``config``, each with its key and seed.

    Raises
    ------
    ValueError
        Two cells with the same parameters (they would share a key, a seed and a record).
    """
    version = code_version(experiment.measured_code)
    cells: list[Cell[ParametersT]] = []
    for parameters in experiment.cells(config):
        if not _is_frozen_dataclass(parameters):
            raise TypeError(f"{experiment.module}: cell parameters must be a frozen dataclass, got {parameters!r}")
        seed = cell_seed(experiment.module, parameters, root_seed, experiment.shared_seed_fields)
        cells.append(Cell(parameters, cell_key(experiment.module, parameters, root_seed, version), seed))
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{experiment.module}: two cells have the same parameters")
    return cells


def _is_frozen_dataclass(value: object) -> bool:
    parameters = getattr(value, "__dataclass_params__", None)
    return not isinstance(value, type) and parameters is not None and bool(parameters.frozen)


# --- Running one cell --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A finished cell as stored: its record, or the error it raised; its wall time and where it ran."""

    key: str
    seed: int
    parameters: Mapping[str, Any]
    record: Any  # JSON data, or None when the cell raised
    error: str | None
    seconds: float
    worker: str


#: glibc ``mallopt`` parameters: keep up to 1 GiB of freed memory instead of unmapping it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _KEEP_BYTES = -1, -3, 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory (no mmap / trim churn); False where there is no glibc ``mallopt``.

    It sets a property of the process; every cell calls it where it runs (:func:`execute`). Without it, a Dask
    worker process (whose nanny sets ``MALLOC_TRIM_THRESHOLD_``, which also turns off glibc's adaptive mmap
    threshold) maps and unmaps every large tensor: measured here, more system than user time, and cells 3-4x slower.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


def execute(run_cell: Callable[[Any, int], Any], cell: Cell[Any], threads: int, worker: str = "local") -> Outcome:
    """Run one cell with ``threads`` torch threads; an exception is caught and returned as the outcome's error."""
    import torch

    torch.set_num_threads(threads)
    keep_freed_memory()
    start = time.perf_counter()
    try:
        record, error = jsonable(run_cell(cell.parameters, cell.seed)), None
    except Exception:  # a failing cell is recorded; the sweep goes on
        record, error = None, traceback.format_exc()
    return Outcome(cell.key, cell.seed, jsonable(cell.parameters), record, error, time.perf_counter() - start, worker)


def worker_index() -> int:
    """The index of the Dask worker running this code (its name, when an integer, as LocalCluster names them);
    0 outside a worker."""
    if "distributed" not in sys.modules:
        return 0
    from distributed import get_worker

    try:
        name = get_worker().name
    except ValueError:  # not inside a worker
        return 0
    return int(name) if str(name).isdigit() else 0


def local_device(device: str) -> str:
    """The torch device a cell runs on: ``device``, except that ``"cuda"`` on a machine with several GPUs, inside
    Dask worker i, means ``cuda:(i mod GPUs)`` (one worker per device with ``--workers`` = the GPU count)."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{worker_index() % count}" if count > 1 else device


def _execute_on_worker(run_cell: Callable[[Any, int], Any], cell: Cell[Any], threads: int) -> Outcome:
    from distributed import get_worker

    return execute(run_cell, cell, threads, worker=str(get_worker().name))


# --- The store ---------------------------------------------------------------------------------------------------


class Store:
    """Finished cells, one JSON file per key under ``directory``, each written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def write(self, outcome: Outcome) -> None:
        """Write ``outcome`` to a temporary file, flush it to disk, then rename it over ``<key>.json``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(outcome.key)
        temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with temporary.open("w") as handle:
            json.dump(dataclasses.asdict(outcome), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)

    def read(self, key: str) -> Outcome | None:
        """The stored outcome of ``key``, or None (none stored, or unreadable: the cell is then recomputed)."""
        try:
            document = json.loads(self.path(key).read_text())
            return Outcome(**document)
        except (OSError, ValueError, TypeError):
            return None

    def finished(self, key: str) -> Outcome | None:
        """The stored outcome of ``key`` if it holds a record (a stored error is retried)."""
        outcome = self.read(key)
        return outcome if outcome is not None and outcome.error is None else None


# --- Progress ----------------------------------------------------------------------------------------------------


class Progress:
    """A progress line over cells: done/total, rate, time left; redrawn in place on a terminal."""

    def __init__(self, label: str, total: int, resumed: int, stream: IO[str] | None = None, every: float = 10.0):
        self.label, self.total, self.done, self.resumed = label, total, resumed, resumed
        self.stream = stream if stream is not None else sys.stderr
        self.start = self.last = time.perf_counter()
        self.every = every
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._draw(force=True)

    def advance(self, line: str = "") -> None:
        self.done += 1
        if line:
            self._write(("\r\033[K" if self.terminal else "") + line + "\n")
        self._draw(force=self.done == self.total)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        computed = self.done - self.resumed
        rate = computed / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        resumed = f", {self.resumed} from the store" if self.resumed else ""
        return (
            f"[{self.label}] {self.done}/{self.total} cells{resumed}, {rate:.2f} cells/s, "
            f"{_duration(elapsed)} elapsed, {_duration(left)} left"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.terminal:
            self._write("\r\033[K" + self.line() + ("\n" if self.done == self.total else ""))
        elif force or now - self.last >= self.every:
            self._write(self.line() + "\n")
            self.last = now

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} m {rest:02d} s" if minutes else f"{rest} s"


# --- Engines -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """Where the cells run: serially here (``workers`` 0, no scheduler), a local Dask cluster, or a scheduler."""

    workers: int = 0
    scheduler: str | None = None
    threads: int = 1

    @property
    def serial(self) -> bool:
        return self.workers == 0 and self.scheduler is None

    def describe(self) -> str:
        if self.scheduler is not None:
            return f"dask scheduler {self.scheduler}"
        return "serial" if self.serial else f"local dask cluster, {self.workers} workers"


def run_cells(
    run_cell: Callable[[Any, int], Any], cells: Sequence[Cell[Any]], engine: Engine, deadline: float = math.inf
) -> Iterator[Outcome]:
    """Run ``cells`` on ``engine``, yielding each outcome as it finishes (in any order).

    No cell starts after ``deadline`` (a ``time.perf_counter()`` value); on Dask, the cells not yet finished then
    are cancelled. The cells not run are not yielded.
    """
    if engine.serial:
        for cell in cells:
            if time.perf_counter() >= deadline:
                return
            yield execute(run_cell, cell, engine.threads)
        return
    yield from _run_on_dask(run_cell, cells, engine, deadline)


def _run_on_dask(
    run_cell: Callable[[Any, int], Any], cells: Sequence[Cell[Any]], engine: Engine, deadline: float
) -> Iterator[Outcome]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if engine.scheduler is None:
        cluster = LocalCluster(n_workers=engine.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(engine.scheduler)
    try:
        futures = {
            client.submit(_execute_on_worker, run_cell, cell, engine.threads, key=f"cell-{cell.key}", pure=False): cell
            for cell in cells
        }
        left = None if math.isinf(deadline) else max(deadline - time.perf_counter(), 1e-3)
        finished = as_completed(futures, timeout=left)
        try:
            for future in finished:
                yield _outcome_of(future, futures[future])
        except TimeoutError:  # the deadline passed: cancel what is left
            client.cancel([future for future in futures if not future.done()])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _outcome_of(future: Any, cell: Cell[Any]) -> Outcome:
    try:
        return future.result()
    except Exception:  # the worker died more often than Dask allows (KilledWorker), or the task was lost
        error = traceback.format_exc()
        return Outcome(cell.key, cell.seed, jsonable(cell.parameters), None, error, 0.0, "lost")


# --- A sweep -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """The outcomes of the cells that ran or were stored, in the cells' order; how many were read from the store
    and how many did not run (the time budget ran out)."""

    outcomes: list[Outcome]
    resumed: int
    not_run: int
    seconds: float

    @property
    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.error is not None]

    @property
    def records(self) -> list[Any]:
        return [outcome.record for outcome in self.outcomes if outcome.error is None]


def sweep(
    experiment: Experiment[Any, Any],
    cells: Sequence[Cell[Any]],
    engine: Engine,
    store: Store | None,
    *,
    resume: bool = True,
    progress: IO[str] | None = None,
    verbose: bool = False,
    max_seconds: float | None = None,
) -> SweepResult:
    """Run the cells of ``experiment`` not already finished in ``store``, writing each to it as it finishes.

    ``resume=False`` recomputes every cell (overwriting the store); ``store=None`` stores nothing. No cell starts
    after ``max_seconds``.
    """
    start = time.perf_counter()
    deadline = math.inf if max_seconds is None else start + max_seconds
    stored = {cell.key: store.finished(cell.key) for cell in cells} if store is not None and resume else {}
    done: dict[str, Outcome] = {key: outcome for key, outcome in stored.items() if outcome is not None}
    pending = [cell for cell in cells if cell.key not in done]
    bar = Progress(experiment.name, len(cells), len(cells) - len(pending), progress)
    for outcome in run_cells(experiment.run_cell, pending, engine, deadline):
        if store is not None:
            store.write(outcome)
        done[outcome.key] = outcome
        line = ""
        if outcome.error is not None:
            line = f"cell {outcome.key[:10]} {dict(outcome.parameters)} raised:\n{outcome.error.rstrip()}"
        elif verbose and experiment.describe is not None:
            line = experiment.describe(outcome.record)
        bar.advance(line)
    outcomes = [done[cell.key] for cell in cells if cell.key in done]
    return SweepResult(outcomes, len(cells) - len(pending), len(cells) - len(outcomes), time.perf_counter() - start)


# --- The command line --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arguments:
    """A script's parsed command line."""

    preset: str
    seed: int
    output: Path
    store: Path
    resume: bool  # False with --fresh: every cell is recomputed (and overwritten in the store)
    engine: Engine
    verbose: bool
    overrides: Mapping[str, Any]  # config fields set by the experiment's options
    max_seconds: float | None  # no cell starts after this many seconds


def build_parser(experiment: Experiment[Any, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {experiment.module}", description=experiment.description.strip().splitlines()[0]
    )
    parser.add_argument("--preset", choices=sorted(experiment.presets), default="full", help="sizes of the run")
    parser.add_argument("--smoke", action="store_true", help="the smoke preset (seconds), used by the tests")
    parser.add_argument("--seed", type=int, default=experiment.default_seed, help="the sweep's root seed")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--workers", type=int, default=0, help="run the cells on a local Dask cluster of K processes")
    parser.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler to run the cells on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--store", type=Path, default=None, help="folder of finished cells (default under results/)")
    parser.add_argument("--fresh", action="store_true", help="recompute every cell, ignoring and overwriting the store")
    parser.add_argument("--verbose", action="store_true", help="print a line per finished cell")
    parser.add_argument("--max-seconds", type=float, default=None, help="start no cell after this many seconds")
    full = experiment.presets["full"]
    for name in experiment.options:
        flag, default = "--" + name.replace("_", "-"), getattr(full, name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f"option_{name}", action="store_const", const=True, default=None)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, dest=f"option_{name}", type=kind, default=None, help=f"the config's {name}")
    return parser


def parse_arguments(experiment: Experiment[Any, Any], argv: Sequence[str] | None) -> Arguments:
    """Parse and check the command line (exits with a usage error on bad input)."""
    parser = build_parser(experiment)
    parsed = parser.parse_args(argv)
    preset = "smoke" if parsed.smoke else parsed.preset
    if parsed.smoke and parsed.preset != "full":
        parser.error("--smoke is --preset smoke: give one of them")
    if parsed.workers < 0 or parsed.threads < 1:
        parser.error("--workers must be >= 0 and --threads >= 1")
    if parsed.workers and parsed.scheduler:
        parser.error("give --workers (a local cluster) or --scheduler (an existing one), not both")
    if experiment.timed and (parsed.workers or parsed.scheduler):
        parser.error(f"{experiment.module} measures wall time: its cells run one at a time in this process")
    folder = RESULTS if preset == "full" else RESULTS / "smoke"
    output = parsed.output or folder / experiment.output
    store = parsed.store or folder / "cells" / experiment.name
    engine = Engine(workers=parsed.workers, scheduler=parsed.scheduler, threads=parsed.threads)
    if parsed.max_seconds is not None and parsed.max_seconds <= 0:
        parser.error("--max-seconds must be > 0")
    overrides = {name: getattr(parsed, f"option_{name}") for name in experiment.options}
    return Arguments(
        preset, parsed.seed, output, store, not parsed.fresh, engine, parsed.verbose, overrides, parsed.max_seconds
    )


def standard_header(script: str, preset: str, seed: int | None, config: Any) -> dict[str, Any]:
    """The standard header of every results file: script, preset, seed, config and provenance (commit, whether
    the tree was dirty, machine, date). The run adds ``seconds``."""
    return {
        "script": script,
        "preset": preset,
        "seed": seed,
        "config": jsonable(config),
        "commit": git_commit(),
        "dirty": git_dirty(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as indented JSON, atomically (temporary file and rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(jsonable(document), indent=1) + "\n")
    os.replace(temporary, path)


def main(experiment: Experiment[Any, Any], argv: Sequence[str] | None = None) -> int:
    """Run ``experiment`` from the command line ``argv``; 0 if every cell ran and the summary passed, else 1."""
    arguments = parse_arguments(experiment, argv)
    config = experiment.config(arguments.preset, arguments.overrides)
    document = standard_header(experiment.module, arguments.preset, arguments.seed, config)
    cells = make_cells(experiment, config, arguments.seed)
    result = sweep(
        experiment,
        cells,
        arguments.engine,
        Store(arguments.store),
        resume=arguments.resume,
        verbose=arguments.verbose,
        max_seconds=arguments.max_seconds,
    )
    summary = experiment.summarize(config, result.records) if not result.failures else Summary(passed=False)
    computed = [outcome for outcome in result.outcomes if outcome.error is None]
    document.update(
        {
            "seconds": result.seconds,
            "sweep": {
                "engine": arguments.engine.describe(),
                "workers": arguments.engine.workers,
                "threads": arguments.engine.threads,
                "cells": len(cells),
                "resumed": result.resumed,
                "failed": len(result.failures),
                "not_run": result.not_run,
                "max_seconds": arguments.max_seconds,
                "cell_seconds": sum(outcome.seconds for outcome in computed),
                "cells_detail": [
                    {"key": o.key, "seed": o.seed, "seconds": o.seconds, "worker": o.worker, "error": o.error}
                    for o in result.outcomes
                ],
            },
            **summary.fields,
            "passed": summary.passed and not result.failures,
            "records": [experiment.condense(r) for r in result.records] if experiment.condense else result.records,
        }
    )
    for name, array in summary.arrays.items():
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        path = arguments.output.with_name(f"{arguments.output.stem}.{name}.npy")
        document.setdefault("arrays", {})[name] = path.name
        np.save(path, array)
    write_json(arguments.output, document)
    if summary.text:
        print(summary.text)
    for outcome in result.failures:
        print(f"FAILED cell {outcome.key[:10]} {dict(outcome.parameters)}:\n{outcome.error}", file=sys.stderr)
    if result.not_run:
        print(f"{result.not_run} cells did not run: --max-seconds {arguments.max_seconds:g} ran out", file=sys.stderr)
    print(
        f"{experiment.module}: {len(result.outcomes) - len(result.failures)}/{len(cells)} cells ran "
        f"({result.resumed} from the store), {result.seconds:.1f} s, {arguments.engine.describe()}; "
        f"{'passed' if document['passed'] else 'FAILED'}; wrote {arguments.output}"
    )
    return 0 if document["passed"] else 1
