"""The catalogue of exact checks run by ``python -m proofs`` and by the test-suite.

Each check returns a :class:`CheckResult`. Discrete checks compare exact Fraction laws (see
:mod:`proofs.discrete`); symbolic checks wrap :func:`theory.symbolic.verify_closed_forms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from proofs import discrete
from theory import symbolic


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one exact check.

    Attributes
    ----------
    name : str
        What is checked.
    config : str
        Sizes and seed (``V`` vocabulary, ``n`` horizon, ``L`` window).
    passed : bool
        Whether the expected (in)equality holds exactly.
    detail : str
        Human-readable result: ``"exact equality"``, ``"exact inequality as expected"`` with the distance, or
        the values involved.
    """

    name: str
    config: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ChainConfig:
    """Sizes of one family of random chains.

    Attributes
    ----------
    vocabulary_size, horizon : int
        ``V`` and ``n``.
    seeds : tuple of int
        Seeds of :func:`proofs.discrete.random_chain`.
    windows : tuple of int
        Windows ``L`` to check.
    """

    vocabulary_size: int
    horizon: int
    seeds: tuple[int, ...]
    windows: tuple[int, ...]


# Sizes chosen so that the whole catalogue runs in a few seconds (enumeration is V^n sequences, V^L drafts).
EXACTNESS_CONFIGS: tuple[ChainConfig, ...] = (
    ChainConfig(2, 5, (0, 1, 2), (1, 2, 3, 4)),
    ChainConfig(3, 4, (0, 1), (1, 2, 3, 4)),
    ChainConfig(3, 5, (3,), (2, 3)),
    ChainConfig(4, 4, (0,), (1, 2, 3, 4)),
    ChainConfig(4, 5, (1,), (2, 3)),
)


@dataclass(frozen=True)
class ControlConfig:
    """Where a negative control is run: chain sizes, window and the first seed of the search.

    Attributes
    ----------
    rule : str
        One of :data:`proofs.discrete.CONTROL_RULES`.
    vocabulary_size, horizon, window : int
        ``V``, ``n``, ``L``.
    first_seed : int
        Seeds ``first_seed, first_seed + 1, ...`` are tried until the control's law differs from the target.
    """

    rule: str
    vocabulary_size: int
    horizon: int
    window: int
    first_seed: int = 0


# Control (a) needs V >= 3: with two symbols at most one symbol has w P > Q, so the weighted and unweighted
# residuals are the same point mass and the control coincides with the correct rule (it cannot fail there).
# Controls (a) and (c) also need L >= 2 (with L = 1 the residual weight is w_0 = 1 and there is one eta).
CONTROL_CONFIGS: tuple[ControlConfig, ...] = (
    ControlConfig(discrete.BLOCK_UNWEIGHTED_RESIDUAL, 3, 4, 2),
    ControlConfig(discrete.BLOCK_UNWEIGHTED_RESIDUAL, 4, 4, 3),
    ControlConfig(discrete.BLOCK_LAGGED_WEIGHT, 2, 5, 2),
    ControlConfig(discrete.BLOCK_LAGGED_WEIGHT, 3, 4, 3),
    ControlConfig(discrete.BLOCK_FIRST_FAILURE, 2, 5, 3),
    ControlConfig(discrete.BLOCK_FIRST_FAILURE, 4, 4, 2),
    ControlConfig(discrete.ACCEPT_ALWAYS, 2, 5, 1),
    ControlConfig(discrete.ACCEPT_ALWAYS, 3, 4, 3),
)
MAX_SEED_SEARCH = 50


def _config_label(vocabulary_size: int, horizon: int, seed: int, window: int | None = None) -> str:
    label = f"V={vocabulary_size} n={horizon} seed={seed}"
    return label if window is None else f"{label} L={window}"


def _fraction_text(value: Fraction) -> str:
    """A fraction with its decimal value, shortened when the fraction is long."""
    exact = str(value)
    decimal = f"{float(value):.6g}"
    return decimal if len(exact) > 24 else f"{exact} (~{decimal})"


