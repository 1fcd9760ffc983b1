"""Tests for theory.linear_gaussian: closed-form marginals of an affine Gaussian chain."""

from __future__ import annotations

import numpy as np
import pytest

from tests.statistics import ALPHA, z_threshold
from theory.linear_gaussian import (
    GaussianMarginals,
    chain_marginals,
    isotropic_chain_marginals,
)

# Each Monte-Carlo test uses the suite-wide ALPHA (tests/statistics.py, 1e-4 per test), Bonferroni inside it.
DRAWS = 200_000


def _chain() -> tuple[np.ndarray, np.ndarray, list, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    dimension, steps = 3, 4
    transitions: list = [0.9, rng.normal(0.0, 0.5, (3, 3)) + np.eye(3), 1.1, rng.normal(0.0, 0.4, (3, 3))]
    root = rng.normal(size=(3, 3))
    return (
        rng.normal(size=dimension),
        root @ root.T * 0.3,
        transitions,
        rng.normal(size=(steps, dimension)),
        np.array([0.5, 0.2, 0.8, 0.3]),
    )


def _simulate(mean, covariance, transitions, offsets, sigmas, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dimension = mean.size
    x = rng.multivariate_normal(mean, covariance, size=draws)
    states = [x]
    for k, matrix in enumerate(transitions):
        matrix = matrix * np.eye(dimension) if np.ndim(matrix) == 0 else matrix
        x = x @ matrix.T + offsets[k] + sigmas[k] * rng.standard_normal((draws, dimension))
        states.append(x)
    return np.stack(states)  # (N + 1, draws, d)


def _max_abs_z(states: np.ndarray, marginals: GaussianMarginals) -> tuple[float, int]:
    """Largest |z| over coordinate means and second moments (x_i^2, x_i x_j) at every step, and how many tested."""
    draws = states.shape[1]
    z_scores = []
    for k in range(states.shape[0]):
        x, mean, covariance = states[k], marginals.means[k], marginals.covariances[k]
        # Means: variance of the sample mean is diag(S) / n.
        z_scores.append((x.mean(0) - mean) / np.sqrt(np.diag(covariance) / draws))
        # Centred products: E[(x_i - m_i)(x_j - m_j)] = S_ij, Var = S_ii S_jj + S_ij^2 (Gaussian).
        rows, cols = np.triu_indices(mean.size)
        centred = x - mean
        products = centred[:, rows] * centred[:, cols]
        target = covariance[rows, cols]
        variance = np.diag(covariance)[rows] * np.diag(covariance)[cols] + target**2
        z_scores.append((products.mean(0) - target) / np.sqrt(variance / draws))
    flat = np.concatenate(z_scores)
    return float(np.max(np.abs(flat))), flat.size


@pytest.mark.statistical
def test_marginals_match_monte_carlo_and_reject_a_wrong_sigma() -> None:
    mean, covariance, transitions, offsets, sigmas = _chain()
    states = _simulate(mean, covariance, transitions, offsets, sigmas, DRAWS, seed=11)
    marginals = chain_marginals(mean, covariance, transitions, offsets, sigmas)
    largest, tests = _max_abs_z(states, marginals)
    critical = z_threshold(ALPHA, comparisons=tests)
    assert largest < critical
    # Negative control: the closed form with one sigma doubled must be rejected by the same test.
    wrong = chain_marginals(mean, covariance, transitions, offsets, sigmas * np.array([1, 1, 2, 1]))
    assert _max_abs_z(states, wrong)[0] > critical


def test_fixed_start_scalar_chain_by_hand() -> None:
    # x_1 = 2 x_0 + 1 + 0.5 xi, x_2 = -x_1 + 0 + 1 xi from x_0 = 3 (fixed):
    # m = 3, 7, -7;  v = 0, 0.25, 0.25 + 1 = 1.25.
    marginals = chain_marginals([3.0], [[0.0]], [2.0, -1.0], [[1.0], [0.0]], [0.5, 1.0])
    np.testing.assert_allclose(marginals.means[:, 0], [3.0, 7.0, -7.0])
    np.testing.assert_allclose(marginals.covariances[:, 0, 0], [0.0, 0.25, 1.25])


def test_matrix_chain_by_hand() -> None:
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    scaling = np.diag([2.0, 0.5])
    marginals = chain_marginals([1.0, 0.0], np.diag([1.0, 4.0]), [rotation, scaling], np.zeros((2, 2)), [0.0, 1.0])
    np.testing.assert_allclose(marginals.means, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.5]])
    # Rotation swaps the variances: diag(4, 1); then diag(16, 0.25) + I.
    np.testing.assert_allclose(marginals.covariances[1], np.diag([4.0, 1.0]))
    np.testing.assert_allclose(marginals.covariances[2], np.diag([17.0, 1.25]))
    assert marginals.means.shape == (3, 2)
    assert marginals.covariances.shape == (3, 2, 2)


def test_isotropic_agrees_with_the_general_form() -> None:
    rng = np.random.default_rng(3)
    scales, sigmas, offsets = rng.uniform(0.5, 1.5, 6), rng.uniform(0.1, 1.0, 6), rng.normal(size=(6, 4))
    start = rng.normal(size=4)
    isotropic = isotropic_chain_marginals(start, 0.7, scales, offsets, sigmas)
    general = chain_marginals(start, 0.49 * np.eye(4), list(scales), offsets, sigmas)
    np.testing.assert_allclose(isotropic.means, general.means)
    np.testing.assert_allclose(general.covariances, isotropic.variances[:, None, None] * np.eye(4))
    # DDPM-like contraction a^2 v + sigma^2 with a^2 + sigma^2 = 1 keeps unit variance.
    unit = isotropic_chain_marginals(np.zeros(2), 1.0, np.full(5, 0.8), np.zeros((5, 2)), np.full(5, 0.6))
    np.testing.assert_allclose(unit.variances, np.ones(6))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: chain_marginals([0.0, 0.0], np.eye(3), [1.0], np.zeros((1, 2)), [1.0]), "initial_covariance"),
        (lambda: chain_marginals([0.0], [[1.0]], [np.eye(2)], np.zeros((1, 1)), [1.0]), "A\\[0\\]"),
        (lambda: chain_marginals([0.0], [[1.0]], [1.0], np.zeros((2, 1)), [1.0]), "offsets"),
        (lambda: chain_marginals([0.0], [[1.0]], [1.0], np.zeros((1, 1)), [-1.0]), "sigmas"),
        (lambda: chain_marginals([np.nan], [[1.0]], [1.0], np.zeros((1, 1)), [1.0]), "finite"),
        (lambda: chain_marginals([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]], [], np.zeros((0, 2)), []), "symmetric"),
        (lambda: isotropic_chain_marginals([0.0], -1.0, [1.0], np.zeros((1, 1)), [1.0]), "initial_scale"),
        (lambda: isotropic_chain_marginals([0.0], 1.0, [[1.0]], np.zeros((1, 1)), [1.0]), "transitions"),
    ],
)
def test_validation(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
