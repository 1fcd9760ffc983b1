"""``specdiff theory``: the theory's predicted acceptance and accepted lengths against a Monte-Carlo check.

For a grid of gaps ``delta`` and windows ``L``: the predicted per-step acceptance, the expected accepted length under
the token and block rules (``theory.verification``, exact numerical integration), the block gain, and a Monte-Carlo
check of each made with the real verification code (``specdiff.verify``) on synthetic windows of known gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from specdiff.synthetic import constant_shift_window, verify_window
from theory.gaussian import acceptance_probability
from theory.verification import expected_accepted_length


@dataclass(frozen=True)
class TheoryRow:
    """One row of the ``specdiff theory`` table (accepted lengths exclude the bonus step)."""

    delta: float
    window: int
    accept_prob: float
    token_expected: float
    token_measured: float
    token_stderr: float
    block_expected: float
    block_measured: float
    block_stderr: float

    @property
    def block_gain(self) -> float:
        """Predicted gain of block over token in steps per target call, ``(1 + E tau_block) / (1 + E tau_token)``."""
        return (1.0 + self.block_expected) / (1.0 + self.token_expected)

    @property
    def token_z(self) -> float:
        return (self.token_measured - self.token_expected) / self.token_stderr

    @property
    def block_z(self) -> float:
        return (self.block_measured - self.block_expected) / self.block_stderr


def theory_table(
    deltas: Sequence[float],
    windows: Sequence[int],
    *,
    samples: int,
    dimension: int,
    seed: int,
    progress: bool = True,
) -> list[TheoryRow]:
    """Predicted and measured accepted lengths for every (delta, window) pair.

    Parameters
    ----------
    deltas : sequence of float
        Constant per-step gaps.
    windows : sequence of int
        Window lengths L.
    samples : int
        Monte-Carlo windows per (delta, window, rule).
    dimension : int
        Dimension of the synthetic chain.
    seed : int
        Seed of the torch generator (one stream, consumed in table order).
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of TheoryRow
    """
    generator = torch.Generator().manual_seed(seed)
    grid = [(delta, window) for delta in deltas for window in windows]
    rows = []
    for delta, window in tqdm(grid, desc="Monte-Carlo check", disable=not progress, leave=False):
        gaps = [delta] * window
        measured = {}
        for rule in ("token-reflection", "block"):
            accepted = verify_window(
                constant_shift_window(gaps, samples, dimension, generator=generator), rule
            ).accepted.double()
            measured[rule] = (accepted.mean().item(), accepted.std().item() / math.sqrt(samples))
        rows.append(
            TheoryRow(
                delta=delta,
                window=window,
                accept_prob=float(acceptance_probability(delta)),
                token_expected=expected_accepted_length(gaps, "token"),
                token_measured=measured["token-reflection"][0],
                token_stderr=max(measured["token-reflection"][1], 1e-12),
                block_expected=expected_accepted_length(gaps, "block"),
                block_measured=measured["block"][0],
                block_stderr=max(measured["block"][1], 1e-12),
            )
        )
    return rows


def format_theory_table(rows: Sequence[TheoryRow]) -> str:
    """Render ``theory_table`` rows as an aligned text table."""
    header = (
        f"{'delta':>6} {'L':>3} {'alpha':>7} | {'E[tau] token':>12} {'MC token':>16} {'z':>5} | "
        f"{'E[tau] block':>12} {'MC block':>16} {'z':>5} | {'block gain':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.delta:6.3g} {row.window:3d} {row.accept_prob:7.4f} | {row.token_expected:12.4f} "
            f"{row.token_measured:9.4f}±{row.token_stderr:6.4f} {row.token_z:5.1f} | {row.block_expected:12.4f} "
            f"{row.block_measured:9.4f}±{row.block_stderr:6.4f} {row.block_z:5.1f} | {row.block_gain:9.4f}x"
        )
    return "\n".join(lines)


__all__ = ["TheoryRow", "format_theory_table", "theory_table"]
