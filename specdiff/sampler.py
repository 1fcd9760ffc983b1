"""Speculative sampling of any Gaussian Markov chain ``x_{n+1} = target_mean(x_n, n) + sigmas[n] * noise``.

``plain_chain`` is the reference. ``speculative_chain`` drafts up to ``window`` steps for every sample, evaluates
the target on all window states of all samples in **one** batched call per round, verifies with the chosen rule
(``specdiff.verify``) and commits. ``sample`` and ``sample_plain`` do the same for a diffusion model and a kernel
(``specdiff.chain.ModelChain``), with a drafter from ``specdiff.drafters`` and a window policy from
``specdiff.policies``. The window of each sample is chosen by the policy from that sample's own history; window 0 is
a plain step.

A round is a fixed sequence of tensor operations on the states' device, in four stages over one state object
(:class:`SamplerState`): plan the windows (:func:`_plan`), draw the randomness and draft (:func:`_draft`), one
target call (:func:`_evaluate`), verify and commit (:func:`_commit`). Every row of the batch goes through every
stage with the round's width ``L`` (the longest window of the round; the policy's maximum under ``compile=True``),
masked per row: each sample's own window, the horizon, deterministic (sigma 0) steps and finished samples. The
driver reads one small tensor per round on the host (whether any sample is still running, the round's longest
window, and the first step at which a non-finite mean appeared): that is the round's only host synchronization.
The per-round statistics stay on the device and move to the host once, at the end.

Randomness (``specdiff.randomness``) is counter-based: every normal and uniform a sample uses is a pure function of
its key, the round's root step and the value's index, so a sample's output is bitwise the same whatever the batch
and whatever the other samples do, given a mean function that computes each row on its own (a real network's
batched kernels round differently at different batch sizes: then it holds in distribution). Per round, sample i
uses the draft noise of slots ``0..L-1`` (slot j drafts state j + 1), the noise of the committed next state, the
rule's uniforms of slots ``0..L-1`` and one residual uniform, all keyed by the root step; a plain step uses the
next-state noise only, exactly as :func:`plain_chain` does, so a plain step inside the speculative sampler is
bitwise a plain step.

Horizon and deterministic steps: the window never runs past the horizon N or through a step with sigma 0. When the
window ends at the horizon the bonus step is dropped (its draw is simply not used, which marginalizes it out).
When the step after the window is deterministic (sigma 0) the bonus is that step's mean (``mean + 0 * noise``),
which the batched call has already computed. A sample whose next step is deterministic takes it plainly, inside the
same batched call.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from specdiff.chain import Model, ModelChain, kernel_sigmas
from specdiff.drafters import Drafter, FreeDrafter, MeanDrafter, RoundObservation
from specdiff.graphs import CudaGraph, Graph, SimulatedGraph, StaticStep
from specdiff.kernels import Kernel
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.randomness import (
    DRAFT_NOISE,
    NEXT_NOISE,
    RESIDUAL_UNIFORM,
    RULE_UNIFORMS,
    counter_normals,
    counter_uniforms,
    random_codes,
    sample_keys,
)
from specdiff.residual import _expand, gaussian_step
from specdiff.verify import (
    BlockRule,
    Rule,
    RuleChoice,
    VerificationRule,
    Window,
    WindowRandomness,
    resolve_rule,
    take_column,
    verify,
    verify_chosen,
)

MeanFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``mean(states, steps)``: states (M, *event) and per-row step indices (M,) long -> means (M, *event)."""

Generators = torch.Generator | Sequence[torch.Generator]

GraphMode = Literal["auto", "off", "cuda", "simulated"]
"""How rounds (and plain steps) run: ``"auto"`` replays them from a CUDA graph when ``compile=True`` and the states
are on a CUDA device, and runs them as they are otherwise or when the capture fails (with a warning: a model that
reads a value on the host cannot be captured); ``"off"`` never; ``"cuda"`` always (a CUDA device is needed; a failed
capture raises); ``"simulated"`` replays them from :class:`specdiff.graphs.SimulatedGraph`, a CUDA graph's semantics
on any device (slow: for tests; a failed capture raises)."""

GRAPH_MODES: tuple[GraphMode, ...] = ("auto", "off", "cuda", "simulated")

#: State dtypes the samplers accept: half precision rounds a state by more than a small sigma (not exact).
STATE_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class ChainResult:
    """Output of ``plain_chain``.

    Attributes
    ----------
    samples : Tensor, shape (B, *event)
        Final states ``x_N``.
    target_calls : int
        Sequential target calls (N).
    target_evaluations : int
        States evaluated by the target (B N).
    wall_seconds : float
    """

    samples: torch.Tensor
    target_calls: int
    target_evaluations: int
    wall_seconds: float


