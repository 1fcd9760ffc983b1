"""Negative controls: deliberately wrong variants of the verification rules that exactness checks must reject.

Each control is a named variant of the block rule in :data:`specdiff.verify.CONTROL_RULES` (docs/design.md §5),
passed to the sampler in place of the exact rule:

- ``unweighted-residual``: the residual ``max(P - Q, 0)`` instead of ``max(w_tau P - Q, 0)``;
- ``reflection-in-block``: the token rule's reflection residual used by the block rule;
- ``lagged-weight``: ``h_i`` computed with ``w_{i-1}`` instead of ``w_i``;
- ``first-failure``: the block rule stopping at the first failure (the token rule's stopping) with block weights;
- ``accept-always``: every drafted step accepted.
"""

from __future__ import annotations

from specdiff.sampler import RuleName
from specdiff.verify import CONTROL_RULES, VerificationRule

CONTROLS: tuple[str, ...] = tuple(CONTROL_RULES)


def rule_with_control(rule: RuleName, control: str | None) -> RuleName | VerificationRule:
    """The rule a run verifies with: ``rule`` itself, or the negative control named ``control`` (``None``: none)."""
    if control is None:
        return rule
    if control not in CONTROL_RULES:
        raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")
    return CONTROL_RULES[control]
