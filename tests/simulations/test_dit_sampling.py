"""Speculative sampling of the shipped digits DiT: exactness against plain sampling per class (MMD and projected
KS, Bonferroni, ALPHA), calibration against the theory, and the negative control (accept-always) rejected by the same
test. Plus smoke runs of the demo, the benchmark script, the DiT exactness script and the DiT quality script (no timing
assertions)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from simulations import dit_exactness, dit_quality
from simulations.experiment import make_cells
from specdiff import demo
from specdiff.demo import format_demo, measure_batch_cost, run_demo
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT, load_pretrained
from specdiff.policies import FixedWindow
from tests.statistics import ALPHA, z_threshold

# n = 150 per arm in one class at N = 60 steps (the reuse draft accepts ~0.5 steps per round there); a fixed window
# of 8 so that speculation happens at every round. MMD and KS at ALPHA detect a 0.3 sd mean shift at this n.
SAMPLES = 150
# The class p-value is min(1, 2 min(p_MMD, p_KS)) and a permutation p-value is at least 1 / (P + 1): with P = 29,999
# the MMD half alone reaches 2 / 30,000 < ALPHA (with 100 permutations it could never go below 0.0198), about 1 s.
PERMUTATIONS = 29_999


@pytest.fixture(scope="module")
def model() -> DiT:
    return load_pretrained("digits")


@pytest.mark.statistical
@pytest.mark.parametrize("rule", ["block", "token-reflection"])
@pytest.mark.slow
def test_speculative_dit_samples_match_plain_samples(model: DiT, rule: str) -> None:
    result = dit_exactness.check(
        model, rule=rule, drafter="free-nearest", control=None, classes=(3,), samples_per_class=SAMPLES,  # type: ignore[arg-type]
        steps=60, seed=5, permutations=PERMUTATIONS, window=FixedWindow(8),
    )  # fmt: skip
    assert 2 / (PERMUTATIONS + 1) < ALPHA  # each half of the Bonferroni pair can reject on its own
    assert result.p_value > ALPHA
    assert abs(result.calibration_z) < z_threshold()
    assert result.measured_steps_per_round > 1.3 and result.target_calls < result.plain_target_calls


@pytest.mark.statistical
@pytest.mark.slow
def test_accept_always_control_is_rejected_on_the_dit(model: DiT) -> None:
    result = dit_exactness.check(
        model, rule="block", drafter="free-nearest", control="accept-always", classes=(3,), samples_per_class=SAMPLES,
        steps=60, seed=5, permutations=PERMUTATIONS, window=FixedWindow(8),
    )  # fmt: skip
    assert result.p_value < ALPHA


def test_demo_runs_and_writes_its_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Independent counts: the network's forward calls inside each sampler (one batched call per step or round), and
    # the cost curve the demo measured (c(1) .. c(max_window + 1)).
    calls: Counter[str] = Counter()
    curves: list[list[float]] = []

    def counted(function: Callable[..., Any], name: str) -> Callable[..., Any]:
        def wrapper(model: Any, *arguments: Any, **keywords: Any) -> Any:
            hook = model.model.register_forward_hook(lambda *_: calls.update([name]))
            try:
                return function(model, *arguments, **keywords)
            finally:
                hook.remove()

        return wrapper

    def recorded(*arguments: Any, **keywords: Any) -> list[float]:
        curves.append(measure_batch_cost(*arguments, **keywords))
        return curves[-1]

    monkeypatch.setattr(demo, "sample_plain", counted(demo.sample_plain, "plain"))
    monkeypatch.setattr(demo, "sample", counted(demo.sample, "speculative"))
    monkeypatch.setattr(demo, "measure_batch_cost", recorded)
    result = run_demo(steps=12, samples_per_class=1, max_window=4, seed=3, output_dir=tmp_path, progress=False)
    assert result.plain_target_calls == calls["plain"] == 12
    assert result.speculative_target_calls == calls["speculative"]
    assert len(curves) == 1 and len(curves[0]) == 5 and result.batch_cost_ratio == curves[0][4] / curves[0][0]
    assert (tmp_path / "demo_digits.png").stat().st_size > 0
    assert result.batch == 10 and sorted(path.name for path in tmp_path.iterdir()) == ["demo_digits.png"]
    assert "wall-clock speedup" in format_demo(result)
    # A cost growing linearly in the states per sample: no window can beat a plain step (at most L + 1 steps for
    # L + 1 times the cost), so after the first windows (the initial window, max_window, before any gap is observed)
    # every step is plain.
    linear = [1.0, 2.0, 3.0, 4.0, 5.0]
    monkeypatch.setattr(demo, "measure_batch_cost", lambda *arguments, **keywords: list(linear))
    measured = run_demo(steps=12, samples_per_class=1, max_window=4, seed=3, measured_cost=True, progress=False)
    assert measured.measured_cost and measured.batch_cost_ratio == 5.0 and measured.mean_window == 4.0
    assert measured.speculative_target_calls == calls["speculative"] - result.speculative_target_calls
    with pytest.raises(ValueError):
        run_demo(steps=1)


def test_demo_cost_curve_evaluates_m_states_per_sample() -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def network(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append((x, t, y))
        return x

    states, labels = torch.randn(3, 1, 8, 8), torch.tensor([4, 1, 7])
    kernel = DDPMKernel(linear_schedule(1000), num_steps=12)
    curve = measure_batch_cost(network, kernel, states, labels, max_window=2, repeats=1)  # type: ignore[arg-type]
    assert len(curve) == 3
    # one untimed and one timed call per m = 1, 2, 3: m copies of the states, their labels and one timestep
    assert [int(x.shape[0]) for x, _, _ in seen] == [3, 3, 6, 6, 9, 9]
    for x, t, y in seen:
        copies = x.shape[0] // 3
        assert x.equal(states.repeat(copies, 1, 1, 1)) and y.equal(labels.repeat(copies))
        assert t.shape == (x.shape[0],) and bool((t == kernel.timesteps[0]).all())


def test_dit_exactness_smoke(tmp_path: Path) -> None:
    output, store = tmp_path / "dit.json", tmp_path / "cells"
    arguments = ["--smoke", "--device", "cpu", "--output", str(output), "--store", str(store)]
    assert dit_exactness.main(arguments) == 0
    payload = json.loads(output.read_text())
    assert payload["device"] == "cpu" and payload["all_passed"] is True and payload["passed"] is True
    assert payload["config"]["device"] == "cpu" and payload["level"] == dit_exactness.LEVEL
    (record,) = payload["records"]
    rule, drafter, control, _ = dit_exactness.SMOKE.runs[0]
    assert (record["rule"], record["drafter"], record["control"]) == (rule, drafter, control)
    assert record["device"] == "cpu" and record["expected_rejection"] is False and not record["rejected"]
    assert len(record["class_p_values"]) == len(dit_exactness.SMOKE.classes)
    assert record["plain_target_calls"] == dit_exactness.SMOKE.steps >= record["target_calls"] > 0
    # The cell is stored: a rerun reads it back and writes the same record.
    assert len(list(store.glob("*.json"))) == 1
    assert dit_exactness.main(arguments) == 0
    again = json.loads(output.read_text())
    assert again["sweep"]["resumed"] == 1 and again["records"] == payload["records"]


def test_dit_exactness_cells_carry_the_device_and_every_run() -> None:
    config = replace(dit_exactness.FULL, device="cuda")
    cells = dit_exactness.cells(config)
    assert [(c.rule, c.drafter, c.control, c.window) for c in cells] == list(config.runs)
    assert {c.device for c in cells} == {"cuda"} and {c.permutations for c in cells} == {config.permutations}
    # The device is left out of the seed: the same noises on every device, but separate stored cells.
    on_cpu = make_cells(dit_exactness.EXPERIMENT, dit_exactness.FULL, root_seed=1)
    on_gpu = make_cells(dit_exactness.EXPERIMENT, config, root_seed=1)
    assert [c.seed for c in on_cpu] == [c.seed for c in on_gpu] and len({c.seed for c in on_cpu}) == len(cells)
    assert not {c.key for c in on_cpu} & {c.key for c in on_gpu}
    with pytest.raises(ValueError, match="cannot reject"):
        replace(dit_exactness.SMOKE, permutations=99)


def test_dit_quality_smoke_writes_the_numbers_and_the_grid(tmp_path: Path) -> None:
    output, figure = tmp_path / "quality.json", tmp_path / "grid.png"
    arguments = ["--smoke", "--output", str(output), "--store", str(tmp_path / "cells"), "--figure", str(figure)]
    assert dit_quality.main(arguments) == 0
    payload = json.loads(output.read_text())
    smoke = dit_quality.SMOKE
    assert payload["preset"] == "smoke" and payload["samples"] == 10 * smoke.samples_per_class
    assert payload["config"]["num_steps"] == smoke.num_steps and payload["model"] == "digits"
    metrics = payload["metrics"]
    assert (
        0.0 <= metrics["classifier_accuracy_samples"] <= 1.0
        and len(metrics["classifier_accuracy_samples_per_class"]) == 10
    )
    assert metrics["classifier_accuracy_heldout_real"] > 0.9  # the classifier itself is good on real digits
    assert metrics["nearest_train_distance_samples_mean"] > 0 and "sampling_seconds" not in metrics
    grid = payload["grid"]
    assert grid["columns"] == smoke.grid_columns and len(grid["images"]) == 10
    assert all(len(row) == smoke.grid_columns and len(row[0]) == 8 for row in grid["images"])
    assert payload["records"][0]["grid"] == grid and figure.stat().st_size > 0
