"""Token and block verification: contracts, hand-picked randomness, and Monte-Carlo exactness with negative controls.

Statistical tests use ALPHA (tests/statistics.py) per test, Bonferroni-split over their comparisons, fixed seeds,
and each has a negative control (a deliberately broken rule) that the same test is shown to reject.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypedDict, cast

import numpy as np
import pytest
import torch

import specdiff.verify as verify_module
from simulations.controls import CONTROLS
from specdiff.sampler import SamplerRule, speculative_chain
from specdiff.synthetic import constant_shift_window, verify_window
from specdiff.verify import (
    CONTROL_RULES,
    RULES,
    Rule,
    VerificationResult,
    VerificationRule,
    Window,
    WindowRandomness,
    block_verify,
    token_verify,
)
from tests.specdiff.chain import AffineChain
from tests.statistics import ALPHA, normal_ks_pvalue, z_threshold
from theory.gaussian import acceptance_probability
from theory.linear_gaussian import chain_marginals
from theory.verification import acceptance_profile


class _Flat:
    """A synthetic window and its randomness as one namespace, with the sigmas shared by the rows as (L+1,)."""

    def __init__(self, pair: tuple[Window, WindowRandomness]) -> None:
        drafted, randomness = pair
        self.pair = pair
        self.states, self.draft_means, self.target_means = drafted.states, drafted.draft_means, drafted.target_means
        self.sigmas = drafted.sigmas[0]
        self.uniforms, self.residual_uniforms = randomness.uniforms, randomness.residual_uniforms
        self.residual_noise = randomness.residual_noise


def _synthetic(*arguments: Any, **keywords: Any) -> _Flat:
    return _Flat(constant_shift_window(*arguments, **keywords))


def _verified(window: _Flat, rule: Rule | VerificationRule) -> VerificationResult:
    return verify_window(window.pair, rule)


# ---------------------------------------------------------------------------------------------------------------
# Contracts and hand-picked randomness
# ---------------------------------------------------------------------------------------------------------------


def _window(batch: int = 4, window: int = 3, dimension: int = 5, seed: int = 0, delta: float = 0.7) -> _Flat:
    return _synthetic([delta] * window, batch, dimension, generator=torch.Generator().manual_seed(seed))


class _Arguments(TypedDict):
    """The tensor arguments of ``token_verify`` and ``block_verify`` (without ``lengths``)."""

    states: torch.Tensor
    draft_means: torch.Tensor
    target_means: torch.Tensor
    sigmas: torch.Tensor
    uniforms: torch.Tensor
    residual_uniforms: torch.Tensor
    residual_noise: torch.Tensor


def _arguments(window: _Flat) -> _Arguments:
    return {
        "states": window.states,
        "draft_means": window.draft_means,
        "target_means": window.target_means,
        "sigmas": window.sigmas,
        "uniforms": window.uniforms,
        "residual_uniforms": window.residual_uniforms,
        "residual_noise": window.residual_noise,
    }


@pytest.mark.parametrize("rule", RULES)
def test_result_shapes_and_dtypes(rule: Rule) -> None:
    window = _window()
    result = _verified(window, rule)
    assert result.accepted.shape == (4,) and result.accepted.dtype == torch.long
    assert result.next_state.shape == (4, 5) and result.next_state.dtype == torch.float64
    assert result.weights.shape == (4, 3) and result.stop_probs.shape == (4, 3)
    assert result.deltas.shape == (4, 3)
    assert torch.allclose(result.deltas, torch.full((4, 3), 0.7, dtype=torch.float64))
    assert bool(((result.accepted >= 0) & (result.accepted <= 3)).all())


def test_window_of_one_block_equals_token_with_fresh_residual() -> None:
    window = _window(batch=2000, window=1, dimension=3, delta=1.3)
    block = _verified(window, "block")
    token = _verified(window, "token-residual")
    assert torch.equal(block.accepted, token.accepted)
    assert torch.equal(block.next_state, token.next_state)
    assert 0 < int(block.accepted.sum()) < 2000  # both branches exercised


@pytest.mark.parametrize("rule", RULES)
def test_perfect_draft_accepts_everything_and_takes_the_bonus_step(rule: Rule) -> None:
    window = _window(delta=0.0)
    uniforms = torch.full_like(window.uniforms, 0.999999)
    arguments = _arguments(window) | {"uniforms": uniforms}
    result = (
        block_verify(**arguments)
        if rule == "block"
        else token_verify(**arguments, residual="reflection" if rule == "token-reflection" else "fresh")
    )
    assert bool((result.accepted == 3).all())
    expected = window.target_means[:, 3] + window.sigmas[3] * window.residual_noise
    assert torch.equal(result.next_state, expected)
    assert torch.equal(result.weights, torch.ones_like(result.weights))


def test_token_reflection_reflects_the_draft_noise_on_rejection() -> None:
    window = _window(batch=3, window=2, delta=40.0)  # r is astronomically small: the first step is rejected
    result = _verified(window, "token-reflection")
    assert bool((result.accepted == 0).all())
    noise = (window.states[:, 1] - window.draft_means[:, 0]) / window.sigmas[0]
    reflected = noise.clone()
    reflected[:, 0] = -reflected[:, 0]  # e = e_1 for the shifted walk
    assert torch.allclose(result.next_state, window.target_means[:, 0] + window.sigmas[0] * reflected)


def test_block_keeps_the_last_success_not_the_first_failure() -> None:
    # Hand-picked eta: step 1 fails (eta_1 = 0.999 > h_1), step 2 succeeds (eta_2 = 0 < h_2): tau = 2.
    uniforms = torch.tensor([[0.999, 0.0]], dtype=torch.float64)
    for seed in range(100):  # the first drafted window with w_1 < 1 (then h_1 < 1)
        window = _window(batch=1, window=2, delta=0.5, seed=seed)
        result = block_verify(**(_arguments(window) | {"uniforms": uniforms}))
        if float(result.stop_probs[0, 0]) < 0.999:
            break
    assert float(result.stop_probs[0, 0]) < 0.999 and float(result.stop_probs[0, 1]) > 0
    assert int(result.accepted[0]) == 2


def test_block_weights_follow_the_reflected_walk() -> None:
    window = _window(batch=6, window=4, delta=0.9, seed=7)
    result = _verified(window, "block")
    token = _verified(window, "token-residual")
    log_ratio = torch.log(token.weights)  # token weights are min(1, r_i): recover log r_i where r_i < 1
    expected = torch.ones(6, dtype=torch.float64)
    for i in range(4):
        noise = (window.states[:, i + 1, 0] - window.draft_means[:, i, 0]) / window.sigmas[i]
        ratio = torch.exp(0.9 * noise - 0.5 * 0.9**2)  # r_i = exp(delta s - delta^2 / 2)
        expected = torch.clamp(expected * ratio, max=1.0)
        assert torch.allclose(result.weights[:, i], expected, rtol=1e-12)
        assert torch.allclose(log_ratio[:, i], torch.clamp(torch.log(ratio), max=0.0), rtol=1e-12, atol=1e-15)
    assert torch.equal(result.stop_probs[:, -1], result.weights[:, -1])  # h_L = w_L


def test_outputs_are_row_independent() -> None:
    window = _window(batch=5, window=3, delta=1.1, seed=11)
    full = _verified(window, "block")
    for row in range(5):
        # every value of the arguments is a tensor, and the row keeps every key
        single = block_verify(
            **cast(
                _Arguments,
                {
                    name: value[row : row + 1] if name != "sigmas" else value
                    for name, value in cast(dict[str, torch.Tensor], _arguments(window)).items()
                },
            )
        )
        assert torch.equal(single.accepted, full.accepted[row : row + 1])
        assert torch.equal(single.next_state, full.next_state[row : row + 1])


def test_float32_inputs() -> None:
    window = _synthetic([0.6] * 3, 64, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    result = _verified(window, "block")
    assert result.next_state.dtype == torch.float32
    reference = _synthetic([0.6] * 3, 64, 4, generator=torch.Generator().manual_seed(5))
    assert (result.accepted == _verified(reference, "block").accepted).float().mean() > 0.95


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sigmas": torch.tensor([1.0, 0.0, 1.0, 1.0])}, "plainly"),
        ({"sigmas": torch.tensor([1.0, -1.0, 1.0, 1.0])}, ">= 0"),
        ({"sigmas": torch.tensor([1.0, float("nan"), 1.0, 1.0])}, "NaN"),
        ({"sigmas": torch.tensor([1.0, float("inf"), 1.0, 1.0])}, "finite"),
        ({"sigmas": [1.0] * 4}, "sigmas must be a tensor, got list"),
        ({"sigmas": 1.0}, "sigmas must be a tensor, got float"),
        ({"residual_noise": [[0.0] * 5] * 4}, "residual_noise must be a tensor"),
        ({"sigmas": torch.ones(3)}, "sigmas"),
        ({"draft_means": torch.zeros(4, 2, 5)}, "draft_means"),
        ({"draft_means": torch.zeros(4, 4, 5)}, "draft_means"),
        ({"target_means": torch.zeros(4, 3, 5)}, "target_means"),
        ({"residual_noise": torch.zeros(4, 6)}, "residual_noise"),
        ({"uniforms": torch.full((4, 3), 1.0)}, "uniforms"),
        ({"uniforms": torch.full((4, 3), float("nan"))}, "uniforms"),
        ({"residual_uniforms": torch.zeros(3)}, "residual_uniforms"),
    ],
)
@pytest.mark.parametrize("verify", [block_verify, token_verify])
def test_bad_input_raises_clear_value_error(
    verify: Callable[..., VerificationResult], change: dict[str, object], message: str
) -> None:
    arguments = _arguments(_window()) | change
    with pytest.raises(ValueError, match=message):
        verify(**arguments)


@pytest.mark.parametrize("verify", [block_verify, token_verify])
def test_nan_means_are_refused(verify: Callable[..., VerificationResult]) -> None:
    window = _window()
    target_means = window.target_means.clone()
    target_means[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        verify(**(_arguments(window) | {"target_means": target_means}))


def test_unknown_token_residual_is_refused() -> None:
    with pytest.raises(ValueError, match="reflection"):
        token_verify(**_arguments(_window()), residual="mirror")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Per-row window lengths: one call verifies windows of different lengths exactly as separate calls would
# ---------------------------------------------------------------------------------------------------------------

LENGTHS = torch.tensor([1, 4, 2, 4, 3, 1, 4, 2])


def _cut(arguments: _Arguments, row: int, length: int) -> dict[str, torch.Tensor]:
    """Row ``row`` of a window as a window of its own ``length`` drafted steps."""
    cut = {
        "states": arguments["states"][row : row + 1, : length + 1],
        "draft_means": arguments["draft_means"][row : row + 1, :length],
        "target_means": arguments["target_means"][row : row + 1, : length + 1],
        "sigmas": arguments["sigmas"][row : row + 1, : length + 1],
        "uniforms": arguments["uniforms"][row : row + 1, :length],
    }
    return cut | {name: arguments[name][row : row + 1] for name in ("residual_uniforms", "residual_noise")}


def _lengths_window(garbage: bool) -> _Arguments:
    """Eight rows of a window of 4 with sigmas varying per row and step; ``garbage`` puts NaN beyond each row's
    window (the draft states and means of steps past L_r, and the target means past its bonus step)."""
    window = _synthetic([0.9, 0.4, 1.3, 0.2], 8, 3, generator=torch.Generator().manual_seed(9))
    arguments = _arguments(window)
    arguments["sigmas"] = 0.5 + torch.rand(8, 5, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    if garbage:
        for name in ("states", "draft_means", "target_means"):
            arguments[name] = arguments[name].clone()
        for row, length in enumerate(LENGTHS.tolist()):
            arguments["states"][row, length + 1 :] = float("nan")
            arguments["draft_means"][row, length:] = float("nan")
            arguments["target_means"][row, length + 1 :] = float("nan")
            arguments["sigmas"][row, length + 1 :] = 0.0
    return arguments


@pytest.mark.parametrize("garbage", [False, True])
@pytest.mark.parametrize("rule", RULES)
def test_per_row_lengths_verify_each_row_as_its_own_window(rule: Rule, garbage: bool) -> None:
    arguments = _lengths_window(garbage)
    together = verify_module.apply_rule(rule, **arguments, lengths=LENGTHS)
    assert together.accepted.le(LENGTHS).all()
    for row, length in enumerate(LENGTHS.tolist()):
        alone = verify_module.apply_rule(rule, **_cut(arguments, row, length))
        assert int(together.accepted[row]) == int(alone.accepted[0])
        torch.testing.assert_close(together.next_state[row], alone.next_state[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(together.weights[row, :length], alone.weights[0], rtol=1e-12, atol=0.0)
        torch.testing.assert_close(together.deltas[row, :length], alone.deltas[0, :length], rtol=1e-12, atol=0.0)
        assert torch.isnan(together.weights[row, length:]).all() and torch.isnan(together.deltas[row, length:]).all()
    # The windows have different outcomes, so the comparison covers both the bonus and the residual branches.
    assert bool((together.accepted == LENGTHS).any()) and bool((together.accepted < LENGTHS).any())


def test_bad_lengths_raise() -> None:
    arguments = _arguments(_window())
    for lengths, message in [
        (torch.tensor([1, 2, 3]), "shape"),
        (torch.tensor([1.0, 2.0, 3.0, 1.0]), "integer"),
        (torch.tensor([0, 1, 2, 3]), "1..3"),
        (torch.tensor([1, 2, 3, 4]), "1..3"),
    ]:
        with pytest.raises(ValueError, match=message):
            block_verify(**arguments, lengths=lengths)


# ---------------------------------------------------------------------------------------------------------------
# Monte Carlo: acceptance and accepted lengths against theory.verification
# ---------------------------------------------------------------------------------------------------------------

ACCEPTANCE_SEED = 20261126
# n = 40000 windows: the standard error of P(tau >= i) is <= 0.0025, so a bias of 0.02 in any of the L = 6
# probabilities is detected (z > 4.7 at the Bonferroni threshold ~4.4) with power > 0.6, 0.03 with power > 0.99.
ACCEPTANCE_SAMPLES = 40_000
GAPS = [0.3, 1.2, 0.6, 0.9, 0.2, 1.5]  # mixed per-step gaps, window 6


def _profile_z_scores(accepted: torch.Tensor, predicted: np.ndarray) -> np.ndarray:
    measured = np.array([(accepted >= i).double().mean().item() for i in range(1, len(predicted) + 1)])
    stderr = np.sqrt(predicted * (1 - predicted) / accepted.shape[0])
    return np.asarray((measured - predicted) / stderr)


@pytest.mark.parametrize("rule", RULES)
def test_accepted_length_profile_matches_theory(rule: Rule) -> None:
    # P(tau >= i) for each i against acceptance_profile (token: prod alpha_k; block: E[w_i]) in d = 8.
    generator = torch.Generator().manual_seed(ACCEPTANCE_SEED)
    window = _synthetic(GAPS, ACCEPTANCE_SAMPLES, 8, generator=generator)
    accepted = _verified(window, rule).accepted
    theory_rule = "block" if rule == "block" else "token"
    z = _profile_z_scores(accepted, acceptance_profile(GAPS, theory_rule))
    assert np.abs(z).max() < z_threshold(ALPHA, comparisons=len(GAPS)), z


@pytest.mark.parametrize("control", ["lagged-weight", "first-failure", "accept-always"])
def test_accepted_length_profile_rejects_broken_block_rules(control: str) -> None:
    generator = torch.Generator().manual_seed(ACCEPTANCE_SEED)
    window = _synthetic(GAPS, ACCEPTANCE_SAMPLES, 8, generator=generator)
    z = _profile_z_scores(_verified(window, CONTROL_RULES[control]).accepted, acceptance_profile(GAPS, "block"))
    assert np.abs(z).max() > z_threshold(ALPHA, comparisons=len(GAPS)), z


def test_token_profile_is_not_the_block_profile() -> None:
    # Negative control of the calibration itself: token-rule lengths are rejected as block predictions.
    generator = torch.Generator().manual_seed(ACCEPTANCE_SEED)
    window = _synthetic(GAPS, ACCEPTANCE_SAMPLES, 8, generator=generator)
    z = _profile_z_scores(_verified(window, "token-residual").accepted, acceptance_profile(GAPS, "block"))
    assert np.abs(z).max() > z_threshold(ALPHA, comparisons=len(GAPS)), z


def test_martingale_calibration_of_token_acceptance() -> None:
    # Given the history, step i is accepted with probability alpha(delta_i) when steps 1..i-1 were accepted
    # (docs/design.md §5): sum(indicator - prediction) over verified steps has mean 0 and a known variance.
    generator = torch.Generator().manual_seed(ACCEPTANCE_SEED + 1)
    window = _synthetic(GAPS, ACCEPTANCE_SAMPLES, 8, generator=generator)
    accepted = _verified(window, "token-residual").accepted
    positions = torch.arange(1, len(GAPS) + 1)
    verified = positions[None, :] <= (accepted[:, None] + 1).clamp(max=len(GAPS))  # steps that were judged
    indicator = positions[None, :] <= accepted[:, None]

    def z_score(gaps: list[float]) -> float:
        alpha = torch.as_tensor(acceptance_probability(gaps))
        residual = (indicator.double() - alpha[None, :]) * verified
        variance = (alpha * (1 - alpha))[None, :] * verified
        return float(residual.sum() / variance.sum().sqrt())

    assert abs(z_score(GAPS)) < z_threshold(ALPHA, comparisons=2), z_score(GAPS)
    # Negative control: predictions made from gaps 20% too small are rejected by the same z-score.
    assert abs(z_score([0.8 * gap for gap in GAPS])) > z_threshold(ALPHA, comparisons=2)


# ---------------------------------------------------------------------------------------------------------------
# Monte Carlo: exactness of one step in d in {1, 8, 64}
# ---------------------------------------------------------------------------------------------------------------

ONE_STEP_SEED = 7
# n = 20000: a KS test at level 1e-4 / 6 detects a shift of 0.05 sd along e with power > 0.99.
ONE_STEP_SAMPLES = 20_000


def _first_committed_state(
    rule: Rule | VerificationRule, dimension: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window of 3 with gaps 1.0: the first committed state and the target mean of step 1."""
    window = _synthetic([1.0, 1.0, 1.0], ONE_STEP_SAMPLES, dimension, generator=torch.Generator().manual_seed(seed))
    result = _verified(window, rule)
    first = torch.where((result.accepted >= 1)[:, None], window.states[:, 1], result.next_state)
    return first, window.target_means[:, 0]


