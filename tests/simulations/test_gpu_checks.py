"""``simulations/gpu_checks.sh``, the one script a GPU lease runs, run on the CPU (``GPU_CHECKS_DEVICE=cpu``) so that
a broken option or output name is found here rather than on a lent machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulations.provenance import REPOSITORY_ROOT

SCRIPT = REPOSITORY_ROOT / "simulations" / "gpu_checks.sh"


def _run(output: Path, device: str) -> subprocess.CompletedProcess[str]:
    # One second of benchmark budget and no full exactness check: the smoke steps, then one preset's first cells.
    environment = {**os.environ, "GPU_CHECKS_DEVICE": device, "OMP_NUM_THREADS": "1", "GRAPH_SECONDS": "1"}
    # The script calls python3: this interpreter's, first on the path.
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    return subprocess.run(
        ["bash", str(SCRIPT), str(output), "1", "0", "smoke"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_the_gpu_check_script_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    run = _run(tmp_path, "cpu")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    smoke = json.loads((tmp_path / "dit_exactness_smoke.json").read_text())
    assert smoke["passed"] and smoke["preset"] == "smoke"
    bench = json.loads((tmp_path / "bench_smoke.json").read_text())
    assert bench["preset"] == "smoke" and bench["config"]["device"] == "cpu" and bench["records"]
    assert (tmp_path / "bench_smoke.log").exists() and any((tmp_path / "cells" / "bench_smoke").iterdir())
    assert not (tmp_path / "dit_exactness.json").exists()  # EXACTNESS_SECONDS = 0 skips the full check
    # The graph check's first cells (GRAPH_SECONDS = 1: no new cell after a second), its control first.
    graphs = json.loads((tmp_path / "graph_check.json").read_text())
    assert graphs["config"]["device"] == "cpu" and graphs["records"][0]["control"]
    assert all(record["agree"] != record["control"] for record in graphs["records"])


def test_the_gpu_check_script_stops_when_its_smoke_step_fails(tmp_path: Path) -> None:
    # Negative control: a device torch does not know fails the first step, and the script exits 1 without going on.
    run = _run(tmp_path, "no-such-device")
    assert run.returncode == 1 and "no-such-device" in (tmp_path / "smoke.log").read_text()
    assert not (tmp_path / "bench_smoke.json").exists() and not (tmp_path / "dit_exactness_smoke.json").exists()
    assert not (tmp_path / "graph_check.json").exists()


#: A stand-in for a sweep (``python -m MODULE ... --max-seconds S --output F --store D``): it stores one cell, then
#: hangs; run again with a tiny ``--max-seconds`` it writes the results file from its store and exits.
FAKE_SWEEP = """
import json, sys, time
from pathlib import Path
arguments = sys.argv[1:]
store, output = (Path(arguments[arguments.index(flag) + 1]) for flag in ("--store", "--output"))
if float(arguments[arguments.index("--max-seconds") + 1]) > 1e-3:
    store.mkdir(parents=True)
    (store / "first.json").write_text("{}")
    time.sleep(600)
output.write_text(json.dumps({"cells": sorted(path.name for path in store.iterdir())}))
"""


def _step(folder: Path, seconds_left: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The script's ``step`` alone (the script sourced), on the stand-in sweep, ``seconds_left`` before the deadline."""
    (folder / "fake_sweep.py").write_text(FAKE_SWEEP)
    out = folder / "out"
    out.mkdir()
    commands = (
        f'source "{SCRIPT}"; out="{out}"; total_seconds={seconds_left}; deadline=$((SECONDS + {seconds_left})); '
        "step fake 1000 0 fake_sweep"
    )
    environment = {**os.environ, "PYTHONPATH": str(folder)}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    run = subprocess.run(["bash", "-c", commands], env=environment, capture_output=True, text=True, timeout=120)
    return run, out


@pytest.mark.slow
def test_a_step_cut_off_at_the_deadline_keeps_the_cells_it_finished(tmp_path: Path) -> None:
    # 41 s left: the step runs (it needs 40), is killed 20 s before the deadline and its results file is assembled.
    run, out = _step(tmp_path, 41)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads((out / "fake.json").read_text()) == {"cells": ["first.json"]}
    assert "fake was cut off at the deadline" in (out / "fake.log").read_text()


def test_a_step_with_too_little_time_left_is_skipped(tmp_path: Path) -> None:
    run, out = _step(tmp_path, 30)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fake skipped: 30 s left" in (out / "fake.log").read_text()
    assert not (out / "fake.json").exists() and not (out / "cells").exists()
