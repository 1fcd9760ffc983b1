"""Speculative sampling of any Gaussian Markov chain ``x_{n+1} = target_mean(x_n, n) + sigmas[n] * noise``.

``plain_chain`` is the reference. ``speculative_chain`` drafts up to ``window`` steps for every active sample,
evaluates the target on all window states of all samples in **one** batched call per round, verifies with the
chosen rule (``specdiff.verify``) and commits. Samples progress at their own speed and drop out when finished.
``sample`` and ``sample_plain`` do the same for a diffusion model and a kernel (``specdiff.drafters.ModelChain``),
with a drafter from ``specdiff.drafters`` and a window policy from ``specdiff.policies``. The window of each sample
is chosen by the policy from that sample's own history; window 0 is a plain step.

Randomness is per sample: sample i draws everything from its own ``torch.Generator`` through
:class:`specdiff.randomness.SampleStreams` (buffered, so a batch costs a few large draws), so its output is bitwise the
same whatever the batch size and whatever the other samples do (given a mean function that acts row by row). Per
round, sample i takes from its streams, in order: ``(L + 1) * d`` normals (the draft noise of the L drafted steps,
then the residual / bonus noise) and, when ``L >= 1``, ``L + 1`` uniforms (the L uniforms of the rule, then the
residual uniform). A plain stochastic step (L = 0) takes ``d`` normals, a deterministic one nothing.

Horizon and deterministic steps: the window never runs past the horizon N or through a step with sigma 0. When the
window ends at the horizon the bonus step is dropped (its draw is simply not used, which marginalizes it out).
When the step after the window is deterministic (sigma 0) the bonus is that step's mean, which the batched call has
already computed. A sample whose next step is deterministic takes it plainly, inside the same batched call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from specdiff.drafters import Drafter, FreeDrafter, MeanDrafter, Model, ModelChain, kernel_sigmas
from specdiff.kernels import Kernel
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.randomness import SampleStreams, sample_generators
from specdiff.verify import RULES, Rule, apply_rule

MeanFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``mean(states, steps)``: states (M, *event) and per-row step indices (M,) long -> means (M, *event)."""


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
        States evaluated by the target over all rounds.
    draft_calls : int
        Sequential (batched) draft calls: drafted positions, summed over rounds.
    draft_cost : float
        Sequential cost of the drafts in target-call units (the drafter's per-step and per-round costs).
    plain_steps : int
        Steps taken plainly (window 0 chosen by the policy, or no draft available yet), summed over samples.
    rounds : int
    accepted : list of Tensor
        Per verified (sample, round): a (k,) long tensor of accepted lengths per round, in round order.
    deltas : list of Tensor
        Per round, the (k, L) gaps of the verified drafted steps, L the round's longest window; row r holds the gaps
        of its steps 1..L_r and NaN beyond its window L_r.
    weights : list of Tensor
        Per round, the (k, L) block weights (or token acceptance probabilities), NaN beyond each row's window.
    windows : list of Tensor
        Per round, the (k,) window length L_r of each verified sample.
    steps : list of Tensor
        Per round, the (k,) step index of each verified window's root.
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

    _horizon: int = 0


def _check_chain(sigmas: torch.Tensor, x_init: torch.Tensor) -> torch.Tensor:
    if sigmas.dim() != 1 or sigmas.shape[0] < 1:
        raise ValueError("sigmas must have shape (N,) with N >= 1")
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()):
        raise ValueError("sigmas must be finite and >= 0")
    if x_init.dim() < 2:
        raise ValueError("x_init must have shape (B, *event)")
    if not bool(torch.isfinite(x_init).all()):
        raise ValueError("x_init contains NaN or inf")
    return sigmas.to(torch.float64)


