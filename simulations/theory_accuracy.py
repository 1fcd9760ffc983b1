"""Accuracy of the closed forms against independent references; writes ``results/theory_accuracy.json``.

- ``log_residual_mass`` against 60-digit mpmath evaluation of ``w Phi(delta - s*) - Phi(-s*)`` on a grid of
  ``w`` in [1e-300, 1] and ``delta`` in [1e-12, 50]; the error is ``|log R - log R_ref| / max(1, |log R_ref|)``
  (the relative error of R where R is representable).
- ``expected_accepted_length(deltas, "block")`` by grid integration against the exact constant-gap recursion
  (``constant_gap_block_profile``) and, for mixed gaps, against the grid with 4x more cells; with its run time.

Run ``python -m simulations.theory_accuracy`` (``--smoke`` for a tiny grid).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import mpmath
import numpy as np

from simulations.provenance import REPOSITORY_ROOT, git_commit, git_dirty, machine
from theory.gaussian import log_residual_mass
from theory.verification import block_profile_grid, constant_gap_block_profile

SEED = 0


def residual_mass_errors(weights: np.ndarray, deltas: np.ndarray) -> float:
    """Worst relative error of ``log_residual_mass`` over the grid ``weights x deltas``."""
    mpmath.mp.dps = 60
    worst = 0.0
    for weight in weights:
        values = log_residual_mass(weight, deltas)
        for delta, value in zip(deltas, values, strict=True):
            w, d = mpmath.mpf(float(weight)), mpmath.mpf(float(delta))
            threshold = d / 2 - mpmath.log(w) / d
            reference = float(mpmath.log(w * mpmath.ncdf(d - threshold) - mpmath.ncdf(-threshold)))
            worst = max(worst, abs(value - reference) / max(1.0, abs(reference)))
    return worst


def block_length_errors(windows: Sequence[int], rng: np.random.Generator, repeats: int = 5) -> dict[str, float]:
    """Worst relative errors of the grid block profile, and its worst run time for 32 steps (seconds)."""
    constant_worst = 0.0
    for delta in (1e-6, 0.05, 0.3, 1.0, 3.0):
        for window in windows:
            grid = block_profile_grid([delta] * window).sum()
            exact = constant_gap_block_profile(delta, window).sum()
            constant_worst = max(constant_worst, abs(grid / exact - 1))
    mixed_worst, slowest = 0.0, 0.0
    for _ in range(repeats):
        deltas = rng.uniform(0.05, 2.0, size=32)
        start = time.perf_counter()
        value = block_profile_grid(deltas).sum()
        slowest = max(slowest, time.perf_counter() - start)
        fine = block_profile_grid(deltas, cells=4 * 2400).sum()
        mixed_worst = max(mixed_worst, abs(value / fine - 1))
    return {
        "constant_gap_vs_exact_recursion": constant_worst,
        "mixed_gaps_vs_4x_finer_grid": mixed_worst,
        "seconds_for_32_mixed_steps": slowest,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args(argv)
    size = 6 if arguments.smoke else 40
    weights = np.concatenate([[1.0, 1 - 1e-12], np.logspace(-300, -1e-3, size)])
    deltas = np.logspace(-12, np.log10(50.0), size)
    windows = [2, 8] if arguments.smoke else [2, 4, 8, 16, 32]
    record = {
        "seed": SEED,
        "sizes": {"weights": int(weights.size), "deltas": int(deltas.size), "windows": windows},
        "commit": git_commit(),
        "dirty": git_dirty(),
        "machine": machine(),
        "log_residual_mass_worst_relative_error": residual_mass_errors(weights, deltas),
        **block_length_errors(windows, np.random.default_rng(SEED), repeats=1 if arguments.smoke else 5),
    }
    default = REPOSITORY_ROOT / "results" / ("smoke" if arguments.smoke else "") / "theory_accuracy.json"
    output = arguments.output or default
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    for key, value in record.items():
        if isinstance(value, float):
            print(f"{key:45s} {value:.3g}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
