"""The README and the docs agree with the code: examples run, links resolve, nothing points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    assert len(README.splitlines()) < 250
    commands = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert commands is not None
    assert commands.group(1).splitlines() == [
        'pip install torch==2.13.0 -e ".[dev,diffusers,distributed]" && specdiff demo',
        "python -m pytest",
    ]
    # CI installs what the README installs.
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert 'torch==2.13.0 -e ".[dev,diffusers,distributed]"' in ci


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_examples_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    exec(compile(EXAMPLES[index], f"README example {index}", "exec"), {})
    printed = capsys.readouterr().out
    calls, _, steps = re.search(r"(\d+) (rounds instead of|target calls for) (\d+)", printed).groups()  # type: ignore[union-attr]
    assert 0 < int(calls) < int(steps)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    suffixes = {".py", ".md", ".toml", ".sh", ".ipynb", ".txt", ".cfg", ".yml", ".yaml"}
    return [ROOT / name for name in names if Path(name).suffix in suffixes or name.startswith(".ci/")]


def test_nothing_refers_to_a_file_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|DESIGN\.md")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _tracked_text_files()
        if path.name != "test_readme.py" and path.is_file() and outside.search(path.read_text(errors="replace"))
    ]
    assert offenders == []


def test_relative_links_in_the_docs_resolve() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" in target:
                continue
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} -> {target}")
    assert broken == []


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_tests_the_docs_cite_exist() -> None:
    missing, cited = [], 0
    for document in DOCUMENTS:
        text = document.read_text()
        citations = set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", text))
        for line in text.splitlines():  # "`tests/x.py`: `test_a`, `test_b`": the names after a file, on its line
            for part in re.split(r"(?=`tests/[\w/]+\.py`)", line):
                file = re.match(r"`(tests/[\w/]+\.py)`", part)
                if file:
                    citations |= {(file.group(1), name) for name in re.findall(r"`(test_\w+)`", part)}
        for path, name in citations:
            cited += 1
            source = ROOT / path
            if not source.is_file() or not re.search(rf"^def {name}\(", source.read_text(), re.MULTILINE):
                missing.append(f"{document.name}: {path}::{name}")
    assert cited >= 20 and missing == []


def test_the_names_the_docs_cite_exist() -> None:
    import importlib

    missing, cited = [], 0
    for document in DOCUMENTS:
        for dotted in set(re.findall(r"`((?:theory|specdiff|simulations|proofs)(?:\.\w+)+)", document.read_text())):
            cited += 1
            parts = dotted.split(".")
            for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    target: object = importlib.import_module(".".join(parts[:split]))
                except ImportError:
                    continue
                try:
                    for attribute in parts[split:]:
                        target = getattr(target, attribute)
                except AttributeError:
                    missing.append(f"{document.name}: {dotted}")
                break
            else:
                missing.append(f"{document.name}: {dotted}")
    assert cited >= 50 and missing == []
