"""Speculative sampling of the shipped digits DiT: exactness against plain sampling per class (MMD and projected
KS, Bonferroni, ALPHA), calibration against the theory, and the negative control (accept-always) rejected by the same
test. Plus smoke runs of the demo, the benchmark script and the DiT exactness script (no timing assertions)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from simulations import bench_gpu, dit_exactness
from specdiff.demo import format_demo, run_demo
from specdiff.models.dit import load_pretrained
from specdiff.policies import FixedWindow
from tests.statistics import ALPHA, z_threshold

# n = 150 per arm in one class at N = 60 steps (the reuse draft accepts ~0.5 steps per round there); a fixed window
# of 8 so that speculation happens at every round. MMD and KS at ALPHA detect a 0.3 sd mean shift at this n.
SAMPLES = 150


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_pretrained("digits")


@pytest.mark.statistical
@pytest.mark.parametrize("rule", ["block", "token-reflection"])
def test_speculative_dit_samples_match_plain_samples(model: torch.nn.Module, rule: str) -> None:
    result = dit_exactness.check(
        model, rule=rule, drafter="free-reuse", control=None, classes=(3,), samples_per_class=SAMPLES,  # type: ignore[arg-type]
        steps=60, seed=5, permutations=100, window=FixedWindow(8),
    )  # fmt: skip
    assert result.p_value > ALPHA
    assert abs(result.calibration_z) < z_threshold()
    assert result.measured_steps_per_round > 1.3 and result.target_calls < result.plain_target_calls


@pytest.mark.statistical
def test_accept_always_control_is_rejected_on_the_dit(model: torch.nn.Module) -> None:
    result = dit_exactness.check(
        model, rule="block", drafter="free-reuse", control="accept-always", classes=(3,), samples_per_class=SAMPLES,
        steps=60, seed=5, permutations=100, window=FixedWindow(8),
    )  # fmt: skip
    assert result.p_value < ALPHA


def test_demo_runs_and_writes_its_outputs(tmp_path: Path) -> None:
    result = run_demo(steps=12, samples_per_class=1, max_window=4, seed=3, output_dir=tmp_path, progress=False)
    assert result.plain_target_calls == 12 and 1 <= result.speculative_target_calls <= 12
    assert (tmp_path / "demo_digits.png").stat().st_size > 0
    assert json.loads((tmp_path / "demo.json").read_text())["batch"] == 10
    assert "wall-clock speedup" in format_demo(result) and result.batch_cost_ratio > 0
    measured = run_demo(steps=12, samples_per_class=1, max_window=4, seed=3, measured_cost=True, progress=False)
    assert measured.measured_cost and measured.speculative_target_calls <= 12
    with pytest.raises(ValueError):
        run_demo(steps=1)


def test_bench_smoke_writes_flat_records(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    assert bench_gpu.main(["--preset", "smoke", "--device", "cpu", "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert payload["complete"] is True
    required = {"model", "steps", "batch", "rule", "drafter", "window", "target_calls", "wall_seconds",
                "baseline_wall_seconds", "speedup", "device", "commit"}  # fmt: skip
    for record in payload["records"]:
        assert required <= set(record)
        assert record["speedup"] == pytest.approx(record["baseline_wall_seconds"] / record["wall_seconds"])
    perfect = [r for r in payload["records"] if r["drafter"] == "perfect"]
    assert perfect and all(r["target_calls"] <= r["steps"] for r in perfect)
    # The adaptive policy is given the sampler's own time per round, measured once per cell (one value per cell).
    adaptive = [r for r in payload["records"] if r["window"] == "adaptive"]
    assert adaptive and len({r["round_overhead"] for r in adaptive}) == 1 and adaptive[0]["round_overhead"] >= 0.0
    assert all(
        r["round_overhead"] is None for r in payload["records"] if r["window"] == "4" and r["drafter"] != "perfect"
    )
    assert {curve["model"] for curve in payload["cost_curves"]} == {"digits"}


def test_bench_host_placement_keeps_the_states_on_the_host() -> None:
    preset = replace(bench_gpu.PRESETS["smoke"], drafters=("free-exit",), windows=("4",), perfect_windows=())
    records = bench_gpu.run(replace(preset, placement="host"), torch.device("cpu"), seed=0, progress=False)["records"]
    same = bench_gpu.run(preset, torch.device("cpu"), seed=0, progress=False)["records"]
    assert [r["placement"] for r in records] == ["host", "host"] and [r["placement"] for r in same] == ["device"] * 2
    assert [r["target_calls"] for r in records] == [r["target_calls"] for r in same]  # same seeds, same samples


def test_bench_stops_starting_cells_after_max_seconds(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    arguments = ["--preset", "smoke", "--device", "cpu", "--output", str(output), "--max-seconds", "0"]
    assert bench_gpu.main(arguments) == 0
    payload = json.loads(output.read_text())
    assert payload["complete"] is False and payload["records"] == [] and payload["max_seconds"] == 0
    assert len(payload["cost_curves"]) == 3  # measured before the first cell


def test_dit_exactness_smoke(tmp_path: Path) -> None:
    assert dit_exactness.main(["--smoke", "--device", "cpu", "--output", str(tmp_path / "dit.json")]) == 0
    payload = json.loads((tmp_path / "dit.json").read_text())
    assert payload["device"] == "cpu" and payload["all_passed"] is True
