"""Affine Gaussian chains for tests: target and draft means affine in the state, marginals in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
