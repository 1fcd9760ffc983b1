"""Exact Gaussian-mixture denoiser: closed forms, Tweedie, autograd score, stability, the model adaptor, and a
Monte-Carlo unbiasedness check with a negative control.

The statistical tests use ALPHA (tests/statistics.py), Bonferroni-split over their comparisons, and fixed seeds.
"""

from __future__ import annotations

import math

import pytest
import torch

from specdiff.kernels import DDPMKernel, EulerAncestralKernel, linear_schedule
from specdiff.models import GaussianMixture, perturbed
from tests.statistics import ALPHA, z_threshold

MIXTURE = GaussianMixture(
    weights=torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64),
    means=torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.5, -1.5]], dtype=torch.float64),
    variances=torch.tensor([0.3, 0.1, 0.6], dtype=torch.float64),
)
ALPHAS = (1e-6, 0.05, 0.3, 0.7, 0.99, 1 - 1e-9)


def _points(seed: int, n: int = 64, d: int = 2, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("alpha", ALPHAS)
def test_single_gaussian_is_the_affine_closed_form(alpha: float) -> None:
    mean, variance = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 0.4
    gaussian = GaussianMixture.gaussian(mean, variance)
    x = _points(0, d=3)
    marginal = alpha * variance + 1 - alpha
    expected_x0 = mean + math.sqrt(alpha) * variance * (x - math.sqrt(alpha) * mean) / marginal
    torch.testing.assert_close(gaussian.denoise(x, alpha), expected_x0, rtol=1e-12, atol=1e-12)
    expected_eps = math.sqrt(1 - alpha) * (x - math.sqrt(alpha) * mean) / marginal
    torch.testing.assert_close(gaussian.epsilon(x, alpha), expected_eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian.score(x, alpha), -(x - math.sqrt(alpha) * mean) / marginal)
    # Affine: D(a x + (1 - a) y) = a D(x) + (1 - a) D(y).
    y = _points(1, d=3)
    torch.testing.assert_close(
        gaussian.denoise(0.3 * x + 0.7 * y, alpha),
        0.3 * gaussian.denoise(x, alpha) + 0.7 * gaussian.denoise(y, alpha),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("alpha", (0.05, 0.3, 0.7, 0.99))
def test_tweedie_and_the_autograd_score(alpha: float) -> None:
    x = _points(2)
    x0, eps = MIXTURE.denoise(x, alpha), MIXTURE.epsilon(x, alpha)
    score = MIXTURE.score(x, alpha)
    torch.testing.assert_close(score, (math.sqrt(alpha) * x0 - x) / (1 - alpha), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps, (x - math.sqrt(alpha) * x0) / math.sqrt(1 - alpha), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(score, -eps / math.sqrt(1 - alpha), rtol=1e-9, atol=1e-9)
    # The score is the gradient of the marginal log density (an independent derivation).
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(MIXTURE.log_density(leaf, alpha).sum(), leaf)
    torch.testing.assert_close(score, gradient, rtol=1e-9, atol=1e-9)


def test_per_row_alphas_and_event_shapes() -> None:
    x = _points(3, n=4)
    alphas = torch.tensor([0.1, 0.4, 0.8, 0.95], dtype=torch.float64)
    rows = torch.stack([MIXTURE.denoise(x[i : i + 1], float(alphas[i]))[0] for i in range(4)])
    torch.testing.assert_close(MIXTURE.denoise(x, alphas), rows)
    gaussian = GaussianMixture.gaussian(torch.zeros(4, dtype=torch.float64), 1.0)
    images = _points(4, n=5, d=4).reshape(5, 1, 2, 2)
    assert gaussian.denoise(images, 0.5).shape == (5, 1, 2, 2)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_responsibilities_sum_to_one(alpha: float) -> None:
    responsibilities = MIXTURE.responsibilities(_points(5, scale=5.0), alpha)
    assert bool(torch.all(responsibilities >= 0))
    torch.testing.assert_close(responsibilities.sum(dim=1), torch.ones(64, dtype=torch.float64))


def test_numerical_stability_at_the_ends_and_far_out() -> None:
    far = torch.tensor([[1e6, -1e6], [3e4, 0.0], [-1e8, 1e8]], dtype=torch.float64)
    for alpha in (0.0, 1e-12, 0.5, 1 - 1e-12, 1.0):
        for values in (MIXTURE.denoise(far, alpha), MIXTURE.epsilon(far, alpha), MIXTURE.score(far, alpha)):
            assert bool(torch.all(torch.isfinite(values)))
        torch.testing.assert_close(MIXTURE.responsibilities(far, alpha).sum(dim=1), torch.ones(3, dtype=torch.float64))
    x = _points(6)
    # abar -> 0: x carries no information, E[x0 | x] is the data mean and E[eps | x] = x.
    torch.testing.assert_close(MIXTURE.denoise(x, 0.0), MIXTURE.mean().expand(64, 2))
    torch.testing.assert_close(MIXTURE.epsilon(x, 1e-14), x, rtol=1e-6, atol=1e-6)
    # abar -> 1: x is x0 itself and eps -> 0.
    torch.testing.assert_close(MIXTURE.denoise(x, 1 - 1e-14), x, rtol=1e-6, atol=1e-6)
    assert float(MIXTURE.epsilon(x, 1.0).abs().max()) == 0.0
    assert float(MIXTURE.epsilon(x, 1 - 1e-12).abs().max()) < 1e-4


def test_sigma_space_matches_the_vp_state() -> None:
    x = _points(7)
    sigma = 1.7
    alpha = 1 / (1 + sigma**2)
    torch.testing.assert_close(MIXTURE.denoise_sigma(x, sigma), MIXTURE.denoise(x * math.sqrt(alpha), alpha))
    torch.testing.assert_close(MIXTURE.epsilon_sigma(x, sigma), MIXTURE.epsilon(x * math.sqrt(alpha), alpha))
    # x = x0 + sigma eps: the two posterior means add up.
    torch.testing.assert_close(MIXTURE.denoise_sigma(x, sigma) + sigma * MIXTURE.epsilon_sigma(x, sigma), x)
    sigmas = torch.full((64,), sigma, dtype=torch.float64)
    torch.testing.assert_close(MIXTURE.denoise_sigma(x, sigmas), MIXTURE.denoise_sigma(x, sigma))


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_model_adaptor_plugs_into_the_kernels(prediction: str) -> None:
    schedule = linear_schedule()
    x = _points(8, n=6)
    timesteps = torch.tensor([999, 500, 10, 0, 250, 700])
    model = MIXTURE.as_model(schedule, prediction)  # type: ignore[arg-type]
    output = model(x, timesteps)
    alphas = schedule.alphas_cumprod[timesteps]
    x0, eps = MIXTURE.denoise(x, alphas), MIXTURE.epsilon(x, alphas)
    expected = {
        "epsilon": eps,
        "sample": x0,
        "v_prediction": alphas.sqrt()[:, None] * eps - (1 - alphas).sqrt()[:, None] * x0,
    }
    torch.testing.assert_close(output, expected[prediction])
    # Through a kernel (sigma space included), every parameterization gives the same transition.
    for kernel_class in (DDPMKernel, EulerAncestralKernel):
        kernel = kernel_class(schedule, 20, prediction_type=prediction)  # type: ignore[arg-type]
        reference = kernel_class(schedule, 20)
        plugged = MIXTURE.as_model(kernel, prediction)  # type: ignore[arg-type]
        step_time = kernel.timesteps[3].expand(6)
        got = kernel.transition(x, plugged(kernel.model_input(x, 3), step_time), 3).mean
        want = reference.transition(x, MIXTURE.as_model(reference)(reference.model_input(x, 3), step_time), 3).mean
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert model(x.float(), 10).dtype == torch.float32


def test_perturbed_and_bad_input() -> None:
    shifted = perturbed(MIXTURE, mean_shift=0.5, variance_scale=2.0)
    torch.testing.assert_close(shifted.means, MIXTURE.means + 0.5)
    torch.testing.assert_close(shifted.variances, 2 * MIXTURE.variances)
    torch.testing.assert_close(shifted.weights, MIXTURE.weights)
    per_axis = perturbed(MIXTURE, mean_shift=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(per_axis.means[:, 0], MIXTURE.means[:, 0] + 1)
    with pytest.raises(ValueError, match="mean_shift"):
        perturbed(MIXTURE, mean_shift=torch.ones(3))
    with pytest.raises(ValueError, match="variance_scale"):
        perturbed(MIXTURE, variance_scale=-1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 1), torch.ones(2))
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.tensor([1.0]), torch.zeros(2, 1), torch.ones(1))
    with pytest.raises(ValueError, match="non-negative"):
        GaussianMixture(torch.tensor([1.0]), torch.zeros(1, 1), -torch.ones(1))
    with pytest.raises(ValueError, match="coordinates"):
        MIXTURE.denoise(torch.zeros(3, 5), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MIXTURE.denoise(torch.zeros(3, 2), 1.5)
    with pytest.raises(ValueError, match="timesteps"):
        MIXTURE.as_model(linear_schedule(T=10))(torch.zeros(1, 2), torch.tensor([10]))
    with pytest.raises(ValueError, match="NoiseSchedule"):
        MIXTURE.as_model(object())


def _mean_z(samples: torch.Tensor) -> float:
    """Largest |z| of the coordinate means of ``samples`` against the mixture mean."""
    stderr = torch.sqrt(torch.diagonal(MIXTURE.covariance()) / samples.shape[0])
    return float(((samples.mean(dim=0) - MIXTURE.mean()) / stderr).abs().max())


@pytest.mark.statistical
def test_sampling_gives_the_mixture_moments() -> None:
    """Sample mean of each coordinate against the mixture mean (2 comparisons); n = 40000 resolves 0.03."""
    n = 40_000
    samples = MIXTURE.sample(n, torch.Generator().manual_seed(11))
    assert _mean_z(samples) < z_threshold(ALPHA, comparisons=2)
    assert samples.shape == (n, 2) and samples.dtype == torch.float64
    # Negative control: a mixture whose means are shifted by 0.1 is rejected by the same test.
    shifted = perturbed(MIXTURE, mean_shift=0.1).sample(n, torch.Generator().manual_seed(12))
    assert _mean_z(shifted) > z_threshold(ALPHA, comparisons=2)


@pytest.mark.statistical
@pytest.mark.parametrize("alpha", (0.1, 0.6))
def test_denoiser_is_the_posterior_mean_by_monte_carlo(alpha: float) -> None:
    """E[x0 - D(x_t) | x_t] = 0, so the residual is centred and uncorrelated with any function of x_t.

    For each coordinate j and each feature f in {1, x_t[0], x_t[1]}, mean(f (x0 - D(x_t))[j]) is z-tested against 0
    with its sample stderr (6 comparisons, Bonferroni). Negative control: the denoiser of a perturbed mixture (means
    shifted by 0.1, variances x 1.5) is rejected by the same test. n = 40000 resolves a residual bias of ~0.02.
    """
    n = 40_000
    generator = torch.Generator().manual_seed(int(alpha * 1000))
    x0 = MIXTURE.sample(n, generator)
    x = math.sqrt(alpha) * x0 + math.sqrt(1 - alpha) * torch.randn(n, 2, dtype=torch.float64, generator=generator)
    features = torch.stack([torch.ones(n, dtype=torch.float64), x[:, 0], x[:, 1]], dim=1)  # (n, 3)
    threshold = z_threshold(ALPHA, comparisons=6)

    def worst_z(mixture: GaussianMixture) -> float:
        residual = x0 - mixture.denoise(x, alpha)  # (n, 2)
        products = (features[:, :, None] * residual[:, None, :]).reshape(n, 6)
        z = products.mean(dim=0) / (products.std(dim=0) / math.sqrt(n))
        return float(z.abs().max())

    assert worst_z(MIXTURE) < threshold
    assert worst_z(perturbed(MIXTURE, mean_shift=0.1, variance_scale=1.5)) > threshold, "control not rejected"
