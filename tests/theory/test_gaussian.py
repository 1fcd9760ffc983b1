"""Accuracy, properties and edge cases of theory.gaussian (references: mpmath at 60 digits)."""

from __future__ import annotations

from collections.abc import Callable

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.gaussian import (
    RESIDUAL_DELTA_MAX,
    FloatArray,
    _log_mills_difference,
    _log_normal_density,
    _threshold,
    acceptance_probability,
    log_residual_mass,
    log_residual_mass_from_log_weight,
    residual_log_survival,
    residual_mass,
    residual_quantile,
    total_variation,
)

mpmath.mp.dps = 60


def reference_log_residual_mass(weight: float, delta: float) -> mpmath.mpf:
    """``log(w Phi(delta - s*) - Phi(-s*))`` in 60-digit arithmetic."""
    w, d = mpmath.mpf(weight), mpmath.mpf(delta)
    threshold = d / 2 - mpmath.log(w) / d
    return mpmath.log(w * mpmath.ncdf(d - threshold) - mpmath.ncdf(-threshold))


def reference_log_survival(x: float, weight: float, delta: float) -> mpmath.mpf:
    w, d, point = mpmath.mpf(weight), mpmath.mpf(delta), mpmath.mpf(x)
    threshold = d / 2 - mpmath.log(w) / d
    point = max(point, threshold)
    mass = w * mpmath.ncdf(d - threshold) - mpmath.ncdf(-threshold)
    return mpmath.log((w * mpmath.ncdf(d - point) - mpmath.ncdf(-point)) / mass)


WEIGHTS = [1.0, 1 - 1e-12, 0.9, 0.5, 0.2, 1e-3, 1e-20, 1e-100, 1e-300]
DELTAS = [1e-12, 1e-9, 1e-6, 1e-3, 0.05, 0.3, 1.0, 2.0, 7.0, 20.0, 50.0]


@pytest.mark.parametrize("weight", WEIGHTS)
def test_log_residual_mass_matches_60_digit_reference(weight: float) -> None:
    # Relative accuracy of R is |error of log R|; for |log R| > 1 float64 cannot represent log R to better than
    # a relative 1e-16, so the error is measured relative to max(1, |log R|). Target 1e-10, measured ~1e-13.
    deltas = np.array(DELTAS)
    mine = log_residual_mass(weight, deltas)
    for delta, value in zip(deltas, mine, strict=True):
        reference = reference_log_residual_mass(weight, delta)
        error = abs(value - float(reference)) / max(1.0, abs(float(reference)))
        assert error < 1e-12, (weight, delta, value, reference)


@pytest.mark.parametrize("weight", [1.0, 0.5, 1e-3, 1e-300])
def test_log_residual_mass_for_large_gaps(weight: float) -> None:
    # Above delta ~ 1e3 the factorisation phi(s*) [M(s* - delta) - M(s*)] adds two logs of order delta^2 / 8 that
    # cancel; the mass switches to w Phi-bar(s* - delta) (1 - M(s*) / M(s* - delta)) where s* - delta < 0.
    deltas = np.array([60.0, 1e3, 1e5, 1e8, 1e9])
    mine = log_residual_mass(weight, deltas)
    for delta, value in zip(deltas, mine, strict=True):
        reference = float(reference_log_residual_mass(weight, delta))
        assert abs(value - reference) < 1e-12 * max(1.0, abs(reference)), (weight, delta, value, reference)
    # At delta = inf the laws do not overlap: R = w.
    assert float(log_residual_mass(weight, np.inf)) == pytest.approx(np.log(weight), rel=1e-15, abs=1e-300)


def test_the_factorisation_alone_fails_for_large_gaps() -> None:
    # Negative control of the test above: without the switch, w = 0.5 at delta = 1e8 is off by far more than its
    # tolerance (R = 0.607 > w; measured before the switch).
    log_weight, delta = np.log(0.5), np.array(1e8)
    threshold = _threshold(np.asarray(log_weight), delta)
    factorised = _log_normal_density(threshold) + _log_mills_difference(threshold, delta)
    assert abs(float(factorised) - float(reference_log_residual_mass(0.5, 1e8))) > 1e-3


