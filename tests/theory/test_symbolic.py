"""Tests of the sympy derivations (theory.symbolic) and their agreement with the numpy closed forms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

from theory import gaussian, symbolic

RTOL = 1e-12
# Well-conditioned points for the float64 lambdified expressions: the erf form of w Phi(u) - Phi(u - delta)
# cancels catastrophically when R is small (e.g. R(0.2, 0.3) ~ 1e-9 loses 8 digits), so keep R >~ 1e-3 here.
DELTAS = (0.5, 1.0, 2.5, 5.0)
WEIGHTS = (1.0, 0.7, 0.4)
# Hard points (weight, delta), R from ~1e-230 to ~1e-1: evaluated with mpmath at HIGH_PRECISION_DIGITS,
# enough to survive the cancellation of the O(1) erf terms down to R ~ 1e-230.
HARD_POINTS = ((0.2, 0.05), (0.01, 0.3), (0.5, 0.1), (0.9, 0.01), (1e-6, 2.0), (0.999, 8.0))
HIGH_PRECISION_DIGITS = 400


@pytest.fixture(scope="module")
def acceptance_expression() -> sympy.Expr:
    return symbolic.acceptance_probability_expression()


@pytest.fixture(scope="module")
def residual_expression() -> sympy.Expr:
    return symbolic.residual_mass_expression()


def test_every_closed_form_is_derived() -> None:
    results = symbolic.verify_closed_forms()
    assert len(results) == 6
    assert all(result.passed for result in results), [result for result in results if not result.passed]
    assert all(result.method == "simplify" for result in results)


def test_log_likelihood_ratio_and_threshold() -> None:
    delta, weight, coordinate = symbolic.DELTA, symbolic.WEIGHT, symbolic.COORDINATE
    assert sympy.simplify(symbolic.log_likelihood_ratio_expression() - (delta * coordinate - delta**2 / 2)) == 0
    threshold = symbolic.residual_threshold_expression()
    # At s* the weighted target density equals the draft density.
    balance = weight * symbolic.target_density() - symbolic.draft_density()
    assert sympy.simplify(balance.subs(coordinate, threshold)) == 0
    # Just above s* the residual integrand is positive, just below negative (delta = 1, w = 1/2).
    point = {delta: 1, weight: sympy.Rational(1, 2)}
    star = threshold.subs(point)
    assert balance.subs(point).subs(coordinate, star + sympy.Rational(1, 10)).evalf() > 0
    assert balance.subs(point).subs(coordinate, star - sympy.Rational(1, 10)).evalf() < 0


def test_wrong_closed_form_is_rejected() -> None:
    # Negative control: the residual mass with Phi(u) in place of Phi(u - delta) must not pass.
    u = symbolic.DELTA / 2 + sympy.log(symbolic.WEIGHT) / symbolic.DELTA
    wrong = symbolic.WEIGHT * symbolic.standard_normal_cdf(u) - symbolic.standard_normal_cdf(u)
    result = symbolic.compare_expressions("wrong", symbolic.residual_mass_expression(), wrong)
    assert not result.passed
    assert result.method == "numeric"
    assert result.max_abs_difference > 1e-3


def test_lambdified_acceptance_matches_numpy(acceptance_expression: sympy.Expr) -> None:
    function = sympy.lambdify(symbolic.DELTA, acceptance_expression, modules=["scipy", "numpy"])
    deltas = np.array(DELTAS)
    np.testing.assert_allclose(function(deltas), gaussian.acceptance_probability(deltas), rtol=RTOL)


def test_lambdified_residual_matches_numpy(residual_expression: sympy.Expr) -> None:
    function = sympy.lambdify((symbolic.WEIGHT, symbolic.DELTA), residual_expression, modules=["scipy", "numpy"])
    weights, deltas = np.meshgrid(np.array(WEIGHTS), np.array(DELTAS))
    np.testing.assert_allclose(function(weights, deltas), gaussian.residual_mass(weights, deltas), rtol=RTOL, atol=0.0)


@pytest.mark.parametrize(("weight", "delta"), HARD_POINTS)
def test_residual_matches_numpy_in_the_tails(residual_expression: sympy.Expr, weight: float, delta: float) -> None:
    # Reference: the lambdified derived expression at the exact binary value of the float inputs, in mpmath.
    function = sympy.lambdify((symbolic.WEIGHT, symbolic.DELTA), residual_expression, modules="mpmath")
    with mpmath.workdps(HIGH_PRECISION_DIGITS):
        reference = float(function(mpmath.mpf(weight), mpmath.mpf(delta)))
    assert reference > 0
    np.testing.assert_allclose(float(gaussian.residual_mass(weight, delta)), reference, rtol=RTOL, atol=0.0)


def test_residual_boundary_values(residual_expression: sympy.Expr, acceptance_expression: sympy.Expr) -> None:
    # R(1, delta) = TV = 1 - alpha(delta); R(w, delta) -> 0 as delta -> 0 for w < 1 (checked at delta = 1/50,
    # in high precision: sympy 1.14's limit() wrongly returns 1/2 for this expression).
    at_one = residual_expression.subs(symbolic.WEIGHT, 1)
    assert sympy.simplify(at_one - (1 - acceptance_expression)) == 0
    function = sympy.lambdify((symbolic.WEIGHT, symbolic.DELTA), residual_expression, modules="mpmath")
    with mpmath.workdps(HIGH_PRECISION_DIGITS):
        small = function(mpmath.mpf(1) / 2, mpmath.mpf(1) / 50)
        assert 0 < small < mpmath.mpf(10) ** -100


def test_theory_symbolic_does_not_import_torch() -> None:
    code = "import sys, theory.symbolic; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
