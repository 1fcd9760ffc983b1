"""A minimal speculative chain driver for testing the verification rules over whole trajectories.

Test support only (the product sampler is ``specdiff.sampler``): rows of a batch progress at their own speed; each
round drafts ``min(window, remaining)`` steps, evaluates the target at every window state, verifies, and commits.
When the window reaches the horizon the bonus step is dropped: the bonus draw is simply not used, which only
marginalizes it out, so the committed steps keep the target law.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from specdiff.synthetic import Rule
from specdiff.verify import VerificationResult, block_verify, token_verify

MeanFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AffineChain:
    """``mean_n(x) = scale[n] x + shift[n]`` for the target and the draft, with noise ``sigmas[n]``."""

    target_scale: torch.Tensor  # (N,)
    target_shift: torch.Tensor  # (N, d)
    draft_scale: torch.Tensor  # (N,)
    draft_shift: torch.Tensor  # (N, d)
    sigmas: torch.Tensor  # (N,)

    def target_mean(self, states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return self.target_scale[steps, None] * states + self.target_shift[steps]

    def draft_mean(self, states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return self.draft_scale[steps, None] * states + self.draft_shift[steps]


def _verify(rule: Rule, **arguments: torch.Tensor) -> VerificationResult:
    if rule == "block":
        return block_verify(**arguments)  # type: ignore[arg-type]
    residual = "reflection" if rule == "token-reflection" else "fresh"
    return token_verify(residual=residual, **arguments)  # type: ignore[arg-type]


def run_chain(
    chain: AffineChain, start: torch.Tensor, *, window: int, rule: Rule, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the speculative chain for ``N = len(chain.sigmas)`` steps from ``start`` (B, d).

    Returns
    -------
    trajectory : Tensor, shape (B, N+1, d)
    accepted : Tensor, shape (rounds_total,)
        Accepted lengths of every (row, round) verified.
    """
    horizon = chain.sigmas.shape[0]
    batch, dimension = start.shape
    trajectory = torch.empty(batch, horizon + 1, dimension, dtype=start.dtype)
    trajectory[:, 0] = start
    position = torch.zeros(batch, dtype=torch.long)
    lengths = []
    while bool((position < horizon).any()):
        remaining = horizon - position
        span = torch.clamp(remaining, max=window)
        for length in sorted(set(span[position < horizon].tolist())):
            rows = torch.nonzero((position < horizon) & (span == length)).squeeze(1)
            lengths.append(_round(chain, trajectory, rows, position, length, rule, generator))
    return trajectory, torch.cat(lengths)


def _round(
    chain: AffineChain,
    trajectory: torch.Tensor,
    rows: torch.Tensor,
    position: torch.Tensor,
    length: int,
    rule: Rule,
    generator: torch.Generator,
) -> torch.Tensor:
    horizon = chain.sigmas.shape[0]
    count, dimension = rows.shape[0], trajectory.shape[2]
    base = position[rows]
    steps = base[:, None] + torch.arange(length + 1)[None, :]  # chain step of window steps 1..L+1
    has_bonus = steps[:, length] < horizon
    clipped = steps.clamp(max=horizon - 1)
    states = torch.empty(count, length + 1, dimension, dtype=trajectory.dtype)
    states[:, 0] = trajectory[rows, base]
    draft_means = torch.empty(count, length, dimension, dtype=trajectory.dtype)
    for i in range(length):
        draft_means[:, i] = chain.draft_mean(states[:, i], steps[:, i])
        noise = torch.randn(count, dimension, generator=generator, dtype=trajectory.dtype)
        states[:, i + 1] = draft_means[:, i] + chain.sigmas[steps[:, i], None] * noise
    flat_steps = clipped.reshape(-1)
    target_means = chain.target_mean(states.reshape(-1, dimension), flat_steps).reshape(states.shape)
    sigmas = chain.sigmas[clipped]
    # Without a bonus step the last column is a placeholder that is never used.
    sigmas[:, length] = torch.where(has_bonus, sigmas[:, length], torch.ones_like(sigmas[:, length]))
    result = _verify(
        rule,
        states=states,
        draft_means=draft_means,
        target_means=target_means,
        sigmas=sigmas,
        uniforms=torch.rand(count, length, generator=generator, dtype=torch.float64),
        residual_uniforms=torch.rand(count, generator=generator, dtype=torch.float64),
        residual_noise=torch.randn(count, dimension, generator=generator, dtype=trajectory.dtype),
    )
    accepted = result.accepted
    for i in range(1, length + 1):
        keep = accepted >= i
        trajectory[rows[keep], base[keep] + i] = states[keep, i]
    nxt = base + accepted + 1
    write = nxt <= horizon
    trajectory[rows[write], nxt[write]] = result.next_state[write]
    position[rows] = torch.clamp(nxt, max=horizon)
    return accepted
