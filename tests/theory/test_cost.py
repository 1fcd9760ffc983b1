"""Tests for theory.cost: the wall-clock model and the optimal window."""

from __future__ import annotations

import numpy as np
import pytest

from theory.cost import (
    SpeedupPrediction,
    WindowChoice,
    constant_gap_block_gain,
    expected_steps_per_round,
    optimal_window,
    predicted_speedup,
    round_cost,
    target_batch_cost,
    token_steps_per_round,
    token_window_speedups,
)
from theory.gaussian import acceptance_probability

FLAT = np.ones(33)
# DiT-XL/2-like curve (docs/theory.md): 1.0 up to B = 8, then rising to 1.4 at 16.
DIT_LIKE = np.r_[np.ones(8), np.linspace(1.05, 1.4, 8)]


@pytest.mark.parametrize("delta", [0.0, 0.1, 0.7, 2.0])
@pytest.mark.parametrize("window", [0, 1, 4, 16])
def test_token_closed_form_matches_the_profile(delta: float, window: int) -> None:
    closed = token_steps_per_round(float(acceptance_probability(delta)), window)
    assert closed == pytest.approx(expected_steps_per_round(np.full(window, delta), "token"), rel=1e-12)


def test_token_steps_edge_cases() -> None:
    assert token_steps_per_round(1.0, 7) == 8.0
    assert token_steps_per_round(0.0, 7) == 1.0
    assert token_steps_per_round(0.5, 0) == 1.0


def test_block_yields_at_least_token() -> None:
    deltas = np.array([0.2, 0.9, 0.4, 1.3])
    assert expected_steps_per_round(deltas, "block") >= expected_steps_per_round(deltas, "token")


def test_round_cost_and_speedup_by_hand() -> None:
    assert round_cost(3, DIT_LIKE, 0.25) == pytest.approx(0.75 + 1.0)
    assert round_cost(8, DIT_LIKE, 0.0) == pytest.approx(1.05)  # batch of 9 states
    prediction = predicted_speedup(np.full(3, 0.5), "token", DIT_LIKE, 0.25)
    assert isinstance(prediction, SpeedupPrediction)
    assert prediction.window == 3
    alpha = float(acceptance_probability(0.5))
    assert prediction.steps_per_round == pytest.approx(1 + alpha + alpha**2 + alpha**3)
    assert prediction.speedup == pytest.approx(prediction.steps_per_round / 1.75)


def test_callable_cost_curve() -> None:
    assert round_cost(4, lambda batch: 1.0 + 0.1 * (batch - 1), 0.0) == pytest.approx(1.4)


def test_zero_gap_flat_cost_gives_window_plus_one_and_max_window() -> None:
    for window in (1, 5, 32):
        assert predicted_speedup(np.zeros(window), "block", FLAT, 0.0).speedup == pytest.approx(window + 1)
    choice = optimal_window(0.0, "block", FLAT, 0.0, max_window=32)
    assert isinstance(choice, WindowChoice)
    assert choice.window == 32
    np.testing.assert_allclose(choice.speedups, np.arange(1, 34))


def test_plain_sampling_wins_for_huge_gap_or_steep_cost() -> None:
    assert optimal_window(30.0, "block", FLAT, 0.0, max_window=8).window == 0
    steep = 1.0 + 2.0 * np.arange(9)  # each extra state costs two calls
    choice = optimal_window(0.3, "token", steep, 0.0, max_window=8)
    assert choice.window == 0
    assert choice.speedup == 1.0
    assert choice.speedups[0] == 1.0


def test_knee_of_the_cost_curve_and_block_choice() -> None:
    # Perfect draft: best is the largest window before the curve rises, L + 1 = 8 states at cost 1.
    assert optimal_window(0.0, "token", DIT_LIKE, 0.0, max_window=15).window >= 7
    token = optimal_window(0.8, "token", DIT_LIKE, 0.05, max_window=15)
    block = optimal_window(0.8, "block", DIT_LIKE, 0.05, max_window=15)
    assert block.speedup >= token.speedup
    assert 1 <= token.window <= 15


