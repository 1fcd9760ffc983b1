"""Tests of ``specdiff.residual``: exact weighted residual draws, the rejection comparison method, the rank-1 frame.

The statistical tests check the law of a residual draw ``x`` from ``max(w N(mu, sigma^2 I) - N(nu, sigma^2 I), 0) / R``
through the rank-1 reduction (docs/design.md §2): the scalar ``s = <x - nu, e> / sigma`` must follow the 1-D residual
law with survival function ``exp(theory.gaussian.residual_log_survival(s, w, delta))``, and the orthogonal part
``(x - nu) / sigma - s e`` must be standard normal on the complement of ``e``. Each statistical test fixes its seed,
keeps the false-positive rate ``ALPHA`` of tests/statistics.py (Bonferroni inside the test), states its power, and
comes with a negative control that the same test rejects (docs/design.md §5).

The CDF used as the KS reference is itself checked against an independent high-precision evaluation (mpmath) of
the closed form ``(w Phi-bar(x - delta) - Phi-bar(x)) / (w Phi-bar(s* - delta) - Phi-bar(s*))``, so the inverse-CDF
test is not circular.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import TypedDict

import mpmath
import numpy as np
import numpy.typing as npt
import pytest
import torch
from scipy import stats

from specdiff.residual import (
    rank_one_frame,
    reflect,
    residual_rejection_acceptance_rate,
    sample_weighted_residual,
    sample_weighted_residual_rejection,
)
from tests.statistics import ALPHA, z_threshold
from theory.gaussian import residual_log_survival

FloatArray = npt.NDArray[np.float64]

SAMPLES = 20_000
DIMENSIONS = (1, 8, 64)
WEIGHTS = (1.0, 0.3, 1e-3)
DELTAS = (0.05, 0.5, 2.0)
DTYPES = (torch.float64, torch.float32)
#: Every (dimension, weight, delta, dtype) of the inverse-CDF law tests: 3 x 3 x 3 x 2 = 54 configurations.
CONFIGURATIONS = tuple(itertools.product(DIMENSIONS, WEIGHTS, DELTAS, DTYPES))
#: Number of fixed random directions on which the orthogonal part is projected (per configuration with d > 1).
PROJECTIONS = 3
#: Configurations where the rejection sampler is affordable in a test (acceptance rate >= 0.03).
REJECTION_CONFIGURATIONS = ((1.0, 0.05), (1.0, 0.5), (0.3, 0.5), (1e-3, 0.5), (1.0, 2.0), (0.3, 2.0), (1e-3, 2.0))
REJECTION_DIMENSION = 8

# Module-level seeds, one per statistical test (a configuration's stream is derived from its test's seed and index).
SEED_LAW = 20_250_101
SEED_NEGATIVE_WEIGHT = 20_250_102
SEED_NEGATIVE_TARGET = 20_250_103
SEED_NEGATIVE_ORTHOGONAL = 20_250_104
SEED_REJECTION = 20_250_105
SEED_UNIT = 20_250_106


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _generator(*key: int) -> torch.Generator:
    """A torch generator seeded from a test seed and a configuration index."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))


@dataclass(frozen=True)
class Problem:
    """A batch of target/draft Gaussians with a given standardized gap, one random frame per row."""

    target_mean: torch.Tensor
    draft_mean: torch.Tensor
    sigma: torch.Tensor


