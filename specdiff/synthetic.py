"""Synthetic windows with known per-step gaps, for Monte-Carlo checks of the verification rules against theory.

The chain is a Gaussian random walk: the draft mean of every step is the current state (``nu(x) = x``) and the
target mean is shifted by a fixed vector (``mu_i(x) = x + delta_i sigma e_1``), so that the gap of step i is exactly
``delta_i`` wherever the chain is. Every rule's accepted length must then follow ``theory.verification``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from specdiff.verify import RULES, Rule, VerificationResult, VerificationRule, Window, WindowRandomness, apply_rule

__all__ = ["RULES", "Rule", "constant_shift_window", "verify_window"]


def constant_shift_window(
    deltas: Sequence[float],
    samples: int,
    dimension: int,
    *,
    generator: torch.Generator,
    sigma: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[Window, WindowRandomness]:
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
    (Window, WindowRandomness)
        The window (every row of length L, sigmas (B, L+1) float64) and the randomness to verify it.
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
    drafted = Window(
        states=states.to(dtype),
        draft_means=states[:, :window].to(dtype),
        target_means=(states + shifts).to(dtype),
        sigmas=torch.full((samples, window + 1), sigma, dtype=torch.float64),
        lengths=torch.full((samples,), window, dtype=torch.long),
    )
    randomness = WindowRandomness(
        uniforms=torch.rand(samples, window, generator=generator, dtype=torch.float64),
        residual_uniforms=torch.rand(samples, generator=generator, dtype=torch.float64),
        residual_noise=torch.randn(samples, dimension, generator=generator, dtype=torch.float64).to(dtype),
    )
    return drafted, randomness


def verify_window(window: tuple[Window, WindowRandomness], rule: Rule | VerificationRule) -> VerificationResult:
    """Apply ``rule`` (a name of ``specdiff.verify.RULES`` or ``CONTROL_RULES``, or a rule object) to a synthetic
    window, through the checked entry point."""
    drafted, randomness = window
    return apply_rule(
        rule,
        drafted.states,
        drafted.draft_means,
        drafted.target_means,
        drafted.sigmas,
        uniforms=randomness.uniforms,
        residual_uniforms=randomness.residual_uniforms,
        residual_noise=randomness.residual_noise,
        lengths=drafted.lengths,
    )
