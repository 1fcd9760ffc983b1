"""Closed forms for one Gaussian transition: acceptance, weighted residual mass, residual quantiles.

Along the rank-1 direction ``e = (mu - nu) / |mu - nu|`` a point is ``x = nu + sigma (s e + z_perp)``: under the
draft ``s ~ N(0, 1)``, under the target ``s ~ N(delta, 1)`` and ``z_perp`` has the same law under both
(docs/design.md §2). Every quantity here is therefore a function of the standardized gap ``delta`` alone, in any
dimension.

Numerics. The weighted residual mass ``R(w, delta) = w Phi(u) - Phi(u - delta)`` cancels catastrophically in the
naive form. We use the exact factorisation (s* the point where ``w target = draft``)::

    R(w, delta) = phi(s*) * [M(s* - delta) - M(s*)],       s* = delta/2 - ln(w)/delta,

where ``M(x) = Phi(-x) / phi(x)`` is Mills' ratio (``M(x) = sqrt(pi/2) erfcx(x / sqrt 2)``): the two Gaussian tails
share the factor ``phi(s*)`` exactly because ``w phi(s* - delta) = phi(s*)``. The bracket is a difference of two
values of a smooth decreasing function; when it cancels (small ``delta``) it is computed as the integral
``int_{s*-delta}^{s*} (1 - y M(y)) dy`` (because ``M'(y) = y M(y) - 1``) by Gauss-Legendre quadrature, with
``1 - y M(y)`` from its asymptotic series for large ``y``. Everything is done in log space, so ``R`` keeps its
relative accuracy when it is as small as 1e-300 or far below (``log_residual_mass``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_SQRT_HALF_PI = np.sqrt(0.5 * np.pi)
# Above this argument 1 - y M(y) is taken from its asymptotic series (relative error < 1e-17 with 12 terms);
# below it the direct form loses at most a factor y**2 ~ 1e3 of machine precision.
_ASYMPTOTIC_FROM = 30.0
_ASYMPTOTIC_TERMS = 12
# Use quadrature for the bracket M(a) - M(b) when it is below this fraction of M(a) (direct form loses < 1 digit).
_DIRECT_MIN_FRACTION = 0.1
_NEWTON_ITERATIONS = 100
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(24)
#: The survival function and the quantile refuse larger gaps. They are taken relative to ``phi(s*)``, and two terms
#: of order ``delta^2 / 8`` cancel in them, which leaves an absolute error of about 1e-16 delta^2 in the log survival
#: (measured against mpmath: 1e-8 at delta = 1e4, 1e-6 at 1e5, 7e-5 at 1e6, 8e-3 at 1e7) and a relative error in the
#: quantile of 7e-11 at 1e4 and 2e-9 at 1e6 (50% at 1e8). Within 1e-10 for delta <= 50 away from u = 0; as u -> 0
#: the residual's CDF is flat (quadratic in s - s*), and the quantile stops at about 2e-8 relative (delta = 1:
#: 0.50000002 at u = 0, whose exact value is s* = 0.5). The mass is accurate for every delta.
RESIDUAL_DELTA_MAX = 1e6


def _as_float_array(value: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _check_delta(delta: ArrayLike) -> FloatArray:
    array = _as_float_array(delta, "delta")
    if (array < 0).any():
        raise ValueError("delta is a standardized distance |mu - nu| / sigma and must be >= 0")
    return array


def _check_log_weight(log_weight: ArrayLike) -> FloatArray:
    array = _as_float_array(log_weight, "log_weight")
    if (array > 0).any():
        raise ValueError("the residual weight must satisfy 0 < weight <= 1 (log_weight <= 0)")
    if np.isneginf(array).any():
        raise ValueError("the residual weight must be > 0 (log_weight > -inf)")
    return array


def _check_residual(log_weight: ArrayLike, delta: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate the parameters of a residual law, which must be non-empty (delta > 0), with delta at most
    ``RESIDUAL_DELTA_MAX``."""
    delta = _check_delta(delta)
    if (delta == 0).any():
        raise ValueError("the residual is empty when delta == 0 (R(w, 0) = 0): there is nothing to sample")
    if (delta > RESIDUAL_DELTA_MAX).any():
        raise ValueError(
            f"delta above {RESIDUAL_DELTA_MAX:g} is outside the accurate range of this survival function and "
            "quantile (RESIDUAL_DELTA_MAX); the residual is then the target truncated at s*, to within exp(-delta^2/8)"
        )
    return _check_log_weight(log_weight), delta


