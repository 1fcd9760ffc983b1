"""``simulations.sd_digits`` on the shipped digits model, smoke preset: every kind of cell, the exact check kept and
the accept-always control rejected (at the script's ``LEVEL``), the calibration and the draft cost recorded; the
report's section and the figure drawn from that output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations import figures, report, sd_digits


@pytest.fixture(scope="module")
def smoke_payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("sd_digits")
    output = folder / "sd_digits.json"
    assert sd_digits.main(["--smoke", "--output", str(output), "--store", str(folder / "store")]) == 0
    return folder, json.loads(output.read_text())


@pytest.mark.slow
def test_smoke_run_checks_exactness_calibrates_and_measures_the_drafter(smoke_payload: tuple[Path, dict]) -> None:
    _, payload = smoke_payload
    smoke = sd_digits.SMOKE
    assert payload["passed"] is True and payload["all_passed"] is True and payload["preset"] == "smoke"
    records = payload["records"]
    kinds = [record["kind"] for record in records]
    assert kinds == ["quality"] + ["check"] * len(smoke.runs) + ["draft-cost"] * len(smoke.cost_batches)
    quality = records[0]
    assert 0.0 <= quality["classifier_accuracy_samples"] <= 1.0
    assert len(quality["grid"]["images"][3]) == smoke.grid_columns and quality["grid"]["images"][0] == []
    exact, control = records[1], records[2]
    assert exact["drafter"] == "cached-features" and exact["control"] is None and not exact["rejected"]
    assert control["control"] == "accept-always" and control["rejected"] and control["p_value"] < sd_digits.LEVEL
    for check in (exact, control):
        assert check["plain_target_calls"] == smoke.steps > check["target_calls"] > 0
        assert len(check["class_p_values"]) == len(smoke.classes)
        assert check["calibration_positions"] and check["measured_steps_per_round"] >= 1.0
    assert abs(exact["calibration_z"]) <= sd_digits.z_bound()
    (cost,) = records[3:]
    assert cost["rows"] == 2 * cost["batch"] and cost["ratio"] == pytest.approx(
        cost["shallow_seconds"] / cost["full_seconds"]
    )


@pytest.mark.slow
def test_the_report_and_the_figure_read_the_smoke_output(smoke_payload: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = smoke_payload
    text = report.sd_digits_table(folder)
    assert "Speculative against plain samples" in text and "cached-features" in text and "accept-always" in text
    assert "of a call at 2 image(s)" in text
    written = figures.sd_digits_figure(json.loads((folder / "sd_digits.json").read_text()), tmp_path / "grid")
    assert {path.suffix for path in written} == {".png", ".pdf"} and all(path.stat().st_size > 0 for path in written)


def test_a_check_that_cannot_reject_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot reject"):
        sd_digits.Config(**{**sd_digits.SMOKE.__dict__, "permutations": 999})
