"""Smoke run of ``simulations.overhead`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations import overhead as overhead_script


def test_overhead_smoke_writes_measurements(tmp_path: Path) -> None:
    output = tmp_path / "overhead.json"
    assert overhead_script.main(["--smoke", "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    samplers = {m["sampler"] for m in payload["measurements"]}
    assert samplers == {"plain", "speculative-window-8", "speculative-adaptive", "speculative-plain-steps"}
    for measurement in payload["measurements"]:
        assert 0.0 < measurement["model_seconds"] <= measurement["wall_seconds"]
        overhead = measurement["wall_seconds"] - measurement["model_seconds"]
        assert measurement["overhead_fraction"] == overhead / measurement["wall_seconds"]
        assert measurement["overhead_microseconds_per_state"] == 1e6 * overhead / measurement["target_evaluations"]
    assert payload["noise_microseconds_per_state"] > 0
    assert {profile["sampler"] for profile in payload["profiles"]} == {"speculative-window-8", "speculative-adaptive"}
    # Plain steps through the speculative sampler: plain sampling's calls and states.
    by_sampler = {m["sampler"]: m for m in payload["measurements"]}
    plain, fallback = by_sampler["plain"], by_sampler["speculative-plain-steps"]
    assert fallback["target_calls"] == plain["target_calls"]
    assert fallback["target_evaluations"] == plain["target_evaluations"]
    for profile in payload["profiles"]:
        parts = profile["part_seconds"]
        assert parts["model"] > 0 and parts["random streams"] > 0 and parts["verification"] > 0
        assert sum(parts.values()) == pytest.approx(profile["total_seconds"])
        assert profile["top_own_time"]
