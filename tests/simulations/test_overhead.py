"""Smoke run of ``simulations.overhead`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations import overhead as overhead_script


def test_overhead_smoke_writes_measurements(tmp_path: Path) -> None:
    output = tmp_path / "overhead.json"
    arguments = ["--smoke", "--output", str(output), "--store", str(tmp_path / "store")]
    assert overhead_script.main(arguments) == 0
    payload = json.loads(output.read_text())
    assert payload["script"] == "simulations.overhead" and payload["preset"] == "smoke" and payload["passed"]
    assert payload["config"]["dimension"] == overhead_script.SMOKE.dimension
    assert payload["sweep"]["cells"] == overhead_script.SMOKE.repeats + len(overhead_script.PROFILED)
    kinds = ["repeat"] * overhead_script.SMOKE.repeats + ["profile"] * len(overhead_script.PROFILED)
    assert [record["kind"] for record in payload["records"]] == kinds
    assert isinstance(payload["kept_freed_memory"], bool)
    assert payload["kept_freed_memory"] == all(record["kept_freed_memory"] for record in payload["records"])
    samplers = [m["sampler"] for m in payload["measurements"]]
    assert samplers == list(overhead_script.SAMPLERS) * overhead_script.SMOKE.repeats
    for measurement in payload["measurements"]:
        assert 0.0 < measurement["model_seconds"] <= measurement["wall_seconds"]
        overhead = measurement["wall_seconds"] - measurement["model_seconds"]
        assert measurement["overhead_fraction"] == overhead / measurement["wall_seconds"]
        assert measurement["overhead_microseconds_per_state"] == 1e6 * overhead / measurement["target_evaluations"]
    assert payload["noise_microseconds_per_state"] == payload["records"][0]["noise_microseconds_per_state"] > 0
    assert [profile["sampler"] for profile in payload["profiles"]] == list(overhead_script.PROFILED)
    # Plain steps through the speculative sampler, in the same repeat: plain sampling's calls and states.
    by_sampler = {m["sampler"]: m for m in payload["records"][0]["measurements"]}
    plain, fallback = by_sampler["plain"], by_sampler["speculative-plain-steps"]
    assert fallback["target_calls"] == plain["target_calls"] == overhead_script.SMOKE.steps
    assert fallback["target_evaluations"] == plain["target_evaluations"]
    for profile in payload["profiles"]:
        parts = profile["part_seconds"]
        assert parts["model"] > 0 and parts["random streams"] > 0 and parts["verification"] > 0
        assert sum(parts.values()) == pytest.approx(profile["total_seconds"])
        assert profile["top_own_time"]


def test_the_noise_floor_is_that_of_the_repeat_with_the_fastest_plain_run() -> None:
    def repeat(index: int, plain_seconds: float, noise: float) -> dict[str, object]:
        measurement = {"sampler": "plain", "wall_seconds": plain_seconds, "model_seconds": 0.5,
                       "overhead_fraction": 0.5, "target_calls": 10, "target_evaluations": 10,
                       "overhead_microseconds_per_state": 1.0, "model_microseconds_per_state": 1.0}  # fmt: skip
        return {"kind": "repeat", "repeat": index, "kept_freed_memory": True,
                "noise_microseconds_per_state": noise, "measurements": [measurement]}  # fmt: skip

    summary = overhead_script.summarize(overhead_script.FULL, [repeat(0, 2.0, 5.0), repeat(1, 1.0, 7.0)])
    assert summary.fields["noise_microseconds_per_state"] == 7.0
    assert len(summary.fields["measurements"]) == 2 and summary.fields["profiles"] == []
