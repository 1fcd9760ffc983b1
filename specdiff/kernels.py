"""Gaussian transitions of diffusion samplers: from a model prediction to ``(mean, sigma)`` of each step.

A sampler is a Markov chain run over step indices ``n = 0..N-1`` in sampling order (docs/design.md §2, §3.8). Every
kernel here turns the model prediction at step ``n`` into the Gaussian transition ``N(mean, sigma^2 I)`` of that step,
with one shared signature::

    kernel.model_input(x, n)            -> what the network is fed (identity except in sigma space)
    kernel.timesteps[n]                 -> the integer training timestep the network is fed
    kernel.transition(x, prediction, n) -> GaussianTransition(mean, sigma)

Schedules are data: a :class:`NoiseSchedule` holds the training ``alphas_cumprod`` and :func:`respace` picks the
sampling timesteps.

Conventions
-----------
- **Respacing.** :func:`respace` uses diffusers' ``"trailing"`` spacing by default: ``t_n = round(T - n T / N) - 1``,
  so the first sampling step is always at ``t = T - 1`` (the noisiest training step) for any ``N <= T``. Halves
  round up here and to even in diffusers, so the two differ by one where ``T - n T / N`` is a half-integer with an
  even integer part (``T = 1000``, ``N = 16``: ``t_3`` is 812 here, 811 in diffusers); the diffusers integration
  takes the scheduler's own timesteps instead (:mod:`specdiff.integrations.diffusers`). ``"leading"``
  (``t_n = (N - 1 - n) * (T // N)``) is available too. The step after the last sampled timestep goes to "time -1",
  i.e. to clean data, with ``alpha_cumprod = 1`` (diffusers' ``set_alpha_to_one``).
- **Respaced betas.** Between consecutive sampled timesteps ``t`` and ``p``: ``beta = 1 - abar_t / abar_p`` (as
  diffusers and improved-diffusion do).
- **DDPM ``fixed_large``.** The variance is the (respaced) ``beta`` at every step except the final step into
  ``x_0`` (training index ``t = 0`` side, the last sampling step), which uses ``beta_tilde = 0``: that step is
  deterministic. This is what the original DDPM code does in effect (its ``fixed_large`` variance at ``t = 0`` is
  ``posterior_variance[1]``, which the ``t == 0`` noise mask then multiplies by zero) and what diffusers does (no
  noise at ``t = 0``). With ``fixed_small`` the last step has ``beta_tilde = 0`` anyway. Sigma is then exactly 0.
- **Sigma space (Euler ancestral).** The state is ``x = x0 + sigma eps`` with ``sigma = sqrt((1 - abar) / abar)``,
  i.e. ``x = x_vp / sqrt(abar)``. The network, trained on the VP state ``x_vp = sqrt(abar) x0 + sqrt(1 - abar) eps``,
  is fed ``model_input(x) = x / sqrt(sigma^2 + 1)`` (diffusers' ``scale_model_input``), which equals ``x_vp``
  exactly. Sampling starts from ``N(0, prior_std^2 I)`` with ``prior_std = sqrt(sigma_max^2 + 1)``.
- **Euler-Maruyama (VP-SDE).** Continuous time ``tau = (t + 1) / T`` with ``beta(tau) = T beta_t`` (the discrete
  training beta); on the integer grid of :func:`respace` (uniform when ``N`` divides ``T``) the step from ``t`` to
  ``p`` has ``dtau = (t - p) / T``, so ``beta(tau) dtau = beta_t (t - p)``. The reverse SDE
  ``dx = [-beta x / 2 - beta score] dtau + sqrt(beta) dW`` gives ``mean = x + beta dtau (x / 2 + score)`` and
  ``sigma = sqrt(beta dtau)``, with ``score = -eps / sqrt(1 - abar_t)``.

All coefficients are computed in float64 (Python floats) and applied in the dtype of ``x``; use float64 states for
float64 results. Kernels are batched over the leading dimension and never depend on diffusers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

PredictionType = Literal["epsilon", "sample", "v_prediction"]
VarianceType = Literal["fixed_small", "fixed_large"]
Spacing = Literal["trailing", "leading"]

PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES: tuple[str, ...] = ("fixed_small", "fixed_large")
SPACINGS: tuple[str, ...] = ("trailing", "leading")


# ---------------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseSchedule:
    """A training noise schedule, held as data.

    Attributes
    ----------
    alphas_cumprod : Tensor, shape (T,), float64
        ``abar_t = prod_{s <= t} (1 - beta_s)`` for training timesteps ``t = 0..T-1``; strictly decreasing in
        (0, 1) (``abar = 1`` would be a noise-free timestep, where the kernels divide by ``1 - abar``).
    """

    alphas_cumprod: torch.Tensor

    def __post_init__(self) -> None:
        values = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64).detach().clone()
        if values.ndim != 1 or values.numel() < 1:
            raise ValueError(f"alphas_cumprod must be a non-empty 1-D tensor, got shape {tuple(values.shape)}")
        if not bool(torch.all(torch.isfinite(values))) or bool(torch.any(values <= 0)) or bool(torch.any(values >= 1)):
            raise ValueError("alphas_cumprod must lie in (0, 1): abar = 1 is a noise-free timestep")
        if values.numel() > 1 and bool(torch.any(values[1:] >= values[:-1])):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        object.__setattr__(self, "alphas_cumprod", values)

    @property
    def num_train_timesteps(self) -> int:
        """``T``, the number of training timesteps."""
        return int(self.alphas_cumprod.numel())

    @property
    def betas(self) -> torch.Tensor:
        """Training betas, shape (T,): ``beta_t = 1 - abar_t / abar_{t-1}`` with ``abar_{-1} = 1``."""
        previous = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        return 1.0 - self.alphas_cumprod / previous

    @classmethod
    def from_betas(cls, betas: torch.Tensor | np.ndarray) -> NoiseSchedule:
        """Build a schedule from training betas, shape (T,), each in (0, 1)."""
        betas_tensor = torch.as_tensor(betas, dtype=torch.float64)
        if betas_tensor.ndim != 1 or bool(torch.any(betas_tensor <= 0)) or bool(torch.any(betas_tensor >= 1)):
            raise ValueError("betas must be a 1-D tensor with entries in (0, 1)")
        return cls(torch.cumprod(1.0 - betas_tensor, dim=0))


def _check_train_steps(T: int) -> None:
    if not isinstance(T, (int, np.integer)) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """DDPM's linear schedule: ``beta_t`` evenly spaced from ``beta_start`` to ``beta_end`` (T values)."""
    _check_train_steps(T)
    return NoiseSchedule.from_betas(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


def scaled_linear_schedule(T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> NoiseSchedule:
    """Stable Diffusion's ``scaled_linear`` schedule: ``sqrt(beta_t)`` evenly spaced (T values), then squared."""
    _check_train_steps(T)
    roots = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64)
    return NoiseSchedule.from_betas(roots**2)


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Nichol & Dhariwal's cosine schedule.

    ``f(u) = cos(((u + s) / (1 + s)) pi / 2)^2`` and ``beta_t = min(1 - f((t + 1) / T) / f(t / T), max_beta)``
    for ``t = 0..T-1`` (diffusers' ``betas_for_alpha_bar``).
    """
    _check_train_steps(T)
    if s < 0:
        raise ValueError(f"s must be non-negative, got {s}")
    grid = np.arange(T + 1, dtype=np.float64) / T
    alpha_bar = np.cos((grid + s) / (1.0 + s) * math.pi / 2.0) ** 2
    betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    return NoiseSchedule.from_betas(betas)


def respace(schedule_or_T: NoiseSchedule | int, steps: int, spacing: Spacing = "trailing") -> torch.Tensor:
    """Sampling timesteps: ``steps`` distinct training timesteps in descending order.

    Parameters
    ----------
    schedule_or_T : NoiseSchedule or int
        The training schedule, or its number of timesteps ``T``.
    steps : int
        ``N``, the number of sampling steps, ``1 <= N <= T``.
    spacing : {"trailing", "leading"}
        ``"trailing"`` (default): ``t_n = round(T - n T / N) - 1`` (rounding half up, where diffusers rounds half
        to even), starts at ``T - 1``.
        ``"leading"``: ``t_n = (N - 1 - n) * (T // N)``, ends at 0 (diffusers' default for DDPM / DDIM).

    Returns
    -------
    Tensor, shape (N,), int64
        ``t_0 > t_1 > ... > t_{N-1} >= 0``.
    """
    T = schedule_or_T.num_train_timesteps if isinstance(schedule_or_T, NoiseSchedule) else schedule_or_T
    _check_train_steps(T)
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in [1, {T}], got {steps!r}")
    if spacing == "trailing":
        positions = T - np.arange(steps, dtype=np.float64) * (T / steps)
        timesteps = np.floor(positions + 0.5).astype(np.int64) - 1
    elif spacing == "leading":
        timesteps = np.arange(steps, dtype=np.int64)[::-1] * (T // steps)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    return torch.as_tensor(np.ascontiguousarray(timesteps), dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------------------
# Parameterizations (VP state x_t = sqrt(abar) x0 + sqrt(1 - abar) eps)
# ---------------------------------------------------------------------------------------------------------------


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def x0_and_eps_from_prediction(
    x: torch.Tensor, prediction: torch.Tensor, alpha_cumprod: float, prediction_type: PredictionType
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output on the VP state into ``(x0, eps)``.

    Parameters
    ----------
    x : Tensor, shape (B, *event)
        VP state ``x_t``.
    prediction : Tensor, shape (B, *event)
        ``eps`` (``"epsilon"``), ``x0`` (``"sample"``) or ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
        (``"v_prediction"``).
    alpha_cumprod : float
        ``abar_t`` in (0, 1).

    Returns
    -------
    (x0, eps) : two Tensors, shape (B, *event)
    """
    _check_prediction_type(prediction_type)
    if not 0.0 < alpha_cumprod < 1.0:
        raise ValueError(f"alpha_cumprod must be in (0, 1), got {alpha_cumprod!r}")
    if x.shape != prediction.shape:
        shapes = f"{tuple(x.shape)} and {tuple(prediction.shape)}"
        raise ValueError(f"x and prediction must have the same shape, got {shapes}")
    root_alpha, root_one_minus = math.sqrt(alpha_cumprod), math.sqrt(1.0 - alpha_cumprod)
    if prediction_type == "epsilon":
        return (x - root_one_minus * prediction) / root_alpha, prediction
    if prediction_type == "sample":
        return prediction, (x - root_alpha * prediction) / root_one_minus
    return root_alpha * x - root_one_minus * prediction, root_alpha * prediction + root_one_minus * x


def prediction_from_x0_and_eps(
    x0: torch.Tensor, eps: torch.Tensor, alpha_cumprod: float | torch.Tensor, prediction_type: PredictionType
) -> torch.Tensor:
    """The network output of each parameterization from consistent ``(x0, eps)``, shape (B, *event).

    ``alpha_cumprod`` is a float or a tensor broadcastable against ``x0`` (e.g. shape (B, 1)).
    """
    _check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    alpha = torch.as_tensor(alpha_cumprod, dtype=x0.dtype)
    return torch.sqrt(alpha) * eps - torch.sqrt(1.0 - alpha) * x0


# ---------------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------------


class GaussianTransition(NamedTuple):
    """One sampling step ``N(mean, sigma^2 I)``.

    Attributes
    ----------
    mean : Tensor, shape (B, *event)
    sigma : Tensor, shape (), same dtype as ``mean``; exactly 0 for a deterministic step.
    """

    mean: torch.Tensor
    sigma: torch.Tensor


class Kernel:
    """Shared machinery of the samplers: a schedule, its sampling timesteps and the parameterization.

    Parameters
    ----------
    schedule : NoiseSchedule
        The training schedule.
    num_steps : int, optional
        ``N``; defaults to ``T`` (no respacing).
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What the network predicts (on the VP state, see the module notes).
    clip_sample : bool
        Clip the predicted ``x0`` to ``[-1, 1]`` (makes the mean non-linear in the prediction).
    spacing : {"trailing", "leading"}
        Passed to :func:`respace`.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int | None = None,
        prediction_type: PredictionType = "epsilon",
        clip_sample: bool = False,
        spacing: Spacing = "trailing",
    ) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        _check_prediction_type(prediction_type)
        self.schedule = schedule
        self.prediction_type: PredictionType = prediction_type
        self.clip_sample = bool(clip_sample)
        steps = schedule.num_train_timesteps if num_steps is None else num_steps
        self.timesteps: torch.Tensor = respace(schedule, steps, spacing)
        alphas = schedule.alphas_cumprod[self.timesteps]
        #: abar at each sampled timestep, shape (N,), float64.
        self.alphas_cumprod: torch.Tensor = alphas
        #: abar of the state each step lands on, shape (N,), float64 (1 after the last step).
        self.previous_alphas_cumprod: torch.Tensor = torch.cat([alphas[1:], torch.ones(1, dtype=torch.float64)])
        self._alpha_values: list[float] = self.alphas_cumprod.tolist()
        self._previous_values: list[float] = self.previous_alphas_cumprod.tolist()

    @property
    def num_steps(self) -> int:
        """``N``, the number of sampling steps."""
        return int(self.timesteps.numel())

    @property
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian the chain starts from (1 on the VP state)."""
        return 1.0

    def _check_step(self, step_index: int) -> int:
        if not isinstance(step_index, (int, np.integer)) or isinstance(step_index, bool):
            raise ValueError(f"step_index must be an integer, got {step_index!r}")
        if not 0 <= step_index < self.num_steps:
            raise ValueError(f"step_index must be in [0, {self.num_steps}), got {step_index}")
        return int(step_index)

    def alpha_cumprod(self, step_index: int) -> float:
        """``abar`` of the state at step ``step_index`` (before the step)."""
        return self._alpha_values[self._check_step(step_index)]

    def previous_alpha_cumprod(self, step_index: int) -> float:
        """``abar`` of the state after step ``step_index`` (1 after the last step)."""
        return self._previous_values[self._check_step(step_index)]

    def model_input(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        """What the network is fed at this step, shape (B, *event): the VP state itself."""
        self._check_step(step_index)
        return x

    def prediction_to_x0_and_eps(
        self, x: torch.Tensor, prediction: torch.Tensor, step_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, eps)`` from the prediction at ``model_input(x)``, each (B, *event); ``x0`` clipped if asked.

        When ``clip_sample`` is set, ``eps`` is recomputed from the clipped ``x0`` (as diffusers' DDIM does).
        """
        alpha = self.alpha_cumprod(step_index)
        x_vp = self.model_input(x, step_index)
        x0, eps = x0_and_eps_from_prediction(x_vp, prediction, alpha, self.prediction_type)
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x_vp - math.sqrt(alpha) * x0) / math.sqrt(1.0 - alpha)
        return x0, eps

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """The Gaussian transition of step ``step_index`` from state ``x`` (B, *event) and the network output."""
        raise NotImplementedError

    @staticmethod
    def _sigma(value: float, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(value, dtype=like.dtype, device=like.device)


class DDPMKernel(Kernel):
    """DDPM ancestral step: the posterior ``q(x_prev | x_t, x0)`` at the predicted ``x0``.

    ``mean = sqrt(abar_p) beta / (1 - abar_t) x0 + sqrt(1 - beta) (1 - abar_p) / (1 - abar_t) x_t`` with the
    respaced ``beta = 1 - abar_t / abar_p``; ``sigma^2 = beta_tilde = (1 - abar_p) / (1 - abar_t) beta``
    (``"fixed_small"``) or ``beta`` (``"fixed_large"``, except the last step: see the module notes).

    Parameters
    ----------
    variance_type : {"fixed_small", "fixed_large"}
    Other parameters : see :class:`Kernel`.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int | None = None,
        prediction_type: PredictionType = "epsilon",
        variance_type: VarianceType = "fixed_small",
        clip_sample: bool = False,
        spacing: Spacing = "trailing",
    ) -> None:
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
        super().__init__(schedule, num_steps, prediction_type, clip_sample, spacing)
        self.variance_type: VarianceType = variance_type

    def coefficients(self, step_index: int) -> tuple[float, float, float]:
        """``(coef_x0, coef_xt, variance)`` of step ``step_index``, as float64 Python floats."""
        alpha, previous = self.alpha_cumprod(step_index), self.previous_alpha_cumprod(step_index)
        beta = 1.0 - alpha / previous
        coef_x0 = math.sqrt(previous) * beta / (1.0 - alpha)
        coef_xt = math.sqrt(1.0 - beta) * (1.0 - previous) / (1.0 - alpha)
        posterior_variance = (1.0 - previous) / (1.0 - alpha) * beta
        last = step_index == self.num_steps - 1
        variance = posterior_variance if self.variance_type == "fixed_small" or last else beta
        return coef_x0, coef_xt, variance

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """Posterior mean and standard deviation; sigma is exactly 0 on the last step."""
        x0, _ = self.prediction_to_x0_and_eps(x, prediction, step_index)
        coef_x0, coef_xt, variance = self.coefficients(step_index)
        return GaussianTransition(coef_x0 * x0 + coef_xt * x, self._sigma(math.sqrt(variance), x))


class DDIMKernel(Kernel):
    """DDIM step with stochasticity ``eta``.

    ``sigma = eta sqrt((1 - abar_p) / (1 - abar_t)) sqrt(1 - abar_t / abar_p)`` and
    ``mean = sqrt(abar_p) x0 + sqrt(1 - abar_p - sigma^2) eps``. ``eta = 1`` is the DDPM ``fixed_small`` posterior;
    ``eta = 0`` is deterministic (such steps cannot be speculated; the project uses ``eta > 0``).

    Parameters
    ----------
    eta : float
        In ``[0, 1]``.
    Other parameters : see :class:`Kernel`.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int | None = None,
        prediction_type: PredictionType = "epsilon",
        eta: float = 1.0,
        clip_sample: bool = False,
        spacing: Spacing = "trailing",
    ) -> None:
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        super().__init__(schedule, num_steps, prediction_type, clip_sample, spacing)
        self.eta = float(eta)

    def sigma_value(self, step_index: int) -> float:
        """``sigma`` of step ``step_index`` as a float64 Python float."""
        alpha, previous = self.alpha_cumprod(step_index), self.previous_alpha_cumprod(step_index)
        return self.eta * math.sqrt((1.0 - previous) / (1.0 - alpha)) * math.sqrt(1.0 - alpha / previous)

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """DDIM mean and standard deviation."""
        x0, eps = self.prediction_to_x0_and_eps(x, prediction, step_index)
        previous = self.previous_alpha_cumprod(step_index)
        sigma = self.sigma_value(step_index)
        direction = math.sqrt(max(1.0 - previous - sigma**2, 0.0))
        return GaussianTransition(math.sqrt(previous) * x0 + direction * eps, self._sigma(sigma, x))


class EulerMaruyamaVPKernel(Kernel):
    """Euler-Maruyama step of the reverse VP-SDE, with the score from the eps prediction.

    ``mean = x + beta dtau (x / 2 - eps / sqrt(1 - abar_t))`` and ``sigma = sqrt(beta dtau)`` with
    ``beta dtau = beta_t (t - p)`` (training beta at the current timestep times the number of training steps
    jumped; see the module notes). The last step lands on "time -1" and is not deterministic.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int | None = None,
        prediction_type: PredictionType = "epsilon",
        clip_sample: bool = False,
        spacing: Spacing = "trailing",
    ) -> None:
        super().__init__(schedule, num_steps, prediction_type, clip_sample, spacing)
        following = torch.cat([self.timesteps[1:], torch.full((1,), -1, dtype=torch.int64)])
        #: ``beta(tau) dtau`` of each step, shape (N,), float64.
        self.step_sizes: torch.Tensor = schedule.betas[self.timesteps] * (self.timesteps - following).to(torch.float64)
        self._step_size_values: list[float] = self.step_sizes.tolist()

    def step_size(self, step_index: int) -> float:
        """``beta(tau) dtau`` of step ``step_index``."""
        return self._step_size_values[self._check_step(step_index)]

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """Euler-Maruyama mean and standard deviation."""
        _, eps = self.prediction_to_x0_and_eps(x, prediction, step_index)
        alpha = self.alpha_cumprod(step_index)
        size = self.step_size(step_index)
        score = -eps / math.sqrt(1.0 - alpha)
        return GaussianTransition(x + size * (0.5 * x + score), self._sigma(math.sqrt(size), x))


class EulerAncestralKernel(Kernel):
    """Euler ancestral step in sigma space (k-diffusion ``sample_euler_ancestral``).

    The state is ``x = x0 + sigma eps``, ``sigma_n = sqrt((1 - abar_n) / abar_n)`` and ``sigma_N = 0``. With
    ``sigma_up = min(sigma_next, eta sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))`` and
    ``sigma_down = sqrt(sigma_next^2 - sigma_up^2)``: ``mean = x + (sigma_down - sigma) (x - x0) / sigma`` and
    the transition's sigma is ``sigma_up`` (exactly 0 on the last step). The network is fed
    ``x / sqrt(sigma^2 + 1)``, the VP state.

    Parameters
    ----------
    eta : float
        Ancestral noise scale, ``> 0`` (k-diffusion's default 1).
    Other parameters : see :class:`Kernel`.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int | None = None,
        prediction_type: PredictionType = "epsilon",
        eta: float = 1.0,
        clip_sample: bool = False,
        spacing: Spacing = "trailing",
    ) -> None:
        if not eta > 0.0:
            raise ValueError(f"eta must be positive, got {eta}")
        super().__init__(schedule, num_steps, prediction_type, clip_sample, spacing)
        self.eta = float(eta)
        #: sigma at each step and after the last one, shape (N + 1,), float64.
        self.sigmas: torch.Tensor = torch.cat(
            [torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod), torch.zeros(1, dtype=torch.float64)]
        )

    @property
    def prior_std(self) -> float:
        """``sqrt(sigma_max^2 + 1)``: the standard deviation of ``x = x0 + sigma_max eps`` for unit-variance data."""
        return math.sqrt(float(self.sigmas[0]) ** 2 + 1.0)

    def ancestral_step(self, step_index: int) -> tuple[float, float]:
        """``(sigma_down, sigma_up)`` of step ``step_index`` (k-diffusion's ``get_ancestral_step``)."""
        index = self._check_step(step_index)
        sigma_from, sigma_to = float(self.sigmas[index]), float(self.sigmas[index + 1])
        sigma_up = min(sigma_to, self.eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
        sigma_down = math.sqrt(max(sigma_to**2 - sigma_up**2, 0.0))
        return sigma_down, sigma_up

    def model_input(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        """``x / sqrt(sigma^2 + 1)``, shape (B, *event): the VP state the network was trained on."""
        index = self._check_step(step_index)
        return x / math.sqrt(float(self.sigmas[index]) ** 2 + 1.0)

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """Euler step to ``sigma_down`` plus ancestral noise ``sigma_up``."""
        x0, _ = self.prediction_to_x0_and_eps(x, prediction, step_index)
        sigma_from = float(self.sigmas[step_index])
        sigma_down, sigma_up = self.ancestral_step(step_index)
        derivative = (x - x0) / sigma_from
        return GaussianTransition(x + (sigma_down - sigma_from) * derivative, self._sigma(sigma_up, x))
