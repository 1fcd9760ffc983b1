"""Exact denoiser of Gaussian-mixture data, in any dimension (a single Gaussian included).

Data ``x0 ~ sum_k w_k N(m_k, v_k I)`` in ``R^d``. The VP state is ``x = sqrt(abar) x0 + sqrt(1 - abar) eps``; given
component ``k`` it is ``N(sqrt(abar) m_k, s_k^2 I)`` with ``s_k^2 = abar v_k + 1 - abar``, and

- responsibilities ``r_k(x) ∝ w_k N(x; sqrt(abar) m_k, s_k^2 I)`` (log-sum-exp, float64);
- ``E[x0 | x, k] = m_k + sqrt(abar) v_k (x - sqrt(abar) m_k) / s_k^2``;
- ``E[eps | x, k] = sqrt(1 - abar) (x - sqrt(abar) m_k) / s_k^2``;
- ``score(x) = -sum_k r_k (x - sqrt(abar) m_k) / s_k^2 = -E[eps | x] / sqrt(1 - abar)``;

each averaged over ``r_k``. The per-component forms are used directly (never ``(x - sqrt(abar) x0) / sqrt(1 -
abar)``), so everything stays finite as ``abar -> 1`` and ``abar -> 0`` and for far-out ``x``. Sigma space
``x = x0 + sigma eps`` is the VP state divided by ``sqrt(abar)`` with ``abar = 1 / (1 + sigma^2)``.

Inputs ``x`` have shape (B, *event) with ``prod(event) = d``; ``alpha_cumprod`` is a float or a tensor of shape
(B,). Results are float64 with the shape of ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from specdiff.kernels import Kernel, NoiseSchedule, PredictionType, prediction_from_x0_and_eps
from theory.linear_gaussian import GaussianMarginals, chain_marginals

#: ``model(x, t) -> prediction`` with ``t`` an int or an integer tensor of shape (B,).
Model = Callable[[torch.Tensor, torch.Tensor | int], torch.Tensor]


@dataclass(frozen=True)
class GaussianMixture:
    """An isotropic Gaussian mixture ``sum_k w_k N(m_k, v_k I)``.

    Attributes
    ----------
    weights : Tensor, shape (K,), float64
        Positive, summing to 1.
    means : Tensor, shape (K, d), float64
    variances : Tensor, shape (K,), float64
        Per-component isotropic variances ``v_k >= 0``.
    """

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor

    def __post_init__(self) -> None:
        weights = torch.as_tensor(self.weights, dtype=torch.float64).detach().clone()
        means = torch.as_tensor(self.means, dtype=torch.float64).detach().clone()
        variances = torch.as_tensor(self.variances, dtype=torch.float64).detach().clone()
        if weights.ndim != 1 or weights.numel() < 1:
            raise ValueError(f"weights must have shape (K,), got {tuple(weights.shape)}")
        components = weights.numel()
        if means.ndim != 2 or means.shape[0] != components or means.shape[1] < 1:
            raise ValueError(f"means must have shape ({components}, d), got {tuple(means.shape)}")
        if variances.shape != (components,):
            raise ValueError(f"variances must have shape ({components},), got {tuple(variances.shape)}")
        if bool(torch.any(weights <= 0)) or abs(float(weights.sum()) - 1.0) > 1e-9:
            raise ValueError("weights must be positive and sum to 1")
        if bool(torch.any(variances < 0)) or not bool(torch.all(torch.isfinite(variances))):
            raise ValueError("variances must be finite and non-negative")
        if not bool(torch.all(torch.isfinite(means))):
            raise ValueError("means must be finite")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "variances", variances)

    @classmethod
    def gaussian(cls, mean: torch.Tensor, variance: float) -> GaussianMixture:
        """A single Gaussian ``N(mean, variance I)``, ``mean`` of shape (d,)."""
        mean_tensor = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1)
        return cls(
            torch.ones(1, dtype=torch.float64), mean_tensor, torch.tensor([float(variance)], dtype=torch.float64)
        )

    @property
    def dimension(self) -> int:
        """``d``."""
        return int(self.means.shape[1])

    @property
    def num_components(self) -> int:
        """``K``."""
        return int(self.weights.numel())

    def mean(self) -> torch.Tensor:
        """Mean of the data law, shape (d,)."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Covariance of the data law, shape (d, d)."""
        centred = self.means - self.mean()
        within = float(self.weights @ self.variances) * torch.eye(self.dimension, dtype=torch.float64)
        return within + centred.T @ (self.weights[:, None] * centred)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points, shape (n, d), float64."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dimension, dtype=torch.float64, generator=generator)
        return self.means[components] + torch.sqrt(self.variances[components])[:, None] * noise

    # ----- posterior quantities on the VP state ------------------------------------------------------------------

    def _prepare(self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flatten ``x`` to (B, d) float64 and ``alpha_cumprod`` to (B, 1), validating both."""
        if x.ndim < 1:
            raise ValueError("x must have a batch dimension")
        flat = x.to(torch.float64).reshape(x.shape[0], -1)
        if flat.shape[1] != self.dimension:
            raise ValueError(f"x has {flat.shape[1]} coordinates per row, the mixture has d = {self.dimension}")
        alpha = torch.as_tensor(alpha_cumprod, dtype=torch.float64)
        if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.numel() not in (1, flat.shape[0])):
            raise ValueError(f"alpha_cumprod must be a scalar or have shape ({flat.shape[0]},)")
        if bool(torch.any(alpha < 0)) or bool(torch.any(alpha > 1)):
            raise ValueError("alpha_cumprod must lie in [0, 1]")
        return flat, alpha.reshape(-1, 1).expand(flat.shape[0], 1)

    def _component_terms(
        self, flat: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log responsibilities (B, K), residuals x - sqrt(abar) m_k (B, K, d), s_k^2 (B, K))``."""
        marginal_variance = alpha * self.variances[None, :] + (1.0 - alpha)  # (B, K)
        if bool(torch.any(marginal_variance <= 0)):
            raise ValueError("a component with zero variance has a degenerate marginal at alpha_cumprod = 1")
        residuals = flat[:, None, :] - torch.sqrt(alpha)[:, :, None] * self.means[None, :, :]
        squared = (residuals**2).sum(dim=-1)
        log_joint = (
            torch.log(self.weights)[None, :]
            - 0.5 * self.dimension * torch.log(2.0 * math.pi * marginal_variance)
            - 0.5 * squared / marginal_variance
        )
        return torch.log_softmax(log_joint, dim=1), residuals, marginal_variance

    def responsibilities(self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities ``P(k | x)``, shape (B, K), rows summing to 1."""
        flat, alpha = self._prepare(x, alpha_cumprod)
        log_responsibilities, _, _ = self._component_terms(flat, alpha)
        return torch.exp(log_responsibilities)

    def log_density(self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor) -> torch.Tensor:
        """Log density of the VP marginal at ``x``, shape (B,)."""
        flat, alpha = self._prepare(x, alpha_cumprod)
        marginal_variance = alpha * self.variances[None, :] + (1.0 - alpha)
        residuals = flat[:, None, :] - torch.sqrt(alpha)[:, :, None] * self.means[None, :, :]
        log_joint = (
            torch.log(self.weights)[None, :]
            - 0.5 * self.dimension * torch.log(2.0 * math.pi * marginal_variance)
            - 0.5 * (residuals**2).sum(dim=-1) / marginal_variance
        )
        return torch.logsumexp(log_joint, dim=1)

    def posterior_means(
        self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[x0 | x_t = x], E[eps | x_t = x])`` in one pass, each of the shape of ``x``, float64."""
        flat, alpha = self._prepare(x, alpha_cumprod)
        log_responsibilities, residuals, marginal_variance = self._component_terms(flat, alpha)
        responsibilities = torch.exp(log_responsibilities)[:, :, None]  # (B, K, 1)
        x0_gain = (torch.sqrt(alpha) * self.variances[None, :] / marginal_variance)[:, :, None]
        x0 = (responsibilities * (self.means[None, :, :] + x0_gain * residuals)).sum(dim=1)
        eps_gain = (torch.sqrt(1.0 - alpha) / marginal_variance)[:, :, None]
        eps = (responsibilities * eps_gain * residuals).sum(dim=1)
        return x0.reshape(x.shape), eps.reshape(x.shape)

    def denoise(self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor) -> torch.Tensor:
        """``E[x0 | x_t = x]``, shape of ``x``, float64."""
        return self.posterior_means(x, alpha_cumprod)[0]

    def epsilon(self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor) -> torch.Tensor:
        """``E[eps | x_t = x]``, shape of ``x``, float64."""
        return self.posterior_means(x, alpha_cumprod)[1]

    def score(self, x: torch.Tensor, alpha_cumprod: float | torch.Tensor) -> torch.Tensor:
        """``grad_x log p_t(x)``, shape of ``x``, float64."""
        flat, alpha = self._prepare(x, alpha_cumprod)
        log_responsibilities, residuals, marginal_variance = self._component_terms(flat, alpha)
        terms = residuals / marginal_variance[:, :, None]
        return -(torch.exp(log_responsibilities)[:, :, None] * terms).sum(dim=1).reshape(x.shape)

    # ----- sigma space --------------------------------------------------------------------------------------------

    def denoise_sigma(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``E[x0 | x0 + sigma eps = x]``, shape of ``x``, float64; ``sigma`` a float or shape (B,)."""
        x_vp, alpha = _sigma_to_vp(x, sigma)
        return self.denoise(x_vp, alpha)

    def epsilon_sigma(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``E[eps | x0 + sigma eps = x]``, shape of ``x``, float64."""
        x_vp, alpha = _sigma_to_vp(x, sigma)
        return self.epsilon(x_vp, alpha)

    # ----- adaptor ---------------------------------------------------------------------------------------------------

    def as_model(self, kernel_schedule: object, prediction: PredictionType = "epsilon") -> Model:
        """A network stand-in ``model(x, t) -> prediction`` for the samplers.

        Parameters
        ----------
        kernel_schedule : NoiseSchedule, or a kernel (anything with a ``schedule`` attribute)
            Gives ``abar_t = alphas_cumprod[t]``.
        prediction : {"epsilon", "sample", "v_prediction"}

        Returns
        -------
        Callable ``model(x, t)``: ``x`` (B, *event) the VP state (``kernel.model_input``), ``t`` an int or an
        integer tensor of shape (B,) of training timesteps; returns the exact prediction, shape (B, *event), in
        the dtype of ``x``.
        """
        schedule = getattr(kernel_schedule, "schedule", kernel_schedule)
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError("kernel_schedule must be a NoiseSchedule or have a NoiseSchedule `schedule` attribute")
        if prediction not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(f"unknown prediction type {prediction!r}")
        alphas_cumprod = schedule.alphas_cumprod

        def model(x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
            steps = torch.as_tensor(t, dtype=torch.int64)
            if bool(torch.any(steps < 0)) or bool(torch.any(steps >= alphas_cumprod.numel())):
                raise ValueError(f"timesteps must lie in [0, {alphas_cumprod.numel()})")
            alpha = alphas_cumprod[steps.reshape(-1)]
            x0, eps = self.posterior_means(x, alpha)
            alpha_column = alpha.reshape(-1, *([1] * (x.ndim - 1)))
            return prediction_from_x0_and_eps(x0, eps, alpha_column, prediction).to(x.dtype)

        return model


def _sigma_to_vp(x: torch.Tensor, sigma: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigma-space state to ``(VP state, abar)`` with ``abar = 1 / (1 + sigma^2)``."""
    sigma_tensor = torch.as_tensor(sigma, dtype=torch.float64)
    if bool(torch.any(sigma_tensor < 0)):
        raise ValueError("sigma must be non-negative")
    alpha = 1.0 / (1.0 + sigma_tensor**2)
    scale = torch.sqrt(alpha).reshape(-1, *([1] * (x.ndim - 1))) if sigma_tensor.ndim else torch.sqrt(alpha)
    return x.to(torch.float64) * scale, alpha


def perturbed(
    mixture: GaussianMixture, mean_shift: float | torch.Tensor = 0.0, variance_scale: float | torch.Tensor = 1.0
) -> GaussianMixture:
    """A controlled imperfect copy of ``mixture`` (a draft model's data law).

    Parameters
    ----------
    mixture : GaussianMixture
    mean_shift : float or Tensor of shape (d,) or (K, d)
        Added to every component mean (a float shifts every coordinate).
    variance_scale : float or Tensor of shape (K,)
        Multiplies every component variance; must be non-negative.

    Returns
    -------
    GaussianMixture
        Same weights, shifted means, scaled variances.
    """
    shift = torch.as_tensor(mean_shift, dtype=torch.float64)
    scale = torch.as_tensor(variance_scale, dtype=torch.float64)
    if shift.ndim > 2 or (shift.ndim >= 1 and shift.shape[-1] != mixture.dimension):
        raise ValueError(f"mean_shift must be a float or have shape (d,) or (K, d) with d = {mixture.dimension}")
    if scale.ndim > 1 or bool(torch.any(scale < 0)):
        raise ValueError("variance_scale must be a non-negative float or have shape (K,)")
    return GaussianMixture(mixture.weights, mixture.means + shift, mixture.variances * scale)


def gaussian_chain_marginals(mixture: GaussianMixture, kernel: Kernel) -> GaussianMarginals:
    """Exact marginals of the discretized sampling chain of ``kernel`` when the data are one Gaussian.

    With a single isotropic Gaussian the exact prediction is affine in the state, so every step is
    ``x_{n+1} = a_n x_n + b_n + sigma_n xi_n`` (without clipping) and the chain's laws are Gaussian in closed form
    (:func:`theory.linear_gaussian.chain_marginals`), starting from ``N(0, prior_std^2 I)``.

    Parameters
    ----------
    mixture : GaussianMixture
        One component.
    kernel : Kernel
        Any kernel without ``clip_sample``; the model is ``mixture.as_model(kernel, kernel.prediction_type)``.

    Returns
    -------
    GaussianMarginals
        ``means`` (N + 1, d) and ``covariances`` (N + 1, d, d) of ``x_0 .. x_N``.
    """
    if mixture.num_components != 1:
        raise ValueError("closed-form chain marginals need a single Gaussian (one component)")
    if kernel.clip_sample:
        raise ValueError("clipping makes the chain non-linear: no closed form")
    model = mixture.as_model(kernel, kernel.prediction_type)
    d = mixture.dimension
    probes = torch.cat([torch.zeros(1, d, dtype=torch.float64), torch.eye(1, d, dtype=torch.float64)])
    transitions, offsets, sigmas = [], [], []
    for step in range(kernel.num_steps):
        timesteps = kernel.timesteps[step].repeat(2)
        transition = kernel.transition(probes, model(kernel.model_input(probes, step), timesteps), step)
        offsets.append(transition.mean[0].numpy())
        transitions.append(float(transition.mean[1, 0] - transition.mean[0, 0]))  # a_n (isotropic)
        sigmas.append(float(transition.sigma))
    prior = kernel.prior_std**2 * np.eye(d)
    return chain_marginals(np.zeros(d), prior, transitions, np.stack(offsets), sigmas)