def acceptance_probability(delta: ArrayLike) -> FloatArray:
    """Probability that one drafted step is accepted: ``alpha(delta) = 2 Phi(-delta / 2) = 1 - TV``.

    Parameters
    ----------
    delta : array_like, shape (...)
        Standardized mean gap ``|mu - nu| / sigma`` (>= 0).

    Returns
    -------
    ndarray, shape (...)
        ``erfc(delta / (2 sqrt 2))``, accurate in relative terms also deep in the tail.
    """
    delta = _check_delta(delta)
    return np.asarray(special.erfc(delta / (2.0 * np.sqrt(2.0))), dtype=np.float64)


def total_variation(delta: ArrayLike) -> FloatArray:
    """Total variation distance between ``N(mu, sigma^2 I)`` and ``N(nu, sigma^2 I)``: ``erf(delta / (2 sqrt 2))``.

    Parameters
    ----------
    delta : array_like, shape (...)
        Standardized mean gap (>= 0).

    Returns
    -------
    ndarray, shape (...)
        ``1 - acceptance_probability(delta)``, accurate in relative terms for tiny ``delta``.
    """
    delta = _check_delta(delta)
    return np.asarray(special.erf(delta / (2.0 * np.sqrt(2.0))), dtype=np.float64)


def mills_ratio(x: ArrayLike) -> FloatArray:
    """Mills' ratio ``M(x) = Phi(-x) / phi(x) = sqrt(pi / 2) erfcx(x / sqrt 2)`` (overflows for x < -37)."""
    return np.asarray(_SQRT_HALF_PI * special.erfcx(np.asarray(x, dtype=np.float64) / np.sqrt(2.0)))


def log_mills_ratio(x: ArrayLike) -> FloatArray:
    """``log M(x)``, finite for every finite x (``log Phi(-x) + x^2/2 + log sqrt(2 pi)`` for x < 0)."""
    x = np.asarray(x, dtype=np.float64)
    negative = x < 0
    with np.errstate(over="ignore", divide="ignore"):
        left = special.log_ndtr(-x) + 0.5 * x * x + _LOG_SQRT_2PI
        right = np.log(mills_ratio(np.where(negative, 0.0, x)))
    return np.asarray(np.where(negative, left, right))


def _one_minus_x_mills(y: FloatArray) -> FloatArray:
    """``g(y) = 1 - y M(y) = -M'(y)`` (> 0), accurate in relative terms for every real y."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        direct = 1.0 - y * mills_ratio(y)
    large = y > _ASYMPTOTIC_FROM
    if not large.any():
        return direct
    # y M(y) ~ 1 - 1/y^2 + 3/y^4 - 15/y^6 + ... (Abramowitz & Stegun 7.1.23), so
    # g(y) = sum_{k>=1} (-1)^(k+1) (2k-1)!! / y^(2k).
    y_large = np.where(large, y, _ASYMPTOTIC_FROM)
    inverse_square = 1.0 / (y_large * y_large)
    term = inverse_square.copy()
    series = term.copy()
    for k in range(2, _ASYMPTOTIC_TERMS + 1):
        term = -term * (2 * k - 1) * inverse_square
        series = series + term
    return np.where(large, series, direct)


def _log_mills_difference(upper: FloatArray, width: FloatArray) -> FloatArray:
    """``log(M(upper - width) - M(upper))`` for ``width > 0``, accurate in relative terms however small the width.

    Shapes broadcast. The width is passed separately because ``upper - lower`` loses it when ``upper`` is huge.
    Uses the direct difference when it does not cancel, otherwise ``int (1 - y M(y)) dy`` over the interval by
    24-point Gauss-Legendre quadrature (the integrand is smooth on the scale of ``max(1, |y|)``, and quadrature
    is only used where the width is well below that scale).
    """
    upper, width = np.broadcast_arrays(np.asarray(upper, np.float64), np.asarray(width, np.float64))
    log_lower = log_mills_ratio(upper - width)
    log_fraction = log_mills_ratio(upper) - log_lower  # log M(upper) / M(lower), < 0
    use_direct = log_fraction < np.log1p(-_DIRECT_MIN_FRACTION)
    result = np.empty(upper.shape, dtype=np.float64)
    with np.errstate(divide="ignore"):
        result[use_direct] = log_lower[use_direct] + np.log(-np.expm1(log_fraction[use_direct]))
        near = ~use_direct
        half_width = 0.5 * width[near]
        points = (upper[near] - half_width)[:, None] + half_width[:, None] * _NODES
        result[near] = np.log(half_width * np.sum(_WEIGHTS * _one_minus_x_mills(points), axis=-1))
    return result


def _threshold(log_weight: FloatArray, delta: FloatArray) -> FloatArray:
    """``s* = delta/2 - ln(w)/delta``: along e, ``w target > draft`` exactly for ``s > s*``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(0.5 * delta - log_weight / delta)


