"""Negative controls: deliberately wrong variants of the verification rules that exactness checks must reject.

Each control replaces one private function of ``specdiff.verify`` (DESIGN.md §8):

- ``unweighted-residual``: the residual ``max(P - Q, 0)`` instead of ``max(w_tau P - Q, 0)``;
- ``reflection-in-block``: the token rule's reflection residual used by the block rule;
- ``lagged-weight``: ``h_i`` computed with ``w_{i-1}`` instead of ``w_i``;
- ``first-failure``: the block rule stopping at the first failure (the token rule's stopping) with block weights;
- ``accept-always``: every drafted step accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from specdiff import verify as verify_module

CONTROLS = ("unweighted-residual", "reflection-in-block", "lagged-weight", "first-failure", "accept-always")


def control_patches(control: str) -> dict[str, Callable[..., Any]]:
    """The replacements ``{private function name: wrong function}`` of ``specdiff.verify`` for ``control``."""
    original_next = verify_module._bonus_or_residual
    original_stop = verify_module._log_stop_probs
    if control == "unweighted-residual":
        return {
            "_bonus_or_residual": lambda window, accepted, log_weight, reflection: original_next(
                window, accepted, torch.zeros_like(log_weight), reflection=reflection
            )
        }
    if control == "reflection-in-block":
        return {
            "_bonus_or_residual": lambda window, accepted, log_weight, reflection: original_next(
                window, accepted, log_weight, reflection=True
            )
        }
    if control == "lagged-weight":

        def lagged(log_weights: torch.Tensor, deltas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            shifted = torch.cat([torch.zeros_like(log_weights[:, :1]), log_weights[:, :-1]], dim=1)
            result = original_stop(shifted, deltas, lengths)
            rows, last = torch.arange(lengths.shape[0]), lengths - 1
            result[rows, last] = log_weights[rows, last]  # h_L = w_L is kept
            return result

        return {"_log_stop_probs": lagged}
    if control == "first-failure":
        return {"_last_success": lambda success: torch.cumprod(success.long(), dim=1).sum(dim=1)}
    if control == "accept-always":
        return {"_log_stop_probs": lambda log_weights, deltas, lengths: torch.zeros_like(log_weights)}
    raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")


@contextmanager
def negative_control(control: str | None) -> Iterator[None]:
    """Apply ``control`` to ``specdiff.verify`` inside the block (``None``: no change)."""
    patches = {} if control is None else control_patches(control)
    saved = {name: getattr(verify_module, name) for name in patches}
    try:
        for name, function in patches.items():
            setattr(verify_module, name, function)
        yield
    finally:
        for name, function in saved.items():
            setattr(verify_module, name, function)