def _one_step_pvalues(first: torch.Tensor, target_mean: torch.Tensor, dimension: int) -> list[float]:
    centred = (first - target_mean).numpy()  # must be N(0, I)
    pvalues = [normal_ks_pvalue(centred[:, 0], 0.0, 1.0)]  # along e = e_1
    if dimension > 1:
        direction = np.random.default_rng(dimension).standard_normal(dimension - 1)
        direction /= np.linalg.norm(direction)
        pvalues.append(normal_ks_pvalue(centred[:, 1:] @ direction, 0.0, 1.0))  # orthogonal to e
    return pvalues


@pytest.mark.parametrize("rule", RULES)
def test_first_step_has_the_target_law(rule: Rule) -> None:
    pvalues = []
    for dimension in (1, 8, 64):
        first, target_mean = _first_committed_state(rule, dimension, ONE_STEP_SEED + dimension)
        pvalues += _one_step_pvalues(first, target_mean, dimension)
    assert min(pvalues) > ALPHA / 6, pvalues  # Bonferroni over 5 comparisons (rounded up to 6)


def test_first_step_test_rejects_accept_always() -> None:
    pvalues = []
    for dimension in (1, 8, 64):
        first, target_mean = _first_committed_state(
            CONTROL_RULES["accept-always"], dimension, ONE_STEP_SEED + dimension
        )
        pvalues += _one_step_pvalues(first, target_mean, dimension)
    assert min(pvalues) < ALPHA / 6, pvalues


