"""Wall-clock model of speculative sampling and the window that maximizes the predicted speedup (docs/theory.md).

A round of window ``L`` drafts ``L`` steps and checks them with one batched target call on ``L + 1`` states (the root,
whose prediction verifies the first drafted step, and the ``L`` drafted states; the target at the last one gives the
bonus step). It commits ``1 + E[tau]`` steps and costs ``draft_cost_per_step * L + c_target(L + 1)`` in units of one
target call on one state. Plain sampling commits one step per ``c_target(1)``, so the predicted speedup is
``(1 + E[tau]) / round_cost * c_target(1)`` (``c_target(1)`` is normally 1). The cost curve ``batch_cost`` is
either a 1-D array (``batch_cost[B - 1]`` = cost of a batch of ``B`` states; asking beyond its end is an error, not an
extrapolation) or a callable ``B -> cost``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from theory.gaussian import acceptance_probability
from theory.verification import RULES, constant_gap_block_profile, expected_accepted_length, token_profile

BatchCost = npt.ArrayLike | Callable[[int], float]
GapSchedule = float | Callable[[int], npt.ArrayLike]


@dataclass(frozen=True)
class SpeedupPrediction:
    """Predicted cost and yield of one round of a given window.

    Attributes
    ----------
    window : int
        Drafted steps per round ``L`` (0 = plain sampling).
    steps_per_round : float
        Expected committed steps per round, ``1 + E[tau]``.
    round_cost : float
        Cost of a round in target-call units, ``draft_cost_per_step * L + c_target(L + 1)``.
    speedup : float
        ``steps_per_round / round_cost * c_target(1)``: steps per unit cost relative to plain sampling.
    """

    window: int
    steps_per_round: float
    round_cost: float
    speedup: float


@dataclass(frozen=True)
class WindowChoice:
    """The window maximizing the predicted speedup.

    Attributes
    ----------
    window : int
        Best window in ``0..max_window`` (0 = plain sampling; the smallest window wins ties).
    speedup : float
        Its predicted speedup.
    speedups : ndarray, shape (max_window + 1,)
        Predicted speedup of every window ``0..max_window`` (``speedups[0] = 1``).
    """

    window: int
    speedup: float
    speedups: npt.NDArray[np.float64]


def _check_window(window: int, name: str = "window") -> int:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {window!r}")
    return int(window)


def _check_draft_cost(draft_cost_per_step: float) -> float:
    value = float(draft_cost_per_step)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"draft_cost_per_step must be finite and >= 0, got {draft_cost_per_step!r}")
    return value


def target_batch_cost(batch_cost: BatchCost, batch_size: int) -> float:
    """Cost of one target call on ``batch_size`` states, from an array curve or a callable.

    Parameters
    ----------
    batch_cost : array_like, shape (B_max,), or callable
        ``batch_cost[B - 1]`` is the cost of a batch of ``B`` states, or ``batch_cost(B)``.
    batch_size : int
        ``B >= 1``.

    Returns
    -------
    float
        The (positive, finite) cost.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if callable(batch_cost):
        value = float(batch_cost(batch_size))
    else:
        curve = np.asarray(batch_cost, dtype=np.float64)
        if curve.ndim != 1 or curve.size == 0:
            raise ValueError(f"batch_cost must be a non-empty 1-D array, got shape {curve.shape}")
        if batch_size > curve.size:
            raise ValueError(
                f"batch_cost covers batches 1..{curve.size}; batch {batch_size} is beyond the measured curve"
            )
        value = float(curve[batch_size - 1])
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"batch cost at B = {batch_size} must be finite and > 0, got {value}")
    return value


