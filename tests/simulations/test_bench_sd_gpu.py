"""The Stable Diffusion / DiT benchmark (``simulations.bench_sd_gpu``) on the CPU: its cells, the full networks'
configs (on the meta device, nothing computed), the whole smoke run (the GPU path's logic with the tiny networks),
the trained-model part with a saved tiny pipeline and without one, and the time budget. No timing assertions: only
the structure of the records and the identities between their fields."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from simulations import bench_sd_gpu
from simulations.experiment import make_cells
from specdiff.integrations.tiny import tiny_stable_diffusion_pipeline

#: The fields of ``simulations.bench_gpu``'s records that every timed pair here carries.
PAIR_FIELDS = {"kind", "model", "steps", "batch", "rule", "drafter", "window", "target_calls", "wall_seconds",
               "baseline_wall_seconds", "speedup", "device", "commit"}  # fmt: skip


def test_cells_put_the_cheap_cells_first_and_skip_the_absent_trained_model(tmp_path: Path) -> None:
    config = replace(bench_sd_gpu.FULL, device="cpu", trained_weights=str(tmp_path / "no-model"))
    cells = bench_sd_gpu.cells(config)
    kinds = [cell.kind for cell in cells]
    models, batches, windows = len(config.models), len(config.batches), len(config.windows)
    assert kinds == (
        ["cost-curve"] * models
        + ["overhead"] * models * batches * windows
        + ["efficiency"] * len(config.steps) * batches * models * windows
        + ["skipped"]
    )
    efficiency = [cell for cell in cells if isinstance(cell, bench_sd_gpu.EfficiencyCell)]
    assert [cell.steps for cell in efficiency] == sorted(cell.steps for cell in efficiency)  # N = 1000 last
    assert {(c.model, c.steps, c.batch) for c in efficiency} == {
        (model, steps, batch) for model in ("sd-1.5", "dit-xl-2") for steps in (50, 200, 1000) for batch in (1, 4)
    }
    assert all(cell.device == "cpu" and cell.precision == "float16" for cell in efficiency)
    skipped = cells[-1]
    assert isinstance(skipped, bench_sd_gpu.SkippedCell) and "no trained" in skipped.note
    assert len({cell.key for cell in make_cells(bench_sd_gpu.EXPERIMENT, config, 0)}) == len(cells)
    first = bench_sd_gpu.cells(replace(config, device=None))[0]
    assert isinstance(first, bench_sd_gpu.CostCurveCell) and first.device == bench_sd_gpu.default_device()


def test_full_size_networks_follow_the_published_configs() -> None:
    with torch.device("meta"):
        unet = bench_sd_gpu.sd15_unet()
        transformer = bench_sd_gpu.dit_xl2_transformer()
        encoder = bench_sd_gpu.sd15_text_encoder(514)
    assert sum(parameter.numel() for parameter in unet.parameters()) == 859_520_964  # Stable Diffusion 1.5's UNet
    assert unet.config.block_out_channels == (320, 640, 1280, 1280) and unet.config.cross_attention_dim == 768
    assert (unet.config.sample_size, unet.config.in_channels, unet.config.out_channels) == (64, 4, 4)
    dit = transformer.config
    assert (dit.num_layers, dit.num_attention_heads * dit.attention_head_dim, dit.patch_size) == (28, 1152, 2)
    assert (dit.sample_size, dit.in_channels, dit.out_channels, dit.num_embeds_ada_norm) == (32, 4, 8, 1000)
    text = encoder.config
    assert (text.hidden_size, text.num_hidden_layers, text.max_position_embeddings) == (768, 12, 77)


def _by_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [record for record in records if record["kind"] == kind]


def _check_pair(record: dict[str, Any]) -> None:
    assert PAIR_FIELDS <= set(record) and record["device"] == "cpu"
    assert record["speedup"] == pytest.approx(record["baseline_wall_seconds"] / record["wall_seconds"])
    assert record["call_ratio"] == pytest.approx(record["steps"] / record["target_calls"])


def _check_perfect(record: dict[str, Any]) -> None:
    """A perfect draft (the target itself) is always accepted: every round commits L + 1 steps."""
    _check_pair(record)
    window = int(record["window"])
    assert record["drafter"] == "perfect" and record["rule"] == "block" and record["depends_on_weights"] is False
    assert record["target_calls"] == record["expected_target_calls"] == math.ceil(record["steps"] / (window + 1))
    assert record["draft_calls"] == record["steps"] - record["target_calls"]  # one draft call per drafted state


@pytest.mark.slow
def test_smoke_run_writes_every_kind_and_resumes_without_the_trained_model(tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    tiny_stable_diffusion_pipeline(seed=3).save_pretrained(trained)
    output, store = tmp_path / "bench.json", tmp_path / "store"
    arguments = ["--smoke", "--device", "cpu", "--output", str(output), "--store", str(store)]
    assert bench_sd_gpu.main([*arguments, "--trained-weights", str(trained)]) == 0
    payload = json.loads(output.read_text())
    smoke = bench_sd_gpu.SMOKE
    assert payload["passed"] is True and payload["complete"] is True and payload["preset"] == "smoke"
    assert payload["sweep"]["not_run"] == 0 and payload["sweep"]["max_seconds"] == bench_sd_gpu.DEFAULT_MAX_SECONDS
    assert payload["config"]["device"] == "cpu" and payload["skipped"] == []
    records = payload["records"]
    assert all(record["commit"] == payload["commit"] for record in records)

    curves = _by_kind(records, "cost-curve")
    assert [curve["model"] for curve in curves] == list(smoke.models)
    for curve in curves:
        assert curve["batches"] == list(smoke.cost_batches)
        assert curve["network_rows"] == [2 * states for states in curve["batches"]]  # guidance: two rows per latent
        assert len(curve["seconds"]) == len(smoke.cost_batches) and all(s > 0 for s in curve["seconds"])

    efficiency = _by_kind(records, "efficiency")
    assert len(efficiency) == len(smoke.models) * len(smoke.steps) * len(smoke.batches) * len(smoke.windows)
    for record in efficiency:
        _check_perfect(record)
        assert record["cost_ratio"] == pytest.approx(record["round_call_seconds"] / record["call_seconds"])
        assert record["ideal_speedup"] == pytest.approx((int(record["window"]) + 1) / record["cost_ratio"])
        without_draft = record["baseline_wall_seconds"] / (record["wall_seconds"] - record["draft_seconds"])
        assert record["speedup_without_draft"] == pytest.approx(without_draft)
        assert record["efficiency"] == pytest.approx(record["speedup_without_draft"] / record["ideal_speedup"])
        assert 0 < record["efficiency"] < 1e4 and math.isfinite(record["efficiency"])  # no timing assertion

    overhead = _by_kind(records, "overhead")
    assert len(overhead) == len(smoke.models) * len(smoke.batches) * len(smoke.windows)
    for record in overhead:
        _check_perfect(record)
        assert record["steps"] == smoke.overhead_steps and record["rounds"] == record["target_calls"]
        assert 0 < record["overhead_seconds"] < record["wall_seconds"] and record["call_seconds"] > 0
        assert record["overhead_fraction"] == pytest.approx(record["overhead_seconds"] / record["call_seconds"])
        assert record["overhead_milliseconds"] == pytest.approx(1e3 * record["overhead_seconds"])
    fractions = [record["overhead_fraction"] for record in overhead]
    assert payload["overhead_below_target"] is all(f < bench_sd_gpu.OVERHEAD_TARGET for f in fractions)

    speedups = _by_kind(records, "speedup")
    assert len(speedups) == len(smoke.trained_steps) * len(smoke.trained_batches) * len(smoke.trained_rules)
    assert {record["rule"] for record in speedups} == {"token", "block"}
    for record in speedups:
        _check_pair(record)
        assert record["model"] == "trained:trained" and record["depends_on_weights"] is True
        assert record["drafter"] == "free-nearest" and record["window"] == "adaptive"
        assert 1 <= record["target_calls"] <= record["steps"]
    assert len(records) == len(curves) + len(efficiency) + len(overhead) + len(speedups) == payload["sweep"]["cells"]

    # Without the trained model its part is one skipped cell with a note; every other cell comes from the store.
    assert bench_sd_gpu.main([*arguments, "--trained-weights", str(tmp_path / "absent")]) == 0
    again = json.loads(output.read_text())
    assert again["sweep"]["resumed"] == again["sweep"]["cells"] - 1 and again["complete"] is True
    [skipped] = _by_kind(again["records"], "skipped")
    assert "no trained Stable Diffusion-architecture model" in skipped["note"] and again["skipped"] == [skipped["note"]]
    assert [r for r in again["records"] if r["kind"] != "skipped"] == [r for r in records if r["kind"] != "speedup"]


def test_no_cell_starts_after_max_seconds(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    arguments = ["--smoke", "--device", "cpu", "--output", str(output), "--store", str(tmp_path / "store")]
    assert bench_sd_gpu.main([*arguments, "--max-seconds", "1e-9"]) == 0
    payload = json.loads(output.read_text())
    assert payload["complete"] is False and payload["records"] == [] and payload["sweep"]["max_seconds"] == 1e-9
    assert payload["sweep"]["not_run"] == payload["sweep"]["cells"] == len(bench_sd_gpu.cells(bench_sd_gpu.SMOKE))


def test_the_default_budget_applies_only_without_max_seconds() -> None:
    budget = str(bench_sd_gpu.DEFAULT_MAX_SECONDS)
    assert bench_sd_gpu.with_default_budget(["--smoke"]) == ["--smoke", "--max-seconds", budget]
    assert bench_sd_gpu.with_default_budget(["--max-seconds", "5"]) == ["--max-seconds", "5"]
    assert bench_sd_gpu.with_default_budget(["--max-seconds=5"]) == ["--max-seconds=5"]


def test_the_default_trained_model_is_the_shipped_digits_pipeline_and_loads_in_a_fresh_process() -> None:
    # A fresh process: diffusers loads the pixel-space VAE's class only if its module was imported (trained_pipeline
    # must import it itself).
    (cell, *_) = bench_sd_gpu.trained_cells(replace(bench_sd_gpu.FULL, device="cpu"), "cpu")
    assert isinstance(cell, bench_sd_gpu.TrainedCell) and cell.weights == bench_sd_gpu.TRAINED_WEIGHTS
    code = (
        "from simulations import bench_sd_gpu as b; "
        "pipe = b.trained_pipeline(b.TRAINED_WEIGHTS, b.folder_fingerprint(b.TRAINED_WEIGHTS), 'float32', 'cpu'); "
        "print(type(pipe.vae).__name__, pipe.vae_scale_factor)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split()[-2:] == ["PixelSpaceDecoder", "1"]
