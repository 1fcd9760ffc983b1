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