# ---------------------------------------------------------------------------------------------------------------
# Monte Carlo: whole trajectories of an affine chain against theory.linear_gaussian
# ---------------------------------------------------------------------------------------------------------------

CHAIN_SEED = 314
# n = 20000 trajectories: KS at level 1e-4 / 4 detects a marginal shift of 0.05 sd with power > 0.99.
CHAIN_SAMPLES = 20_000
CHAIN_DIMENSION = 8
HORIZON = 6


def _affine_chain() -> AffineChain:
    shift = torch.zeros(HORIZON, CHAIN_DIMENSION, dtype=torch.float64)
    shift[:, 0] = 1.2  # the draft misses the shift: state-independent gaps 1.2 / sigma_n along e_1
    return AffineChain(
        target_scale=torch.full((HORIZON,), 0.9, dtype=torch.float64),
        target_shift=shift,
        draft_scale=torch.full((HORIZON,), 0.9, dtype=torch.float64),
        draft_shift=torch.zeros(HORIZON, CHAIN_DIMENSION, dtype=torch.float64),
        sigmas=torch.linspace(1.0, 0.6, HORIZON, dtype=torch.float64),
    )


def _chain_marginal(step: int) -> tuple[np.ndarray, float]:
    """Mean vector and isotropic variance of the target chain after ``step`` steps from 0 (closed form)."""
    chain = _affine_chain()
    marginals = chain_marginals(
        initial_mean=np.zeros(CHAIN_DIMENSION),
        initial_covariance=np.zeros((CHAIN_DIMENSION, CHAIN_DIMENSION)),
        transitions=list(chain.target_scale.numpy()),
        offsets=chain.target_shift.numpy(),
        sigmas=chain.sigmas.numpy(),
    )
    covariance = marginals.covariances[step]
    assert np.allclose(covariance, covariance[0, 0] * np.eye(CHAIN_DIMENSION))
    return marginals.means[step], float(covariance[0, 0])