@dataclass
class SpeculativeResult:
    """Output of ``speculative_chain``.

    Attributes
    ----------
    samples : Tensor, shape (B, *event)
        Final states ``x_N``.
    target_calls : int
        Sequential (batched) target calls, one per round.
    target_evaluations : int
        States evaluated by the target over all rounds (every row of the batch at every column of the round's width).
    draft_calls : int
        Sequential (batched) draft calls: drafted columns, summed over rounds (the free probe draft at a plain
        step's root, made only for a free drafter, is not counted).
    draft_cost : float
        Sequential cost of the drafts in target-call units (the drafter's per-step and per-round costs).
    plain_steps : int
        Stochastic steps taken plainly (window 0 chosen by the policy, or no draft available yet), over samples.
    rounds : int
    accepted : list of Tensor
        Per round in which at least one sample verified a window (a round of plain steps only is left out, so these
        per-round lists can be shorter than ``rounds``), a (k,) long tensor of the accepted lengths of the k samples
        verified in it.
    deltas : list of Tensor
        Per round, the (k, L) gaps of the verified drafted steps, L the round's longest window; row r holds the gaps
        of its steps 1..L_r and NaN beyond its window L_r.
    weights : list of Tensor
        Per round, the (k, L) block weights (or token acceptance probabilities), NaN beyond each row's window.
    windows : list of Tensor
        Per round, the (k,) window length L_r of each verified sample.
    steps : list of Tensor
        Per round, the (k,) step index of each verified window's root.
    block_verified : list of Tensor
        Per round, the (k,) bool: whether the block rule verified each verified window (all True with
        ``rule="block"``, all False with a token rule, the policy's choice with ``rule="adaptive"``).
    sample_rounds : Tensor, shape (B,)
        Rounds each sample took part in: its own sequential target calls (a batch of one would make as many).
    sample_draft_cost : Tensor, shape (B,)
        Each sample's own draft cost in target-call units (per-round cost plus per-step cost times its window).
    wall_seconds : float
    """

    samples: torch.Tensor
    target_calls: int = 0
    target_evaluations: int = 0
    draft_calls: int = 0
    draft_cost: float = 0.0
    plain_steps: int = 0
    rounds: int = 0
    accepted: list[torch.Tensor] = field(default_factory=list)
    deltas: list[torch.Tensor] = field(default_factory=list)
    weights: list[torch.Tensor] = field(default_factory=list)
    windows: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)
    block_verified: list[torch.Tensor] = field(default_factory=list)
    sample_rounds: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    sample_draft_cost: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    wall_seconds: float = 0.0

    @property
    def steps_per_call(self) -> float:
        """Committed steps per sequential target call, ``N / target_calls`` for a batch of one."""
        return float("nan") if self.target_calls == 0 else self._horizon / self.target_calls

    @property
    def sequential_cost(self) -> float:
        """Target calls plus the drafts' cost, in target-call units."""
        return self.target_calls + self.draft_cost

    @property
    def sample_sequential_cost(self) -> torch.Tensor:
        """Each sample's own sequential cost (B,) float64 in target calls: its rounds plus its draft cost (what it
        would cost sampled alone)."""
        return self.sample_rounds.double() + self.sample_draft_cost

    @property
    def rows_per_round(self) -> float:
        """Target rows a sample's round evaluates, ``L + 1`` for a window of L (1 for a plain step), averaged over
        every sample's rounds (what a sample sampled alone would evaluate per call)."""
        rounds = float(self.sample_rounds.sum())
        if rounds == 0:
            return float("nan")
        windows = torch.cat(self.windows).double() if self.windows else torch.zeros(0, dtype=torch.float64)
        return (float(windows.sum()) + rounds) / rounds

    _horizon: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Input checks (once per call, on the host)
# ---------------------------------------------------------------------------------------------------------------


def _check_chain(sigmas: torch.Tensor, x_init: torch.Tensor) -> torch.Tensor:
    if not isinstance(x_init, torch.Tensor) or x_init.dim() < 2:
        raise ValueError("x_init must be a tensor of shape (B, *event)")
    if not x_init.is_floating_point():
        raise ValueError(f"states must be float32 or float64, got {x_init.dtype}")
    if x_init.dtype not in STATE_DTYPES:
        raise ValueError(
            f"states must be float32 or float64, got {x_init.dtype}: a half-precision state rounds by more than a "
            "small step's sigma, so the samples would not be exact (the model itself may run in half precision)"
        )
    if not isinstance(sigmas, torch.Tensor) or sigmas.dim() != 1 or sigmas.shape[0] < 1:
        raise ValueError("sigmas must be a tensor of shape (N,) with N >= 1")
    host = sigmas.detach().to("cpu", torch.float64)  # the schedule is read on the host (stochastic steps, runs)
    values = host.numpy()
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise ValueError("sigmas must be finite and >= 0")
    if not bool(torch.isfinite(x_init).all()):
        raise ValueError("x_init contains NaN or inf")
    return host


def _checked_mean(mean: torch.Tensor, like: torch.Tensor, function: str) -> torch.Tensor:
    """``mean`` in the dtype of ``like``, after checking it is a real tensor of the same shape on the same device
    (host checks on metadata: no data is read)."""
    if not isinstance(mean, torch.Tensor) or mean.shape != like.shape:
        shape = tuple(mean.shape) if isinstance(mean, torch.Tensor) else type(mean).__name__
        raise ValueError(f"{function} returned shape {shape} for states of shape {tuple(like.shape)}")
    if mean.device != like.device:
        raise ValueError(f"{function} returned a tensor on {mean.device} for states on {like.device}")
    if mean.is_complex():
        raise ValueError(f"{function} returned a complex tensor ({mean.dtype}): means must be real")
    return mean.to(like.dtype)


def _check_callable(function: object, name: str) -> None:
    if not callable(function):
        raise ValueError(f"{name} must be callable, got {type(function).__name__}")


def _raise_non_finite(step: int, what: str) -> None:
    raise ValueError(
        f"{what} at step {step} is NaN or inf: check the model's output there (a half-precision model may overflow)"
    )


# ---------------------------------------------------------------------------------------------------------------
# Plain sampling
# ---------------------------------------------------------------------------------------------------------------


