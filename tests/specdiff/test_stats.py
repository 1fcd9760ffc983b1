"""Tests of ``specdiff.stats``: the public tests users run on their own samplers (docs/design.md §5).

Size: under the null (both arms from ``N(0, I_8)``, each arm with its own random stream, the permutations and
directions with a third) the rejection rate at the level ``LEVEL = 0.1`` over ``REPLICATIONS`` seeds must match the
test's exact size within ``K * sqrt(size (1 - size) / REPLICATIONS)``, ``K = z_threshold(ALPHA)``: each size test
is one comparison with false-positive rate ``ALPHA`` (tests/statistics.py). The exact size is ``LEVEL`` for the
permutation tests (``P = 99`` permutations make ``{p <= 0.1}`` an event of probability exactly 0.1) and for the
one-sample KS test (continuous law); the two-sample KS statistic of two samples of 100 is discrete, so its exact
size is the largest attainable p-value below ``LEVEL`` (0.078), computed below. The Bonferroni combinations over
8 directions are conservative, so only an upper bound is checked for them.

Power (the negative controls): each test must reject a deliberately different law (a mean shift in one
coordinate, a wrong variance) with p < 0.01 on a fixed seed; the power of each configuration, measured over 100
to 200 seeds while sizing it, is stated next to it. Power tests cannot produce false positives, so they do not
count against the suite's false-positive budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from specdiff.stats import (
    ComparisonReport,
    _two_sample_quadratic_statistics,
    bonferroni,
    compare_samplers,
    energy_test,
    ks_one_sample_projection,
    ks_two_sample_projection,
    median_heuristic_bandwidth,
    mmd_test,
    random_directions,
)
from tests.statistics import ALPHA, z_threshold

DIMENSION = 8
LEVEL = 0.1
REPLICATIONS = 500
NULL_SIZE = 100  # per arm in the size tests
NULL_PERMUTATIONS = 99
POWER_PERMUTATIONS = 199  # smallest attainable p-value 1/200 < 0.01


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal_arm(size: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """``size`` draws of ``N(shift e_1, scale^2 I_8)`` from a stream of its own."""
    draws = scale * torch.randn(size, DIMENSION, generator=_generator(seed), dtype=torch.float64)
    draws[:, 0] += shift
    return draws


def _null_arms(replication: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """Two independent arms from the same law, and a third stream for directions and permutations."""
    base = 1_000 + 3 * replication
    return _normal_arm(NULL_SIZE, base), _normal_arm(NULL_SIZE, base + 1), _generator(base + 2)


def _rejection_rate(p_value_of: Callable[[torch.Tensor, torch.Tensor, torch.Generator], float]) -> float:
    rejections = sum(p_value_of(*_null_arms(replication)) <= LEVEL for replication in range(REPLICATIONS))
    return rejections / REPLICATIONS


def _tolerance(size: float) -> float:
    return z_threshold(ALPHA) * math.sqrt(size * (1.0 - size) / REPLICATIONS)


def _exact_two_sample_ks_size(size: int, level: float) -> float:
    """Largest attainable p-value <= ``level`` of scipy's two-sample KS test with two samples of ``size``."""
    grid = np.arange(size, dtype=np.float64)
    attainable = [float(scipy_stats.ks_2samp(grid, grid + steps - 0.5).pvalue) for steps in range(1, size + 1)]
    return max(p for p in attainable if p <= level)


# ----------------------------------------------------------------------------------------------------------------
# Size under the null
# ----------------------------------------------------------------------------------------------------------------


