"""Smoke run of ``simulations.round_cost`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations import round_cost
from specdiff.opcount import SYNC_KINDS


@pytest.mark.slow
def test_round_cost_smoke_writes_counts_and_targets(tmp_path: Path) -> None:
    output = tmp_path / "round_cost.json"
    assert round_cost.main(["--smoke", "--output", str(output), "--store", str(tmp_path / "store")]) == 0
    payload = json.loads(output.read_text())
    assert payload["script"] == "simulations.round_cost" and payload["preset"] == "smoke" and payload["passed"]
    for key in ("commit", "dirty", "machine", "date", "seconds", "chain", "compile_keyword", "sources_sha256"):
        assert key in payload
    sizes = payload["config"]
    assert sizes["steps"] == round_cost.SMOKE.steps
    assert payload["chain"]["dtype"] == "float32"
    assert isinstance(payload["kept_freed_memory"], bool)
    # One cell per (d, B, mode), holding plain sampling and every (window, rule) of it.
    records = payload["records"]
    assert payload["sweep"]["cells"] == len(records) == len(sizes["dimensions"]) * len(sizes["batches"]) * 2
    for record in records:
        identity = (record["dimension"], record["batch"], record["mode"])
        assert (record["plain"]["dimension"], record["plain"]["batch"], record["plain"]["mode"]) == identity
        assert {(row["dimension"], row["batch"], row["mode"]) for row in record["speculative"]} == {identity}
    assert payload["plain"] == [record["plain"] for record in records]
    assert payload["cells"] == [row for record in records for row in record["speculative"]]

    cells = payload["cells"]
    expected = {
        (d, b, w, rule, mode)
        for d in sizes["dimensions"]
        for b in sizes["batches"]
        for w in sizes["windows"]
        for rule in round_cost.RULES
        for mode in round_cost.MODES
    }
    assert {(c["dimension"], c["batch"], c["window"], c["rule"], c["mode"]) for c in cells} == expected
    compiled_available = payload["compile_keyword"]["speculative_chain"]
    for cell in cells:
        if cell["mode"] == "compiled" and not compiled_available:
            assert cell["status"] == "unavailable"
            continue
        if cell["mode"] == "compiled" and cell["dimension"] not in sizes["compiled_dimensions"]:
            assert cell["status"] == "not run"  # the smoke preset compiles nothing
            continue
        assert cell["status"] == "measured"
        assert cell["rounds"] > 0 and cell["steps_per_round"] == sizes["steps"] / cell["rounds"]
        assert len(cell["sampler_microseconds_per_round_repeats"]) == sizes["repeats"]
        if cell["mode"] == "compiled" and cell["counts_per_round"] is None:
            assert cell["count_error"]
            continue
        counts = cell["counts_per_round"]
        assert counts["launches"] > 0 and counts["ops"] >= counts["launches"]
        assert set(counts["syncs_by_kind"]) == set(SYNC_KINDS)
        assert counts["syncs"] == sum(counts["syncs_by_kind"].values())
        # The mean functions are two launches per call: at least the round's one target call.
        assert counts["model_launches"] >= 2
    for row in payload["plain"]:
        if row["status"] != "measured":
            continue
        counts = row["counts_per_step"]
        assert counts["launches"] > 0
        assert counts["model_launches"] == 2  # 0.98 x + b, one call per step

    targets = payload["targets"]
    assert set(targets) == {"syncs_per_round", "launches_per_round", "compiled_round_time"}
    assert all(target["status"] in {"met", "not met", "unavailable"} for target in targets.values())
    assert targets["syncs_per_round"]["status"] != "unavailable"
    if not compiled_available:
        assert targets["compiled_round_time"]["status"] == "unavailable"
    assert "| d | B | L |" in payload["table"]


def test_targets_are_judged_from_the_measurements() -> None:
    def cell(d: int, b: int, launches: float, syncs: float, mode: str = "eager", microseconds: float = 10.0):
        return {
            "dimension": d,
            "batch": b,
            "window": 8,
            "rule": "block",
            "mode": mode,
            "status": "measured",
            "counts_per_round": {"launches": launches, "syncs": syncs},
            "sampler_microseconds_per_round": microseconds,
        }

    plain = [{"dimension": 64, "batch": 1, "mode": "eager", "status": "measured", "sampler_microseconds_per_step": 6.0}]
    good = [cell(64, 1, 100, 1), cell(64, 64, 105, 0), cell(16384, 64, 108, 1), cell(64, 1, 50, 1, "compiled", 11.0)]
    targets = round_cost.evaluate_targets(round_cost.FULL, good, plain)
    assert [targets[name]["status"] for name in targets] == ["met", "met", "met"]
    bad = [cell(64, 1, 100, 1), cell(64, 64, 150, 3), cell(64, 1, 50, 1, "compiled", 13.0)]
    targets = round_cost.evaluate_targets(round_cost.FULL, bad, plain)
    assert [targets[name]["status"] for name in targets] == ["not met", "not met", "not met"]
    assert targets["syncs_per_round"]["worst"] == 3
    assert targets["launches_per_round"]["growth"] == {"block": 1.5}
    unavailable = [{**cell(64, 1, 100, 1), "mode": "compiled", "status": "unavailable"}]
    assert round_cost.evaluate_targets(round_cost.FULL, unavailable, plain)["compiled_round_time"]["status"] == (
        "unavailable"
    )
