"""Calibration of a speculative run against the theory, from its logs (docs/design.md §5).

- token rule: given everything up to the draft of step i, step i is accepted with probability
  ``alpha(delta_i) = 2 Phi(-delta_i / 2)``, so ``S = sum (1{accepted_i} - alpha(delta_i))`` over the verified steps
  is a martingale with predictable variance ``sum alpha (1 - alpha)``: ``z = S / sqrt(V)``.
- block rule: ``P(tau >= i | X_1..X_i) = w_i``, so each round's ``tau - sum_i w_i`` has mean zero given the round's
  start; ``z = sum / sqrt(sum of squares)`` over rounds (self-normalized martingale), with the sum of squares
  floored at ``sum_i w_i (1 - w_i)`` over the verified positions: where every weight is within rounding of 1 no
  rejection is seen, every difference is a tiny positive number and the plain self-normalized z would be of order
  ``sqrt(rounds)`` whatever the sampler does (the floor, the variance the positions would have alone, makes it
  about ``sqrt(sum_i (1 - w_i))``; elsewhere the sum of squares is larger and the floor does not act).

Both z-scores are asymptotically standard normal whatever the dependence between steps and rounds. A run with
``rule="adaptive"`` (each window verified by the rule the policy chose, ``SpeculativeResult.block_verified``) sums
both kinds of martingale differences, normalized by the token part's predictable variance plus the block part's sum
of squares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specdiff.sampler import SpeculativeResult
from theory.gaussian import acceptance_probability


@dataclass(frozen=True)
class PositionRow:
    """Window position i: measured and predicted acceptance (token) or ``P(tau >= i)`` (block)."""

    position: int
    count: int
    measured: float
    predicted: float
    z: float


@dataclass(frozen=True)
class CalibrationSummary:
    """z-score of a run against the theory, per-position rows, and measured vs predicted steps per round."""

    z: float
    positions: list[PositionRow]
    measured_steps_per_round: float
    predicted_steps_per_round: float
    rounds: int


def calibrate_run(result: SpeculativeResult, rule: str, delta_scale: float = 1.0) -> CalibrationSummary:
    """Calibrate a run of :func:`specdiff.sampler.sample` or ``speculative_chain`` made with ``rule``.

    ``delta_scale`` rescales the gaps of the token prediction (a negative control: 0.5 must be rejected). With
    ``rule="adaptive"`` the per-position rows are left empty (a position's measured quantity differs between the
    rules).

    """
    if not result.accepted:
        raise ValueError("the run verified no window: nothing to calibrate")
    if rule not in ("block", "token-reflection", "token-residual", "adaptive"):
        raise ValueError(f"unknown rule {rule!r}")
    if rule == "adaptive":
        blocks = [b.numpy() for b in result.block_verified]
    else:
        blocks = [np.full(a.shape, rule == "block") for a in result.accepted]
    accepted = [a.numpy() for a in result.accepted]
    token = _token_terms(
        [a[~b] for a, b in zip(accepted, blocks, strict=True)],
        [d.numpy()[~b] for d, b in zip(result.deltas, blocks, strict=True)],
        delta_scale,
    )
    block = _block_terms(
        [a[b] for a, b in zip(accepted, blocks, strict=True)],
        [w.numpy()[b] for w, b in zip(result.weights, blocks, strict=True)],
    )
    normalizer = token.variance + block.variance
    z = (token.total + block.total) / np.sqrt(normalizer) if normalizer > 0 else 0.0
    table = [] if rule == "adaptive" else (block.table if rule == "block" else token.table)
    rounds = token.rounds + block.rounds
    predicted = (token.predicted_steps + block.predicted_steps) / rounds
    measured = float(1 + np.concatenate(accepted).astype(np.float64).mean())
    return CalibrationSummary(float(z), table, measured, float(predicted), rounds)


@dataclass(frozen=True)
class _Terms:
    """One rule's share of a calibration: the sum of its martingale differences, its normalizer (predictable
    variance for the token rule, floored sum of squares for the block rule), its per-position rows, the sum over its
    rounds of the predicted steps per round, and its number of rounds."""

    total: float
    variance: float
    table: list[PositionRow]
    predicted_steps: float
    rounds: int


def token_calibration(result: SpeculativeResult, delta_scale: float = 1.0) -> tuple[float, list[PositionRow], float]:
    """Martingale z-score of token acceptances against ``alpha(delta_scale * delta)``, per-position rows, and the
    predicted steps per round ``1 + sum_i prod_{j<=i} alpha_j`` averaged over rounds."""
    terms = _token_terms([a.numpy() for a in result.accepted], [d.numpy() for d in result.deltas], delta_scale)
    return terms.total / np.sqrt(terms.variance), terms.table, terms.predicted_steps / max(terms.rounds, 1)


def _token_terms(accepted_rounds: list[np.ndarray], delta_rounds: list[np.ndarray], delta_scale: float) -> _Terms:
    total, variance, predicted_steps, rounds = 0.0, 0.0, 0.0, 0
    per_position: dict[int, list[float]] = {}
    for tau_values, delta_values in zip(accepted_rounds, delta_rounds, strict=True):
        within = ~np.isnan(delta_values)  # (k, L): the positions inside each row's window
        alpha = np.where(within, acceptance_probability(delta_scale * np.where(within, delta_values, 0.0)), 0.0)
        tau = tau_values[:, None]
        positions = np.arange(1, alpha.shape[1] + 1)[None, :]
        reached = (positions <= tau + 1) & within
        success = (positions <= tau).astype(np.float64)
        total += float(((success - alpha) * reached).sum())
        variance += float((alpha * (1 - alpha) * reached).sum())
        predicted_steps += float((1 + np.cumprod(alpha, axis=1).sum(axis=1)).sum())
        rounds += alpha.shape[0]
        for i in range(alpha.shape[1]):
            rows = reached[:, i]
            entry = per_position.setdefault(i + 1, [0, 0.0, 0.0, 0.0])
            entry[0] += int(rows.sum())
            entry[1] += float(success[rows, i].sum())
            entry[2] += float(alpha[rows, i].sum())
            entry[3] += float((alpha[rows, i] * (1 - alpha[rows, i])).sum())
    table = [
        PositionRow(i, int(c), s / c, a / c, (s - a) / np.sqrt(v) if v > 0 else 0.0)
        for i, (c, s, a, v) in sorted(per_position.items())
        if c > 0
    ]
    return _Terms(total, variance, table, predicted_steps, rounds)


def block_calibration(result: SpeculativeResult) -> tuple[float, list[PositionRow], float]:
    """Self-normalized martingale z-score of ``tau - sum_i w_i`` over rounds, per-position rows and the predicted
    steps per round ``1 + sum_i w_i`` averaged over rounds."""
    terms = _block_terms([a.numpy() for a in result.accepted], [w.numpy() for w in result.weights])
    z = float(terms.total / np.sqrt(terms.variance)) if terms.variance > 0 else 0.0
    return z, terms.table, terms.predicted_steps / max(terms.rounds, 1)


def _block_terms(accepted_rounds: list[np.ndarray], weight_rounds: list[np.ndarray]) -> _Terms:
    differences: list[np.ndarray] = [np.zeros(0)]
    per_position: dict[int, list[np.ndarray]] = {}
    predicted_steps: list[np.ndarray] = [np.zeros(0)]
    predicted_weights: dict[int, list[np.ndarray]] = {}
    floor = 0.0  # sum of w_i (1 - w_i) over the verified positions (module docstring)
    for tau, w in zip(accepted_rounds, weight_rounds, strict=True):  # w: (k, L), NaN beyond each row's window
        weight_sums = np.nansum(w, axis=1)  # sum_i w_i over each row's window
        floor += float(np.nansum(w * (1 - w)))
        differences.append(tau - weight_sums)
        predicted_steps.append(1 + weight_sums)
        for i in range(w.shape[1]):
            within = ~np.isnan(w[:, i])
            per_position.setdefault(i + 1, []).append((tau[within] >= i + 1) - w[within, i])
            predicted_weights.setdefault(i + 1, []).append(w[within, i])
    all_differences = np.concatenate(differences)
    table = []
    for position, chunks in sorted(per_position.items()):
        values = np.concatenate(chunks)
        if values.size == 0:
            continue
        weights = np.concatenate(predicted_weights[position])
        predicted = float(weights.mean())
        measured = predicted + float(values.mean())
        z = _self_normalized(values, float((weights * (1 - weights)).sum()))
        table.append(PositionRow(position, values.size, measured, predicted, z))
    total, squares = float(all_differences.sum()), float((all_differences**2).sum())
    variance = max(squares, floor)
    return _Terms(total, variance, table, float(np.concatenate(predicted_steps).sum()), int(all_differences.size))


def _self_normalized(values: np.ndarray, floor: float) -> float:
    """``sum / sqrt(max(sum of squares, floor))`` of martingale differences (0 when both are 0: a perfect
    prediction)."""
    variance = max(float((values**2).sum()), floor)
    return float(values.sum() / np.sqrt(variance)) if variance > 0 else 0.0
