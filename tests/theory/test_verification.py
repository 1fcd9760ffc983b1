"""Tests for theory.verification: acceptance profiles of token and block verification."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from tests.statistics import ALPHA, z_threshold
from theory.gaussian import acceptance_probability
from theory.verification import (
    acceptance_profile,
    block_profile_grid,
    constant_gap_block_profile,
    expected_accepted_length,
)

# Each Monte-Carlo test uses the suite-wide ALPHA (tests/statistics.py, 1e-4 per test), Bonferroni inside it.
MONTE_CARLO_DRAWS = 1_000_000
MIXED_WINDOW = np.array([0.3, 1.2, 0.05, 0.8, 2.0, 0.4, 0.6, 1.5])


def _two_step_block_reference(first: float, second: float) -> float:
    """E[w_2] by 1-D adaptive quadrature over s_1 of the closed-form inner expectation over s_2.

    Given c = min(1, r_1), E[min(1, c r_2)] = Phibar(s*) + c Phi(s* - delta_2), s* = (delta_2^2/2 - ln c)/delta_2.
    """

    def integrand(s1: float) -> float:
        log_c = min(0.0, first * s1 - 0.5 * first**2)
        threshold = (0.5 * second**2 - log_c) / second
        inner = stats.norm.sf(threshold) + np.exp(log_c) * stats.norm.cdf(threshold - second)
        return float(inner * stats.norm.pdf(s1))

    kink = first / 2.0
    pieces = [(-40.0, kink), (kink, 40.0)]
    return sum(integrate.quad(integrand, a, b, epsabs=0.0, epsrel=1e-12, limit=200)[0] for a, b in pieces)


# ---------------------------------------------------------------- exact references


@pytest.mark.parametrize("rule", ["token", "block"])
@pytest.mark.parametrize("delta", [1e-12, 0.01, 0.5, 1.0, 3.0, 10.0, 50.0])
def test_one_step_is_alpha(rule: str, delta: float) -> None:
    profile = acceptance_profile([delta], rule)
    assert profile.shape == (1,)
    np.testing.assert_allclose(profile[0], acceptance_probability(delta), rtol=1e-12)


@pytest.mark.parametrize(
    "deltas", [(0.3, 1.7), (2.0, 0.1), (1.0, 1.0), (0.01, 3.0), (3.0, 0.01), (5.0, 0.5), (1e-12, 1.0)]
)
def test_two_step_block_matches_quadrature(deltas: tuple[float, float]) -> None:
    grid = block_profile_grid(deltas)[1]
    reference = _two_step_block_reference(*deltas)
    np.testing.assert_allclose(grid, reference, rtol=1e-7)


def test_two_step_constant_closed_form() -> None:
    # Spitzer recursion at n = 2: (alpha(delta)^2 + alpha(sqrt 2 delta)) / 2.
    delta = 0.7
    expected = 0.5 * (acceptance_probability(delta) ** 2 + acceptance_probability(np.sqrt(2.0) * delta))
    np.testing.assert_allclose(constant_gap_block_profile(delta, 2)[1], expected, rtol=1e-14)
    np.testing.assert_allclose(constant_gap_block_profile(delta, 2)[1], _two_step_block_reference(delta, delta))


@pytest.mark.parametrize("delta", [1e-12, 0.001, 0.05, 0.2, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("window", [3, 16, 32])
def test_grid_matches_exact_constant_gap_recursion(delta: float, window: int) -> None:
    exact = constant_gap_block_profile(delta, window)
    grid = block_profile_grid(np.full(window, delta))
    # Relative accuracy 1e-4 where P(tau >= i) > 1e-30; deep-tail values (~1e-46 at delta = 5, L = 32) to 1e-3.
    representable = exact > 1e-30
    np.testing.assert_allclose(grid[representable], exact[representable], rtol=1e-4)
    np.testing.assert_allclose(grid, exact, rtol=1e-3)
    np.testing.assert_allclose(grid.sum(), exact.sum(), rtol=1e-6)


@pytest.mark.parametrize("delta", [20.0, 50.0])
def test_grid_keeps_relative_accuracy_for_huge_gaps(delta: float) -> None:
    exact = constant_gap_block_profile(delta, 2)
    grid = block_profile_grid([delta, delta])
    assert exact[1] > 0
    np.testing.assert_allclose(grid, exact, rtol=1e-3)


def test_grid_converges_on_a_mixed_window() -> None:
    deltas = np.array([1e-12, 0.02, 2.0, 0.3, 50.0, 0.7, 1e-12, 1.1])
    default = block_profile_grid(deltas)
    fine = block_profile_grid(deltas, cells=4800)
    np.testing.assert_allclose(default, fine, rtol=1e-4)


def test_zero_gap_accepts_everything() -> None:
    for rule in ("token", "block"):
        np.testing.assert_array_equal(acceptance_profile(np.zeros(5), rule), np.ones(5))
    # A zero-gap step leaves the law unchanged.
    np.testing.assert_allclose(
        acceptance_profile([0.0, 1.0, 0.0, 0.5], "block")[[1, 3]],
        acceptance_profile([1.0, 0.5], "block"),
        rtol=1e-6,
    )


def test_expected_accepted_length_is_the_sum() -> None:
    for rule in ("token", "block"):
        assert expected_accepted_length(MIXED_WINDOW, rule) == pytest.approx(
            acceptance_profile(MIXED_WINDOW, rule).sum(), rel=1e-15
        )
    np.testing.assert_allclose(
        expected_accepted_length(np.full(4, 0.5), "token"),
        sum(acceptance_probability(0.5) ** i for i in range(1, 5)),
    )


# ---------------------------------------------------------------- Monte Carlo


def _simulate_block_weights(deltas: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """w_i for i = 1..L on `draws` independent windows (docs/theory.md: reflected walk under the draft)."""
    rng = np.random.default_rng(seed)
    log_ratio = deltas * rng.standard_normal((draws, deltas.size)) - 0.5 * deltas**2
    log_weight = np.zeros(draws)
    weights = np.empty((draws, deltas.size))
    for i in range(deltas.size):
        log_weight = np.minimum(0.0, log_weight + log_ratio[:, i])
        weights[:, i] = np.exp(log_weight)
    return weights


def _max_abs_z(weights: np.ndarray, predicted: np.ndarray) -> float:
    standard_error = weights.std(axis=0, ddof=1) / np.sqrt(weights.shape[0])
    return float(np.max(np.abs(weights.mean(axis=0) - predicted) / standard_error))


@pytest.mark.statistical
def test_block_profile_matches_monte_carlo_and_rejects_wrong_profiles() -> None:
    # Bonferroni over the L steps: two-sided, total false-positive rate ALPHA. With n = 10^6 the standard error
    # is <= 5e-4, so any profile off by > K * 5e-4 ~ 2.3e-3 at some step is rejected (power ~ 1).
    critical = z_threshold(ALPHA, comparisons=MIXED_WINDOW.size)
    weights = _simulate_block_weights(MIXED_WINDOW, MONTE_CARLO_DRAWS, seed=20250101)
    assert _max_abs_z(weights, acceptance_profile(MIXED_WINDOW, "block")) < critical
    # Negative controls: the token profile, and E[min(1, prod r_k)] (no reflection at 0) = alpha(sqrt(sum delta^2)).
    token = acceptance_profile(MIXED_WINDOW, "token")
    no_reflection = acceptance_probability(np.sqrt(np.cumsum(MIXED_WINDOW**2)))
    assert _max_abs_z(weights, token) > critical
    assert _max_abs_z(weights, no_reflection) > critical


# ---------------------------------------------------------------- properties

gap = st.floats(min_value=0.0, max_value=4.0, allow_nan=False)
gaps = st.lists(gap, min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(gaps)
def test_profiles_are_probabilities_non_increasing_and_block_beats_token(values: list[float]) -> None:
    token = acceptance_profile(values, "token")
    block = acceptance_profile(values, "block")
    for profile in (token, block):
        assert profile.shape == (len(values),)
        assert np.all((profile >= 0) & (profile <= 1))
        assert np.all(np.diff(profile) <= 0)
    assert np.all(block >= token * (1 - 1e-6))


@settings(max_examples=40, deadline=None)
@given(gap, gap, st.integers(min_value=1, max_value=12))
def test_profiles_decrease_in_a_constant_gap(first: float, second: float, window: int) -> None:
    small, large = sorted((first, second))
    for rule in ("token", "block"):
        assert np.all(
            acceptance_profile(np.full(window, small), rule)
            >= acceptance_profile(np.full(window, large), rule) * (1 - 1e-12)
        )


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("deltas", [[], [[1.0, 2.0]], [-0.1, 1.0], [np.nan], [np.inf], [1.0, -np.inf]], ids=str)
def test_bad_deltas_raise(deltas: list) -> None:
    with pytest.raises(ValueError, match="deltas"):
        acceptance_profile(deltas, "block")


def test_unknown_rule_raises_naming_the_rules() -> None:
    with pytest.raises(ValueError, match=r"token.*block"):
        acceptance_profile([1.0], "chunk")
    with pytest.raises(ValueError, match="rule"):
        expected_accepted_length([1.0], "Token")
