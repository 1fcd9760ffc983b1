"""The experiment framework: keys and seeds, the store, resuming, failures, the engines, kill-and-resume."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simulations import cells, exactness
from simulations import experiment as framework
from simulations.experiment import Engine, Outcome, Store, make_cells, sweep
from simulations.provenance import REPOSITORY_ROOT
from tests.simulations import toy_experiment
from tests.simulations.toy_experiment import EXPERIMENT as TOY


def _records(path: Path) -> list[Any]:
    return json.loads(path.read_text())["records"]


def _run_toy(tmp_path: Path, *arguments: str, name: str = "toy") -> tuple[int, dict[str, Any]]:
    output = tmp_path / f"{name}.json"
    status = toy_experiment.main([*arguments, "--output", str(output), "--store", str(tmp_path / f"{name}-store")])
    return status, json.loads(output.read_text())


# --- Keys and seeds ----------------------------------------------------------------------------------------------


def test_a_cells_seed_depends_on_its_parameters_and_the_root_seed_alone() -> None:
    config = TOY.presets["smoke"]
    cells = make_cells(TOY, config, root_seed=1)
    shuffled = dataclasses.replace(TOY, cells=lambda c: list(reversed(toy_experiment.toy_cells(c))))
    reversed_cells = make_cells(shuffled, config, root_seed=1)
    by_parameters = {cell.parameters: (cell.key, cell.seed) for cell in reversed_cells}
    assert all(by_parameters[cell.parameters] == (cell.key, cell.seed) for cell in cells)
    assert len({cell.seed for cell in cells}) == len(cells)
    other_root = make_cells(TOY, config, root_seed=2)
    assert all(a.seed != b.seed and a.key != b.key for a, b in zip(cells, other_root, strict=True))


def test_a_change_to_the_measured_code_changes_the_keys_but_not_the_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    config = TOY.presets["smoke"]
    before = make_cells(TOY, config, root_seed=1)
    monkeypatch.setattr(framework, "code_version", lambda paths: "another version")
    after = make_cells(TOY, config, root_seed=1)
    assert all(a.key != b.key and a.seed == b.seed for a, b in zip(before, after, strict=True))


def test_code_version_hashes_the_contents_of_the_paths(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    first = cells.code_version(["a.py", "missing.py"], root=tmp_path)
    assert cells.code_version(["a.py", "missing.py"], root=tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    assert cells.code_version(["a.py", "missing.py"], root=tmp_path) != first


def test_the_measured_code_of_every_experiment_exists() -> None:
    for experiment in (TOY, exactness.EXPERIMENT):
        missing = [path for path in experiment.measured_code if not (REPOSITORY_ROOT / path).is_file()]
        assert not missing, f"{experiment.module}: {missing}"


def test_cells_must_be_frozen_dataclasses_with_distinct_parameters() -> None:
    @dataclasses.dataclass
    class Mutable:
        index: int

    with pytest.raises(TypeError, match="frozen dataclass"):
        # deliberately not a ToyCell: make_cells must reject a cell type that is not a frozen dataclass
        make_cells(dataclasses.replace(TOY, cells=lambda c: [Mutable(0)]), TOY.presets["smoke"], 1)  # type: ignore[list-item]
    twice = dataclasses.replace(TOY, cells=lambda c: toy_experiment.toy_cells(c) * 2)
    with pytest.raises(ValueError, match="same parameters"):
        make_cells(twice, TOY.presets["smoke"], 1)


def test_arrays_travel_through_json_bit_for_bit() -> None:
    import numpy as np

    array = np.random.default_rng(0).standard_normal((3, 4)) * 1e-300
    document = json.loads(json.dumps(cells.encode_array(array)))
    assert np.array_equal(cells.decode_array(document), array)


# --- The store, resuming and failures ----------------------------------------------------------------------------


def test_a_rerun_reads_every_finished_cell_from_the_store(tmp_path: Path) -> None:
    status, first = _run_toy(tmp_path, "--smoke")
    assert status == 0 and first["sweep"]["resumed"] == 0 and len(first["records"]) == 6
    status, second = _run_toy(tmp_path, "--smoke")
    assert status == 0 and second["sweep"]["resumed"] == 6
    assert second["records"] == first["records"]
    status, fresh = _run_toy(tmp_path, "--smoke", "--fresh")
    assert fresh["sweep"]["resumed"] == 0 and fresh["records"] == first["records"]


def test_a_cell_whose_key_changed_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_toy(tmp_path, "--smoke")
    monkeypatch.setattr(framework, "code_version", lambda paths: "the measured code changed")
    status, rerun = _run_toy(tmp_path, "--smoke")
    assert status == 0 and rerun["sweep"]["resumed"] == 0
    assert len(list((tmp_path / "toy-store").glob("*.json"))) == 12  # both versions' cells are kept


def test_a_cell_that_raises_is_stored_with_its_error_and_the_sweep_goes_on(tmp_path: Path) -> None:
    status, payload = _run_toy(tmp_path, "--preset", "failing")
    assert status == 1 and not payload["passed"]
    assert payload["sweep"]["failed"] == 1 and len(payload["records"]) == 5
    errors = [cell["error"] for cell in payload["sweep"]["cells_detail"] if cell["error"]]
    assert len(errors) == 1 and "cell 2 was told to fail" in errors[0]
    # The failure is stored, not counted as finished: the next run retries it (and only it).
    status, again = _run_toy(tmp_path, "--preset", "failing")
    assert status == 1 and again["sweep"]["resumed"] == 5


def test_the_store_writes_atomically_and_ignores_a_torn_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    outcome = Outcome("abc", 3, {"index": 0}, {"value": 1.5}, None, 0.1, "local")
    store.write(outcome)
    assert [path.name for path in (tmp_path / "store").iterdir()] == ["abc.json"]
    assert store.finished("abc") == outcome
    store.path("abc").write_text('{"key": "abc", "seed"')  # what a torn write would leave without the rename
    assert store.read("abc") is None and store.finished("abc") is None


def test_no_cell_starts_after_the_time_budget(tmp_path: Path) -> None:
    status, payload = _run_toy(tmp_path, "--max-seconds", "0.6")  # 24 cells of 0.25 s
    assert status == 0
    assert 1 <= len(payload["records"]) < 24 and payload["sweep"]["not_run"] == 24 - len(payload["records"])


def test_the_progress_line_counts_cells_rate_and_time_left() -> None:
    stream = io.StringIO()
    progress = framework.Progress("toy", total=4, resumed=1, stream=stream, every=0.0)
    progress.advance()
    line = progress.line()
    assert line.startswith("[toy] 2/4 cells, 1 from the store, ") and "cells/s" in line and "left" in line
    assert stream.getvalue().count("\n") >= 2


def test_the_progress_line_is_printed_every_period_while_cells_finish_faster() -> None:
    stream = io.StringIO()  # not a terminal: a line every `every` seconds
    progress = framework.Progress("toy", total=100, resumed=0, stream=stream, every=0.2)
    for _ in range(12):
        time.sleep(0.05)
        progress.advance()
    assert 2 <= stream.getvalue().count("\n") <= 5  # the first line, then one per 0.2 s of the 0.6 s


def test_the_command_line_refuses_conflicting_or_unsafe_options(tmp_path: Path) -> None:
    for arguments in (
        ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
        ["--smoke", "--preset", "failing"],
        ["--workers", "-1"],
        ["--max-seconds", "0"],
    ):
        with pytest.raises(SystemExit):
            toy_experiment.main([*arguments, "--store", str(tmp_path / "s"), "--output", str(tmp_path / "o.json")])
    timed = dataclasses.replace(TOY, timed=True)
    for arguments in (["--workers", "1"], ["--scheduler", "tcp://127.0.0.1:1"]):
        with pytest.raises(SystemExit):
            framework.parse_arguments(timed, arguments)
    assert framework.parse_arguments(timed, []).engine.serial


# --- Engines -----------------------------------------------------------------------------------------------------


def test_serial_and_two_dask_workers_give_identical_records(tmp_path: Path) -> None:
    """A real sweep (the exactness smoke preset) serially and on a local cluster of 2 worker processes."""
    outputs = []
    for name, engine in (("serial", []), ("dask", ["--workers", "2"])):
        output = tmp_path / f"{name}.json"
        status = exactness.main(
            ["--smoke", "--output", str(output), "--store", str(tmp_path / f"{name}-store"), *engine]
        )
        assert status == 0
        outputs.append(json.loads(output.read_text()))
    serial, dask = outputs
    assert serial["records"] == dask["records"] and len(serial["records"]) == len(exactness.cells(exactness.SMOKE))
    assert serial["sweep"]["engine"] == "serial" and dask["sweep"]["engine"] == "local dask cluster, 2 workers"
    assert {cell["worker"] for cell in serial["sweep"]["cells_detail"]} == {"local"}
    assert {cell["worker"] for cell in dask["sweep"]["cells_detail"]} <= {"0", "1"}


def test_an_existing_cluster_runs_the_cells_by_address(tmp_path: Path) -> None:
    from distributed import LocalCluster

    serial = sweep(TOY, make_cells(TOY, TOY.presets["smoke"], 1), Engine(), None, progress=io.StringIO())
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        engine = Engine(scheduler=cluster.scheduler_address)
        remote = sweep(TOY, make_cells(TOY, TOY.presets["smoke"], 1), engine, None, progress=io.StringIO())
    assert remote.records == serial.records and not remote.failures


def test_serial_runs_import_no_dask() -> None:
    code = (
        "import sys; from tests.simulations import toy_experiment as t; import tempfile, pathlib; "
        "d = pathlib.Path(tempfile.mkdtemp()); "
        "t.main(['--smoke', '--output', str(d / 'o.json'), '--store', str(d / 's')]); "
        "print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert completed.stdout.strip().splitlines()[-1] == "False"


# --- Kill and resume ---------------------------------------------------------------------------------------------


def _start_toy(tmp_path: Path, *arguments: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.simulations.toy_experiment", "--store", str(tmp_path / "store")]
    command += ["--output", str(tmp_path / "toy.json"), *arguments]
    return subprocess.Popen(
        command,
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_cells(store: Path, count: int, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(store.glob("*.json"))) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the sweep stored too few cells in time"
        time.sleep(0.05)


def _uninterrupted(tmp_path: Path) -> list[Any]:
    status, payload = _run_toy(tmp_path, name="reference")
    assert status == 0
    return payload["records"]


@pytest.mark.slow
def test_killing_the_driver_mid_sweep_loses_only_cells_in_flight(tmp_path: Path) -> None:
    process = _start_toy(tmp_path, "--workers", "2")
    _wait_for_cells(tmp_path / "store", 4, process)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its cluster and workers, with no chance to clean up
    process.wait(timeout=60)
    stored = list((tmp_path / "store").glob("*.json"))
    assert 4 <= len(stored) < 24
    assert all(json.loads(path.read_text())["error"] is None for path in stored)  # every stored file is whole
    status = toy_experiment.main(["--store", str(tmp_path / "store"), "--output", str(tmp_path / "toy.json")])
    resumed = json.loads((tmp_path / "toy.json").read_text())
    assert status == 0 and resumed["sweep"]["resumed"] == len(stored)
    assert resumed["records"] == _uninterrupted(tmp_path)


@pytest.mark.slow
def test_killing_a_worker_mid_sweep_loses_nothing(tmp_path: Path) -> None:
    import psutil

    process = _start_toy(tmp_path, "--workers", "2")
    _wait_for_cells(tmp_path / "store", 2, process)
    workers = [
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    ]
    assert workers, "no worker process found"
    workers[0].kill()  # the nanny restarts it, and the scheduler reruns the cell it held
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output
    payload = json.loads((tmp_path / "toy.json").read_text())
    assert payload["sweep"]["failed"] == 0 and payload["records"] == _uninterrupted(tmp_path)