def plain_chain(
    target_mean: MeanFunction,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
) -> ChainResult:
    """Ancestral sampling of the target chain: ``x_{n+1} = target_mean(x_n, n) + sigmas[n] * noise_n``.

    Parameters
    ----------
    target_mean : callable
        ``(states (B, *event), steps (B,)) -> means (B, *event)``.
    sigmas : Tensor, shape (N,)
        Standard deviation of each step (0 for a deterministic step).
    x_init : Tensor, shape (B, *event)
    generator : torch.Generator or sequence of B generators
        Per-sample noise (sample i takes ``d`` normals per stochastic step from its own stream).

    Returns
    -------
    ChainResult
    """
    start = time.perf_counter()
    sigmas = _check_chain(sigmas, x_init)
    generators = sample_generators(generator, x_init.shape[0])
    streams = SampleStreams(generators, x_init.dtype)
    state = x_init.clone()
    batch, event = x_init.shape[0], tuple(x_init.shape[1:])
    rows, counts = torch.arange(batch), torch.full((batch,), math.prod(event), dtype=torch.long)
    for step in range(sigmas.shape[0]):
        steps = torch.full((batch,), step, dtype=torch.long, device=state.device)
        mean = target_mean(state, steps)
        sigma = float(sigmas[step])
        if sigma > 0:
            noise = streams.normals(rows, counts).reshape(batch, *event)
            state = torch.add(mean, noise.to(state.device), alpha=sigma)
        else:
            state = mean
    return ChainResult(
        samples=state,
        target_calls=int(sigmas.shape[0]),
        target_evaluations=int(sigmas.shape[0]) * int(x_init.shape[0]),
        wall_seconds=time.perf_counter() - start,
    )


def _stochastic_run_lengths(sigmas: torch.Tensor) -> torch.Tensor:
    """``runs[n]``: consecutive steps with sigma > 0 from step n (N + 1,), 0 at the horizon and at sigma-0 steps."""
    horizon = sigmas.shape[0]
    runs = torch.zeros(horizon + 1, dtype=torch.long)
    for step in range(horizon - 1, -1, -1):
        runs[step] = runs[step + 1] + 1 if float(sigmas[step]) > 0 else 0
    return runs


def _as_policy(window: int | WindowPolicy) -> WindowPolicy:
    if isinstance(window, WindowPolicy):
        return window
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1 or a WindowPolicy, got {window!r}")
    return FixedWindow(window)


