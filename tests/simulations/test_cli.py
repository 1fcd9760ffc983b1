"""The ``specdiff`` command line: every subcommand runs, writes only where it is told, and rejects bad input early."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from simulations import cli
from simulations.provenance import REPOSITORY_ROOT
from simulations.theory_table import format_theory_table, theory_table
from tests.statistics import ALPHA, z_threshold


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``specdiff ARGV`` (argparse's own errors exit through SystemExit)."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def tracked_changes() -> str:
    """``git status`` of the tracked files (untracked and ignored files left out)."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.slow
def test_theory_table_agrees_with_its_monte_carlo_check() -> None:
    # 2 gaps x 2 windows x 2 rules = 8 z-scores, Bonferroni at ALPHA; seed fixed.
    rows = theory_table([0.5, 1.5], [2, 5], samples=20_000, dimension=4, seed=1, progress=False)
    threshold = z_threshold(ALPHA, comparisons=2 * len(rows))
    for row in rows:
        assert abs(row.token_z) < threshold and abs(row.block_z) < threshold, row
        assert row.block_expected >= row.token_expected
        assert row.block_gain >= 1.0
    text = format_theory_table(rows)
    assert "block gain" in text and text.count("\n") == len(rows) + 1


def test_theory_prints_the_table_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["theory", "--deltas", "0.5", "--windows", "3", "--samples", "500", "--no-progress"]
    status, out, _ = run(argv, capsys)
    assert status == 0 and "E[tau] token" in out and "0.5" in out
    status, out, _ = run([*argv, "--json"], capsys)
    (row,) = json.loads(out)
    assert status == 0 and row["delta"] == 0.5 and row["window"] == 3 and row["block_gain"] >= 1.0


