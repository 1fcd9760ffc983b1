"""Provenance of a saved result: the commit, whether the tree was dirty, and the machine."""

from __future__ import annotations

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
