"""Every simulation is an experiment, and every sweep gives identical records serially, on a Dask cluster of two
worker processes and resumed after an interruption (smoke presets)."""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from simulations.experiment import Engine, Experiment, Store, make_cells, sweep
from simulations.provenance import REPOSITORY_ROOT

#: Modules of simulations/ that are not experiments: the framework, shared pieces, commands, the report and figures.
NOT_EXPERIMENTS = {
    "__init__", "cells", "cli", "common", "controls", "experiment", "figures", "provenance", "report",
    "sampling", "theory_table",
}  # fmt: skip


def _scripts() -> list[ModuleType]:
    names = sorted(path.stem for path in (REPOSITORY_ROOT / "simulations").glob("*.py"))
    return [importlib.import_module(f"simulations.{name}") for name in names if name not in NOT_EXPERIMENTS]


SCRIPTS = _scripts()
#: The sweeps: experiments whose records are not wall times (and that train nothing).
SWEEPS = [
    module for module in SCRIPTS if not module.EXPERIMENT.timed and module.EXPERIMENT.module != "simulations.sweep_cost"
]


def test_every_script_is_an_experiment_with_full_and_smoke_presets() -> None:
    assert len(SCRIPTS) >= 15
    for module in SCRIPTS:
        experiment = module.EXPERIMENT
        assert isinstance(experiment, Experiment) and experiment.module == module.__name__
        assert {"full", "smoke"} <= set(experiment.presets)
        assert all((REPOSITORY_ROOT / path).is_file() for path in experiment.measured_code), experiment.module
        assert callable(module.main)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow
@pytest.mark.parametrize("module", SWEEPS, ids=lambda module: module.__name__.rsplit(".", 1)[-1])
def test_a_sweep_gives_identical_records_serially_on_two_workers_and_resumed(
    module: ModuleType, scheduler: str, tmp_path: Path
) -> None:
    experiment = module.EXPERIMENT
    cells = make_cells(experiment, experiment.presets["smoke"], experiment.default_seed)
    quiet = io.StringIO()
    serial = sweep(experiment, cells, Engine(), Store(tmp_path / "serial"), progress=quiet)
    assert not serial.failures and len(serial.records) == len(cells)
    on_cluster = sweep(experiment, cells, Engine(scheduler=scheduler), None, progress=quiet)
    assert {outcome.worker for outcome in on_cluster.outcomes} <= {"0", "1"}
    assert on_cluster.records == serial.records
    # An interrupted sweep (the cells after the first half never stored) resumed: the stored cells are read back.
    store = Store(tmp_path / "serial")
    stopped = len(cells) // 2
    for cell in cells[stopped:]:
        store.path(cell.key).unlink()
    resumed = sweep(experiment, cells, Engine(), store, progress=quiet)
    assert resumed.resumed == stopped and resumed.records == serial.records