Evaluate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``evaluate(states (M, *event), steps (M,), rows (M,)) -> (means, predictions)``: one target call."""


def speculative_chain(
    target_mean: MeanFunction,
    draft_mean: MeanFunction | Drafter,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    *,
    window: int | WindowPolicy,
    rule: Rule,
    generator: torch.Generator | Sequence[torch.Generator],
) -> SpeculativeResult:
    """Speculative sampling of the chain of ``plain_chain``, exactly distributed as it.

    Parameters
    ----------
    target_mean : callable
        ``(states (M, *event), steps (M,)) -> means (M, *event)``, called once per round on every window state of
        every active sample.
    draft_mean : callable or Drafter
        ``(states (M, *event), steps (M,)) -> means (M, *event)``, called once per drafted position; or a
        :class:`specdiff.drafters.Drafter` that needs no model (for example a ``MeanDrafter`` with a cost).
    sigmas : Tensor, shape (N,)
    x_init : Tensor, shape (B, *event)
    window : int or WindowPolicy
        Maximum drafted steps per round (>= 1), or a policy choosing it per sample and round.
    rule : {"token-reflection", "token-residual", "block"}
    generator : torch.Generator or sequence of B generators

    Returns
    -------
    SpeculativeResult
    """
    drafter = draft_mean if isinstance(draft_mean, Drafter) else MeanDrafter(draft_mean)

    def evaluate(states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means = target_mean(states, steps)
        return means, means

    return _speculate(evaluate, drafter, None, sigmas, x_init, window=window, rule=rule, generator=generator)


def sample(
    model: Model,
    kernel: Kernel,
    x_init: torch.Tensor,
    *,
    drafter: Drafter | None = None,
    window: int | WindowPolicy | None = None,
    rule: Rule = "block",
    generator: torch.Generator | Sequence[torch.Generator],
    conditioning: Mapping[str, torch.Tensor] | None = None,
) -> SpeculativeResult:
    """Speculative sampling of a diffusion model, exactly distributed as :func:`sample_plain`.

    Parameters
    ----------
    model : callable
        ``model(x, t, **conditioning) -> prediction``: x (M, *event) the kernel's model input, t (M,) timesteps.
    kernel : Kernel
        DDPM / DDIM / Euler-Maruyama / Euler ancestral kernel giving each step's Gaussian transition.
    x_init : Tensor, shape (B, *event)
        Initial states, typically ``kernel.prior_std * randn``.
    drafter : Drafter, optional
        Default: the reuse :class:`~specdiff.drafters.FreeDrafter`.
    window : int or WindowPolicy, optional
        Default: :class:`~specdiff.policies.AdaptiveWindow` (at most 16 steps, minimizing target calls).
    rule : {"token-reflection", "token-residual", "block"}
    generator : torch.Generator or sequence of B generators
    conditioning : mapping of str to Tensor (B, ...), optional
        Per-sample keyword arguments of the model (e.g. ``{"y": labels}``).

    Returns
    -------
    SpeculativeResult
    """
    chain = ModelChain(model, kernel, {} if conditioning is None else dict(conditioning))
    _check_conditioning(chain, x_init)
    return _speculate(
        chain.evaluate,
        FreeDrafter() if drafter is None else drafter,
        chain,
        kernel_sigmas(kernel),
        x_init,
        window=AdaptiveWindow() if window is None else window,
        rule=rule,
        generator=generator,
    )


def sample_plain(
    model: Model,
    kernel: Kernel,
    x_init: torch.Tensor,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
    conditioning: Mapping[str, torch.Tensor] | None = None,
) -> ChainResult:
    """Plain ancestral sampling of a diffusion model (one target call per step); arguments as :func:`sample`."""
    chain = ModelChain(model, kernel, {} if conditioning is None else dict(conditioning))
    _check_conditioning(chain, x_init)
    rows = torch.arange(x_init.shape[0])

    def target_mean(states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return chain.evaluate(states, steps, rows)[0]

    return plain_chain(target_mean, kernel_sigmas(kernel), x_init, generator=generator)


def _check_conditioning(chain: ModelChain, x_init: torch.Tensor) -> None:
    for name, value in chain.conditioning.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != x_init.shape[0]:
            raise ValueError(f"conditioning {name!r} must be a tensor with one row per sample ({x_init.shape[0]})")


def _speculate(
    evaluate: Evaluate,
    drafter: Drafter,
    chain: ModelChain | None,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    *,
    window: int | WindowPolicy,
    rule: Rule,
    generator: torch.Generator | Sequence[torch.Generator],
) -> SpeculativeResult:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    policy = _as_policy(window)
    start_time = time.perf_counter()
    sigmas = _check_chain(sigmas, x_init)
    horizon = int(sigmas.shape[0])
    batch = int(x_init.shape[0])
    streams = SampleStreams(sample_generators(generator, batch), x_init.dtype)
    drafter.reset(batch, chain)
    policy.reset(batch, drafter.draft_cost_per_step, drafter.draft_cost_per_round, rule)
    context = _Context(evaluate, drafter, policy, sigmas, _stochastic_run_lengths(sigmas), rule, streams)
    state = x_init.clone()
    position = torch.zeros(batch, dtype=torch.long)
    result = SpeculativeResult(
        samples=state,
        sample_rounds=torch.zeros(batch, dtype=torch.long),
        sample_draft_cost=torch.zeros(batch, dtype=torch.float64),
    )
    while bool((position < horizon).any()):
        _round(context, state, position, result)
    result.samples = state
    result.wall_seconds = time.perf_counter() - start_time
    result._horizon = horizon
    return result


@dataclass(frozen=True)
class _Context:
    evaluate: Evaluate
    drafter: Drafter
    policy: WindowPolicy
    sigmas: torch.Tensor  # (N,) float64
    runs: torch.Tensor  # (N + 1,) stochastic run lengths
    rule: Rule
    streams: SampleStreams


def _column(values: torch.Tensor, event_dims: int) -> torch.Tensor:
    return values[(...,) + (None,) * event_dims]


def _round(context: _Context, state: torch.Tensor, position: torch.Tensor, result: SpeculativeResult) -> None:
    sigmas, drafter, policy = context.sigmas, context.drafter, context.policy
    horizon = sigmas.shape[0]
    event = tuple(state.shape[1:])
    size = math.prod(event)
    device, dtype = state.device, state.dtype
    active = torch.nonzero(position < horizon).squeeze(1)
    count = int(active.shape[0])
    result.sample_rounds[active] += 1
    base = position[active]
    wanted = policy.windows(active)
    lengths = torch.where(drafter.ready(active), torch.minimum(wanted, context.runs[base]), 0)
    stochastic_root = sigmas[base] > 0
    longest = int(lengths.max())
    if longest == 0:
        _plain_round(context, state, position, result, active, base, stochastic_root)
        return

    # Each sample's randomness from its own streams: (L + 1) d normals and, when L >= 1, L + 1 uniforms (a plain
    # stochastic step takes d normals, a deterministic one nothing). Row r's noise for window state j is noise[r, j].
    normal_counts = torch.where(stochastic_root, (lengths + 1) * size, 0)
    normals = context.streams.normals(active, normal_counts)
    if normals.shape[1] < (longest + 1) * size:  # every row is deterministic
        normals = torch.zeros((count, (longest + 1) * size), dtype=dtype)
    noise = normals.reshape(count, longest + 1, *event).to(device)
    uniforms = context.streams.uniforms(active, torch.where(lengths > 0, lengths + 1, 0))

    # Draft: states (k, longest + 1, *event); row r uses columns 0..lengths[r] (the others stay 0).
    states = torch.zeros((count, longest + 1, *event), dtype=dtype, device=device)
    states[:, 0] = state[active]
    draft_means = torch.zeros((count, max(longest, 1), *event), dtype=dtype, device=device)
    for i in range(longest):
        drafting = lengths > i
        rows = slice(None) if bool(drafting.all()) else torch.nonzero(drafting).squeeze(1)
        means = drafter.draft(states[rows, i], base[rows] + i, active[rows], i)
        draft_means[rows, i] = means
        step_sigmas = _column(sigmas[base[rows] + i].to(device=device, dtype=dtype), len(event))
        states[rows, i + 1] = torch.addcmul(means, step_sigmas, noise[rows, i])
    if longest > 0:
        result.draft_calls += longest
        result.draft_cost += drafter.draft_cost_per_round + drafter.draft_cost_per_step * longest
        own = torch.where(lengths > 0, drafter.draft_cost_per_round + drafter.draft_cost_per_step * lengths, 0.0)
        result.sample_draft_cost[active] += own.to(torch.float64)

    # One batched target call on every window state whose step is inside the horizon.
    targets, outputs, evaluated = _evaluate_windows(context, states, base, active, lengths)
    result.target_calls += 1
    result.target_evaluations += evaluated
    result.rounds += 1

    deterministic = torch.nonzero((lengths == 0) & ~stochastic_root).squeeze(1)
    if deterministic.numel():
        _deterministic_step(context, state, position, active, base, targets, outputs, deterministic)
    plain = torch.nonzero((lengths == 0) & stochastic_root).squeeze(1)
    if plain.numel():
        _plain_step(context, state, position, result, active, base, states, targets, outputs, plain, noise[plain, 0])
    speculating = torch.nonzero(lengths > 0).squeeze(1)
    if speculating.numel():
        window = _Speculated(active, base, lengths, states, draft_means, targets, outputs, noise, uniforms)
        _verify_and_commit(context, state, position, result, window.rows(speculating, count))


def _plain_round(
    context: _Context,
    state: torch.Tensor,
    position: torch.Tensor,
    result: SpeculativeResult,
    active: torch.Tensor,
    base: torch.Tensor,
    stochastic_root: torch.Tensor,
) -> None:
    """A round in which every active sample takes a plain step (window 0): the general round without its windows.

    It draws, evaluates and commits exactly what the general round does with every window 0 (d normals per
    stochastic root, no uniforms; one target call on the roots), so the samples are bitwise the same.
    """
    count = int(active.shape[0])
    event = tuple(state.shape[1:])
    normals = context.streams.normals(active, torch.where(stochastic_root, math.prod(event), 0))
    roots = state[active]
    means, predictions = context.evaluate(roots, base, active)
    result.target_calls += 1
    result.target_evaluations += count
    result.rounds += 1
    # Width-1 windows (k, 1, ...) as views, in the layout the general round hands to _plain_step.
    states, targets, outputs = roots[:, None], means.to(state.dtype)[:, None], predictions[:, None]
    if not bool(stochastic_root.all()):
        deterministic = torch.nonzero(~stochastic_root).squeeze(1)
        _deterministic_step(context, state, position, active, base, targets, outputs, deterministic)
    plain = torch.nonzero(stochastic_root).squeeze(1)
    if plain.numel():
        noise = normals.reshape(count, *event)[plain].to(state.device)
        _plain_step(context, state, position, result, active, base, states, targets, outputs, plain, noise)


def _deterministic_step(
    context: _Context,
    state: torch.Tensor,
    position: torch.Tensor,
    active: torch.Tensor,
    base: torch.Tensor,
    targets: torch.Tensor,
    outputs: torch.Tensor,
    members: torch.Tensor,
) -> None:
    """Rows ``members`` whose step is deterministic (sigma 0): take it plainly from the batched call's column 0."""
    rows = active[members]
    state[rows] = targets[members, 0]
    position[rows] += 1
    context.drafter.observe(rows, base[members], outputs[members, 0])


