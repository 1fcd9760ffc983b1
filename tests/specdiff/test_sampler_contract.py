"""The samplers' contract: the precision of states and models, clear errors in every path, and the shape of a round
(one host synchronization, a fixed set of operations), counted on the CPU with ``specdiff.opcount``."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from specdiff.chain import ModelChain
from specdiff.drafters import FreeDrafter
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models import GaussianMixture
from specdiff.opcount import OpCounter, SimulatedDevice
from specdiff.policies import AdaptiveWindow, FixedWindow, PlainSteps
from specdiff.randomness import sample_keys
from specdiff.sampler import SIGMA_MIN, SamplerRule, plain_chain, sample, sample_plain, speculative_chain
from specdiff.verify import RULES, Rule

DATA = GaussianMixture.gaussian(torch.tensor([1.5, -0.5], dtype=torch.float64), 0.2)
SIGMAS = torch.full((12,), 0.1, dtype=torch.float64)
SHIFT = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64)


def _target(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    return 0.98 * states + SHIFT.to(states)


def _draft(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    return 0.98 * states + 0.99 * SHIFT.to(states)


def _kernel(steps: int = 10) -> DDPMKernel:
    return DDPMKernel(linear_schedule(1000), num_steps=steps)


# ---------------------------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float64])
def test_a_half_precision_model_works_and_the_states_keep_their_dtype(
    model_dtype: torch.dtype, state_dtype: torch.dtype
) -> None:
    # Batch 8, window 4 raised a RuntimeError (mixed dtypes in an indexed assignment) before the rebuild.
    kernel = _kernel()
    exact = DATA.as_model(kernel)

    def half_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return exact(x.double(), t).to(model_dtype)

    start = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)).to(state_dtype)
    result = sample(half_model, kernel, start, window=FixedWindow(4), generator=torch.Generator().manual_seed(1))
    plain = sample_plain(half_model, kernel, start, generator=torch.Generator().manual_seed(1))
    assert result.samples.dtype == plain.samples.dtype == state_dtype
    assert bool(torch.isfinite(result.samples).all()) and float(result.sample_rounds.double().mean()) < kernel.num_steps
    # The means are computed in the states' dtype from the rounded prediction, whatever the model's dtype.
    chain = ModelChain(half_model, kernel)
    prediction = half_model(start, kernel.timesteps[:8])
    assert chain.means(start, prediction, torch.zeros(8, dtype=torch.long)).dtype == state_dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_states_are_refused(dtype: torch.dtype) -> None:
    start = torch.zeros(2, 4, dtype=dtype)
    with pytest.raises(ValueError, match="float32 or float64"):
        plain_chain(_target, SIGMAS, start, generator=torch.Generator())
    with pytest.raises(ValueError, match="not be exact"):
        speculative_chain(_target, _draft, SIGMAS, start, window=2, rule="block", generator=torch.Generator())


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def _nan_after(step: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A target mean that turns NaN from ``step`` on (for one sample)."""

    def mean(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        output = _target(states, steps)
        bad = (steps >= step)[:, None] & (torch.arange(states.shape[0])[:, None] == 0)
        return torch.where(bad, math.nan, output)

    return mean


def test_plain_chain_names_the_step_of_a_non_finite_mean() -> None:
    start = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="step 5"):
        plain_chain(_nan_after(5), SIGMAS, start, generator=torch.Generator())
    # inf too, and at a deterministic step
    sigmas = SIGMAS.clone()
    sigmas[7] = 0.0

    def infinite(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return torch.where((steps == 7)[:, None], math.inf, _target(states, steps))

    with pytest.raises(ValueError, match="step 7"):
        plain_chain(infinite, sigmas, start, generator=torch.Generator())


@pytest.mark.parametrize("window", [3, "plain-steps", "adaptive"])
def test_speculative_chain_names_the_round_of_a_non_finite_mean(window: object) -> None:
    policy = {3: FixedWindow(3), "plain-steps": PlainSteps(), "adaptive": AdaptiveWindow(4, batch_cost=lambda m: m)}
    start = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"NaN or inf") as error:
        speculative_chain(
            _nan_after(5), _draft, SIGMAS, start, window=policy[window], rule="block", generator=torch.Generator()
        )
    # The round that met the NaN started at step 5 or up to the window before it.
    step = int(str(error.value).split("step ")[1].split(" ")[0])
    assert 2 <= step <= 5


