"""Window policies: how many steps each sample drafts in the next round.

A policy decides per sample, from that sample's own history only, so a sample's output stays independent of the
rest of its batch. Exactness never depends on the window: any window chosen from the past is fine.

- :class:`FixedWindow`: always the same window.
- :class:`PlainSteps`: always window 0, plain steps through the speculative sampler (what a fallen-back adaptive
  policy costs; bitwise the same samples as plain sampling).
- :class:`AdaptiveWindow`: the Free Drafter's heuristic scheduling (DESIGN §5). It keeps, per sample and per window
  position, an exponentially weighted average of the gaps ``delta`` observed so far, and picks the window that
  maximizes the predicted speedup of :func:`theory.cost.token_window_speedups` under the given cost model. Window 0
  means a plain step: the policy falls back to plain sampling when speculation does not pay. During plain steps a
  free drafter is probed at no cost (its draft at the root is compared with the target mean the plain step computes
  anyway); a costly drafter is retried with a window of 1 every ``probe_every`` plain steps.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import torch

from theory.cost import BatchCost, constant_gap_block_gain, round_cost, target_batch_cost, token_window_speedups

#: Gaps at which the block-over-token gain is tabulated for the adaptive policy.
_GAIN_GRID = np.geomspace(1e-3, 30.0, 241)
_LOG_GAIN_GRID = np.log(_GAIN_GRID)


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
    """

    probes_plain_steps = False
    max_window = 0

    def reset(self, batch: int, draft_cost_per_step: float, draft_cost_per_round: float, rule: str = "block") -> None:
        """Start a batch of ``batch`` samples drafted at the given costs (target-call units), verified by ``rule``."""

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        """Desired windows (k,) long for samples ``rows`` (k,); 0 asks for a plain step."""
        raise NotImplementedError

    def observe(self, rows: torch.Tensor, deltas: torch.Tensor) -> None:
        """Record the gaps (k, L) of the drafted positions 1..L of samples ``rows`` (NaN where not drafted)."""


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
        return torch.full(rows.shape, self.window, dtype=torch.long)

    def __repr__(self) -> str:
        return f"FixedWindow({self.window})"


