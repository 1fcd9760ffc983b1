"""The results page and the README's headline are generated from the committed JSON results and are up to date."""

from __future__ import annotations

import subprocess
from pathlib import Path

from simulations import report, round_cost
from simulations.provenance import REPOSITORY_ROOT, measured_content


def test_readme_and_results_page_match_the_committed_results() -> None:
    assert report.main(["--check"]) == 0


def test_report_writes_the_page_and_only_the_readme_headline(tmp_path: Path) -> None:
    readme, page = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text("intro\n<!-- report:headline -->\nstale\n<!-- /report:headline -->\nend\n")
    arguments = ["--readme", str(readme), "--page", str(page), "--results", str(tmp_path)]
    assert report.main([*arguments, "--check"]) == 1
    assert report.main(arguments) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "stale" not in text
    assert "docs/results.md" in text
    assert "_Run `python -m simulations.exactness`._" in page.read_text()  # the placeholder when no result exists
    assert report.main([*arguments, "--check"]) == 0


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_staleness_flags_old_and_unknown_commits_and_passes_current_ones() -> None:
    path = "proofs/__main__.py"
    last = _git("log", "-1", "--format=%H", "--", path)
    first = _git("rev-list", "--max-parents=0", "HEAD").splitlines()[0]
    assert report.staleness(last, [path]) is None
    assert "changed after this run" in (report.staleness(first, [path]) or "")
    assert "not in this repository's history" in (report.staleness("0" * 40, [path]) or "")
    assert report.staleness(None, [path]) == "no commit recorded"


def test_measured_content_drops_docstrings_and_comments_but_not_code() -> None:
    source = b'"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n'
    edited = b'"""Another module text."""\n\n\ndef f(x):\n    """Other doc."""\n    # a comment\n    return x + 1\n'
    assert measured_content("a.py", source) == measured_content("a.py", edited)
    # Negative controls: a changed constant, a changed string that is used, a changed non-Python file.
    assert measured_content("a.py", source) != measured_content("a.py", source.replace(b"x + 1", b"x + 2"))
    used = b'def f():\n    return "a"\n'
    assert measured_content("a.py", used) != measured_content("a.py", used.replace(b'"a"', b'"b"'))
    assert measured_content("a.txt", source) != measured_content("a.txt", edited)
    assert measured_content("a.py", b"def (:") == b"def (:"  # does not parse: byte for byte


def test_staleness_ignores_docstring_edits_and_flags_code_edits(tmp_path: Path) -> None:
    def commit(message: str) -> str:
        for arguments in (("add", "-A"), ("commit", "-q", "-m", message), ("rev-parse", "HEAD")):
            completed = subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                check=True,
            )
        return completed.stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    code = tmp_path / "code.py"
    code.write_text('def f(x):\n    """Doc."""\n    return x + 1\n')
    run = commit("code")
    code.write_text('def f(x):\n    """Better doc."""\n    return x + 1  # comment\n')
    assert report.staleness(run, ["code.py"], tmp_path) is None  # uncommitted
    commit("docs")
    assert report.staleness(run, ["code.py"], tmp_path) is None  # committed
    code.write_text('def f(x):\n    """Better doc."""\n    return x + 2\n')
    assert "changed after this run" in (report.staleness(run, ["code.py"], tmp_path) or "")
    code.write_text('def f(x):\n    """Doc."""\n    return x + 1\n')
    (tmp_path / "new.py").write_text("y = 1\n")  # a new, untracked file of the code
    assert report.staleness(run, ["code.py"], tmp_path) is None
    assert "changed after this run" in (report.staleness(run, ["code.py", "new.py"], tmp_path) or "")
    commit("new")
    assert "changed after this run" in (report.staleness(run, ["code.py", "new.py"], tmp_path) or "")


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
    assert "not reliable" not in text
    assert report._baseline_spread(bench) == 2.0
    # A plain baseline faster than the cost curve allows (8 ms for 10 calls of 1 ms): the estimate says so.
    bench["records"][0]["baseline_wall_seconds"] = 0.008
    text = report._sampler_time(bench)
    assert "per plain step -0.20–-0.20 ms" in text and "not reliable in this run" in text
    assert report._sampler_time({"cost_curves": [], "records": [_record(drafter="frozen")]}) == ""


def test_the_compiled_steady_state_is_written_beside_the_target_only_where_measured() -> None:
    target = {
        "status": "not met",
        "round_over_plain_step": {"block": 4.2, "token-reflection": 1.7},
        "steady_state_round_over_plain_step": {"block": 1.9, "token-reflection": 1.3},
        "steady_state_plain_microseconds_per_step": 160.0,
        "fixed_microseconds_per_run": {"plain": 900.0, "block": 650.0, "token-reflection": 600.0},
    }
    after = {"config": {"steps": 32, "longer_factor": 4}, "targets": {"compiled_round_time": target}}
    text = report._steady_state_text(after)
    assert "whole runs of N = 32 steps: block 4.20x, token-reflection 1.70x" in text
    assert "4 times longer" in text and "block 1.90x, token-reflection 1.30x an added plain step (160 µs)" in text
    assert "plain 900 µs, block 650 µs, token-reflection 600 µs once" in text
    # A run from before the split (no steady-state fields) adds nothing.
    unsplit = {"status": "not met", "round_over_plain_step": {"block": 4.2}}
    assert report._steady_state_text({"config": {"steps": 32}, "targets": {"compiled_round_time": unsplit}}) == ""


def test_a_gpu_run_says_whether_its_speedups_are_single_pairs_or_medians_of_pairs() -> None:
    assert report._pairs_note({"records": [{"speedup": 1.2}, {"speedup": 0.9}]}) == "one timed pair per cell"
    assert report._pairs_note({"records": []}) == "one timed pair per cell"
    five = {"records": [{"pairs": 5}, {"pairs": 5}]}
    assert report._pairs_note(five) == "the median over each cell's 5 timed pairs"
    assert (
        report._pairs_note({"records": [{"pairs": 5}, {"pairs": 3}]}) == "the median over each cell's 3/5 timed pairs"
    )
    assert set(report.GPU_BENCHES) == {"bench_gpu.json", "bench_gpu_host.json", "bench_gpu_compiled.json"}


def test_the_round_cost_text_names_the_residual_share_of_the_block_rounds_launches() -> None:
    quantile, mass = round_cost.RESIDUAL_QUANTILE, round_cost.RESIDUAL_MASS
    launches = {
        "launches_per_round": {"block d=64 B=1": 597.0, "token-reflection d=64 B=1": 179.0},
        "of_which": {quantile: {"block d=64 B=1": 342.0}, mass: {"block d=64 B=1": 48.0}},
    }
    text = report._attribution_text({"targets": {"launches_per_round": launches}})
    assert "597 launches" in text and "quantile makes 342" in text and "mass 48" in text
    # Results written before the attribution existed get no sentence.
    assert report._attribution_text({"targets": {"launches_per_round": {"launches_per_round": {}}}}) == ""
    assert report._attribution_text({"targets": {}}) == ""
