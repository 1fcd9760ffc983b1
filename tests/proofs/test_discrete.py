"""Exact (Fraction) tests of the speculative rules on small discrete chains (proofs.discrete, .checks)."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import checks, discrete
from proofs.__main__ import main

GRID = [
    (vocabulary_size, horizon, window, seed)
    for vocabulary_size, horizon in ((2, 4), (3, 3), (4, 3))
    for window in (1, 2, 3, 4)
    for seed in (0, 1)
]


def _sums_to_one(law: dict[tuple[int, ...], Fraction]) -> bool:
    return sum(law.values(), Fraction(0)) == 1


@pytest.mark.parametrize(("vocabulary_size", "horizon", "window", "seed"), GRID)
@pytest.mark.parametrize("rule", discrete.CORRECT_RULES)
def test_correct_rules_reproduce_target_law_exactly(
    rule: str, vocabulary_size: int, horizon: int, window: int, seed: int
) -> None:
    chain = discrete.random_chain(vocabulary_size, horizon, seed)
    law = discrete.sequence_law(chain, rule, window)
    assert law == discrete.target_law(chain)
    assert _sums_to_one(law)


@settings(max_examples=25, deadline=None)
@given(
    vocabulary_size=st.integers(2, 4),
    horizon=st.integers(1, 4),
    window=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_block_rule_exact_on_random_chains(vocabulary_size: int, horizon: int, window: int, seed: int) -> None:
    chain = discrete.random_chain(vocabulary_size, horizon, seed)
    assert discrete.sequence_law(chain, discrete.BLOCK, window) == discrete.target_law(chain)


def test_round_laws_are_probability_distributions_for_every_rule() -> None:
    chain = discrete.random_chain(3, 4, 0)
    for rule in discrete.CORRECT_RULES + discrete.CONTROL_RULES:
        for position in range(chain.horizon):
            for context in range(chain.vocabulary_size):
                law = discrete.round_law(chain, rule, position, context, 3)
                assert _sums_to_one(law)
                length = min(3, chain.horizon - position)
                bonus = position + length < chain.horizon
                # A round appends tau + 1 symbols, or L with tau = L when the window ends at the horizon.
                assert all(1 <= len(block) <= length + int(bonus) for block in law)


def test_window_ending_at_horizon_never_overshoots() -> None:
    chain = discrete.random_chain(2, 3, 1)
    law = discrete.round_law(chain, discrete.BLOCK, 1, 0, 4)
    assert max(len(block) for block in law) == 2
    assert all(len(sequence) == 3 for sequence in discrete.sequence_law(chain, discrete.BLOCK, 4))


@pytest.mark.parametrize(("vocabulary_size", "horizon", "seed"), [(2, 4, 0), (3, 3, 1), (4, 3, 2)])
def test_window_one_block_equals_token(vocabulary_size: int, horizon: int, seed: int) -> None:
    chain = discrete.random_chain(vocabulary_size, horizon, seed)
    for position in range(horizon):
        for context in range(vocabulary_size):
            assert discrete.round_law(chain, discrete.BLOCK, position, context, 1) == discrete.round_law(
                chain, discrete.TOKEN, position, context, 1
            )


@pytest.mark.parametrize(("vocabulary_size", "horizon", "window", "seed"), [(2, 5, 4, 0), (3, 4, 3, 1), (4, 3, 3, 0)])
def test_expected_block_length_is_sum_of_expected_weights(
    vocabulary_size: int, horizon: int, window: int, seed: int
) -> None:
    chain = discrete.random_chain(vocabulary_size, horizon, seed)
    summary = discrete.accepted_length_summary(chain, window)
    # Sun et al.: P(tau_block >= i) = E_Q[w_i] for every i, hence E[tau_block] = sum_i E_Q[w_i].
    assert summary.block_tail == summary.expected_weights
    assert summary.block_mean == sum(summary.expected_weights, Fraction(0))
    assert summary.token_tail == summary.token_tail_formula
    assert summary.block_mean >= summary.token_mean
    # Tail by tail, the block rule dominates the token rule.
    assert all(block >= token for block, token in zip(summary.block_tail, summary.token_tail, strict=True))


def test_block_strictly_beats_token_somewhere() -> None:
    chain = discrete.random_chain(3, 4, 0)
    summary = discrete.accepted_length_summary(chain, 4)
    assert summary.block_mean > summary.token_mean


def test_the_textbook_example_block_11_9_against_token_10_9() -> None:
    # Target (1/3, 2/3), draft (2/3, 1/3) at both steps, window 2 (docs/theory.md, notebook 03): exact fractions.
    target, draft = (Fraction(1, 3), Fraction(2, 3)), (Fraction(2, 3), Fraction(1, 3))
    chain = discrete.DiscreteChain(2, 2, 0, ((target, target),) * 2, ((draft, draft),) * 2)
    summary = discrete.accepted_length_summary(chain, 2)
    assert summary.token_mean == Fraction(10, 9)
    assert summary.block_mean == Fraction(11, 9)
    assert tuple(summary.expected_weights) == (Fraction(2, 3), Fraction(5, 9))


def test_window_one_expected_lengths_coincide() -> None:
    chain = discrete.random_chain(4, 3, 5)
    summary = discrete.accepted_length_summary(chain, 1)
    assert summary.block_mean == summary.token_mean == summary.expected_weights[0]


def test_identical_draft_accepts_whole_window() -> None:
    chain = discrete.random_chain(3, 3, 0)
    perfect = discrete.DiscreteChain(3, 3, 0, chain.target, chain.target)
    summary = discrete.accepted_length_summary(perfect, 3)
    assert summary.block_mean == summary.token_mean == 3


@pytest.mark.parametrize("control", checks.CONTROL_CONFIGS, ids=lambda control: control.rule)
def test_negative_controls_differ_from_target_exactly(control: checks.ControlConfig) -> None:
    chain = discrete.random_chain(control.vocabulary_size, control.horizon, control.first_seed)
    law = discrete.sequence_law(chain, control.rule, control.window)
    assert _sums_to_one(law)
    assert discrete.total_variation(law, discrete.target_law(chain)) > 0


def test_unweighted_residual_control_is_blind_with_two_symbols() -> None:
    # With V = 2 at most one symbol has w P > Q, so both residuals are the same point mass: this is why
    # control (a) is run with V >= 3 (documented in proofs.checks).
    chain = discrete.random_chain(2, 4, 0)
    law = discrete.sequence_law(chain, discrete.BLOCK_UNWEIGHTED_RESIDUAL, 3)
    assert law == discrete.target_law(chain)


def test_stopping_laws_by_hand() -> None:
    half = Fraction(1, 2)
    # Last success: P(tau=2) = h_2, P(tau=1) = h_1 (1 - h_2), P(tau=0) = (1 - h_1)(1 - h_2).
    assert discrete.stopping_law_last_success([half, half]) == [Fraction(1, 4), Fraction(1, 4), half]
    # First failure (wrong rule): P(tau=0) = 1 - h_1, P(tau=1) = h_1 (1 - h_2), P(tau=2) = h_1 h_2.
    assert discrete.stopping_law_first_failure([half, half]) == [half, Fraction(1, 4), Fraction(1, 4)]
    assert discrete.token_stopping_law([Fraction(2), half]) == [Fraction(0), half, half]
    assert discrete.block_weights([Fraction(2), half, Fraction(3, 2)]) == [1, 1, half, Fraction(3, 4)]


def test_weighted_residual_by_hand() -> None:
    target = (Fraction(1, 2), Fraction(1, 2), Fraction(0))
    draft = (Fraction(1, 4), Fraction(1, 4), Fraction(1, 2))
    mass, residual = discrete.weighted_residual(target, draft, Fraction(1, 2))
    assert mass == 0
    assert residual == (0, 0, 0)
    mass, residual = discrete.weighted_residual(target, draft, Fraction(1))
    assert mass == Fraction(1, 2)
    assert residual == (Fraction(1, 2), Fraction(1, 2), 0)


def test_random_chain_stresses_both_supports() -> None:
    chain = discrete.random_chain(3, 3, 0)
    entries = [
        (chain.target[step][context][symbol], chain.draft[step][context][symbol])
        for step in range(3)
        for context in range(3)
        for symbol in range(3)
    ]
    assert any(target == 0 < draft for target, draft in entries)
    assert any(draft == 0 < target for target, draft in entries)
    assert all(sum(row) == 1 for table in (chain.target, chain.draft) for step in table for row in step)


@pytest.mark.slow
def test_run_all_passes_and_covers_every_kind_of_check() -> None:
    results = checks.run_all()
    failed = [result for result in results if not result.passed]
    assert failed == []
    names = {result.name for result in results}
    assert {f"control {rule}" for rule in discrete.CONTROL_RULES} <= names
    assert "window 1: block == token" in names
    assert any(name.startswith("sympy:") for name in names)
    configs = {result.config for result in results}
    for vocabulary_size in (2, 3, 4):
        assert any(config.startswith(f"V={vocabulary_size} ") for config in configs)


@pytest.mark.slow
def test_cli_prints_table_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main() == 0
    output = capsys.readouterr().out
    assert "exact inequality as expected" in output
    assert "0 failed" in output


def test_failing_check_is_reported() -> None:
    chain = discrete.random_chain(3, 3, 0)
    result = checks.check_rule_exactness(chain, discrete.BLOCK_FIRST_FAILURE, 3, "V=3 n=3 seed=0 L=3")
    assert not result.passed
    assert "FAIL" in result.detail
    assert "NO" in checks.format_table([result])


def test_proofs_import_neither_torch_nor_specdiff() -> None:
    code = "import sys, proofs; assert 'torch' not in sys.modules and 'specdiff' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_cli_exits_non_zero_on_failure(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    failing = checks.CheckResult("broken", "V=2 n=1 seed=0", False, "FAIL: TV = 1/2")
    monkeypatch.setattr("proofs.__main__.run_all", lambda: [failing])
    assert main() == 1
    assert "1 failed" in capsys.readouterr().out


def test_the_controls_are_named_as_in_the_library() -> None:
    # The exact discrete checks and the Monte-Carlo checks of the continuous sampler reject the same named variants.
    from specdiff.verify import CONTROL_RULES

    assert set(discrete.CONTROL_RULES) <= set(CONTROL_RULES)
