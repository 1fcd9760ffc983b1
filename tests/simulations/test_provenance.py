"""Provenance of saved results: the commit comes from git, or from ``$SPECDIFF_COMMIT`` when that is set."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from simulations import provenance


def test_commit_is_read_from_git_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    commit = provenance.git_commit()
    assert len(commit) == 40 and int(commit, 16) >= 0


def _no_git(*arguments: Any, **keywords: Any) -> None:
    raise FileNotFoundError("git")


def test_without_git_the_commit_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", _no_git)
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    assert provenance.git_commit() == "unknown"
    assert provenance.git_dirty() is None


def test_the_environment_overrides_git_and_leaves_dirtiness_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "0123abc")
    assert provenance.git_commit() == "0123abc"
    assert provenance.git_dirty() is None