def check_rule_exactness(chain: discrete.DiscreteChain, rule: str, window: int, config: str) -> CheckResult:
    """Check that ``rule`` reproduces the target law of the full sequence exactly (Fraction equality).

    Parameters
    ----------
    chain : proofs.discrete.DiscreteChain
        The chain.
    rule : str
        A correct rule (:data:`proofs.discrete.CORRECT_RULES`).
    window : int
        Window ``L``.
    config : str
        Label of the configuration.

    Returns
    -------
    CheckResult
        Passed when the total variation to the target is exactly 0.
    """
    distance = discrete.total_variation(discrete.sequence_law(chain, rule, window), discrete.target_law(chain))
    detail = "exact equality" if distance == 0 else f"FAIL: TV = {_fraction_text(distance)}"
    return CheckResult(f"{rule} rule preserves target law", config, distance == 0, detail)


def check_window_one(chain: discrete.DiscreteChain, config: str) -> CheckResult:
    """Check that with ``L = 1`` the block rule equals the token rule, round by round and for the sequence.

    Parameters
    ----------
    chain : proofs.discrete.DiscreteChain
        The chain.
    config : str
        Label of the configuration.

    Returns
    -------
    CheckResult
        Passed when every round law from every state and the sequence laws are equal as Fractions.
    """
    rounds_equal = all(
        discrete.round_law(chain, discrete.BLOCK, position, context, 1)
        == discrete.round_law(chain, discrete.TOKEN, position, context, 1)
        for position in range(chain.horizon)
        for context in range(chain.vocabulary_size)
    )
    sequences_equal = discrete.sequence_law(chain, discrete.BLOCK, 1) == discrete.sequence_law(chain, discrete.TOKEN, 1)
    passed = rounds_equal and sequences_equal
    detail = "exact equality" if passed else f"FAIL: rounds equal {rounds_equal}, sequences equal {sequences_equal}"
    return CheckResult("window 1: block == token", config, passed, detail)


def check_accepted_length(chain: discrete.DiscreteChain, window: int, config: str) -> CheckResult:
    """Check ``P(tau_block >= i) = E_Q[w_i]``, ``E[tau_block] = sum_i E_Q[w_i]`` and ``>= E[tau_token]``.

    Also checks the token law against ``P(tau_token >= i) = E_Q[prod_{k <= i} min(1, P_k/Q_k)]`` for all i.

    Parameters
    ----------
    chain : proofs.discrete.DiscreteChain
        The chain; one round from the start state.
    window : int
        Window ``L``.
    config : str
        Label of the configuration.

    Returns
    -------
    CheckResult
        Passed when all identities hold as Fraction equalities and the inequality holds.
    """
    summary = discrete.accepted_length_summary(chain, window)
    tails_equal = summary.block_tail == summary.expected_weights
    mean_equal = summary.block_mean == sum(summary.expected_weights, Fraction(0))
    token_equal = summary.token_tail == summary.token_tail_formula
    dominates = summary.block_mean >= summary.token_mean
    passed = tails_equal and mean_equal and token_equal and dominates
    detail = (
        f"E[tau_block] = sum E[w_i] = {_fraction_text(summary.block_mean)} >= "
        f"E[tau_token] = {_fraction_text(summary.token_mean)}"
    )
    if not passed:
        detail = f"FAIL: tails {tails_equal}, mean {mean_equal}, token {token_equal}, dominates {dominates}; " + detail
    return CheckResult("E[tau] identity and block >= token", config, passed, detail)