def test_callable_gap_schedule() -> None:
    choice = optimal_window(lambda window: np.linspace(0.1, 1.0, window), "block", FLAT, 0.0, max_window=6)
    assert choice.speedups.shape == (7,)
    with pytest.raises(ValueError, match="shape"):
        optimal_window(lambda window: np.zeros(window + 1), "block", FLAT, 0.0, max_window=3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: target_batch_cost(np.ones(4), 5), "beyond"),
        (lambda: target_batch_cost(np.ones(4), 0), "batch_size"),
        (lambda: target_batch_cost(np.array([1.0, -1.0]), 2), "> 0"),
        (lambda: target_batch_cost(np.ones((2, 2)), 1), "1-D"),
        (lambda: round_cost(-1, FLAT, 0.0), "window"),
        (lambda: round_cost(2, FLAT, -0.5), "draft_cost"),
        (lambda: token_steps_per_round(1.5, 3), "accept_prob"),
        (lambda: optimal_window(0.5, "block", np.ones(4), 0.0, max_window=8), "beyond"),
        (lambda: optimal_window(0.5, "block", FLAT, 0.0, max_window=-1), "max_window"),
        (lambda: predicted_speedup([], "chunk", FLAT, 0.0), "rule"),
        (lambda: expected_steps_per_round([-1.0], "token"), "deltas"),
    ],
)
def test_validation(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_per_round_draft_cost() -> None:
    # The frozen-target draft pays one root call per round: L = 3 at flat cost costs 1 + 1 = 2 calls.
    assert round_cost(3, FLAT, 0.0, draft_cost_per_round=1.0) == pytest.approx(2.0)
    assert round_cost(0, FLAT, 0.5, draft_cost_per_round=1.0) == pytest.approx(1.0)  # a plain step pays no draft
    # With exact drafts (delta = 0) a window L yields L + 1 steps for 2 calls: the speedup is (L + 1) / 2.
    prediction = predicted_speedup(np.zeros(3), "token", FLAT, 0.0, draft_cost_per_round=1.0)
    assert prediction.speedup == pytest.approx(2.0)
    # A poor draft (delta = 3) does not pay for the root call: plain sampling is chosen.
    choice = optimal_window(3.0, "block", FLAT, 0.0, 16, draft_cost_per_round=1.0)
    assert choice.window == 0 and choice.speedup == 1.0
    with pytest.raises(ValueError):
        round_cost(2, FLAT, 0.0, draft_cost_per_round=-1.0)


def test_token_window_speedups_match_predicted_speedup() -> None:
    gaps = np.array([[0.1, 0.4, 0.9, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    table = token_window_speedups(gaps, DIT_LIKE, 0.1, draft_cost_per_round=0.5)
    assert table.shape == (3, 5)
    assert np.allclose(table[:, 0], 1.0)
    for row in range(3):
        for window in range(1, 5):
            expected = predicted_speedup(gaps[row, :window], "token", DIT_LIKE, 0.1, draft_cost_per_round=0.5)
            assert table[row, window] == pytest.approx(expected.speedup, rel=1e-9)
    with pytest.raises(ValueError, match="shape"):
        token_window_speedups(np.zeros(3), FLAT, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        token_window_speedups(np.full((1, 2), np.nan), FLAT, 0.0)


def test_constant_gap_block_gain_matches_expected_lengths() -> None:
    gains = constant_gap_block_gain([0.0, 0.5, 2.0], 8)
    assert gains.shape == (3, 9) and np.allclose(gains[:, :2], 1.0)  # L = 1: block is the token rule
    assert np.allclose(gains[0], 1.0)  # delta = 0: everything accepted by both
    for row, delta in ((1, 0.5), (2, 2.0)):
        for window in (2, 5, 8):
            block = expected_steps_per_round(np.full(window, delta), "block")
            token = expected_steps_per_round(np.full(window, delta), "token")
            assert gains[row, window] == pytest.approx(block / token, rel=1e-6)