def _problem(rows: int, dimension: int, delta: float, dtype: torch.dtype, generator: torch.Generator) -> Problem:
    """Random draft means, random unit directions and sigmas per row; ``target = draft + sigma delta e``."""
    draft_mean = 2.0 * torch.randn(rows, dimension, generator=generator, dtype=torch.float64)
    direction = torch.randn(rows, dimension, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    sigma = 0.5 + 1.5 * torch.rand(rows, generator=generator, dtype=torch.float64)
    target_mean = draft_mean + (sigma * delta)[:, None] * direction
    return Problem(target_mean=target_mean.to(dtype), draft_mean=draft_mean.to(dtype), sigma=sigma.to(dtype))


@dataclass(frozen=True)
class Standardized:
    """A residual draw in its rank-1 frame, computed independently of the sampler, in float64.

    Attributes
    ----------
    delta : ndarray, shape (B,)
        ``|mu - nu| / sigma`` of each row (from the means actually passed, e.g. after float32 rounding).
    direction : ndarray, shape (B, d)
        Unit ``e`` of each row.
    along : ndarray, shape (B,)
        ``<x - nu, e> / sigma``.
    orthogonal : ndarray, shape (B, d)
        ``(x - nu) / sigma - along e``.
    """

    delta: FloatArray
    direction: FloatArray
    along: FloatArray
    orthogonal: FloatArray


def _standardize(samples: torch.Tensor, problem: Problem) -> Standardized:
    """Rank-1 coordinates of ``samples`` relative to ``problem``, in float64 numpy."""
    target = problem.target_mean.double().numpy()
    draft = problem.draft_mean.double().numpy()
    sigma = problem.sigma.double().numpy()[:, None]
    gap = (target - draft) / sigma
    delta = np.linalg.norm(gap, axis=1)
    direction = gap / delta[:, None]
    standardized = (samples.double().numpy() - draft) / sigma
    along = np.einsum("ij,ij->i", standardized, direction)
    return Standardized(delta, direction, along, standardized - along[:, None] * direction)


def _residual_cdf(along: FloatArray, weight: float, delta: FloatArray | float) -> FloatArray:
    """CDF of the 1-D residual law, ``1 - exp(residual_log_survival)``, elementwise (``delta`` per row, or shared)."""
    return np.asarray(-np.expm1(residual_log_survival(along, weight, delta)))


def _scalar_ks_pvalue(coordinates: Standardized, weight: float) -> float:
    """KS p-value of the scalar along e against the residual law with weight ``weight``.

    Each row's scalar goes through its own row's CDF (probability integral transform) and the result is tested
    against U(0, 1). When every row has the same ``delta`` this is exactly ``kstest(along, cdf)``; with float32
    means the rows' ``delta`` differ in the last bits, and the transform keeps the test exact.
    """
    transformed = _residual_cdf(coordinates.along, weight, coordinates.delta)
    return float(stats.kstest(transformed, "uniform").pvalue)


def _scalar_ks_pvalue_callable(coordinates: Standardized, weight: float, delta: float) -> float:
    """``scipy.stats.kstest`` with the residual CDF as a callable, for rows sharing one ``delta``."""
    return float(
        stats.kstest(coordinates.along, lambda values: _residual_cdf(values, weight, np.float64(delta))).pvalue
    )


def _fixed_directions(dimension: int, seed: int) -> FloatArray:
    """``PROJECTIONS`` fixed random unit vectors in R^d."""
    directions = np.random.default_rng(seed).standard_normal((PROJECTIONS, dimension))
    return np.asarray(directions / np.linalg.norm(directions, axis=1, keepdims=True))


def _orthogonal_pvalues(coordinates: Standardized, seed: int) -> list[float]:
    """KS p-values of the orthogonal part: ``PROJECTIONS`` projections ~ N(0, 1) and ``|z_perp|^2 ~ chi2(d - 1)``.

    Each fixed direction ``v`` is projected, row by row, on the complement of that row's ``e`` and normalized, so
    ``<z_perp, v_perp>`` is exactly N(0, 1) under the null.
    """
    dimension = coordinates.direction.shape[1]
    pvalues = []
    for fixed in _fixed_directions(dimension, seed):
        along_e = coordinates.direction @ fixed
        complement = fixed[None, :] - along_e[:, None] * coordinates.direction
        complement /= np.linalg.norm(complement, axis=1, keepdims=True)
        projection = np.einsum("ij,ij->i", coordinates.orthogonal, complement)
        pvalues.append(float(stats.kstest(projection, "norm").pvalue))
    squared_norm = np.einsum("ij,ij->i", coordinates.orthogonal, coordinates.orthogonal)
    pvalues.append(float(stats.kstest(squared_norm, stats.chi2(dimension - 1).cdf).pvalue))
    return pvalues


@dataclass(frozen=True)
class Draws:
    """Residual draws of one configuration with their frame."""

    problem: Problem
    coordinates: Standardized


@functools.cache
def _inverse_cdf_draws(index: int) -> Draws:
    """``SAMPLES`` inverse-CDF residual draws of ``CONFIGURATIONS[index]`` (cached: the law tests share them)."""
    dimension, weight, delta, dtype = CONFIGURATIONS[index]
    generator = _generator(SEED_LAW, index)
    problem = _problem(SAMPLES, dimension, delta, dtype, generator)
    uniforms = torch.rand(SAMPLES, generator=generator, dtype=torch.float64)
    noise = torch.randn(SAMPLES, dimension, generator=generator, dtype=torch.float64).to(dtype)
    samples = sample_weighted_residual(
        problem.target_mean,
        problem.draft_mean,
        problem.sigma,
        torch.tensor(np.log(weight), dtype=torch.float64),
        uniforms=uniforms,
        noise=noise,
    )
    assert samples.dtype == dtype
    assert samples.shape == (SAMPLES, dimension)
    return Draws(problem, _standardize(samples, problem))


# --------------------------------------------------------------------------------------------------------------------
# The reference CDF against an independent high-precision evaluation
# --------------------------------------------------------------------------------------------------------------------


def _survival_mpmath(x: float, weight: float, delta: float) -> float:
    """``P(S > x)`` of the residual law from the closed form with 80-digit arithmetic."""
    with mpmath.workdps(80):
        w, gap = mpmath.mpf(weight), mpmath.mpf(delta)
        threshold = gap / 2 - mpmath.log(w) / gap
        point = max(mpmath.mpf(x), threshold)

        def tail(at: mpmath.mpf) -> mpmath.mpf:
            return w * mpmath.ncdf(gap - at) - mpmath.ncdf(-at)

        return float(mpmath.log(tail(point) / tail(threshold)))


@pytest.mark.parametrize(("weight", "delta"), list(itertools.product(WEIGHTS, DELTAS)))
def test_reference_survival_matches_mpmath(weight: float, delta: float) -> None:
    threshold = 0.5 * delta - np.log(weight) / delta
    scale = 1.0 / max(1.0, threshold)
    points = threshold + scale * np.array([-1.0, 0.0, 1e-3, 0.1, 0.5, 1.0, 3.0, 6.0])
    computed = residual_log_survival(points, weight, delta)
    expected = np.array([_survival_mpmath(point, weight, delta) for point in points])
    np.testing.assert_allclose(computed, expected, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# Law of the inverse-CDF sampler
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.statistical
def test_inverse_cdf_scalar_follows_residual_law() -> None:
    # Bonferroni over the 54 configurations: each KS test at ALPHA / 54, critical distance 0.0186 at n = 20000;
    # n = 20000 detects a KS distance of 0.028 in any one configuration with power > 0.99.
    comparisons = len(CONFIGURATIONS)
    failures = []
    for index, (dimension, weight, delta, dtype) in enumerate(CONFIGURATIONS):
        coordinates = _inverse_cdf_draws(index).coordinates
        assert np.all(coordinates.along > 0.5 * coordinates.delta - np.log(weight) / coordinates.delta - 1e-6)
        pvalue = _scalar_ks_pvalue(coordinates, weight)
        if pvalue < ALPHA / comparisons:
            failures.append((dimension, weight, delta, dtype, pvalue))
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.statistical
def test_inverse_cdf_scalar_with_callable_cdf() -> None:
    # float64 means, rows sharing delta to rounding: kstest(along, cdf) directly. Bonferroni over 27 configurations;
    # n = 20000 detects a KS distance of 0.028 with power > 0.99.
    indices = [index for index, configuration in enumerate(CONFIGURATIONS) if configuration[3] == torch.float64]
    failures = []
    for index in indices:
        dimension, weight, delta, _ = CONFIGURATIONS[index]
        coordinates = _inverse_cdf_draws(index).coordinates
        np.testing.assert_allclose(coordinates.delta, delta, rtol=1e-12)
        pvalue = _scalar_ks_pvalue_callable(coordinates, weight, delta)
        if pvalue < ALPHA / len(indices):
            failures.append((dimension, weight, delta, pvalue))
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.statistical
def test_inverse_cdf_orthogonal_part_is_standard_normal() -> None:
    # Per configuration with d > 1: 3 fixed-direction projections ~ N(0, 1) and |z_perp|^2 ~ chi2(d - 1), so
    # 36 x 4 = 144 KS tests at ALPHA / 144 (critical distance 0.0193); n = 20000 detects a KS distance of 0.029 in
    # any one of them with power > 0.99 (e.g. a 2% error in the noise scale in d = 64, see the negative control).
    # For d = 1 the complement is {0}: the orthogonal part must vanish.
    multi = [index for index, configuration in enumerate(CONFIGURATIONS) if configuration[0] > 1]
    comparisons = len(multi) * (PROJECTIONS + 1)
    failures = []
    for index, (dimension, weight, delta, dtype) in enumerate(CONFIGURATIONS):
        coordinates = _inverse_cdf_draws(index).coordinates
        # z_perp is orthogonal to e (to the rounding of the output dtype, relative to the sample's scale).
        tolerance = 1e-10 if dtype == torch.float64 else 1e-4 * max(1.0, float(np.max(np.abs(coordinates.along))))
        assert np.max(np.abs(np.einsum("ij,ij->i", coordinates.orthogonal, coordinates.direction))) < tolerance
        if dimension == 1:
            assert np.max(np.abs(coordinates.orthogonal)) < tolerance
            continue
        for pvalue in _orthogonal_pvalues(coordinates, SEED_LAW + index):
            if pvalue < ALPHA / comparisons:
                failures.append((dimension, weight, delta, dtype, pvalue))
    assert not failures, failures


# --------------------------------------------------------------------------------------------------------------------
# Negative controls: the same tests must reject deliberately wrong draws
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.statistical
def test_negative_control_unweighted_residual_is_rejected() -> None:
    # The residual drawn without its weight (log_weight = 0) against the w = 0.3, delta = 0.5 law: the supports start
    # at s* = 0.25 and 2.66, KS distance ~ 1; n = 20000 rejects at ALPHA with power ~ 1.
    weight, delta, dimension = 0.3, 0.5, 8
    generator = _generator(SEED_NEGATIVE_WEIGHT)
    problem = _problem(SAMPLES, dimension, delta, torch.float64, generator)
    uniforms = torch.rand(SAMPLES, generator=generator, dtype=torch.float64)
    noise = torch.randn(SAMPLES, dimension, generator=generator, dtype=torch.float64)
    arguments = (problem.target_mean, problem.draft_mean, problem.sigma)
    wrong = sample_weighted_residual(*arguments, torch.tensor(0.0, dtype=torch.float64), uniforms=uniforms, noise=noise)
    right = sample_weighted_residual(
        *arguments, torch.tensor(np.log(weight), dtype=torch.float64), uniforms=uniforms, noise=noise
    )
    assert _scalar_ks_pvalue(_standardize(wrong, problem), weight) < ALPHA
    assert _scalar_ks_pvalue_callable(_standardize(wrong, problem), weight, delta) < ALPHA
    assert _scalar_ks_pvalue(_standardize(right, problem), weight) >= ALPHA


@pytest.mark.statistical
def test_negative_control_plain_target_is_rejected() -> None:
    # Draws of the plain target N(mu, sigma^2 I) against the residual law (w = 1, delta = 0.5): the target puts
    # Phi(-0.25) = 0.40 of its mass below s* = 0.25 where the residual has none, KS distance >= 0.40; n = 20000
    # rejects at ALPHA with power ~ 1.
    weight, delta, dimension = 1.0, 0.5, 8
    generator = _generator(SEED_NEGATIVE_TARGET)
    problem = _problem(SAMPLES, dimension, delta, torch.float64, generator)
    noise = torch.randn(SAMPLES, dimension, generator=generator, dtype=torch.float64)
    target_draws = problem.target_mean + problem.sigma[:, None] * noise
    coordinates = _standardize(target_draws, problem)
    assert _scalar_ks_pvalue(coordinates, weight) < ALPHA
    # Its orthogonal part is right: the orthogonal test alone must not flag it.
    assert min(_orthogonal_pvalues(coordinates, SEED_NEGATIVE_TARGET)) >= ALPHA / (PROJECTIONS + 1)


@pytest.mark.statistical
def test_negative_control_wrong_orthogonal_scale_is_rejected() -> None:
    # Noise with standard deviation 1.02 instead of 1 (d = 64): |z_perp|^2 has mean 65.5 instead of 63, a shift of
    # 0.22 standard deviations, KS distance ~ 0.09; n = 20000 rejects at ALPHA / 4 with power ~ 1.
    weight, delta, dimension = 0.3, 0.5, 64
    generator = _generator(SEED_NEGATIVE_ORTHOGONAL)
    problem = _problem(SAMPLES, dimension, delta, torch.float64, generator)
    uniforms = torch.rand(SAMPLES, generator=generator, dtype=torch.float64)
    noise = 1.02 * torch.randn(SAMPLES, dimension, generator=generator, dtype=torch.float64)
    samples = sample_weighted_residual(
        problem.target_mean,
        problem.draft_mean,
        problem.sigma,
        torch.tensor(np.log(weight), dtype=torch.float64),
        uniforms=uniforms,
        noise=noise,
    )
    coordinates = _standardize(samples, problem)
    assert min(_orthogonal_pvalues(coordinates, SEED_NEGATIVE_ORTHOGONAL)) < ALPHA / (PROJECTIONS + 1)
    # The scalar along e does not see the noise: that test passes.
    assert _scalar_ks_pvalue(coordinates, weight) >= ALPHA


# --------------------------------------------------------------------------------------------------------------------
# Inverse CDF vs rejection
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RejectionDraws:
    """Rejection-sampler draws of one configuration and its proposal counts."""

    coordinates: Standardized
    proposals: FloatArray
    acceptance_rate: FloatArray
    inverse_cdf: Standardized


@functools.cache
def _rejection_draws(index: int) -> RejectionDraws:
    weight, delta = REJECTION_CONFIGURATIONS[index]
    generator = _generator(SEED_REJECTION, index)
    problem = _problem(SAMPLES, REJECTION_DIMENSION, delta, torch.float64, generator)
    log_weight = torch.tensor(np.log(weight), dtype=torch.float64)
    arguments = (problem.target_mean, problem.draft_mean, problem.sigma, log_weight)
    # Independent streams for the two arms.
    noise = torch.randn(SAMPLES, REJECTION_DIMENSION, generator=generator, dtype=torch.float64)
    uniforms = torch.rand(SAMPLES, generator=generator, dtype=torch.float64)
    noise_inverse = torch.randn(SAMPLES, REJECTION_DIMENSION, generator=generator, dtype=torch.float64)
    rng = np.random.default_rng([SEED_REJECTION, index])
    result = sample_weighted_residual_rejection(*arguments, generator=rng, noise=noise)
    inverse = sample_weighted_residual(*arguments, uniforms=uniforms, noise=noise_inverse)
    return RejectionDraws(
        coordinates=_standardize(result.samples, problem),
        proposals=result.proposals.double().numpy(),
        acceptance_rate=result.acceptance_rate.double().numpy(),
        inverse_cdf=_standardize(inverse, problem),
    )


@pytest.mark.slow
@pytest.mark.statistical
def test_rejection_and_inverse_cdf_pass_the_same_law_test() -> None:
    # 7 configurations x 2 samplers x (scalar + 4 orthogonal) = 70 KS tests at ALPHA / 70 (critical distance 0.0190);
    # n = 20000 detects a KS distance of 0.028 with power > 0.99.
    comparisons = len(REJECTION_CONFIGURATIONS) * 2 * (PROJECTIONS + 2)
    failures = []
    for index, (weight, delta) in enumerate(REJECTION_CONFIGURATIONS):
        draws = _rejection_draws(index)
        for method, coordinates in (("rejection", draws.coordinates), ("inverse_cdf", draws.inverse_cdf)):
            pvalues = [_scalar_ks_pvalue(coordinates, weight), *_orthogonal_pvalues(coordinates, SEED_REJECTION)]
            if min(pvalues) < ALPHA / comparisons:
                failures.append((method, weight, delta, pvalues))
    assert not failures, failures


@pytest.mark.statistical
def test_rejection_mean_proposals_match_acceptance_rate() -> None:
    # The number of proposals is geometric with success probability a: mean 1/a, variance (1 - a)/a^2. Bonferroni
    # over 7 configurations, K = z_threshold(ALPHA, 7) = 4.3; the relative standard error of the mean is
    # sqrt((1 - a) / n) <= 0.0071, so n = 20000 detects a 5% relative bias in the mean count with power > 0.99.
    # Negative control: the rate of the untruncated envelope, R / w, must be rejected by the same z test.
    threshold = z_threshold(ALPHA, len(REJECTION_CONFIGURATIONS))
    for index, (weight, delta) in enumerate(REJECTION_CONFIGURATIONS):
        draws = _rejection_draws(index)
        rate = draws.acceptance_rate
        np.testing.assert_allclose(
            rate, residual_rejection_acceptance_rate(np.log(weight), np.asarray(delta)), rtol=1e-9
        )
        expected = float(np.mean(1.0 / rate))
        stderr = float(np.sqrt(np.sum((1.0 - rate) / rate**2))) / rate.size
        z = (float(np.mean(draws.proposals)) - expected) / stderr
        assert abs(z) < threshold, (weight, delta, z)
        assert np.all(draws.proposals >= 1)
        # Wrong rate: R / w (forgetting the truncation of the N(delta, 1) envelope at s*).
        wrong_rate = rate * float(stats.norm.cdf(0.5 * delta + np.log(weight) / delta))
        wrong_expected = float(np.mean(1.0 / wrong_rate))
        wrong_stderr = float(np.sqrt(np.sum((1.0 - wrong_rate) / wrong_rate**2))) / rate.size
        assert abs((float(np.mean(draws.proposals)) - wrong_expected) / wrong_stderr) > threshold, (weight, delta)


def _acceptance_rate_mpmath(weight: float, delta: float) -> float:
    """``R / (w Phi(delta - s*))`` with ``R = w Phi(u) - Phi(u - delta)``, ``u = delta - s*``, in 80 digits."""
    with mpmath.workdps(80):
        w, gap = mpmath.mpf(weight), mpmath.mpf(delta)
        u = gap / 2 + mpmath.log(w) / gap
        mass = w * mpmath.ncdf(u) - mpmath.ncdf(u - gap)
        return float(mass / (w * mpmath.ncdf(u)))


@pytest.mark.parametrize(
    ("weight", "delta"),
    [(1.0, 0.05), (1.0, 0.5), (1.0, 2.0), (0.3, 0.05), (0.3, 0.5), (1e-3, 0.05), (1e-3, 2.0), (0.2, 0.05), (0.9, 10.0)],
)
def test_rejection_acceptance_rate_matches_mpmath(weight: float, delta: float) -> None:
    computed = float(residual_rejection_acceptance_rate(np.array(np.log(weight)), np.array(delta)))
    assert computed == pytest.approx(_acceptance_rate_mpmath(weight, delta), rel=1e-9)


def test_rejection_acceptance_rate_vectorizes() -> None:
    weights = np.array([1.0, 0.3, 1e-3])
    deltas = np.array([0.5, 2.0, 0.05])
    computed = residual_rejection_acceptance_rate(np.log(weights), deltas)
    expected = [_acceptance_rate_mpmath(float(w), float(d)) for w, d in zip(weights, deltas, strict=True)]
    np.testing.assert_allclose(computed, expected, rtol=1e-9)


# --------------------------------------------------------------------------------------------------------------------
# Rank-1 frame and reflection
# --------------------------------------------------------------------------------------------------------------------


def _random_batch(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("event", [(1,), (5,), (2, 3, 4)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rank_one_frame_gap_and_unit_direction(event: tuple[int, ...], dtype: torch.dtype) -> None:
    batch = 6
    target = _random_batch((batch, *event), dtype, SEED_UNIT)
    draft = _random_batch((batch, *event), dtype, SEED_UNIT + 1)
    draft[2] = target[2]  # equal means in one row
    sigma = torch.linspace(0.3, 2.0, batch, dtype=dtype)
    frame = rank_one_frame(target, draft, sigma)
    assert frame.delta.dtype == torch.float64 and frame.direction.dtype == torch.float64
    assert frame.delta.shape == (batch,) and frame.direction.shape == (batch, *event)
    gap = (target.double() - draft.double()) / sigma.double().reshape(-1, *[1] * len(event))
    expected_delta = gap.flatten(1).norm(dim=1)
    torch.testing.assert_close(frame.delta, expected_delta, rtol=1e-12, atol=0.0)
    # mu - nu = sigma delta e
    reconstructed = frame.delta.reshape(-1, *[1] * len(event)) * frame.direction
    torch.testing.assert_close(reconstructed, gap, rtol=1e-12, atol=1e-14)
    norms = frame.direction.flatten(1).norm(dim=1)
    assert frame.delta[2] == 0.0
    assert torch.all(frame.direction[2] == 0.0)
    others = torch.arange(batch) != 2
    torch.testing.assert_close(norms[others], torch.ones(batch - 1, dtype=torch.float64), rtol=1e-14, atol=0.0)


class _Tolerance(TypedDict):
    """Keyword tolerances of ``torch.testing.assert_close``."""

    rtol: float
    atol: float


@pytest.mark.parametrize("event", [(1,), (5,), (2, 3, 4)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reflect_properties(event: tuple[int, ...], dtype: torch.dtype) -> None:
    batch = 7
    tolerance: _Tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    noise = _random_batch((batch, *event), dtype, SEED_UNIT + 2)
    frame = rank_one_frame(
        _random_batch((batch, *event), torch.float64, SEED_UNIT + 3),
        _random_batch((batch, *event), torch.float64, SEED_UNIT + 4),
        torch.ones(batch, dtype=torch.float64),
    )
    direction = frame.direction
    reflected = reflect(noise, direction)
    assert reflected.dtype == dtype and reflected.shape == noise.shape
    # involution
    torch.testing.assert_close(reflect(reflected, direction), noise, **tolerance)
    # norm preserving
    torch.testing.assert_close(reflected.flatten(1).norm(dim=1), noise.flatten(1).norm(dim=1), **tolerance)
    # flips the component along e and keeps the orthogonal part
    direction_cast = direction.to(dtype)
    along = (noise * direction_cast).flatten(1).sum(dim=1)
    along_reflected = (reflected * direction_cast).flatten(1).sum(dim=1)
    torch.testing.assert_close(along_reflected, -along, **tolerance)
    shape = (-1, *[1] * len(event))
    orthogonal = noise - along.reshape(shape) * direction_cast
    orthogonal_reflected = reflected - along_reflected.reshape(shape) * direction_cast
    torch.testing.assert_close(orthogonal_reflected, orthogonal, **tolerance)


def test_reflect_zero_direction_leaves_noise_unchanged() -> None:
    noise = _random_batch((4, 3, 2), torch.float32, SEED_UNIT + 5)
    assert torch.equal(reflect(noise, torch.zeros(4, 3, 2, dtype=torch.float64)), noise)
    # mixed: a zero row inside a batch of unit rows
    frame = rank_one_frame(noise.double() + 1.0, noise.double(), torch.ones(4, dtype=torch.float64))
    direction = frame.direction.clone()
    direction[1] = 0.0
    assert torch.equal(reflect(noise, direction)[1], noise[1])


# --------------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------------


def _small_problem(dtype: torch.dtype = torch.float64) -> tuple[Problem, torch.Tensor, torch.Tensor]:
    generator = _generator(SEED_UNIT, 1)
    problem = _problem(5, 4, 0.7, dtype, generator)
    uniforms = torch.rand(5, generator=generator, dtype=torch.float64)
    noise = torch.randn(5, 4, generator=generator, dtype=torch.float64).to(dtype)
    return problem, uniforms, noise


def test_equal_means_raise() -> None:
    problem, uniforms, noise = _small_problem()
    draft = problem.draft_mean.clone()
    draft[3] = problem.target_mean[3]
    log_weight = torch.tensor(-0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="delta"):
        sample_weighted_residual(problem.target_mean, draft, problem.sigma, log_weight, uniforms=uniforms, noise=noise)
    with pytest.raises(ValueError, match="delta"):
        sample_weighted_residual_rejection(
            problem.target_mean,
            draft,
            problem.sigma,
            log_weight,
            generator=np.random.default_rng(0),
            noise=noise,
        )


@pytest.mark.parametrize("case", ["sigma zero", "sigma negative", "sigma nan", "sigma inf", "mean nan", "mean inf"])
def test_bad_sigma_or_means_raise_rather_than_give_nan(case: str) -> None:
    problem, uniforms, noise = _small_problem()
    sigma, target = problem.sigma.clone(), problem.target_mean.clone()
    values = {"zero": 0.0, "negative": -1.0, "nan": float("nan"), "inf": float("inf")}
    if case.startswith("sigma"):
        sigma[1] = values[case.split()[1]]
    else:
        target[1, 0] = values[case.split()[1]]
    log_weight = torch.tensor(-0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"sigma|finite"):
        sample_weighted_residual(target, problem.draft_mean, sigma, log_weight, uniforms=uniforms, noise=noise)
    with pytest.raises(ValueError, match=r"sigma|finite"):
        sample_weighted_residual_rejection(
            target, problem.draft_mean, sigma, log_weight, generator=np.random.default_rng(0), noise=noise
        )


@pytest.mark.parametrize("bad", [1.0, -1e-12, 1.5, float("nan")])
def test_uniforms_outside_unit_interval_raise(bad: float) -> None:
    problem, uniforms, noise = _small_problem()
    uniforms = uniforms.clone()
    uniforms[2] = bad
    with pytest.raises(ValueError):
        sample_weighted_residual(
            problem.target_mean,
            problem.draft_mean,
            problem.sigma,
            torch.tensor(0.0, dtype=torch.float64),
            uniforms=uniforms,
            noise=noise,
        )


def test_uniform_zero_is_accepted_and_lands_on_the_threshold() -> None:
    problem, uniforms, noise = _small_problem()
    uniforms = uniforms.clone()
    uniforms[0] = 0.0
    log_weight = torch.tensor(np.log(0.3), dtype=torch.float64)
    samples = sample_weighted_residual(
        problem.target_mean, problem.draft_mean, problem.sigma, log_weight, uniforms=uniforms, noise=noise
    )
    coordinates = _standardize(samples, problem)
    threshold = 0.5 * coordinates.delta[0] - np.log(0.3) / coordinates.delta[0]
    assert coordinates.along[0] == pytest.approx(threshold, rel=1e-10)


@pytest.mark.parametrize("log_weight", [0.1, float("-inf")])
def test_invalid_weight_raises(log_weight: float) -> None:
    problem, uniforms, noise = _small_problem()
    with pytest.raises(ValueError):
        sample_weighted_residual(
            problem.target_mean,
            problem.draft_mean,
            problem.sigma,
            torch.tensor(log_weight, dtype=torch.float64),
            uniforms=uniforms,
            noise=noise,
        )


# --------------------------------------------------------------------------------------------------------------------
# Determinism and row independence
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_inverse_cdf_is_deterministic_and_row_independent(dtype: torch.dtype) -> None:
    problem, uniforms, noise = _small_problem(dtype)
    # one row with a tiny gap, one with a huge one, different weights per row
    draft = problem.draft_mean.clone()
    target = problem.target_mean.clone()
    target[0] = draft[0] + 0.01 * (target[0] - draft[0])
    target[4] = draft[4] + 10.0 * (target[4] - draft[4])
    log_weight = torch.log(torch.tensor([1.0, 0.3, 1e-3, 0.5, 1e-6], dtype=torch.float64))
    first = sample_weighted_residual(target, draft, problem.sigma, log_weight, uniforms=uniforms, noise=noise)
    second = sample_weighted_residual(
        target.clone(), draft.clone(), problem.sigma.clone(), log_weight.clone(), uniforms=uniforms.clone(), noise=noise
    )
    assert first.dtype == dtype
    assert torch.equal(first, second)
    for row in range(5):
        alone = sample_weighted_residual(
            target[row : row + 1],
            draft[row : row + 1],
            problem.sigma[row : row + 1],
            log_weight[row : row + 1],
            uniforms=uniforms[row : row + 1],
            noise=noise[row : row + 1],
        )
        assert torch.equal(alone[0], first[row]), row
    # changing another row's inputs leaves this row unchanged
    uniforms_changed = uniforms.clone()
    uniforms_changed[1] = 0.999
    noise_changed = noise.clone()
    noise_changed[1] = -noise_changed[1]
    changed = sample_weighted_residual(
        target, draft, problem.sigma, log_weight, uniforms=uniforms_changed, noise=noise_changed
    )
    keep = torch.arange(5) != 1
    assert torch.equal(changed[keep], first[keep])
    assert not torch.equal(changed[1], first[1])


def test_rejection_is_deterministic_given_the_generator() -> None:
    problem, _, noise = _small_problem()
    log_weight = torch.tensor(np.log(0.3), dtype=torch.float64)
    arguments = (problem.target_mean, problem.draft_mean, problem.sigma, log_weight)
    first = sample_weighted_residual_rejection(*arguments, generator=np.random.default_rng(7), noise=noise)
    second = sample_weighted_residual_rejection(*arguments, generator=np.random.default_rng(7), noise=noise)
    assert torch.equal(first.samples, second.samples)
    assert torch.equal(first.proposals, second.proposals)
    assert torch.equal(first.acceptance_rate, second.acceptance_rate)
    # the orthogonal part is the one of the given noise, in both samplers
    coordinates = _standardize(first.samples, problem)
    noise_numpy = noise.numpy()
    expected = noise_numpy - np.einsum("ij,ij->i", noise_numpy, coordinates.direction)[:, None] * coordinates.direction
    np.testing.assert_allclose(coordinates.orthogonal, expected, rtol=1e-10, atol=1e-10)


def test_rejection_gives_up_after_max_proposals() -> None:
    problem, _, noise = _small_problem()
    draft = problem.draft_mean
    target = draft + 1e-3 * (problem.target_mean - draft)  # delta = 7e-4: acceptance ~ 1e-3 per proposal
    with pytest.raises(RuntimeError, match="max_proposals"):
        sample_weighted_residual_rejection(
            target,
            draft,
            problem.sigma,
            torch.tensor(np.log(1e-3), dtype=torch.float64),
            generator=np.random.default_rng(0),
            noise=noise,
            max_proposals=3,
        )


def test_a_residual_draw_is_bitwise_the_same_in_any_batch() -> None:
    # A row's draw must not depend on where it falls in a CPU kernel's vectorized loop (see residual._vector_padded):
    # without the padding, rows of a batch of 37 differ in their last bit from the same rows drawn alone.
    from specdiff.residual import weighted_residual_from_target

    generator = torch.Generator().manual_seed(12)
    batch = 37
    draft = torch.randn(batch, 5, dtype=torch.float64, generator=generator)
    target = draft + torch.rand(batch, 1, dtype=torch.float64, generator=generator) * torch.randn(
        batch, 5, dtype=torch.float64, generator=generator
    )
    sigma = 0.5 + torch.rand(batch, dtype=torch.float64, generator=generator)
    log_weight = -3.0 * torch.rand(batch, dtype=torch.float64, generator=generator)
    uniforms = torch.rand(batch, dtype=torch.float64, generator=generator)
    noise = torch.randn(batch, 5, dtype=torch.float64, generator=generator)
    arguments = (target, draft, sigma, log_weight, uniforms, noise)
    full = weighted_residual_from_target(*arguments)
    for size in (1, 2, 3, 5, 8, 17):
        assert torch.equal(weighted_residual_from_target(*(value[:size] for value in arguments)), full[:size])
    for row in range(batch):
        alone = weighted_residual_from_target(*(value[row : row + 1] for value in arguments))
        assert torch.equal(alone[0], full[row]), row
