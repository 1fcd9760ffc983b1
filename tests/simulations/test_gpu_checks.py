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