def _chain_pvalues(rule: SamplerRule) -> list[float]:
    start = torch.zeros(CHAIN_SAMPLES, CHAIN_DIMENSION, dtype=torch.float64)
    chain = _affine_chain()
    generator = torch.Generator().manual_seed(CHAIN_SEED)
    middle = speculative_chain(
        chain.target_mean,
        chain.draft_mean,
        chain.sigmas[: HORIZON // 2],
        start,
        window=4,
        rule=rule,
        generator=generator,
    ).samples
    final = speculative_chain(
        chain.target_mean, chain.draft_mean, chain.sigmas, start, window=4, rule=rule, generator=generator
    ).samples
    marginals = {HORIZON // 2: middle.numpy(), HORIZON: final.numpy()}
    direction = np.random.default_rng(1).standard_normal(CHAIN_DIMENSION)
    direction /= np.linalg.norm(direction)
    pvalues = []
    for step in (HORIZON // 2, HORIZON):
        mean, variance = _chain_marginal(step)
        values = marginals[step]
        pvalues.append(normal_ks_pvalue(values[:, 0], mean[0], math.sqrt(variance)))
        pvalues.append(normal_ks_pvalue(values @ direction, float(mean @ direction), math.sqrt(variance)))
    return pvalues


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_trajectories_have_the_target_marginals(rule: Rule) -> None:
    pvalues = _chain_pvalues(rule)
    assert min(pvalues) > ALPHA / 4, pvalues


@pytest.mark.slow
@pytest.mark.parametrize("control", CONTROLS)
def test_trajectory_test_rejects_broken_block_rules(control: str) -> None:
    pvalues = _chain_pvalues(CONTROL_RULES[control])
    assert min(pvalues) < ALPHA / 4, pvalues
