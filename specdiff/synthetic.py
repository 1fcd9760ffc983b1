"""Synthetic windows with known per-step gaps, for Monte-Carlo checks of the verification rules against theory.

The chain is a Gaussian random walk: the draft mean of every step is the current state (``nu(x) = x``) and the
target mean is shifted by a fixed vector (``mu_i(x) = x + delta_i sigma e_1``), so that the gap of step i is exactly
``delta_i`` wherever the chain is. Every rule's accepted length must then follow ``theory.verification``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from specdiff.verify import RULES, Rule, VerificationResult, apply_rule

__all__ = ["RULES", "Rule", "SyntheticWindow", "constant_shift_window", "verify_window"]


@dataclass(frozen=True)
class SyntheticWindow:
    """A drafted window and the randomness to verify it (shapes as in ``specdiff.verify``)."""

    states: torch.Tensor
    draft_means: torch.Tensor
    target_means: torch.Tensor
    sigmas: torch.Tensor
    uniforms: torch.Tensor
    residual_uniforms: torch.Tensor
    residual_noise: torch.Tensor


def constant_shift_window(
    deltas: Sequence[float],
    samples: int,
    dimension: int,
    *,
    generator: torch.Generator,
    sigma: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> SyntheticWindow:
    """Draft a window of ``len(deltas)`` steps of the shifted random walk for ``samples`` independent rows.

    Parameters
    ----------
    deltas : sequence of float, length L
        Gap of each drafted step (>= 0). The bonus step uses the last gap.
    samples : int
        Batch size B.
    dimension : int
        Event size d (states have shape (B, L+1, d)).
    generator : torch.Generator
        Source of every random number (drafts, uniforms, residual draws).
    sigma : float
        Shared standard deviation of every step.
    dtype : torch.dtype
        dtype of the states and means.

    Returns
    -------
    SyntheticWindow
    """
    if len(deltas) < 1:
        raise ValueError("a window needs at least one drafted step")
    window = len(deltas)
    shifts = torch.zeros(window + 1, dimension, dtype=torch.float64)
    shifts[:window, 0] = torch.as_tensor(list(deltas), dtype=torch.float64) * sigma
    shifts[window, 0] = float(deltas[-1]) * sigma
    noise = torch.randn(samples, window, dimension, generator=generator, dtype=torch.float64)
    root = torch.zeros(samples, 1, dimension, dtype=torch.float64)
    states = torch.cat([root, torch.cumsum(sigma * noise, dim=1)], dim=1)
    return SyntheticWindow(
        states=states.to(dtype),
        draft_means=states[:, :window].to(dtype),
        target_means=(states + shifts).to(dtype),
        sigmas=torch.full((window + 1,), sigma, dtype=dtype),
        uniforms=torch.rand(samples, window, generator=generator, dtype=torch.float64),
        residual_uniforms=torch.rand(samples, generator=generator, dtype=torch.float64),
        residual_noise=torch.randn(samples, dimension, generator=generator, dtype=torch.float64).to(dtype),
    )


def verify_window(window: SyntheticWindow, rule: Rule) -> VerificationResult:
    """Apply ``rule`` ("token-reflection", "token-residual" or "block") to a synthetic window."""
    return apply_rule(
        rule,
        window.states,
        window.draft_means,
        window.target_means,
        window.sigmas,
        uniforms=window.uniforms,
        residual_uniforms=window.residual_uniforms,
        residual_noise=window.residual_noise,
    )