def test_sample_plain_names_the_step_of_a_nan_model() -> None:
    kernel = _kernel()
    exact = DATA.as_model(kernel)

    def broken(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.where((t == kernel.timesteps[4])[:, None], math.nan, exact(x, t))

    start = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="step 4"):
        sample_plain(broken, kernel, start, generator=torch.Generator())
    with pytest.raises(ValueError, match="NaN or inf"):
        sample(broken, kernel, start, window=PlainSteps(), generator=torch.Generator())


def test_means_of_the_wrong_shape_are_named() -> None:
    start = torch.zeros(3, 4, dtype=torch.float64)

    def broadcast(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return _target(states, steps)[:1]  # (1, d): would broadcast silently

    with pytest.raises(ValueError, match=r"target_mean returned shape \(1, 4\) for states of shape \(3, 4\)"):
        plain_chain(broadcast, SIGMAS, start, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"the target returned shape \(1, 4\) for states of shape \(\d+, 4\)"):
        speculative_chain(broadcast, _draft, SIGMAS, start, window=2, rule="block", generator=torch.Generator())
    with pytest.raises(ValueError, match=r"the draft returned shape \(1, 4\) for states of shape \(3, 4\)"):
        speculative_chain(_target, broadcast, SIGMAS, start, window=2, rule="block", generator=torch.Generator())


@pytest.mark.parametrize("generator", [7, None, "seed", [1, 2]])
def test_a_generator_of_the_wrong_type_is_a_type_error(generator: object) -> None:
    start = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="Generator"):
        plain_chain(_target, SIGMAS, start, generator=generator)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Generator"):
        speculative_chain(_target, _draft, SIGMAS, start, window=2, rule="block", generator=generator)  # type: ignore[arg-type]


def test_an_empty_batch_gives_an_empty_result() -> None:
    start = torch.zeros(0, 4, dtype=torch.float64)
    plain = plain_chain(_target, SIGMAS, start, generator=torch.Generator())
    for rule in ("block", "token-reflection"):
        result = speculative_chain(_target, _draft, SIGMAS, start, window=3, rule=rule, generator=torch.Generator())
        assert result.samples.shape == plain.samples.shape == (0, 4)
        assert result.rounds == result.target_calls == 0 and result.sample_rounds.shape == (0,)
    kernel, empty = _kernel(), torch.zeros(0, 2, dtype=torch.float64)
    assert sample(lambda x, t: 0.5 * x, kernel, empty, generator=torch.Generator()).samples.shape == (0, 2)


@pytest.mark.parametrize("broken", [lambda x, t: 0.5 * x[:1], lambda x, t: 0.5 * x[:, :1], lambda x, t: (x, x)])
def test_a_prediction_of_the_wrong_shape_or_type_is_named(broken: Callable[..., object]) -> None:
    # A (1, d) or (B, 1) prediction would broadcast through a linear kernel: every sample silently given the first
    # sample's prediction (checked before this test: the samples equalled that).
    start = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="the model returned"):
        sample_plain(broken, _kernel(), start, generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the model returned"):
        sample(broken, _kernel(), start, window=2, generator=torch.Generator())  # type: ignore[arg-type]


def test_means_that_are_complex_or_on_another_device_are_named() -> None:
    start = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="complex"):
        plain_chain(lambda x, n: _target(x, n).to(torch.complex128), SIGMAS, start, generator=torch.Generator())
    with pytest.raises(ValueError, match="on meta for states on cpu"):
        speculative_chain(
            lambda x, n: _target(x, n).to("meta"),
            _draft,
            SIGMAS,
            start,
            window=2,
            rule="block",
            generator=torch.Generator(),
        )


