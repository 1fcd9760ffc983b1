"""Kernels: schedules, respacing, hand-derived transitions on T = 10, parameterization consistency, clipping,
DDIM(eta = 1) = DDPM fixed_small, and sampling runs with the exact denoiser of Gaussian data.

The statistical test uses ALPHA (tests/statistics.py), Bonferroni-split over its comparisons, a fixed seed, and a
negative control (the same kernel with a 1.2x sigma) that the same check must reject.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from specdiff.kernels import (
    DDIMKernel,
    DDPMKernel,
    EulerAncestralKernel,
    EulerMaruyamaVPKernel,
    GaussianTransition,
    Kernel,
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    prediction_from_x0_and_eps,
    respace,
    scaled_linear_schedule,
    x0_and_eps_from_prediction,
)
from specdiff.models.gmm import GaussianMixture
from tests.statistics import ALPHA, z_threshold

TINY = linear_schedule(T=10, beta_start=0.01, beta_end=0.2)
BETAS = np.linspace(0.01, 0.2, 10)
ALPHAS_CUMPROD = np.cumprod(1.0 - BETAS)
KERNEL_CLASSES = (DDPMKernel, DDIMKernel, EulerMaruyamaVPKernel, EulerAncestralKernel)


def _state(seed: int, shape: tuple[int, ...] = (4, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    eps = torch.randn(shape, dtype=torch.float64, generator=generator)
    return x, eps


# ---------------------------------------------------------------------------------------------------------------
# Schedules and respacing
# ---------------------------------------------------------------------------------------------------------------


def test_schedules_match_their_definitions() -> None:
    np.testing.assert_allclose(TINY.alphas_cumprod.numpy(), ALPHAS_CUMPROD, rtol=1e-14)
    np.testing.assert_allclose(TINY.betas.numpy(), BETAS, rtol=1e-12)
    scaled = scaled_linear_schedule(T=10, beta_start=0.01, beta_end=0.04)
    np.testing.assert_allclose(scaled.betas.numpy(), np.linspace(0.1, 0.2, 10) ** 2, rtol=1e-12)
    cosine = cosine_schedule(T=10)
    f = np.cos((np.arange(11) / 10 + 0.008) / 1.008 * math.pi / 2) ** 2
    expected = np.cumprod(1.0 - np.minimum(1.0 - f[1:] / f[:-1], 0.999))
    np.testing.assert_allclose(cosine.alphas_cumprod.numpy(), expected, rtol=1e-12)
    assert float(cosine.betas.max()) <= 0.999 + 1e-12
    assert linear_schedule().num_train_timesteps == 1000
    assert TINY.alphas_cumprod.dtype == torch.float64


def test_schedule_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="decreasing"):
        NoiseSchedule(torch.tensor([0.9, 0.95]))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.9, 0.0]))
    with pytest.raises(ValueError, match="noise-free"):  # abar = 1 would divide by 1 - abar in every kernel
        NoiseSchedule(torch.tensor([1.0, 0.5, 0.2]))
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule(torch.ones(2, 2))
    with pytest.raises(ValueError, match="positive integer"):
        linear_schedule(T=0)


@pytest.mark.parametrize("alpha_cumprod", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_conversion_refuses_alpha_cumprod_outside_the_open_unit_interval(alpha_cumprod: float) -> None:
    x = torch.ones(2, 3)
    for prediction_type in ("epsilon", "sample", "v_prediction"):
        with pytest.raises(ValueError, match="alpha_cumprod"):
            x0_and_eps_from_prediction(x, x, alpha_cumprod, prediction_type)


def test_respace_trailing_and_leading() -> None:
    assert respace(10, 5).tolist() == [9, 7, 5, 3, 1]
    assert respace(10, 10).tolist() == list(range(9, -1, -1))
    assert respace(10, 3).tolist() == [9, 6, 2]  # round(10, 6.67, 3.33) - 1
    assert respace(TINY, 1).tolist() == [9]
    assert respace(10, 5, spacing="leading").tolist() == [8, 6, 4, 2, 0]
    for steps in range(1, 1001, 37):
        timesteps = respace(1000, steps)
        assert timesteps[0] == 999 and timesteps.numel() == steps
        assert bool(torch.all(timesteps[1:] < timesteps[:-1])) and int(timesteps[-1]) >= 0
    with pytest.raises(ValueError, match="steps"):
        respace(10, 11)
    with pytest.raises(ValueError, match="spacing"):
        respace(10, 5, spacing="linspace")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Hand-derived transitions on T = 10
# ---------------------------------------------------------------------------------------------------------------


def test_ddpm_full_schedule_matches_the_classical_formula() -> None:
    x, eps = _state(0)
    for variance_type in ("fixed_small", "fixed_large"):
        kernel = DDPMKernel(TINY, variance_type=variance_type)
        assert kernel.timesteps.tolist() == list(range(9, -1, -1))
        for n in range(9):  # t = 9 - n, previous 8 - n
            t = 9 - n
            beta, alpha_bar, previous = BETAS[t], ALPHAS_CUMPROD[t], ALPHAS_CUMPROD[t - 1]
            expected_mean = (x - beta / math.sqrt(1 - alpha_bar) * eps) / math.sqrt(1 - beta)
            expected_variance = beta * (1 - previous) / (1 - alpha_bar) if variance_type == "fixed_small" else beta
            mean, sigma = kernel.transition(x, eps, n)
            torch.testing.assert_close(mean, expected_mean, rtol=1e-12, atol=1e-12)
            assert float(sigma) == pytest.approx(math.sqrt(expected_variance), rel=1e-12)
            assert sigma.ndim == 0 and sigma.dtype == torch.float64
        mean, sigma = kernel.transition(x, eps, 9)  # t = 0 -> x0: deterministic for both variance types
        assert float(sigma) == 0.0
        torch.testing.assert_close(mean, (x - math.sqrt(1 - ALPHAS_CUMPROD[0]) * eps) / math.sqrt(ALPHAS_CUMPROD[0]))


def test_ddpm_respaced_betas_come_from_alphas_cumprod() -> None:
    x, eps = _state(1)
    kernel = DDPMKernel(TINY, num_steps=5, prediction_type="sample", variance_type="fixed_large")
    x0 = eps  # used as an x0 prediction here
    for n, (t, p) in enumerate([(9, 7), (7, 5), (5, 3), (3, 1)]):
        alpha_bar, previous = ALPHAS_CUMPROD[t], ALPHAS_CUMPROD[p]
        beta = 1 - alpha_bar / previous
        expected = (
            math.sqrt(previous) * beta / (1 - alpha_bar) * x0
            + math.sqrt(1 - beta) * (1 - previous) / (1 - alpha_bar) * x
        )
        mean, sigma = kernel.transition(x, x0, n)
        torch.testing.assert_close(mean, expected, rtol=1e-12, atol=1e-12)
        assert float(sigma) == pytest.approx(math.sqrt(beta), rel=1e-12)
    mean, sigma = kernel.transition(x, x0, 4)
    assert float(sigma) == 0.0
    torch.testing.assert_close(mean, x0)


def test_ddim_hand_values() -> None:
    x, eps = _state(2)
    kernel = DDIMKernel(TINY, num_steps=5, eta=0.5)
    alpha_bar, previous = ALPHAS_CUMPROD[7], ALPHAS_CUMPROD[5]
    sigma = 0.5 * math.sqrt((1 - previous) / (1 - alpha_bar)) * math.sqrt(1 - alpha_bar / previous)
    x0 = (x - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    expected = math.sqrt(previous) * x0 + math.sqrt(1 - previous - sigma**2) * eps
    mean, got_sigma = kernel.transition(x, eps, 1)
    torch.testing.assert_close(mean, expected, rtol=1e-12, atol=1e-12)
    assert float(got_sigma) == pytest.approx(sigma, rel=1e-12)
    assert float(kernel.transition(x, eps, 4).sigma) == 0.0


def test_euler_maruyama_hand_values() -> None:
    x, eps = _state(3)
    full = EulerMaruyamaVPKernel(TINY)
    mean, sigma = full.transition(x, eps, 2)  # t = 7, dtau T = 1
    beta, alpha_bar = BETAS[7], ALPHAS_CUMPROD[7]
    torch.testing.assert_close(mean, x + beta * (0.5 * x - eps / math.sqrt(1 - alpha_bar)), rtol=1e-12, atol=1e-12)
    assert float(sigma) == pytest.approx(math.sqrt(beta), rel=1e-12)
    respaced = EulerMaruyamaVPKernel(TINY, num_steps=5)
    mean, sigma = respaced.transition(x, eps, 1)  # t = 7 -> 5: beta(tau) dtau = 2 beta_7
    torch.testing.assert_close(mean, x + 2 * beta * (0.5 * x - eps / math.sqrt(1 - alpha_bar)), rtol=1e-12, atol=1e-12)
    assert float(sigma) == pytest.approx(math.sqrt(2 * beta), rel=1e-12)
    assert float(respaced.transition(x, eps, 4).sigma) == pytest.approx(math.sqrt(2 * BETAS[1]), rel=1e-12)


def test_euler_ancestral_hand_values() -> None:
    x, eps = _state(4)
    kernel = EulerAncestralKernel(TINY, num_steps=5)
    sigmas = np.sqrt((1 - ALPHAS_CUMPROD[[9, 7, 5, 3, 1]]) / ALPHAS_CUMPROD[[9, 7, 5, 3, 1]])
    np.testing.assert_allclose(kernel.sigmas.numpy(), np.append(sigmas, 0.0), rtol=1e-14)
    assert kernel.prior_std == pytest.approx(math.sqrt(sigmas[0] ** 2 + 1))
    # The network sees the VP state: x / sqrt(sigma^2 + 1) = sqrt(abar) x.
    torch.testing.assert_close(kernel.model_input(x, 2), math.sqrt(ALPHAS_CUMPROD[5]) * x)
    sigma_from, sigma_to = sigmas[2], sigmas[3]
    sigma_up = math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2)
    sigma_down = math.sqrt(sigma_to**2 - sigma_up**2)
    x0 = x - sigma_from * eps  # an eps prediction in sigma space
    mean, sigma = kernel.transition(x, eps, 2)
    torch.testing.assert_close(mean, x + (sigma_down - sigma_from) * (x - x0) / sigma_from, rtol=1e-12, atol=1e-12)
    assert float(sigma) == pytest.approx(sigma_up, rel=1e-12)
    mean, sigma = kernel.transition(x, eps, 4)
    assert float(sigma) == 0.0
    torch.testing.assert_close(mean, x - sigmas[4] * eps)


# ---------------------------------------------------------------------------------------------------------------
# Parameterizations, clipping, DDIM = DDPM
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_class", KERNEL_CLASSES)
@pytest.mark.parametrize("num_steps", [10, 4])
def test_consistent_predictions_give_the_same_transition(kernel_class: type[Kernel], num_steps: int) -> None:
    x, eps = _state(5, (3, 2, 2))
    kernels = {
        kind: kernel_class(TINY, num_steps, prediction_type=kind) for kind in ("epsilon", "sample", "v_prediction")
    }
    reference = kernels["epsilon"]
    for n in range(num_steps):
        alpha = reference.alpha_cumprod(n)
        x_vp = reference.model_input(x, n)
        x0 = (x_vp - math.sqrt(1 - alpha) * eps) / math.sqrt(alpha)
        predictions = {
            "epsilon": eps,
            "sample": x0,
            "v_prediction": math.sqrt(alpha) * eps - math.sqrt(1 - alpha) * x0,
        }
        torch.testing.assert_close(
            predictions["v_prediction"], prediction_from_x0_and_eps(x0, eps, alpha, "v_prediction")
        )
        expected_mean, expected_sigma = reference.transition(x, eps, n)
        for kind, kernel in kernels.items():
            mean, sigma = kernel.transition(x, predictions[kind], n)
            torch.testing.assert_close(mean, expected_mean, rtol=1e-10, atol=1e-10)
            assert float(sigma) == float(expected_sigma)
            got_x0, got_eps = kernel.prediction_to_x0_and_eps(x, predictions[kind], n)
            torch.testing.assert_close(got_x0, x0, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(got_eps, eps, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel_class", KERNEL_CLASSES)
def test_clipping_acts_on_x0(kernel_class: type[Kernel]) -> None:
    x, _ = _state(6)
    x0 = 3.0 * torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)  # partly outside [-1, 1]
    clipped = kernel_class(TINY, 5, prediction_type="sample", clip_sample=True)
    plain = kernel_class(TINY, 5, prediction_type="sample")
    for n in range(5):
        got = clipped.transition(x, x0, n).mean
        torch.testing.assert_close(got, plain.transition(x, x0.clamp(-1, 1), n).mean, rtol=1e-12, atol=1e-12)
        assert not torch.allclose(got, plain.transition(x, x0, n).mean)
    # eps predictions: the x0 they imply is clipped (so the mean is non-linear in the prediction).
    eps_kernel = kernel_class(TINY, 5, clip_sample=True)
    got_x0, _ = eps_kernel.prediction_to_x0_and_eps(10 * x, x, 0)
    assert float(got_x0.abs().max()) <= 1.0


@pytest.mark.parametrize("num_steps", [10, 7, 3])
def test_ddim_with_eta_one_is_the_ddpm_posterior(num_steps: int) -> None:
    x, eps = _state(7)
    ddim, ddpm = DDIMKernel(TINY, num_steps, eta=1.0), DDPMKernel(TINY, num_steps, variance_type="fixed_small")
    for n in range(num_steps):
        ddim_mean, ddim_sigma = ddim.transition(x, eps, n)
        ddpm_mean, ddpm_sigma = ddpm.transition(x, eps, n)
        torch.testing.assert_close(ddim_mean, ddpm_mean, rtol=1e-12, atol=1e-12)
        assert float(ddim_sigma) == pytest.approx(float(ddpm_sigma), rel=1e-12, abs=1e-15)


def test_kernels_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="prediction_type"):
        DDPMKernel(TINY, prediction_type="x0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="variance_type"):
        DDPMKernel(TINY, variance_type="learned")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eta"):
        DDIMKernel(TINY, eta=1.5)
    with pytest.raises(ValueError, match="eta"):
        EulerAncestralKernel(TINY, eta=0.0)
    with pytest.raises(ValueError, match="NoiseSchedule"):
        DDPMKernel(TINY.alphas_cumprod)  # type: ignore[arg-type]
    x, eps = _state(8)
    with pytest.raises(ValueError, match="step_index"):
        DDPMKernel(TINY).transition(x, eps, 10)
    with pytest.raises(ValueError, match="same shape"):
        DDPMKernel(TINY).transition(x, eps[:, :2], 0)


def test_float32_states_stay_float32() -> None:
    x, eps = _state(9)
    mean, sigma = DDPMKernel(TINY).transition(x.float(), eps.float(), 3)
    assert mean.dtype == torch.float32 and sigma.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------------
# Sampling with the exact denoiser of Gaussian data N(m, s^2 I)
# ---------------------------------------------------------------------------------------------------------------

DATA_MEAN = torch.tensor([0.5, -0.3, 0.1], dtype=torch.float64)
DATA_VARIANCE = 0.25
DATA = GaussianMixture.gaussian(DATA_MEAN, DATA_VARIANCE)
SCHEDULE = linear_schedule()


class WrongSigma(Kernel):
    """Negative control: a kernel whose sigma is 1.2x the right one."""

    def __init__(self, inner: Kernel) -> None:
        self.inner = inner
        self.schedule, self.timesteps, self.prediction_type = inner.schedule, inner.timesteps, inner.prediction_type

    def model_input(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        return self.inner.model_input(x, step_index)

    def alpha_cumprod(self, step_index: int) -> float:
        return self.inner.alpha_cumprod(step_index)

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        mean, sigma = self.inner.transition(x, prediction, step_index)
        return GaussianTransition(mean, 1.2 * sigma)


def _start_law(kernel: Kernel) -> tuple[torch.Tensor, float]:
    """Exact marginal of the state at step 0 for the Gaussian data, per coordinate (mean (d,), variance)."""
    alpha = kernel.alpha_cumprod(0)
    if isinstance(kernel.inner if isinstance(kernel, WrongSigma) else kernel, EulerAncestralKernel):
        return DATA_MEAN.clone(), DATA_VARIANCE + (1 - alpha) / alpha
    return math.sqrt(alpha) * DATA_MEAN, alpha * DATA_VARIANCE + 1 - alpha


def _ddpm_chain_law(num_steps: int) -> tuple[torch.Tensor, float]:
    """The discretized DDPM fixed_small chain's final law, from hand formulas (independent of specdiff.kernels).

    With the exact denoiser ``E[x0 | x] = m + g (x - sqrt(abar) m)``, ``g = sqrt(abar) s^2 / (abar s^2 + 1 - abar)``,
    the step is ``x' = (c0 g + ct) x + c0 (1 - g sqrt(abar)) m + sqrt(beta_tilde) z``.
    """
    alphas = SCHEDULE.alphas_cumprod.numpy()
    timesteps = np.floor(1000 - np.arange(num_steps) * 1000 / num_steps + 0.5).astype(int) - 1
    mean, variance = (
        math.sqrt(alphas[timesteps[0]]) * DATA_MEAN,
        alphas[timesteps[0]] * DATA_VARIANCE + 1 - alphas[timesteps[0]],
    )
    for n, t in enumerate(timesteps):
        alpha = alphas[t]
        previous = alphas[timesteps[n + 1]] if n + 1 < num_steps else 1.0
        beta = 1 - alpha / previous
        c0, ct = math.sqrt(previous) * beta / (1 - alpha), math.sqrt(1 - beta) * (1 - previous) / (1 - alpha)
        gain = math.sqrt(alpha) * DATA_VARIANCE / (alpha * DATA_VARIANCE + 1 - alpha)
        slope = c0 * gain + ct
        mean = slope * mean + c0 * (1 - gain * math.sqrt(alpha)) * DATA_MEAN
        variance = slope**2 * variance + beta * (1 - previous) / (1 - alpha)
    return mean, float(variance)


def _propagate(kernel: Kernel) -> tuple[torch.Tensor, float, float]:
    """Final law of the kernel's chain, by pushing the Gaussian law through its (affine) steps.

    Returns the mean (d,), the variance, and the variance of the wrong-sigma control (sigma x 1.2).
    """
    model = DATA.as_model(SCHEDULE, kernel.prediction_type)
    mean, variance = _start_law(kernel)
    wrong_variance = variance
    probes = torch.stack([torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)])
    for n in range(int(kernel.timesteps.numel())):
        prediction = model(kernel.model_input(probes, n), kernel.timesteps[n].repeat(2))
        step_mean, sigma = kernel.transition(probes, prediction, n)
        slope, intercept = step_mean[1] - step_mean[0], step_mean[0]
        assert float((slope - slope[0]).abs().max()) < 1e-12  # isotropic affine step
        gain = float(slope[0]) ** 2
        mean, variance = float(slope[0]) * mean + intercept, gain * variance + float(sigma) ** 2
        wrong_variance = gain * wrong_variance + (1.2 * float(sigma)) ** 2
    return mean, variance, wrong_variance


def _sample_chain(kernel: Kernel, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    model = DATA.as_model(SCHEDULE, kernel.prediction_type)
    start_mean, start_variance = _start_law(kernel)
    x = start_mean + math.sqrt(start_variance) * torch.randn(n, 3, dtype=torch.float64, generator=generator)
    for step in range(int(kernel.timesteps.numel())):
        prediction = model(kernel.model_input(x, step), kernel.timesteps[step].expand(n))
        mean, sigma = kernel.transition(x, prediction, step)
        x = mean + sigma * torch.randn(x.shape, dtype=torch.float64, generator=generator)
    return x


def test_ddpm_hand_chain_law_converges_to_the_data_law() -> None:
    # The discretized chain is not exact (fixed_small ignores Var[x0 | x_t]); its error shrinks like 1/N.
    errors = []
    for num_steps in (50, 200, 1000):
        mean, variance = _ddpm_chain_law(num_steps)
        torch.testing.assert_close(mean, DATA_MEAN, rtol=0, atol=1e-10)
        errors.append(abs(variance / DATA_VARIANCE - 1))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02


@pytest.mark.parametrize("num_steps", [200, 500])
def test_every_kernel_chain_ends_near_the_data_law(num_steps: int) -> None:
    """Deterministic: the law pushed through each kernel is within the discretization error of the data law, and
    the wrong-sigma control is not."""
    tolerance = 25.0 / num_steps  # observed: variance errors about 15 / N (first order in 1 / N), mean errors < 1 / N
    hand_mean, hand_variance = _ddpm_chain_law(num_steps)
    kernels = [
        DDPMKernel(SCHEDULE, num_steps),
        DDPMKernel(SCHEDULE, num_steps, variance_type="fixed_large"),
        DDIMKernel(SCHEDULE, num_steps, eta=1.0),
        DDIMKernel(SCHEDULE, num_steps, eta=0.5, prediction_type="v_prediction"),
        EulerMaruyamaVPKernel(SCHEDULE, num_steps),
        EulerAncestralKernel(SCHEDULE, num_steps, prediction_type="sample"),
    ]
    for kernel in kernels:
        mean, variance, wrong_variance = _propagate(kernel)
        assert float((mean - DATA_MEAN).abs().max()) < tolerance, type(kernel).__name__
        assert abs(variance / DATA_VARIANCE - 1) < tolerance, type(kernel).__name__
        assert abs(wrong_variance / DATA_VARIANCE - 1) > 0.2, type(kernel).__name__
        if kernel in (kernels[0], kernels[2], kernels[5]):
            # DDPM fixed_small, DDIM(eta = 1) and Euler ancestral (eta = 1) share one chain law: the hand formula's.
            torch.testing.assert_close(mean, hand_mean, rtol=0, atol=1e-9)
            assert variance == pytest.approx(hand_variance, rel=1e-9)


@pytest.mark.slow
@pytest.mark.statistical
def test_ancestral_sampling_matches_the_discretized_chain_law() -> None:
    """Monte Carlo: the final samples of DDPM fixed_small and Euler ancestral have the hand-derived chain law.

    Comparisons per kernel: 3 coordinate means and the pooled variance (8 in all, Bonferroni). With n = 10000 the
    variance stderr is 0.82% (relative): the wrong-sigma control (+34% variance at N = 200) is rejected by > 40
    stderr, and a 6% variance error would be detected with power > 0.99.
    """
    num_steps, n = 200, 10_000
    threshold = z_threshold(ALPHA, comparisons=8)
    expected_mean, expected_variance = _ddpm_chain_law(num_steps)

    def worst_z(samples: torch.Tensor) -> float:
        variances = samples.var(dim=0)
        mean_z = (samples.mean(dim=0) - expected_mean) / math.sqrt(expected_variance / n)
        variance_z = (float(variances.mean()) - expected_variance) / (expected_variance * math.sqrt(2 / (n - 1) / 3))
        return max(float(mean_z.abs().max()), abs(variance_z))

    for seed, kernel in enumerate(
        [DDPMKernel(SCHEDULE, num_steps), EulerAncestralKernel(SCHEDULE, num_steps, prediction_type="v_prediction")]
    ):
        assert worst_z(_sample_chain(kernel, n, seed=100 + seed)) < threshold, type(kernel).__name__
        assert worst_z(_sample_chain(WrongSigma(kernel), n, seed=200 + seed)) > threshold, "control not rejected"