def _ks_one_sample_single(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> float:
    return ks_one_sample_projection(first, 0.0, 1.0, random_directions(1, DIMENSION, generator=generator)).p_value


def _ks_two_sample_single(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> float:
    return ks_two_sample_projection(first, second, number_of_directions=1, generator=generator).p_value


def _mmd(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> float:
    return mmd_test(first, second, permutations=NULL_PERMUTATIONS, generator=generator).p_value


def _energy(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> float:
    return energy_test(first, second, permutations=NULL_PERMUTATIONS, generator=generator).p_value


@pytest.mark.parametrize(
    ("p_value_of", "exact_size"),
    [
        (_ks_one_sample_single, LEVEL),
        (_ks_two_sample_single, _exact_two_sample_ks_size(NULL_SIZE, LEVEL)),
        (_mmd, LEVEL),
        (_energy, LEVEL),
    ],
    ids=["ks_one_sample", "ks_two_sample", "mmd", "energy"],
)
def test_size_matches_the_level(
    p_value_of: Callable[[torch.Tensor, torch.Tensor, torch.Generator], float], exact_size: float
) -> None:
    rate = _rejection_rate(p_value_of)
    assert abs(rate - exact_size) <= _tolerance(exact_size), (rate, exact_size)


def _ks_one_sample_bonferroni(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> float:
    directions = random_directions(8, DIMENSION, generator=generator)
    return ks_one_sample_projection(first, torch.zeros(DIMENSION), torch.eye(DIMENSION), directions).p_value


def _ks_two_sample_bonferroni(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> float:
    return ks_two_sample_projection(first, second, number_of_directions=8, generator=generator).p_value


@pytest.mark.parametrize(
    "p_value_of", [_ks_one_sample_bonferroni, _ks_two_sample_bonferroni], ids=["one_sample", "two_sample"]
)
@pytest.mark.slow
def test_bonferroni_over_directions_keeps_the_level(
    p_value_of: Callable[[torch.Tensor, torch.Tensor, torch.Generator], float],
) -> None:
    rate = _rejection_rate(p_value_of)
    assert rate <= LEVEL + _tolerance(LEVEL), rate


# ----------------------------------------------------------------------------------------------------------------
# Power: the tests reject a deliberately different law
# ----------------------------------------------------------------------------------------------------------------


def test_mmd_detects_a_mean_shift() -> None:
    # Power claim: a shift of 0.5 in one coordinate of N(0, I_8), n = 400 per arm, gives p < 0.01 with probability
    # about 0.99 (100/100 seeds measured).
    first, second = _normal_arm(400, 11), _normal_arm(400, 12, shift=0.5)
    result = mmd_test(first, second, permutations=POWER_PERMUTATIONS, generator=_generator(13))
    assert result.p_value < 0.01, result
    assert result.statistic > 0


def test_energy_detects_a_mean_shift() -> None:
    # Power claim: same configuration as the MMD test, p < 0.01 with probability about 0.99 (99/100 seeds).
    first, second = _normal_arm(400, 21), _normal_arm(400, 22, shift=0.5)
    result = energy_test(first, second, permutations=POWER_PERMUTATIONS, generator=_generator(23))
    assert result.p_value < 0.01, result
    assert result.statistic > 0


def test_random_projection_ks_detects_a_mean_shift() -> None:
    # Power claim: random projections dilute a one-coordinate shift (a random unit direction has |u_1| ~ 1/sqrt(8)),
    # so the KS test needs a shift of 1.0 at n = 300 per arm for p < 0.01 with probability about 0.98 (197/200
    # seeds); at shift 0.5 its power is only about 0.6, where MMD and energy are above 0.98.
    first, second = _normal_arm(300, 31), _normal_arm(300, 32, shift=1.0)
    result = ks_two_sample_projection(first, second, number_of_directions=8, generator=_generator(33))
    assert result.p_value < 0.01, result


def test_ks_one_sample_accepts_the_correct_law_and_rejects_a_wrong_variance() -> None:
    # Correct law: one comparison at false-positive rate ALPHA. Wrong variance (std 1.2 instead of 1, n = 2000,
    # 4 random directions): p < 0.01 with probability above 0.99 (0.955 measured at n = 1000).
    directions = random_directions(4, DIMENSION, generator=_generator(41))
    correct = ks_one_sample_projection(_normal_arm(2000, 42), 0.0, 1.0, directions)
    assert correct.p_value > ALPHA, correct
    wrong = ks_one_sample_projection(_normal_arm(2000, 43, scale=1.2), 0.0, 1.0, directions)
    assert wrong.p_value < 0.01, wrong


def test_ks_one_sample_with_a_full_covariance_and_per_coordinate_stds() -> None:
    # Correct laws pass (two comparisons, ALPHA / 2 each); assuming the identity instead is rejected (power ~1:
    # the variances along the directions differ from 1 by factors up to 4).
    generator = _generator(51)
    factor = torch.randn(DIMENSION, DIMENSION, generator=generator, dtype=torch.float64) / math.sqrt(DIMENSION)
    covariance = factor @ factor.T + 0.5 * torch.eye(DIMENSION, dtype=torch.float64)
    mean = torch.linspace(-1.0, 1.0, DIMENSION, dtype=torch.float64)
    draws = mean + _normal_arm(2000, 52) @ torch.linalg.cholesky(covariance).T
    directions = random_directions(4, DIMENSION, generator=generator)
    assert ks_one_sample_projection(draws, mean, covariance, directions).p_value > ALPHA / 2
    assert ks_one_sample_projection(draws, mean, 1.0, directions).p_value < 0.01

    stds = torch.linspace(0.5, 2.0, DIMENSION, dtype=torch.float64)
    scaled = _normal_arm(2000, 53) * stds
    assert ks_one_sample_projection(scaled, 0.0, stds, directions).p_value > ALPHA / 2
    assert ks_one_sample_projection(scaled, 0.0, torch.diag(stds**2), directions).p_value > 0  # same law, accepted
    assert ks_one_sample_projection(scaled, 0.0, 1.0, directions).p_value < 0.01


def test_compare_samplers_report() -> None:
    # Power: shift 1.0 at n = 300 is detected by all three tests (power about 0.98 for KS, ~1 for MMD and energy).
    same = compare_samplers(_normal_arm(300, 61), _normal_arm(300, 62), generator=_generator(63), alpha=0.01)
    shifted = compare_samplers(
        _normal_arm(300, 64), _normal_arm(300, 65, shift=1.0), generator=_generator(66), alpha=0.01
    )
    assert isinstance(same, ComparisonReport)
    assert [row.name for row in shifted.rows] == ["ks_random_projections", "mmd", "energy"]
    assert all(row.rejected for row in shifted.rows) and shifted.any_rejected
    assert all(row.rejected == (row.p_value <= 0.01) for row in same.rows)
    table = shifted.format()
    assert len(table.splitlines()) == 2 + 3
    assert "REJECTED" in table and "mmd" in table and "alpha=0.01" in table
    assert "not rejected" in same.format() or same.any_rejected


# ----------------------------------------------------------------------------------------------------------------
# Exact computations against naive references
# ----------------------------------------------------------------------------------------------------------------


def _naive_mmd_squared(first: np.ndarray, second: np.ndarray, bandwidth: float) -> float:
    def kernel(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.exp(-np.sum((x - y) ** 2) / (2 * bandwidth**2)))

    n, m = len(first), len(second)
    within_first = sum(kernel(first[i], first[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_second = sum(kernel(second[i], second[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(kernel(x, y) for x in first for y in second) / (n * m)
    return within_first + within_second - 2 * cross


def _naive_energy(first: np.ndarray, second: np.ndarray) -> float:
    def mean_distance(a: np.ndarray, b: np.ndarray, distinct: bool) -> float:
        values = [np.linalg.norm(x - y) for i, x in enumerate(a) for j, y in enumerate(b) if not (distinct and i == j)]
        return float(np.mean(values))

    return (
        2 * mean_distance(first, second, False)
        - mean_distance(first, first, True)
        - mean_distance(second, second, True)
    )


def test_statistics_match_naive_formulas() -> None:
    first, second = _normal_arm(7, 71), _normal_arm(9, 72, shift=0.3)
    pooled = torch.cat([first, second]).numpy()
    distances = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))
    median = float(np.median(distances[np.triu_indices(16, 1)]))
    mmd = mmd_test(first, second, permutations=5, generator=_generator(73))
    assert mmd.bandwidth == pytest.approx(median, rel=1e-12)
    assert mmd.statistic == pytest.approx(_naive_mmd_squared(first.numpy(), second.numpy(), median), rel=1e-10)
    fixed = mmd_test(first, second, permutations=5, generator=_generator(73), bandwidth=2.5)
    assert fixed.statistic == pytest.approx(_naive_mmd_squared(first.numpy(), second.numpy(), 2.5), rel=1e-10)
    energy = energy_test(first, second, permutations=5, generator=_generator(74))
    assert energy.statistic == pytest.approx(_naive_energy(first.numpy(), second.numpy()), rel=1e-10)


def test_permuted_statistics_match_the_statistic_of_the_relabelled_samples() -> None:
    pooled = torch.cat([_normal_arm(6, 81), _normal_arm(5, 82)])
    squared = ((pooled[:, None] - pooled[None]) ** 2).sum(-1)
    distances = squared.sqrt()
    order = torch.randperm(11, generator=_generator(83))
    labels = torch.zeros(1, 11, dtype=torch.float64)
    labels[0, order[:6]] = 1.0
    relabelled_first, relabelled_second = pooled[order[:6]].numpy(), pooled[order[6:]].numpy()
    permuted_energy = _two_sample_quadratic_statistics(distances, labels, -1.0)
    assert float(permuted_energy[0]) == pytest.approx(_naive_energy(relabelled_first, relabelled_second), rel=1e-10)
    gram = torch.exp(-squared / 2.0)
    permuted_mmd = _two_sample_quadratic_statistics(gram, labels, 1.0)
    assert float(permuted_mmd[0]) == pytest.approx(
        _naive_mmd_squared(relabelled_first, relabelled_second, 1.0), rel=1e-10
    )


def test_ks_matches_scipy_and_bonferroni() -> None:
    samples = _normal_arm(50, 91)
    directions = torch.eye(DIMENSION, dtype=torch.float64)[:3]
    result = ks_one_sample_projection(samples, 0.0, 1.0, directions)
    expected = [scipy_stats.kstest(samples[:, j].numpy(), "norm").pvalue for j in range(3)]
    assert result.p_values == pytest.approx(expected, rel=1e-12)
    assert result.p_value == pytest.approx(min(1.0, 3 * min(expected)), rel=1e-12)
    assert bonferroni([0.5, 0.6]) == 1.0 and bonferroni([0.01, 0.2, 0.3]) == pytest.approx(0.03)
    other = _normal_arm(60, 92)
    two = ks_two_sample_projection(samples, other, directions[0])
    assert two.p_values[0] == pytest.approx(scipy_stats.ks_2samp(samples[:, 0].numpy(), other[:, 0].numpy()).pvalue)


@pytest.mark.parametrize("size", [2, 3, 4, 5, 6, 11])
def test_median_heuristic_is_the_median_pairwise_distance(size: int) -> None:
    points = _normal_arm(size, 95 + size)
    squared = ((points[:, None] - points[None]) ** 2).sum(-1)
    expected = float(np.median(squared.sqrt().numpy()[np.triu_indices(size, 1)]))
    assert median_heuristic_bandwidth(squared) == pytest.approx(expected, rel=1e-12)


def test_median_heuristic_of_coincident_points_falls_back_to_one() -> None:
    assert median_heuristic_bandwidth(torch.zeros(4, 4, dtype=torch.float64)) == 1.0
    same = torch.ones(5, 3)
    result = mmd_test(same, same.clone(), permutations=9, generator=_generator(1))
    assert result.bandwidth == 1.0 and result.p_value == 1.0


# ----------------------------------------------------------------------------------------------------------------
# Determinism, shapes, devices
# ----------------------------------------------------------------------------------------------------------------


def test_results_are_deterministic_given_the_generator() -> None:
    first, second = _normal_arm(40, 101), _normal_arm(40, 102, shift=0.3)
    for run in (
        lambda seed: ks_two_sample_projection(first, second, generator=_generator(seed)).p_values,
        lambda seed: mmd_test(first, second, permutations=49, generator=_generator(seed)).p_value,
        lambda seed: energy_test(first, second, permutations=49, generator=_generator(seed)).p_value,
        lambda seed: compare_samplers(first, second, generator=_generator(seed), permutations=49, alpha=0.05).format(),
    ):
        assert run(7) == run(7)
    assert random_directions(3, 4, generator=_generator(5)).equal(random_directions(3, 4, generator=_generator(5)))
    assert not random_directions(3, 4, generator=_generator(5)).equal(random_directions(3, 4, generator=_generator(6)))


def test_event_shapes_are_flattened_and_scalar_events_work() -> None:
    first, second = _normal_arm(30, 111), _normal_arm(30, 112)
    flat = mmd_test(first, second, permutations=19, generator=_generator(1))
    shaped = mmd_test(first.reshape(30, 2, 4), second.reshape(30, 2, 4), permutations=19, generator=_generator(1))
    assert flat == shaped
    directions = random_directions(2, DIMENSION, generator=_generator(2))
    assert ks_one_sample_projection(first, torch.zeros(2, 4), 1.0, directions.reshape(2, 2, 4)).p_values == (
        ks_one_sample_projection(first, 0.0, 1.0, directions).p_values
    )
    # A scalar event is the event (1,): the same result as the one-column sample, and the energy distance computed
    # here independently (U-statistics, numpy).
    scalars = energy_test(first[:, 0], second[:, 0], permutations=19, generator=_generator(3))
    assert scalars == energy_test(first[:, :1], second[:, :1], permutations=19, generator=_generator(3))
    x, y = first[:, 0].numpy(), second[:, 0].numpy()
    within_x, within_y = (np.abs(v[:, None] - v[None]).sum() / (v.size * (v.size - 1)) for v in (x, y))
    energy = 2 * np.abs(x[:, None] - y[None]).mean() - within_x - within_y
    assert scalars.statistic == pytest.approx(energy, rel=1e-12)
    one_sample = ks_one_sample_projection(first[:, 0], 0.3, 1.5, torch.ones(1)).p_value
    assert one_sample == pytest.approx(scipy_stats.kstest(x, "norm", args=(0.3, 1.5)).pvalue, rel=1e-12)
    # float32 inputs are computed in float64: the same result as their float64 copies.
    single = (first.float(), second.float())
    in_float32 = energy_test(*single, permutations=19, generator=_generator(3))
    assert in_float32 == energy_test(*(arm.double() for arm in single), permutations=19, generator=_generator(3))


# ----------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------

GOOD = torch.zeros(5, 3).normal_(generator=_generator(0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mmd_test(GOOD[:1], GOOD, generator=_generator(0)), "at least 2"),
        (lambda: mmd_test(GOOD, GOOD[:, :2], generator=_generator(0)), "event shapes"),
        (lambda: energy_test(GOOD, torch.full((4, 3), math.nan), generator=_generator(0)), "non-finite"),
        (lambda: energy_test(GOOD, torch.full((4, 3), math.inf), generator=_generator(0)), "non-finite"),
        (lambda: energy_test(GOOD.numpy(), GOOD, generator=_generator(0)), "torch.Tensor"),  # type: ignore[arg-type]
        (lambda: energy_test(torch.tensor(1.0), GOOD, generator=_generator(0)), "shape"),
        (lambda: mmd_test(GOOD, GOOD, generator=None), "Generator"),  # type: ignore[arg-type]
        (lambda: mmd_test(GOOD, GOOD, permutations=0, generator=_generator(0)), "permutations"),
        (lambda: mmd_test(GOOD, GOOD, generator=_generator(0), bandwidth=0.0), "bandwidth"),
        (lambda: ks_two_sample_projection(GOOD, GOOD), "generator"),
        (lambda: ks_two_sample_projection(GOOD, GOOD, torch.ones(1, 3)), "unit"),
        (lambda: ks_two_sample_projection(GOOD, GOOD, torch.ones(1, 4) / 2), "shape"),
        (lambda: ks_two_sample_projection(GOOD, GOOD, number_of_directions=0, generator=_generator(0)), "positive"),
        (lambda: ks_one_sample_projection(GOOD, 0.0, -1.0, torch.eye(3)), "> 0"),
        (lambda: ks_one_sample_projection(GOOD, torch.zeros(4), 1.0, torch.eye(3)), "mean"),
        (lambda: ks_one_sample_projection(GOOD, 0.0, torch.ones(2, 2), torch.eye(3)), "covariance_or_std"),
        (
            lambda: ks_one_sample_projection(
                GOOD, 0.0, torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1]]), torch.eye(3)
            ),
            "symmetric",
        ),
        (lambda: ks_one_sample_projection(GOOD, 0.0, -torch.eye(3), torch.eye(3)), "non-positive"),
        (lambda: compare_samplers(GOOD, GOOD, generator=_generator(0), alpha=1.5), "alpha"),
        # 200 permutations cannot give a p-value below 1/201, so MMD and energy could never reject at 1e-3.
        (lambda: compare_samplers(GOOD, GOOD, generator=_generator(0), alpha=1e-3), "cannot reach alpha"),
    ],
)
def test_invalid_inputs_raise_clear_errors(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