def test_callables_drafters_and_windows_are_checked_by_type() -> None:
    start = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="target_mean must be callable"):
        plain_chain(3, SIGMAS, start, generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_mean must be callable"):
        speculative_chain(3, _draft, SIGMAS, start, window=2, rule="block", generator=torch.Generator())  # type: ignore[arg-type]
    for drafter in (lambda x, n: x, FreeDrafter):
        with pytest.raises(TypeError, match=r"drafter must be a specdiff\.drafters\.Drafter instance"):
            sample(lambda x, t: 0.5 * x, _kernel(), start[:, :2], drafter=drafter, generator=torch.Generator())  # type: ignore[arg-type]
    # A numpy integer is an int: the same samples as the int window.
    windows: list[Any] = [3, np.int64(3)]
    runs = [
        speculative_chain(
            _target, _draft, SIGMAS, start, window=w, rule="block", generator=torch.Generator().manual_seed(4)
        )
        for w in windows
    ]
    assert torch.equal(runs[0].samples, runs[1].samples) and runs[0].rounds == runs[1].rounds


def test_states_that_are_not_floating_point_are_named_as_such() -> None:
    with pytest.raises(ValueError, match=r"float32 or float64, got torch.int64$"):
        plain_chain(_target, SIGMAS, torch.zeros(2, 4, dtype=torch.long), generator=torch.Generator())


def test_speculation_refuses_nonzero_sigmas_whose_squares_underflow() -> None:
    start = torch.zeros(2, 4, dtype=torch.float64)
    tiny = torch.full((6,), 1e-200, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"nonzero sigma >= 1e-150"):
        speculative_chain(_target, _draft, tiny, start, window=3, rule="block", generator=torch.Generator())
    # The smallest allowed sigma runs, and zero sigmas (deterministic steps) stay allowed.
    allowed = torch.tensor([SIGMA_MIN, 0.0, SIGMA_MIN, SIGMA_MIN], dtype=torch.float64)
    result = speculative_chain(_target, _target, allowed, start, window=3, rule="block", generator=torch.Generator())
    assert bool(torch.isfinite(result.samples).all())


@pytest.mark.parametrize("mode", ["simulated", "compiled"])
def test_a_fixed_width_round_is_no_wider_than_the_longest_stochastic_run(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window of 50 on a 12-step chain whose longest run of stochastic steps is 7: a compiled or replayed round has
    # a fixed width, which must not be the policy's 50 (51 rows per sample per call, most of them wasted).
    if mode == "compiled":
        _traced_only(monkeypatch)
    sigmas = SIGMAS.clone()
    sigmas[7] = 0.0
    start = torch.zeros(2, 4, dtype=torch.float64)
    rows: list[int] = []

    def recorded(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        rows.append(int(states.shape[0]))
        return _target(states, steps)

    options = {"graph": "simulated"} if mode == "simulated" else {"compile": True}
    speculative_chain(
        recorded, _draft, sigmas, start, window=50, rule="block", generator=torch.Generator().manual_seed(1), **options
    )
    assert rows and max(rows) == 2 * (7 + 1), rows


# ---------------------------------------------------------------------------------------------------------------
# The shape of a round
# ---------------------------------------------------------------------------------------------------------------


def _counted_run(rule: Rule, batch: int, dimension: int, window: int) -> tuple[float, float, int]:
    """Launches and synchronizations of a run with the states on a simulated device, and its rounds."""
    device = SimulatedDevice.device
    with SimulatedDevice():
        start = torch.zeros(batch, dimension, dtype=torch.float64).to(device)
        sigmas = torch.full((40,), 0.1, dtype=torch.float64)
        shift = torch.linspace(-1.0, 1.0, dimension, dtype=torch.float64).to(device)

        def target(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
            return 0.98 * states + shift

        def draft(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
            return 0.98 * states + 0.995 * shift

        with OpCounter(cpu_is_host=True) as counter:
            result = speculative_chain(
                target, draft, sigmas, start, window=window, rule=rule, generator=torch.Generator().manual_seed(3)
            )
    counts = counter.counts
    return counts.launches, counts.total_syncs, result.rounds


@pytest.mark.parametrize("rule", RULES)
def test_a_round_synchronizes_once_and_its_operations_do_not_grow_with_the_batch(rule: Rule) -> None:
    small_launches, small_syncs, small_rounds = _counted_run(rule, 1, 8, 4)
    large_launches, large_syncs, large_rounds = _counted_run(rule, 16, 32, 4)
    # One flag read per round, plus the round that finds no sample running; the set-up and the statistics' one move
    # to the host at the end account for a few more.
    for syncs, rounds in ((small_syncs, small_rounds), (large_syncs, large_rounds)):
        assert rounds + 1 <= syncs <= rounds + 8, (syncs, rounds)
    # The operations of a round do not depend on the batch or the dimension.
    assert abs(small_launches / small_rounds - large_launches / large_rounds) < 5


def test_sample_keys_reject_bad_generators_clearly() -> None:
    with pytest.raises(TypeError, match="Generator"):
        sample_keys(3, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2"):
        sample_keys([torch.Generator()], 2)


def test_free_drafter_is_masked_before_its_first_observation() -> None:
    # The first round: nothing observed, every sample takes a plain step, bitwise plain sampling.
    kernel = _kernel(6)
    start = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = DATA.as_model(kernel)
    plain = sample_plain(model, kernel, start, generator=torch.Generator().manual_seed(2))
    result = sample(
        model, kernel, start, drafter=FreeDrafter(), window=PlainSteps(), generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(plain.samples, result.samples)


# ---------------------------------------------------------------------------------------------------------------
# The compiled round: one graph per shape, reused by every round and every call
# ---------------------------------------------------------------------------------------------------------------


def _traced_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile=True`` with dynamo's ``eager`` backend: the same tracing, guards and graph breaks, no code generation
    (seconds instead of a minute)."""
    from specdiff import sampler

    compiled = sampler._Compiled(
        torch.compile(sampler._round, backend="eager", dynamic=False),
        torch.compile(sampler._plain_model_step, backend="eager", dynamic=False),
    )
    monkeypatch.setattr(sampler, "_compiled", lambda device_type: compiled)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()


def _graphs_and_breaks() -> tuple[int, int]:
    counters = torch._dynamo.utils.counters
    return int(counters["stats"]["unique_graphs"]), sum(counters["graph_break"].values())


@pytest.mark.parametrize("rule", ["block", "adaptive"])
def test_a_compiled_round_is_one_graph_reused_by_every_round_and_call(
    rule: SamplerRule, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default drafter (FreeDrafter) and policy (AdaptiveWindow) keep state across rounds: it must live in
    # tensors, or every round would retrace (and past the recompile limit fall back to eager code). Two graphs at
    # most: the first round's (the drafter's memory not allocated yet) and the steady state's, which every later
    # round and call reuses.
    _traced_only(monkeypatch)
    kernel = _kernel(12)
    start = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # traceable: no host reads
        return 0.3 * x + 0.001 * t[:, None]

    first = sample(model, kernel, start, rule=rule, generator=torch.Generator().manual_seed(1), compile=True)
    graphs, breaks = _graphs_and_breaks()
    assert first.rounds >= 4 and graphs <= 2 and breaks == 0
    later = sample(model, kernel, start, rule=rule, generator=torch.Generator().manual_seed(2), compile=True)
    assert later.rounds >= 4 and _graphs_and_breaks() == (graphs, 0)
    eager = sample(model, kernel, start, rule=rule, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(later.samples, eager.samples, rtol=0, atol=1e-12)


def test_a_compiled_plain_step_is_one_graph_with_its_model_call(monkeypatch: pytest.MonkeyPatch) -> None:
    _traced_only(monkeypatch)
    start = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    compiled = plain_chain(_target, SIGMAS, start, generator=torch.Generator().manual_seed(1), compile=True)
    assert _graphs_and_breaks() == (1, 0)
    eager = plain_chain(_target, SIGMAS, start, generator=torch.Generator().manual_seed(1))
    assert torch.equal(compiled.samples, eager.samples)


def test_a_compiled_plain_step_of_a_diffusion_model_is_one_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    # sample_plain puts the kernel's per-step tables on the device before the first step: traced with them missing,
    # the first step would make a graph of its own.
    _traced_only(monkeypatch)
    kernel = _kernel(12)
    start = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.3 * x + 0.001 * t[:, None]

    compiled = sample_plain(model, kernel, start, generator=torch.Generator().manual_seed(1), compile=True)
    assert _graphs_and_breaks() == (1, 0)
    eager = sample_plain(model, kernel, start, generator=torch.Generator().manual_seed(1))
    assert torch.equal(compiled.samples, eager.samples)


def test_the_structure_check_sees_a_graph_break(monkeypatch: pytest.MonkeyPatch) -> None:
    # Negative control: a mean function that reads a value on the host splits the compiled step. The value read is
    # a constant of the code after the break, which recompiles at every step (12 graphs: within the sampler's limit).
    _traced_only(monkeypatch)

    def host_reading(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return _target(states, steps) * (1.0 + 0.0 * float(states.sum()))

    start = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain_chain(host_reading, SIGMAS, start, generator=torch.Generator().manual_seed(1), compile=True)
    assert _graphs_and_breaks()[1] > 0


def _batches(sizes: range, compile: bool = False) -> list[torch.Tensor]:
    """Plain runs of each batch size in ``sizes`` (compiled: one graph of the plain step per batch size)."""
    starts = [torch.ones(size, 4, dtype=torch.float64) for size in sizes]
    return [plain_chain(_target, SIGMAS, start, generator=torch.Generator().manual_seed(1), compile=compile).samples
            for start in starts]  # fmt: skip


@pytest.fixture
def _lenient_torch() -> Iterator[None]:
    """torch's own setting (run eagerly past the limit), not the suite's (raise; tests/conftest.py): what a user has.
    Through torch's config.patch, not monkeypatch: pytest 9.2's undo deletes a config entry for good."""
    with torch._dynamo.config.patch(recompile_limit=2, fail_on_recompile_limit_hit=False):
        yield


@pytest.mark.usefixtures("_lenient_torch")
def test_past_its_limit_of_graphs_a_compiled_run_raises_instead_of_running_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from specdiff import sampler

    _traced_only(monkeypatch)
    monkeypatch.setattr(sampler, "COMPILED_GRAPHS_LIMIT", 1)  # the larger of it and torch's 2 applies
    eager = _batches(range(1, 4))
    assert all(torch.equal(a, b) for a, b in zip(_batches(range(1, 3), compile=True), eager[:2], strict=True))
    with pytest.raises(RuntimeError, match=r"more than 2 graphs in this process") as raised:
        _batches(range(3, 4), compile=True)
    assert isinstance(raised.value.__cause__, torch._dynamo.exc.FailOnRecompileLimitHit)
    assert _graphs_and_breaks() == (2, 0)
    # Only within the run: the user's settings are as they were, and an eager run is not affected.
    assert (torch._dynamo.config.recompile_limit, torch._dynamo.config.fail_on_recompile_limit_hit) == (2, False)
    assert torch.equal(_batches(range(3, 4))[0], eager[2])


@pytest.mark.usefixtures("_lenient_torch")
def test_without_the_guard_the_run_past_the_limit_is_silently_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    # Negative control (planted: the sampler's patch made a no-op): the third batch size then runs without a graph
    # and without an error, which is what the guard turns into one.
    from specdiff import sampler

    _traced_only(monkeypatch)
    monkeypatch.setattr(sampler, "COMPILED_GRAPHS_LIMIT", 1)
    monkeypatch.setattr(sampler, "_strict_patch", lambda limit: contextlib.nullcontext())
    compiled = _batches(range(1, 4), compile=True)
    assert _graphs_and_breaks() == (2, 0)
    assert all(torch.equal(a, b) for a, b in zip(compiled, _batches(range(1, 4)), strict=True))


def test_a_larger_limit_of_torch_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from specdiff import sampler

    _traced_only(monkeypatch)
    monkeypatch.setattr(sampler, "COMPILED_GRAPHS_LIMIT", 1)
    with torch._dynamo.config.patch(recompile_limit=3, fail_on_recompile_limit_hit=False):
        _batches(range(1, 4), compile=True)
        assert _graphs_and_breaks() == (3, 0)
        with pytest.raises(RuntimeError, match=r"more than 3 graphs"):
            _batches(range(4, 5), compile=True)


@pytest.mark.usefixtures("_lenient_torch")
def test_a_compiled_speculative_run_past_its_limit_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # One graph of the round per batch size (a drafter without memory): torch's 2 hold two batch sizes.
    from specdiff import sampler

    _traced_only(monkeypatch)
    monkeypatch.setattr(sampler, "COMPILED_GRAPHS_LIMIT", 1)

    def run(size: int) -> None:
        start, generator = torch.ones(size, 4, dtype=torch.float64), torch.Generator().manual_seed(1)
        speculative_chain(_target, _target, SIGMAS, start, window=4, rule="block", generator=generator, compile=True)

    for size in (1, 2, 1):
        run(size)
    assert _graphs_and_breaks() == (2, 0)
    with pytest.raises(RuntimeError, match=r"compile=True: .* more than 2 graphs"):
        run(3)


def test_compiled_runs_may_nest() -> None:
    # A compiled run inside another (a model or a thread that samples): each run enters its own config patch (a
    # patch object shared by the runs cannot be entered twice under torch 2.11), and each restores what it found.
    from specdiff import sampler

    with torch._dynamo.config.patch(recompile_limit=2, fail_on_recompile_limit_hit=False):
        with sampler._strictly_compiled(True):
            with sampler._strictly_compiled(True):
                assert torch._dynamo.config.fail_on_recompile_limit_hit
            assert (torch._dynamo.config.recompile_limit, torch._dynamo.config.fail_on_recompile_limit_hit) == (
                128,
                True,
            )
        assert (torch._dynamo.config.recompile_limit, torch._dynamo.config.fail_on_recompile_limit_hit) == (2, False)
