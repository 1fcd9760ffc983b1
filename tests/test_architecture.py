"""Layering (docs/design.md §1): theory <- specdiff <- simulations; proofs uses theory only; theory never imports
torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level project packages it may import
ALLOWED = {
    "theory": {"theory"},
    "specdiff": {"theory", "specdiff"},
    "simulations": {"theory", "specdiff", "simulations"},
    "proofs": {"theory", "proofs"},
}
FORBIDDEN_THIRD_PARTY = {"theory": {"torch"}, "proofs": {"torch"}}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package: str) -> None:
    project = set(ALLOWED)
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    for path in files:
        imported = _imported_top_levels(path)
        wrong = (imported & project) - ALLOWED[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
        banned = imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        assert not banned, f"{path.relative_to(ROOT)} imports {sorted(banned)}"


def test_theory_does_not_load_torch_at_run_time() -> None:
    code = (
        "import sys, theory.gaussian, theory.verification, theory.cost, theory.linear_gaussian, theory.symbolic; "
        "import proofs.checks; print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def test_the_layering_test_catches_a_violation(tmp_path: Path) -> None:
    # Negative control: a theory module importing torch and specdiff is flagged.
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom specdiff.verify import block_verify\n")
    imported = _imported_top_levels(bad)
    assert imported & FORBIDDEN_THIRD_PARTY["theory"] == {"torch"}
    assert (imported & set(ALLOWED)) - ALLOWED["theory"] == {"specdiff"}
