"""Symbolic (sympy) derivations of the Gaussian closed forms of docs/theory.md.

Along the rank-1 direction ``e`` the draft is ``s ~ N(0, 1)`` and the target is ``s ~ N(delta, 1)`` (docs/theory.md
§2). Every expression below is *derived* by integrating these two densities with sympy, and
:func:`verify_closed_forms` checks that each derivation equals the closed form the numerical code implements
(``theory.gaussian``): first by symbolic simplification, and where that is inconclusive at exact rational
points evaluated to 50 significant digits with mpmath.

Symbols: ``delta`` (positive, the standardized mean gap), ``w`` (positive, the block-verification weight; the
residual formulas assume ``0 < w <= 1``) and ``s`` (real, the coordinate along ``e``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import sympy

DELTA = sympy.Symbol("delta", positive=True)
WEIGHT = sympy.Symbol("w", positive=True)
COORDINATE = sympy.Symbol("s", real=True)

# Exact rational points (weight, delta) at which derivations are also compared numerically (0 < w <= 1).
CHECK_POINTS: tuple[tuple[Fraction, Fraction], ...] = (
    (Fraction(1), Fraction(1, 2)),
    (Fraction(1, 2), Fraction(1)),
    (Fraction(1, 5), Fraction(3, 7)),
    (Fraction(9, 10), Fraction(5, 2)),
    (Fraction(1, 100), Fraction(4)),
)
PRECISION_DIGITS = 50


@dataclass(frozen=True)
class SymbolicCheck:
    """Outcome of comparing one derived expression with its stated closed form.

    Attributes
    ----------
    name : str
        Which identity was checked.
    derived : str
        The expression obtained by integration (sympy ``str``).
    closed_form : str
        The stated closed form (sympy ``str``).
    method : str
        ``"simplify"`` when sympy reduced the difference to 0, ``"numeric"`` when the check fell back to
        50-digit evaluation at :data:`CHECK_POINTS`.
    passed : bool
        Whether the two agree.
    max_abs_difference : float
        Largest absolute difference found at the check points (0.0 when proved by simplification).
    """

    name: str
    derived: str
    closed_form: str
    method: str
    passed: bool
    max_abs_difference: float


def standard_normal_cdf(x: sympy.Expr) -> sympy.Expr:
    """Standard normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` as a sympy expression.

    Parameters
    ----------
    x : sympy.Expr
        Argument.

    Returns
    -------
    sympy.Expr
        ``Phi(x)``.
    """
    return (1 + sympy.erf(x / sympy.sqrt(2))) / 2


def draft_density() -> sympy.Expr:
    """Density of the draft along ``e``: ``N(0, 1)`` in the symbol ``s``."""
    return sympy.exp(-(COORDINATE**2) / 2) / sympy.sqrt(2 * sympy.pi)


def target_density() -> sympy.Expr:
    """Density of the target along ``e``: ``N(delta, 1)`` in the symbol ``s``."""
    return sympy.exp(-((COORDINATE - DELTA) ** 2) / 2) / sympy.sqrt(2 * sympy.pi)


def log_likelihood_ratio_expression() -> sympy.Expr:
    """Derive ``log(target / draft)(s)``; it simplifies to ``delta s - delta^2 / 2`` (docs/design.md §2).

    Returns
    -------
    sympy.Expr
        The simplified log-ratio in ``s`` and ``delta``.
    """
    log_ratio = sympy.log(target_density() / draft_density())
    return sympy.expand(sympy.simplify(sympy.expand_log(log_ratio, force=True)))


def residual_threshold_expression() -> sympy.Expr:
    """Derive ``s*``, the unique root of ``log(w target / draft) = 0``.

    Since the log-ratio ``log w + delta s - delta^2/2`` is increasing in ``s`` for ``delta > 0``, the weighted
    residual integrand ``max(w target - draft, 0)`` is positive exactly for ``s > s*``.

    Returns
    -------
    sympy.Expr
        ``s* = delta/2 - ln(w)/delta``.
    """
    equation = sympy.Eq(sympy.log(WEIGHT) + log_likelihood_ratio_expression(), 0)
    (root,) = sympy.solve(equation, COORDINATE)
    return sympy.expand(root)


def acceptance_probability_expression() -> sympy.Expr:
    """Derive ``alpha(delta) = int min(target, draft) ds`` by integrating the two pieces.

    With ``w = 1`` the threshold is ``s* = delta/2``: ``min = target`` on ``s < delta/2`` (there the log-ratio
    is negative) and ``min = draft`` on ``s > delta/2``.

    Returns
    -------
    sympy.Expr
        The integral, which equals ``2 Phi(-delta/2) = erfc(delta / (2 sqrt 2))``.
    """
    split = residual_threshold_expression().subs(WEIGHT, 1)
    below = sympy.integrate(target_density(), (COORDINATE, -sympy.oo, split))
    above = sympy.integrate(draft_density(), (COORDINATE, split, sympy.oo))
    return sympy.simplify(below + above)


def residual_mass_expression() -> sympy.Expr:
    """Derive ``R(w, delta) = int max(w target - draft, 0) ds`` for ``0 < w <= 1``, ``delta > 0``.

    The integrand is positive exactly on ``(s*, inf)`` (:func:`residual_threshold_expression`), so
    ``R = int_{s*}^{inf} (w target - draft) ds``.

    Returns
    -------
    sympy.Expr
        The integral, which equals ``w Phi(u) - Phi(u - delta)`` with ``u = delta/2 + ln(w)/delta``.
    """
    threshold = residual_threshold_expression()
    integrand = WEIGHT * target_density() - draft_density()
    return sympy.simplify(sympy.integrate(integrand, (COORDINATE, threshold, sympy.oo)))


def acceptance_probability_closed_form() -> sympy.Expr:
    """Stated closed form ``alpha(delta) = 2 Phi(-delta / 2)`` (docs/theory.md)."""
    return 2 * standard_normal_cdf(-DELTA / 2)


def residual_mass_closed_form() -> sympy.Expr:
    """Stated closed form ``R(w, delta) = w Phi(u) - Phi(u - delta)``, ``u = delta/2 + ln(w)/delta`` (§3)."""
    u = DELTA / 2 + sympy.log(WEIGHT) / DELTA
    return WEIGHT * standard_normal_cdf(u) - standard_normal_cdf(u - DELTA)


def _max_difference_at_points(difference: sympy.Expr) -> float:
    """Largest ``|difference|`` over :data:`CHECK_POINTS`, evaluated with 50 significant digits."""
    largest = mpmath.mpf(0)
    with mpmath.workdps(PRECISION_DIGITS):
        for weight, delta in CHECK_POINTS:
            point = {
                WEIGHT: sympy.Rational(weight.numerator, weight.denominator),
                DELTA: sympy.Rational(delta.numerator, delta.denominator),
            }
            value = sympy.N(difference.subs(point), PRECISION_DIGITS)
            largest = max(largest, abs(mpmath.mpf(str(sympy.re(value)))))
    return float(largest)


def compare_expressions(name: str, derived: sympy.Expr, closed_form: sympy.Expr) -> SymbolicCheck:
    """Check ``derived == closed_form``: by simplification, else at :data:`CHECK_POINTS` to 50 digits.

    Parameters
    ----------
    name : str
        Label of the identity.
    derived, closed_form : sympy.Expr
        The two expressions (in ``delta``, ``w``, ``s``).

    Returns
    -------
    SymbolicCheck
        The outcome; the numeric fallback passes when every difference is below ``1e-40``.
    """
    # Rewrite erfc in terms of erf first so that simplify can cancel the two forms.
    difference = sympy.simplify((derived - closed_form).rewrite(sympy.erf))
    if difference == 0:
        return SymbolicCheck(name, str(derived), str(closed_form), "simplify", True, 0.0)
    largest = _max_difference_at_points(difference)
    return SymbolicCheck(name, str(derived), str(closed_form), "numeric", largest < 1e-40, largest)


def verify_closed_forms() -> list[SymbolicCheck]:
    """Derive every closed form of docs/theory.md by integration and compare it with the stated formula.

    Returns
    -------
    list of SymbolicCheck
        One entry each for the log-likelihood ratio, the residual threshold ``s*``, the acceptance probability
        (against ``2 Phi(-delta/2)`` and against ``erfc(delta / (2 sqrt 2))``), the residual mass, and the
        boundary case ``R(1, delta) = 1 - alpha(delta)`` (= TV): six checks.
    """
    residual = residual_mass_expression()
    acceptance = acceptance_probability_expression()
    return [
        compare_expressions(
            "log(target/draft) = delta*s - delta^2/2",
            log_likelihood_ratio_expression(),
            DELTA * COORDINATE - DELTA**2 / 2,
        ),
        compare_expressions(
            "s* = delta/2 - ln(w)/delta",
            residual_threshold_expression(),
            DELTA / 2 - sympy.log(WEIGHT) / DELTA,
        ),
        compare_expressions("alpha(delta) = 2 Phi(-delta/2)", acceptance, acceptance_probability_closed_form()),
        compare_expressions(
            "alpha(delta) = erfc(delta/(2 sqrt 2))",
            acceptance,
            sympy.erfc(DELTA / (2 * sympy.sqrt(2))),
        ),
        compare_expressions("R(w, delta) = w Phi(u) - Phi(u - delta)", residual, residual_mass_closed_form()),
        compare_expressions("R(1, delta) = 1 - alpha(delta) (TV)", residual.subs(WEIGHT, 1), 1 - acceptance),
    ]
