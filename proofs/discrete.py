"""Exact (rational) laws of speculative sampling on small discrete chains.

A chain has ``vocabulary_size`` symbols and ``horizon`` steps. The target kernel of step ``k`` (0-based) is
``target[k][c]``, a probability row over the next symbol given the previous symbol ``c`` (the first step's
context is ``start_symbol``); the draft kernel is ``draft[k][c]``. The target law of a whole sequence is the
product of the target rows along it. Every probability is a :class:`fractions.Fraction`, and every law below
is computed by exact enumeration of all branches (draft paths, stopping times, residual draws), never by
sampling.

Rules (docs/design.md §3.2–3.4), one *round* from a state (position ``m`` already produced, previous symbol ``c``), with
window ``L = min(window, horizon - m)``:

* token rule: accept drafted symbol ``i`` with probability ``min(1, P_i/Q_i)``, stop at the first rejection
  and replace the rejected symbol by a draw from ``max(P_i - Q_i, 0) / sum``;
* block rule (Sun et al. 2024): weights ``w_i = min(1, w_{i-1} P_i/Q_i)``, stop probabilities ``h_i`` and
  ``tau = max{i : eta_i <= h_i}`` (the *last* success); residual ``max(w_tau P - Q, 0) / R_tau``;
* if every drafted symbol is kept, a bonus symbol is drawn from the target.

Horizon treatment (exact). When the window ends exactly at the horizon (``m + L == horizon``) the bonus draw
is dropped: with ``tau = L`` the round just outputs ``X_1..X_L``. This is exact because the single-round
identity ``sum_b pi(b) P(x_{|b|+1..L+1} | b) = P(x_1..x_{L+1})`` (a round followed by the target equals the
target on the next ``L + 1`` symbols) survives marginalising out ``x_{L+1}``: the rounds that ended before
``L + 1`` are untouched, and the ``tau = L`` rounds collapse to ``P(output = x_1..x_L)``. Hence the truncated
round satisfies the same identity on ``L`` symbols, and induction over rounds gives the exact law of the
length-``horizon`` sequence. :func:`sequence_law` checks this by Fraction equality.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

Row = tuple[Fraction, ...]
Law = dict[tuple[int, ...], Fraction]

TOKEN = "token"
BLOCK = "block"
# Negative controls (docs/design.md §5): deliberately wrong variants that must NOT reproduce the target law. Their names
# are those of specdiff.verify.CONTROL_RULES, the same variants of the continuous block rule.
BLOCK_UNWEIGHTED_RESIDUAL = "unweighted-residual"  # residual max(P - Q, 0), not max(w_tau P - Q, 0)
BLOCK_LAGGED_WEIGHT = "lagged-weight"  # h_i computed with w_{i-1} instead of w_i
BLOCK_FIRST_FAILURE = "first-failure"  # tau = (first i with eta_i > h_i) - 1, not the last success
ACCEPT_ALWAYS = "accept-always"  # keep every drafted symbol
CORRECT_RULES = (TOKEN, BLOCK)
CONTROL_RULES = (BLOCK_UNWEIGHTED_RESIDUAL, BLOCK_LAGGED_WEIGHT, BLOCK_FIRST_FAILURE, ACCEPT_ALWAYS)

_MAX_INTEGER_WEIGHT = 4


@dataclass(frozen=True)
class DiscreteChain:
    """Target and draft kernels of a small discrete chain, as exact rational tables.

    Attributes
    ----------
    vocabulary_size : int
        Number of symbols ``V``.
    horizon : int
        Number of steps ``n`` (length of a full sequence).
    start_symbol : int
        Context of the first step.
    target, draft : tuple
        ``target[k][c][x]``: probability of symbol ``x`` at step ``k`` after symbol ``c``; shape
        ``(n, V, V)``.
    """

    vocabulary_size: int
    horizon: int
    start_symbol: int
    target: tuple[tuple[Row, ...], ...]
    draft: tuple[tuple[Row, ...], ...]

    def target_row(self, step: int, context: int) -> Row:
        """Target probabilities of the symbol at ``step`` given the previous symbol ``context``."""
        return self.target[step][context]

    def draft_row(self, step: int, context: int) -> Row:
        """Draft probabilities of the symbol at ``step`` given the previous symbol ``context``."""
        return self.draft[step][context]


def _random_row(generator: random.Random, size: int, zero_at: int | None) -> Row:
    """A random probability row from integer weights in ``1..4``, with an optional forced zero."""
    weights = [generator.randint(1, _MAX_INTEGER_WEIGHT) for _ in range(size)]
    if zero_at is not None:
        weights[zero_at] = 0
    total = sum(weights)
    return tuple(Fraction(weight, total) for weight in weights)


def random_chain(vocabulary_size: int, horizon: int, seed: int) -> DiscreteChain:
    """Seeded random chain whose rows are rationals with small denominators.

    Weights are integers in ``1..4``. To stress ``P/Q`` and the residuals, rows follow a fixed pattern in
    ``k = (step + context) % 3``: for ``k == 1`` the target is forced to 0 at symbol ``(step + context) % V``
    (the draft proposes symbols the target never produces), for ``k == 2`` the draft is forced to 0 there (the
    target has mass the draft never proposes), for ``k == 0`` both rows are fully positive.

    Parameters
    ----------
    vocabulary_size : int
        Number of symbols (>= 2).
    horizon : int
        Number of steps (>= 1).
    seed : int
        Seed of the :class:`random.Random` generator.

    Returns
    -------
    DiscreteChain
        The tables, with ``start_symbol = 0``.
    """
    if vocabulary_size < 2 or horizon < 1:
        raise ValueError("need vocabulary_size >= 2 and horizon >= 1")
    generator = random.Random(seed)
    target_rows: list[tuple[Row, ...]] = []
    draft_rows: list[tuple[Row, ...]] = []
    for step in range(horizon):
        target_step: list[Row] = []
        draft_step: list[Row] = []
        for context in range(vocabulary_size):
            pattern = (step + context) % 3
            zero_symbol = (step + context) % vocabulary_size
            target_step.append(_random_row(generator, vocabulary_size, zero_symbol if pattern == 1 else None))
            draft_step.append(_random_row(generator, vocabulary_size, zero_symbol if pattern == 2 else None))
        target_rows.append(tuple(target_step))
        draft_rows.append(tuple(draft_step))
    return DiscreteChain(vocabulary_size, horizon, 0, tuple(target_rows), tuple(draft_rows))


def target_law(chain: DiscreteChain) -> Law:
    """Exact target law of the full sequence: product of the target rows along it.

    Parameters
    ----------
    chain : DiscreteChain
        The chain.

    Returns
    -------
    dict
        Sequence (tuple of ``horizon`` symbols) -> probability; zero-probability sequences are omitted.
    """
    law: Law = {(): Fraction(1)}
    for step in range(chain.horizon):
        extended: Law = {}
        for prefix, probability in law.items():
            context = prefix[-1] if prefix else chain.start_symbol
            for symbol, transition in enumerate(chain.target_row(step, context)):
                if transition > 0:
                    extended[(*prefix, symbol)] = probability * transition
        law = extended
    return law


def weighted_residual(target_row: Row, draft_row: Row, weight: Fraction) -> tuple[Fraction, Row]:
    """Residual mass ``R = sum_x max(w P(x) - Q(x), 0)`` and the normalised residual row.

    Parameters
    ----------
    target_row, draft_row : tuple of Fraction
        ``P`` and ``Q`` of one step.
    weight : Fraction
        The block weight ``w`` (1 for the token rule).

    Returns
    -------
    mass : Fraction
        ``R``.
    residual : tuple of Fraction
        ``max(w P - Q, 0) / R``, or all zeros when ``R == 0``.
    """
    positive = tuple(
        max(weight * target - draft, Fraction(0)) for target, draft in zip(target_row, draft_row, strict=True)
    )
    mass = sum(positive, Fraction(0))
    if mass == 0:
        return mass, tuple(Fraction(0) for _ in positive)
    return mass, tuple(part / mass for part in positive)


def _residual_row(target_row: Row, draft_row: Row, weight: Fraction, strict: bool) -> Row:
    """The residual row; when its mass is 0, raise (correct rules) or fall back to the target (controls)."""
    mass, residual = weighted_residual(target_row, draft_row, weight)
    if mass > 0:
        return residual
    if strict:
        raise ZeroDivisionError("a correct rule reached a residual of zero mass with positive probability")
    return target_row


def draft_paths(
    chain: DiscreteChain, position: int, context: int, length: int
) -> Iterator[tuple[tuple[int, ...], Fraction]]:
    """Every drafted window ``X_1..X_L`` from a state, with its exact draft probability (> 0 only).

    Parameters
    ----------
    chain : DiscreteChain
        The chain.
    position : int
        Number of symbols already produced (the first drafted symbol is at step ``position``).
    context : int
        The previous symbol.
    length : int
        Window ``L``.

    Yields
    ------
    path : tuple of int
        ``(X_1, ..., X_L)``.
    probability : Fraction
        ``prod_i Q_i(X_i | X_{i-1})``.
    """
    paths: list[tuple[tuple[int, ...], Fraction]] = [((), Fraction(1))]
    for offset in range(length):
        extended = []
        for path, probability in paths:
            previous = path[-1] if path else context
            for symbol, transition in enumerate(chain.draft_row(position + offset, previous)):
                if transition > 0:
                    extended.append(((*path, symbol), probability * transition))
        paths = extended
    yield from paths


def _likelihood_ratios(chain: DiscreteChain, position: int, context: int, path: Sequence[int]) -> list[Fraction]:
    """``P_i(X_i)/Q_i(X_i)`` along a drafted path (every ``Q_i(X_i) > 0`` since the path was drafted)."""
    ratios = []
    previous = context
    for offset, symbol in enumerate(path):
        step = position + offset
        ratios.append(chain.target_row(step, previous)[symbol] / chain.draft_row(step, previous)[symbol])
        previous = symbol
    return ratios


def block_weights(ratios: Sequence[Fraction]) -> list[Fraction]:
    """Block weights ``w_0 = 1, w_i = min(1, w_{i-1} r_i)`` (Sun et al. 2024), as ``[w_0, ..., w_L]``.

    Parameters
    ----------
    ratios : sequence of Fraction
        Likelihood ratios ``r_i = P_i(X_i) / Q_i(X_i)``.

    Returns
    -------
    list of Fraction
        ``L + 1`` weights.
    """
    weights = [Fraction(1)]
    for ratio in ratios:
        weights.append(min(Fraction(1), weights[-1] * ratio))
    return weights


def stop_probabilities(
    chain: DiscreteChain, position: int, context: int, path: Sequence[int], weights: Sequence[Fraction]
) -> list[Fraction]:
    """Block stop probabilities ``[h_1, ..., h_L]`` for the given weights (index ``i`` uses ``weights[i]``).

    ``h_i = R_i / (R_i + 1 - w_i)`` for ``i < L`` with ``R_i = sum_x max(w_i P_{i+1}(x) - Q_{i+1}(x), 0)``
    (1 when the denominator is 0), and ``h_L = w_L`` (docs/design.md §3.3). Lagged weights give control (b).
    """
    length = len(path)
    stops = []
    for index in range(1, length):
        step = position + index
        previous = path[index - 1]
        mass, _ = weighted_residual(chain.target_row(step, previous), chain.draft_row(step, previous), weights[index])
        denominator = mass + 1 - weights[index]
        stops.append(Fraction(1) if denominator == 0 else mass / denominator)
    stops.append(weights[length])
    return stops


def stopping_law_last_success(stops: Sequence[Fraction]) -> list[Fraction]:
    """Law of ``tau = max{i : eta_i <= h_i}`` (0 if none), the last success.

    ``P(tau = i) = h_i prod_{j > i} (1 - h_j)`` with ``h_0 = 1``.

    Parameters
    ----------
    stops : sequence of Fraction
        ``[h_1, ..., h_L]``.

    Returns
    -------
    list of Fraction
        ``[P(tau = 0), ..., P(tau = L)]``.
    """
    extended = [Fraction(1), *stops]
    law = []
    for index in range(len(extended)):
        probability = extended[index]
        for later in extended[index + 1 :]:
            probability *= 1 - later
        law.append(probability)
    return law


def _first_failure_law(success_probs: Sequence[Fraction]) -> list[Fraction]:
    """Law of the number of successes before the first failure of independent trials.

    ``[P(tau = 0), ..., P(tau = L)]`` with ``P(tau = i) = prod_{j <= i} p_j (1 - p_{i+1})``.
    """
    law = []
    survived = Fraction(1)
    for success in success_probs:
        law.append(survived * (1 - success))
        survived *= success
    law.append(survived)
    return law


def stopping_law_first_failure(stops: Sequence[Fraction]) -> list[Fraction]:
    """Law of ``tau = (first i with eta_i > h_i) - 1`` (``L`` if none): the WRONG rule of control (c).

    Parameters
    ----------
    stops : sequence of Fraction
        ``[h_1, ..., h_L]``.

    Returns
    -------
    list of Fraction
        ``[P(tau = 0), ..., P(tau = L)]`` with ``P(tau = i) = prod_{j <= i} h_j (1 - h_{i+1})``.
    """
    return _first_failure_law(stops)


def token_stopping_law(ratios: Sequence[Fraction]) -> list[Fraction]:
    """Law of the token rule's accepted length: ``P(tau >= i) = prod_{k <= i} min(1, r_k)`` given the path.

    Parameters
    ----------
    ratios : sequence of Fraction
        ``[r_1, ..., r_L]``.

    Returns
    -------
    list of Fraction
        ``[P(tau = 0), ..., P(tau = L)]``.
    """
    return _first_failure_law([min(Fraction(1), ratio) for ratio in ratios])


def _accepted_length_law(
    rule: str, chain: DiscreteChain, position: int, context: int, path: Sequence[int]
) -> tuple[list[Fraction], list[Fraction]]:
    """``(law of tau, residual weight for each tau)`` of one drafted path under ``rule``."""
    ratios = _likelihood_ratios(chain, position, context, path)
    length = len(path)
    if rule == TOKEN:
        return token_stopping_law(ratios), [Fraction(1)] * (length + 1)
    if rule == ACCEPT_ALWAYS:
        return [Fraction(0)] * length + [Fraction(1)], [Fraction(1)] * (length + 1)
    weights = block_weights(ratios)
    # Control (b): h_i evaluated with w_{i-1} (shift the weights by one step).
    stop_weights = [Fraction(1), *weights[:-1]] if rule == BLOCK_LAGGED_WEIGHT else weights
    stops = stop_probabilities(chain, position, context, path, stop_weights)
    if rule == BLOCK_FIRST_FAILURE:
        tau_law = stopping_law_first_failure(stops)
    else:
        tau_law = stopping_law_last_success(stops)
    residual_weights = [Fraction(1)] * (length + 1) if rule == BLOCK_UNWEIGHTED_RESIDUAL else weights
    return tau_law, residual_weights


def round_law(chain: DiscreteChain, rule: str, position: int, context: int, window: int) -> Law:
    """Exact law of the symbols one round appends, from the state ``(position, context)``.

    Parameters
    ----------
    chain : DiscreteChain
        The chain.
    rule : str
        One of :data:`CORRECT_RULES` or :data:`CONTROL_RULES`.
    position : int
        Symbols already produced (``< horizon``).
    context : int
        The previous symbol.
    window : int
        Drafting window; the round drafts ``L = min(window, horizon - position)`` symbols, and draws the bonus
        symbol only when ``position + L < horizon`` (see the module docstring for why this is exact).

    Returns
    -------
    dict
        Appended block (tuple of ``tau + 1`` symbols, or ``L`` at the horizon) -> probability.
    """
    if rule not in CORRECT_RULES + CONTROL_RULES:
        raise ValueError(f"unknown rule {rule!r}")
    length = min(window, chain.horizon - position)
    with_bonus = position + length < chain.horizon
    strict = rule in CORRECT_RULES
    law: Law = defaultdict(Fraction)
    for path, path_probability in draft_paths(chain, position, context, length):
        tau_law, residual_weights = _accepted_length_law(rule, chain, position, context, path)
        for tau, tau_probability in enumerate(tau_law):
            branch = path_probability * tau_probability
            if branch == 0:
                continue
            kept = tuple(path[:tau])
            previous = path[tau - 1] if tau > 0 else context
            step = position + tau
            if tau == length:
                if not with_bonus:
                    law[kept] += branch
                    continue
                next_row = chain.target_row(step, previous)  # bonus symbol from P_{L+1}(. | X_L)
            else:
                next_row = _residual_row(
                    chain.target_row(step, previous),
                    chain.draft_row(step, previous),
                    residual_weights[tau],
                    strict,
                )
            for symbol, transition in enumerate(next_row):
                if transition > 0:
                    law[(*kept, symbol)] += branch * transition
    return dict(law)


def sequence_law(chain: DiscreteChain, rule: str, window: int) -> Law:
    """Exact law of the full length-``horizon`` sequence produced by repeated rounds of ``rule``.

    Parameters
    ----------
    chain : DiscreteChain
        The chain.
    rule : str
        Verification rule (see :func:`round_law`).
    window : int
        Drafting window (>= 1).

    Returns
    -------
    dict
        Sequence -> probability (zero-probability sequences omitted).
    """
    if window < 1:
        raise ValueError("window must be >= 1")

    @cache
    def from_state(position: int, context: int) -> tuple[tuple[tuple[int, ...], Fraction], ...]:
        if position == chain.horizon:
            return (((), Fraction(1)),)
        law: Law = defaultdict(Fraction)
        for block, block_probability in round_law(chain, rule, position, context, window).items():
            for suffix, suffix_probability in from_state(position + len(block), block[-1]):
                law[block + suffix] += block_probability * suffix_probability
        return tuple((sequence, probability) for sequence, probability in law.items() if probability != 0)

    return dict(from_state(0, chain.start_symbol))


def total_variation(first: Law, second: Law) -> Fraction:
    """Exact total variation distance ``(1/2) sum |first - second|`` between two laws.

    Parameters
    ----------
    first, second : dict
        Laws (missing keys have probability 0).

    Returns
    -------
    Fraction
        0 exactly when the laws are equal.
    """
    keys = set(first) | set(second)
    return sum((abs(first.get(key, Fraction(0)) - second.get(key, Fraction(0))) for key in keys), Fraction(0)) / 2


@dataclass(frozen=True)
class AcceptedLengthSummary:
    """Exact accepted-length statistics of one round from a fixed state.

    Attributes
    ----------
    window : int
        ``L``.
    block_tail : tuple of Fraction
        ``P(tau_block >= i)`` for ``i = 1..L`` from the enumerated stopping law.
    expected_weights : tuple of Fraction
        ``E_Q[w_i]`` for ``i = 1..L``.
    block_mean : Fraction
        ``E[tau_block]``.
    token_tail : tuple of Fraction
        ``P(tau_token >= i)`` for ``i = 1..L`` from the enumerated token stopping law.
    token_tail_formula : tuple of Fraction
        ``E_Q[prod_{k <= i} min(1, P_k/Q_k)]`` for ``i = 1..L``.
    token_mean : Fraction
        ``E[tau_token]`` from the enumerated token stopping law.
    """

    window: int
    block_tail: tuple[Fraction, ...]
    expected_weights: tuple[Fraction, ...]
    block_mean: Fraction
    token_tail: tuple[Fraction, ...]
    token_tail_formula: tuple[Fraction, ...]
    token_mean: Fraction


def accepted_length_summary(chain: DiscreteChain, window: int) -> AcceptedLengthSummary:
    """Enumerate one round from the start state and collect ``tau`` statistics for both rules.

    Parameters
    ----------
    chain : DiscreteChain
        The chain (``window <= horizon``).
    window : int
        ``L``.

    Returns
    -------
    AcceptedLengthSummary
        Exact values; Sun et al. give ``P(tau_block >= i) = E_Q[w_i]``, hence
        ``E[tau_block] = sum_i E_Q[w_i]``.
    """
    if not 1 <= window <= chain.horizon:
        raise ValueError("need 1 <= window <= horizon")
    position, context = 0, chain.start_symbol
    block_law = [Fraction(0)] * (window + 1)
    token_law = [Fraction(0)] * (window + 1)
    expected_weights = [Fraction(0)] * window
    token_tail_formula = [Fraction(0)] * window
    for path, path_probability in draft_paths(chain, position, context, window):
        ratios = _likelihood_ratios(chain, position, context, path)
        weights = block_weights(ratios)
        stops = stop_probabilities(chain, position, context, path, weights)
        for tau, probability in enumerate(stopping_law_last_success(stops)):
            block_law[tau] += path_probability * probability
        for tau, probability in enumerate(token_stopping_law(ratios)):
            token_law[tau] += path_probability * probability
        accepted = Fraction(1)
        for index in range(window):
            expected_weights[index] += path_probability * weights[index + 1]
            accepted *= min(Fraction(1), ratios[index])
            token_tail_formula[index] += path_probability * accepted
    block_tail = tuple(sum(block_law[index:], Fraction(0)) for index in range(1, window + 1))
    token_tail = tuple(sum(token_law[index:], Fraction(0)) for index in range(1, window + 1))
    return AcceptedLengthSummary(
        window=window,
        block_tail=block_tail,
        expected_weights=tuple(expected_weights),
        block_mean=sum((tau * probability for tau, probability in enumerate(block_law)), Fraction(0)),
        token_tail=token_tail,
        token_tail_formula=tuple(token_tail_formula),
        token_mean=sum((tau * probability for tau, probability in enumerate(token_law)), Fraction(0)),
    )
