"""What Dask costs and buys: a sweep's wall time serially and on a local cluster, and the overhead per cell.

Each cell times one whole sweep in this process, with no store (every cell of it computed):

- ``sweep`` cells: a real sweep (``simulations.exactness`` at its ``smoke`` and ``medium`` presets) serially and on a
  local Dask cluster of ``workers`` processes; the cluster's start and shutdown are included, as a user pays them;
- ``overhead`` cells: ``cells`` cells that do nothing, serially and on the cluster. The overhead per cell is the
  difference of the two wall times, less the cluster's start (the same sweep of one cell), over the cells.

The cells run one at a time (the experiment is timed), so the measurements do not share the cores. Run
``python -m simulations.sweep_cost`` (minutes) or ``--smoke``; writes ``results/sweep_cost.json``.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simulations import exactness
from simulations.experiment import Engine, Experiment, Summary, make_cells, sweep
from simulations.experiment import main as experiment_main


@dataclass(frozen=True)
class Config:
    """The presets of the sweep to time, the cluster's size and the no-op sweeps' sizes."""

    presets: tuple[str, ...]
    workers: int
    noop_cells: int


FULL = Config(presets=("smoke", "medium"), workers=2, noop_cells=400)
SMOKE = Config(presets=("smoke",), workers=2, noop_cells=20)


@dataclass(frozen=True)
class Timing:
    """One timed sweep: ``kind`` "sweep" (``preset`` of exactness) or "overhead" (``cells`` no-op cells)."""

    kind: str
    preset: str
    cells: int
    workers: int  # 0: serial


@dataclass(frozen=True)
class NoopCell:
    index: int


def _noop_cells(config: Timing) -> list[NoopCell]:
    return [NoopCell(index) for index in range(config.cells)]


def run_noop(cell: NoopCell, seed: int) -> dict[str, int]:
    """A cell that does nothing: what is left of its wall time is the engine's."""
    return {"index": cell.index}


def _summarize_noop(config: Timing, records: Sequence[Mapping[str, Any]]) -> Summary:
    return Summary()


#: The no-op experiment whose sweeps measure the engines' overhead.
NOOP: Experiment[Timing, NoopCell] = Experiment(
    module="simulations.sweep_cost.noop",
    description="Cells that do nothing.",
    presets={},
    default_seed=0,
    output="noop.json",
    code=("simulations/sweep_cost.py",),
    cells=_noop_cells,
    run_cell=run_noop,
    summarize=_summarize_noop,
)


def timings(config: Config) -> list[Timing]:
    """Every preset serially and on the cluster; no-op sweeps of 1 and of ``noop_cells`` cells likewise."""
    engines = (0, config.workers)
    cells = [Timing("sweep", preset, 0, workers) for preset in config.presets for workers in engines]
    return cells + [Timing("overhead", "", n, workers) for n in (1, config.noop_cells) for workers in engines]


def run_timing(timing: Timing, seed: int) -> dict[str, Any]:
    """Wall time of one sweep with nothing stored, cluster start included."""
    if timing.kind == "sweep":
        experiment: Experiment[Any, Any] = exactness.EXPERIMENT
        config: Any = exactness.EXPERIMENT.presets[timing.preset]
    else:
        experiment, config = NOOP, timing
    cells = make_cells(experiment, config, root_seed=seed)
    start = time.perf_counter()
    result = sweep(experiment, cells, Engine(workers=timing.workers), None, progress=io.StringIO())
    wall = time.perf_counter() - start
    return {
        **{"kind": timing.kind, "preset": timing.preset, "workers": timing.workers, "cells": len(cells)},
        "wall_seconds": wall,
        "cell_seconds": sum(outcome.seconds for outcome in result.outcomes),
        "failed": len(result.failures),
    }


def _wall(records: Sequence[Mapping[str, Any]], kind: str, workers: int, preset: str = "", cells: int = 0) -> float:
    for record in records:
        same_cells = kind == "sweep" or record["cells"] == cells
        if record["kind"] == kind and record["workers"] == workers and record["preset"] == preset and same_cells:
            return float(record["wall_seconds"])
    raise KeyError((kind, workers, preset, cells))


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Speedup of the cluster on each preset; the cluster's start; the overhead per cell."""
    workers, n = config.workers, config.noop_cells
    speedups = {
        preset: _wall(records, "sweep", 0, preset) / _wall(records, "sweep", workers, preset)
        for preset in config.presets
    }
    start = _wall(records, "overhead", workers, cells=1) - _wall(records, "overhead", 0, cells=1)
    per_cell = (
        (_wall(records, "overhead", workers, cells=n) - _wall(records, "overhead", workers, cells=1))
        - (_wall(records, "overhead", 0, cells=n) - _wall(records, "overhead", 0, cells=1))
    ) / (n - 1)
    lines = [
        f"{r['kind']:<9} {r['preset'] or '-':<7} cells {r['cells']:<4} workers {r['workers']}: "
        f"{r['wall_seconds']:.2f} s"
        for r in records
    ]
    lines.append(f"cluster start {start:.2f} s; Dask overhead {1e3 * per_cell:.2f} ms per cell")
    return Summary(
        fields={
            "speedup_by_preset": speedups,
            "cluster_start_seconds": start,
            "overhead_seconds_per_cell": per_cell,
        },
        passed=all(record["failed"] == 0 for record in records),
        text="\n".join(lines),
    )


EXPERIMENT = Experiment(
    module="simulations.sweep_cost",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=5,
    output="sweep_cost.json",
    code=("simulations/sweep_cost.py", *exactness.EXPERIMENT.measured_code),
    cells=timings,
    run_cell=run_timing,
    summarize=summarize,
    timed=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EXPERIMENT", "FULL", "NOOP", "SMOKE", "Config", "Timing", "main", "run_timing", "timings"]
