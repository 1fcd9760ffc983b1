"""Provenance of saved results: the commit comes from git, or from ``$SPECDIFF_COMMIT`` where git is missing."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from simulations import provenance


def test_commit_is_read_from_git_here() -> None:
    commit = provenance.git_commit()
    assert len(commit) == 40 and int(commit, 16) >= 0


def _no_git(*arguments: Any, **keywords: Any) -> None:
    raise FileNotFoundError("git")


def test_without_git_the_commit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", _no_git)
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    assert provenance.git_commit() == "unknown"
    assert provenance.git_dirty() is None
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "0123abc")
    assert provenance.git_commit() == "0123abc"
