"""Drafters: where the draft means of a speculative window come from (docs/design.md §3.6–3.7).

A drafter proposes the mean ``nu_n(x)`` of each drafted step. Exactness never depends on the drafter: verification
corrects any draft that is a function of the past (the committed trajectory and the drafted states so far). Only
the acceptance, and so the speed, does. Each drafter reports its cost in target-call units, which the adaptive
window policy (``specdiff.policies``) weighs against the expected gain.

Model-level drafters see the target through a :class:`ModelChain` (a model, a kernel and the per-sample
conditioning) and receive, after each verification pass, every prediction of its batched target call together with
what was accepted (:meth:`Drafter.observe_round`, a :class:`RoundObservation`); by default they keep the predictions
at the last two evaluated states of each sample's committed trajectory (:meth:`Drafter.observe`). The drafters:

- :class:`FrozenDrafter` (De Bortoli et al.): one target call at the window root, its prediction reused for every
  step with that step's own coefficients. The first step is exact; a round costs two sequential calls.
- :class:`FreeDrafter` (self-speculative, training-free): (a) *reuse* a target prediction computed by the previous
  verification pass, so a round costs one sequential call: the one at the evaluated state nearest to the new root
  (``reuse="nearest"``, after a rejection the rejected draft's, at the new root's own step) or the one at the last
  committed state (``reuse="committed"``); (b) *early exit*: the first ``exit_blocks`` blocks of the target and its
  final layer (a model with ``forward_first_k``), costing about K/depth per step.
- :class:`ExtrapolatingDrafter`: the prediction extrapolated linearly in the step index from the last two target
  evaluations (free).
- :class:`ModelDrafter`: an independent (cheaper) model with the same interface as the target.
- :class:`MeanDrafter`: a chain-level draft ``draft_mean(x, n)`` for :func:`specdiff.sampler.speculative_chain`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from specdiff.chain import Model, ModelChain
from specdiff.verify import take_column

Reuse = Literal["nearest", "committed"]
REUSE_MODES: tuple[str, ...] = get_args(Reuse)


@dataclass(frozen=True)
class RoundObservation:
    """What a verification pass tells the drafter: every prediction of the round's batched target call.

    Attributes
    ----------
    roots : Tensor, shape (B,), long
        Each sample's root step (N for a finished sample).
    lengths : Tensor, shape (B,), long
        Each sample's window L (0: a plain step).
    accepted : Tensor, shape (B,), long
        Accepted drafted steps (the committed trajectory holds window columns ``0..accepted``).
    states : Tensor, shape (B, L_max + 1, *event)
        The window's states: column 0 the root, column j the j-th drafted state, at step ``roots + j``.
    predictions : Tensor, shape (B, L_max + 1, ...)
        The target's predictions at every window column.
    active : Tensor, shape (B,), bool
        The samples that ran this round.
    block : Tensor, shape (B,), bool
        Whether the block rule verified the sample's window (False: a token rule).
    horizon : int
        N, the number of steps.
    """

    roots: torch.Tensor
    lengths: torch.Tensor
    accepted: torch.Tensor
    states: torch.Tensor
    predictions: torch.Tensor
    active: torch.Tensor
    block: torch.Tensor
    horizon: int

    def column(self, column: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(steps (B,), predictions (B, ...), seen (B,) bool)`` at window column ``column`` (B,) of each sample;
        ``seen`` is False where the column is before the root, at the horizon or the sample did not run."""
        seen = (column >= 0) & (self.roots + column < self.horizon) & self.active
        column = column.clamp(min=0)
        return self.roots + column, take_column(self.predictions, column), seen


