"""Tests of ``specdiff.residual_law``: the 1-D weighted residual law in torch float64, with no host synchronization.

References. The quantile is checked against an independent high-precision solution (mpmath) of the closed form
``P(T > t) = (w Phi-bar(t) - Phi-bar(t + delta)) / R`` (``t`` measured from the target mean) on a grid covering the
corners (w in [1e-300, 1], delta in [1e-12, 1e8], u from 0 to 1 - 2^-53), in both coordinates ``t`` and
``s = delta + t``; ``log R`` against mpmath and against ``theory.gaussian`` (the numpy reference) where that one is
accurate. The statistical tests check the law of the quantile of uniform draws with a Kolmogorov-Smirnov test
against ``theory.gaussian.residual_log_survival`` (false-positive rate ``ALPHA`` of tests/statistics.py, Bonferroni
over the cases, fixed seed), with negative controls that the same test rejects. The structural tests record every
aten operation: no host synchronization or host-to-device copy, and the same operation sequence whatever the data;
and the functions compile into one graph.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt
import pytest
import torch
from mpmath import mp, mpf
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

from specdiff.residual_law import log_residual_mass, residual_offset_quantile, residual_quantile
from tests.statistics import ALPHA
from theory.gaussian import log_residual_mass_from_log_weight, residual_log_survival, residual_quantile_from_log_weight

FloatArray = npt.NDArray[np.float64]

#: The corner grid: 8 weights x 10 gaps x 7 uniforms.
LOG_WEIGHTS = (0.0, -1e-12, math.log(0.9), math.log(0.2), math.log(1e-3), math.log(1e-20), math.log(1e-100), -690.0)
DELTAS = (1e-12, 1e-6, 1e-3, 0.1, 1.0, 3.0, 10.0, 40.0, 3e5, 1e8)
UNIFORMS = (0.0, 1e-300, 1e-17, 1e-6, 0.5, 0.9, 1.0 - 2.0**-53)
#: Required accuracy of t and s, relative to max(1, |value|).
TOLERANCE = 1e-9
#: Required accuracy of log R: absolute 1e-12 (relative in R), plus a few ulps of |log R| (which float64 cannot beat).
MASS_TOLERANCE = 1e-12
MASS_ULPS = 8.0 * np.finfo(np.float64).eps

SAMPLES = 20_000
#: (w, delta) of the Kolmogorov-Smirnov tests: tiny and huge gaps, a small weight, and the bulk.
KS_CASES = ((1e-3, 1e-6), (1.0, 3e5), (0.1, 1.0), (0.5, 3.0), (1e-3, 40.0))
SEED_KS = 20_260_301
SEED_KS_NEGATIVE = 20_260_302
SEED_SHAPES = 20_260_303

#: Operations that read a device value on the host, whose output shape depends on the data, or that make a tensor
#: from host data (a host-to-device copy on a GPU).
FORBIDDEN_OPS = frozenset(
    {
        "aten.lift_fresh",
        "aten._local_scalar_dense",
        "aten.item",
        "aten.nonzero",
        "aten.masked_select",
        "aten.is_nonzero",
        "aten.equal",
        "aten.index",
        "aten.unique",
        "aten._unique2",
    }
)


# --------------------------------------------------------------------------------------------------------------------
# High-precision reference (mpmath), in the offset o = t - b from the lower end b = -delta/2 - ln(w)/delta
# --------------------------------------------------------------------------------------------------------------------

#: Working precision; functions raise it by the number of digits their closed forms cancel.
MP_DPS = 30


def _mp_tail(x: mpf) -> mpf:
    """``Phi-bar(x)``."""
    return mpmath.erfc(x / mpmath.sqrt(2)) / 2


def _mp_frame(log_weight: float, delta: float) -> tuple[mpf, mpf, mpf, mpf]:
    """``(ln w, delta, b, s*)`` at the current precision (the float inputs are exact)."""
    lw, d = mpf(log_weight), mpf(delta)
    return lw, d, -d / 2 - lw / d, d / 2 - lw / d


def _digits(x: mpf) -> int:
    """``max(0, log10 x)``: decimal digits lost to a cancellation of relative size 1/x."""
    return int(max(0.0, float(mpmath.log10(x)))) if x > 0 else 0


def _mp_log_mass(log_weight: float, delta: float) -> mpf:
    """``log R`` from ``w Phi-bar(b) - Phi-bar(s*)``, with the cancellation (``~ delta / max(1, s*)``) covered."""
    with mp.workdps(MP_DPS):
        s_star = _mp_frame(log_weight, delta)[3]
        extra = _digits(max(mpf(1), abs(s_star)) / mpf(delta))
    with mp.workdps(MP_DPS + extra + 10):
        lw, _, b, s_star = _mp_frame(log_weight, delta)
        return +mpmath.log(mpmath.exp(lw) * _mp_tail(b) - _mp_tail(s_star))


def _mp_log_lower(offset: mpf, log_weight: float, delta: float) -> mpf:
    """``log H(b + o) - log(w phi(b))`` with ``H(t) = int_b^t (w phi(y) - phi(y + delta)) dy``.

    ``H / (w phi(b)) = int_0^o exp(-b v - v^2/2) (1 - exp(-delta v)) dv``: a power series when ``o`` is short against
    ``1 / max(1, |b|, delta)`` (``exp(-c v - v^2/2) = sum_n He_n(-c) v^n / n!``), the closed form
    ``w (Phi(t) - Phi(b)) - (Phi-bar(s*) - Phi-bar(s* + o))`` at raised precision otherwise.
    """
    _, d, b, _ = _mp_frame(log_weight, delta)
    if offset * max(mpf(1), abs(b), d) < 1:
        with mp.workdps(mp.dps + _digits(1 / d) + 10):
            _, d, b, _ = _mp_frame(log_weight, delta)
            x1, x2 = -b, -b - d
            previous1, current1, previous2, current2 = mpf(1), x1, mpf(1), x2  # He_{n-1}, He_n at x1 and x2
            total, power = mpf(0), offset * offset / 2  # power = o^(n+1) / (n+1)!
            for n in range(1, 61):  # o max(1, |b|, delta) < 1: the terms fall faster than 1 / n!
                total += (current1 - current2) * power
                previous1, current1 = current1, x1 * current1 - n * previous1
                previous2, current2 = current2, x2 * current2 - n * previous2
                power = power * offset / (n + 2)
            return +mpmath.log(total)
    with mp.workdps(mp.dps + _digits((1 + abs(b)) / offset) + _digits(1 / (d * offset)) + 10):
        lw, d, b, s_star = _mp_frame(log_weight, delta)
        t = b + offset
        tail_mass = _mp_tail(b) - _mp_tail(t) if b >= 0 else _mp_tail(-t) - _mp_tail(-b)
        lower = mpmath.exp(lw) * tail_mass - (_mp_tail(s_star) - _mp_tail(s_star + offset))
        return +(mpmath.log(lower) - lw + b * b / 2 + mpmath.log(2 * mpmath.pi) / 2)


def _mp_log_upper(offset: mpf, log_weight: float, delta: float) -> mpf:
    """``log G(b + o) - log(w phi(b))`` with ``G(t) = w Phi-bar(t) - Phi-bar(t + delta)``, at raised precision."""
    _, d, b, _ = _mp_frame(log_weight, delta)
    extra = _digits((1 + abs(b)) / offset) + _digits((1 + abs(b) + offset) / (d * min(offset, mpf(1))))
    with mp.workdps(mp.dps + extra + 10):
        lw, d, b, s_star = _mp_frame(log_weight, delta)
        upper = mpmath.exp(lw) * _mp_tail(b + offset) - _mp_tail(s_star + offset)
        return +(mpmath.log(upper) - lw + b * b / 2 + mpmath.log(2 * mpmath.pi) / 2)


def _mp_offset_quantile(u: float, log_weight: float, delta: float, start: float) -> mpf:
    """``t`` with ``P(T <= t) = u``: safeguarded Newton on ``log(o)`` for ``log H = log(u R)`` (u < 1/2) or
    ``log G = log((1 - u) R)``, from ``start`` (any start converges; a close one saves iterations)."""
    with mp.workdps(MP_DPS):
        lw, d, b, _ = _mp_frame(log_weight, delta)
        if u == 0:
            return b
        left = u < 0.5
        log_scaled_mass = _mp_log_mass(log_weight, delta) - lw + b * b / 2 + mpmath.log(2 * mpmath.pi) / 2
        target = log_scaled_mass + (mpmath.log(mpf(u)) if left else mpmath.log1p(-mpf(u)))
        offset = mpf(start) - b
        if not offset > 0:
            offset = mpf(10) ** -20 / max(mpf(1), abs(b), d)
        low, high = mpf(0), mpf("inf")
        for _ in range(200):
            value = (_mp_log_lower if left else _mp_log_upper)(offset, log_weight, delta) - target
            if (value < 0) == left:
                low = offset
            else:
                high = offset
            log_density = -b * offset - offset * offset / 2 + mpmath.log(-mpmath.expm1(-d * offset))
            slope = offset * mpmath.exp(log_density - value - target) * (1 if left else -1)  # d value / d log o
            new = offset * mpmath.exp(max(min(-value / slope, mpf(20)), mpf(-20)))
            if not low < new < high:  # bisect in log(o), or leave an unbounded side fast
                if 0 < low and high < mpf("inf"):
                    new = mpmath.sqrt(low * high)
                else:
                    new = offset * mpf(10) ** (20 if low == offset else -20)
            if abs(new - offset) <= mpf(10) ** (5 - MP_DPS) * offset:
                return b + new
            offset = new
        raise AssertionError(f"mpmath reference did not converge for u={u}, ln w={log_weight}, delta={delta}")


@functools.cache
def _grid() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[mpf]]:
    """The corner grid as flat float64 tensors ``(u, ln w, delta)`` and the mpmath quantiles ``t`` (computed once)."""
    cells = [(u, lw, d) for lw in LOG_WEIGHTS for d in DELTAS for u in UNIFORMS]
    u, lw, d = (torch.tensor(column, dtype=torch.float64) for column in zip(*cells, strict=True))
    starts = residual_offset_quantile(u, lw, d).tolist()
    return u, lw, d, [_mp_offset_quantile(*cell, start) for cell, start in zip(cells, starts, strict=True)]


def _relative_errors(values: torch.Tensor, references: list[mpf]) -> FloatArray:
    """``|value - reference| / max(1, |reference|)`` with the difference taken in mpmath."""
    return np.array([float(abs(mpf(v) - r) / max(1, abs(r))) for v, r in zip(values.tolist(), references, strict=True)])


# --------------------------------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_offset_quantile_matches_mpmath_on_the_corner_grid() -> None:
    u, lw, d, reference = _grid()
    t = residual_offset_quantile(u, lw, d)
    errors = _relative_errors(t, reference)
    worst = int(np.argmax(errors))
    assert errors.max() <= TOLERANCE, (u[worst].item(), lw[worst].item(), d[worst].item(), t[worst].item())


def test_quantile_from_the_draft_mean_matches_mpmath_on_the_corner_grid() -> None:
    u, lw, d, reference = _grid()
    s = residual_quantile(u, lw, d)
    errors = _relative_errors(s, [delta + r for delta, r in zip(d.tolist(), reference, strict=True)])
    assert errors.max() <= TOLERANCE
    torch.testing.assert_close(s, d + residual_offset_quantile(u, lw, d), rtol=0.0, atol=0.0)


def test_large_gaps_keep_absolute_accuracy_from_the_target_mean() -> None:
    # The point of measuring from the target mean: at delta = 3e5 and 1e8 the offset t is O(1) and exact to ~1e-15,
    # where s = delta + t only carries 1e-11 (resp. 1e-8) absolutely.
    u, lw, d, reference = _grid()
    large = (d >= 3e5) & (u > 1e-6)
    t = residual_offset_quantile(u[large], lw[large], d[large])
    errors = _relative_errors(t, [r for r, keep in zip(reference, large.tolist(), strict=True) if keep])
    assert np.all(np.abs(t.numpy()) < 40.0)
    assert errors.max() <= 1e-13


def test_zero_uniform_gives_the_lower_end_of_the_support() -> None:
    lw = torch.tensor([0.0, math.log(0.2), -690.0, math.log(0.5)], dtype=torch.float64)
    d = torch.tensor([1.0, 0.05, 1e-12, 1e8], dtype=torch.float64)
    t = residual_offset_quantile(torch.zeros(4, dtype=torch.float64), lw, d)
    torch.testing.assert_close(t, -d / 2 - lw / d, rtol=0.0, atol=0.0)


def test_log_mass_matches_mpmath() -> None:
    lw = torch.tensor([a for a in LOG_WEIGHTS for _ in DELTAS], dtype=torch.float64)
    d = torch.tensor([b for _ in LOG_WEIGHTS for b in DELTAS], dtype=torch.float64)
    log_mass = log_residual_mass(lw, d)
    reference = [_mp_log_mass(a, b) for a, b in zip(lw.tolist(), d.tolist(), strict=True)]
    errors = np.array([float(abs(mpf(v) - r)) for v, r in zip(log_mass.tolist(), reference, strict=True)])
    bound = MASS_TOLERANCE + MASS_ULPS * np.abs(log_mass.numpy())
    assert np.all(errors <= bound), errors / bound
    # The example of the module docstring: w = 0.2, delta = 0.05 gives R ~ 1e-230.
    example = log_residual_mass(*(torch.tensor(x, dtype=torch.float64) for x in (math.log(0.2), 0.05))).item()
    assert abs(example - float(_mp_log_mass(math.log(0.2), 0.05))) <= MASS_TOLERANCE
    assert -531.0 < example < -528.0


def test_log_mass_matches_the_numpy_reference_where_it_is_accurate() -> None:
    # theory.gaussian's log_residual_mass is accurate to ~1e-13 for delta <= 50 (its docstring).
    lw, d = np.meshgrid(np.array(LOG_WEIGHTS), np.geomspace(1e-12, 50.0, 41))
    ours = log_residual_mass(torch.from_numpy(lw), torch.from_numpy(d)).numpy()
    reference = log_residual_mass_from_log_weight(lw, d)
    np.testing.assert_array_less(np.abs(ours - reference), 1e-12 + 1e-13 * np.abs(reference))


def test_quantile_matches_the_numpy_reference_where_it_is_accurate() -> None:
    # theory.gaussian inverts the survival function from the draft mean: accurate for u away from 0 (it solves
    # log S = log(1 - u), which cannot resolve u below ~1e-6) and for moderate delta.
    generator = np.random.default_rng(SEED_SHAPES)
    u = np.concatenate([generator.uniform(1e-3, 1.0, 200), [0.5, 0.9, 1.0 - 2.0**-53]])
    lw = -(10.0 ** generator.uniform(-12.0, np.log10(690.0), u.size))
    d = 10.0 ** generator.uniform(-12.0, np.log10(40.0), u.size)
    ours = residual_quantile(torch.from_numpy(u), torch.from_numpy(lw), torch.from_numpy(d)).numpy()
    reference = residual_quantile_from_log_weight(u, lw, d)
    np.testing.assert_array_less(np.abs(ours - reference), TOLERANCE * np.maximum(1.0, np.abs(reference)))


def test_quantile_is_monotone_in_the_uniform() -> None:
    u = torch.cat([torch.logspace(-300, -1, 300, dtype=torch.float64), torch.linspace(0.1, 1.0 - 2.0**-53, 300)])
    lw = torch.tensor([0.0, math.log(0.3), -690.0], dtype=torch.float64)[:, None]
    d = torch.tensor([1e-6, 2.0, 3e5], dtype=torch.float64)[:, None, None]
    t = residual_offset_quantile(u, lw, d)
    assert t.shape == (3, 3, u.numel())
    assert bool((t.diff(dim=-1) >= 0).all())


# --------------------------------------------------------------------------------------------------------------------
# Edge cases, shapes and dtypes
# --------------------------------------------------------------------------------------------------------------------


def test_empty_residual_is_finite_and_leaves_other_rows_alone() -> None:
    lw = torch.tensor([0.0, -math.inf, math.log(0.3), 0.0, -math.inf], dtype=torch.float64)
    d = torch.tensor([0.0, 1.0, 2.0, 1e-300, 0.0], dtype=torch.float64)
    u = torch.tensor([0.5, 0.5, 0.7, 0.5, 0.0], dtype=torch.float64)
    t = residual_offset_quantile(u, lw, d)
    s = residual_quantile(u, lw, d)
    log_mass = log_residual_mass(lw, d)
    assert bool(torch.isfinite(t).all()) and bool(torch.isfinite(s).all())
    empty = torch.tensor([True, True, False, False, True])
    assert bool((t[empty] == 0).all()) and bool((s[empty] == d[empty]).all())
    assert bool((log_mass[empty] == -math.inf).all())
    assert not bool(torch.isnan(log_mass).any())
    single = residual_offset_quantile(u[2:4], lw[2:4], d[2:4])
    torch.testing.assert_close(t[2:4], single, rtol=0.0, atol=0.0)


def test_infinite_gap_gives_the_target() -> None:
    # delta = +inf: the draft has no mass near the residual, R = w and the residual is the target N(0, 1) in t.
    u = torch.tensor([1e-300, 0.1, 0.5, 0.9], dtype=torch.float64)
    lw = torch.tensor(math.log(0.25), dtype=torch.float64)
    t = residual_offset_quantile(u, lw, torch.tensor(math.inf, dtype=torch.float64))
    torch.testing.assert_close(t, torch.special.ndtri(u), rtol=1e-14, atol=1e-14)
    assert log_residual_mass(lw, torch.tensor(math.inf, dtype=torch.float64)).item() == pytest.approx(math.log(0.25))


def test_shapes_broadcast_and_the_result_is_float64() -> None:
    generator = torch.Generator().manual_seed(SEED_SHAPES)
    u = torch.rand(4, 1, 1, generator=generator, dtype=torch.float32)
    lw = -torch.rand(1, 3, 1, generator=generator, dtype=torch.float32) * 5.0
    d = torch.rand(5, generator=generator, dtype=torch.float32) * 3.0 + 1e-3
    t = residual_offset_quantile(u, lw, d)
    s = residual_quantile(u, lw, d)
    log_mass = log_residual_mass(lw, d)
    assert t.shape == s.shape == (4, 3, 5) and log_mass.shape == (1, 3, 5)
    assert t.dtype == s.dtype == log_mass.dtype == torch.float64
    flat = residual_offset_quantile(
        *(x.double().expand(4, 3, 5).reshape(-1) for x in (u, lw, d.reshape(1, 1, 5)))
    ).reshape(4, 3, 5)
    torch.testing.assert_close(t, flat, rtol=0.0, atol=0.0)
    scalar = residual_offset_quantile(torch.tensor(0.25), torch.tensor(-1.0), torch.tensor(0.5))
    assert scalar.shape == () and scalar.dtype == torch.float64


# --------------------------------------------------------------------------------------------------------------------
# No host synchronization, a fixed sequence of operations
# --------------------------------------------------------------------------------------------------------------------


class _RecordOps(TorchDispatchMode):
    """Records the name of every aten operation dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@contextmanager
