"""Provenance of a saved result: the commit, whether the tree was dirty, and the machine."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import scipy
import torch

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

#: The sampler's code: every result of a speculative run measures it (with its own script and models).
SAMPLER_CODE = (
    "specdiff/sampler.py",
    "specdiff/verify.py",
    "specdiff/residual.py",
    "specdiff/residual_law.py",
    "specdiff/randomness.py",
    "specdiff/chain.py",
    "specdiff/drafters.py",
    "specdiff/policies.py",
    "specdiff/kernels.py",
    "specdiff/graphs.py",
)


def measured_content(path: str, content: bytes) -> bytes:
    """The part of a file's ``content`` that can change a result measured with it.

    For Python source (``path`` ending in ``.py`` and parsing), its syntax tree without string-literal statements
    (docstrings): comments, layout and docstrings drop out, so editing documentation does not mark a result stale
    (cell keys, ``simulations.cells.code_version``, still hash the bytes). Anything else, including Python that does
    not parse, counts byte for byte.
    """
    if not path.endswith(".py"):
        return content
    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return content
    # ast.dump leaves out line and column numbers by default, so moving code counts only if its order changes.
    return ast.dump(_WithoutDocstrings().visit(tree)).encode()


class _WithoutDocstrings(ast.NodeTransformer):
    """Drops every statement that is a bare string literal (a docstring or an attribute's string): it does nothing."""

    def visit_Expr(self, node: ast.Expr) -> ast.Expr | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None
        return node


#: Where a copy of the tree travels without its git history, or with a stale copy of it (a lent GPU machine), the
#: commit the tree was copied from. When set it overrides git, and whether the tree was dirty is unknown (None).
COMMIT_VARIABLE = "SPECDIFF_COMMIT"


def git_commit() -> str:
    """``$SPECDIFF_COMMIT`` if set, else ``git rev-parse HEAD`` of the repository, else ``"unknown"``."""
    if os.environ.get(COMMIT_VARIABLE):
        return os.environ[COMMIT_VARIABLE]
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def git_dirty() -> bool | None:
    """Whether the working tree has uncommitted changes outside ``results/`` and ``docs/figures/`` (``None`` if git
    is unavailable).

    Results and figures written by earlier scripts are outputs, not code, so they do not make a run dirty. ``None``
    too when ``$SPECDIFF_COMMIT`` names the commit: the local git history is then not the tree's.
    """
    if os.environ.get(COMMIT_VARIABLE):
        return None
    try:
        completed = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)docs/figures"],
            cwd=REPOSITORY_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(completed.stdout.strip())


def machine() -> dict[str, str]:
    """Platform, processor, CPU count and library versions."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch_threads": str(torch.get_num_threads()),
    }
