"""The one-dimensional weighted residual law of Gaussian speculative sampling, in torch float64, on device.

Along the unit direction ``e = (mu - nu) / |mu - nu|`` a point is ``x = nu + sigma (s e + z_perp)``; under the draft
``s ~ N(0, 1)``, under the target ``s ~ N(delta, 1)``. For a weight ``0 < w <= 1`` the weighted residual has density
along e proportional to ``max(w phi(s - delta) - phi(s), 0)``, supported on ``s > s* = delta/2 - ln(w)/delta``, with
mass ``R(w, delta) = w Phi(u) - Phi(u - delta)``, ``u = delta/2 + ln(w)/delta`` (``theory.gaussian`` is the numpy
reference). This module computes ``log R`` and the residual's quantile function as a fixed sequence of tensor
operations: no host synchronization (no ``.item()``, no host-to-device copy, no data-dependent shapes), no
data-dependent Python control flow, a fixed number of iterations; it runs inside a GPU sampling round and compiles
into one graph under ``torch.compile``.

Coordinates. The quantile is returned measured from the *target* mean, ``t = s - delta``, so a residual draw is
``x = mu + sigma (t e + z_perp)``. ``t`` is O(1) when ``delta`` is large (the residual is then essentially the
target) and keeps its absolute accuracy, whereas ``s ~ delta`` there and ``nu + sigma s e`` loses it for
``delta >~ 1e5``. In ``t`` the residual density is ``g(t) = w phi(t) (1 - exp(-a))``, ``a = delta (t - b)``, on
``t > b = s* - delta = -delta/2 - ln(w)/delta``.

Numerics (``M(x) = Phi-bar(x) / phi(x) = sqrt(pi/2) erfcx(x / sqrt 2)`` is Mills' ratio, ``s = t + delta``):

* Mass. ``R = w Phi-bar(b) (1 - exp(-rho*))`` with ``rho* = log(M(b) / M(s*))`` (``w phi(b) = phi(s*)``). The log
  of the ratio of two ``erfcx`` values is accurate to a few ulps in absolute terms; where it is small (``< 1e-3``:
  ``delta`` short against the scale of M) it is ``int_b^{s*} (1/M(y) - y) dy`` by 2-point Gauss-Legendre instead
  (relative error < 1e-14 on such an interval), the integrand from its asymptotic series for large ``y``.
* Survival (right side, ``u >= 1/2``): ``G(t) = w Phi-bar(t) (1 - exp(-rho))`` with ``rho = a + log(M(t) / M(s))``,
  the same log-ratio.
* Lower CDF (left side, ``u < 1/2``): ``H(t) = int_b^t g``. While ``t - b`` is short against the scales
  ``1, |b|, delta`` of the density it is a 24-point Fejer quadrature of the density (positive integrand, no
  cancellation; nodes built on device); further out ``H = w |Phi(t) - Phi(b)| - (Phi-bar(s*) - Phi-bar(s))``
  with the Gaussian tails on the side of ``b``, which do not cancel there.
* The survival and the far lower CDF share one expression: ``X / (w Phi(sigma t)) = alpha + beta e_k + gamma
  expm1(-rho)`` with per-row constants (``sigma = +1`` only on the left where ``b < 0``), ``rho = a +
  log(M(-sigma t) / M(s))`` and ``e_k`` the constant part; the four ``erfcx`` arguments of a step (``-sigma t``,
  ``s`` and the two Gauss-Legendre nodes) are one ``addcmul`` of precomputed shift and slope.
* All log-probabilities of the iteration are taken relative to ``w phi(t)`` (``log(phi(b) / phi(t))`` is
  ``(t - b)(t + b) / 2``, exactly), so that the huge ``log phi(t) ~ -t^2/2`` of a far threshold never cancels.
* Root finding: Halley's method (twice, then Newton once) on ``log G`` or ``log H`` in the variable ``log(t - b)``:
  exact for the power law ``H ~ (t - b)^2`` at the threshold, Newton in ``t`` when the step is short against
  ``t - b``. Starts from closed-form bounds (the truncated target; a linear kernel ``1 - exp(-a) <= a``, refined
  once by a fixed point, exact for the Rayleigh-like law of ``delta -> 0``), inside a bracket that every step updates.

Accuracy (tests/specdiff/test_residual_law.py, against mpmath on a grid of the corners): ``t`` and ``s`` to
~1e-12 x max(1, |value|), ``log R`` to ~1e-15 x max(1, |log R|), for ``w`` in [1e-300, 1], ``delta`` in
[1e-12, 1e8] and ``u`` in [0, 1). Far outside (``delta < 1e-150``, ``|ln w| / delta > 1e150``) the quantile
saturates but stays finite.
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
#: Larger gaps are treated as this one (``delta = +inf`` included): the draft then has no mass near the residual.
_DELTA_MAX = 1e150
#: Uniforms are clamped to [_U_MIN, _U_MAX] (u == 0 returns the threshold exactly); this moves probability < 1e-300.
_U_MIN = 1e-300
_U_MAX = 1.0 - 2.0**-53
#: Rows with u below this solve for the lower CDF H, the others for the survival function G.
_U_SPLIT = 0.5
#: The iterations of the quantile (fixed: no data-dependent stopping); True = Halley, False = Newton.
_SCHEDULE = (True, True, False)
#: ``log(M(x) / M(x + delta))`` below this is integrated (2-point Gauss-Legendre) instead of taken as a log-ratio.
_RHO_QUADRATURE = 1e-3
#: The left-side density quadrature is used while ``(t - b) max(1, |b|, delta)`` is at most this.
_LEFT_QUADRATURE_EXTENT = 3.0
#: Asymptotic series of ``1/M(y) - y`` (coefficients of 1/y, 1/y^3, ...) and where it replaces the direct form.
_INVERSE_MILLS_SERIES = (1.0, -2.0, 10.0, -74.0, 706.0, -8162.0)
_SERIES_FROM = 40.0
_SERIES_FROM_FAST = 1e4
#: Fixed-point refinements of the right-side starting point.
_START_REFINEMENTS = 1


#: The 2-point Gauss-Legendre nodes on [0, 1] (Python scalars: they enter as ``alpha`` arguments).
_GL2_NODES = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))
#: Nodes of the left-side quadrature (Fejer's first rule): relative error < 1e-15 over the extent used.
_LEFT_NODES = 24


def _fejer_rule(like: torch.Tensor, order: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fejer's first rule on [0, 1], built on the device of ``like`` (no host-to-device copy), shaped to broadcast.

    Nodes ``(1 - cos theta_k) / 2`` with ``theta_k = (k + 1/2) pi / n`` and weights
    ``(1 - 2 sum_{j=1}^{n/2} cos(2 j theta_k) / (4 j^2 - 1)) / n`` times ``scale`` (positive), returned as their
    logarithms (they enter the exponent of the integrand). Shape ``(n, 1, ..., 1)`` against ``like``.
    """
    theta = torch.arange(0.5, order, 1.0, dtype=torch.float64, device=like.device) * (math.pi / order)
    frequencies = torch.arange(1.0, order // 2 + 1.0, 1.0, dtype=torch.float64, device=like.device)
    harmonics = torch.cos(torch.outer(theta, 2.0 * frequencies)) @ torch.reciprocal(4.0 * frequencies**2 - 1.0)
    shape = (order,) + (1,) * like.dim()
    nodes = torch.cos(theta).sub_(1.0).mul_(-0.5).view(shape)
    weights = torch.rsub(harmonics, 0.5).mul_(2.0 * scale / order).log_().view(shape)
    return nodes, weights


def _as_float64(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.broadcast_tensors(*(torch.as_tensor(x, dtype=torch.float64) for x in tensors)))


def _frame(
    log_weight: torch.Tensor, delta: torch.Tensor, delta_min: float, threshold_max: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sanitized ``(ln w, delta)``, the thresholds ``b = s* - delta`` and ``s*``, and the empty-residual mask.

    Rows with an empty residual (``delta == 0`` or ``ln w == -inf``) get the stand-in ``w = 1, delta = 1`` so that
    every later operation stays finite; callers overwrite their results. ``delta`` is clamped to
    ``[delta_min, _DELTA_MAX]`` and ``-ln(w) / delta`` to at most ``threshold_max``, far outside the domain of use
    (there the results saturate instead of overflowing).
    """
    empty = (delta <= 0) | (log_weight == -math.inf)
    delta = delta.clamp(delta_min, _DELTA_MAX).masked_fill(empty, 1.0)
    log_weight = log_weight.masked_fill(empty, 0.0)
    s_star = torch.sub(0.5 * delta, (log_weight / delta).clamp(min=-threshold_max))
    return log_weight, delta, s_star - delta, s_star, empty


def _log_mills_ratio(
    lower: torch.Tensor, upper: torch.Tensor, delta: torch.Tensor, delta_scaled: torch.Tensor, accurate: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log(M(lower) / M(upper)) >= 0`` for ``upper = lower + delta``, and ``log(erfcx(x / sqrt 2) / 2)`` at both.

    ``log(M(x) / M(x + delta)) = int_x^{x + delta} h(y) dy`` with ``h = 1/M(y) - y = -d log M / dy > 0``. The log of
    the ratio of the two erfcx values has an absolute error of a few ulps; below ``_RHO_QUADRATURE`` (``delta``
    short against the scale of M) the integral is taken by 2-point Gauss-Legendre instead, whose relative error is
    below 1e-14 on such an interval (``delta_scaled = delta / (2 sqrt(pi/2))``). ``h`` is smooth; it is ``-y`` where
    erfcx overflows (y < -37), and its direct form loses a factor ``y^2`` of relative precision, so for large ``y``
    it comes from its asymptotic series: 6 terms above 40 (``accurate``, ~1e-14) or ``1/y`` above 1e4 (~1e-8).
    """
    points = torch.stack([lower, upper, *(torch.add(lower, delta, alpha=c) for c in _GL2_NODES)])
    erfcx_half = torch.special.erfcx(points * _SQRT_HALF)
    log_erfcx_lower, log_erfcx_upper = torch.log(erfcx_half[:2] * 0.5).unbind(0)
    direct = log_erfcx_lower - log_erfcx_upper
    nodes = points[2:]
    scaled = torch.sub(torch.reciprocal(erfcx_half[2:]), nodes, alpha=_SQRT_HALF_PI)  # sqrt(pi/2) h(y)
    if accurate:
        reciprocal = torch.reciprocal(nodes)
        inverse_square = reciprocal * reciprocal
        acc = torch.rsub(inverse_square, _INVERSE_MILLS_SERIES[-2], alpha=-_INVERSE_MILLS_SERIES[-1])
        for coefficient in reversed(_INVERSE_MILLS_SERIES[:-2]):
            acc = torch.add(acc * inverse_square, coefficient)
        series = torch.mul(reciprocal * acc, _SQRT_HALF_PI)
        cut = _SERIES_FROM
    else:
        series = torch.reciprocal(nodes * (1.0 / _SQRT_HALF_PI))
        cut = _SERIES_FROM_FAST
    quadrature = torch.where(nodes > cut, series, scaled).sum(0) * delta_scaled
    return torch.where(direct < _RHO_QUADRATURE, quadrature, direct), log_erfcx_lower, log_erfcx_upper


def log_residual_mass(log_weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``log R(w, delta)``, the log mass of the weighted residual ``max(w N(delta, 1) - N(0, 1), 0)``.

    ``R(w, delta) = w Phi(u) - Phi(u - delta)`` with ``u = delta/2 + ln(w)/delta``, computed as
    ``w Phi-bar(b) (1 - exp(-rho*))`` without cancellation (module docstring): relative accuracy in ``R`` (absolute
    in ``log R``, up to a few ulps of ``|log R|``) even far below 1e-300 (``w = 0.2, delta = 0.05`` gives
    ``R ~ 1e-230``). A fixed sequence of float64 tensor operations with no host synchronization.

    Parameters
    ----------
    log_weight : Tensor, shape (...)
        ``ln w`` in [-inf, 0].
    delta : Tensor, shape (...)
        Standardized gap ``|mu - nu| / sigma`` in [0, +inf]. Broadcasts against ``log_weight``.

    Returns
    -------
    Tensor, shape broadcast(log_weight, delta), float64
        ``log R``; ``-inf`` where ``delta == 0`` or ``log_weight == -inf`` (empty residual). Never NaN for
        ``log_weight <= 0`` and ``delta >= 0`` (``delta = +inf`` gives ``ln w``).
    """
    log_weight, delta = _as_float64(log_weight, delta)
    log_weight, delta, b, s_star, empty = _frame(log_weight, delta, 0.0, 1e300)
    rho, _, _ = _log_mills_ratio(b, s_star, delta, delta * (0.5 / _SQRT_HALF_PI), accurate=True)
    log_mass = log_weight + torch.special.log_ndtr(-b) + torch.log(-torch.expm1(-rho))
    return log_mass.masked_fill(empty, -math.inf)


def residual_offset_quantile(uniforms: torch.Tensor, log_weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The weighted residual's quantile measured from the target mean: ``t = s - delta``.

    ``s`` is the ``u``-quantile of the residual law along e (density ``∝ max(w phi(s - delta) - phi(s), 0)``), so a
    residual draw is ``mu + sigma (t e + z_perp)``; ``t`` keeps its absolute accuracy when ``delta`` is large (module
    docstring). Halley's method with a bracket for a fixed number of iterations, no host synchronization.

    Parameters
    ----------
    uniforms : Tensor, shape (...)
        ``u`` in [0, 1]; ``u == 0`` gives the lower end ``b = -delta/2 - ln(w)/delta`` of the support, and ``u`` is
        clamped to [1e-300, 1 - 2^-53] otherwise (this moves probability below 1e-300).
    log_weight : Tensor, shape (...)
        ``ln w`` in [-inf, 0].
    delta : Tensor, shape (...)
        Standardized gap in [0, +inf]. All three broadcast.

    Returns
    -------
    Tensor, shape broadcast(uniforms, log_weight, delta), float64
        ``t`` with ``P(T <= t) = u``, ``t >= b``. Where the residual is empty (``delta == 0`` or ``log_weight ==
        -inf``) it is 0 (finite, never NaN), so a caller can compute every row and select with ``torch.where``.
    """
    u, log_weight, delta = _as_float64(uniforms, log_weight, delta)
    # Thresholds beyond 1e150 (or gaps below 1e-150: the quantile is then within 1e-150 of its delta -> 0 limit) are
    # clamped so that b^2 and delta (t - b) stay representable.
    log_weight, delta, b, s_star, empty = _frame(log_weight, delta, 1e-150, 1e150)
    delta_scaled = delta * (0.5 / _SQRT_HALF_PI)
    # (1e-8 relative in rho* is plenty for the quantile: it moves t by ~1e-8 / (hazard rate ~ max(1, b)))
    rho_star, log_erfcx_b, _ = _log_mills_ratio(b, s_star, delta, delta_scaled, accurate=False)
    minus_b = -b
    log_cdf_b, log_tail_b, log_tail_s_star = torch.special.log_ndtr(torch.stack([b, minus_b, -s_star])).unbind(0)
    log_fraction = torch.log(-torch.expm1(-rho_star))  # log(R / (w Phi-bar(b)))
    rel = log_tail_b + log_fraction  # log(R / w)
    at_zero = u <= 0
    u = u.clamp(_U_MIN, _U_MAX)
    left = u < _U_SPLIT
    b_negative = b < 0
    ones = torch.ones_like(b)
    sign_b = torch.copysign(ones, minus_b)  # +1 where b < 0, -1 where b >= 0 (also b = +0)
    flip = torch.copysign(ones, u - _U_SPLIT)  # -1 on the left side, +1 on the right side
    log_u = torch.log(u)
    log_1mu = torch.log1p(-u)
    log_u_mass = log_u + rel  # log(u R / w)
    log_v_mass = log_1mu + rel  # log((1 - u) R / w)
    # Bounds from the truncated target: G <= w Phi-bar(t) (right) and H <= w |Phi(sigma t) - Phi(sigma b)| (left,
    # in the tail where b lies). exp underflows only where the bound is useless: t_upper = +inf; the left argument
    # is clamped (so t_lower stays finite) where b > 38 and the clamped bound lies below b.
    left_arg = torch.where(
        b_negative,
        torch.logaddexp(log_cdf_b, log_u_mass),
        log_tail_b + torch.log(-torch.expm1(log_u + log_fraction)),
    )
    z_right, z_left = torch.special.ndtri(torch.exp(torch.stack([log_v_mass, left_arg.clamp(min=-740.0)])))
    t_upper = -z_right
    t_lower = sign_b * z_left
    # log(R / (w phi(b+))) - log sqrt(2 pi) with b+ = max(b, 0): for b >= 0 it is log M(b) (1 - exp(-rho*)), with no
    # cancellation of the large log phi(b). (The constant log sqrt(2 pi) is folded into other terms below.)
    b_plus = b.clamp(min=0.0)
    log_mass_scaled = log_fraction + torch.where(b_negative, log_tail_b, log_erfcx_b)
    log_delta = torch.log(delta) - _LOG_SQRT_2PI
    # Right: G <= w delta int_t^inf phi(y) (y - b) dy = w delta phi(t) (1 - b M(t)) <= w delta phi(t) K(t) with
    # K = (1 + t (t - b)) / (1 + t^2) for b >= 0 (M(t) >= t / (1 + t^2)) and K = 1 + sqrt(pi/2) |b| for b < 0,
    # t >= 0. In y = (t^2 - b+^2) / 2 the root of "bound = (1 - u) R" is a fixed point of y = slack + log K(t):
    # slack + log K(b+) gives an upper bound, and the refinement approaches the root of the bound from above (the
    # Rayleigh law for b = 0, Gamma(2)-like for large b).
    slack = torch.log1p(_SQRT_HALF_PI * minus_b.clamp(min=0.0)) - (log_1mu + log_mass_scaled - log_delta)
    b_plus_square = b_plus * b_plus
    square = torch.add(b_plus_square, slack, alpha=2.0).clamp(min=0.0)
    t_linear = torch.sqrt(square)
    t_start = t_linear
    for _ in range(_START_REFINEMENTS):
        log_k = torch.log1p(t_start * (t_start - b_plus)) - torch.log1p(square)
        square = torch.add(b_plus_square, slack + log_k, alpha=2.0).clamp(min=0.0)
        t_start = torch.sqrt(square)
    b_above = torch.nextafter(b, torch.full_like(b, math.inf))
    t_right = torch.maximum(torch.minimum(t_upper, t_start), b_above)
    high_right = torch.maximum(torch.minimum(t_upper, t_linear), b_above)
    # Left: H <= w delta phi(b+) (t - b)^2 / 2.
    offset_linear = torch.exp(0.5 * (math.log(2.0) + log_u + log_mass_scaled - log_delta))
    t_left = torch.maximum(torch.maximum(t_lower, b + offset_linear), b_above)
    t = torch.where(left, t_left, t_right)
    low = torch.where(left, t_left, b_above)
    high = high_right.masked_fill(left, math.inf)
    # Constants of the iteration. Every log-probability below is taken relative to w phi(t) and shifted by
    # log sqrt(2/pi): f = log(X / (w phi(t))) + log sqrt(2/pi), so that the large log phi(t) ~ -t^2/2 never cancels.
    sigma_t = torch.minimum(sign_b, -flip)  # Phi(sigma t): the lower tail of t only on the left where b < 0
    # Right and left-tail formulas in one: X / (w Phi(sigma t)) = alpha + beta e_k + gamma expm1(-rho), with
    # rho = a + log(M(-sigma t) / M(s)) and e_k the constant K over w Phi(sigma t) (module docstring).
    right = ~left
    alpha = sigma_t + 1.0  # 2 on the left where b < 0, else 0
    beta = -sign_b  # -1 where b < 0, +1 where b >= 0 (irrelevant on the right, where e_k = 0)
    gamma = -flip  # +1 on the left, -1 on the right
    flip = flip * _SQRT_HALF_PI  # folds the normalization into the Newton step
    target = torch.where(left, log_u, log_1mu) + (log_mass_scaled + math.log(2.0))
    # log(K / (w phi(b+))) - log sqrt(pi/2) for the constant K = w Phi(b) + Phi-bar(s*) (b < 0), R (b >= 0); -inf on
    # the right side (e_k = 0 there).
    log_constant = torch.where(
        b_negative, torch.logaddexp(log_cdf_b, log_tail_s_star - log_weight), log_mass_scaled
    ).masked_fill(right, -math.inf) + math.log(2.0)
    # The quadrature is used on the left while (t - b) max(1, |b|, delta) <= _LEFT_QUADRATURE_EXTENT.
    minus_extent = torch.reciprocal(torch.maximum(b.abs(), delta).clamp(min=1.0)) * -_LEFT_QUADRATURE_EXTENT
    minus_extent = minus_extent.masked_fill(right, math.inf)
    left_nodes, left_log_weights = _fejer_rule(b, _LEFT_NODES, math.sqrt(2.0 / math.pi))
    # erfcx arguments (scaled by 1/sqrt 2) [-sigma t, s, t + c1 delta, t + c2 delta] as shift + slope t.
    delta_half = delta * _SQRT_HALF
    shift = torch.stack([torch.zeros_like(delta), delta_half, delta_half * _GL2_NODES[0], delta_half * _GL2_NODES[1]])
    slope = torch.stack([sigma_t * -_SQRT_HALF, *(torch.full_like(delta, _SQRT_HALF),) * 3])
    far = (b > _SERIES_FROM_FAST).expand_as(shift[2:])
    for iteration, halley in enumerate(_SCHEDULE):
        minus_o = b - t
        minus_a = minus_o * delta  # -a = -delta (t - b)
        points = torch.addcmul(shift, slope, t).clamp_(min=-26.0)
        erfcx = torch.special.erfcx(points)
        log_erfcx = torch.log(erfcx[:2])
        log_erfcx_t = log_erfcx[0]
        direct = log_erfcx_t - log_erfcx[1]
        nodes = points[2:]
        scaled = torch.where(
            far,
            torch.reciprocal(nodes * (2.0 / math.sqrt(math.pi))),
            torch.reciprocal(erfcx[2:]) - math.sqrt(math.pi) * nodes,
        )
        ratio = torch.where(direct < _RHO_QUADRATURE, scaled.sum(0) * delta_scaled, direct)
        em_rho = torch.expm1(minus_a - ratio)
        t_minus = t - b_plus
        t_plus = t + b_plus
        target_t = torch.addcmul(target, t_minus, t_plus, value=0.5)
        e_k = torch.exp(torch.addcmul(log_constant, t_minus, t_plus, value=0.5) - log_erfcx_t)
        combination = torch.addcmul(torch.addcmul(alpha, beta, e_k), gamma, em_rho)
        f_tails = log_erfcx_t + torch.log(combination.clamp(min=1e-300))
        # Left side near the threshold: Fejer quadrature of the density over [b, t] relative to w phi(b).
        minus_v = minus_o * left_nodes
        exponent = torch.addcmul(left_log_weights, minus_v, torch.add(b, minus_v, alpha=-0.5))
        integral = (torch.exp(exponent) * torch.expm1(minus_v * delta)).sum(0)
        f_quadrature = torch.addcmul(torch.log(integral * minus_o), minus_o, t + b, value=-0.5)
        f = torch.where(minus_o >= minus_extent, f_quadrature, f_tails)
        diff = f - target_t
        expm1_gap = torch.expm1(minus_a)
        signed = diff * flip
        # Step in l = log(t - b): -q = f / f_l; Halley divides it by 1 - f f_ll / (2 f_l^2) = 1 + (q c + f) / 2 with
        # c = 1 + (t - b) d log g / dt = 1 - (t - b) t + a / expm1(a).
        q = signed * torch.exp(f - torch.log(minus_o * expm1_gap))
        if halley:
            curvature = torch.addcmul(torch.addcdiv(minus_a, minus_a, expm1_gap), minus_o, t).add_(1.0)
            scale = torch.addcmul(diff, q, curvature).mul_(0.5).add_(1.0).clamp_(0.5, 2.0)
            q = q / scale
        if iteration + 1 < len(_SCHEDULE):  # (the bracket only guards later steps)
            below = signed > 0
            low = torch.where(below, t, low)
            high = torch.where(below, high, t)
        t = torch.clamp(torch.addcmul(t, minus_o, torch.expm1(q), value=-1.0), low, high)
    t = torch.where(at_zero, b, t)
    return t.masked_fill(empty, 0.0)


def residual_quantile(uniforms: torch.Tensor, log_weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The same quantile measured from the draft mean, ``s = delta + t`` (what ``theory.gaussian`` returns).

    Parameters
    ----------
    uniforms, log_weight, delta : Tensor, shape (...)
        As in :func:`residual_offset_quantile`.

    Returns
    -------
    Tensor, shape broadcast(uniforms, log_weight, delta), float64
        ``s`` with ``P(S <= s) = u``; ``delta`` where the residual is empty.
    """
    u, log_weight, delta = _as_float64(uniforms, log_weight, delta)
    return delta + residual_offset_quantile(u, log_weight, delta)