def test_deep_tail_residual_mass() -> None:
    # R(0.2, 0.05) ~ 8.8e-231: the naive w Phi(u) - Phi(u - delta) cancels to 0 when Phi is written through erf.
    value = residual_mass(0.2, 0.05)
    reference = mpmath.exp(reference_log_residual_mass(0.2, 0.05))
    assert 1e-231 < value < 1e-229
    assert abs(value / float(reference) - 1) < 1e-12


def test_log_form_is_finite_where_residual_mass_underflows() -> None:
    log_value = float(log_residual_mass(1e-300, 1e-6))
    assert residual_mass(1e-300, 1e-6) == 0.0
    reference = float(reference_log_residual_mass(1e-300, 1e-6))
    assert np.isfinite(log_value)
    assert abs(log_value - reference) / abs(reference) < 1e-13


def test_log_weight_form_accepts_weights_below_float_range() -> None:
    value = float(log_residual_mass_from_log_weight(-1000.0, 30.0))  # w = e^-1000 < 1e-308
    w, d = mpmath.exp(-1000), mpmath.mpf(30)
    threshold = d / 2 + 1000 / d
    reference = mpmath.log(w * mpmath.ncdf(d - threshold) - mpmath.ncdf(-threshold))
    assert abs(value - float(reference)) / abs(float(reference)) < 1e-13


def test_special_values() -> None:
    assert acceptance_probability(0.0) == 1.0
    assert total_variation(0.0) == 0.0
    assert residual_mass(1.0, 0.0) == 0.0
    assert residual_mass(0.3, 0.0) == 0.0
    assert log_residual_mass(0.3, 0.0) == -np.inf
    # tiny delta: TV ~ delta / sqrt(2 pi), in relative terms
    assert total_variation(1e-12) == pytest.approx(1e-12 / np.sqrt(2 * np.pi), rel=1e-12)
    assert residual_mass(1.0, 1e-12) == pytest.approx(1e-12 / np.sqrt(2 * np.pi), rel=1e-10)
    # huge delta: alpha in its deep tail, R -> w
    assert acceptance_probability(50.0) == pytest.approx(float(2 * mpmath.ncdf(-25)), rel=1e-12)
    assert residual_mass(0.37, 50.0) == pytest.approx(0.37, rel=1e-12)


