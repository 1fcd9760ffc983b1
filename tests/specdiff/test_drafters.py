"""Drafters, window policies and ``specdiff.sample``: costs, behaviour, batch independence and exactness.

Exactness: on one-Gaussian data the DDPM chain is linear-Gaussian, so the law of the final sample is known in closed
form (``gaussian_chain_marginals``); each drafter x rule is tested against it with one-sample KS on two projections
(Bonferroni, ALPHA per test), and the accept-always control must be rejected by the same test.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from scipy import stats

from simulations.common import DRAFTER_NAMES, Problem, make_drafter
from specdiff.chain import ModelChain, kernel_sigmas, linear_coefficients
from specdiff.diagnostics import calibrate_run
from specdiff.drafters import (
    ExtrapolatingDrafter,
    FreeDrafter,
    FrozenDrafter,
    MeanDrafter,
    ModelDrafter,
    RoundObservation,
)
from specdiff.kernels import DDIMKernel, DDPMKernel, EulerAncestralKernel, EulerMaruyamaVPKernel, linear_schedule
from specdiff.models import GaussianMixture, perturbed
from specdiff.models.gmm import gaussian_chain_marginals
from specdiff.policies import AdaptiveWindow, FixedWindow
from specdiff.randomness import NEXT_NOISE, counter_normals, random_codes, sample_keys
from specdiff.sampler import RuleName, SamplerRule, sample, sample_plain, speculative_chain
from specdiff.verify import CONTROL_RULES, RULES
from tests.specdiff.chain import AffineChain
from tests.statistics import ALPHA, normal_ks_pvalue
from theory.cost import token_window_speedups

DATA = GaussianMixture.gaussian(torch.tensor([1.5, -0.5], dtype=torch.float64), 0.2)
DRAFT_DATA = perturbed(DATA, mean_shift=0.6, variance_scale=2.0)


def _kernel(steps: int = 20) -> DDPMKernel:
    return DDPMKernel(linear_schedule(1000), num_steps=steps)


def _noise(batch: int, seed: int = 0, d: int = 2) -> torch.Tensor:
    return torch.randn(batch, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


#: The independent draft model's data law (``make_drafter(..., "model")``), at 0.1 target call per drafted step.
PROBLEM = Problem("gaussian", 2, DATA, DRAFT_DATA)


# ---------------------------------------------------------------------------------------------------------------
# Plain sampling and the model chain


def test_sample_plain_matches_plain_kernel_steps() -> None:
    kernel = _kernel(10)
    model = DATA.as_model(kernel)
    start = _noise(3)
    result = sample_plain(model, kernel, start, generator=[torch.Generator().manual_seed(i) for i in range(3)])
    x = start.clone()
    keys = sample_keys([torch.Generator().manual_seed(i) for i in range(3)], 3)
    for step in range(kernel.num_steps):
        transition = kernel.transition(x, model(x, kernel.timesteps[step].repeat(3)), step)
        # The noise of step n is the next-state noise keyed by the step (the root of a plain round).
        noise = counter_normals(keys, torch.full((3,), step), random_codes(NEXT_NOISE, 2))
        x = transition.mean + transition.sigma * noise if float(transition.sigma) > 0 else transition.mean
    torch.testing.assert_close(result.samples, x)
    assert result.target_calls == 10


def test_kernel_sigmas_and_grouped_means() -> None:
    kernel = DDIMKernel(linear_schedule(1000), num_steps=8, eta=0.5)
    sigmas = kernel_sigmas(kernel)
    assert sigmas.shape == (8,) and sigmas.dtype == torch.float64
    chain = ModelChain(DATA.as_model(kernel), kernel)
    states, steps = _noise(5), torch.tensor([0, 3, 3, 7, 1])
    means, predictions = chain.evaluate(states, steps, torch.arange(5))
    for row in range(5):
        step = int(steps[row])
        expected = kernel.transition(states[row : row + 1], predictions[row : row + 1], step).mean
        torch.testing.assert_close(means[row : row + 1], expected)
    with pytest.raises(ValueError, match="Kernel"):
        ModelChain(DATA.as_model(kernel), "ddpm")  # type: ignore[arg-type]


def test_kernel_tables_are_read_once_per_kernel_and_sigmas_are_copies() -> None:
    kernel = DDPMKernel(linear_schedule(1000), num_steps=6)
    assert linear_coefficients(kernel) is linear_coefficients(kernel)
    sigmas = kernel_sigmas(kernel)
    probe = torch.zeros(1, 1, dtype=torch.float64)
    expected = [float(kernel.transition(probe, probe, n).sigma) for n in range(6)]
    assert sigmas.tolist() == pytest.approx(expected, rel=1e-12)
    sigmas[0] = -1.0  # a caller's copy: the next caller is not affected
    assert float(kernel_sigmas(kernel)[0]) == pytest.approx(expected[0], rel=1e-12)
    other = DDPMKernel(linear_schedule(1000), num_steps=7)  # another kernel gets its own tables
    assert kernel_sigmas(other).shape == (7,) and linear_coefficients(other) is not linear_coefficients(kernel)


# ---------------------------------------------------------------------------------------------------------------
# Drafter behaviour


def _perfect_model_drafter(kernel: DDPMKernel) -> ModelDrafter:
    return ModelDrafter(DATA.as_model(kernel), draft_cost_per_step=0.0, name="perfect")


@pytest.mark.parametrize("window", [1, 3, 6])
def test_perfect_drafter_accepts_everything(window: int) -> None:
    kernel = _kernel(20)
    result = sample(
        DATA.as_model(kernel),
        kernel,
        _noise(4),
        drafter=_perfect_model_drafter(kernel),
        window=window,
        generator=torch.Generator().manual_seed(1),
    )
    assert all(bool((a == w).all()) for a, w in zip(result.accepted, result.windows, strict=True))
    # The last step of DDPM is deterministic (sigma 0): the batched call gives it as the bonus of the last window.
    assert float(kernel_sigmas(kernel)[-1]) == 0.0
    assert result.target_calls == math.ceil(kernel.num_steps / (window + 1))


def test_frozen_drafter_first_step_is_exact_and_costs_a_call_per_round() -> None:
    kernel = _kernel(20)
    result = sample(  # one sample: one verified window per round
        DATA.as_model(kernel), kernel, _noise(1), drafter=FrozenDrafter(), window=4, generator=torch.Generator()
    )
    first = torch.cat([deltas[:, 0] for deltas in result.deltas])
    assert float(first.abs().max()) < 1e-9
    speculative_rounds = len(result.deltas)
    assert result.draft_cost == pytest.approx(speculative_rounds * 1.0)
    assert result.sequential_cost == pytest.approx(result.target_calls + speculative_rounds)


def test_reuse_drafter_is_free_and_waits_for_a_first_evaluation() -> None:
    kernel = _kernel(20)
    result = sample(
        DATA.as_model(kernel), kernel, _noise(3), drafter=FreeDrafter(), window=4, generator=torch.Generator()
    )
    assert result.draft_cost == 0.0
    assert result.plain_steps == 3  # the first step of each sample: nothing to reuse yet
    assert result.target_calls < kernel.num_steps
    # Reusing a stale prediction: the gap of the first drafted step is not 0.
    assert float(torch.cat([deltas[:, 0] for deltas in result.deltas]).min()) > 0


def _observation(accepted: list[int], block: list[bool]) -> RoundObservation:
    """A round of 2 samples with windows of 2 at root 0: states and predictions that tell the columns apart."""
    states = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], [[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]]])
    predictions = 10.0 + states
    lengths = torch.tensor([2, 2])
    active = torch.tensor([True, True])
    return RoundObservation(
        torch.zeros(2, dtype=torch.long), lengths, torch.tensor(accepted), states.double(), predictions.double(),
        active, torch.tensor(block), horizon=10,
    )  # fmt: skip


@pytest.mark.parametrize("reuse", ["nearest", "committed"])
def test_reuse_takes_the_prediction_nearest_to_the_new_root(reuse: str) -> None:
    kernel = _kernel(10)
    chain = ModelChain(DATA.as_model(kernel), kernel)
    drafter = FreeDrafter(reuse=reuse)  # type: ignore[arg-type]
    drafter.reset(2, chain)
    # Sample 0 rejected its second drafted step (column 2) after accepting one; sample 1 accepted both.
    drafter.observe_round(_observation([1, 2], [False, False]))
    rows, steps = torch.arange(2), torch.tensor([2, 3])

    def reused(roots: torch.Tensor) -> torch.Tensor:
        means = drafter.draft(roots, steps, rows, slot=0)
        # The prediction behind each mean: invert mean = a x + b prediction.
        coefficients = linear_coefficients(kernel)
        a, b = coefficients.state_coefficient[steps, None], coefficients.prediction_coefficient[steps, None]
        return (means - a * roots) / b

    near_rejected = torch.tensor([[2.1, 0.0], [2.0, 5.0]], dtype=torch.float64)
    near_committed = torch.tensor([[1.1, 0.0], [2.0, 5.0]], dtype=torch.float64)
    committed = torch.tensor([[11.0, 10.0], [12.0, 15.0]], dtype=torch.float64)
    rejected = torch.tensor([[12.0, 10.0], [12.0, 15.0]], dtype=torch.float64)
    torch.testing.assert_close(reused(near_rejected), rejected if reuse == "nearest" else committed)
    torch.testing.assert_close(reused(near_committed), committed)
    # Later slots of the window reuse the prediction chosen at its root.
    later = drafter.draft(near_committed, steps + 1, rows, slot=1)
    torch.testing.assert_close(later, chain.means(near_committed, committed, steps + 1))


def test_nearest_reuse_is_the_default_and_names_its_mode() -> None:
    assert FreeDrafter().reuse == "nearest" and FreeDrafter().name == "free-nearest"
    assert FreeDrafter(reuse="committed").name == "free-committed"
    assert FreeDrafter(exit_blocks=2).name == "free-exit2"
    with pytest.raises(ValueError, match="reuse must be one of"):
        FreeDrafter(reuse="latest")  # type: ignore[arg-type]


@pytest.mark.statistical
def test_adaptive_rule_chooses_per_sample_and_needs_a_policy_that_chooses() -> None:
    kernel = _kernel(40)
    model = DATA.as_model(kernel)
    with pytest.raises(ValueError, match="chooses rules"):
        sample(model, kernel, _noise(2), window=4, rule="adaptive", generator=torch.Generator())
    runs = {
        rule: sample(
            model, kernel, _noise(16), window=AdaptiveWindow(max_window=6), rule=rule,
            generator=torch.Generator().manual_seed(3),
        )
        for rule in ("token-reflection", "block", "adaptive")
    }  # fmt: skip
    shares = {rule: float(torch.cat(run.block_verified).double().mean()) for rule, run in runs.items()}
    assert shares["token-reflection"] == 0.0 and shares["block"] == 1.0
    assert 0.0 < shares["adaptive"] < 1.0
    # The mixed calibration is a martingale z-score: |z| < 4 fails with probability 6e-5 for a correct theory (the
    # negative controls of calibrate_run are in test_diagnostics.py and simulations.calibration).
    summary = calibrate_run(runs["adaptive"], "adaptive")
    assert abs(summary.z) < 4 and summary.positions == []
    assert summary.predicted_steps_per_round == pytest.approx(summary.measured_steps_per_round, rel=0.1)


def test_extrapolation_is_exact_for_predictions_linear_in_the_step() -> None:
    # A model whose prediction does not depend on x and is linear in the timestep: extrapolation is exact.
    kernel = _kernel(50)  # timesteps 999, 979, ...: linear in the step index
    direction = torch.tensor([0.3, -0.2], dtype=torch.float64)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (t.to(torch.float64)[:, None] / 1000.0) * direction[None, :].expand(x.shape[0], 2)

    extrapolated = sample(
        model, kernel, _noise(2), drafter=ExtrapolatingDrafter(), window=5, generator=torch.Generator()
    )
    reused = sample(model, kernel, _noise(2), drafter=FreeDrafter(), window=5, generator=torch.Generator())
    late = [d for d, s in zip(extrapolated.deltas, extrapolated.steps, strict=True) if int(s.min()) >= 2]
    assert late and float(torch.cat([d.flatten() for d in late]).abs().max()) < 1e-6
    assert float(torch.cat([d.flatten() for d in reused.deltas]).max()) > 1e-3


class _EarlyExitModel:
    """A two-part model: ``forward_first_k`` with k < depth drops the second part (a worse draft)."""

    depth = 4

    def __init__(self, mixture: GaussianMixture, kernel: DDPMKernel):
        self.exact = mixture.as_model(kernel)
        self.calls: list[int] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.forward_first_k(x, t, k=self.depth)

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
        self.calls.append(k)
        return self.exact(x, t) * (1.0 if k == self.depth else 0.9)


def test_early_exit_drafter_uses_the_first_blocks_and_costs_k_over_depth() -> None:
    kernel = _kernel(20)
    model = _EarlyExitModel(DATA, kernel)
    result = sample(model, kernel, _noise(2), drafter=FreeDrafter(exit_blocks=1), window=3, generator=torch.Generator())
    assert 1 in model.calls and 4 in model.calls
    assert result.draft_cost == pytest.approx(0.25 * result.draft_calls)
    assert result.plain_steps == 0  # early exit needs no earlier evaluation
    with pytest.raises(ValueError, match="depth"):
        sample(model, kernel, _noise(2), drafter=FreeDrafter(exit_blocks=5), window=3, generator=torch.Generator())
    with pytest.raises(ValueError, match="forward_first_k"):
        sample(
            DATA.as_model(kernel),
            kernel,
            _noise(2),
            drafter=FreeDrafter(exit_blocks=1),
            window=3,
            generator=torch.Generator(),
        )


def test_model_drafters_refuse_chain_level_use_and_bad_arguments() -> None:
    chain = AffineChain(
        torch.ones(4, dtype=torch.float64),
        torch.zeros(4, 2, dtype=torch.float64),
        torch.ones(4, dtype=torch.float64),
        torch.zeros(4, 2, dtype=torch.float64),
        torch.ones(4, dtype=torch.float64),
    )
    with pytest.raises(ValueError, match=r"specdiff\.sample"):
        speculative_chain(
            chain.target_mean,
            FrozenDrafter(),
            chain.sigmas,
            _noise(2),
            window=2,
            rule="block",
            generator=torch.Generator(),
        )
    with pytest.raises(ValueError):
        FreeDrafter(exit_blocks=0)
    with pytest.raises(ValueError):
        MeanDrafter(chain.draft_mean, draft_cost_per_step=-1.0)
    with pytest.raises(ValueError, match="draft_cost_per_step"):
        FreeDrafter(draft_cost_per_step=-1.0)
    with pytest.raises(ValueError, match="conditioning"):
        kernel = _kernel(5)
        sample(
            DATA.as_model(kernel), kernel, _noise(2), conditioning={"y": torch.zeros(3)}, generator=torch.Generator()
        )


def test_conditioning_rows_follow_their_samples() -> None:
    kernel = _kernel(10)
    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(y)
        return DATA.as_model(kernel)(x, t) + 0.1 * y.to(x.dtype)[:, None]

    labels = torch.tensor([0, 1, 2])
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    full = sample(model, kernel, _noise(3), window=3, conditioning={"y": labels}, generator=generators)
    alone = sample(
        model,
        kernel,
        _noise(3)[2:],
        window=3,
        conditioning={"y": labels[2:]},
        generator=[torch.Generator().manual_seed(2)],
    )
    assert torch.equal(full.samples[2], alone.samples[0])


# ---------------------------------------------------------------------------------------------------------------
# Window policies


def test_fixed_window_validates() -> None:
    assert FixedWindow(3).windows(torch.arange(4)).tolist() == [3, 3, 3, 3]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            FixedWindow(bad)  # type: ignore[arg-type]


def test_adaptive_window_choices() -> None:
    policy = AdaptiveWindow(max_window=8, initial_window=3)
    policy.reset(3, 0.0, 0.0, "token-reflection")
    assert policy.windows(torch.arange(3)).tolist() == [3, 3, 3]
    assert AdaptiveWindow(max_window=8).initial_window == 8  # default: observe every position in the first round
    # Flat cost (the default) and a free draft: more steps per round never cost more, so the largest window is chosen.
    policy.observe(torch.tensor([0]), torch.tensor([[0.5, 1.0, float("nan")]]))
    assert policy.windows(torch.tensor([0])).tolist() == [8]
    # Gaps are held constant beyond the furthest observed position.
    profile = policy._profiles(policy.gaps[:1])
    assert torch.allclose(profile[0], torch.tensor([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    # The running average weighs a new observation by `smoothing`, in acceptance alpha(delta) = 2 Phi(-delta / 2);
    # positions beyond the round's window take its furthest gap (1.5 here).
    policy.observe(torch.tensor([0]), torch.tensor([[1.5]]))
    alpha = lambda delta: 2 * NormalDist().cdf(-delta / 2)  # noqa: E731
    expected_alpha = [0.75 * alpha(0.5) + 0.25 * alpha(1.5), 0.75 * alpha(1.0) + 0.25 * alpha(1.5)]
    averaged = [2 * NormalDist().cdf(-float(gap) / 2) for gap in policy.gaps[0, :2]]
    assert averaged == pytest.approx(expected_alpha, rel=1e-12)
    # A cost curve: the window maximizing the predicted speedup (token rule: no block gain applied).
    curve = np.r_[np.ones(3), np.linspace(1.5, 4.0, 6)]
    costly = AdaptiveWindow(max_window=8, batch_cost=curve)
    costly.reset(1, 0.0, 0.0, "token-reflection")
    costly.observe(torch.tensor([0]), torch.tensor([[0.5, 1.0]]))
    expected = int(np.argmax(token_window_speedups(costly._profiles(costly.gaps[:1]).numpy(), curve, 0.0)[0]))
    assert expected == 2 and costly.windows(torch.tensor([0])).tolist() == [expected]
    # For the block rule the prediction is raised by the exact constant-gap block gain, never lowered.
    block = AdaptiveWindow(max_window=8, batch_cost=curve)
    block.reset(1, 0.0, 0.0, "block")
    gains = block._block_gains(costly._profiles(costly.gaps[:1]))
    assert gains.shape == (1, 8) and bool((gains >= 1.0).all()) and gains[0, -1] > 1.05
    # A root call per round (frozen draft) does not pay with a poor draft: plain steps.
    frozen = AdaptiveWindow(max_window=8)
    frozen.reset(1, 0.0, 1.0, "token-reflection")
    frozen.observe(torch.tensor([0]), torch.tensor([[0.0, 20.0]]))
    assert frozen.windows(torch.tensor([0])).tolist() == [0]
    assert not frozen.probes_plain_steps
    # ... and a costly drafter is retried with a window of 1 after probe_every plain steps.
    choices = [int(frozen.windows(torch.tensor([0]))[0]) for _ in range(frozen.probe_every)]
    assert choices.count(1) == 1 and choices[-1] == 1
    # A wall-time cost model linear in the states: speculation pays only with a near-perfect draft.
    linear = AdaptiveWindow(max_window=4, batch_cost=lambda states: float(states))
    linear.reset(2, 0.0, 0.0)
    linear.observe(torch.tensor([0, 1]), torch.tensor([[0.01, 0.01], [1.0, 1.0]]))
    assert linear.windows(torch.tensor([0, 1])).tolist() == [0, 0]
    bads = ({"max_window": 0}, {"smoothing": 0.0}, {"initial_window": -1}, {"tolerance": 1.0}, {"round_overhead": -1})
    for bad in bads:
        with pytest.raises(ValueError):
            AdaptiveWindow(**bad)
    with pytest.raises(ValueError, match="beyond"):
        AdaptiveWindow(max_window=8, batch_cost=np.ones(4))


def test_block_gains_interpolate_the_shared_table_like_np_interp() -> None:
    from specdiff.policies import _GAIN_GRID

    policy = AdaptiveWindow(max_window=16)
    assert policy._gain_table is AdaptiveWindow(max_window=16)._gain_table  # computed once per window
    assert not policy._gain_table.flags.writeable
    profiles = np.exp(np.random.default_rng(0).uniform(-9.0, 4.0, size=(50, 16)))  # beyond both ends of the grid too
    # The constant gap of the window's mean acceptance alpha(delta) = 2 Phi(-delta / 2).
    mean_acceptance = np.cumsum(2 * stats.norm.cdf(-profiles / 2), axis=1) / np.arange(1, 17)[None, :]
    mean_gaps = -2 * stats.norm.ppf(mean_acceptance / 2)
    logs = np.log(np.clip(mean_gaps, _GAIN_GRID[0], _GAIN_GRID[-1]))
    expected = np.stack(
        [np.interp(logs[:, w], np.log(_GAIN_GRID), policy._gain_table[:, w + 1]) for w in range(16)], axis=1
    )
    policy.reset(1, 0.0, 0.0)
    np.testing.assert_allclose(
        policy._block_gains(torch.from_numpy(profiles)).numpy(), expected, rtol=1e-12, atol=1e-13
    )


def test_round_overhead_is_charged_to_every_speculative_round() -> None:
    gaps = torch.tensor([[0.3, 0.3, 0.3, 0.3]])
    choices = {}
    for overhead in (0.0, 1.0, 2.5, 3.0, 50.0):
        policy = AdaptiveWindow(max_window=4, round_overhead=overhead)
        policy.reset(1, 0.0, 0.0, "token-reflection")
        policy.observe(torch.tensor([0]), gaps)
        choices[overhead] = int(policy.windows(torch.tensor([0]))[0])
        # The same prediction as a per-round draft cost of the same size.
        as_draft = AdaptiveWindow(max_window=4)
        as_draft.reset(1, 0.0, overhead, "token-reflection")
        as_draft.observe(torch.tensor([0]), gaps)
        assert np.allclose(as_draft._round_costs(), policy._round_costs())
    # Flat network cost: the largest window is best whatever the fixed per-round charge, until speculation stops
    # paying: alpha(0.3) = 0.88 gives 1 + 0.88 + ... + 0.88^4 = 3.93 steps per round for 1 + overhead calls.
    assert [choices[h] for h in (0.0, 1.0, 2.5)] == [4, 4, 4] and choices[3.0] == 0 and choices[50.0] == 0
    assert "round_overhead=3" in repr(AdaptiveWindow(round_overhead=3.0))


def test_adaptive_window_costs_do_not_depend_on_the_unit_of_the_cost_curve() -> None:
    # Draft costs and the round overhead are in target-call units: the same curve in seconds or in calls gives the
    # same round costs relative to a plain step, and so the same windows.
    curve = np.r_[1.0, 1.0, 1.2, 1.5, 2.0]
    costs = []
    for unit in (1.0, 1e-3, 10.0):
        policy = AdaptiveWindow(max_window=4, batch_cost=curve * unit, round_overhead=0.3)
        policy.reset(1, 0.5, 1.0, "token-reflection")
        costs.append(policy._costs.numpy())
    expected = [1.0, 1.3 + 0.5 + 1.0, 1.3 + 1.0 + 1.2, 1.3 + 1.5 + 1.5, 1.3 + 2.0 + 2.0]
    for cost in costs:
        assert cost == pytest.approx(expected, rel=1e-12)


def test_adaptive_policy_falls_back_to_plain_steps_with_a_useless_draft() -> None:
    kernel = _kernel(40)
    useless = perturbed(DATA, mean_shift=1000.0)
    drafter = ModelDrafter(useless.as_model(kernel), draft_cost_per_step=0.0)
    # Flat cost (the default): never more target calls than plain sampling.
    result = sample(
        DATA.as_model(kernel), kernel, _noise(2), drafter=drafter, window=AdaptiveWindow(), generator=torch.Generator()
    )
    assert result.target_calls <= kernel.num_steps
    # A call costing as much as the states it evaluates: mostly plain steps after the first rounds.
    linear = AdaptiveWindow(batch_cost=np.arange(1.0, 18.0))
    result = sample(
        DATA.as_model(kernel), kernel, _noise(2), drafter=drafter, window=linear, generator=torch.Generator()
    )
    assert result.target_calls <= kernel.num_steps
    assert result.plain_steps >= kernel.num_steps


def test_adaptive_policy_keeps_samples_independent_of_the_batch() -> None:
    kernel = _kernel(30)
    model = DATA.as_model(kernel)
    start = _noise(5)
    seeds = [3, 4, 5, 6, 7]
    full = sample(
        model,
        kernel,
        start,
        window=AdaptiveWindow(max_window=6),
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    )
    alone = sample(
        model,
        kernel,
        start[3:4],
        window=AdaptiveWindow(max_window=6),
        generator=[torch.Generator().manual_seed(seeds[3])],
    )
    torch.testing.assert_close(full.samples[3], alone.samples[0], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Exactness against the closed form

EXACTNESS_SEED = 2024
# n = 6000 samples, 2 projections at ALPHA / 2 each: the KS test detects a 0.07 sd shift with power > 0.99.
EXACTNESS_SAMPLES = 6000


def _final_pvalues(drafter_name: str, rule: SamplerRule, kernel_name: str = "ddpm") -> list[float]:
    if kernel_name == "ddpm":
        kernel = _kernel(16)
    elif kernel_name == "ddim":
        kernel = DDIMKernel(linear_schedule(1000), num_steps=16, eta=0.7)  # type: ignore[assignment]
    else:
        kernel = EulerAncestralKernel(linear_schedule(1000), num_steps=16)  # type: ignore[assignment]
    start = kernel.prior_std * _noise(EXACTNESS_SAMPLES, seed=EXACTNESS_SEED)
    result = sample(
        DATA.as_model(kernel),
        kernel,
        start,
        drafter=make_drafter(drafter_name, PROBLEM, kernel),
        window=AdaptiveWindow(max_window=6),
        rule=rule,
        generator=torch.Generator().manual_seed(EXACTNESS_SEED + 1),
    )
    samples = result.samples.numpy()
    marginals = gaussian_chain_marginals(DATA, kernel)
    mean, std = marginals.means[-1], math.sqrt(marginals.covariances[-1][0, 0])
    direction = np.array([0.6, -0.8])
    return [
        normal_ks_pvalue(samples[:, 0], mean[0], std),
        normal_ks_pvalue(samples @ direction, float(mean @ direction), std),
    ]


@pytest.mark.slow
@pytest.mark.statistical
@pytest.mark.parametrize("drafter_name", DRAFTER_NAMES)
@pytest.mark.parametrize("rule", [*RULES, "adaptive"])
def test_sample_has_the_closed_form_law(drafter_name: str, rule: RuleName) -> None:
    assert min(_final_pvalues(drafter_name, rule)) > ALPHA / 2


@pytest.mark.slow
@pytest.mark.statistical
@pytest.mark.parametrize("kernel_name", ["ddim", "euler-ancestral"])
def test_sample_has_the_closed_form_law_for_other_kernels(kernel_name: str) -> None:
    assert min(_final_pvalues("free-nearest", "block", kernel_name)) > ALPHA / 2


@pytest.mark.statistical
def test_exactness_check_rejects_accept_always() -> None:
    assert min(_final_pvalues("model", CONTROL_RULES["accept-always"])) < ALPHA / 2


@pytest.mark.parametrize("kernel_name", ["ddpm-v", "ddim", "euler-ancestral", "euler-maruyama"])
def test_vectorized_linear_kernel_path_matches_per_step_transitions(kernel_name: str) -> None:
    schedule = linear_schedule(1000)
    kernel = {
        "ddpm-v": DDPMKernel(schedule, num_steps=12, prediction_type="v_prediction", variance_type="fixed_large"),
        "ddim": DDIMKernel(schedule, num_steps=12, eta=0.3, prediction_type="sample"),
        "euler-ancestral": EulerAncestralKernel(schedule, num_steps=12),
        "euler-maruyama": EulerMaruyamaVPKernel(schedule, num_steps=12),
    }[kernel_name]
    chain = ModelChain(DATA.as_model(kernel), kernel)
    states, predictions = _noise(6, seed=1), _noise(6, seed=2)
    steps = torch.tensor([0, 11, 5, 5, 3, 10])
    means = chain.means(states, predictions, steps)
    inputs, _ = chain._inputs(states, steps)
    for row in range(6):
        step = int(steps[row])
        one = slice(row, row + 1)
        torch.testing.assert_close(means[one], kernel.transition(states[one], predictions[one], step).mean)
        torch.testing.assert_close(inputs[one], kernel.model_input(states[one], step))
    with pytest.raises(ValueError, match="clip"):
        linear_coefficients(DDPMKernel(schedule, num_steps=4, clip_sample=True))


def test_block_step_prediction_grows_at_least_as_the_token_prediction() -> None:
    from specdiff.policies import _block_steps

    token = np.array([[1.0, 1.9, 2.6, 2.61, 2.611]])
    gains = np.array([[1.0, 1.2, 1.05, 1.0]])  # the mean-gap gain can fall with L
    steps = _block_steps(torch.from_numpy(token), torch.from_numpy(gains)).numpy()
    assert np.all(np.diff(steps, axis=1) >= np.diff(token, axis=1) - 1e-12)
    assert np.all(steps >= token) and steps[0, 2] == pytest.approx(2.6 * 1.2)
    assert steps[0, 3] == pytest.approx(steps[0, 2] + 0.01)  # 2.61 x 1.05 would fall below window 2's prediction