class PlainSteps(WindowPolicy):
    """Always window 0: every round is a plain step, taken through the speculative sampler.

    The samples are bitwise those of plain sampling with the same generators; the difference in wall time is what
    the speculative machinery costs when it does not speculate (the floor of a policy that has fallen back).
    """

    max_window = 1

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.zeros(rows.shape, dtype=torch.long)

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
        Cost ``c(m)`` of evaluating ``m`` states per sample in one target call, relative to any unit (see
        :func:`theory.cost.target_batch_cost`). Default: :func:`flat_cost`, which minimizes sequential target calls
        (the GPU regime); pass a measured curve to minimize wall time instead.
    smoothing : float
        Weight of a new observation in the running average of the gaps, in (0, 1].
    initial_window : int, optional
        Window of a sample with no observation yet (default ``max_window``: the first round observes the gap at every
        position).
    probe_every : int
        For a drafter with a cost, the number of plain steps after which a window of 1 is tried again.
    tolerance : float
        The smallest window whose predicted speedup is within this relative tolerance of the best is chosen, so a
        draft that is never accepted (all windows predicted alike) gives plain steps.
    round_overhead : float
        The sampler's own extra cost of a speculative round over a plain step (drafting, verification, bookkeeping),
        in units of one target call on one state per sample, ``c(1)``; added to every speculative round's cost like a
        per-round draft cost. 0 (the default) counts the network only. Measure it on the device where the
        sampler's own time matters (a small network on a GPU); it does not depend on the window here.

    Notes
    -----
    Gaps at positions never drafted are taken equal to the gap at the furthest observed position. The prediction is
    the token rule's steps per round (exact for the observed gaps), multiplied for the block rule by the exact
    block-over-token gain of a constant gap equal to the window's mean gap
    (:func:`theory.cost.constant_gap_block_gain`).
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

    def reset(self, batch: int, draft_cost_per_step: float, draft_cost_per_round: float, rule: str = "block") -> None:
        self.rule = rule
        self.draft_cost_per_step = float(draft_cost_per_step)
        self.draft_cost_per_round = float(draft_cost_per_round)
        self.probes_plain_steps = self.draft_cost_per_step == 0.0 and self.draft_cost_per_round == 0.0
        self._costs = self._round_costs()
        #: Running average of the gap per sample and window position, NaN where never observed.
        self.gaps: npt.NDArray[np.float64] = np.full((batch, self.max_window), np.nan)
        self.plain_steps = np.zeros(batch, dtype=np.int64)

    def _profiles(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Gap profiles (k, W): observed averages, held constant beyond the furthest observed position."""
        gaps = self.gaps[rows]
        observed = ~np.isnan(gaps)
        furthest = np.where(observed.any(axis=1), self.max_window - np.argmax(observed[:, ::-1], axis=1), 0)
        last = gaps[np.arange(len(rows)), np.maximum(furthest - 1, 0)]
        return np.where(observed, gaps, last[:, None])

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        index = rows.cpu().numpy()
        seen = ~np.isnan(self.gaps[index]).all(axis=1)
        choice = np.full(len(index), self.initial_window, dtype=np.int64)
        if seen.any():
            profiles = self._profiles(index[seen])
            speedups = token_window_speedups(
                profiles, self.batch_cost, self.draft_cost_per_step, draft_cost_per_round=self._per_round_cost
            )
            if self.rule == "block":
                costs = self._costs
                steps = _block_steps(speedups * costs[None, :], self._block_gains(profiles))
                speedups = steps / costs[None, :]
            # The smallest window within `tolerance` of the best: a draft that is never accepted gives a plain step.
            best = speedups.max(axis=1, keepdims=True)
            choice[seen] = np.argmax(speedups >= (1.0 - self.tolerance) * best, axis=1)
        if not self.probes_plain_steps:
            retry = (choice == 0) & (self.plain_steps[index] >= self.probe_every)
            choice[retry] = 1
        self.plain_steps[index] = np.where(choice == 0, self.plain_steps[index] + 1, 0)
        return torch.from_numpy(choice)

    @property
    def _per_round_cost(self) -> float:
        """Everything a speculative round costs beyond its target call and its drafted steps, in c(1) units."""
        return self.draft_cost_per_round + self.round_overhead

    def _round_costs(self) -> npt.NDArray[np.float64]:
        """Round cost of each window 0..W relative to a plain step (the factor between steps and speedups)."""
        plain = target_batch_cost(self.batch_cost, 1)
        per_step, per_round = self.draft_cost_per_step, self._per_round_cost
        windows = range(self.max_window + 1)
        costs = [round_cost(w, self.batch_cost, per_step, draft_cost_per_round=per_round) for w in windows]
        return np.array(costs) / plain

    def _block_gains(self, profiles: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Block-over-token gain (k, W) of each window, from the exact constant-gap gain at the mean gap of the
        window's positions, interpolated in ``log delta`` on a fixed grid."""
        mean_gaps = np.cumsum(profiles, axis=1) / np.arange(1, self.max_window + 1)[None, :]
        logs = np.log(np.clip(mean_gaps, _GAIN_GRID[0], _GAIN_GRID[-1]))
        # Linear interpolation in log delta, every window at once (np.interp, column by column, gives the same).
        upper = np.clip(np.searchsorted(_LOG_GAIN_GRID, logs), 1, _GAIN_GRID.size - 1)
        fraction = (logs - _LOG_GAIN_GRID[upper - 1]) / (_LOG_GAIN_GRID[upper] - _LOG_GAIN_GRID[upper - 1])
        windows = np.arange(1, self.max_window + 1)[None, :]
        below, above = self._gain_table[upper - 1, windows], self._gain_table[upper, windows]
        return np.asarray(below + fraction * (above - below))

    def observe(self, rows: torch.Tensor, deltas: torch.Tensor) -> None:
        index = rows.cpu().numpy()
        observed = deltas.detach().to(torch.float64).cpu().numpy()[:, : self.max_window]
        current = self.gaps[index, : observed.shape[1]]
        fresh = ~np.isnan(observed)
        blended = np.where(np.isnan(current), observed, (1 - self.smoothing) * current + self.smoothing * observed)
        self.gaps[index, : observed.shape[1]] = np.where(fresh, blended, current)

    def __repr__(self) -> str:
        overhead = f", round_overhead={self.round_overhead:g}" if self.round_overhead else ""
        return f"AdaptiveWindow(max_window={self.max_window}{overhead})"


def _block_steps(token_steps: npt.NDArray[np.float64], gains: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Predicted block steps per round (k, W + 1) from the token's (k, W + 1) and the constant-gap gains (k, W).

    ``token x gain``, but never growing by less than the token's own increment from one window to the next: the exact
    ``E[tau_block] = sum_i E[w_i]`` grows with every drafted position at least as the token rule's does
    (``E[w_i] >= P(tau_token >= i)``), while the mean-gap gain alone can fall with L.
    """
    steps = token_steps.copy()
    steps[:, 1:] *= gains
    for window in range(1, steps.shape[1]):
        increment = token_steps[:, window] - token_steps[:, window - 1]
        steps[:, window] = np.maximum(steps[:, window], steps[:, window - 1] + increment)
    return steps
