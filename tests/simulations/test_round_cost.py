"""Smoke run of ``simulations.round_cost`` (its tiny preset; no timing assertions)."""

from __future__ import annotations

import json
import math
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
        # The residual's quantile and mass run in the block rule's rounds only, inside the round's launches.
        within = counts["launches_within"]
        assert set(within) == set(round_cost.ATTRIBUTED)
        if cell["rule"] == "block":
            assert 0 < within[round_cost.RESIDUAL_QUANTILE] < counts["launches"]
            assert 0 < within[round_cost.RESIDUAL_MASS] < counts["launches"]
        else:
            assert within == dict.fromkeys(round_cost.ATTRIBUTED, 0)
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


def test_steady_state_splits_two_runs_into_a_cost_per_round_and_a_fixed_cost() -> None:
    # 5 rounds in 1.0 s and 25 rounds in 3.0 s: 0.1 s per added round, 0.5 s once per run.
    split = round_cost.steady_state(1.0, 5, 3.0, 25)
    assert split.microseconds_per_added_round == pytest.approx(1e5)
    assert split.fixed_microseconds_per_run == pytest.approx(5e5)
    for rounds in ((5, 5), (6, 5), (0, 5)):
        with pytest.raises(ValueError, match="short_rounds < long_rounds"):
            round_cost.steady_state(1.0, rounds[0], 3.0, rounds[1])


def test_the_steady_state_is_reported_beside_the_compiled_target_without_judging_it() -> None:
    def split(per_round: float, fixed: float) -> dict[str, float]:
        return {"microseconds_per_added_round": per_round, "fixed_microseconds_per_run": fixed}

    def row(rule: str, whole_run: float, per_round: float, fixed: float) -> dict[str, object]:
        return {
            "dimension": 64,
            "batch": 1,
            "window": 8,
            "rule": rule,
            "mode": "compiled",
            "status": "measured",
            "counts_per_round": None,
            "sampler_microseconds_per_round": whole_run,
            "steady_state": split(per_round, fixed),
        }

    plain = [
        {
            "dimension": 64,
            "batch": 1,
            "mode": "compiled",
            "status": "measured",
            "sampler_microseconds_per_step": 100.0,
            "steady_state": split(80.0, 640.0),
        }
    ]
    # Whole runs: 300 / 100 = 3x (not met); per added round: 160 / 80 = 2x, reported only.
    cells = [row("block", 300.0, 160.0, 700.0), row("token-reflection", 150.0, 120.0, 300.0)]
    target = round_cost.evaluate_targets(round_cost.FULL, cells, plain)["compiled_round_time"]
    assert target["status"] == "not met"
    assert target["round_over_plain_step"] == {"block": 3.0, "token-reflection": 1.5}
    assert target["steady_state_round_over_plain_step"] == {"block": 2.0, "token-reflection": 1.5}
    assert target["steady_state_plain_microseconds_per_step"] == 80.0
    assert target["fixed_microseconds_per_run"] == {"plain": 640.0, "block": 700.0, "token-reflection": 300.0}
    # Without a split plain step there is nothing to compare with: the fields are left out, the status kept.
    unsplit = round_cost.evaluate_targets(round_cost.FULL, cells, [{**plain[0], "steady_state": None}])
    assert "steady_state_round_over_plain_step" not in unsplit["compiled_round_time"]
    assert unsplit["compiled_round_time"]["status"] == "not met"


def test_a_row_is_timed_again_on_a_longer_chain_for_its_steady_state() -> None:
    # The code path of the compiled cells (which the smoke preset does not compile), run eagerly on a tiny chain.
    cell = round_cost.RoundCell(
        dimension=8,
        batch=1,
        mode="eager",
        steps=8,
        repeats=1,
        windows=(2,),
        rules=round_cost.RULES,
        measured_windows=(2,),
        plain_measured=True,
        longer_factor=3,
    )
    for sampler in ("plain", "speculative"):
        short = round_cost.own_seconds(sampler, 8, 1, 2, "block", cell.steps, 0, 1, {}, warm_up=False)
        fields = round_cost._steady_state(sampler, cell, 2, "block", 0, {}, short)
        assert fields["longer_steps"] == 24
        assert fields["longer_rounds"] > short[1]
        if sampler == "plain":
            assert (short[1], fields["longer_rounds"]) == (8, 24)
        assert len(fields["longer_microseconds_per_round_repeats"]) == 1
        assert set(fields) >= {"microseconds_per_added_round", "fixed_microseconds_per_run"}
        assert all(math.isfinite(fields[key]) for key in ("microseconds_per_added_round", "fixed_microseconds_per_run"))
