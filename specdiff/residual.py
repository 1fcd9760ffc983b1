"""Exact residual draws for Gaussian transitions in any dimension, at zero network cost.

A rejected speculative step must be redrawn from the (weighted) residual ``max(w target - draft, 0) / R``
with ``target = N(mu, sigma^2 I)`` and ``draft = N(nu, sigma^2 I)``. In the rank-1 frame (docs/design.md §2)
``x = nu + sigma (s e + z_perp)`` the residual only changes the law of the scalar ``s``; ``z_perp`` stays standard
normal on the orthogonal complement of ``e``. So a residual draw is one scalar from a 1-D law plus fresh noise:

- ``sample_weighted_residual``: the scalar by inverse CDF (:func:`specdiff.residual_law.residual_offset_quantile`,
  torch float64 with a fixed number of iterations, so it runs on the states' device without host reads), exact,
  vectorized, one uniform per draw (the default, and what block verification uses). The scalar is measured from the
  target mean, ``x = mu + sigma (t e + z_perp)`` with ``t = s - delta``, which keeps its precision at any gap (from the
  draft mean, ``s ~ delta`` would swallow ``t`` once ``delta`` is large);
- ``sample_weighted_residual_rejection``: the scalar by rejection from the truncated ``N(delta, 1)``, the comparison
  method, whose acceptance rate ``R / (w Phi(delta - s*))`` collapses for small ``delta``;
- ``reflect``: the reflection map of De Bortoli et al. (token rule only: its output is tied to the draft noise).

The rejection sampler's scalar computations run in float64 on the host (numpy / scipy); it is not used by the samplers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from specdiff.residual_law import residual_offset_quantile
from theory.gaussian import log_residual_mass_from_log_weight


def _batch_dot(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Inner product over all event dimensions: (B, *event) x (B, *event) -> (B,)."""
    return (left * right).flatten(1).sum(dim=1)


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (B,) to (B, 1, ..., 1) to broadcast against (B, *event)."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


@dataclass(frozen=True)
class RankOneFrame:
    """The standardized gap between a target and a draft Gaussian with a shared sigma.

    Attributes
    ----------
    delta : Tensor, shape (B,)
        ``|mu - nu| / sigma`` (float64).
    direction : Tensor, shape (B, *event)
        Unit vector ``e = (mu - nu) / |mu - nu|`` (float64); zero where ``delta == 0``.
    """

    delta: torch.Tensor
    direction: torch.Tensor