def _plain_model_step(
    target_mean: MeanFunction,
    state: torch.Tensor,
    steps: torch.Tensor,
    sigma: torch.Tensor,
    keys: torch.Tensor,
    codes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One stochastic plain step, the target call included (what ``compile=True`` compiles): the next states and
    whether each row is finite."""
    mean = _checked_mean(target_mean(state, steps), state, "target_mean")
    noise = counter_normals(keys, steps, codes, mean.dtype).reshape(mean.shape)
    next_state = gaussian_step(mean, sigma.expand(mean.shape[0]), noise)
    return next_state, torch.isfinite(next_state).flatten(1).all(dim=1)


@dataclass(frozen=True)
class _PlainStep:
    """Plain steps as steps of a replayed loop: the carry is (states, first non-finite step, step index), all on
    the device; the same arithmetic as the plain loop of :func:`plain_chain`."""

    step: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    target_mean: MeanFunction
    step_indices: torch.Tensor  # (N,) long
    sigmas: torch.Tensor  # (N,) float64
    keys: torch.Tensor
    codes: torch.Tensor

    def __call__(self, carry: tuple[torch.Tensor, ...]) -> tuple[tuple[torch.Tensor, ...], None]:
        state, first_bad, index = carry
        at = index.view(1)  # a (1,) index: a 0-d one would be read on the host
        steps = self.step_indices[at].expand(state.shape[0])
        state, finite = self.step(self.target_mean, state, steps, self.sigmas[at], self.keys, self.codes)
        return (state, _first_bad(first_bad, finite, index, self.sigmas.shape[0]), index + 1), None

    def deterministic(self, carry: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """A sigma-0 step (the model call alone), run as it is between replays."""
        state, first_bad, index = carry
        state, finite = _deterministic_step(self.target_mean, state, self.step_indices[index.view(1)])
        return state, _first_bad(first_bad, finite, index, self.sigmas.shape[0]), index + 1


def _deterministic_step(
    target_mean: MeanFunction, state: torch.Tensor, step: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A sigma-0 step of the plain chain (the model call alone, ``step`` of shape () or (1,)): the next states and
    whether each row is finite."""
    state = _checked_mean(target_mean(state, step.expand(state.shape[0])), state, "target_mean")
    return state, torch.isfinite(state).flatten(1).all(dim=1)


def _first_bad(first_bad: torch.Tensor, finite: torch.Tensor, index: torch.Tensor | int, horizon: int) -> torch.Tensor:
    """The first step whose state was not finite (``horizon`` while none)."""
    return torch.where(finite.all() | (first_bad < horizon), first_bad, index)


def plain_chain(
    target_mean: MeanFunction,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    *,
    generator: Generators,
    compile: bool = False,
    graph: GraphMode = "auto",
) -> ChainResult:
    """Ancestral sampling of the target chain: ``x_{n+1} = target_mean(x_n, n) + sigmas[n] * noise_n``.

    Parameters
    ----------
    target_mean : callable
        ``(states (B, *event), steps (B,)) -> means (B, *event)``.
    sigmas : Tensor, shape (N,)
        Standard deviation of each step (0 for a deterministic step).
    x_init : Tensor, shape (B, *event), float32 or float64
    generator : torch.Generator or sequence of B generators
        Source of each sample's key (:func:`specdiff.randomness.sample_keys`).
    compile : bool
        Run each stochastic step, the call of ``target_mean`` included, through ``torch.compile`` (one graph for
        every step: the same work as one round of ``speculative_chain(..., compile=True)``). A RuntimeError past
        :data:`COMPILED_GRAPHS_LIMIT` graphs per process (one per batch size and state shape; or torch's
        ``recompile_limit`` if larger), rather than eager steps.
    graph : {"auto", "off", "cuda", "simulated"}
        Replay each stochastic step from a graph after two warm-up steps (:data:`GraphMode`; ``"auto"``: a CUDA
        graph when ``compile=True`` on a CUDA device), exactly as :func:`speculative_chain` replays its rounds, so
        that the two are equally optimized. The same samples as without, but a replayed run keeps no autograd
        history (a run without a graph does, for a model with parameters that require gradients).

    Returns
    -------
    ChainResult

    Raises
    ------
    ValueError
        Bad inputs; a mean of the wrong shape; a non-finite state (after the run, naming the first such step).
    RuntimeError
        ``compile=True`` past the limit of compiled graphs (above).
    """
    start = time.perf_counter()
    _check_callable(target_mean, "target_mean")
    sigmas = _check_chain(sigmas, x_init)
    batch, device = x_init.shape[0], x_init.device
    horizon = int(sigmas.shape[0])
    keys = sample_keys(generator, batch, device)
    codes = random_codes(NEXT_NOISE, math.prod(x_init.shape[1:]), device)
    step_indices, step_sigmas = torch.arange(horizon, device=device), sigmas.to(device)
    stochastic = (sigmas > 0).tolist()
    step = _compiled(device.type).plain_step if compile else _plain_model_step
    first_bad = torch.full((), horizon, dtype=torch.long, device=device)
    state = x_init.clone()
    chosen_graph = _graph(graph, compile, device)
    with _strictly_compiled(compile):
        if chosen_graph is not None:
            # The step index is a device tensor of the carry, so that one recording serves every stochastic step.
            stepped = _PlainStep(step, target_mean, step_indices, step_sigmas, keys, codes)
            replayed = StaticStep(stepped, chosen_graph, fallback=graph == "auto")
            carry: tuple[torch.Tensor, ...] = (state, first_bad, step_indices[0].clone())
            with torch.no_grad():  # (replays record no autograd history: none of the run does)
                for index in range(horizon):
                    if stochastic[index]:
                        carry = replayed(carry)[0]
                    else:
                        carry = stepped.deterministic(carry)
            state, first_bad = carry[0], carry[1]
        else:
            for index in range(horizon):
                if stochastic[index]:
                    steps = step_indices[index].expand(batch)
                    state, finite = step(target_mean, state, steps, step_sigmas[index], keys, codes)
                else:
                    state, finite = _deterministic_step(target_mean, state, step_indices[index])
                first_bad = _first_bad(first_bad, finite, index, horizon)
    bad = int(first_bad)
    if bad < horizon:
        _raise_non_finite(bad, "the target mean")
    return ChainResult(
        samples=state,
        target_calls=horizon,
        target_evaluations=horizon * batch,
        wall_seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------------------------------
# Speculative sampling: public entry points
# ---------------------------------------------------------------------------------------------------------------


RuleName = Rule | Literal["adaptive"]
"""A rule's name: one of ``specdiff.verify.RULES``, or ``"adaptive"`` (the window policy chooses token-reflection or
block per sample and round)."""

SamplerRule = RuleName | VerificationRule | RuleChoice
"""A verification rule: its name or a rule object."""

#: The rule of :func:`sample` by default (chosen from the measurements of ``simulations.speedup``,
#: ``simulations.dit_speedup`` and ``simulations.peer_gm``).
DEFAULT_RULE: Rule = "token-reflection"


def _as_rule(rule: SamplerRule, policy: WindowPolicy) -> VerificationRule | RuleChoice:
    if isinstance(rule, RuleChoice) or rule == "adaptive":
        if not policy.chooses_rules:
            raise ValueError(f"rule 'adaptive' needs a window policy that chooses rules (AdaptiveWindow), got {policy}")
        return rule if isinstance(rule, RuleChoice) else RuleChoice()
    return resolve_rule(rule)


def _as_policy(window: int | WindowPolicy) -> WindowPolicy:
    if isinstance(window, WindowPolicy):
        return window
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an int >= 1 or a WindowPolicy, got {window!r}")
    return FixedWindow(int(window))


Evaluate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``evaluate(states (M, *event), steps (M,), rows (M,)) -> (means, predictions)``: one target call."""


def speculative_chain(
    target_mean: MeanFunction,
    draft_mean: MeanFunction | Drafter,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    *,
    window: int | WindowPolicy,
    rule: SamplerRule,
    generator: Generators,
    compile: bool = False,
    graph: GraphMode = "auto",
) -> SpeculativeResult:
    """Speculative sampling of the chain of ``plain_chain``, exactly distributed as it.

    Parameters
    ----------
    target_mean : callable
        ``(states (M, *event), steps (M,)) -> means (M, *event)``, called once per round on every window state of
        every sample.
    draft_mean : callable or Drafter
        ``(states (M, *event), steps (M,)) -> means (M, *event)``, called once per drafted column; or a
        :class:`specdiff.drafters.Drafter` that needs no model (for example a ``MeanDrafter`` with a cost).
    sigmas : Tensor, shape (N,)
        Standard deviation of each step: 0 (a deterministic step, taken plainly) or at least :data:`SIGMA_MIN`.
    x_init : Tensor, shape (B, *event), float32 or float64
        B = 0 gives an empty result.
    window : int or WindowPolicy
        Maximum drafted steps per round (>= 1), or a policy choosing it per sample and round.
    rule : {"token-reflection", "token-residual", "block", "adaptive"} or a rule object of ``specdiff.verify``
        ``"adaptive"``: the window policy (an :class:`~specdiff.policies.AdaptiveWindow`) chooses token-reflection or
        block per sample and round.
    generator : torch.Generator or sequence of B generators
    compile : bool
        Run each round through ``torch.compile`` as one graph: the drafts, the target call, verification, the
        commit, the drafter's and the policy's updates and the next round's plan. The round's width is then always
        the policy's maximum window (or the longest run of stochastic steps, if shorter), so one graph serves every
        round. Model code that ``torch.compile`` cannot trace splits the graph there (it still runs, eagerly); the
        first call compiles (tens of seconds), and so does each new number of steps, batch size or configuration.
        Past :data:`COMPILED_GRAPHS_LIMIT` graphs of the round per process (or torch's ``recompile_limit`` if larger)
        the run raises a RuntimeError rather than run eagerly; ``torch.compiler.reset()`` drops the graphs kept.
    graph : {"auto", "off", "cuda", "simulated"}
        Replay each round from a graph after two warm-up rounds (:data:`GraphMode`; ``"auto"``: a CUDA graph when
        ``compile=True`` on a CUDA device): one launch per round instead of hundreds, the target call included. The
        round's width is then fixed, as under ``compile``. The model must be capturable (no host reads, no new
        allocations that outlive a call); the drafter and the policy keep their tensors in their own attributes
        (:mod:`specdiff.graphs`). The same samples as without when the model's output for a row does not depend on
        how many rows it is called with; a network's can, in the last bits (its matrix products pick kernels by
        size), and then the wider rounds give samples that differ in the last bits, exact either way
        (``simulations.graph_check`` compares the two bitwise with a row-wise model).

    Returns
    -------
    SpeculativeResult
        Computed without autograd (``torch.no_grad``): accepting or rejecting a draft is not differentiable, and a
        history kept across rounds would only hold memory.
    """
    _check_callable(target_mean, "target_mean")
    drafter = draft_mean if isinstance(draft_mean, Drafter) else MeanDrafter(draft_mean)

    def evaluate(states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means = target_mean(states, steps)
        return means, means

    policy = _as_policy(window)
    return _speculate(
        evaluate, drafter, None, sigmas, x_init, _Options(policy, _as_rule(rule, policy), generator, compile, graph)
    )


def sample(
    model: Model,
    kernel: Kernel,
    x_init: torch.Tensor,
    *,
    drafter: Drafter | None = None,
    window: int | WindowPolicy | None = None,
    rule: SamplerRule = DEFAULT_RULE,
    generator: Generators,
    conditioning: Mapping[str, torch.Tensor] | None = None,
    compile: bool = False,
    graph: GraphMode = "auto",
) -> SpeculativeResult:
    """Speculative sampling of a diffusion model, exactly distributed as :func:`sample_plain`.

    Parameters
    ----------
    model : callable
        ``model(x, t, **conditioning) -> prediction``: x (M, *event) the kernel's model input, t (M,) timesteps. It
        may compute in any precision; its prediction is cast to the states' dtype.
    kernel : Kernel
        DDPM / DDIM / Euler-Maruyama / Euler ancestral kernel giving each step's Gaussian transition.
    x_init : Tensor, shape (B, *event), float32 or float64
        Initial states, typically ``kernel.prior_std * randn``.
    drafter : Drafter, optional
        Default: the reuse :class:`~specdiff.drafters.FreeDrafter` (``reuse="nearest"``).
    window : int or WindowPolicy, optional
        Default: :class:`~specdiff.policies.AdaptiveWindow` (at most 16 steps, minimizing target calls).
    rule : {"token-reflection", "token-residual", "block", "adaptive"} or a rule object of ``specdiff.verify``
        As in :func:`speculative_chain`. Default ``"token-reflection"``: with the default drafter, the best
        geometric mean of the fixed rules' steps per call over the benchmarks of ``docs/results.md`` ("Drafters
        and rules") and the cheapest round. It commits the most where the draft is far (high dimension, few
        steps); ``"block"`` commits more where it is close (d = 2, and N = 1000 on the digits DiT).
    generator : torch.Generator or sequence of B generators
    conditioning : mapping of str to Tensor (B, ...), optional
        Per-sample keyword arguments of the model (e.g. ``{"y": labels}``).
    compile : bool
        As in :func:`speculative_chain`.
    graph : {"auto", "off", "cuda", "simulated"}
        As in :func:`speculative_chain`.

    Returns
    -------
    SpeculativeResult
    """
    if drafter is not None and not isinstance(drafter, Drafter):
        raise TypeError(f"drafter must be a specdiff.drafters.Drafter instance or None, got {drafter!r}")
    chain = ModelChain(model, kernel, {} if conditioning is None else dict(conditioning))
    _check_conditioning(chain, x_init)
    policy = _as_policy(AdaptiveWindow() if window is None else window)
    options = _Options(policy, _as_rule(rule, policy), generator, compile, graph)
    return _speculate(
        chain.evaluate, FreeDrafter() if drafter is None else drafter, chain, kernel_sigmas(kernel), x_init, options
    )


def sample_plain(
    model: Model,
    kernel: Kernel,
    x_init: torch.Tensor,
    *,
    generator: Generators,
    conditioning: Mapping[str, torch.Tensor] | None = None,
    compile: bool = False,
    graph: GraphMode = "auto",
) -> ChainResult:
    """Plain ancestral sampling of a diffusion model (one target call per step); arguments as :func:`sample`."""
    chain = ModelChain(model, kernel, {} if conditioning is None else dict(conditioning))
    _check_conditioning(chain, x_init)
    chain.prepare(x_init.device)  # the per-step tables on the device before a compiled step traces them
    rows = torch.arange(x_init.shape[0], device=x_init.device)

    def target_mean(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return chain.evaluate(states, steps, rows)[0]

    return plain_chain(target_mean, kernel_sigmas(kernel), x_init, generator=generator, compile=compile, graph=graph)


def _check_conditioning(chain: ModelChain, x_init: torch.Tensor) -> None:
    for name, value in chain.conditioning.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != x_init.shape[0]:
            raise ValueError(f"conditioning {name!r} must be a tensor with one row per sample ({x_init.shape[0]})")


# ---------------------------------------------------------------------------------------------------------------
# Speculative sampling: the round
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    policy: WindowPolicy
    rule: VerificationRule | RuleChoice
    generator: Generators
    compile: bool
    graph: GraphMode


@dataclass(frozen=True)
class _Setup:
    """What stays fixed during a run: the chain, the drafter, the policy, the rule and the per-step tables."""

    evaluate: Evaluate
    drafter: Drafter
    policy: WindowPolicy
    rule: VerificationRule | RuleChoice
    sigmas: torch.Tensor  # (N,) float64, on the states' device
    runs: torch.Tensor  # (N + 1,) long: consecutive stochastic steps from step n (0 at sigma-0 steps and at N)
    keys: torch.Tensor  # (B,) int64 sample keys
    rows: torch.Tensor  # (B,) arange
    horizon: int


@dataclass(frozen=True)
class _Layout:
    """The fixed index tensors of a round of width L (made outside any compiled region, cached per shape).

    Attributes
    ----------
    columns : Tensor, shape (L + 1,)
        The window columns ``0..L``.
    codes : Tensor
        The counter codes the round draws, in the order it uses them: the draft noise of slots 0..L-1, the next
        state's noise, the rule's uniforms of slots 0..L-1, the residual's uniform.
    rows : Tensor, shape (B (L + 1),)
        The sample of each row of the flattened (B, L + 1) window.
    """

    columns: torch.Tensor
    codes: torch.Tensor
    rows: torch.Tensor


@functools.lru_cache(maxsize=64)
def _layout(width: int, batch: int, event_size: int, device: torch.device) -> _Layout:
    """The layout of a round of width L (cached: every run with the same shapes reuses its read-only tensors)."""
    codes = torch.cat(
        [
            random_codes(DRAFT_NOISE, width * event_size, device),
            random_codes(NEXT_NOISE, event_size, device),
            random_codes(RULE_UNIFORMS, width, device),
            random_codes(RESIDUAL_UNIFORM, 1, device),
        ]
    )
    rows = torch.arange(batch, device=device).repeat_interleave(width + 1)
    return _Layout(torch.arange(width + 1, device=device), codes, rows)


@dataclass
class SamplerState:
    """The state of a speculative run between rounds, all on the states' device.

    Attributes
    ----------
    states : Tensor, shape (B, *event)
        Each sample's current state.
    position : Tensor, shape (B,), long
        Each sample's progress: the index of its next step (N when finished).
    first_bad_step : Tensor, shape (), long
        The first root step of a round in which a sample's means or next state were not finite (N if none).
    """

    states: torch.Tensor
    position: torch.Tensor
    first_bad_step: torch.Tensor


@dataclass(frozen=True)
class _Plan:
    """A round's plan: each sample's root step, its window, and whether it is still running."""

    roots: torch.Tensor  # (B,) long, the round's root step of each sample (N when finished)
    lengths: torch.Tensor  # (B,) long, the window L_r (0: a plain step or finished)
    active: torch.Tensor  # (B,) bool
    ready: torch.Tensor  # (B,) bool, whether the drafter could draft for the sample at the round's start
    first_bad_step: torch.Tensor  # () long, carried over from the state
    use_block: torch.Tensor | None  # (B,) bool with rule "adaptive": the block rule verifies the sample's window


@dataclass(frozen=True)
class _Drafted:
    """The round's drafted windows, their step indices and sigmas, and its randomness."""

    states: torch.Tensor  # (B, L + 1, *event)
    draft_means: torch.Tensor  # (B, L, *event), or (B, 1, *event) with the root's draft when L = 0 and probing
    steps: torch.Tensor  # (B, L + 1) long: the step of each window column, clamped to N - 1
    sigmas: torch.Tensor  # (B, L + 1) float64: sigma of step root + j
    randomness: WindowRandomness


