"""Smoke run of ``simulations.overhead`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from simulations import overhead


def test_overhead_smoke_writes_measurements(tmp_path: Path) -> None:
    output = tmp_path / "overhead.json"
    assert overhead.main(["--smoke", "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    samplers = {m["sampler"] for m in payload["measurements"]}
    assert samplers == {"plain", "speculative-window-8", "speculative-adaptive"}
    for measurement in payload["measurements"]:
        assert 0.0 < measurement["model_seconds"] <= measurement["wall_seconds"]
        assert measurement["overhead_fraction"] == 1 - measurement["model_seconds"] / measurement["wall_seconds"]
    assert payload["profile_top_own_time"]