def _recording() -> Iterator[_RecordOps]:
    with _RecordOps() as recorder:
        yield recorder


def _ops(function: Callable[..., torch.Tensor], *args: torch.Tensor) -> list[str]:
    with _recording() as recorder:
        function(*args)
    return recorder.ops


#: Two very different inputs of the same shapes: moderate values; u at 0 and near 1, tiny and huge gaps and weights,
#: an empty residual, an infinite gap.
_EASY = (
    torch.tensor([[0.5], [0.25], [0.75]], dtype=torch.float64),
    torch.tensor([0.0, -0.1, -1.0, -2.0], dtype=torch.float64),
    torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64),
)
_HARD = (
    torch.tensor([[0.0], [1e-300], [1.0 - 2.0**-53]], dtype=torch.float64),
    torch.tensor([-690.0, -math.inf, 0.0, -1e-12], dtype=torch.float64),
    torch.tensor([[1e-12], [math.inf], [0.0]], dtype=torch.float64),
)


@pytest.mark.parametrize(
    ("function", "arity"), [(residual_offset_quantile, 3), (residual_quantile, 3), (log_residual_mass, 2)]
)
def test_no_host_synchronization_and_a_fixed_operation_sequence(
    function: Callable[..., torch.Tensor], arity: int
) -> None:
    easy = _ops(function, *_EASY[3 - arity :])
    hard = _ops(function, *_HARD[3 - arity :])
    assert not set(easy + hard) & FORBIDDEN_OPS, sorted(set(easy + hard))
    assert easy == hard
    # Every operation is a kernel launch on a GPU: the counts (view operations included) are a budget.
    assert len(easy) <= {residual_offset_quantile: 371, residual_quantile: 372, log_residual_mass: 56}[function]


