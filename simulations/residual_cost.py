"""Cost per draw of the exact weighted residual samplers: inverse CDF (the default) vs rejection (comparison).

Both samplers draw from ``max(w N(mu, sigma^2 I) - N(nu, sigma^2 I), 0) / R(w, delta)`` (docs/design.md §3.4).
For each standardized gap ``delta`` and weight ``w`` this script times one batched call of each sampler on CPU with one
torch thread (median over repeats, ``time.perf_counter``) and reports microseconds per draw; for the rejection sampler
it also reports the measured mean number of proposals per draw and the theoretical per-proposal acceptance rate
``R / (w Phi(delta - s*))``.

The uniforms and the Gaussian noise of the inverse-CDF sampler are drawn before the clock starts (they are its
inputs); the rejection sampler draws its own proposal and acceptance uniforms inside the timed call, which is part
of its cost. The rejection sampler needs ``1 / acceptance`` proposals per draw and its acceptance collapses for small
``delta`` (about 1e-3 at ``delta = 0.05, w = 0.1``), so its number of draws is capped so that the expected number of
proposals stays within a budget; the number of draws actually used is recorded.

Run ``python -m simulations.residual_cost`` (full, under 2 minutes on one core) or with ``--smoke`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulations.provenance import REPOSITORY_ROOT, git_commit, git_dirty, machine
from specdiff.residual import (
    residual_rejection_acceptance_rate,
    sample_weighted_residual,
    sample_weighted_residual_rejection,
)

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "residual_cost.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "residual_cost.json"
DEFAULT_SEED = 20_250_601


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    deltas : tuple of float
        Standardized mean gaps ``|mu - nu| / sigma``.
    weights : tuple of float
        Residual weights ``0 < w <= 1``.
    batch : int
        Draws per inverse-CDF call (and the most draws per rejection call).
    dimension : int
        Event dimension d.
    repeats : int
        Timed calls per (method, delta, weight); the median is reported.
    rejection_proposal_budget : int
        Cap on the expected number of proposals of one rejection call: it uses
        ``min(batch, max(minimum_rejection_draws, budget * acceptance))`` draws.
    minimum_rejection_draws : int
        Fewest draws of one rejection call.
    """

    deltas: tuple[float, ...] = (0.05, 0.5, 2.0)
    weights: tuple[float, ...] = (1.0, 0.5, 0.1)
    batch: int = 10_000
    dimension: int = 64
    repeats: int = 5
    rejection_proposal_budget: int = 1_000_000
    minimum_rejection_draws: int = 200


FULL = Config()
SMOKE = Config(batch=1_000, repeats=2, rejection_proposal_budget=20_000, minimum_rejection_draws=20)


@dataclass(frozen=True)
class Record:
    """One (method, delta, weight) measurement.

    Attributes
    ----------
    method : str
        ``"inverse_cdf"`` or ``"rejection"``.
    delta, weight : float
    dimension : int
    draws : int
        Draws per timed call.
    repeats : int
    microseconds_per_draw : float
        Median over the repeats of (call time / draws).
    microseconds_per_draw_min, microseconds_per_draw_max : float
        Range over the repeats.
    theoretical_acceptance_rate : float or None
        ``R / (w Phi(delta - s*))`` (rejection only).
    expected_proposals_per_draw : float or None
        ``1 / theoretical_acceptance_rate`` (rejection only).
    mean_proposals_per_draw : float or None
        Measured, over all repeats (rejection only).
    """

    method: str
    delta: float
    weight: float
    dimension: int
    draws: int
    repeats: int
    microseconds_per_draw: float
    microseconds_per_draw_min: float
    microseconds_per_draw_max: float
    theoretical_acceptance_rate: float | None
    expected_proposals_per_draw: float | None
    mean_proposals_per_draw: float | None


@dataclass(frozen=True)
class Problem:
    """A batch of target/draft means at a given gap, with the inputs of the samplers."""

    target_mean: torch.Tensor
    draft_mean: torch.Tensor
    sigma: torch.Tensor
    log_weight: torch.Tensor
    uniforms: torch.Tensor
    noise: torch.Tensor