@pytest.mark.parametrize(
    ("function", "arguments"),
    [
        (acceptance_probability, (np.nan,)),
        (acceptance_probability, (-0.1,)),
        (residual_mass, (0.5, np.nan)),
        (residual_mass, (np.nan, 0.5)),
        (residual_mass, (0.0, 0.5)),
        (residual_mass, (1.5, 0.5)),
        (residual_mass, (0.5, -1.0)),
        (log_residual_mass_from_log_weight, (0.1, 0.5)),
        (residual_quantile, (0.5, 0.5, 0.0)),
        (residual_quantile, (1.0, 0.5, 0.5)),
        (residual_quantile, (-0.1, 0.5, 0.5)),
        (residual_quantile, (0.5, 0.5, 2 * RESIDUAL_DELTA_MAX)),
        (residual_log_survival, (0.0, 0.5, 2 * RESIDUAL_DELTA_MAX)),
    ],
)
def test_bad_input_raises_value_error(function: Callable[..., FloatArray], arguments: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        function(*arguments)


def test_float32_inputs_give_float64_results() -> None:
    value = residual_mass(np.float32(0.5), np.array([0.5, 1.0], dtype=np.float32))
    assert value.dtype == np.float64
    assert value == pytest.approx(residual_mass(0.5, [0.5, 1.0]), rel=1e-7)


weights = st.floats(min_value=1e-300, max_value=1.0)
deltas = st.floats(min_value=1e-12, max_value=50.0)


@settings(max_examples=200, deadline=None)
@given(weights, deltas)
def test_residual_mass_bounds(weight: float, delta: float) -> None:
    # 0 <= R(w, delta) <= min(w, TV): R <= int w P = w, and R <= int max(P - Q, 0) = TV.
    value = float(residual_mass(weight, delta))
    assert 0.0 <= value <= min(weight, float(total_variation(delta))) * (1 + 1e-12)
    assert float(log_residual_mass(weight, delta)) <= 0.0


@settings(max_examples=200, deadline=None)
@given(weights, weights, deltas)
def test_residual_mass_increases_with_weight(first: float, second: float, delta: float) -> None:
    low, high = sorted((first, second))
    assert float(log_residual_mass(low, delta)) <= float(log_residual_mass(high, delta)) + 1e-12


@settings(max_examples=200, deadline=None)
@given(weights, deltas, deltas)
def test_residual_mass_increases_with_delta(weight: float, first: float, second: float) -> None:
    low, high = sorted((first, second))
    assert float(log_residual_mass(weight, low)) <= float(log_residual_mass(weight, high)) + 1e-12


@settings(max_examples=200, deadline=None)
@given(deltas)
def test_unit_weight_residual_is_total_variation(delta: float) -> None:
    assert float(residual_mass(1.0, delta)) == pytest.approx(float(total_variation(delta)), rel=1e-12)
    assert float(acceptance_probability(delta)) + float(total_variation(delta)) == pytest.approx(1.0, abs=1e-15)


def test_limits_in_delta() -> None:
    # delta -> 0: R(w, delta) -> 0 for every w; delta -> infinity: R -> w, alpha -> 0.
    small = residual_mass([1.0, 0.5, 1e-3], 1e-9)
    assert np.all(small < 1e-9)
    large = residual_mass([1.0, 0.5, 1e-3], 50.0)
    assert large == pytest.approx([1.0, 0.5, 1e-3], rel=1e-12)
    assert acceptance_probability(50.0) < 1e-35


@settings(max_examples=100, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=1 - 1e-9),
    st.floats(min_value=1e-6, max_value=1.0),
    st.floats(min_value=1e-3, max_value=20.0),
)
def test_quantile_inverts_the_survival_function(u: float, weight: float, delta: float) -> None:
    # The quantile is exact up to the rounding of its float64 result: log(1 - u) lies between log S at the points
    # 4 ulp either side (deep in the tail the residual's scale is 1/s*, so one ulp of s* moves S a lot).
    point = float(residual_quantile(u, weight, delta))
    spacing = 4 * np.spacing(point)
    above, below = residual_log_survival([point - spacing, point + spacing], weight, delta)
    slack = 1e-12 * max(1.0, abs(np.log1p(-u)))
    assert below - slack <= np.log1p(-u) <= above + slack
    assert point >= delta / 2 - np.log(weight) / delta


@pytest.mark.parametrize(("weight", "delta"), [(1.0, 0.05), (0.5, 0.5), (0.2, 2.0), (1e-3, 7.0), (1.0, 50.0)])
def test_survival_matches_60_digit_reference(weight: float, delta: float) -> None:
    points = residual_quantile(np.array([1e-9, 0.01, 0.3, 0.7, 0.99, 1 - 1e-9]), weight, delta)
    mine = residual_log_survival(points, weight, delta)
    for point, value in zip(points, mine, strict=True):
        reference = float(reference_log_survival(point, weight, delta))
        assert abs(value - reference) <= 1e-10 * max(1.0, abs(reference)), (point, value, reference)


def test_quantile_is_monotone_and_vectorized() -> None:
    u = np.linspace(0.0, 0.999, 50)
    points = residual_quantile(u, 0.4, 0.8)
    assert points.shape == (50,)
    assert np.all(np.diff(points) > 0)
    assert points[0] == pytest.approx(0.4 - np.log(0.4) / 0.8, rel=1e-12)  # u = 0 gives s*