@dataclass(frozen=True)
class _RoundLog:
    """What one round records, packed on the device into one float64 tensor (moved to the host once, after the run,
    and unpacked by :func:`_result`): the (B,) root steps, window lengths, accepted lengths, active flags and
    block flags (whether the block rule verified the sample's window), then the (B, L) gaps and weights, flattened.
    """

    packed: torch.Tensor  # (B (5 + 2 L),) float64
    width: int  # L


def _round_log(
    plan: _Plan, accepted: torch.Tensor, deltas: torch.Tensor, weights: torch.Tensor, block: torch.Tensor
) -> _RoundLog:
    # cat promotes the integers and booleans to float64, exactly (they are below 2^53)
    fields = (plan.roots, plan.lengths, accepted, plan.active, block, deltas.flatten(), weights.flatten())
    return _RoundLog(torch.cat(fields), int(deltas.shape[1]))


def _plan(setup: _Setup, state: SamplerState) -> tuple[_Plan, torch.Tensor]:
    """Each sample's window for this round, and the flags the driver reads: (any active, longest window, first
    non-finite step), one (3,) long tensor."""
    roots = state.position
    active = roots < setup.horizon
    wanted = setup.policy.windows(setup.rows)
    ready = setup.drafter.ready(setup.rows)
    lengths = torch.where(active & ready, torch.minimum(wanted, setup.runs[roots]), 0)
    use_block = setup.policy.block_rule(setup.rows) if isinstance(setup.rule, RuleChoice) else None
    flags = torch.stack([active.any().long(), lengths.amax(), state.first_bad_step])
    return _Plan(roots, lengths, active, ready, state.first_bad_step, use_block), flags


