"""The README's result tables are generated from the committed JSON results and are up to date."""

from __future__ import annotations

from pathlib import Path

from simulations import report


def test_readme_tables_match_the_committed_results() -> None:
    assert report.main(["--check"]) == 0


def test_report_replaces_only_the_marked_sections(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- report:exactness -->\nstale\n<!-- /report:exactness -->\nend\n")
    assert report.main(["--readme", str(readme), "--results", str(tmp_path), "--check"]) == 1
    assert report.main(["--readme", str(readme), "--results", str(tmp_path)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "stale" not in text
    assert "python -m simulations.exactness" in text  # the placeholder when no result exists
    assert report.main(["--readme", str(readme), "--results", str(tmp_path), "--check"]) == 0


def _record(**values: object) -> dict[str, object]:
    return {"steps": 10, "batch": 1, "drafter": "perfect", "window": "4", **values}


def test_sampler_time_and_baseline_spread_from_a_synthetic_run() -> None:
    # Network: 1 ms per call at any batch. Perfect drafter, window 4: 2 rounds in 30 ms of which 10 ms drafting, so
    # (30 - 10 - 2 x 1) / 2 = 9 ms per round; plain baseline 15 ms for 10 steps: (15 - 10 x 1) / 10 = 0.5 ms per step.
    bench = {
        "cost_curves": [
            {"model": "digits", "blocks": 4, "batches": [1, 100], "seconds": [1e-3, 1e-3]},
            {"model": "digits", "blocks": 1, "batches": [1, 100], "seconds": [1e-4, 1e-4]},  # an early exit: unused
        ],
        "records": [
            _record(wall_seconds=0.030, draft_seconds=0.010, target_calls=2, baseline_wall_seconds=0.015),
            _record(drafter="frozen", baseline_wall_seconds=0.030),
        ],
    }
    text = report._sampler_time(bench)
    assert "per speculative round 9.0–9.0 ms" in text and "per plain step 0.50–0.50 ms" in text
    assert report._baseline_spread(bench) == 2.0
    assert report._sampler_time({"cost_curves": [], "records": [_record(drafter="frozen")]}) == ""
