"""The wall-clock benchmark (``simulations.bench_gpu``) as an experiment: its cells, its smoke run on the CPU, the
time budget and the store. No timing assertions: only the structure and the counts of the records."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from simulations import bench_gpu
from specdiff.models.dit import DIT_PRESETS


def test_cells_put_the_cost_curves_first_and_the_curve_only_where_a_cell_needs_it() -> None:
    config = replace(bench_gpu.CPU, device="cpu")
    cells = bench_gpu.cells(config)
    curves = [cell for cell in cells if isinstance(cell, bench_gpu.CostCurveCell)]
    sampling = [cell for cell in cells if isinstance(cell, bench_gpu.SamplingCell)]
    assert cells == [*curves, *sampling] and len(set(cells)) == len(cells)
    depth, large = DIT_PRESETS["digits"].depth, DIT_PRESETS["S/2"].depth
    assert [(c.model, c.blocks) for c in curves] == [("digits", depth), ("digits", 1), ("digits", 2), ("S/2", large),
                                                     ("S/2", large // 4)]  # fmt: skip
    per_case = 2 * len(config.drafters) * len(config.windows) + len(config.perfect_windows)
    assert len(sampling) == len(config.steps) * len(config.batches) * per_case
    # the priority order of the presets: batch outer, N inner
    assert [(c.batch, c.steps) for c in sampling[::per_case]] == [(1, 50), (1, 200), (8, 50), (8, 200)]
    for cell in sampling:
        needs_curve = cell.window == "adaptive" or cell.drafter == "perfect"
        assert cell.cost_batches == (config.cost_batches if needs_curve else ())
        assert cell.device == "cpu" and cell.placement == "device" and not cell.compiled
    assert {cell.device for cell in bench_gpu.cells(bench_gpu.SMOKE)} == {bench_gpu.default_device()}
    # ``gpu``: the full preset's cells, N = 200 first and N = 50 second (a short lease reaches both)
    gpu, full = bench_gpu.PRESETS["gpu"], bench_gpu.PRESETS["full"]
    assert gpu.steps[:2] == (200, 50) and replace(gpu, steps=full.steps) == full
    assert sorted(gpu.steps) == sorted(full.steps)
    assert set(bench_gpu.sampling_cells(gpu, "cpu")) == set(bench_gpu.sampling_cells(full, "cpu"))


@pytest.mark.slow
def test_smoke_writes_flat_records_and_resumes_from_the_store(tmp_path: Path) -> None:
    output, store = tmp_path / "bench.json", tmp_path / "store"
    arguments = ["--smoke", "--device", "cpu", "--output", str(output), "--store", str(store)]
    assert bench_gpu.main(arguments) == 0
    payload = json.loads(output.read_text())
    assert payload["complete"] is True and payload["passed"] is True and payload["preset"] == "smoke"
    assert payload["config"]["device"] == "cpu" and payload["sweep"]["not_run"] == 0
    curves = [r for r in payload["records"] if r["kind"] == "cost-curve"]
    records = [r for r in payload["records"] if r["kind"] == "speedup"]
    assert len(curves) + len(records) == len(payload["records"]) == payload["sweep"]["cells"]
    assert {(c["model"], c["blocks"]) for c in curves} == {("digits", 4), ("digits", 1), ("digits", 2)}
    assert all(c["batches"] == list(bench_gpu.SMOKE.cost_batches) and len(c["seconds"]) == 4 for c in curves)
    required = {"model", "steps", "batch", "rule", "drafter", "window", "target_calls", "wall_seconds",
                "baseline_wall_seconds", "speedup", "call_ratio", "device", "placement", "compiled", "graphed",
                "graph_fallbacks"}  # fmt: skip
    for record in records:
        assert required <= set(record) and record["device"] == "cpu" and record["placement"] == "device"
        assert record["graphed"] is False and record["graph_fallbacks"] == 0
        assert record["pairs"] == bench_gpu.SMOKE.repeats == len(record["pair_speedups"])
        assert record["speedup"] == pytest.approx(float(np.median(record["pair_speedups"])))
        assert record["pair_speedups"] == pytest.approx(
            [b / w for b, w in zip(record["pair_baseline_wall_seconds"], record["pair_wall_seconds"], strict=True)]
        )
        assert record["call_ratio"] == pytest.approx(record["steps"] / record["target_calls"])
    smoke = bench_gpu.SMOKE
    assert len(records) == 2 * len(smoke.drafters) * len(smoke.windows) + len(smoke.perfect_windows)
    perfect = [r for r in records if r["drafter"] == "perfect"]
    # A perfect draft (the target itself) is always accepted: every round commits window + 1 steps.
    assert perfect and all(r["target_calls"] == math.ceil(r["steps"] / (int(r["window"]) + 1)) for r in perfect)
    assert all(r["efficiency"] == pytest.approx(r["speedup_without_draft"] / r["ideal_speedup"]) for r in perfect)
    # Each adaptive cell measures the sampler's own time per round itself; fixed windows need none.
    adaptive = [r for r in records if r["window"] == "adaptive"]
    assert len(adaptive) == 2 * len(smoke.drafters)
    assert all(math.isfinite(r["round_overhead"]) and r["round_overhead"] >= 0 for r in adaptive)
    assert all(r["round_overhead"] is None for r in records if r["window"] == "4" and r["drafter"] != "perfect")
    # A rerun reads every cell from the store and writes the same records.
    assert bench_gpu.main(arguments) == 0
    again = json.loads(output.read_text())
    assert again["sweep"]["resumed"] == payload["sweep"]["cells"] and again["records"] == payload["records"]


def test_no_cell_starts_after_max_seconds(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    arguments = ["--smoke", "--device", "cpu", "--output", str(output), "--store", str(tmp_path / "store")]
    assert bench_gpu.main([*arguments, "--max-seconds", "1e-9"]) == 0
    payload = json.loads(output.read_text())
    assert payload["complete"] is False and payload["records"] == []
    assert payload["sweep"]["not_run"] == payload["sweep"]["cells"] == len(bench_gpu.cells(bench_gpu.SMOKE))
    assert payload["sweep"]["max_seconds"] == 1e-9


def test_host_placement_keeps_the_states_on_the_host() -> None:
    config = replace(bench_gpu.SMOKE, drafters=("free-exit",), windows=("4",), perfect_windows=())
    host = bench_gpu.run(replace(config, placement="host"), "cpu", seed=0, progress=False)
    same = bench_gpu.run(config, "cpu", seed=0, progress=False)
    assert [r["placement"] for r in host["records"]] == ["host"] * 2 and host["complete"] is True
    assert [r["placement"] for r in same["records"]] == ["device"] * 2 and len(same["cost_curves"]) == 3
    assert [r["target_calls"] for r in host["records"]] == [r["target_calls"] for r in same["records"]]


def test_timed_pairs_alternate_plain_and_speculative_and_keep_the_warm_up_untimed() -> None:
    calls: list[str] = []
    walls = iter([4.0, 1.0, 9.0, 2.0, 3.0])  # the warm-up's wall (9.0 would spoil every median) comes first

    def plain() -> float:
        calls.append("plain")
        return 6.0

    def speculative() -> tuple[Any, float, float]:
        calls.append("speculative")
        return f"result {len(calls)}", next(walls), 0.5

    timing = bench_gpu.timed_pairs(plain, speculative, pairs=4, warm_up=True)
    assert calls == ["speculative", *["plain", "speculative"] * 4]
    assert timing.result == "result 9" and timing.speculative == [1.0, 9.0, 2.0, 3.0]
    assert timing.baseline == [6.0] * 4 and timing.draft == [0.5] * 4
    assert timing.speedups == [6.0, 6.0 / 9.0, 3.0, 2.0]
    assert timing.speedups_without_draft == pytest.approx([12.0, 6.0 / 8.5, 4.0, 2.4])
    fields = timing.fields()
    # Medians: of the pairs' speedups (not the ratio of the median times), and of each side's wall times.
    assert fields["speedup"] == pytest.approx(2.5) and fields["pairs"] == 4
    assert fields["wall_seconds"] == pytest.approx(2.5) and fields["baseline_wall_seconds"] == 6.0
    assert fields["pair_speedups"] == timing.speedups and fields["pair_wall_seconds"] == timing.speculative
    # Without a warm-up every speculative run is timed; at least one pair is needed.
    calls.clear()
    walls = iter([1.0])
    assert bench_gpu.timed_pairs(plain, speculative, pairs=1, warm_up=False).speculative == [1.0]
    assert calls == ["plain", "speculative"]
    with pytest.raises(ValueError, match="pairs must be >= 1"):
        bench_gpu.timed_pairs(plain, speculative, pairs=0, warm_up=False)


def test_the_compiled_preset_compiles_both_samplers_and_puts_the_headline_cells_first() -> None:
    config = bench_gpu.PRESETS["gpu-compiled"]
    sampling = [cell for cell in bench_gpu.cells(config) if isinstance(cell, bench_gpu.SamplingCell)]
    assert sampling and all(cell.compiled and cell.placement == "device" for cell in sampling)
    # Timing the network inside a run (perfect drafter, adaptive policy) would split the compiled round: none here.
    assert {cell.drafter for cell in sampling} == {"free-nearest", "free-exit"}
    assert {cell.window for cell in sampling} == {"8"} and not any(cell.cost_batches for cell in sampling)
    assert (sampling[0].batch, sampling[0].steps) == (1, 200)
    assert config.repeats >= 5  # block over token as the median of at least 5 pairs
    # --compile on any preset drops those cells too, and keeps the rest.
    eager = [cell for cell in bench_gpu.cells(bench_gpu.SMOKE) if isinstance(cell, bench_gpu.SamplingCell)]
    every = bench_gpu.cells(replace(bench_gpu.SMOKE, compile=True))
    compiled = [cell for cell in every if isinstance(cell, bench_gpu.SamplingCell)]
    kept = [replace(cell, compiled=False) for cell in compiled]
    assert kept == [cell for cell in eager if cell.window != "adaptive" and cell.drafter != "perfect"] != []
    assert all(cell.compiled for cell in compiled)


def test_a_timed_run_counts_the_captures_that_fell_back() -> None:
    # A compiled CUDA run replays graphs unless a capture failed (graph="auto" then warns and runs without one):
    # the record says how often, and other warnings pass through.
    case = SimpleNamespace(device=torch.device("cpu"), graph_fallbacks=0)

    def fell_back() -> int:
        warnings.warn("the step could not be captured as a graph (RuntimeError: x)", RuntimeWarning, stacklevel=1)
        return 3

    assert bench_gpu._Case._timed(case, fell_back)[0] == 3  # type: ignore[arg-type]
    assert case.graph_fallbacks == 1
    with pytest.warns(UserWarning, match="other"):
        bench_gpu._Case._timed(case, lambda: warnings.warn("other", UserWarning, stacklevel=1))  # type: ignore[arg-type]
    assert case.graph_fallbacks == 1


def test_the_compiled_preset_measures_its_headline_cell_first() -> None:
    # Each compiled cell first compiles its round (a minute on a GPU): the first is the headline cell.
    first, *rest = bench_gpu.sampling_cells(bench_gpu.PRESETS["gpu-compiled"], "cuda")
    assert (first.steps, first.batch, first.rule, first.drafter, first.window) == (200, 1, "block", "free-nearest", "8")
    assert first.compiled and all(cell.compiled for cell in rest)
    assert {cell.rule for cell in rest} == {"block", "token-reflection"}