@pytest.mark.parametrize("command", ["", *cli.COMMANDS])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run([command, "--help"] if command else ["--help"], capsys)
    assert status == 0 and "usage: specdiff" in out
    if command:
        assert all(option in out for option in ("--seed", "--device", "--json", "--no-progress"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["theory", "--deltas", "nan"], "--deltas must be finite"),
        (["theory", "--deltas", "-1"], "--deltas must be finite and >= 0"),
        (["theory", "--deltas", "a,b"], "expected comma-separated floats"),
        (["theory", "--windows", "0"], "--windows must be >= 1"),
        (["theory", "--samples", "1"], "--samples must be >= 2"),
        (["demo", "--steps", "1"], "--steps must be >= 2"),
        (["demo", "--max-window", "0"], "--max-window must be >= 1"),
        (["demo", "--samples-per-class", "0"], "--samples-per-class must be >= 1"),
        (["demo", "--device", "foo"], "unknown device 'foo'"),
        (["demo", "--device", "meta"], "unsupported device 'meta'"),
        (["demo", "--seed", "-3"], "--seed must be >= 0"),
        (["sample", "--model", "missing"], "no pretrained DiT 'missing'"),
        (["sample", "--window", "0"], "--window must be 'adaptive' or an integer >= 1"),
        (["sample", "--rule", "fast"], "invalid choice: 'fast'"),
        (["sample", "--steps", "1"], "--steps must be >= 2"),
        (["bench", "--max-seconds", "0"], "--max-seconds must be > 0"),
        (["figures", "--results", "no/such/folder"], "no results folder"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run([*argv, "--no-progress"] if argv[0] != "frobnicate" else argv, capsys)
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1 and err.startswith("specdiff"), err


def test_cuda_asked_for_on_a_machine_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    status, _, err = run(["sample", "--device", "cuda", "--no-progress"], capsys)
    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine the device is valid
        assert cli.check_device("cuda").type == "cuda"
    else:
        assert status == 2 and "CUDA is not available" in err


def test_an_unwritable_output_folder_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import specdiff.demo

    def never(**_: object) -> None:
        raise AssertionError("the demo started although its output folder is unwritable")

    monkeypatch.setattr(specdiff.demo, "run_demo", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, _, err = run(["demo", "--output-dir", str(blocker / "demo"), "--no-progress"], capsys)
    assert status == 2 and "cannot write to" in err and err.count("\n") == 1


def test_demo_writes_only_to_its_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The README's first command must leave the tracked tree unchanged: its default folder is ignored by git, and a
    # run of the demo's code path into a temporary folder changes no tracked file.
    default = cli.OUTPUT_ROOT / "demo" / "demo.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(default)], cwd=REPOSITORY_ROOT)
    assert ignored.returncode == 0, f"{default} is not ignored by git"
    before = tracked_changes()
    argv = ["demo", "--steps", "12", "--samples-per-class", "1", "--max-window", "3", "--no-progress", "--json"]
    status, out, _ = run([*argv, "--output-dir", str(tmp_path)], capsys)
    document = json.loads(out)
    assert status == 0 and document["steps"] == 12 and document["speculative_target_calls"] <= 12
    assert sorted(path.name for path in tmp_path.iterdir()) == ["demo.json", "demo_digits.png"]
    assert tracked_changes() == before
    written = json.loads((tmp_path / "demo.json").read_text())
    assert written["script"] == "specdiff demo" and written["preset"] == "arguments" and written["seed"] == 0
    assert written["config"] == {"steps": 12, "samples_per_class": 1, "max_window": 3, "measured_cost": False,
                                 "device": "cpu"}  # fmt: skip
    assert {"commit", "dirty", "machine", "date"} <= set(written) and written["seconds"] > 0
    assert written["speculative_target_calls"] == document["speculative_target_calls"]


@pytest.mark.parametrize("drafter", ["none", "free-nearest", "frozen"])
def test_sample_writes_a_grid_and_statistics(drafter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sample", "--steps", "10", "--samples-per-class", "1", "--drafter", drafter, "--window", "3"]
    status, out, _ = run([*argv, "--output-dir", str(tmp_path), "--no-progress", "--json"], capsys)
    document = json.loads(out)
    assert status == 0 and document["request"]["drafter"] == drafter and document["batch"] == 10
    assert (tmp_path / "sample_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((tmp_path / "sample.json").read_text())
    assert written["target_calls"] == document["target_calls"] and written["request"] == document["request"]
    assert written["script"] == "specdiff sample" and written["config"] == document["request"]
    assert written["seed"] == 0 and written["seconds"] > 0 and "commit" in written
    if drafter == "none":
        assert document["target_calls"] == 10 and document["measured_steps_per_round"] is None
    else:
        assert document["measured_steps_per_round"] >= 1.0 and document["rounds"] >= 1


@pytest.mark.slow
def test_verify_runs_the_exactness_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        ["verify", "--size", "smoke", "--output-dir", str(tmp_path), "--json", "--no-progress"], capsys
    )
    document = json.loads(out)
    payload = json.loads((tmp_path / "exactness.json").read_text())
    assert document["checks"] == len(payload["records"]) > 0
    assert status == (0 if payload["all_passed"] else 1) and document["all_passed"] == payload["all_passed"]
    assert payload["script"] == "simulations.exactness" and payload["preset"] == "smoke" and payload["seed"] == 0
    # the finished checks are stored in the output folder, not under results/
    assert len(list((tmp_path / "cells").glob("*.json"))) == payload["sweep"]["cells"] == len(payload["records"])


@pytest.mark.slow
def test_figures_from_the_committed_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["figures", "--output-dir", str(tmp_path), "--no-progress", "--json"], capsys)
    document = json.loads(out)
    assert status == 0 and document["missing"] == {}
    assert sorted(document["written"]) == sorted(str(path) for path in tmp_path.iterdir())
    assert {path.suffix for path in tmp_path.iterdir()} == {".png", ".pdf"}


def test_sample_a_local_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from specdiff.models.dit import weight_paths

    for source, suffix in zip(weight_paths("digits"), (".safetensors", ".json"), strict=True):
        shutil.copy(source, tmp_path / f"dit_copy{suffix}")
    argv = ["sample", "--model", str(tmp_path / "dit_copy.safetensors"), "--steps", "6", "--samples-per-class", "1"]
    status, out, _ = run([*argv, "--output-dir", str(tmp_path / "out"), "--no-progress", "--json"], capsys)
    assert status == 0 and json.loads(out)["request"]["model"].endswith("dit_copy.safetensors")
    status, _, err = run(["sample", "--model", str(tmp_path / "copy.safetensors"), "--no-progress"], capsys)
    assert status == 2 and "dit_NAME.safetensors" in err


@pytest.mark.slow
def test_bench_smoke_writes_its_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--device", "cpu", "--output-dir", str(tmp_path), "--json", "--no-progress"]
    status, out, _ = run(argv, capsys)
    document = json.loads(out)
    assert status == 0 and document == {"complete": True, "output": str(tmp_path / "bench_smoke.json")}
    payload = json.loads((tmp_path / "bench_smoke.json").read_text())
    assert payload["script"] == "simulations.bench_gpu" and payload["preset"] == "smoke"
    assert payload["config"]["device"] == "cpu" and payload["sweep"]["not_run"] == 0
    speedups = [record for record in payload["records"] if record["kind"] == "speedup"]
    assert speedups and all(record["speedup"] > 0 and record["device"] == "cpu" for record in speedups)
    stored = len(list((tmp_path / "cells").glob("*.json")))
    assert stored == payload["sweep"]["cells"] == len(payload["records"])
    # a rerun reuses the stored cells; --fresh times them again
    status, out, _ = run(argv, capsys)
    assert status == 0 and json.loads((tmp_path / "bench_smoke.json").read_text())["sweep"]["resumed"] == stored
    status, out, _ = run([*argv, "--fresh"], capsys)
    assert status == 0 and json.loads((tmp_path / "bench_smoke.json").read_text())["sweep"]["resumed"] == 0


@pytest.mark.slow
def test_console_script_points_at_the_command_line() -> None:
    (script,) = [entry for entry in entry_points(group="console_scripts") if entry.name == "specdiff"]
    assert script.value == "simulations.cli:main"
    result = subprocess.run(
        [sys.executable, "-m", "simulations.cli", "theory", "--deltas", "1", "--windows", "2", "--samples", "200"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY_ROOT,
    )
    assert "block gain" in result.stdout