def _round_randomness(
    keys: torch.Tensor, roots: torch.Tensor, codes: torch.Tensor, width: int, event: tuple[int, ...], dtype: torch.dtype
) -> tuple[torch.Tensor, WindowRandomness]:
    """A round's draws, keyed by each sample's root step: the draft noise (B, L, *event) and the verification's
    randomness. One counter draw: the normals are the inverse normal CDF of their uniforms, exactly as
    :func:`specdiff.randomness.counter_normals` defines them."""
    batch, event_size = keys.shape[0], math.prod(event)
    uniforms = counter_uniforms(keys, roots, codes)
    normals = torch.special.ndtri(uniforms[:, : (width + 1) * event_size]).to(dtype)
    noise = normals[:, : width * event_size].reshape(batch, width, *event)
    rule_uniforms = uniforms[:, (width + 1) * event_size :]
    next_noise = normals[:, width * event_size :].reshape(batch, *event)
    return noise, WindowRandomness(rule_uniforms[:, :width], rule_uniforms[:, width], next_noise)


def _draft(setup: _Setup, plan: _Plan, state: SamplerState, layout: _Layout) -> _Drafted:
    """Draw the round's randomness and draft L steps from every sample's root (static shapes)."""
    batch, event = state.states.shape[0], tuple(state.states.shape[1:])
    dtype, width = state.states.dtype, layout.columns.shape[0] - 1
    steps = (plan.roots[:, None] + layout.columns).clamp(max=setup.horizon - 1)
    sigmas = setup.sigmas[steps]
    step_sigmas = sigmas.to(dtype)
    noise, randomness = _round_randomness(setup.keys, plan.roots, layout.codes, width, event, dtype)
    current, drafted, means = state.states, [state.states], []
    for slot in range(max(width, 1 if setup.policy.probes_plain_steps else 0)):
        mean = _checked_mean(setup.drafter.draft(current, steps[:, slot], setup.rows, slot), current, "the draft")
        means.append(mean)
        if slot < width:
            current = torch.addcmul(mean, _expand(step_sigmas[:, slot], mean), noise[:, slot])  # gaussian_step
            drafted.append(current)
    draft_means = torch.stack(means, dim=1) if means else state.states.new_zeros((batch, 0, *event))
    return _Drafted(torch.stack(drafted, dim=1), draft_means, steps, sigmas, randomness)