def _log_normal_density(x: FloatArray) -> FloatArray:
    return np.asarray(-0.5 * x * x - _LOG_SQRT_2PI)


def log_residual_mass_from_log_weight(log_weight: ArrayLike, delta: ArrayLike) -> FloatArray:
    """``log R(w, delta)`` with the weight given by its logarithm (so weights below 1e-308 are fine).

    Parameters
    ----------
    log_weight : array_like, shape (...)
        ``ln w`` with ``-inf < ln w <= 0``.
    delta : array_like, shape (...)
        Standardized mean gap (>= 0, ``inf`` allowed). Broadcasts against ``log_weight``.

    Returns
    -------
    ndarray, shape (...)
        ``log R``; ``-inf`` where ``delta == 0`` (then ``R = 0``), ``ln w`` where ``delta == inf``.
    """
    log_weight = _check_log_weight(log_weight)
    delta = _check_delta(delta)
    log_weight, delta = np.broadcast_arrays(log_weight, delta)
    positive = delta > 0
    safe_delta = np.where(positive & np.isfinite(delta), delta, 1.0)
    threshold = _threshold(log_weight, safe_delta)
    # R = phi(s*) [M(s* - delta) - M(s*)]  (module docstring)
    log_mass = _log_normal_density(threshold) + _log_mills_difference(threshold, safe_delta)
    # Where b = s* - delta < 0, log phi(s*) ~ -s*^2/2 and log M(b) ~ b^2/2 are large and cancel (they lose all
    # accuracy by delta ~ 1e8). There R = w Phi-bar(b) (1 - M(s*) / M(b)) instead (w phi(b) = phi(s*)), whose
    # terms are of order one; the fraction does not cancel (M(s*) / M(b) is at most about 1/2 for b < 0 and
    # delta >= 1).
    lower = threshold - safe_delta
    far = (lower < 0) & (safe_delta >= 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_fraction = log_mills_ratio(threshold) - log_mills_ratio(lower)
        log_mass_far = log_weight + special.log_ndtr(-lower) + np.log(-np.expm1(log_fraction))
    log_mass = np.where(far, log_mass_far, log_mass)
    # delta = inf: the two laws do not overlap, R = w.
    return np.asarray(np.where(positive, np.where(np.isinf(delta), log_weight, log_mass), -np.inf))


def log_residual_mass(weight: ArrayLike, delta: ArrayLike) -> FloatArray:
    """Logarithm of the weighted residual mass ``R(w, delta) = int max(w target - draft, 0)``.

    Accurate to about 1e-13 relative in ``R`` for ``w`` in [1e-300, 1] and ``delta`` in [0, 50] (and beyond: where
    ``s* - delta < 0`` it uses ``R = w Phi-bar(s* - delta) (1 - M(s*) / M(s* - delta))``), including cases
    where ``R`` itself underflows (e.g. ``R(0.2, 0.05) ~ 1e-230``; ``R(1e-300, 1e-6)`` is ``exp(-2e17)``).

    Parameters
    ----------
    weight : array_like, shape (...)
        ``0 < w <= 1``.
    delta : array_like, shape (...)
        Standardized mean gap (>= 0). Broadcasts against ``weight``.

    Returns
    -------
    ndarray, shape (...)
        ``log R(w, delta)``; ``-inf`` where ``delta == 0``.
    """
    weight = _as_float_array(weight, "weight")
    if ((weight <= 0) | (weight > 1)).any():
        raise ValueError("the residual weight must satisfy 0 < weight <= 1")
    return log_residual_mass_from_log_weight(np.log(weight), delta)


def residual_mass(weight: ArrayLike, delta: ArrayLike) -> FloatArray:
    """Weighted residual mass ``R(w, delta) = w Phi(u) - Phi(u - delta)``, ``u = delta/2 + ln(w)/delta``.

    ``R(1, delta)`` is the total variation distance and ``R(w, 0) = 0``. See ``log_residual_mass``.

    Parameters
    ----------
    weight : array_like, shape (...)
        ``0 < w <= 1``.
    delta : array_like, shape (...)
        Standardized mean gap (>= 0).

    Returns
    -------
    ndarray, shape (...)
    """
    return np.asarray(np.exp(log_residual_mass(weight, delta)))


def _log_unnormalized_survival(
    offset: FloatArray, threshold: FloatArray, delta: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Log of ``G(x) = int_x^inf max(w target - draft, 0)`` at ``x = s* + offset`` (offset >= 0), minus log phi(s*).

    Also returns ``d log G / dx``. With ``w target(s) = draft(s) exp(delta (s - s*))``::

        G(x) = phi(x) [M(x - delta) - M(x) + expm1(delta (x - s*)) M(x - delta)]

    and both terms in the bracket are >= 0, so nothing cancels.
    """
    x = threshold + offset
    with np.errstate(divide="ignore"):
        # log expm1(delta t) = delta t + log(-expm1(-delta t)); -inf at t = 0.
        log_growth = delta * offset + np.log(-np.expm1(-delta * offset))
    log_growth_term = log_growth + log_mills_ratio(x - delta)
    log_bracket = np.logaddexp(_log_mills_difference(x, delta), log_growth_term)
    # log phi(x) - log phi(s*) = -offset (s* + offset / 2), written without cancellation.
    log_ratio = -offset * (threshold + 0.5 * offset) + log_bracket
    # d log G / dx = -f(x) / G(x) = -expm1(delta t) / bracket.
    derivative = -np.exp(log_growth - log_bracket)
    return np.asarray(log_ratio), np.asarray(derivative)


def residual_log_survival(x: ArrayLike, weight: ArrayLike, delta: ArrayLike) -> FloatArray:
    """``log P(S > x)`` for S drawn from the residual density ``∝ max(w phi(s - delta) - phi(s), 0)`` along e.

    Parameters
    ----------
    x : array_like, shape (...)
        Points on the e axis (standardized, the draft mean at 0).
    weight, delta : array_like, shape (...)
        ``0 < w <= 1`` and ``0 < delta <= RESIDUAL_DELTA_MAX``. All three broadcast.

    Returns
    -------
    ndarray, shape (...)
        0 for ``x <= s*``.
    """
    x = _as_float_array(x, "x")
    log_weight, delta = _check_residual(np.log(_as_float_array(weight, "weight")), delta)
    x, log_weight, delta = np.broadcast_arrays(x, log_weight, delta)
    threshold = _threshold(log_weight, delta)
    offset = np.maximum(x - threshold, 0.0)
    log_ratio, _ = _log_unnormalized_survival(offset, threshold, delta)
    log_total = _log_mills_difference(threshold, delta)
    return np.asarray(np.minimum(log_ratio - log_total, 0.0))


def residual_quantile(u: ArrayLike, weight: ArrayLike, delta: ArrayLike) -> FloatArray:
    """Inverse CDF of the residual ``∝ max(w phi(s - delta) - phi(s), 0)`` along e (docs/design.md §3.2–3.4).

    Solves ``log S(x) = log(1 - u)`` on the closed-form survival function by a vectorized Newton iteration that
    starts to the right of the root: ``log S`` is concave (the residual density is log-concave, a product of
    ``phi`` and ``expm1(delta (s - s*))``), so the iterates decrease monotonically to the root.

    Parameters
    ----------
    u : array_like, shape (...)
        Uniforms in [0, 1).
    weight : array_like, shape (...)
        ``0 < w <= 1``.
    delta : array_like, shape (...)
        Standardized mean gap, > 0 (the residual is empty at 0) and at most ``RESIDUAL_DELTA_MAX`` (accuracy).

    Returns
    -------
    ndarray, shape (...)
        ``s`` with ``P(S <= s) = u``; ``s > s* = delta/2 - ln(w)/delta``. Relative to ``max(1, |s|)`` within about
        1e-10 for ``delta <= 50`` away from ``u = 0``; as ``u -> 0`` the CDF is quadratic in ``s - s*`` and the
        error grows to about 2e-8 (see :data:`RESIDUAL_DELTA_MAX`; the samplers' device law
        :mod:`specdiff.residual_law` is the one held to 1e-9).
    """
    log_weight = _check_log_weight(np.log(_as_float_array(weight, "weight")))
    return residual_quantile_from_log_weight(u, log_weight, delta)


def residual_quantile_from_log_weight(u: ArrayLike, log_weight: ArrayLike, delta: ArrayLike) -> FloatArray:
    """``residual_quantile`` with the weight given by its logarithm. Shapes broadcast; see ``residual_quantile``."""
    u = _as_float_array(u, "u")
    if ((u < 0) | (u >= 1)).any():
        raise ValueError("residual uniforms must lie in [0, 1)")
    log_weight, delta = _check_residual(log_weight, delta)
    u, log_weight, delta = np.broadcast_arrays(u, log_weight, delta)
    threshold = _threshold(log_weight, delta)
    target = np.log1p(-u) + _log_mills_difference(threshold, delta)
    offset = _bracket_right(target, threshold, delta).ravel()
    threshold, delta, target = threshold.ravel(), delta.ravel(), target.ravel()
    active = np.arange(offset.size)
    for _ in range(_NEWTON_ITERATIONS):
        value, slope = _log_unnormalized_survival(offset[active], threshold[active], delta[active])
        current = offset[active]
        with np.errstate(divide="ignore", invalid="ignore"):
            # Concavity of log S keeps the Newton iterates right of the root, so they only decrease; where log S is
            # flat to rounding, a step can point the wrong way: never move right, and never below s*.
            proposal = np.maximum(current - (value - target[active]) / slope, 0.0)
        proposal = np.where(np.isfinite(proposal), np.minimum(proposal, current), current)
        offset[active] = proposal
        # Converged when the step is at rounding level, or when rounding stops the monotone decrease.
        tolerance = 1e-14 * np.maximum(proposal, 0.25 * np.abs(threshold[active] + proposal))
        active = active[(current - proposal > tolerance) & (np.abs(value - target[active]) > 1e-15)]
        if active.size == 0:
            break
    return np.asarray((threshold + offset).reshape(u.shape))


def _bracket_right(target: FloatArray, threshold: FloatArray, delta: FloatArray) -> FloatArray:
    """An offset from s* at or to the right of the root of ``log G(s* + offset) = target``.

    ``G(x) <= w Phi(delta - x)`` (drop the draft term), so the ``target``-quantile of the ``w``-weighted
    ``N(delta, 1)`` tail lies to the right of the root (``target`` is relative to ``phi(s*)``).
    """
    # log(w Phi-bar(x - delta)) - log phi(s*) = target  <=>  Phi-bar(x - delta) = exp(target + log phi(s*) - log w)
    log_weight = delta * (0.5 * delta - threshold)  # ln w, from s* = delta/2 - ln(w)/delta
    log_tail = np.minimum(target + _log_normal_density(threshold) - log_weight, 0.0)
    x = delta - special.ndtri_exp(log_tail)
    return np.asarray(np.maximum(x - threshold, 0.0))
