"""Window policies: how many steps each sample drafts in the next round.

A policy decides per sample, from that sample's own history only, so a sample's output stays independent of the
rest of its batch. Exactness never depends on the window: any window chosen from the past is fine. A policy's state
lives on the states' device and its decisions are tensor operations there, with no host reads, so that choosing
the windows costs a GPU sampling round no synchronization.

- :class:`FixedWindow`: always the same window.
- :class:`PlainSteps`: always window 0, plain steps through the speculative sampler (what a fallen-back adaptive
  policy costs; bitwise the same samples as plain sampling).
- :class:`AdaptiveWindow`: the Free Drafter's heuristic scheduling (docs/design.md §3.7). It keeps, per sample and per
  window position, an exponentially weighted average of the token acceptances ``alpha(delta)`` of the gaps observed
  so far (stored as the gap of that acceptance), and picks the window that maximizes the predicted speedup under the
  given cost model: the token rule's steps per round (the formula of :func:`theory.cost.token_window_speedups`,
  computed here with tensor operations), times a block-over-token gain for the block rule (class notes). Window 0
  means a plain step: the policy falls back to plain sampling when speculation does not pay. During plain steps a
  free drafter is probed at no cost (its draft at the root is compared with the target mean the plain step computes
  anyway); a costly drafter is retried with a window of 1 every ``probe_every`` plain steps.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
import torch

from theory.cost import BatchCost, constant_gap_block_gain, round_cost, target_batch_cost

#: Gaps at which the block-over-token gain is tabulated for the adaptive policy.
_GAIN_GRID = np.geomspace(1e-3, 30.0, 241)
_LOG_GAIN_GRID = np.log(_GAIN_GRID)
_LOG_GAIN_STEP = float(_LOG_GAIN_GRID[1] - _LOG_GAIN_GRID[0])


@functools.lru_cache(maxsize=32)
def _gain_table(max_window: int) -> npt.NDArray[np.float64]:
    """``constant_gap_block_gain`` on the grid (G, W + 1), computed once per window (it takes ~10 ms); read-only."""
    table = constant_gap_block_gain(_GAIN_GRID, max_window)
    table.setflags(write=False)
    return table


class WindowPolicy:
    """Base class of window policies.

    Attributes
    ----------
    probes_plain_steps : bool
        Whether the sampler should compute the draft at the root of a plain step and report its gap (only done when
        the drafter is free).

    Notes
    -----
    State kept across rounds lives in tensor attributes of the policy, as for a drafter
    (:class:`specdiff.drafters.Drafter`), so that a round replayed from a graph follows it.
    """

    probes_plain_steps = False
    max_window = 0
    #: Whether the policy can choose the rule (token-reflection or block) per sample and round: ``rule="adaptive"``.
    chooses_rules = False

    def reset(
        self,
        batch: int,
        draft_cost_per_step: float,
        draft_cost_per_round: float,
        rule: str = "block",
        device: torch.device | str = "cpu",
    ) -> None:
        """Start a batch of ``batch`` samples drafted at the given costs (target-call units), verified by ``rule``,
        with their states on ``device``."""

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        """Desired windows (k,) long, on the device of ``rows`` (k,); 0 asks for a plain step. Called once per round
        for every sample of the batch."""
        raise NotImplementedError

    def block_rule(self, rows: torch.Tensor) -> torch.Tensor:
        """Whether samples ``rows`` (k,) verify their window of the round just planned with the block rule (True)
        or with token-reflection (False), (k,) bool; only asked of a policy that :attr:`chooses_rules`, after
        :meth:`windows`."""
        raise NotImplementedError(f"{type(self).__name__} does not choose rules")

    def observe(self, rows: torch.Tensor, deltas: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Record the gaps (k, L) of the drafted positions 1..L of samples ``rows`` (NaN where not drafted), whose
        windows this round were ``lengths`` (k,) (0: a plain step)."""


class FixedWindow(WindowPolicy):
    """Always draft ``window`` steps (fewer at the horizon and before deterministic steps).

    Parameters
    ----------
    window : int
        ``L >= 1``.
    """

    def __init__(self, window: int):
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        self.window = int(window)
        self.max_window = self.window

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.full(rows.shape, self.window, dtype=torch.long, device=rows.device)

    def __repr__(self) -> str:
        return f"FixedWindow({self.window})"