def check_negative_control(control: ControlConfig) -> CheckResult:
    """Check that a deliberately wrong rule does NOT reproduce the target law (exact inequality).

    Seeds are searched deterministically from ``control.first_seed``; the first seed whose law differs is
    reported (a coincidence on an earlier seed is documented in the detail).

    Parameters
    ----------
    control : ControlConfig
        The control and where to run it.

    Returns
    -------
    CheckResult
        Passed when some seed within :data:`MAX_SEED_SEARCH` gives a non-zero total variation.
    """
    for seed in range(control.first_seed, control.first_seed + MAX_SEED_SEARCH):
        chain = discrete.random_chain(control.vocabulary_size, control.horizon, seed)
        law = discrete.sequence_law(chain, control.rule, control.window)
        distance = discrete.total_variation(law, discrete.target_law(chain))
        if distance > 0:
            skipped = seed - control.first_seed
            note = f" (first {skipped} seed(s) coincided)" if skipped else ""
            return CheckResult(
                f"control {control.rule}",
                _config_label(control.vocabulary_size, control.horizon, seed, control.window),
                True,
                f"exact inequality as expected: TV = {_fraction_text(distance)}{note}",
            )
    return CheckResult(
        f"control {control.rule}",
        _config_label(control.vocabulary_size, control.horizon, control.first_seed, control.window),
        False,
        f"FAIL: law equals the target for {MAX_SEED_SEARCH} seeds",
    )


def discrete_checks(configs: Sequence[ChainConfig] = EXACTNESS_CONFIGS) -> list[CheckResult]:
    """Exactness, window-1 and accepted-length checks over the given chain families.

    Parameters
    ----------
    configs : sequence of ChainConfig
        Chain families.

    Returns
    -------
    list of CheckResult
        One result per (rule, chain, window), plus one window-1 and one accepted-length check per chain.
    """
    results = []
    for config in configs:
        for seed in config.seeds:
            chain = discrete.random_chain(config.vocabulary_size, config.horizon, seed)
            for window in config.windows:
                label = _config_label(config.vocabulary_size, config.horizon, seed, window)
                for rule in discrete.CORRECT_RULES:
                    results.append(check_rule_exactness(chain, rule, window, label))
            label = _config_label(config.vocabulary_size, config.horizon, seed)
            results.append(check_window_one(chain, label + " L=1"))
            window = min(max(config.windows), config.horizon)
            results.append(check_accepted_length(chain, window, f"{label} L={window}"))
    return results


def control_checks(controls: Sequence[ControlConfig] = CONTROL_CONFIGS) -> list[CheckResult]:
    """Run every negative control (each must give an exact inequality with the target law).

    Parameters
    ----------
    controls : sequence of ControlConfig
        Controls and where to run them.

    Returns
    -------
    list of CheckResult
        One result per control configuration.
    """
    return [check_negative_control(control) for control in controls]


def symbolic_checks() -> list[CheckResult]:
    """Wrap the sympy derivations of :func:`theory.symbolic.verify_closed_forms` as check results.

    Returns
    -------
    list of CheckResult
        One result per derived identity.
    """
    return [
        CheckResult(
            f"sympy: {check.name}",
            f"method={check.method}",
            check.passed,
            "exact equality" if check.method == "simplify" else f"max |diff| = {check.max_abs_difference:.1e}",
        )
        for check in symbolic.verify_closed_forms()
    ]


def run_all() -> list[CheckResult]:
    """Run every exact check: discrete exactness, window 1, accepted length, negative controls, sympy.

    Returns
    -------
    list of CheckResult
        All results, in that order.
    """
    return discrete_checks() + control_checks() + symbolic_checks()


def format_table(results: Sequence[CheckResult]) -> str:
    """Render results as a plain-text table (one row per check) followed by a summary line.

    Parameters
    ----------
    results : sequence of CheckResult
        Results to show.

    Returns
    -------
    str
        The table.
    """
    headers = ("check", "configuration", "ok", "result")
    rows = [(result.name, result.config, "yes" if result.passed else "NO", result.detail) for result in results]
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(3)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    failures = sum(not result.passed for result in results)
    lines.append(f"{len(results)} checks, {failures} failed")
    return "\n".join(lines)