def _evaluate_windows(
    context: _Context, states: torch.Tensor, base: torch.Tensor, active: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Target means and predictions (k, longest + 1, ...) at the window states of steps inside the horizon, from
    one call (0 elsewhere), and the number of states evaluated."""
    horizon = context.sigmas.shape[0]
    count, width, event = states.shape[0], states.shape[1], states.shape[2:]
    columns = torch.arange(width)
    steps = base[:, None] + columns[None, :]
    needed = (columns[None, :] <= lengths[:, None]) & (steps < horizon)
    if bool(needed.all()):
        means, predictions = context.evaluate(
            states.reshape(count * width, *event), steps.reshape(-1), active.repeat_interleave(width)
        )
        targets = means.to(states.dtype).reshape(states.shape)
        return targets, predictions.reshape(count, width, *predictions.shape[1:]), count * width
    rows_index, columns_index = torch.nonzero(needed, as_tuple=True)
    means, predictions = context.evaluate(
        states[rows_index, columns_index], steps[rows_index, columns_index], active[rows_index]
    )
    targets = torch.zeros_like(states)
    targets[rows_index, columns_index] = means.to(states.dtype)
    outputs = torch.zeros((count, width, *predictions.shape[1:]), dtype=predictions.dtype, device=states.device)
    outputs[rows_index, columns_index] = predictions
    return targets, outputs, int(rows_index.shape[0])


def _plain_step(
    context: _Context,
    state: torch.Tensor,
    position: torch.Tensor,
    result: SpeculativeResult,
    active: torch.Tensor,
    base: torch.Tensor,
    states: torch.Tensor,
    targets: torch.Tensor,
    outputs: torch.Tensor,
    members: torch.Tensor,
    noise: torch.Tensor,
) -> None:
    """Rows that take a plain stochastic step (window 0); a free drafter is probed at the root for its gap."""
    drafter, rows, row_base = context.drafter, active[members], base[members]
    step_sigmas = context.sigmas[row_base].to(device=state.device, dtype=state.dtype)
    state[rows] = torch.addcmul(targets[members, 0], _column(step_sigmas, state.dim() - 1), noise)
    position[rows] = row_base + 1
    result.plain_steps += int(members.numel())
    probe = members[drafter.ready(rows)] if context.policy.probes_plain_steps else members[:0]
    if probe.numel():
        # The draft at the root costs nothing for a free drafter; its gap tells the policy whether to speculate.
        draft = drafter.draft(states[probe, 0], base[probe], active[probe], 0)
        gap = (targets[probe, 0].double() - draft.double()).flatten(1).norm(dim=1)
        context.policy.observe(active[probe], (gap / context.sigmas[base[probe]].to(gap.device))[:, None])
    drafter.observe(rows, row_base, outputs[members, 0])


@dataclass(frozen=True)
class _Speculated:
    """The drafted windows of a round, one row per verified sample (window lengths L_r >= 1)."""

    active: torch.Tensor  # (m,) sample indices
    base: torch.Tensor  # (m,) step index of each window's root
    lengths: torch.Tensor  # (m,) L_r
    states: torch.Tensor  # (m, L + 1, *event)
    draft_means: torch.Tensor  # (m, L, *event)
    targets: torch.Tensor  # (m, L + 1, *event)
    outputs: torch.Tensor  # (m, L + 1, ...) target predictions
    noise: torch.Tensor  # (m, L + 1, *event): noise[r, L_r] is the residual / bonus noise
    uniforms: torch.Tensor  # (m, L + 1) float64: uniforms[r, :L_r] for the rule, uniforms[r, L_r] the residual's

    def rows(self, members: torch.Tensor, count: int) -> _Speculated:
        """The rows ``members`` of the round's k rows (no copy when they are all of them)."""
        if members.numel() == count:
            return self
        return _Speculated(*(getattr(self, name)[members] for name in self.__dataclass_fields__))


def _verify_and_commit(
    context: _Context,
    state: torch.Tensor,
    position: torch.Tensor,
    result: SpeculativeResult,
    window: _Speculated,
) -> None:
    """Verify every drafted window in one call (per-row lengths) and commit each sample's next state."""
    sigmas, horizon = context.sigmas, context.sigmas.shape[0]
    rows, row_base, lengths = window.active, window.base, window.lengths
    longest = int(window.draft_means.shape[1])
    event_dims = state.dim() - 1
    indices = torch.arange(rows.shape[0])
    bonus_step = row_base + lengths
    has_bonus = bonus_step < horizon
    bonus_sigma = torch.where(has_bonus, sigmas[bonus_step.clamp(max=horizon - 1)], 0.0)
    # Sigmas of steps 1..L_r (all > 0) and of the bonus step; 1 where the bonus is absent or deterministic (its draw
    # is then not used); columns beyond a row's window are ignored by the rule.
    step_sigmas = sigmas[(row_base[:, None] + torch.arange(longest + 1)[None, :]).clamp(max=horizon - 1)]
    step_sigmas[indices, lengths] = torch.where(bonus_sigma > 0, bonus_sigma, 1.0)
    outcome = apply_rule(
        context.rule,
        window.states,
        window.draft_means,
        window.targets,  # target at window states 0..L = means of steps 1..L+1
        step_sigmas,
        uniforms=window.uniforms[:, :longest],
        residual_uniforms=window.uniforms[indices, lengths],
        residual_noise=window.noise[indices, lengths],
        lengths=lengths,
    )
    accepted = outcome.accepted.cpu()  # the bookkeeping stays on the host; the states stay on their device
    full = accepted == lengths
    next_state = outcome.next_state
    deterministic_bonus = full & has_bonus & (bonus_sigma == 0)
    if bool(deterministic_bonus.any()):
        next_state[deterministic_bonus] = window.targets[deterministic_bonus, lengths[deterministic_bonus]]
    kept = window.states[indices, accepted]
    # Without a bonus step the window ends at the horizon: commit the last drafted state.
    state[rows] = torch.where(_column(full & ~has_bonus, event_dims).to(state.device), kept, next_state)
    position[rows] = torch.clamp(row_base + accepted + 1, max=horizon)
    # The drafter learns the target's predictions at the last two evaluated states of the committed trajectory.
    for lag in (1, 0):
        column = accepted - lag
        seen = (column >= 0) & (row_base + column < horizon)
        if bool(seen.any()):
            context.drafter.observe(rows[seen], row_base[seen] + column[seen], window.outputs[seen, column[seen]])
    deltas = outcome.deltas[:, :longest].cpu()
    context.policy.observe(rows, deltas)
    result.accepted.append(accepted)
    result.deltas.append(deltas)
    result.weights.append(outcome.weights.cpu())
    result.windows.append(lengths)
    result.steps.append(row_base)
