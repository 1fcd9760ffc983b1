"""Smoke runs of the exactness, calibration, speedup and figures scripts (tiny presets; no timing assertions)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from simulations import calibration, exactness, figures, speedup


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("results")
    store = tmp_path_factory.mktemp("cells")
    for script in (exactness, calibration, speedup):
        name = script.EXPERIMENT.name
        argv = ["--smoke", "--output", str(directory / f"{name}.json"), "--store", str(store / name)]
        assert script.main(argv) == 0
    return directory


def _load(directory: Path, name: str) -> dict[str, Any]:
    return json.loads((directory / name).read_text())


@pytest.mark.slow
def test_exactness_smoke_passes_and_rejects_its_control(smoke_results: Path) -> None:
    payload = _load(smoke_results, "exactness.json")
    assert payload["passed"] and payload["all_passed"] and payload["level"] == exactness.LEVEL
    assert payload["config"]["samples"] == exactness.SMOKE.samples
    assert payload["sweep"]["cells"] == len(exactness.cells(exactness.SMOKE)) and payload["sweep"]["failed"] == 0
    records = payload["records"]
    controls = [r for r in records if r["family"] == "control"]
    assert controls and all(r["rejected"] for r in controls)
    assert all(not r["rejected"] for r in records if r["family"] != "control")
    assert {r["rule"] for r in records} == {"token-reflection", "token-residual", "block"}
    assert isinstance(payload["commit"], str)
    assert all("seconds" not in r for r in records)


@pytest.mark.slow
def test_a_rejected_exact_configuration_is_rechecked_with_more_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a level above 1 every check rejects: each exact configuration is rechecked (and fails again), each
    # control passes at the first stage and is not rechecked.
    monkeypatch.setattr(exactness, "LEVEL", 1.5)
    checks = [exactness.run_check(cell, 3 + index) for index, cell in enumerate(exactness.cells(exactness.SMOKE))]
    exact = [check for check in checks if check.family != "control"]
    assert exact and all(check.rejected and not check.passed for check in exact)
    for check in exact:
        assert check.recheck_samples == exactness.RECHECK_FACTOR * check.samples
        assert check.recheck_p_value is not None and 0.0 <= check.recheck_p_value <= 1.0
    controls = [check for check in checks if check.family == "control"]
    assert controls and all(check.passed and check.recheck_p_value is None for check in controls)
    # A recheck that keeps the configuration clears it.
    assert dataclasses.replace(exact[0], recheck_p_value=2.0).passed


def test_calibration_smoke_matches_theory_and_rejects_controls(smoke_results: Path) -> None:
    payload = _load(smoke_results, "calibration.json")
    assert payload["passed"] and payload["all_passed"]
    assert payload["level"] == calibration.LEVEL and payload["z_level"] == calibration.Z_LEVEL
    assert payload["config"]["window"] == calibration.SMOKE.window
    records = payload["records"]
    assert len(records) == len(calibration.cells(calibration.SMOKE))
    assert {r["control"] for r in records} == {None, "scaled-delta", "first-failure"}
    for record in records:
        assert record["rejected"] == record["expected_rejection"]
        if record["control"] is None:
            assert abs(record["z"]) <= calibration.Z_LEVEL
            assert record["positions"] and record["positions"][0]["position"] == 1
        else:
            assert abs(record["z"]) > calibration.Z_LEVEL


def test_speedup_smoke_records_and_summary(smoke_results: Path) -> None:
    payload = _load(smoke_results, "speedup.json")
    config = speedup.SMOKE
    # Both fixed rules at every window and the adaptive one, plus the policy choosing the rule (adaptive window).
    cells = len(config.steps) * len(config.dimensions) * len(config.drafters) * (2 * (len(config.windows) + 1) + 1)
    assert len(payload["records"]) == cells
    assert {r["rule"] for r in payload["records"] if r["window"] != "adaptive"} == {"token", "block"}
    for record in payload["records"]:
        # Every round commits at least one step: never more target calls than plain sampling.
        assert record["target_calls"] <= record["steps"]
        assert record["steps_per_call"] == pytest.approx(record["steps"] / record["calls"])
        assert "wall_seconds" not in record
    assert payload["passed"] and payload["config"]["samples"] == config.samples
    summary = payload["summary"]
    # One gain per (N, d, drafter, window), adaptive included; one comparison per adaptive-window record.
    groups = len(config.steps) * len(config.dimensions) * len(config.drafters)
    assert len(summary["gains"]) == groups * (len(config.windows) + 1)
    assert len(summary["adaptive"]) == sum(r["window"] == "adaptive" for r in payload["records"])
    for gain in summary["gains"]:
        assert gain["measured_gain"] == pytest.approx(gain["block_steps_per_call"] / gain["token_steps_per_call"])
        assert gain["stderr"] >= 0


@pytest.mark.slow
def test_figures_from_saved_results(smoke_results: Path, tmp_path: Path) -> None:
    assert figures.main(["--results", str(smoke_results), "--output", str(tmp_path)]) == 0
    names = {"acceptance_calibration.png", "block_vs_token_gain.png", "exactness_qq.png", "speedup_heatmap.png"}
    assert {path.name for path in tmp_path.glob("*.png")} == names
    assert figures.main(["--results", str(tmp_path / "missing"), "--output", str(tmp_path)]) == 1


def test_every_test_of_the_plain_comparison_can_reject_at_the_level() -> None:
    # MMD and energy p-values are at least 1 / (P + 1); Bonferroni over the three tests multiplies by 3.
    assert 3 / (exactness.COMPARISON_PERMUTATIONS + 1) < exactness.LEVEL
