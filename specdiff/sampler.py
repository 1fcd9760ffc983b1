"""Speculative sampling of any Gaussian Markov chain ``x_{n+1} = target_mean(x_n, n) + sigmas[n] * noise``.

``plain_chain`` is the reference. ``speculative_chain`` drafts up to ``window`` steps for every active sample,
evaluates the target on all window states of all samples in **one** batched call per round, verifies with the
chosen rule (``specdiff.verify``) and commits. Samples progress at their own speed and drop out when finished.

Randomness is per sample: sample i draws everything from its own ``torch.Generator`` in a fixed order, so its output
is bitwise the same whatever the batch size and whatever the other samples do (given a mean function that acts row
by row). Per round and sample the draws are, in order: the draft noise ``randn(L, *event)``, the uniforms
``rand(L)``, the residual uniform ``rand(1)`` and the residual / bonus noise ``randn(*event)``.

Horizon and deterministic steps: the window never runs past the horizon N or through a step with sigma 0. When the
window ends at the horizon the bonus step is dropped (its draw is simply not used, which marginalizes it out).
When the step after the window is deterministic (sigma 0) the bonus is that step's mean, which the batched call has
already computed. A sample whose next step is deterministic takes it plainly, inside the same batched call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

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
        Sequential (batched) draft calls.
    rounds : int
    accepted : list of Tensor
        Per verified (sample, round): a (k,) long tensor of accepted lengths per round, in round order.
    deltas : list of Tensor
        Per round, the (k, L) gaps of the verified drafted steps (NaN-free; only steps 1..L of each window).
    weights : list of Tensor
        Per round, the (k, L) block weights (or token acceptance probabilities).
    windows : list of Tensor
        Per round, the (k,) window length of each verified sample.
    wall_seconds : float
    """

    samples: torch.Tensor
    target_calls: int = 0
    target_evaluations: int = 0
    draft_calls: int = 0
    rounds: int = 0
    accepted: list[torch.Tensor] = field(default_factory=list)
    deltas: list[torch.Tensor] = field(default_factory=list)
    weights: list[torch.Tensor] = field(default_factory=list)
    windows: list[torch.Tensor] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def steps_per_call(self) -> float:
        """Committed steps per sequential target call, ``N / target_calls`` for a batch of one."""
        return float("nan") if self.target_calls == 0 else self._horizon / self.target_calls

    _horizon: int = 0


def sample_generators(generator: torch.Generator | Sequence[torch.Generator], batch: int) -> list[torch.Generator]:
    """One generator per sample: the given list, or ``batch`` generators seeded deterministically from one.

    Sample i of a split generator is seeded with ``base + i`` where ``base`` is one 62-bit draw from ``generator``,
    so sample i's stream does not depend on the batch size.
    """
    if isinstance(generator, torch.Generator):
        base = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return [torch.Generator().manual_seed(base + index) for index in range(batch)]
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"expected one generator per sample ({batch}), got {len(generators)}")
    return generators


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
        Per-sample noise (sample i draws ``randn(*event)`` per stochastic step from its own generator).

    Returns
    -------
    ChainResult
    """
    start = time.perf_counter()
    sigmas = _check_chain(sigmas, x_init)
    generators = sample_generators(generator, x_init.shape[0])
    state = x_init.clone()
    event = tuple(x_init.shape[1:])
    for step in range(sigmas.shape[0]):
        steps = torch.full((state.shape[0],), step, dtype=torch.long, device=state.device)
        mean = target_mean(state, steps)
        sigma = float(sigmas[step])
        if sigma > 0:
            noise = torch.stack([torch.randn(event, generator=g, dtype=state.dtype) for g in generators])
            state = mean + sigma * noise.to(state.device)
        else:
            state = mean
    return ChainResult(
        samples=state,
        target_calls=int(sigmas.shape[0]),
        target_evaluations=int(sigmas.shape[0]) * int(x_init.shape[0]),
        wall_seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class _RowRandomness:
    """Randomness of one round for the rows with window length L."""

    draft_noise: torch.Tensor  # (k, L, *event)
    uniforms: torch.Tensor  # (k, L)
    residual_uniforms: torch.Tensor  # (k,)
    residual_noise: torch.Tensor  # (k, *event)


def _draw(
    generators: list[torch.Generator], rows: list[int], length: int, event: tuple[int, ...], dtype: torch.dtype
) -> _RowRandomness:
    """Each row's draws for one round, from its own generator in the documented order."""
    draft_noise: list[torch.Tensor] = []
    uniforms: list[torch.Tensor] = []
    residual_uniforms: list[torch.Tensor] = []
    residual_noise: list[torch.Tensor] = []
    for row in rows:
        g = generators[row]
        draft_noise.append(torch.randn((length, *event), generator=g, dtype=dtype))
        uniforms.append(torch.rand(length, generator=g, dtype=torch.float64))
        residual_uniforms.append(torch.rand(1, generator=g, dtype=torch.float64))
        residual_noise.append(torch.randn(event, generator=g, dtype=dtype))
    return _RowRandomness(
        draft_noise=torch.stack(draft_noise),
        uniforms=torch.stack(uniforms),
        residual_uniforms=torch.cat(residual_uniforms),
        residual_noise=torch.stack(residual_noise),
    )