def test_the_operation_recorder_sees_a_host_read() -> None:
    # Negative control of the structural test: a data-dependent read is recorded.
    def bad(x: torch.Tensor) -> torch.Tensor:
        return x * 2 if bool((x > 0).all()) else x

    ops = _ops(bad, torch.ones(3))
    assert "aten._local_scalar_dense" in ops


@pytest.mark.slow
def test_compiles_into_one_graph() -> None:
    # fullgraph=True fails on any graph break, e.g. data-dependent Python control flow or a host read.
    u, lw, d = _HARD
    for function, args in ((residual_offset_quantile, (u, lw, d)), (log_residual_mass, (lw, d))):
        compiled = torch.compile(function, fullgraph=True, backend="aot_eager", dynamic=False)
        torch.testing.assert_close(compiled(*args), function(*args), rtol=0.0, atol=0.0, equal_nan=True)


# --------------------------------------------------------------------------------------------------------------------
# Statistical tests
# --------------------------------------------------------------------------------------------------------------------


def _draws(weight: float, delta: float, seed: int, sampled_weight: float | None = None) -> FloatArray:
    """``s = delta + t`` for ``SAMPLES`` uniforms (``sampled_weight`` replaces w in the quantile: negative control)."""
    u = torch.rand(SAMPLES, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    log_weight = torch.tensor(math.log(weight if sampled_weight is None else sampled_weight), dtype=torch.float64)
    t = residual_offset_quantile(u, log_weight, torch.tensor(delta, dtype=torch.float64))
    return np.asarray(delta + t.numpy(), dtype=np.float64)


def _ks_pvalue(samples: FloatArray, weight: float, delta: float) -> float:
    def cdf(x: FloatArray) -> FloatArray:
        return np.asarray(-np.expm1(residual_log_survival(x, weight, delta)))

    return float(stats.kstest(samples, cdf).pvalue)


@pytest.mark.statistical
def test_quantile_of_uniforms_follows_the_residual_law() -> None:
    # Kolmogorov-Smirnov against theory.gaussian's survival function, one case per (w, delta) (Bonferroni).
    alpha = ALPHA / len(KS_CASES)
    for index, (weight, delta) in enumerate(KS_CASES):
        pvalue = _ks_pvalue(_draws(weight, delta, SEED_KS + index), weight, delta)
        assert pvalue > alpha, (weight, delta, pvalue)


@pytest.mark.statistical
@pytest.mark.parametrize(("sampled_weight", "distance"), [(1.0, 0.92), (0.105, 0.049)])
def test_the_law_test_rejects_a_wrong_weight(sampled_weight: float, distance: float) -> None:
    # Negative controls: draws made with the wrong weight when the law has w = 0.1, delta = 1. Their KS distance to
    # the law (``distance``, checked below) is 3x (w = 0.105) to 60x (w = 1) the 1e-4 critical value ~0.016 at
    # n = 20000, so the test has power ~1 to reject them at the per-case level of the law test.
    x = np.linspace(-1.0, 8.0, 20_001)
    law = -np.expm1(residual_log_survival(x, 0.1, 1.0))
    wrong = -np.expm1(residual_log_survival(x, sampled_weight, 1.0))
    assert np.abs(law - wrong).max() == pytest.approx(distance, abs=0.005)
    assert stats.kstwo.isf(ALPHA, SAMPLES) < distance / 3
    pvalue = _ks_pvalue(_draws(0.1, 1.0, SEED_KS_NEGATIVE, sampled_weight=sampled_weight), 0.1, 1.0)
    assert pvalue < ALPHA / len(KS_CASES)