def _evaluate(setup: _Setup, drafted: _Drafted, layout: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched target call on every window state of every sample: means (B, L + 1, *event) in the states' dtype
    and the model's predictions (B, L + 1, ...)."""
    states = drafted.states
    batch, columns = states.shape[0], states.shape[1]
    flat = states.reshape(batch * columns, *states.shape[2:])
    means, predictions = setup.evaluate(flat, drafted.steps.reshape(-1), layout.rows)
    means = _checked_mean(means, flat, "the target")
    return means.reshape(states.shape), predictions.reshape(batch, columns, *predictions.shape[1:])


@dataclass(frozen=True)
class _Committed:
    """What verification commits in a round: each sample's next state and position, its accepted length, the logged
    gaps and weights (B, L), and the first root step (a () tensor, N if none) whose means or state were not finite."""

    states: torch.Tensor
    position: torch.Tensor
    accepted: torch.Tensor
    deltas: torch.Tensor
    weights: torch.Tensor
    first_bad_step: torch.Tensor


def _verify_and_commit(
    window: Window,
    randomness: WindowRandomness,
    rule: VerificationRule | RuleChoice,
    roots: torch.Tensor,
    horizon: int,
    use_block: torch.Tensor | None = None,
) -> _Committed:
    """Verify every sample's window and commit its next state: pure tensor arithmetic (what ``compile=True``
    compiles). ``roots`` (B,) are the samples' root steps, N for a finished sample; ``use_block`` (B,) bool the
    per-sample choice of a :class:`RuleChoice`."""
    if isinstance(rule, RuleChoice):
        assert use_block is not None
        outcome = verify_chosen(window, randomness, rule, use_block)
    else:
        outcome = verify(window, randomness, rule)
    accepted, lengths = outcome.accepted, window.lengths
    # Without a bonus step the window ends at the horizon: commit the last drafted state. A finished sample (root N,
    # window 0, nothing accepted, no bonus) keeps its state and its position N.
    keep_drafted = (accepted == lengths) & (roots + lengths >= horizon)
    kept = take_column(window.states, accepted)
    committed = torch.where(_expand(keep_drafted, kept), kept, outcome.next_state)
    position = (roots + accepted + 1).clamp(max=horizon)
    # Non-finite means on any used column, or a non-finite committed state, are reported at the round's root.
    used = torch.arange(window.width + 1, device=roots.device) <= lengths[:, None]
    finite = (torch.isfinite(window.target_means).flatten(2).all(dim=2) | ~used).all(dim=1)
    finite &= torch.isfinite(committed).flatten(1).all(dim=1)
    first_bad = torch.where(finite | (roots >= horizon), horizon, roots).amin()
    return _Committed(committed, position, accepted, outcome.deltas, outcome.weights, first_bad)


def _commit(
    setup: _Setup, plan: _Plan, drafted: _Drafted, evaluated: tuple[torch.Tensor, torch.Tensor]
) -> tuple[SamplerState, _RoundLog]:
    """Verify every window in one call and commit each sample's next state; the drafter and the policy observe."""
    targets, predictions = evaluated
    width, horizon = drafted.states.shape[1] - 1, setup.horizon
    window = Window(drafted.states, drafted.draft_means[:, :width], targets, drafted.sigmas, plan.lengths)
    done = _verify_and_commit(window, drafted.randomness, setup.rule, plan.roots, horizon, plan.use_block)
    # The drafter sees every prediction of the round's call (which it keeps is its choice: any function of the past
    # keeps every rule exact).
    if plan.use_block is not None:
        block = plan.use_block
    else:
        block = torch.full_like(plan.active, isinstance(setup.rule, BlockRule))
    setup.drafter.observe_round(
        RoundObservation(
            plan.roots, plan.lengths, done.accepted, drafted.states, predictions, plan.active, block, horizon
        )
    )
    deltas = done.deltas
    if setup.policy.probes_plain_steps:
        # The draft at a plain step's root costs nothing for a free drafter; its gap tells the policy whether to
        # speculate again.
        gap = (targets[:, 0] - drafted.draft_means[:, 0]).flatten(1).double().norm(dim=1) / drafted.sigmas[:, 0]
        probe = (plan.lengths == 0) & plan.active & (drafted.sigmas[:, 0] > 0) & plan.ready
        first = torch.where(probe, gap, deltas[:, 0] if width else math.nan)
        deltas = torch.cat([first[:, None], deltas[:, 1:]], dim=1)
    setup.policy.observe(setup.rows, deltas, plan.lengths)
    next_state = SamplerState(done.states, done.position, torch.minimum(plan.first_bad_step, done.first_bad_step))
    log = _round_log(plan, done.accepted, done.deltas, done.weights, block)
    return next_state, log


def _stochastic_run_lengths(sigmas: torch.Tensor) -> torch.Tensor:
    """``runs[n]``: consecutive steps with sigma > 0 from step n (N + 1,), 0 at the horizon and at sigma-0 steps.

    ``sigmas`` is a host tensor (N,)."""
    steps = np.arange(sigmas.shape[0])
    # The first step at or after n with sigma == 0 (N if none), by a running minimum from the horizon backwards.
    stops = np.minimum.accumulate(np.where(sigmas.numpy() > 0, steps.shape[0], steps)[::-1])[::-1]
    return torch.from_numpy(np.append(stops - steps, 0))


def _round(
    setup: _Setup, state: SamplerState, plan: _Plan, layout: _Layout
) -> tuple[SamplerState, _RoundLog, _Plan, torch.Tensor]:
    """One round after planning: draft, one target call, verify and commit; then plan the next round (what
    ``compile=True`` compiles into one graph). Returns the next state, the round's log, the next plan and its flags."""
    drafted = _draft(setup, plan, state, layout)
    next_state, log = _commit(setup, plan, drafted, _evaluate(setup, drafted, layout))
    return (next_state, log, *_plan(setup, next_state))


_Advance = Callable[[_Setup, SamplerState, _Plan, _Layout], tuple[SamplerState, _RoundLog, _Plan, torch.Tensor]]
"""A round after planning: :func:`_round` or its compiled form."""


@torch.no_grad()
def _speculate(
    evaluate: Evaluate,
    drafter: Drafter,
    chain: ModelChain | None,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    options: _Options,
) -> SpeculativeResult:
    start_time = time.perf_counter()
    sigmas = _check_chain(sigmas, x_init)
    if bool(((sigmas > 0) & (sigmas < SIGMA_MIN)).any()):  # (a host tensor)
        raise ValueError(
            f"speculative sampling needs every nonzero sigma >= {SIGMA_MIN:g}: verification divides by sigma^2 in "
            "float64, which underflows below that"
        )
    policy, device = options.policy, x_init.device
    horizon, batch = int(sigmas.shape[0]), int(x_init.shape[0])
    keys = sample_keys(options.generator, batch, device)
    if batch == 0:  # nothing to sample (a round reduces over its samples)
        empty = _empty_result(x_init.clone(), horizon)
        empty.wall_seconds = time.perf_counter() - start_time
        return empty
    if chain is not None:
        chain.prepare(device)
    drafter.reset(batch, chain, device)
    policy.reset(batch, drafter.draft_cost_per_step, drafter.draft_cost_per_round, _rule_family(options.rule), device)
    runs = _stochastic_run_lengths(sigmas)
    # The width of a compiled or replayed round: the policy's maximum, but no window is longer than a run of
    # stochastic steps (at least 1, the width the compiled rounds are tested at).
    widest = max(1, min(policy.max_window, int(runs.max())))
    runs = runs.to(device)
    rows = torch.arange(batch, device=device)
    setup = _Setup(evaluate, drafter, policy, options.rule, sigmas.to(device), runs, keys, rows, horizon)
    position = torch.zeros(batch, dtype=torch.long, device=device)
    state = SamplerState(x_init.clone(), position, torch.tensor(horizon, device=device))
    logs: list[_RoundLog] = []
    layouts: dict[int, _Layout] = {}
    advance = _compiled(device.type).speculative_round if options.compile else _round
    graph = _graph(options.graph, options.compile, device)
    replayed: StaticStep | None = None
    if graph is not None:
        layout = _layout(widest, batch, math.prod(x_init.shape[1:]), device)
        replayed = StaticStep(
            _carried_round(advance, setup, layout), graph, (drafter, policy), fallback=options.graph == "auto"
        )
    plan, flags = _plan(setup, state)
    with _strictly_compiled(options.compile):
        while True:
            running, longest, first_bad = flags.tolist()  # the round's one host synchronization
            if first_bad < horizon:
                _raise_non_finite(first_bad, "a target or draft mean (or the state they give) in the round starting")
            if not running:
                break
            if replayed is not None:
                (state, plan, flags), log = replayed((state, plan, flags))
                logs.append(log)
                continue
            width = widest if options.compile else longest
            if width not in layouts:
                layouts[width] = _layout(width, batch, math.prod(x_init.shape[1:]), device)
            state, log, plan, flags = advance(setup, state, plan, layouts[width])
            logs.append(log)
    result = _result(logs, state.states, setup, drafter)
    result.wall_seconds = time.perf_counter() - start_time
    return result


_Carry = tuple[SamplerState, _Plan, torch.Tensor]


def _carried_round(advance: _Advance, setup: _Setup, layout: _Layout) -> Callable[[_Carry], tuple[_Carry, _RoundLog]]:
    """A round as a step of a replayed loop (:class:`specdiff.graphs.StaticStep`): what it hands to the next round
    (state, plan, flags) and what it logs."""

    def step(carry: _Carry) -> tuple[_Carry, _RoundLog]:
        state, log, plan, flags = advance(setup, carry[0], carry[1], layout)
        return (state, plan, flags), log

    return step


def replayed_graph(graph: GraphMode, compile: bool, device: torch.device) -> Literal["cuda", "simulated"] | None:
    """The kind of graph a sampler called with ``graph`` and ``compile``, states on ``device``, replays its rounds
    (or plain steps) from; None when it runs them as they are.

    Raises
    ------
    ValueError
        An unknown mode, or ``graph="cuda"`` with states off CUDA.
    """
    if graph not in GRAPH_MODES:
        raise ValueError(f"graph must be one of {GRAPH_MODES}, got {graph!r}")
    if graph == "cuda" and device.type != "cuda":
        raise ValueError(f"graph='cuda' needs states on a CUDA device, got {device}")
    if graph == "simulated":
        return "simulated"
    return "cuda" if graph == "cuda" or (graph == "auto" and compile and device.type == "cuda") else None


def _graph(mode: GraphMode, compiled: bool, device: torch.device) -> Graph | None:
    """The graph that records a round (or a plain step), or None to run them as they are."""
    kind = replayed_graph(mode, compiled, device)
    return None if kind is None else (SimulatedGraph() if kind == "simulated" else CudaGraph())


def _rule_family(rule: VerificationRule | RuleChoice) -> str:
    if isinstance(rule, RuleChoice):
        return "adaptive"
    return "block" if isinstance(rule, BlockRule) else "token"


def _result(logs: list[_RoundLog], samples: torch.Tensor, setup: _Setup, drafter: Drafter) -> SpeculativeResult:
    """The run's statistics, moved to the host once and unpacked there for all rounds at once (numpy arrays: a
    tensor operation costs microseconds of dispatch, and a run has rounds x fields of them)."""
    batch = samples.shape[0]
    result = _empty_result(samples, setup.horizon)
    if not logs:
        return result
    widths = [log.width for log in logs]
    flat = torch.cat([log.packed for log in logs]).cpu().numpy()
    integers, padded = _unpack(flat, batch, np.array(widths))
    roots, lengths, accepted, active, block = integers
    per_round, per_step = drafter.draft_cost_per_round, drafter.draft_cost_per_step
    for width in widths:
        if width:
            result.draft_calls += width
            result.draft_cost += per_round + per_step * width
    result.rounds = result.target_calls = len(logs)
    result.target_evaluations = batch * (sum(widths) + len(logs))
    active_rows = active.astype(bool)
    result.sample_rounds = torch.from_numpy(active_rows.sum(axis=0, dtype=np.int64))
    # Each sample's draft cost summed round by round, in the order the rounds ran (accumulate adds sequentially).
    costs = np.where(lengths > 0, per_round + per_step * lengths.astype(np.float64), 0.0)
    result.sample_draft_cost = torch.from_numpy(np.add.accumulate(costs, axis=0)[-1].copy())
    stochastic = setup.sigmas.cpu().numpy()[np.minimum(roots, setup.horizon - 1)] > 0
    result.plain_steps = int((active_rows & (lengths == 0) & stochastic).sum())
    # The verified rows of every round, one array per field, split into rounds.
    verified = lengths > 0
    ends = np.cumsum(verified.sum(axis=1)).tolist()
    steps, windows, accepted_lengths, blocks = (x[verified] for x in (roots, lengths, accepted, block.astype(bool)))
    deltas, weights = padded[:, verified]
    for start, end, width in zip([0, *ends[:-1]], ends, lengths.max(axis=1).tolist(), strict=True):
        if width:
            result.steps.append(torch.from_numpy(steps[start:end]))
            result.windows.append(torch.from_numpy(windows[start:end]))
            result.accepted.append(torch.from_numpy(accepted_lengths[start:end]))
            result.block_verified.append(torch.from_numpy(blocks[start:end]))
            result.deltas.append(torch.from_numpy(deltas[start:end, :width]))
            result.weights.append(torch.from_numpy(weights[start:end, :width]))
    return result


def _empty_result(samples: torch.Tensor, horizon: int) -> SpeculativeResult:
    """A result with no rounds yet: zero counts, every sample's statistics 0."""
    batch = samples.shape[0]
    result = SpeculativeResult(
        samples=samples,
        sample_rounds=torch.zeros(batch, dtype=torch.long),
        sample_draft_cost=torch.zeros(batch, dtype=torch.float64),
    )
    result._horizon = horizon
    return result


def _unpack(flat: np.ndarray, batch: int, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fields of R packed round logs (:class:`_RoundLog`, concatenated in ``flat``) by two gathers: the
    (5, R, B) integer fields (int64) and the (2, R, B, widest) gaps and weights, NaN beyond each round's width."""
    rounds, head = widths.shape[0], 5 * batch
    sizes = head + 2 * batch * widths
    starts = (np.cumsum(sizes) - sizes).reshape(1, rounds, 1)
    integers = flat[starts + np.arange(head).reshape(5, 1, batch)].astype(np.int64)  # exact: they are below 2^53
    widths = widths.reshape(1, rounds, 1, 1)
    columns = np.arange(int(widths.max()))
    # The entry (k, r, b, j) of round r's (2, B, L_r) block where j < L_r.
    rows = (np.arange(2).reshape(2, 1, 1, 1) * batch + np.arange(batch).reshape(1, 1, batch, 1)) * widths
    positions = np.minimum(starts[..., None] + head + rows + columns, flat.shape[0] - 1)
    return integers, np.where(columns < widths, flat[positions], np.nan)


@dataclass(frozen=True)
class _Compiled:
    """The compiled forms of a speculative round (:func:`_round`) and of a stochastic plain step."""

    speculative_round: _Advance
    plain_step: Callable[..., tuple[torch.Tensor, torch.Tensor]]


#: Nonzero sigmas below this are refused by the speculative samplers (verification divides by sigma^2 in float64).
SIGMA_MIN = 1e-150

#: Compiled graphs of one function (the round, the plain step, the model code past a graph break) that a
#: ``compile=True`` run lets torch keep per process, unless ``torch._dynamo.config.recompile_limit`` allows more. Past
#: its limit torch would run the function eagerly with only a warning; the sampler raises instead.
COMPILED_GRAPHS_LIMIT = 128


def _strict_patch(limit: int) -> contextlib.AbstractContextManager[None]:
    # A new patch per run (about 30 µs): torch 2.11's patch object cannot be entered again before it exits (threads).
    return torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True)


@contextlib.contextmanager
def _strictly_compiled(compile: bool) -> Iterator[None]:
    """Within the block, a compiled function past its limit of graphs raises a RuntimeError that says why, instead of
    running eagerly (``compile=False``: nothing changes). The limit is the larger of :data:`COMPILED_GRAPHS_LIMIT`
    and torch's ``recompile_limit``."""
    if not compile:
        yield
        return
    limit = max(COMPILED_GRAPHS_LIMIT, int(torch._dynamo.config.recompile_limit))
    try:
        with _strict_patch(limit):
            yield
    except torch._dynamo.exc.FailOnRecompileLimitHit as error:
        raise RuntimeError(
            f"compile=True: a compiled function of this run would need more than {limit} graphs in this process, "
            "and would run eagerly past them. The round (and the plain step) compiles once per number of steps, "
            "batch size, state shape and configuration (model, drafter, rule, window); model code that reads a "
            "device value on the host compiles again at every step. Drop the graphs kept so far with "
            "torch.compiler.reset(), raise torch._dynamo.config.recompile_limit, or pass compile=False."
        ) from error


#: ``torch.compile`` options per device type. On a CPU the graph's wrapper code is generated in C++ rather than
#: Python, which halved the host time of a compiled round in a one-off comparison (d = 64, B = 1, L = 8).
_COMPILE_OPTIONS: dict[str, dict[str, bool]] = {"cpu": {"cpp_wrapper": True}}


@functools.cache
def _compiled(device_type: str) -> _Compiled:
    """The compiled functions for a device type, made on the first ``compile=True`` call (importing torch's compiler
    takes seconds) and kept for the process: torch.compile keeps one graph per shape and traced code
    (dynamic=False), reused by every call with the same shapes and the same model code."""
    options: dict[str, str | int | bool | Callable[..., object]] = dict(_COMPILE_OPTIONS.get(device_type, {}))
    return _Compiled(
        torch.compile(_round, dynamic=False, options=options),
        torch.compile(_plain_model_step, dynamic=False, options=options),
    )
