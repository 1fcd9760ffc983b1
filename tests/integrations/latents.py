"""What the exactness tests of the diffusers integration share: the sizes, the test of speculative against plain
latents, and the shifted draft whose bias the accept-always control passes on to the samples."""

from __future__ import annotations

import math
from typing import Any

import torch

from specdiff.chain import kernel_sigmas
from specdiff.stats import ks_two_sample_projection, mmd_test, random_directions

SAMPLES = 150  # per arm, one prompt, 12 steps, 8x8x4 latents (256 coordinates)
STEPS = 12
PERMUTATIONS = 29_999  # the MMD half of the Bonferroni pair reaches 2 / 30,000 < ALPHA / 2 on its own
#: The shifted draft's offset, in units of the step's sigma, along the all-ones direction.
DRAFT_SHIFT = 1.0


def arm_options(seed: int) -> dict[str, Any]:
    """The pipeline arguments of one arm: ``SAMPLES`` images of one prompt, no guidance, ``STEPS`` steps, latents out,
    a generator seeded ``seed``."""
    return {
        "num_images_per_prompt": SAMPLES, "guidance_scale": 1.0, "num_inference_steps": STEPS,
        "generator": torch.Generator().manual_seed(seed), "output_type": "latent",
    }  # fmt: skip


def latents_p_value(first: torch.Tensor, second: torch.Tensor, seed: int) -> float:
    """Bonferroni over MMD and projected KS (the all-ones direction and 7 random ones, Bonferroni inside) between
    two samples of flattened latents (n, D) float64."""
    generator = torch.Generator().manual_seed(seed)
    mmd = mmd_test(first, second, permutations=PERMUTATIONS, generator=generator).p_value
    ones = torch.ones(1, first.shape[1], dtype=torch.float64) / math.sqrt(first.shape[1])
    directions = torch.cat([ones, random_directions(7, first.shape[1], generator=generator)])
    return min(1.0, 2 * min(mmd, ks_two_sample_projection(first, second, directions).p_value))


def shifted(means: torch.Tensor, states: torch.Tensor, steps: torch.Tensor, kernel: object) -> torch.Tensor:
    """Draft means (M, *event) moved by ``DRAFT_SHIFT`` sigma of each row's step along the all-ones direction."""
    sigmas = kernel_sigmas(kernel).to(states.dtype)[steps]  # type: ignore[arg-type]
    direction = torch.ones_like(states[0]) / math.sqrt(states[0].numel())
    return means + DRAFT_SHIFT * sigmas.reshape(-1, *([1] * (states.dim() - 1))) * direction