class Drafter:
    """Base class: proposes draft means and reports its cost in target-call units.

    Attributes
    ----------
    name : str
        Short label used in results tables.
    draft_cost_per_step : float
        Sequential cost of one drafted step, in target calls (0 for reuse / extrapolation, K/depth for early exit).
    draft_cost_per_round : float
        Sequential cost paid once per speculative round (1 for the frozen draft's root call).

    Notes
    -----
    Memory kept across rounds lives in tensor attributes of the drafter itself, updated in place or rebound to a
    tensor of the same shape and dtype: a round replayed from a graph (``graph=`` of the samplers,
    :mod:`specdiff.graphs`) follows those, not tensors kept in containers.
    """

    name = "drafter"
    draft_cost_per_step: float = 0.0
    draft_cost_per_round: float = 0.0

    def reset(self, batch: int, chain: ModelChain | None, device: torch.device | str = "cpu") -> None:
        """Start a new batch of ``batch`` samples whose states live on ``device`` (clears any per-sample memory)."""
        self.batch = batch
        self.chain = chain
        self.device = torch.device(device)

    def ready(self, rows: torch.Tensor) -> torch.Tensor:
        """Which samples ``rows`` (k,) can be drafted for now, (k,) bool on the rows' device (a reuse draft needs one
        evaluation)."""
        return torch.ones(rows.shape, dtype=torch.bool, device=rows.device)

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        """Draft means (M, *event) of steps (M,) from the states (M, *event) of samples ``rows`` (M,).

        ``slot`` is the index of the drafted step in its window (0: the step from the root).
        """
        raise NotImplementedError

    def observe(
        self, rows: torch.Tensor, steps: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Record the target's predictions (k, *event) at committed states of samples ``rows`` (k,) for steps (k,).

        Called in trajectory order after each verification pass (at most the last two evaluated states per sample).
        ``mask`` (k,) bool, optional: only the rows where it is True are recorded (the others are passed so that the
        shapes stay fixed from round to round); ``rows`` are distinct.
        """

    def observe_all(self, steps: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor) -> None:
        """:meth:`observe` for every sample of the batch at once, recording the rows where ``mask`` (B,) is True (a
        drafter with memory overrides it with whole-batch operations)."""
        self.observe(torch.arange(mask.shape[0], device=mask.device), steps, predictions, mask)

    def observe_round(self, observation: RoundObservation) -> None:
        """Learn from a verification pass (what the sampler calls every round, with no host reads).

        By default the predictions at the last two evaluated states of each sample's committed trajectory (window
        columns ``accepted - 1`` and ``accepted``) are passed to :meth:`observe_all`, in trajectory order.
        """
        for lag in (1, 0):
            self.observe_all(*observation.column(observation.accepted - lag))

    def _model_chain(self) -> ModelChain:
        chain = getattr(self, "chain", None)
        if chain is None:
            raise ValueError(f"{type(self).__name__} drafts from a model: use specdiff.sample, not speculative_chain")
        return chain


class MeanDrafter(Drafter):
    """A chain-level draft: ``draft_mean(states (M, *event), steps (M,)) -> means``.

    Parameters
    ----------
    draft_mean : callable
    draft_cost_per_step : float
        Its cost per drafted step in target calls.
    """

    name = "mean"

    def __init__(
        self, draft_mean: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], draft_cost_per_step: float = 0.0
    ):
        if not callable(draft_mean):
            raise ValueError("draft_mean must be callable")
        self.draft_mean = draft_mean
        self.draft_cost_per_step = _check_cost(draft_cost_per_step, "draft_cost_per_step")

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        return self.draft_mean(states, steps)


def _check_cost(value: float, name: str) -> float:
    cost = float(value)
    if not cost >= 0 or cost == float("inf"):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return cost


class _PredictionMemory(Drafter):
    """Keeps, per sample, the last two observed target predictions and their step indices (on the states' device)."""

    def reset(self, batch: int, chain: ModelChain | None, device: torch.device | str = "cpu") -> None:
        super().reset(batch, chain, device)
        self._latest: torch.Tensor | None = None  # (B, *event)
        self._previous: torch.Tensor | None = None
        self._latest_step = torch.full((batch,), -1, dtype=torch.long, device=self.device)
        self._previous_step = torch.full((batch,), -1, dtype=torch.long, device=self.device)

    def ready(self, rows: torch.Tensor) -> torch.Tensor:
        return self._latest_step[rows] >= 0

    def _memory(self, rows: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latest and previous predictions of samples ``rows``; zeros (shaped as ``like``) before any
        observation, for rows that are not :meth:`ready` and whose drafts the sampler masks."""
        if self._latest is None or self._previous is None:
            return torch.zeros_like(like), torch.zeros_like(like)
        return self._latest[rows], self._previous[rows]

    def observe(
        self, rows: torch.Tensor, steps: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        if self._latest is None or self._previous is None:
            batch = self._latest_step.shape[0]
            self._latest = torch.zeros(
                (batch, *predictions.shape[1:]), dtype=predictions.dtype, device=predictions.device
            )
            self._previous = torch.zeros_like(self._latest)
        if mask is None:
            mask = torch.ones(rows.shape, dtype=torch.bool, device=rows.device)
        memory = (self._latest[rows], self._latest_step[rows], self._previous[rows], self._previous_step[rows])
        latest, latest_step, previous, previous_step = _recorded(memory, steps, predictions, mask)
        self._latest[rows], self._latest_step[rows] = latest, latest_step
        self._previous[rows], self._previous_step[rows] = previous, previous_step

    def observe_all(self, steps: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor) -> None:
        if self._latest is None or self._previous is None:
            self.observe(torch.arange(mask.shape[0], device=mask.device), steps, predictions, mask)
            return
        memory = (self._latest, self._latest_step, self._previous, self._previous_step)
        self._latest, self._latest_step, self._previous, self._previous_step = _recorded(
            memory, steps, predictions, mask
        )


_Memory = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _recorded(memory: _Memory, steps: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor) -> _Memory:
    """``(latest, latest_step, previous, previous_step)`` after recording ``predictions`` at ``steps`` in the rows
    where ``mask`` is True: the latest becomes the previous there (the others keep theirs)."""
    latest, latest_step, previous, previous_step = memory
    wide = mask.reshape((-1,) + (1,) * (predictions.dim() - 1))
    return (
        torch.where(wide, predictions.to(latest.dtype), latest),
        torch.where(mask, steps, latest_step),
        torch.where(wide, latest, previous),
        torch.where(mask, latest_step, previous_step),
    )


class FreeDrafter(_PredictionMemory):
    """The self-speculative, training-free Free Drafter.

    Parameters
    ----------
    exit_blocks : int, optional
        None (default): *reuse* a target prediction from the previous verification pass, mapped through each
        drafted step's own coefficients; free, so a round costs one sequential call. An int K: *early exit*, the
        first K blocks of the target and its final layer evaluated at each drafted state.
    draft_cost_per_step : float, optional
        Cost of a drafted step in target calls; defaults to 0 for reuse and ``K / depth`` for early exit (the
        model's ``depth`` attribute), which a measured ratio can replace.
    reuse : {"nearest", "committed"}
        Which prediction the reuse draft takes. ``"committed"``: the one at the last committed state (window column
        ``accepted``), one step stale. ``"nearest"`` (default): after a rejection, of the last committed state and
        the rejected draft (column ``accepted + 1``, at the new root's own step), the one nearer to the new root in
        Euclidean distance, measured when the round is drafted. After a token rule's rejection the reflection
        residual keeps the draft's noise orthogonal to the gap, so the new root lands close to the rejected draft;
        after a block rule's rejection that noise is drawn afresh, and which one is nearer depends on the step's
        noise against its drift. After a full acceptance it is the last committed state, as for ``"committed"``.
        Ignored by early exit.
    """

    def __init__(
        self, exit_blocks: int | None = None, draft_cost_per_step: float | None = None, reuse: Reuse = "nearest"
    ):
        if exit_blocks is not None and (isinstance(exit_blocks, bool) or not isinstance(exit_blocks, int)):
            raise ValueError(f"exit_blocks must be None or a positive int, got {exit_blocks!r}")
        if exit_blocks is not None and exit_blocks < 1:
            raise ValueError(f"exit_blocks must be >= 1, got {exit_blocks}")
        if reuse not in REUSE_MODES:
            raise ValueError(f"reuse must be one of {REUSE_MODES}, got {reuse!r}")
        self.exit_blocks = exit_blocks
        self.reuse: Reuse = reuse
        self._given_cost = (
            None if draft_cost_per_step is None else _check_cost(draft_cost_per_step, "draft_cost_per_step")
        )
        self.name = f"free-{reuse}" if exit_blocks is None else f"free-exit{exit_blocks}"
        self.draft_cost_per_step = 0.0 if self._given_cost is None else self._given_cost

    def __repr__(self) -> str:
        if self.exit_blocks is not None:
            return f"FreeDrafter(exit_blocks={self.exit_blocks})"
        return f"FreeDrafter(reuse={self.reuse!r})"

    def _check_exit_model(self) -> None:
        if self.exit_blocks is not None:
            model = self._model_chain().model
            if getattr(model, "forward_first_k", None) is None:
                raise ValueError("early exit needs a model with a forward_first_k(x, t, ..., k) method")
            depth = getattr(model, "depth", None)
            if depth is not None and self.exit_blocks > int(depth):
                raise ValueError(f"exit_blocks = {self.exit_blocks} exceeds the model depth {depth}")
            if self._given_cost is None:
                if depth is None:
                    raise ValueError("give draft_cost_per_step for a model without a `depth` attribute")
                self.draft_cost_per_step = self.exit_blocks / int(depth)

    def ready(self, rows: torch.Tensor) -> torch.Tensor:
        if self.exit_blocks is not None:
            return torch.ones(rows.shape, dtype=torch.bool, device=rows.device)
        return super().ready(rows)

    def reset(self, batch: int, chain: ModelChain | None, device: torch.device | str = "cpu") -> None:
        super().reset(batch, chain, device)
        # "nearest": the candidates' states and the rejected draft's prediction, (B, *event) once observed.
        self._committed_state: torch.Tensor | None = None
        self._rejected_state: torch.Tensor | None = None
        self._rejected_prediction: torch.Tensor | None = None
        self._window_prediction: torch.Tensor | None = None
        self._check_exit_model()

    def observe_round(self, observation: RoundObservation) -> None:
        super().observe_round(observation)
        if self.exit_blocks is not None or self.reuse == "committed":
            return
        # The rejected draft: column accepted + 1 where the window rejected a step, else the committed state itself.
        committed = observation.accepted
        rejected = torch.minimum(committed + 1, observation.lengths)
        _, _, seen = observation.column(committed)
        wide = seen.reshape((-1,) + (1,) * (observation.states.dim() - 2))
        candidates = (
            take_column(observation.states, committed),
            take_column(observation.states, rejected),
            take_column(observation.predictions, rejected),
        )
        if self._committed_state is None:
            self._committed_state, self._rejected_state, self._rejected_prediction = (
                torch.zeros_like(value) for value in candidates
            )
        assert self._rejected_state is not None and self._rejected_prediction is not None
        memory = (self._committed_state, self._rejected_state, self._rejected_prediction)
        self._committed_state, self._rejected_state, self._rejected_prediction = (
            torch.where(wide, new.to(old.dtype), old) for new, old in zip(candidates, memory, strict=True)
        )

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        chain = self._model_chain()
        if self.exit_blocks is not None:
            predictions = chain.predict_first_blocks(states, steps, rows, self.exit_blocks)
        elif self.reuse == "committed" or self._committed_state is None:
            predictions = self._memory(rows, states)[0]
        elif slot == 0:  # at the root: choose the candidate nearer to it, for the whole window
            assert self._rejected_state is not None and self._rejected_prediction is not None
            to_committed = (states - self._committed_state[rows]).flatten(1).square().sum(dim=1)
            to_rejected = (states - self._rejected_state[rows]).flatten(1).square().sum(dim=1)
            nearer = (to_rejected < to_committed).reshape((-1,) + (1,) * (states.dim() - 1))
            predictions = torch.where(nearer, self._rejected_prediction[rows], self._memory(rows, states)[0])
            self._window_prediction = predictions
        else:
            assert self._window_prediction is not None
            predictions = self._window_prediction
        return chain.means(states, predictions, steps)


class ExtrapolatingDrafter(_PredictionMemory):
    """Linear extrapolation, in the step index, of the prediction from the last two target evaluations.

    With a single evaluation so far it reuses it (as the reuse Free Drafter). Free.
    """

    name = "extrapolating"

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        chain = self._model_chain()
        latest, previous = self._memory(rows, states)
        latest_step, previous_step = self._latest_step[rows], self._previous_step[rows]
        has_two = (previous_step >= 0) & (latest_step > previous_step)
        # p(n) = p_b + (p_b - p_a) (n - n_b) / (n_b - n_a), the line through the last two evaluations.
        span = torch.where(has_two, latest_step - previous_step, torch.ones_like(latest_step)).to(latest.dtype)
        slope = torch.where(has_two, (steps - latest_step).to(latest.dtype) / span, torch.zeros_like(span))
        slope = slope[(...,) + (None,) * (latest.dim() - 1)]
        return chain.means(states, latest + slope * (latest - previous), steps)


class FrozenDrafter(Drafter):
    """The frozen-target draft (De Bortoli et al.): the target prediction at the window root, reused for every step.

    It makes one target call at the root of every round (cost 1 per round), so the first drafted step is exact.
    """

    name = "frozen"
    draft_cost_per_round = 1.0

    def reset(self, batch: int, chain: ModelChain | None, device: torch.device | str = "cpu") -> None:
        super().reset(batch, chain, device)
        self._root: torch.Tensor | None = None

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        chain = self._model_chain()
        if slot == 0:
            predictions = chain.predict(states, steps, rows)
            if self._root is None:
                shape = (self.batch, *predictions.shape[1:])
                self._root = torch.zeros(shape, dtype=predictions.dtype, device=predictions.device)
            self._root[rows] = predictions
        assert self._root is not None
        return chain.means(states, self._root[rows], steps)


class ModelDrafter(Drafter):
    """An independent draft model with the target's interface, ``model(x, t, **conditioning) -> prediction``.

    Parameters
    ----------
    model : callable
    draft_cost_per_step : float
        Its cost per drafted step in target calls (measure it).
    name : str
    """

    def __init__(self, model: Model, draft_cost_per_step: float, name: str = "model"):
        if not callable(model):
            raise ValueError("model must be callable")
        self.model = model
        self.draft_cost_per_step = _check_cost(draft_cost_per_step, "draft_cost_per_step")
        self.name = name

    def reset(self, batch: int, chain: ModelChain | None, device: torch.device | str = "cpu") -> None:
        super().reset(batch, chain, device)
        self._draft_chain = ModelChain(self.model, chain.kernel, chain.conditioning) if chain is not None else None

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        chain = self._model_chain()
        assert self._draft_chain is not None
        return chain.means(states, self._draft_chain.predict(states, steps, rows), steps)
