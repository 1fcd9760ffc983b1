"""Shared pieces of the simulation scripts: problems, drafters and kernels by name.

A *problem* is Gaussian-mixture data in ``d`` dimensions whose exact denoiser is the target model
(``specdiff.models.gmm``), with a perturbed mixture as an independent draft model. A single Gaussian gives the law
of the sampling chain in closed form (``gaussian_chain_marginals``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from specdiff.drafters import Drafter, ExtrapolatingDrafter, FreeDrafter, FrozenDrafter, ModelDrafter
from specdiff.kernels import DDIMKernel, DDPMKernel, EulerAncestralKernel, Kernel, linear_schedule
from specdiff.models.dit import DiT, load_pretrained
from specdiff.models.gmm import GaussianMixture, perturbed

DRAFTER_NAMES = ("frozen", "free-nearest", "free-committed", "extrapolating", "model")
#: Drafters of a network target (the DiT): no independent draft model.
NETWORK_DRAFTER_NAMES = ("frozen", "free-nearest", "free-committed", "free-exit", "extrapolating")
#: The early-exit Free Drafter's blocks: the first 2 of the digits DiT's 4 blocks and its final layer.
EXIT_BLOCKS = 2
KERNEL_NAMES = ("ddpm", "ddim", "euler-ancestral")
#: Cost of the independent draft model per drafted step, in target calls (a model ~10x cheaper than the target).
MODEL_DRAFT_COST = 0.1


@dataclass(frozen=True)
class Problem:
    """Data law (the target's) and the draft model's data law, in ``dimension`` dimensions."""

    name: str
    dimension: int
    data: GaussianMixture
    draft_data: GaussianMixture


def gaussian_problem(dimension: int) -> Problem:
    """One Gaussian, mean of norm 1.5 along (1, -1, 1, ...), variance 0.2; the draft's mean shifted by 0.3."""
    sign = torch.tensor([(-1.0) ** i for i in range(dimension)], dtype=torch.float64)
    mean = 1.5 * sign / math.sqrt(dimension)
    data = GaussianMixture.gaussian(mean, 0.2)
    return Problem("gaussian", dimension, data, perturbed(data, mean_shift=0.3 * sign / math.sqrt(dimension)))


def mixture_problem(dimension: int, components: int = 4, seed: int = 0) -> Problem:
    """``components`` well-separated Gaussians (means of norm 2, variances 0.05-0.3); the draft is perturbed."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(components, dimension, dtype=torch.float64, generator=generator)
    means = 2.0 * directions / directions.norm(dim=1, keepdim=True)
    variances = 0.05 + 0.25 * torch.rand(components, dtype=torch.float64, generator=generator)
    weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
    data = GaussianMixture(weights, means, variances)
    draft = perturbed(data, mean_shift=0.2 / math.sqrt(dimension), variance_scale=1.3)
    return Problem("mixture", dimension, data, draft)


def make_kernel(name: str, steps: int) -> Kernel:
    """A kernel by name on the linear DDPM schedule with 1000 training steps, eps-prediction."""
    schedule = linear_schedule(1000)
    if name == "ddpm":
        return DDPMKernel(schedule, num_steps=steps)
    if name == "ddim":
        return DDIMKernel(schedule, num_steps=steps, eta=0.5)
    if name == "euler-ancestral":
        return EulerAncestralKernel(schedule, num_steps=steps)
    raise ValueError(f"unknown kernel {name!r}; choose from {KERNEL_NAMES}")


def make_drafter(name: str, problem: Problem, kernel: Kernel) -> Drafter:
    """A fresh drafter by name (``model`` uses the problem's perturbed data law; the others as ``network_drafter``)."""
    if name == "model":
        return ModelDrafter(problem.draft_data.as_model(kernel), draft_cost_per_step=MODEL_DRAFT_COST)
    if name not in DRAFTER_NAMES:
        raise ValueError(f"unknown drafter {name!r}; choose from {DRAFTER_NAMES}")
    return network_drafter(name)


def network_drafter(name: str, exit_blocks: int = EXIT_BLOCKS) -> Drafter:
    """A fresh drafter of a network target by name (one of ``NETWORK_DRAFTER_NAMES``)."""
    if name == "frozen":
        return FrozenDrafter()
    if name == "free-nearest":
        return FreeDrafter(reuse="nearest")
    if name == "free-committed":
        return FreeDrafter(reuse="committed")
    if name == "free-exit":
        return FreeDrafter(exit_blocks=exit_blocks)
    if name == "extrapolating":
        return ExtrapolatingDrafter()
    raise ValueError(f"unknown drafter {name!r}; choose from {NETWORK_DRAFTER_NAMES}")


def initial_noise(kernel: Kernel, batch: int, dimension: int, seed: int) -> torch.Tensor:
    """``prior_std * randn(batch, dimension)`` in float64 from its own seed."""
    generator = torch.Generator().manual_seed(seed)
    return kernel.prior_std * torch.randn(batch, dimension, dtype=torch.float64, generator=generator)


@functools.cache
def shipped_digits(device: str = "cpu") -> DiT:
    """The shipped digits DiT on ``device``, loaded once per process (every script that samples it shares it)."""
    return load_pretrained("digits", device=torch.device(device))
