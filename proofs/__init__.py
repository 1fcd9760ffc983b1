"""Exact proofs: rational-arithmetic enumeration on small discrete chains and sympy identities.

Imports ``theory`` only (never torch, never ``specdiff``). Run everything with ``python -m proofs``.
"""

from proofs.checks import CheckResult, format_table, run_all

__all__ = ["CheckResult", "format_table", "run_all"]