def rank_one_frame(target_mean: torch.Tensor, draft_mean: torch.Tensor, sigma: torch.Tensor) -> RankOneFrame:
    """Gap and direction between ``N(target_mean, sigma^2 I)`` and ``N(draft_mean, sigma^2 I)``.

    Parameters
    ----------
    target_mean, draft_mean : Tensor, shape (B, *event)
    sigma : Tensor, shape (B,)
        Positive standard deviations.

    Returns
    -------
    RankOneFrame
    """
    gap = (target_mean.double() - draft_mean.double()) / _expand(sigma.double(), target_mean)
    delta = gap.flatten(1).norm(dim=1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    direction = torch.where(_expand(delta > 0, gap), gap / _expand(safe, gap), torch.zeros_like(gap))
    return RankOneFrame(delta=delta, direction=direction)


def reflect(noise: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Householder reflection ``z - 2 <e, z> e`` of each row of ``noise`` across the hyperplane orthogonal to e.

    Parameters
    ----------
    noise : Tensor, shape (B, *event)
    direction : Tensor, shape (B, *event)
        Unit vectors (or zero rows, which leave the noise unchanged).

    Returns
    -------
    Tensor, shape (B, *event), dtype of ``noise``
    """
    direction = direction.to(noise.dtype)
    return noise - 2.0 * _expand(_batch_dot(noise, direction), noise) * direction


def _assemble(
    mean: torch.Tensor, sigma: torch.Tensor, frame: RankOneFrame, along: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """``mean + sigma (along e + z_perp)`` in float64, cast to the dtype of ``mean``, with ``z_perp`` the part of
    ``noise`` orthogonal to e; ``along`` (B,) is measured from ``mean`` (the target mean or the draft mean)."""
    direction = frame.direction
    noise64 = noise.double()
    orthogonal = noise64 - _expand(_batch_dot(noise64, direction), noise64) * direction
    sample = mean.double() + _expand(sigma.double(), noise64) * (
        _expand(along.to(noise64.device), noise64) * direction + orthogonal
    )
    return sample.to(mean.dtype)


def gaussian_step(mean: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``mean + sigma * noise`` in the dtype of ``mean``: the one way every sampler takes a Gaussian step.

    Parameters
    ----------
    mean : Tensor, shape (B, *event)
    sigma : Tensor, shape (B,)
        Standard deviations (0 gives ``mean`` exactly).
    noise : Tensor, shape (B, *event)
        Standard normal.

    Returns
    -------
    Tensor, shape (B, *event), dtype of ``mean``
    """
    return torch.addcmul(mean, _expand(sigma.to(mean.dtype), mean), noise.to(mean.dtype))


#: On a CPU the residual's scalars are padded to a multiple of this (a multiple of the widest vectorized loop).
CPU_LANES = 16


def _vector_padded(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each (B,) tensor padded on a CPU to a multiple of ``CPU_LANES`` rows (copies of row 0); unchanged elsewhere.

    A CPU kernel runs its vectorized loop over whole vectors and a scalar loop over the remainder, and the two round
    transcendental functions differently in the last bit. A row of a batch could fall in either, depending on the
    batch size, which would make a residual draw differ in its last bit between a batch and a sample alone. Padded,
    every row takes the vectorized path whatever the batch (up to the parallel grain, 32768 elements, when several
    threads split a kernel), at the cost of at most ``CPU_LANES - 1`` extra rows. A GPU kernel computes every element
    alike.
    """
    if values[0].device.type != "cpu":
        return values
    padding = -values[0].shape[0] % CPU_LANES
    return tuple(torch.cat([value, value[:1].expand(padding)]) for value in values)


def weighted_residual_from_target(
    target_mean: torch.Tensor,
    draft_mean: torch.Tensor,
    sigma: torch.Tensor,
    log_weight: torch.Tensor,
    uniforms: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """``mu + sigma (t e + z_perp)``: a draw from ``max(w P - Q, 0) / R`` with no checks and no host reads.

    ``t`` is the residual quantile measured from the target mean; rows with an empty residual (``delta == 0``) get a
    finite, meaningless value, for a caller that selects rows with ``torch.where``. Shapes as
    :func:`sample_weighted_residual`.
    """
    frame = rank_one_frame(target_mean, draft_mean, sigma)
    padded = _vector_padded(uniforms.double(), log_weight.double(), frame.delta)
    along = residual_offset_quantile(*padded)[: frame.delta.shape[0]]
    return _assemble(target_mean, sigma, frame, along, noise).to(draft_mean.dtype)


def _check_residual_inputs(
    frame: RankOneFrame, sigma: torch.Tensor, log_weight: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """The gaps and log weights on the host, after checking them and ``sigma``; ValueError where one is invalid."""
    sigmas = sigma.detach().double().cpu().numpy()
    if not (np.isfinite(sigmas).all() and (sigmas > 0).all()):
        raise ValueError("sigma must be finite and > 0")
    delta = frame.delta.detach().cpu().numpy()
    if not np.isfinite(delta).all():
        raise ValueError("target and draft means must be finite (the gap |mu - nu| / sigma is not)")
    if (delta <= 0).any():
        raise ValueError("the residual is empty where target and draft means coincide (delta == 0)")
    log_w = np.broadcast_to(log_weight.detach().double().cpu().numpy(), delta.shape)
    if np.isnan(log_w).any() or (log_w > 0).any() or np.isneginf(log_w).any():
        raise ValueError("the residual weight must satisfy 0 < weight <= 1 (log_weight in (-inf, 0])")
    return delta, log_w


def sample_weighted_residual(
    target_mean: torch.Tensor,
    draft_mean: torch.Tensor,
    sigma: torch.Tensor,
    log_weight: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Exact draw from ``max(w N(mu, sigma^2 I) - N(nu, sigma^2 I), 0) / R(w, delta)`` by inverse CDF.

    Parameters
    ----------
    target_mean, draft_mean : Tensor, shape (B, *event)
    sigma : Tensor, shape (B,)
    log_weight : Tensor, shape (B,) or ()
        ``ln w`` in (-inf, 0]; ``0`` gives the plain residual ``max(target - draft, 0) / TV``.
    uniforms : Tensor, shape (B,)
        In [0, 1): they drive the inverse CDF of the scalar along e.
    noise : Tensor, shape (B, *event)
        Standard normal; its part orthogonal to e is used.

    Returns
    -------
    Tensor, shape (B, *event), dtype of ``draft_mean``

    Raises
    ------
    ValueError
        Where ``delta == 0`` (the residual is empty); ``sigma`` not finite and > 0; non-finite means;
        ``log_weight`` not in (-inf, 0]; uniforms outside [0, 1).
    """
    frame = rank_one_frame(target_mean, draft_mean, sigma)
    _check_residual_inputs(frame, sigma, log_weight)
    if not bool(((uniforms >= 0) & (uniforms < 1)).all()):
        raise ValueError("residual uniforms must lie in [0, 1)")
    log_weight = torch.broadcast_to(log_weight.to(frame.delta), frame.delta.shape)
    return weighted_residual_from_target(target_mean, draft_mean, sigma, log_weight, uniforms.to(frame.delta), noise)


@dataclass(frozen=True)
class RejectionResidualResult:
    """Result of ``sample_weighted_residual_rejection``.

    Attributes
    ----------
    samples : Tensor, shape (B, *event)
    proposals : Tensor, shape (B,)
        Number of proposals each draw needed.
    acceptance_rate : Tensor, shape (B,)
        The theoretical per-proposal acceptance ``R / (w Phi(delta - s*))`` of each draw.
    """

    samples: torch.Tensor
    proposals: torch.Tensor
    acceptance_rate: torch.Tensor


def residual_rejection_acceptance_rate(log_weight: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Per-proposal acceptance ``R / (w Phi(delta - s*))`` of rejection from the truncated ``N(delta, 1)``.

    Parameters
    ----------
    log_weight, delta : ndarray, shape (...)
        ``ln w <= 0`` and ``delta > 0``.
    """
    threshold = 0.5 * delta - log_weight / delta
    log_envelope = log_weight + special.log_ndtr(delta - threshold)
    return np.asarray(np.exp(log_residual_mass_from_log_weight(log_weight, delta) - log_envelope))


def sample_weighted_residual_rejection(
    target_mean: torch.Tensor,
    draft_mean: torch.Tensor,
    sigma: torch.Tensor,
    log_weight: torch.Tensor,
    *,
    generator: np.random.Generator,
    noise: torch.Tensor,
    max_proposals: int = 10_000_000,
) -> RejectionResidualResult:
    """Exact residual draw by rejection sampling (comparison method; not the default).

    Along e, propose ``s ~ N(delta, 1)`` truncated to ``s > s*`` (by inverse CDF in log space) and accept with
    probability ``(w phi(s - delta) - phi(s)) / (w phi(s - delta)) = 1 - exp(-delta (s - s*))``.

    Parameters
    ----------
    target_mean, draft_mean : Tensor, shape (B, *event)
    sigma : Tensor, shape (B,)
    log_weight : Tensor, shape (B,) or ()
    generator : numpy.random.Generator
        Source of the proposal and acceptance uniforms (their number is random).
    noise : Tensor, shape (B, *event)
        Standard normal; its part orthogonal to e is used.
    max_proposals : int
        Give up (RuntimeError) after this many proposals for one row.

    Returns
    -------
    RejectionResidualResult
    """
    frame = rank_one_frame(target_mean, draft_mean, sigma)
    delta, log_w = _check_residual_inputs(frame, sigma, log_weight)
    threshold = 0.5 * delta - log_w / delta
    log_tail = special.log_ndtr(delta - threshold)  # log P(N(delta, 1) > s*)
    along = np.full(delta.shape, np.nan)
    proposals = np.zeros(delta.shape, dtype=np.int64)
    pending = np.arange(delta.size)
    while pending.size:
        if proposals[pending].max() >= max_proposals:
            raise RuntimeError("rejection residual sampler exceeded max_proposals (delta too small?)")
        log_u = np.log1p(-generator.random(pending.size))  # log of a uniform in (0, 1]
        # Truncated N(delta, 1) above s*: s = delta + Phi^{-1}(1 - u P(tail)) = delta - ndtri_exp(log u + log tail).
        candidate = delta[pending] - special.ndtri_exp(log_u + log_tail[pending])
        candidate = np.maximum(candidate, threshold[pending])
        keep_prob = -np.expm1(-delta[pending] * (candidate - threshold[pending]))
        proposals[pending] += 1
        accepted = generator.random(pending.size) < keep_prob
        along[pending[accepted]] = candidate[accepted]
        pending = pending[~accepted]
    samples = _assemble(draft_mean, sigma, frame, torch.from_numpy(along), noise)
    return RejectionResidualResult(
        samples=samples,
        proposals=torch.from_numpy(proposals),
        acceptance_rate=torch.from_numpy(residual_rejection_acceptance_rate(log_w, delta)),
    )