class PlainSteps(WindowPolicy):
    """Always window 0: every round is a plain step, taken through the speculative sampler.

    The samples are bitwise those of plain sampling with the same generators; the difference in wall time is what
    the speculative machinery costs when it does not speculate (the floor of a policy that has fallen back).
    """

    max_window = 1

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.zeros(rows.shape, dtype=torch.long, device=rows.device)

    def __repr__(self) -> str:
        return "PlainSteps()"


def flat_cost(states: int) -> float:
    """Default cost model ``c(m) = 1``: a call costs the same whatever the states per sample (the GPU regime at small
    batch), so minimizing the predicted cost minimizes sequential target calls."""
    return 1.0


class AdaptiveWindow(WindowPolicy):
    """Per-sample window maximizing the predicted speedup from the gaps observed so far.

    Parameters
    ----------
    max_window : int
        Largest window (>= 1).
    batch_cost : array_like or callable, optional
        Cost ``c(m)`` of evaluating ``m`` states per sample in one target call, in any unit (seconds, say; see
        :func:`theory.cost.target_batch_cost`): the drafter's costs and ``round_overhead``, given in target-call
        units, are scaled by ``c(1)`` before they are added to it.
        Default: :func:`flat_cost`, which minimizes sequential target calls (the GPU regime); pass a measured curve
        to minimize wall time instead.
    smoothing : float
        Weight of a new observation in the running average of the gaps' token acceptances, in (0, 1].
    initial_window : int, optional
        Window of a sample with no observation yet (default ``max_window``: the first round observes the gap at every
        position).
    probe_every : int
        For a drafter with a cost, the number of plain steps after which a window of 1 is tried again.
    tolerance : float
        The smallest window whose predicted speedup is within this relative tolerance of the best is chosen, so a
        draft that is (almost) never accepted gives plain steps: with a flat cost and a free drafter any window
        promising a positive acceptance would otherwise beat a plain step, however small the promise.
    round_overhead : float
        The sampler's own extra cost of a speculative round over a plain step (drafting, verification, bookkeeping),
        in target-call units, ``c(1)``; added to every speculative round's cost like a
        per-round draft cost. 0 (the default) counts the network only. Measure it on the device where the
        sampler's own time matters (a small network on a GPU); it does not depend on the window here.

    Notes
    -----
    Gaps at positions never drafted are taken equal to the gap at the furthest observed position. The prediction is
    the token rule's steps per round (exact for the observed gaps), multiplied for the block rule by the exact
    block-over-token gain of a constant gap (:func:`theory.cost.constant_gap_block_gain`): the gap whose token
    acceptance is the mean acceptance of the window's positions. The block prediction is floored so that it never
    grows with the window by less than the token prediction does (the exact block rule never does).

    With ``rule="adaptive"`` the policy also chooses, per sample and round, between token-reflection and block. The
    rule decides where the next round's root lands: after a rejection, reflection keeps the draft's noise orthogonal
    to the gap, so the new root stays near the rejected draft (whose prediction a ``"nearest"`` reuse drafter then
    drafts from), while the block rule's residual draws that noise afresh. So the policy keeps two gap profiles per
    sample, one for rounds whose root was committed by a token round and one for rounds whose root was committed by
    a block round, predicts the steps per round of every (rule, window) from the matching profile, and takes the
    best: the comparison of the two rules run in their own steady state. A profile never observed counts as gap 0
    (so each rule is tried), and after ``probe_every`` consecutive verified rounds with one rule the other is tried
    once, to keep its profile current. The choice is a function of the sample's past only, so every round stays
    exact.
    """

    def __init__(
        self,
        max_window: int = 16,
        batch_cost: BatchCost | None = None,
        smoothing: float = 0.25,
        initial_window: int | None = None,
        probe_every: int = 8,
        tolerance: float = 0.0,
        round_overhead: float = 0.0,
    ):
        initial_window = max_window if initial_window is None else initial_window
        counts = {"max_window": max_window, "initial_window": initial_window, "probe_every": probe_every}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        if not 0.0 <= tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
        if not (np.isfinite(round_overhead) and round_overhead >= 0.0):
            raise ValueError(f"round_overhead must be finite and >= 0, got {round_overhead!r}")
        self.tolerance = float(tolerance)
        self.round_overhead = float(round_overhead)
        self.max_window = int(max_window)
        self.batch_cost: BatchCost = flat_cost if batch_cost is None else batch_cost
        target_batch_cost(self.batch_cost, self.max_window + 1)  # the curve must cover the largest window
        self.smoothing = float(smoothing)
        self.initial_window = min(int(initial_window), self.max_window)
        self.probe_every = int(probe_every)
        self._gain_table = _gain_table(self.max_window)  # (G, W + 1)
        self.reset(0, 0.0, 0.0)

    chooses_rules = True

    def reset(
        self,
        batch: int,
        draft_cost_per_step: float,
        draft_cost_per_round: float,
        rule: str = "block",
        device: torch.device | str = "cpu",
    ) -> None:
        self.rule = rule
        self.draft_cost_per_step = float(draft_cost_per_step)
        self.draft_cost_per_round = float(draft_cost_per_round)
        self.probes_plain_steps = self.draft_cost_per_step == 0.0 and self.draft_cost_per_round == 0.0
        device = torch.device(device)
        self._costs = torch.from_numpy(self._round_costs()).to(device)  # (W + 1,)
        self._gains = torch.tensor(self._gain_table, device=device)  # (G, W + 1)
        #: Running average of the gap per sample and window position, NaN where never observed; (B, W) float64.
        self.gaps = torch.full((batch, self.max_window), math.nan, dtype=torch.float64, device=device)
        self.plain_steps = torch.zeros(batch, dtype=torch.long, device=device)
        #: With rule "adaptive": the gap profile of rounds whose root a block round committed (``gaps`` then holds
        #: the token rounds'), whether each sample's current root came from a block round, the rule chosen for the
        #: round just planned, and the verified rounds in a row with that rule.
        self.block_gaps = torch.full_like(self.gaps, math.nan)
        self.root_from_block = torch.zeros(batch, dtype=torch.bool, device=device)
        self.chosen_block = torch.zeros(batch, dtype=torch.bool, device=device)
        self.rounds_with_rule = torch.zeros(batch, dtype=torch.long, device=device)

    def _profiles(self, gaps: torch.Tensor) -> torch.Tensor:
        """Gap profiles (k, W): observed averages, held constant beyond the furthest observed position."""
        observed = ~torch.isnan(gaps)
        positions = torch.arange(1, self.max_window + 1, device=gaps.device)
        furthest = (observed.long() * positions).amax(dim=1, keepdim=True)  # 0 where nothing was observed
        last = gaps.gather(1, (furthest - 1).clamp(min=0))
        return torch.where(observed, gaps, last).nan_to_num(0.0)

    def _steps(self, profiles: torch.Tensor, block: bool) -> torch.Tensor:
        """Predicted steps per round (k, W + 1) of every window 0..W from the gap profiles (k, W)."""
        # Token steps per round of every window 0..W: 1 + sum_{i <= L} prod_{j <= i} alpha(delta_j)   (docs/theory.md)
        accept = 2.0 * torch.special.ndtr(-0.5 * profiles)
        survival = accept.cumprod(dim=1)
        steps = 1.0 + torch.cat([torch.zeros_like(survival[:, :1]), survival.cumsum(dim=1)], dim=1)
        return _block_steps(steps, self._block_gains(profiles)) if block else steps

    def _best_window(self, speedups: torch.Tensor) -> torch.Tensor:
        """The smallest window within ``tolerance`` of the best predicted speedup (k,): a draft that is never
        accepted gives a plain step."""
        best = speedups.amax(dim=1, keepdim=True)
        return torch.argmax((speedups >= (1.0 - self.tolerance) * best).to(torch.uint8), dim=1)

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        if self.rule == "adaptive":
            return self._windows_and_rules(rows)
        gaps = self.gaps[rows]
        seen = ~torch.isnan(gaps).all(dim=1)
        speedups = self._steps(self._profiles(gaps), self.rule == "block") / self._costs
        choice = torch.where(seen, self._best_window(speedups), self.initial_window)
        return self._plain_step_budget(rows, choice)

    def _windows_and_rules(self, rows: torch.Tensor) -> torch.Tensor:
        """Rule "adaptive": the best (rule, window) from each rule's own gap profile (class notes)."""
        token_gaps, block_gaps = self.gaps[rows], self.block_gaps[rows]
        token = self._steps(self._profiles(token_gaps), block=False) / self._costs
        block = self._steps(self._profiles(block_gaps), block=True) / self._costs
        use_block = block.amax(dim=1) > token.amax(dim=1)
        # Try the other rule once after `probe_every` verified rounds in a row with the same one.
        use_block ^= self.rounds_with_rule[rows] >= self.probe_every
        choice = self._best_window(torch.where(use_block[:, None], block, token))
        seen = ~(torch.isnan(token_gaps).all(dim=1) & torch.isnan(block_gaps).all(dim=1))
        choice = torch.where(seen, choice, self.initial_window)
        self.chosen_block[rows] = use_block
        return self._plain_step_budget(rows, choice)

    def block_rule(self, rows: torch.Tensor) -> torch.Tensor:
        if self.rule != "adaptive":
            return torch.full(rows.shape, self.rule == "block", dtype=torch.bool, device=rows.device)
        return self.chosen_block[rows]

    def _plain_step_budget(self, rows: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Count plain steps, and retry a costly drafter with a window of 1 after ``probe_every`` of them."""
        plain_steps = self.plain_steps[rows]
        if not self.probes_plain_steps:
            choice = torch.where((choice == 0) & (plain_steps >= self.probe_every), 1, choice)
        self.plain_steps[rows] = torch.where(choice == 0, plain_steps + 1, 0)
        return choice

    def _round_costs(self) -> npt.NDArray[np.float64]:
        """Round cost of each window 0..W relative to a plain step (the factor between steps and speedups).

        The draft costs and ``round_overhead`` are in target-call units, ``c(1)``: scaled by it, they are added to
        the curve in its own units, so the result does not depend on the curve's unit."""
        plain = target_batch_cost(self.batch_cost, 1)
        per_step = self.draft_cost_per_step * plain
        per_round = (self.draft_cost_per_round + self.round_overhead) * plain
        windows = range(self.max_window + 1)
        costs = [round_cost(w, self.batch_cost, per_step, draft_cost_per_round=per_round) for w in windows]
        return np.array(costs) / plain

    def _block_gains(self, profiles: torch.Tensor) -> torch.Tensor:
        """Block-over-token gain (k, W) of each window, from the exact constant-gap gain at the gap whose token
        acceptance is the mean acceptance of the window's positions, interpolated linearly in ``log delta`` on the
        fixed grid (uniform in ``log delta``)."""
        windows = torch.arange(1, self.max_window + 1, device=profiles.device)
        # The constant gap with the window's mean acceptance: a mean of the gaps themselves would let one far-off
        # position (alpha ~ 0) set a huge gap, whose large gain would then multiply the well-accepted positions too.
        mean_gaps = _gap(_acceptance(profiles).cumsum(dim=1) / windows)
        logs = torch.log(mean_gaps.clamp(_GAIN_GRID[0], _GAIN_GRID[-1]))
        position = (logs - _LOG_GAIN_GRID[0]) / _LOG_GAIN_STEP
        lower = position.floor().clamp(0, _GAIN_GRID.size - 2).long()
        fraction = position - lower
        flat = self._gains.flatten()
        below = flat[lower * (self.max_window + 1) + windows]
        above = flat[(lower + 1) * (self.max_window + 1) + windows]
        return below + fraction * (above - below)

    def observe(self, rows: torch.Tensor, deltas: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        observed = _held_beyond(deltas.to(torch.float64)[:, : self.max_window], self.max_window)
        width = observed.shape[1]
        if self.rule != "adaptive":
            self.gaps[rows, :width] = self._blended(self.gaps[rows, :width], observed)
            return
        if lengths is None:
            raise ValueError("rule 'adaptive' needs the round's window lengths")
        # The gaps of this round go to the profile of the rule that committed its root.
        from_block = self.root_from_block[rows]
        token_gaps, block_gaps = self.gaps[rows, :width], self.block_gaps[rows, :width]
        self.gaps[rows, :width] = torch.where(from_block[:, None], token_gaps, self._blended(token_gaps, observed))
        self.block_gaps[rows, :width] = torch.where(
            from_block[:, None], self._blended(block_gaps, observed), block_gaps
        )
        verified, used_block = lengths > 0, self.chosen_block[rows]
        same = verified & (used_block == from_block)
        self.rounds_with_rule[rows] = torch.where(
            verified, torch.where(same, self.rounds_with_rule[rows] + 1, 1), self.rounds_with_rule[rows]
        )
        self.root_from_block[rows] = torch.where(verified, used_block, from_block)

    def _blended(self, current: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The running averages ``current`` (k, w) updated with the gaps ``observed`` (k, w) where not NaN.

        The average is taken over the token acceptance ``alpha(delta) = 2 Phi(-delta / 2)`` and mapped back to a gap,
        so that one huge gap (a draft far off, alpha ~ 0) weighs as one rejection, not as a gap that takes many rounds
        to average away; the token steps per round depend on the gaps through ``alpha`` only."""
        current_accept, observed_accept = _acceptance(current), _acceptance(observed)
        blended = torch.where(
            torch.isnan(current),
            observed_accept,
            (1 - self.smoothing) * current_accept + self.smoothing * observed_accept,
        )
        return torch.where(torch.isnan(observed), current, _gap(blended))

    def __repr__(self) -> str:
        overhead = f", round_overhead={self.round_overhead:g}" if self.round_overhead else ""
        return f"AdaptiveWindow(max_window={self.max_window}{overhead})"


def _block_steps(token_steps: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Predicted block steps per round (k, W + 1) from the token's (k, W + 1) and the constant-gap gains (k, W).

    ``token x gain``, but never growing by less than the token's own increment from one window to the next: the exact
    ``E[tau_block] = sum_i E[w_i]`` grows with every drafted position at least as the token rule's does
    (``E[w_i] >= P(tau_token >= i)``), while the mean-gap gain alone can fall with L. With ``a = block - token`` the
    recursion ``block_L = max(raw_L, block_{L-1} + token_L - token_{L-1})`` is ``a_L = max(raw_L - token_L, a_{L-1})``,
    a running maximum.
    """
    raw = torch.cat([token_steps[:, :1], token_steps[:, 1:] * gains], dim=1)
    return token_steps + (raw - token_steps).cummax(dim=1).values


def _held_beyond(deltas: torch.Tensor, max_window: int) -> torch.Tensor:
    """A round's gaps (k, w) as observations of all W positions (k, W): positions beyond a row's furthest observed one
    take its gap (NaN rows stay NaN), so a window that shrank does not keep stale gaps at the positions it no longer
    drafts (they would stop it from growing again)."""
    padded = torch.cat([deltas, deltas.new_full((deltas.shape[0], max_window - deltas.shape[1]), math.nan)], dim=1)
    seen = ~torch.isnan(padded)
    positions = torch.arange(1, max_window + 1, device=deltas.device)
    furthest = (seen.long() * positions).amax(dim=1, keepdim=True)  # 0 where nothing was observed
    last = padded.gather(1, (furthest - 1).clamp(min=0))
    return torch.where(seen | (furthest == 0), padded, last)


def _acceptance(gaps: torch.Tensor) -> torch.Tensor:
    """The token acceptance probability ``alpha(delta) = 2 Phi(-delta / 2)`` of gaps (NaN stays NaN)."""
    return 2.0 * torch.special.ndtr(-0.5 * gaps)


def _gap(acceptance: torch.Tensor) -> torch.Tensor:
    """The gap of an acceptance probability, the inverse of :func:`_acceptance`: ``-2 Phi^-1(alpha / 2)``, capped at
    the largest gap whose acceptance is not rounded to 0 in float64 (about 75)."""
    return -2.0 * torch.special.ndtri(0.5 * acceptance.clamp(min=1e-300))
