"""Speculative sampling of diffusers pipelines: kernels read off diffusers schedulers, Stable Diffusion and DiT.

specdiff samples any chain whose step ``n`` is a Gaussian ``x_{n+1} ~ N(mean_n(x_n, model(x_n)), sigma_n^2 I)``
given the current state alone, with ``sigma_n`` not depending on the state (docs/design.md §3.8). A diffusers
scheduler's ``step`` is such a transition for three families, whose numbers :func:`kernel_from_scheduler` reads off
a copy of the scheduler after ``set_timesteps(N)`` (its ``timesteps``, ``alphas_cumprod``, ``sigmas``,
``final_alpha_cumprod``, ``init_noise_sigma``), so that the kernel's mean and sigma are those of ``scheduler.step``
(``abar`` below is ``alphas_cumprod``, ``t`` the step's timestep, ``p`` the one ``step`` treats as the next):

- ``DDPMScheduler``: ``p`` the next timestep of ``scheduler.timesteps`` (``abar_p = 1`` after the last),
  ``beta = 1 - abar_t / abar_p``, ``mean = sqrt(abar_p) beta / (1 - abar_t) x0 + sqrt(abar_t / abar_p)
  (1 - abar_p) / (1 - abar_t) x_t``, ``sigma^2 = (1 - abar_p) / (1 - abar_t) beta`` (``fixed_small``, and
  ``fixed_small_log``, whose noise has the same scale) or ``beta`` (``fixed_large``), and ``sigma = 0`` at
  ``t = 0`` (diffusers adds no noise there). Two departures, both from diffusers' own arithmetic: a last step with
  ``t > 0`` (``"trailing"`` spacing, or ``steps_offset``) has ``fixed_small`` variance 0, which diffusers clamps to
  ``1e-20`` before its logarithm and so adds noise of standard deviation ``1e-10``: the kernel takes that step as
  deterministic; and with ``fixed_large`` that step keeps its noise ``sqrt(1 - abar_t)``, as diffusers does.
- ``DDIMScheduler`` with ``eta > 0``: ``p = t - T // N`` (as ``step`` computes it, whatever the spacing),
  ``abar_p = final_alpha_cumprod`` when ``p < 0``, ``sigma = eta sqrt((1 - abar_p) / (1 - abar_t))
  sqrt(1 - abar_t / abar_p)`` and ``mean = sqrt(abar_p) x0 + sqrt(1 - abar_p - sigma^2) eps``, with ``eps`` the
  model's (recomputed from the clipped ``x0`` only with ``use_clipped_model_output``).
- ``EulerAncestralDiscreteScheduler`` (sigma space, ``x = x0 + s eps``): the network is fed
  ``x / sqrt(s_n^2 + 1)`` (``scale_model_input``), ``sigma_up = sqrt(s_{n+1}^2 (s_n^2 - s_{n+1}^2) / s_n^2)``,
  ``sigma_down = sqrt(s_{n+1}^2 - sigma_up^2)``, ``mean = x + (sigma_down - s_n) (x - x0) / s_n`` and the
  transition's sigma is ``sigma_up`` (0 on the last step).

``x0`` comes from the prediction as in each scheduler (``epsilon``, ``sample``, ``v_prediction``) and is clipped
(``clip_sample``) or dynamically thresholded (``thresholding``) as the scheduler does; either makes the mean
non-linear in the state, so the kernel reports ``clip_sample = True`` and ``specdiff.chain.ModelChain`` evaluates it
per step. Every other scheduler is refused with the reason: multistep solvers use earlier model outputs, ODE solvers
are deterministic (a point mass can never accept a different draft), and the SDE solvers that call the model twice
per step or draw correlated noise are not one Gaussian given the current state. DDIM with ``eta = 0`` is refused for
the same reason as the ODE solvers.

The pipelines (:func:`speculative_stable_diffusion`, :func:`speculative_dit_pipeline` and their plain references)
reuse the pipeline's own prompt encoding, initial latents (``prepare_latents`` with the caller's generator, scaled to
the kernel's ``prior_std``), VAE decoding and image postprocessing, and own the denoising loop through
:func:`specdiff.sample` / :func:`specdiff.sample_plain`. Classifier-free guidance runs inside the model function
(the unconditional and conditional halves in one batched network call, guidance applied to the prediction in the
states' dtype). The network may run in float16 or bfloat16; latents and means stay float32, and verification
computes in float64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as functional
from diffusers.pipelines.dit.pipeline_dit import DiTPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from specdiff.drafters import Drafter
from specdiff.kernels import GaussianTransition, Kernel, PredictionType
from specdiff.policies import WindowPolicy
from specdiff.sampler import DEFAULT_RULE, ChainResult, Generators, SamplerRule, SpeculativeResult, sample, sample_plain

__all__ = [
    "SUPPORTED_SCHEDULERS",
    "DDIMSchedulerKernel",
    "DDPMSchedulerKernel",
    "DiffusionPipelineSamples",
    "EulerAncestralSchedulerKernel",
    "GuidedDiT",
    "GuidedUNet",
    "PredictedSampleLimit",
    "SchedulerKernel",
    "dit_forward_first_blocks",
    "kernel_from_scheduler",
    "plain_dit_pipeline",
    "plain_stable_diffusion",
    "speculative_dit_pipeline",
    "speculative_stable_diffusion",
]

#: The diffusers schedulers :func:`kernel_from_scheduler` accepts (exact classes, not subclasses).
SUPPORTED_SCHEDULERS: tuple[str, ...] = ("DDPMScheduler", "DDIMScheduler", "EulerAncestralDiscreteScheduler")
#: DDPM variance types whose step is a Gaussian with a state-independent sigma.
SUPPORTED_VARIANCE_TYPES: tuple[str, ...] = ("fixed_small", "fixed_small_log", "fixed_large")
OUTPUT_TYPES: tuple[str, ...] = ("pil", "np", "pt", "latent")
OutputType = Literal["pil", "np", "pt", "latent"]

_MULTISTEP = "a multistep solver: each step combines the model outputs of earlier steps, not the current state alone"
_ODE = "a deterministic (ODE) solver: every step is a point mass, which can never accept a different draft"
_REFUSALS = {
    "PNDMScheduler": _MULTISTEP,
    "LMSDiscreteScheduler": _MULTISTEP,
    "DPMSolverMultistepScheduler": _MULTISTEP,
    "DEISMultistepScheduler": _MULTISTEP,
    "UniPCMultistepScheduler": _MULTISTEP,
    "SASolverScheduler": _MULTISTEP,
    "DPMSolverSinglestepScheduler": _ODE,
    "HeunDiscreteScheduler": _ODE + " (and it calls the model twice per step)",
    "KDPM2DiscreteScheduler": _ODE + " (and it calls the model twice per step)",
    "EulerDiscreteScheduler": (
        _ODE + "; with s_churn > 0 its noise is added before the model call, so a step is not a Gaussian around a "
        "function of the current state"
    ),
    "FlowMatchEulerDiscreteScheduler": _ODE,
    "EDMEulerScheduler": _ODE,
    "LCMScheduler": "a consistency sampler: its step re-noises a denoised sample with a state-dependent schedule",
    "TCDScheduler": "a consistency sampler: its step re-noises a denoised sample with a state-dependent schedule",
    "KDPM2AncestralDiscreteScheduler": "it calls the model twice per step (at the current and a midpoint state)",
    "DPMSolverSDEScheduler": "its noise comes from a Brownian tree shared across steps and it calls the model twice",
}
_REQUIREMENT = (
    "specdiff needs every step to be a Gaussian N(mean(x_t, model output at x_t), sigma_t^2 I) given the current "
    "state alone, with sigma_t not depending on the state; supported: DDPMScheduler (variance_type fixed_small, "
    "fixed_small_log or fixed_large), DDIMScheduler (eta > 0) and EulerAncestralDiscreteScheduler"
)


# ---------------------------------------------------------------------------------------------------------------
# The predicted clean sample: clipping and dynamic thresholding
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictedSampleLimit:
    """How a scheduler bounds its predicted clean sample ``x0`` before the mean (diffusers' ``clip_sample`` and
    ``thresholding``).

    Attributes
    ----------
    mode : {"none", "clip", "threshold"}
        ``"clip"``: ``x0`` clamped to ``[-clip_range, clip_range]``. ``"threshold"`` (Imagen's dynamic
        thresholding): per sample, ``s`` is the ``threshold_ratio`` quantile of ``|x0|`` clamped to
        ``[1, threshold_max]``, and ``x0`` becomes ``clamp(x0, -s, s) / s``.
    clip_range : float
    threshold_ratio : float
    threshold_max : float
    """

    mode: Literal["none", "clip", "threshold"] = "none"
    clip_range: float = 1.0
    threshold_ratio: float = 0.995
    threshold_max: float = 1.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PredictedSampleLimit:
        """The limit of a scheduler config (thresholding wins over clipping, as in diffusers)."""
        if config.get("thresholding", False):
            return cls(
                "threshold",
                threshold_ratio=float(config["dynamic_thresholding_ratio"]),
                threshold_max=float(config["sample_max_value"]),
            )
        if config.get("clip_sample", False):
            return cls("clip", clip_range=float(config.get("clip_sample_range", 1.0)))
        return cls()

    @property
    def linear(self) -> bool:
        """Whether ``x0`` is left as it is (the mean is then linear in the state and the prediction)."""
        return self.mode == "none"

    def apply(self, x0: torch.Tensor) -> torch.Tensor:
        """The bounded ``x0``, shape (B, *event) like ``x0``; thresholding works on each row on its own."""
        if self.mode == "none":
            return x0
        if self.mode == "clip":
            return x0.clamp(-self.clip_range, self.clip_range)
        flat = x0.reshape(x0.shape[0], -1)
        scale = torch.quantile(flat.abs(), self.threshold_ratio, dim=1).clamp(min=1.0, max=self.threshold_max)
        scale = scale[:, None]
        return (torch.clamp(flat, -scale, scale) / scale).reshape(x0.shape)


# ---------------------------------------------------------------------------------------------------------------
# Kernels read off schedulers
# ---------------------------------------------------------------------------------------------------------------


class SchedulerKernel(Kernel):
    """A :class:`specdiff.kernels.Kernel` whose per-step numbers were read off a diffusers scheduler.

    :class:`~specdiff.kernels.Kernel`'s constructor respaces a ``NoiseSchedule`` with specdiff's own spacings; these
    kernels take the scheduler's timesteps (any spacing, ``steps_offset`` included), so they set the same public
    attributes themselves and override every method that reads per-step tables.

    Parameters
    ----------
    scheduler_name : str
        The class name of the scheduler the numbers come from.
    timesteps : Tensor, shape (N,)
        What the network is fed at each step (the scheduler's ``timesteps``, integer or float).
    alphas_cumprod : Tensor, shape (N,), float64
        ``abar`` of the state at each step (before it).
    previous_alphas_cumprod : Tensor, shape (N,), float64
        ``abar`` of the state each step lands on.
    input_scales : Tensor, shape (N,), float64
        ``model_input(x, n) = input_scales[n] x``.
    prediction_type : {"epsilon", "sample", "v_prediction"}
    limit : PredictedSampleLimit
        Clipping or thresholding of ``x0``; any makes :attr:`clip_sample` True (the non-linear path of
        ``ModelChain``).
    prior_std : float
        Standard deviation of the initial latents (the scheduler's ``init_noise_sigma``).
    """

    def __init__(
        self,
        *,
        scheduler_name: str,
        timesteps: torch.Tensor,
        alphas_cumprod: torch.Tensor,
        previous_alphas_cumprod: torch.Tensor,
        input_scales: torch.Tensor,
        prediction_type: PredictionType,
        limit: PredictedSampleLimit,
        prior_std: float,
    ) -> None:
        if timesteps.ndim != 1 or timesteps.numel() < 1:
            raise ValueError(f"timesteps must be a non-empty 1-D tensor, got shape {tuple(timesteps.shape)}")
        self.scheduler_name = scheduler_name
        self.timesteps = timesteps.detach().cpu().clone()
        self.prediction_type = prediction_type
        self.limit = limit
        self.clip_sample = not limit.linear
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.previous_alphas_cumprod = previous_alphas_cumprod.to(torch.float64)
        self.input_scales = input_scales.to(torch.float64)
        self._prior_std = float(prior_std)
        self._alphas: list[float] = self.alphas_cumprod.tolist()
        self._previous: list[float] = self.previous_alphas_cumprod.tolist()
        self._scales: list[float] = self.input_scales.tolist()

    @property
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian the chain starts from (``init_noise_sigma``)."""
        return self._prior_std

    def alpha_cumprod(self, step_index: int) -> float:
        """``abar`` of the state at step ``step_index`` (before the step)."""
        return self._alphas[self._check_step(step_index)]

    def previous_alpha_cumprod(self, step_index: int) -> float:
        """``abar`` of the state after step ``step_index``."""
        return self._previous[self._check_step(step_index)]

    def model_input(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        """What the network is fed at this step, shape (B, *event): ``input_scales[n] x``."""
        scale = self._scales[self._check_step(step_index)]
        return x if scale == 1.0 else x * scale

    def x0_from_prediction(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> torch.Tensor:
        """The scheduler's predicted clean sample before :attr:`limit`, shape (B, *event)."""
        raise NotImplementedError

    def prediction_to_x0_and_eps(
        self, x: torch.Tensor, prediction: torch.Tensor, step_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, eps)``, each (B, *event): ``x0`` bounded by :attr:`limit`, ``eps`` consistent with it."""
        x0 = self.limit.apply(self.x0_from_prediction(x, prediction, step_index))
        alpha = self.alpha_cumprod(step_index)
        return x0, (x - math.sqrt(alpha) * x0) / math.sqrt(1.0 - alpha)


def _training_timesteps(scheduler: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The scheduler's timesteps (N,) int64 and its ``alphas_cumprod`` (T,) float64, checking that every timestep
    indexes the training schedule (``steps_offset`` with ``N = T`` runs past it, in diffusers too)."""
    timesteps = scheduler.timesteps.detach().cpu().to(torch.int64)
    abar = scheduler.alphas_cumprod.detach().cpu().to(torch.float64)
    if bool(((timesteps < 0) | (timesteps >= abar.numel())).any()):
        raise ValueError(
            f"the scheduler's timesteps {timesteps.tolist()[:3]}... leave [0, {abar.numel()}): lower "
            "num_inference_steps or steps_offset"
        )
    return timesteps, abar


def _vp_x0(x: torch.Tensor, prediction: torch.Tensor, alpha: float, prediction_type: str) -> torch.Tensor:
    """``x0`` on the VP state ``x = sqrt(abar) x0 + sqrt(1 - abar) eps``, as diffusers' DDPM and DDIM compute it."""
    if prediction_type == "epsilon":
        return (x - math.sqrt(1.0 - alpha) * prediction) / math.sqrt(alpha)
    if prediction_type == "sample":
        return prediction
    return math.sqrt(alpha) * x - math.sqrt(1.0 - alpha) * prediction


class DDPMSchedulerKernel(SchedulerKernel):
    """The transition of ``DDPMScheduler.step`` (see the module notes).

    Parameters
    ----------
    scheduler : DDPMScheduler
        After ``set_timesteps``; the kernel reads it once and keeps no reference to it.
    """

    def __init__(self, scheduler: DDPMScheduler) -> None:
        config = dict(scheduler.config)
        variance_type = str(config["variance_type"])
        if variance_type not in SUPPORTED_VARIANCE_TYPES:
            raise ValueError(f"DDPMScheduler with variance_type {variance_type!r} is not supported: {_REQUIREMENT}")
        timesteps, abar = _training_timesteps(scheduler)
        alphas, previous = [], []
        for timestep in timesteps.tolist():
            following = int(scheduler.previous_timestep(timestep))
            alphas.append(float(abar[timestep]))
            previous.append(float(abar[following]) if following >= 0 else 1.0)
        super().__init__(
            scheduler_name=type(scheduler).__name__,
            timesteps=timesteps,
            alphas_cumprod=torch.tensor(alphas, dtype=torch.float64),
            previous_alphas_cumprod=torch.tensor(previous, dtype=torch.float64),
            input_scales=torch.ones(len(alphas), dtype=torch.float64),
            prediction_type=config["prediction_type"],
            limit=PredictedSampleLimit.from_config(config),
            prior_std=float(scheduler.init_noise_sigma),
        )
        self.variance_type = variance_type
        self._coefficients = [
            self._step_coefficients(alpha, before, int(timestep))
            for alpha, before, timestep in zip(alphas, previous, timesteps.tolist(), strict=True)
        ]

    def _step_coefficients(self, alpha: float, previous: float, timestep: int) -> tuple[float, float, float]:
        beta = 1.0 - alpha / previous
        coefficient_x0 = math.sqrt(previous) * beta / (1.0 - alpha)
        coefficient_state = math.sqrt(alpha / previous) * (1.0 - previous) / (1.0 - alpha)
        if timestep == 0:
            return coefficient_x0, coefficient_state, 0.0
        small = (1.0 - previous) / (1.0 - alpha) * beta
        variance = beta if self.variance_type == "fixed_large" else small
        return coefficient_x0, coefficient_state, math.sqrt(variance)

    def coefficients(self, step_index: int) -> tuple[float, float, float]:
        """``(coefficient of x0, coefficient of x_t, sigma)`` of step ``step_index``, float64 Python floats."""
        return self._coefficients[self._check_step(step_index)]

    def x0_from_prediction(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> torch.Tensor:
        """``x0`` from the prediction on the VP state (before clipping)."""
        return _vp_x0(x, prediction, self.alpha_cumprod(step_index), self.prediction_type)

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """The posterior mean at the (bounded) predicted ``x0`` and the scheduler's sigma."""
        coefficient_x0, coefficient_state, sigma = self.coefficients(step_index)
        x0 = self.limit.apply(self.x0_from_prediction(x, prediction, step_index))
        return GaussianTransition(coefficient_x0 * x0 + coefficient_state * x, self._sigma(sigma, x))


class DDIMSchedulerKernel(SchedulerKernel):
    """The transition of ``DDIMScheduler.step(..., eta=eta)`` with ``eta > 0`` (see the module notes).

    Parameters
    ----------
    scheduler : DDIMScheduler
        After ``set_timesteps``; the kernel reads it once and keeps no reference to it.
    eta : float
        The step's noise weight, ``> 0`` (the pipelines' ``eta``).
    use_clipped_model_output : bool
        As ``DDIMScheduler.step``: recompute ``eps`` from the clipped ``x0``.
    """

    def __init__(self, scheduler: DDIMScheduler, eta: float = 1.0, use_clipped_model_output: bool = False) -> None:
        if not (math.isfinite(eta) and eta > 0.0):
            raise ValueError(
                f"DDIMScheduler with eta = {eta!r} is not supported: eta = 0 is deterministic (a point mass can never "
                f"accept a different draft) and eta must be finite; pass eta > 0. {_REQUIREMENT}"
            )
        config = dict(scheduler.config)
        timesteps, abar = _training_timesteps(scheduler)
        if scheduler.num_inference_steps is None:
            raise ValueError("call the scheduler's set_timesteps before building its kernel")
        jump = int(config["num_train_timesteps"]) // int(scheduler.num_inference_steps)
        final = float(scheduler.final_alpha_cumprod)
        alphas = [float(abar[timestep]) for timestep in timesteps.tolist()]
        previous = [float(abar[t - jump]) if t - jump >= 0 else final for t in timesteps.tolist()]
        super().__init__(
            scheduler_name=type(scheduler).__name__,
            timesteps=timesteps,
            alphas_cumprod=torch.tensor(alphas, dtype=torch.float64),
            previous_alphas_cumprod=torch.tensor(previous, dtype=torch.float64),
            input_scales=torch.ones(len(alphas), dtype=torch.float64),
            prediction_type=config["prediction_type"],
            limit=PredictedSampleLimit.from_config(config),
            prior_std=float(scheduler.init_noise_sigma),
        )
        self.eta: float = float(eta)
        self.use_clipped_model_output: bool = bool(use_clipped_model_output)
        self._sigmas: list[float] = [
            self._sigma_value(alpha, before) for alpha, before in zip(alphas, previous, strict=True)
        ]
        self._directions: list[float] = [
            self._direction(before, sigma) for before, sigma in zip(previous, self._sigmas, strict=True)
        ]

    def _sigma_value(self, alpha: float, previous: float) -> float:
        return self.eta * math.sqrt((1.0 - previous) / (1.0 - alpha) * (1.0 - alpha / previous))

    def _direction(self, previous: float, sigma: float) -> float:
        radicand = 1.0 - previous - sigma**2
        if radicand < 0:
            raise ValueError(f"eta = {self.eta} is too large: 1 - abar_prev - sigma^2 < 0 (diffusers would give NaN)")
        return math.sqrt(radicand)

    def sigma_value(self, step_index: int) -> float:
        """``sigma`` of step ``step_index`` (``eta`` times the DDPM posterior standard deviation)."""
        return self._sigmas[self._check_step(step_index)]

    def x0_from_prediction(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> torch.Tensor:
        """``x0`` from the prediction on the VP state (before clipping)."""
        return _vp_x0(x, prediction, self.alpha_cumprod(step_index), self.prediction_type)

    def _eps(self, x: torch.Tensor, prediction: torch.Tensor, x0: torch.Tensor, step_index: int) -> torch.Tensor:
        """The scheduler's ``eps``: the model's own, or from the unclipped (or, if asked, the clipped) ``x0``."""
        alpha = self.alpha_cumprod(step_index)
        if self.use_clipped_model_output or self.prediction_type == "sample":
            return (x - math.sqrt(alpha) * x0) / math.sqrt(1.0 - alpha)
        if self.prediction_type == "epsilon":
            return prediction
        return math.sqrt(alpha) * prediction + math.sqrt(1.0 - alpha) * x

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """DDIM mean and sigma."""
        raw = self.x0_from_prediction(x, prediction, step_index)
        x0 = self.limit.apply(raw)
        eps = self._eps(x, prediction, x0 if self.use_clipped_model_output else raw, step_index)
        previous = self.previous_alpha_cumprod(step_index)
        mean = math.sqrt(previous) * x0 + self._directions[step_index] * eps
        return GaussianTransition(mean, self._sigma(self.sigma_value(step_index), x))


class EulerAncestralSchedulerKernel(SchedulerKernel):
    """The transition of ``EulerAncestralDiscreteScheduler.step`` (sigma space; see the module notes).

    Parameters
    ----------
    scheduler : EulerAncestralDiscreteScheduler
        After ``set_timesteps``; the kernel reads it once and keeps no reference to it.
    """

    def __init__(self, scheduler: EulerAncestralDiscreteScheduler) -> None:
        config = dict(scheduler.config)
        if config["prediction_type"] not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"EulerAncestralDiscreteScheduler with prediction_type {config['prediction_type']!r} is not "
                "supported (diffusers implements epsilon and v_prediction only)"
            )
        timesteps = scheduler.timesteps.detach().cpu()
        if timesteps.numel() > 1 and bool((timesteps[1:] >= timesteps[:-1]).any()):
            raise ValueError("EulerAncestralDiscreteScheduler timesteps must be strictly decreasing")
        sigmas = scheduler.sigmas.detach().cpu().to(torch.float64)
        super().__init__(
            scheduler_name=type(scheduler).__name__,
            timesteps=timesteps,
            alphas_cumprod=1.0 / (1.0 + sigmas[:-1] ** 2),
            previous_alphas_cumprod=1.0 / (1.0 + sigmas[1:] ** 2),
            input_scales=1.0 / torch.sqrt(sigmas[:-1] ** 2 + 1.0),
            prediction_type=config["prediction_type"],
            limit=PredictedSampleLimit(),
            prior_std=float(scheduler.init_noise_sigma),
        )
        #: sigma at each step and after the last one, shape (N + 1,), float64.
        self.sigmas = sigmas
        self._sigma_values: list[float] = sigmas.tolist()

    def ancestral_step(self, step_index: int) -> tuple[float, float]:
        """``(sigma_down, sigma_up)`` of step ``step_index``."""
        index = self._check_step(step_index)
        sigma_from, sigma_to = self._sigma_values[index], self._sigma_values[index + 1]
        sigma_up = math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2)
        return math.sqrt(max(sigma_to**2 - sigma_up**2, 0.0)), sigma_up

    def x0_from_prediction(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> torch.Tensor:
        """``x0`` from the prediction at ``model_input(x)``, on the sigma-space state ``x``."""
        sigma = self._sigma_values[self._check_step(step_index)]
        if self.prediction_type == "epsilon":
            return x - sigma * prediction
        return prediction * (-sigma / math.sqrt(sigma**2 + 1.0)) + x / (sigma**2 + 1.0)

    def prediction_to_x0_and_eps(
        self, x: torch.Tensor, prediction: torch.Tensor, step_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, eps)``, each (B, *event), on the sigma-space state ``x = x0 + sigma eps``."""
        x0 = self.x0_from_prediction(x, prediction, step_index)
        return x0, (x - x0) / self._sigma_values[step_index]

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        """Euler step to ``sigma_down`` plus ancestral noise ``sigma_up``."""
        sigma = self._sigma_values[self._check_step(step_index)]
        sigma_down, sigma_up = self.ancestral_step(step_index)
        x0 = self.x0_from_prediction(x, prediction, step_index)
        return GaussianTransition(x + (sigma_down - sigma) * ((x - x0) / sigma), self._sigma(sigma_up, x))


def _refuse(scheduler: object) -> ValueError:
    name = type(scheduler).__name__
    reason = _REFUSALS.get(name, "its step is not known to be one Gaussian given the current state and one model call")
    if name in SUPPORTED_SCHEDULERS:
        reason = f"only {name} itself is supported, not a subclass (its step may differ)"
    return ValueError(f"{name} is not supported: {reason}. {_REQUIREMENT}.")


def kernel_from_scheduler(
    scheduler: object,
    num_inference_steps: int,
    *,
    eta: float | None = None,
    use_clipped_model_output: bool = False,
) -> SchedulerKernel:
    """The Gaussian transitions of a diffusers scheduler's steps, as a specdiff kernel.

    Parameters
    ----------
    scheduler : DDPMScheduler, DDIMScheduler or EulerAncestralDiscreteScheduler
        Left untouched: the kernel reads a copy of it after ``set_timesteps(num_inference_steps)``.
    num_inference_steps : int
        ``N``, in ``[1, num_train_timesteps]``.
    eta : float, optional
        DDIM only: the noise weight, ``> 0`` (default 1, DDPM's posterior variance). Refused for the others.
    use_clipped_model_output : bool
        DDIM only, as ``DDIMScheduler.step``.

    Returns
    -------
    SchedulerKernel
        ``timesteps`` (N,) as the scheduler's, ``prior_std`` its ``init_noise_sigma``, and for each step
        ``transition(x, prediction, n)`` with the mean and sigma of ``scheduler.step`` at timestep
        ``timesteps[n]``.

    Raises
    ------
    ValueError
        Any other scheduler (or a subclass), with the reason and the supported ones; an unsupported option
        (``variance_type`` learned or ``fixed_large_log``, DDIM ``eta <= 0``, Euler ancestral ``sample``
        prediction); a bad ``num_inference_steps``.
    """
    name = type(scheduler).__name__
    if type(scheduler) not in (DDPMScheduler, DDIMScheduler, EulerAncestralDiscreteScheduler):
        raise _refuse(scheduler)
    if eta is not None and name != "DDIMScheduler":
        raise ValueError(f"eta applies to DDIMScheduler only, not to {name}")
    copied: Any = copy.deepcopy(scheduler)
    train_steps = int(copied.config.num_train_timesteps)
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise ValueError(f"num_inference_steps must be an int, got {num_inference_steps!r}")
    if not 1 <= num_inference_steps <= train_steps:
        raise ValueError(f"num_inference_steps must be in [1, {train_steps}], got {num_inference_steps}")
    copied.set_timesteps(num_inference_steps)
    if isinstance(copied, DDPMScheduler):
        return DDPMSchedulerKernel(copied)
    if isinstance(copied, DDIMScheduler):
        return DDIMSchedulerKernel(copied, 1.0 if eta is None else eta, use_clipped_model_output)
    assert isinstance(copied, EulerAncestralDiscreteScheduler)
    return EulerAncestralSchedulerKernel(copied)


# ---------------------------------------------------------------------------------------------------------------
# Guided networks as specdiff models
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class GuidedUNet:
    """Stable Diffusion's denoiser with classifier-free guidance, as a specdiff model.

    ``model(x, t, encoder_hidden_states=..., negative_encoder_hidden_states=...)`` with x (M, C, h, w) the latents,
    t (M,) timesteps and the prompt embeddings (M, S, D) of each row. With negative embeddings the unconditional and
    conditional halves run in one network call of 2M rows and the prediction is
    ``uncond + guidance_scale (cond - uncond)``, computed in the dtype of ``x``; without, the plain prediction.

    Attributes
    ----------
    unet : UNet2DConditionModel
        Runs in its own dtype (float32, float16 or bfloat16): inputs are cast to it.
    guidance_scale : float
    """

    unet: Any
    guidance_scale: float

    def __call__(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        negative_encoder_hidden_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The (guided) prediction, shape (M, C, h, w), in the dtype of ``x``."""
        dtype = self.unet.dtype
        if negative_encoder_hidden_states is None:
            output = self.unet(x.to(dtype), t, encoder_hidden_states=encoder_hidden_states.to(dtype), return_dict=False)
            return output[0].to(x.dtype)
        states = torch.cat([x, x]).to(dtype)
        embeddings = torch.cat([negative_encoder_hidden_states, encoder_hidden_states]).to(dtype)
        output = self.unet(states, torch.cat([t, t]), encoder_hidden_states=embeddings, return_dict=False)[0]
        unconditional, conditional = output.to(x.dtype).chunk(2)
        return unconditional + self.guidance_scale * (conditional - unconditional)


def dit_forward_first_blocks(
    transformer: Any, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor, blocks: int
) -> torch.Tensor:
    """``DiTTransformer2DModel.forward`` through its first ``blocks`` transformer blocks only, then its final layers.

    Parameters
    ----------
    transformer : DiTTransformer2DModel
    x : Tensor, shape (M, C, H, W)
        In the transformer's dtype.
    timesteps, class_labels : Tensor, shape (M,)
    blocks : int
        ``K`` in ``[1, num_layers]``; ``K = num_layers`` is the full forward.

    Returns
    -------
    Tensor, shape (M, out_channels, H, W)
    """
    patch, channels = int(transformer.config.patch_size), int(transformer.out_channels)
    hidden = transformer.pos_embed(x)
    for block in transformer.transformer_blocks[:blocks]:
        hidden = block(hidden, timestep=timesteps, class_labels=class_labels)
    conditioning = transformer.transformer_blocks[0].norm1.emb(timesteps, class_labels, hidden_dtype=hidden.dtype)
    shift, scale = transformer.proj_out_1(functional.silu(conditioning)).chunk(2, dim=1)
    hidden = transformer.proj_out_2(transformer.norm_out(hidden) * (1 + scale[:, None]) + shift[:, None])
    side = int(hidden.shape[1] ** 0.5)
    hidden = hidden.reshape(-1, side, side, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", hidden).reshape(-1, channels, side * patch, side * patch)


@dataclass
class GuidedDiT:
    """A class-conditional DiT with classifier-free guidance, as a specdiff model with an early exit.

    ``model(x, t, class_labels=...)`` with x (M, C, H, W), t (M,) and labels (M,). The learned-sigma channels of the
    output (``out_channels = 2 C``) are dropped, as ``DiTPipeline`` does. With ``guidance_scale > 1`` the
    conditional and unconditional (null class ``num_embeds_ada_norm``) halves run in one call and the prediction is
    ``uncond + guidance_scale (cond - uncond)`` in the dtype of ``x``. ``forward_first_k`` and ``depth`` make
    ``specdiff.drafters.FreeDrafter(exit_blocks=K)`` draft with the first K blocks (cost K / depth).

    Attributes
    ----------
    transformer : DiTTransformer2DModel
        Runs in its own dtype; inputs are cast to it.
    guidance_scale : float
    """

    transformer: Any
    guidance_scale: float

    @property
    def depth(self) -> int:
        """The number of transformer blocks."""
        return len(self.transformer.transformer_blocks)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """The (guided) noise prediction, shape (M, C, H, W), in the dtype of ``x``."""
        return self._predict(x, t, class_labels, None)

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, k: int, class_labels: torch.Tensor) -> torch.Tensor:
        """The same prediction from the first ``k`` blocks and the final layers (the early-exit draft)."""
        if not 1 <= k <= self.depth:
            raise ValueError(f"k must be in [1, {self.depth}], got {k}")
        return self._predict(x, t, class_labels, k)

    def _predict(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, blocks: int | None) -> torch.Tensor:
        guided = self.guidance_scale > 1.0
        if guided:
            null = torch.full_like(labels, int(self.transformer.config.num_embeds_ada_norm))
            x, t, labels = torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])
        inputs = x.to(self.transformer.dtype)
        if blocks is None:
            output = self.transformer(inputs, timestep=t, class_labels=labels, return_dict=False)[0]
        else:
            output = dit_forward_first_blocks(self.transformer, inputs, t, labels, blocks)
        channels = x.shape[1]
        prediction = (output[:, :channels] if output.shape[1] == 2 * channels else output).to(x.dtype)
        if not guided:
            return prediction
        conditional, unconditional = prediction.chunk(2)
        return unconditional + self.guidance_scale * (conditional - unconditional)


# ---------------------------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DiffusionPipelineSamples:
    """What a pipeline run returns.

    Attributes
    ----------
    images : list of PIL.Image, ndarray (B, H, W, 3), Tensor (B, 3, H, W) or Tensor (B, C, h, w)
        The decoded images as ``output_type`` asks (``"pil"``, ``"np"``, ``"pt"``), or the final latents for
        ``output_type="latent"``.
    latents : Tensor, shape (B, C, h, w), float32
        The final latents (what the VAE decodes, before dividing by its scaling factor).
    statistics : SpeculativeResult or ChainResult
        The sampler's result (target calls, accepted lengths, gaps, ...); its ``samples`` are ``latents``.
    nsfw_content_detected : list of bool, optional
        The Stable Diffusion safety checker's flags (None without a checker or for latents).
    """

    images: Any
    latents: torch.Tensor
    statistics: SpeculativeResult | ChainResult
    nsfw_content_detected: list[bool] | None = None


@dataclass(frozen=True)
class _Setup:
    """Everything a sampler call needs: the guided model, the kernel, the initial latents (B, *event) float32, the
    per-sample conditioning and the generator(s) left for the sampler's keys."""

    model: GuidedUNet | GuidedDiT
    kernel: SchedulerKernel
    latents: torch.Tensor
    conditioning: dict[str, torch.Tensor]
    generator: Generators
    embedding_dtype: torch.dtype


def _check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def _generators(generator: Generators | None) -> torch.Generator | list[torch.Generator]:
    """The caller's generator(s) as diffusers takes them; None: a generator seeded from torch's global one (as a
    diffusers pipeline called without a generator draws from the global generator)."""
    if generator is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        return torch.Generator().manual_seed(seed)
    if isinstance(generator, torch.Generator):
        return generator
    return list(generator)


@dataclass(frozen=True)
class _SpeculationOptions:
    drafter: Drafter | None = None
    window: int | WindowPolicy | None = None
    rule: SamplerRule = DEFAULT_RULE


def _run(setup: _Setup, speculative: bool, options: _SpeculationOptions) -> SpeculativeResult | ChainResult:
    with torch.no_grad():
        if not speculative:
            return sample_plain(
                setup.model, setup.kernel, setup.latents, generator=setup.generator, conditioning=setup.conditioning
            )
        return sample(
            setup.model,
            setup.kernel,
            setup.latents,
            drafter=options.drafter,
            window=options.window,
            rule=options.rule,
            generator=setup.generator,
            conditioning=setup.conditioning,
        )


@dataclass(frozen=True)
class _PromptRequest:
    """A Stable Diffusion request: what to encode, the image size and the guidance."""

    prompt: str | list[str] | None
    prompt_embeds: torch.Tensor | None
    negative_prompt: str | list[str] | None
    negative_prompt_embeds: torch.Tensor | None
    num_images_per_prompt: int
    guidance_scale: float
    height: int | None
    width: int | None


def _latent_size(pipe: Any, request: _PromptRequest) -> tuple[int, int]:
    """The image height and width (the UNet's sample size times the VAE's scale factor by default)."""
    size = pipe.unet.config.sample_size
    latent_height, latent_width = (size, size) if isinstance(size, int) else (size[0], size[1])
    height = request.height or latent_height * pipe.vae_scale_factor
    width = request.width or latent_width * pipe.vae_scale_factor
    return int(height), int(width)


def _encode_prompts(pipe: Any, request: _PromptRequest, guided: bool) -> dict[str, torch.Tensor]:
    """The per-sample prompt embeddings (B, S, D) and, with guidance, the negative ones, via ``encode_prompt``."""
    embeddings, negative = pipe.encode_prompt(
        request.prompt,
        pipe._execution_device,
        request.num_images_per_prompt,
        guided,
        request.negative_prompt,
        prompt_embeds=request.prompt_embeds,
        negative_prompt_embeds=request.negative_prompt_embeds,
    )
    conditioning = {"encoder_hidden_states": embeddings}
    if guided:
        conditioning["negative_encoder_hidden_states"] = negative
    return conditioning


def _stable_diffusion_setup(
    pipe: Any, request: _PromptRequest, kernel: SchedulerKernel, generator: Generators | None
) -> _Setup:
    if pipe.unet.config.time_cond_proj_dim is not None:
        raise ValueError("UNets with a guidance embedding (time_cond_proj_dim, e.g. LCM) are not supported")
    height, width = _latent_size(pipe, request)
    pipe.check_inputs(
        request.prompt,
        height,
        width,
        None,
        request.negative_prompt,
        request.prompt_embeds,
        request.negative_prompt_embeds,
    )
    guided = request.guidance_scale > 1.0
    conditioning = _encode_prompts(pipe, request, guided)
    batch = int(conditioning["encoder_hidden_states"].shape[0])
    generators = _generators(generator)
    device = pipe._execution_device
    channels = int(pipe.unet.config.in_channels)
    latents = pipe.prepare_latents(batch, channels, height, width, torch.float32, device, generators)
    latents = latents * (kernel.prior_std / float(pipe.scheduler.init_noise_sigma))
    model = GuidedUNet(pipe.unet, float(request.guidance_scale))
    dtype = conditioning["encoder_hidden_states"].dtype
    return _Setup(model, kernel, latents.to(torch.float32), conditioning, generators, dtype)


def _decode_stable_diffusion(
    pipe: Any, latents: torch.Tensor, output_type: str, dtype: torch.dtype
) -> tuple[Any, list[bool] | None]:
    """The pipeline's own decoding, safety check and postprocessing of the final latents (B, C, h, w)."""
    if output_type == "latent":
        return latents, None
    vae = pipe.vae
    with torch.no_grad():
        image = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype), return_dict=False)[0]
        image, flagged = pipe.run_safety_checker(image, pipe._execution_device, dtype)
    denormalize = [True] * image.shape[0] if flagged is None else [not flag for flag in flagged]
    return pipe.image_processor.postprocess(image, output_type=output_type, do_denormalize=denormalize), flagged


def _stable_diffusion(
    pipe: StableDiffusionPipeline,
    request: _PromptRequest,
    sampling: tuple[int, float | None, Generators | None, OutputType],
    speculative: bool,
    options: _SpeculationOptions,
) -> DiffusionPipelineSamples:
    num_inference_steps, eta, generator, output_type = sampling
    _check_output_type(output_type)
    kernel = kernel_from_scheduler(pipe.scheduler, num_inference_steps, eta=eta)
    setup = _stable_diffusion_setup(pipe, request, kernel, generator)
    result = _run(setup, speculative, options)
    images, flagged = _decode_stable_diffusion(pipe, result.samples, output_type, setup.embedding_dtype)
    return DiffusionPipelineSamples(images, result.samples, result, flagged)


def speculative_stable_diffusion(
    pipe: StableDiffusionPipeline,
    prompt: str | list[str] | None = None,
    *,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt: str | list[str] | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    num_images_per_prompt: int = 1,
    height: int | None = None,
    width: int | None = None,
    eta: float | None = None,
    drafter: Drafter | None = None,
    window: int | WindowPolicy | None = None,
    rule: SamplerRule = DEFAULT_RULE,
    generator: Generators | None = None,
    output_type: OutputType = "pil",
) -> DiffusionPipelineSamples:
    """Stable Diffusion text-to-image with speculative sampling, exactly distributed as the plain loop.

    Parameters
    ----------
    pipe : StableDiffusionPipeline
        Its scheduler must be supported by :func:`kernel_from_scheduler` (swap it, e.g.
        ``pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)``); it is left untouched.
    prompt : str or list of str, optional
        Or ``prompt_embeds`` (B, S, D); ``negative_prompt`` / ``negative_prompt_embeds`` as in the pipeline.
    num_inference_steps : int
    guidance_scale : float
        Classifier-free guidance when ``> 1``.
    num_images_per_prompt : int
        The batch is the number of prompts times this.
    height, width : int, optional
        Image size; default the UNet's sample size times the VAE's scale factor.
    eta : float, optional
        For a ``DDIMScheduler`` only: the noise weight, ``> 0`` (default 1).
    drafter : Drafter, optional
        Default :class:`specdiff.drafters.FreeDrafter` (``reuse="nearest"``).
    window : int or WindowPolicy, optional
        Default :class:`specdiff.policies.AdaptiveWindow`.
    rule : {"token-reflection", "token-residual", "block", "adaptive"} or a rule object
        As in :func:`specdiff.sample` (default ``"token-reflection"``).
    generator : torch.Generator or sequence of B generators, optional
        Draws the initial latents (``prepare_latents``), then the sampler's keys. None: seeded from torch's global
        generator.
    output_type : {"pil", "np", "pt", "latent"}

    Returns
    -------
    DiffusionPipelineSamples
        ``statistics`` is the :class:`specdiff.sampler.SpeculativeResult`.
    """
    request = _PromptRequest(
        prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, num_images_per_prompt, guidance_scale,
        height, width,
    )  # fmt: skip
    options = _SpeculationOptions(drafter, window, rule)
    return _stable_diffusion(pipe, request, (num_inference_steps, eta, generator, output_type), True, options)


def plain_stable_diffusion(
    pipe: StableDiffusionPipeline,
    prompt: str | list[str] | None = None,
    *,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt: str | list[str] | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    num_images_per_prompt: int = 1,
    height: int | None = None,
    width: int | None = None,
    eta: float | None = None,
    drafter: Drafter | None = None,
    window: int | WindowPolicy | None = None,
    rule: SamplerRule = DEFAULT_RULE,
    generator: Generators | None = None,
    output_type: OutputType = "pil",
) -> DiffusionPipelineSamples:
    """The plain reference of :func:`speculative_stable_diffusion`: one network call per step
    (:func:`specdiff.sample_plain`), same arguments (``drafter``, ``window`` and ``rule`` are ignored); its samples
    have exactly the law of the speculative ones. ``statistics`` is a :class:`specdiff.sampler.ChainResult`."""
    request = _PromptRequest(
        prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, num_images_per_prompt, guidance_scale,
        height, width,
    )  # fmt: skip
    options = _SpeculationOptions(drafter, window, rule)
    return _stable_diffusion(pipe, request, (num_inference_steps, eta, generator, output_type), False, options)


def _class_labels(pipe: Any, class_labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
    classes = int(pipe.transformer.config.num_embeds_ada_norm)
    if labels.numel() < 1 or bool(((labels < 0) | (labels >= classes)).any()):
        raise ValueError(f"class_labels must be a non-empty list of class ids in [0, {classes})")
    return labels.to(pipe._execution_device)


def _dit_setup(
    pipe: Any, class_labels: Sequence[int] | torch.Tensor, guidance_scale: float, kernel: SchedulerKernel,
    generator: Generators | None,
) -> _Setup:  # fmt: skip
    labels = _class_labels(pipe, class_labels)
    config = pipe.transformer.config
    shape = (int(labels.numel()), int(config.in_channels), int(config.sample_size), int(config.sample_size))
    generators = _generators(generator)
    noise = randn_tensor(shape, generator=generators, device=pipe._execution_device, dtype=torch.float32)
    model = GuidedDiT(pipe.transformer, float(guidance_scale))
    return _Setup(model, kernel, noise * kernel.prior_std, {"class_labels": labels}, generators, torch.float32)


def _decode_dit(pipe: Any, latents: torch.Tensor, output_type: str) -> Any:
    """``DiTPipeline``'s decoding and postprocessing of the final latents (B, C, h, w)."""
    if output_type == "latent":
        return latents
    vae = pipe.vae
    with torch.no_grad():
        images = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample
    images = (images / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return images
    array = images.cpu().permute(0, 2, 3, 1).float().numpy()
    return pipe.numpy_to_pil(array) if output_type == "pil" else array


def _dit(
    pipe: DiTPipeline,
    class_labels: Sequence[int] | torch.Tensor,
    sampling: tuple[int, float, float | None, Generators | None, OutputType],
    speculative: bool,
    options: _SpeculationOptions,
) -> DiffusionPipelineSamples:
    num_inference_steps, guidance_scale, eta, generator, output_type = sampling
    _check_output_type(output_type)
    kernel = kernel_from_scheduler(pipe.scheduler, num_inference_steps, eta=eta)
    setup = _dit_setup(pipe, class_labels, guidance_scale, kernel, generator)
    result = _run(setup, speculative, options)
    return DiffusionPipelineSamples(_decode_dit(pipe, result.samples, output_type), result.samples, result)


def speculative_dit_pipeline(
    pipe: DiTPipeline,
    class_labels: Sequence[int] | torch.Tensor,
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 4.0,
    eta: float | None = None,
    drafter: Drafter | None = None,
    window: int | WindowPolicy | None = None,
    rule: SamplerRule = DEFAULT_RULE,
    generator: Generators | None = None,
    output_type: OutputType = "pil",
) -> DiffusionPipelineSamples:
    """Class-conditional DiT sampling (``DiTPipeline``) with speculative sampling, exactly distributed as the plain
    loop.

    Parameters
    ----------
    pipe : DiTPipeline
        Its scheduler (DiT's published one is a ``DDIMScheduler``, then with ``eta > 0``) must be supported by
        :func:`kernel_from_scheduler`; it is left untouched.
    class_labels : sequence of int or Tensor, shape (B,)
        Class ids (``pipe.get_label_ids`` maps names to them).
    num_inference_steps : int
    guidance_scale : float
        Classifier-free guidance with the null class when ``> 1``.
    eta : float, optional
        For a ``DDIMScheduler`` only: the noise weight, ``> 0`` (default 1). ``DiTPipeline`` itself runs DDIM with
        ``eta = 0``, which is deterministic and cannot be speculated.
    drafter : Drafter, optional
        Default :class:`specdiff.drafters.FreeDrafter` (reuse); ``FreeDrafter(exit_blocks=K)`` drafts with the
        transformer's first K blocks (:class:`GuidedDiT`), at cost K / depth per drafted step.
    window, rule : as :func:`speculative_stable_diffusion`
    generator : torch.Generator or sequence of B generators, optional
        Draws the initial latents (float32 ``randn_tensor`` times the kernel's ``prior_std``), then the sampler's
        keys. None: seeded from torch's global generator.
    output_type : {"pil", "np", "pt", "latent"}

    Returns
    -------
    DiffusionPipelineSamples
        ``statistics`` is the :class:`specdiff.sampler.SpeculativeResult`.
    """
    sampling = (num_inference_steps, guidance_scale, eta, generator, output_type)
    return _dit(pipe, class_labels, sampling, True, _SpeculationOptions(drafter, window, rule))


def plain_dit_pipeline(
    pipe: DiTPipeline,
    class_labels: Sequence[int] | torch.Tensor,
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 4.0,
    eta: float | None = None,
    generator: Generators | None = None,
    output_type: OutputType = "pil",
) -> DiffusionPipelineSamples:
    """The plain reference of :func:`speculative_dit_pipeline` (:func:`specdiff.sample_plain`), same arguments;
    ``statistics`` is a :class:`specdiff.sampler.ChainResult`."""
    sampling = (num_inference_steps, guidance_scale, eta, generator, output_type)
    return _dit(pipe, class_labels, sampling, False, _SpeculationOptions())