def _window_lengths(position: torch.Tensor, sigmas: torch.Tensor, window: int) -> torch.Tensor:
    """Drafted steps per row: up to ``window``, stopping at the horizon and before any sigma-0 step."""
    horizon = sigmas.shape[0]
    lengths = torch.zeros_like(position)
    stochastic = torch.cat([sigmas > 0, torch.zeros(1, dtype=torch.bool)])
    for row in range(position.shape[0]):
        start = int(position[row])
        length = 0
        while length < window and start + length < horizon and bool(stochastic[start + length]):
            length += 1
        lengths[row] = length
    return lengths


def speculative_chain(
    target_mean: MeanFunction,
    draft_mean: MeanFunction,
    sigmas: torch.Tensor,
    x_init: torch.Tensor,
    *,
    window: int,
    rule: Rule,
    generator: torch.Generator | Sequence[torch.Generator],
) -> SpeculativeResult:
    """Speculative sampling of the chain of ``plain_chain``, exactly distributed as it.

    Parameters
    ----------
    target_mean, draft_mean : callable
        ``(states (M, *event), steps (M,)) -> means (M, *event)``; the target is called once per round on every
        window state of every active sample, the draft once per drafted position.
    sigmas : Tensor, shape (N,)
    x_init : Tensor, shape (B, *event)
    window : int
        Maximum drafted steps per round (>= 1).
    rule : {"token-reflection", "token-residual", "block"}
    generator : torch.Generator or sequence of B generators

    Returns
    -------
    SpeculativeResult
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if not isinstance(window, int) or window < 1:
        raise ValueError("window must be an int >= 1")
    start_time = time.perf_counter()
    sigmas = _check_chain(sigmas, x_init)
    horizon = int(sigmas.shape[0])
    batch, event = int(x_init.shape[0]), tuple(x_init.shape[1:])
    generators = sample_generators(generator, batch)
    state = x_init.clone()
    position = torch.zeros(batch, dtype=torch.long)
    result = SpeculativeResult(samples=state)
    while bool((position < horizon).any()):
        _round(target_mean, draft_mean, sigmas, state, position, window, rule, generators, event, result)
    result.samples = state
    result.wall_seconds = time.perf_counter() - start_time
    result._horizon = horizon
    return result


def _round(
    target_mean: MeanFunction,
    draft_mean: MeanFunction,
    sigmas: torch.Tensor,
    state: torch.Tensor,
    position: torch.Tensor,
    window: int,
    rule: Rule,
    generators: list[torch.Generator],
    event: tuple[int, ...],
    result: SpeculativeResult,
) -> None:
    horizon = sigmas.shape[0]
    active = torch.nonzero(position < horizon).squeeze(1)
    lengths = _window_lengths(position[active], sigmas, window)
    base = position[active]
    longest = int(lengths.max())
    device, dtype = state.device, state.dtype
    # Draft: states (k, longest+1, *event); row r uses columns 0..lengths[r].
    per_length = {}
    for length in sorted(set(lengths.tolist())):
        members = torch.nonzero(lengths == length).squeeze(1)
        per_length[length] = (members, _draw(generators, active[members].tolist(), length, event, dtype))
    states = torch.zeros((active.shape[0], longest + 1, *event), dtype=dtype, device=device)
    states[:, 0] = state[active]
    draft_means = torch.zeros((active.shape[0], max(longest, 1), *event), dtype=dtype, device=device)
    noise = torch.zeros_like(draft_means)
    for members, draws in per_length.values():
        if draws.draft_noise.shape[1] > 0:
            noise[members, : draws.draft_noise.shape[1]] = draws.draft_noise.to(device)
    for i in range(longest):
        rows = torch.nonzero(lengths > i).squeeze(1)
        means = draft_mean(states[rows, i], base[rows] + i)
        draft_means[rows, i] = means
        states[rows, i + 1] = means + sigmas[base[rows] + i].to(dtype)[(...,) + (None,) * len(event)] * noise[rows, i]
    result.draft_calls += longest
    # One batched target call on every window state whose step is inside the horizon.
    columns = torch.arange(longest + 1)
    needed = (columns[None, :] <= lengths[:, None]) & (base[:, None] + columns[None, :] < horizon)
    rows_index, columns_index = torch.nonzero(needed, as_tuple=True)
    targets = torch.zeros_like(states)
    targets[rows_index, columns_index] = target_mean(
        states[rows_index, columns_index], base[rows_index] + columns_index
    )
    result.target_calls += 1
    result.target_evaluations += int(rows_index.shape[0])
    result.rounds += 1
    for length, (members, draws) in per_length.items():
        rows = active[members]
        row_base = base[members]
        if length == 0:
            # A deterministic step (sigma 0): take it plainly from the batched call.
            state[rows] = targets[members, 0]
            position[rows] = row_base + 1
            continue
        bonus_step = row_base + length
        has_bonus = bonus_step < horizon
        bonus_sigma = torch.where(
            has_bonus, sigmas[bonus_step.clamp(max=horizon - 1)], torch.zeros_like(bonus_step, dtype=torch.float64)
        )
        step_sigmas = torch.cat(
            [
                sigmas[row_base[:, None] + torch.arange(length)[None, :]],
                torch.where(bonus_sigma > 0, bonus_sigma, 1.0)[:, None],
            ],
            dim=1,
        )
        outcome = apply_rule(
            rule,
            states[members, : length + 1],
            draft_means[members, :length],
            targets[members, : length + 1],  # target at window states 0..L = means of steps 1..L+1
            step_sigmas,
            uniforms=draws.uniforms,
            residual_uniforms=draws.residual_uniforms,
            residual_noise=draws.residual_noise.to(device),
        )
        accepted = outcome.accepted
        full = accepted == length
        next_state = outcome.next_state.clone()
        deterministic_bonus = full & has_bonus & (bonus_sigma == 0)
        next_state[deterministic_bonus] = targets[members[deterministic_bonus], length]
        kept = states[members, accepted]
        # Without a bonus step the window ends at the horizon: commit the last drafted state.
        new_state = torch.where((full & ~has_bonus)[(...,) + (None,) * len(event)], kept, next_state)
        state[rows] = new_state
        position[rows] = torch.clamp(row_base + accepted + 1, max=horizon)
        result.accepted.append(accepted)
        result.deltas.append(outcome.deltas[:, :length])
        result.weights.append(outcome.weights)
        result.windows.append(torch.full_like(accepted, length))