def make_problem(rows: int, dimension: int, delta: float, weight: float, generator: torch.Generator) -> Problem:
    """Random float64 means with ``|mu - nu| / sigma = delta`` in random directions, plus uniforms and noise.

    Parameters
    ----------
    rows, dimension : int
        Batch size and event dimension.
    delta, weight : float
        Standardized gap and residual weight.
    generator : torch.Generator
        Source of all randomness.

    Returns
    -------
    Problem
    """
    draft_mean = torch.randn(rows, dimension, generator=generator, dtype=torch.float64)
    direction = torch.randn(rows, dimension, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    sigma = 0.5 + torch.rand(rows, generator=generator, dtype=torch.float64)
    target_mean = draft_mean + (sigma * delta)[:, None] * direction
    return Problem(
        target_mean=target_mean,
        draft_mean=draft_mean,
        sigma=sigma,
        log_weight=torch.full((rows,), float(np.log(weight)), dtype=torch.float64),
        uniforms=torch.rand(rows, generator=generator, dtype=torch.float64),
        noise=torch.randn(rows, dimension, generator=generator, dtype=torch.float64),
    )


def _time_call(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _summarize(times: Sequence[float], draws: int) -> tuple[float, float, float]:
    per_draw = [1e6 * seconds / draws for seconds in times]
    return statistics.median(per_draw), min(per_draw), max(per_draw)


def rejection_draws(config: Config, acceptance_rate: float) -> int:
    """Draws of one rejection call: the batch, capped so that ``draws / acceptance <= budget`` (at least a minimum).

    Parameters
    ----------
    config : Config
    acceptance_rate : float
        Theoretical per-proposal acceptance.

    Returns
    -------
    int
    """
    capped = int(config.rejection_proposal_budget * acceptance_rate)
    return min(config.batch, max(config.minimum_rejection_draws, capped))


def measure(config: Config, seed: int) -> list[Record]:
    """Time both samplers on every (delta, weight) of ``config``.

    Parameters
    ----------
    config : Config
    seed : int
        Seeds the problems (torch) and the rejection sampler's generators (numpy).

    Returns
    -------
    list of Record
    """
    records = []
    for delta_index, delta in enumerate(config.deltas):
        for weight_index, weight in enumerate(config.weights):
            generator = torch.Generator().manual_seed(seed + 1000 * delta_index + weight_index)
            problem = make_problem(config.batch, config.dimension, delta, weight, generator)

            def inverse_cdf(problem: Problem = problem) -> torch.Tensor:
                return sample_weighted_residual(
                    problem.target_mean,
                    problem.draft_mean,
                    problem.sigma,
                    problem.log_weight,
                    uniforms=problem.uniforms,
                    noise=problem.noise,
                )

            inverse_cdf()  # warm-up
            times = [_time_call(inverse_cdf) for _ in range(config.repeats)]
            median, fastest, slowest = _summarize(times, config.batch)
            records.append(
                Record("inverse_cdf", delta, weight, config.dimension, config.batch, config.repeats,
                       median, fastest, slowest, None, None, None)
            )  # fmt: skip

            rate = float(residual_rejection_acceptance_rate(np.array(np.log(weight)), np.array(delta)))
            draws = rejection_draws(config, rate)
            proposals: list[float] = []
            times = []
            for repeat in range(config.repeats + 1):  # the first call is a warm-up
                rng = np.random.default_rng([seed, delta_index, weight_index, repeat])
                start = time.perf_counter()
                result = sample_weighted_residual_rejection(
                    problem.target_mean[:draws],
                    problem.draft_mean[:draws],
                    problem.sigma[:draws],
                    problem.log_weight[:draws],
                    generator=rng,
                    noise=problem.noise[:draws],
                )
                elapsed = time.perf_counter() - start
                if repeat > 0:
                    times.append(elapsed)
                proposals.extend(result.proposals.double().tolist())
            median, fastest, slowest = _summarize(times, draws)
            records.append(
                Record("rejection", delta, weight, config.dimension, draws, config.repeats, median, fastest, slowest,
                       rate, 1.0 / rate, float(np.mean(proposals)))
            )  # fmt: skip
    return records


def format_table(records: Sequence[Record]) -> str:
    """A plain-text table of the records."""
    header = f"{'delta':>6} {'w':>5} {'method':>11} {'draws':>6} {'us/draw':>9} {'proposals':>10} {'1/accept':>9}"
    lines = [header, "-" * len(header)]
    for record in records:
        measured = "" if record.mean_proposals_per_draw is None else f"{record.mean_proposals_per_draw:.2f}"
        expected = "" if record.expected_proposals_per_draw is None else f"{record.expected_proposals_per_draw:.2f}"
        lines.append(
            f"{record.delta:>6g} {record.weight:>5g} {record.method:>11} {record.draws:>6d} "
            f"{record.microseconds_per_draw:>9.2f} {measured:>10} {expected:>9}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m simulations.residual_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny fast preset (batch 1000, 2 repeats)")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/residual_cost.json)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement, write the JSON and print the table.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0).
    """
    arguments = build_parser().parse_args(argv)
    config = SMOKE if arguments.smoke else FULL
    output: Path = arguments.output or (SMOKE_OUTPUT if arguments.smoke else DEFAULT_OUTPUT)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        records = measure(config, arguments.seed)
        elapsed = time.perf_counter() - start
        payload: dict[str, Any] = {
            "experiment": "residual_cost",
            "preset": "smoke" if arguments.smoke else "full",
            "seed": arguments.seed,
            "commit": git_commit(),
            "dirty": git_dirty(),
            "sizes": {"batch": config.batch, "dimension": config.dimension, "repeats": config.repeats},
            "config": asdict(config),
            "machine": machine(),
            "device": "cpu",
            "dtype": "float64",
            "wall_seconds": elapsed,
            "records": [asdict(record) for record in records],
        }
    finally:
        torch.set_num_threads(previous_threads)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(format_table(records))
    print(f"wrote {output} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
