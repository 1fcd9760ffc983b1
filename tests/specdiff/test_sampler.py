"""The speculative chain sampler: per-sample randomness, horizon and deterministic steps, counts, exactness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from specdiff.policies import PlainSteps
from specdiff.sampler import SamplerRule, plain_chain, speculative_chain
from specdiff.verify import CONTROL_RULES, RULES, Rule
from tests.specdiff.chain import AffineChain
from tests.statistics import ALPHA, normal_ks_pvalue
from theory.linear_gaussian import chain_marginals

DIMENSION = 3


def _chain(sigmas: list[float], draft_scale: float = 0.8) -> AffineChain:
    steps = len(sigmas)
    shift = torch.zeros(steps, DIMENSION, dtype=torch.float64)
    shift[:, 0] = 0.5
    return AffineChain(
        target_scale=torch.full((steps,), 0.9, dtype=torch.float64),
        target_shift=shift,
        draft_scale=torch.full((steps,), draft_scale, dtype=torch.float64),
        draft_shift=torch.zeros(steps, DIMENSION, dtype=torch.float64),
        sigmas=torch.tensor(sigmas, dtype=torch.float64),
    )


SIGMAS = [1.0, 0.9, 0.8, 0.0, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0]  # deterministic steps inside and at the end


@pytest.mark.parametrize("rule", RULES)
def test_each_sample_is_independent_of_the_batch(rule: Rule) -> None:
    chain = _chain(SIGMAS)
    start = torch.randn(6, DIMENSION, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seeds = [11, 12, 13, 14, 15, 16]
    full = speculative_chain(
        chain.target_mean,
        chain.draft_mean,
        chain.sigmas,
        start,
        window=3,
        rule=rule,
        generator=[torch.Generator().manual_seed(seed) for seed in seeds],
    )
    for row in (0, 4):
        alone = speculative_chain(
            chain.target_mean,
            chain.draft_mean,
            chain.sigmas,
            start[row : row + 1],
            window=3,
            rule=rule,
            generator=[torch.Generator().manual_seed(seeds[row])],
        )
        assert torch.equal(alone.samples[0], full.samples[row])


def test_plain_chain_is_reproducible_and_counts_calls() -> None:
    chain = _chain(SIGMAS)
    start = torch.zeros(4, DIMENSION, dtype=torch.float64)
    first = plain_chain(chain.target_mean, chain.sigmas, start, generator=torch.Generator().manual_seed(2))
    second = plain_chain(chain.target_mean, chain.sigmas, start, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.samples, second.samples)
    assert first.target_calls == len(SIGMAS) and first.target_evaluations == 4 * len(SIGMAS)


@pytest.mark.parametrize("window", [1, 2, 4])
def test_perfect_draft_commits_window_plus_bonus_each_round(window: int) -> None:
    # draft = target: every drafted step is accepted; rounds break only at deterministic steps and the horizon.
    sigmas = [1.0] * 9
    chain = _chain(sigmas, draft_scale=0.9)
    chain = AffineChain(chain.target_scale, chain.target_shift, chain.target_scale, chain.target_shift, chain.sigmas)
    start = torch.zeros(2, DIMENSION, dtype=torch.float64)
    result = speculative_chain(
        chain.target_mean,
        chain.draft_mean,
        chain.sigmas,
        start,
        window=window,
        rule="block",
        generator=torch.Generator().manual_seed(0),
    )
    assert result.target_calls == result.rounds == math.ceil(9 / (window + 1))
    # Every round evaluates every sample at each of its L + 1 window columns (the last round's bonus column lies
    # beyond the horizon when L + 1 does not divide 9, and is evaluated for nothing, to keep the shapes fixed).
    assert result.target_evaluations == 2 * (window + 1) * result.rounds
    assert all(
        bool((accepted == lengths).all()) for accepted, lengths in zip(result.accepted, result.windows, strict=True)
    )


def test_bad_arguments() -> None:
    chain = _chain(SIGMAS)
    start = torch.zeros(2, DIMENSION, dtype=torch.float64)
    arguments = (chain.target_mean, chain.draft_mean, chain.sigmas, start)
    with pytest.raises(ValueError, match="window"):
        speculative_chain(*arguments, window=0, rule="block", generator=torch.Generator())
    with pytest.raises(ValueError, match="rule"):
        speculative_chain(*arguments, window=2, rule="fast", generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigmas"):
        speculative_chain(
            chain.target_mean,
            chain.draft_mean,
            -chain.sigmas,
            start,
            window=2,
            rule="block",
            generator=torch.Generator(),
        )
    with pytest.raises(ValueError, match="x_init"):
        plain_chain(chain.target_mean, chain.sigmas, torch.zeros(3), generator=torch.Generator())


EXACTNESS_SEED = 99
# n = 20000 chains, 2 projections: KS at level 1e-4 / 2 detects a shift of 0.04 sd with power > 0.99.
EXACTNESS_SAMPLES = 20_000


def _final_pvalues(rule: SamplerRule, samples: torch.Tensor | None = None) -> list[float]:
    """KS p-values of the final states of a run (``samples``, or a fresh eager run with ``rule``) on two
    projections against the chain's closed-form marginal."""
    chain = _chain(SIGMAS, draft_scale=0.6)
    if samples is None:
        start = torch.zeros(EXACTNESS_SAMPLES, DIMENSION, dtype=torch.float64)
        samples = speculative_chain(
            chain.target_mean,
            chain.draft_mean,
            chain.sigmas,
            start,
            window=4,
            rule=rule,
            generator=torch.Generator().manual_seed(EXACTNESS_SEED),
        ).samples
    values = samples.numpy()
    marginals = chain_marginals(
        initial_mean=np.zeros(DIMENSION),
        initial_covariance=np.zeros((DIMENSION, DIMENSION)),
        transitions=[0.9] * len(SIGMAS),
        offsets=chain.target_shift.numpy(),
        sigmas=SIGMAS,
    )
    mean, std = marginals.means[-1], math.sqrt(marginals.covariances[-1][0, 0])
    direction = np.array([0.2, -0.7, 0.5]) / np.linalg.norm([0.2, -0.7, 0.5])
    return [
        normal_ks_pvalue(values[:, 0], mean[0], std),
        normal_ks_pvalue(values @ direction, float(mean @ direction), std),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_speculative_chain_has_the_target_law_through_deterministic_steps(rule: Rule) -> None:
    assert min(_final_pvalues(rule)) > ALPHA / 2


def test_exactness_check_rejects_reflection_in_the_block_rule() -> None:
    assert min(_final_pvalues(CONTROL_RULES["reflection-in-block"])) < ALPHA / 2


def test_rounds_of_plain_steps_are_bitwise_plain_sampling() -> None:
    from specdiff.chain import kernel_sigmas
    from specdiff.drafters import FreeDrafter, FrozenDrafter
    from specdiff.kernels import DDPMKernel, linear_schedule
    from specdiff.models.dit import load_pretrained
    from specdiff.sampler import sample, sample_plain

    model, kernel = load_pretrained("digits"), DDPMKernel(linear_schedule(1000), num_steps=12)
    assert float(kernel_sigmas(kernel)[-1]) == 0.0  # the last step is deterministic: both branches run
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    conditioning = {"y": torch.tensor([1, 4, 7])}
    policy = PlainSteps()
    with torch.no_grad():
        plain = sample_plain(
            model, kernel, noise, generator=torch.Generator().manual_seed(5), conditioning=conditioning
        )
        for drafter in (FreeDrafter(), FrozenDrafter()):
            generator = torch.Generator().manual_seed(5)
            result = sample(
                model, kernel, noise, drafter=drafter, window=policy, generator=generator, conditioning=conditioning
            )
            assert torch.equal(result.samples, plain.samples)
            assert result.target_calls == result.rounds == 12 and result.plain_steps == 3 * 11


# ---------------------------------------------------------------------------------------------------------------
# The compiled path: the same round through torch.compile (one graph per width; compiling takes about a minute here)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.statistical
def test_the_compiled_round_has_the_target_law_and_follows_the_eager_round() -> None:
    # The KS test of _final_pvalues is the one shown to reject the reflection-in-block control above.
    chain = _chain(SIGMAS, draft_scale=0.6)
    start = torch.zeros(EXACTNESS_SAMPLES, DIMENSION, dtype=torch.float64)
    arguments = (chain.target_mean, chain.draft_mean, chain.sigmas, start)
    compiled = speculative_chain(
        *arguments, window=4, rule="block", generator=torch.Generator().manual_seed(EXACTNESS_SEED), compile=True
    )
    eager = speculative_chain(
        *arguments, window=4, rule="block", generator=torch.Generator().manual_seed(EXACTNESS_SEED)
    )
    assert min(_final_pvalues("block", samples=compiled.samples)) > ALPHA / 2
    # Same keys, same draws: the two paths differ only by the rounding of fused kernels, which can flip a decision
    # whose uniform lies within rounding of its threshold (almost never).
    differs = ((compiled.samples - eager.samples).abs().amax(dim=1) > 1e-9).double().mean()
    assert float(differs) < 1e-3
    plain = plain_chain(chain.target_mean, chain.sigmas, start[:64], generator=torch.Generator().manual_seed(1))
    plain_compiled = plain_chain(
        chain.target_mean, chain.sigmas, start[:64], generator=torch.Generator().manual_seed(1), compile=True
    )
    torch.testing.assert_close(plain_compiled.samples, plain.samples, rtol=0, atol=1e-12)
