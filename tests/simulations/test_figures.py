"""The paper's figures from the committed results: every file written, valid PNG and PDF; missing inputs reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simulations import figures

EXPECTED_STEMS = (
    "acceptance_calibration",
    "block_vs_token_gain",
    "exactness_qq",
    "speedup_heatmap",
    "gpu_cost_curves",
    "gpu_wall_speedup",
    "dit_digits_samples",
    "sd_digits_samples",
    "demo_samples",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF-"


@pytest.fixture(scope="module")
def committed_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    output = tmp_path_factory.mktemp("figures")
    return output, figures.write_figures(figures.RESULTS, output)


@pytest.mark.slow
def test_every_figure_is_made_from_the_committed_results(committed_figures: tuple[Path, list[Path]]) -> None:
    output, written = committed_figures
    assert figures.missing_inputs(figures.RESULTS) == {}
    expected = {output / f"{stem}.{suffix}" for stem in EXPECTED_STEMS for suffix in ("png", "pdf")}
    assert set(written) == expected
    assert {spec.stem for spec in figures.FIGURE_SPECS} == set(EXPECTED_STEMS)
    for path in expected:
        content = path.read_bytes()
        if path.suffix == ".png":
            assert content.startswith(PNG_MAGIC), path
            assert content.rstrip().endswith(b"IEND\xaeB`\x82"), path
        else:
            assert content.startswith(PDF_MAGIC), path
            assert content.rstrip().endswith(b"%%EOF"), path
        assert len(content) > 1000, path


@pytest.mark.slow
def test_the_pdf_is_reproducible(tmp_path: Path) -> None:
    calibration = figures._load(figures.RESULTS / "calibration.json")
    first = figures.acceptance_figure(calibration, tmp_path / "first" / "figure")
    second = figures.acceptance_figure(calibration, tmp_path / "second" / "figure")
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes(), one.name


@pytest.mark.slow
def test_a_missing_input_is_reported_not_silently_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    (results / "gpu").mkdir(parents=True)
    shutil.copy(figures.RESULTS / "calibration.json", results / "calibration.json")
    shutil.copy(figures.RESULTS / "gpu" / "bench_gpu.json", results / "gpu" / "bench_gpu.json")
    output = tmp_path / "figures"
    written = figures.write_figures(results, output)
    assert {path.stem for path in written} == {"acceptance_calibration", "gpu_cost_curves", "gpu_wall_speedup"}
    missing = figures.missing_inputs(results)
    assert missing == {
        "block_vs_token_gain": ["speedup.json"],
        "exactness_qq": ["exactness.json"],
        "speedup_heatmap": ["speedup.json"],
        "dit_digits_samples": ["dit_quality.json"],
        "sd_digits_samples": ["sd_digits.json"],
        "demo_samples": ["demo/demo.json", "demo/demo_digits.png"],
    }
    errors = capsys.readouterr().err
    for stem, names in missing.items():
        for name in names:
            assert f"skipped {stem}: missing input {results / name}" in errors
    assert not (output / "speedup_heatmap.png").exists()


def test_main_fails_without_a_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert figures.main(["--results", str(tmp_path / "missing"), "--output", str(tmp_path)]) == 1
    assert "missing results folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert figures.main(["--results", str(empty), "--output", str(tmp_path)]) == 1
    assert "no figure made" in capsys.readouterr().err