def token_steps_per_round(accept_prob: float, window: int) -> float:
    """Committed steps per round of the token rule with constant acceptance: ``(1 - a^{L+1}) / (1 - a)``.

    Parameters
    ----------
    accept_prob : float
        Per-step acceptance ``alpha`` in [0, 1].
    window : int
        Drafted steps ``L >= 0``.

    Returns
    -------
    float
        ``sum_{i=0}^{L} alpha^i`` (``L + 1`` when ``alpha = 1``).
    """
    window = _check_window(window)
    if not 0.0 <= accept_prob <= 1.0:
        raise ValueError(f"accept_prob must be in [0, 1], got {accept_prob!r}")
    if accept_prob == 1.0:
        return float(window + 1)
    return float((1.0 - accept_prob ** (window + 1)) / (1.0 - accept_prob))


def expected_steps_per_round(deltas: npt.ArrayLike, rule: str) -> float:
    """``1 + E[tau]`` for a window with per-step gaps ``deltas`` (shape (L,); empty means plain sampling)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if np.asarray(deltas).size == 0:
        return 1.0
    return 1.0 + expected_accepted_length(deltas, rule)


def round_cost(
    window: int, batch_cost: BatchCost, draft_cost_per_step: float, *, draft_cost_per_round: float = 0.0
) -> float:
    """Cost of a round in target-call units (docs/theory.md).

    ``draft_cost_per_round + draft_cost_per_step * L + c_target(L + 1)``; the per-round term is, for example, the
    root call of the frozen-target draft. A plain step (``L = 0``) costs ``c_target(1)`` and no draft.
    """
    window = _check_window(window)
    if window == 0:
        return target_batch_cost(batch_cost, 1)
    per_round = _check_draft_cost(draft_cost_per_round)
    return per_round + _check_draft_cost(draft_cost_per_step) * window + target_batch_cost(batch_cost, window + 1)


def predicted_speedup(
    deltas: npt.ArrayLike,
    rule: str,
    batch_cost: BatchCost,
    draft_cost_per_step: float,
    *,
    draft_cost_per_round: float = 0.0,
) -> SpeedupPrediction:
    """Predicted speedup over plain sampling of rounds drafting steps with gaps ``deltas``.

    Parameters
    ----------
    deltas : array_like, shape (L,)
        Per-step gaps of the window (empty: plain sampling, speedup 1).
    rule : {"token", "block"}
        Verification rule.
    batch_cost : array_like, shape (B_max,), or callable
        Target batch-cost curve (see the module docstring).
    draft_cost_per_step : float
        Draft cost of one drafted step in target-call units (0 for a reuse draft, K/depth for an early exit).
    draft_cost_per_round : float
        Draft cost paid once per speculative round (1 for the frozen-target draft's root call).

    Returns
    -------
    SpeedupPrediction
    """
    window = int(np.asarray(deltas).size)
    steps = expected_steps_per_round(deltas, rule)
    cost = round_cost(window, batch_cost, draft_cost_per_step, draft_cost_per_round=draft_cost_per_round)
    speedup = steps / cost * target_batch_cost(batch_cost, 1)
    return SpeedupPrediction(window=window, steps_per_round=steps, round_cost=cost, speedup=speedup)


def _window_gaps(delta: GapSchedule, window: int) -> npt.NDArray[np.float64]:
    if callable(delta):
        gaps = np.asarray(delta(window), dtype=np.float64)
        if gaps.shape != (window,):
            raise ValueError(f"delta(window) must return shape ({window},), got {gaps.shape}")
        return gaps
    return np.full(window, float(delta))


def optimal_window(
    delta: GapSchedule,
    rule: str,
    batch_cost: BatchCost,
    draft_cost_per_step: float,
    max_window: int,
    *,
    draft_cost_per_round: float = 0.0,
) -> WindowChoice:
    """Window in ``0..max_window`` maximizing the predicted speedup (0 = plain sampling, speedup 1).

    Parameters
    ----------
    delta : float or callable
        Constant per-step gap, or ``window -> gaps`` (array of shape (window,)).
    rule : {"token", "block"}
        Verification rule.
    batch_cost : array_like, shape (B_max,), or callable
        Target batch-cost curve; it must cover batches up to ``max_window + 1``.
    draft_cost_per_step : float
        Draft cost per drafted step, in target-call units.
    max_window : int
        Largest window considered (>= 0).
    draft_cost_per_round : float
        Draft cost paid once per speculative round (see :func:`round_cost`).

    Returns
    -------
    WindowChoice
    """
    max_window = _check_window(max_window, "max_window")
    speedups = np.ones(max_window + 1)
    for window in range(1, max_window + 1):
        gaps = _window_gaps(delta, window)
        per_round = draft_cost_per_round
        prediction = predicted_speedup(gaps, rule, batch_cost, draft_cost_per_step, draft_cost_per_round=per_round)
        speedups[window] = prediction.speedup
    best = int(np.argmax(speedups))  # the first maximum: the smallest best window
    return WindowChoice(window=best, speedup=float(speedups[best]), speedups=speedups)


def token_window_speedups(
    deltas: npt.ArrayLike,
    batch_cost: BatchCost,
    draft_cost_per_step: float,
    *,
    draft_cost_per_round: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Predicted token-rule speedups of every window ``0..W`` for many gap profiles at once.

    With per-step acceptance ``alpha_j = alpha(delta_j)`` the token rule commits
    ``sum_{i=0}^{L} prod_{j<=i} alpha_j`` steps per round (docs/theory.md); the block rule commits at least as many
    (``E tau_block >= E tau_token``), so this is a conservative estimate for it. Cheap enough for a per-round,
    per-sample window choice.

    Parameters
    ----------
    deltas : array_like, shape (R, W)
        Row r gives the gaps of drafted positions 1..W.
    batch_cost, draft_cost_per_step, draft_cost_per_round
        As in :func:`predicted_speedup`.

    Returns
    -------
    ndarray, shape (R, W + 1)
        Column L is the predicted speedup of window L (column 0, plain sampling, is 1).
    """
    gaps = np.asarray(deltas, dtype=np.float64)
    if gaps.ndim != 2:
        raise ValueError(f"deltas must have shape (R, W), got {gaps.shape}")
    if np.isnan(gaps).any() or (gaps < 0).any():
        raise ValueError("deltas must be >= 0 and not NaN")
    accept = acceptance_probability(gaps)
    survival = np.cumprod(accept, axis=1)  # prod_{j<=i} alpha_j, i = 1..W
    steps = 1.0 + np.concatenate([np.zeros((gaps.shape[0], 1)), np.cumsum(survival, axis=1)], axis=1)
    costs = np.array(
        [
            round_cost(window, batch_cost, draft_cost_per_step, draft_cost_per_round=draft_cost_per_round)
            for window in range(gaps.shape[1] + 1)
        ]
    )
    return steps / costs[None, :] * target_batch_cost(batch_cost, 1)


def constant_gap_block_gain(deltas: npt.ArrayLike, max_window: int) -> npt.NDArray[np.float64]:
    """Block-over-token gain in steps per round, ``(1 + E tau_block) / (1 + E tau_token)``, for constant gaps.

    Exact for a constant gap (Spitzer's recursion for the block rule, the geometric sum for the token rule). Both
    expectations are sums over positions of quantities that depend on the first i steps only
    (``E tau_block = sum_i E w_i``), so one recursion to ``max_window`` gives every window.

    Parameters
    ----------
    deltas : array_like, shape (G,)
        Constant gaps (>= 0).
    max_window : int
        Largest window W (>= 0; 0 gives the single column of window 0, all ones).

    Returns
    -------
    ndarray, shape (G, W + 1)
        Column L is the gain of window L (column 0, plain sampling, is 1).
    """
    gaps = np.asarray(deltas, dtype=np.float64).reshape(-1)
    max_window = _check_window(max_window, "max_window")
    gains = np.ones((gaps.size, max_window + 1))
    if max_window == 0:
        return gains
    for row, gap in enumerate(gaps):
        block = 1.0 + np.cumsum(constant_gap_block_profile(float(gap), max_window))
        token = 1.0 + np.cumsum(token_profile(np.full(max_window, gap)))
        gains[row, 1:] = block / token
    return gains
