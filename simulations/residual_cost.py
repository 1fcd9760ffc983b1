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

Cells (``simulations.experiment``; wall times, so ``timed``): one per (delta, weight), timing both samplers on the
same problem (drawn from the cell's seed) one after the other, so each pair compared is one complete measurement.

Run ``python -m simulations.residual_cost`` (full, under 2 minutes on one core) or with ``--smoke`` (seconds). Writes
``results/residual_cost.json``: the records (one pair per cell: ``delta``, ``weight``, ``inverse_cdf`` and
``rejection``, each a :class:`Record`) and ``measurements``, the pairs' records flattened.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simulations.cells import derived_seed
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from specdiff.residual import (
    residual_rejection_acceptance_rate,
    sample_weighted_residual,
    sample_weighted_residual_rejection,
)

DEFAULT_SEED = 20_250_601
#: The samplers timed, in the order of a pair's measurements.
METHODS = ("inverse_cdf", "rejection")


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


def rejection_draws(config: Config | PairCell, acceptance_rate: float) -> int:
    """Draws of one rejection call: the batch, capped so that ``draws / acceptance <= budget`` (at least a minimum).

    Parameters
    ----------
    config : Config or PairCell
    acceptance_rate : float
        Theoretical per-proposal acceptance.

    Returns
    -------
    int
    """
    capped = int(config.rejection_proposal_budget * acceptance_rate)
    return min(config.batch, max(config.minimum_rejection_draws, capped))


@dataclass(frozen=True)
class PairCell:
    """One (delta, weight): both samplers timed on the same problem, one after the other.

    Attributes
    ----------
    delta, weight : float
    batch, dimension, repeats, rejection_proposal_budget, minimum_rejection_draws : int
        As in :class:`Config`.
    """

    delta: float
    weight: float
    batch: int
    dimension: int
    repeats: int
    rejection_proposal_budget: int
    minimum_rejection_draws: int


@dataclass(frozen=True)
class Pair:
    """The record of a :class:`PairCell`: the inverse-CDF and the rejection measurement."""

    delta: float
    weight: float
    inverse_cdf: Record
    rejection: Record


def cells(config: Config) -> list[PairCell]:
    """Every (delta, weight) of ``config``."""
    return [
        PairCell(
            delta,
            weight,
            config.batch,
            config.dimension,
            config.repeats,
            config.rejection_proposal_budget,
            config.minimum_rejection_draws,
        )
        for delta in config.deltas
        for weight in config.weights
    ]


def measure_inverse_cdf(cell: PairCell, problem: Problem) -> Record:
    """Median, fastest and slowest of ``cell.repeats`` timed inverse-CDF calls on the whole batch, after a warm-up."""

    def inverse_cdf() -> torch.Tensor:
        return sample_weighted_residual(
            problem.target_mean,
            problem.draft_mean,
            problem.sigma,
            problem.log_weight,
            uniforms=problem.uniforms,
            noise=problem.noise,
        )

    inverse_cdf()  # warm-up
    times = [_time_call(inverse_cdf) for _ in range(cell.repeats)]
    median, fastest, slowest = _summarize(times, cell.batch)
    return Record("inverse_cdf", cell.delta, cell.weight, cell.dimension, cell.batch, cell.repeats,
                  median, fastest, slowest, None, None, None)  # fmt: skip


def measure_rejection(cell: PairCell, problem: Problem, seed: int) -> Record:
    """Median, fastest and slowest of ``cell.repeats`` timed rejection calls on the first :func:`rejection_draws`
    rows, after a warm-up call; each call's numpy generator is seeded by ``[seed, repeat]``."""
    rate = float(residual_rejection_acceptance_rate(np.array(np.log(cell.weight)), np.array(cell.delta)))
    draws = rejection_draws(cell, rate)
    proposals: list[float] = []
    times = []
    for repeat in range(cell.repeats + 1):  # the first call is a warm-up
        rng = np.random.default_rng([seed, repeat])
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
    return Record("rejection", cell.delta, cell.weight, cell.dimension, draws, cell.repeats, median, fastest, slowest,
                  rate, 1.0 / rate, float(np.mean(proposals)))  # fmt: skip


def measure(cell: PairCell, seed: int) -> Pair:
    """Time both samplers on the cell's (delta, weight).

    Parameters
    ----------
    cell : PairCell
    seed : int
        Seeds the problem (torch, ``seed``) and the rejection sampler's generators (numpy,
        ``derived_seed(seed, "rejection")``).

    Returns
    -------
    Pair
    """
    generator = torch.Generator().manual_seed(seed)
    problem = make_problem(cell.batch, cell.dimension, cell.delta, cell.weight, generator)
    inverse = measure_inverse_cdf(cell, problem)
    rejection = measure_rejection(cell, problem, derived_seed(seed, "rejection"))
    return Pair(cell.delta, cell.weight, inverse, rejection)


def measurements(pairs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of ``pairs`` (as JSON mappings) flattened: each pair's inverse-CDF, then its rejection record."""
    return [pair[method] for pair in pairs for method in METHODS]


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of the records (as JSON mappings of :class:`Record`)."""
    header = f"{'delta':>6} {'w':>5} {'method':>11} {'draws':>6} {'us/draw':>9} {'proposals':>10} {'1/accept':>9}"
    lines = [header, "-" * len(header)]
    for record in records:
        measured, expected = record["mean_proposals_per_draw"], record["expected_proposals_per_draw"]
        lines.append(
            f"{record['delta']:>6g} {record['weight']:>5g} {record['method']:>11} {record['draws']:>6d} "
            f"{record['microseconds_per_draw']:>9.2f} {'' if measured is None else f'{measured:.2f}':>10} "
            f"{'' if expected is None else f'{expected:.2f}':>9}"
        )
    return "\n".join(lines)


def describe(pair: Mapping[str, Any]) -> str:
    """The printed lines of one pair."""
    return format_table(measurements([pair])).split("\n", 2)[2]


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Every measurement flattened (``measurements``), with the device and dtype; the table to print."""
    flat = measurements(records)
    return Summary(fields={"device": "cpu", "dtype": "float64", "measurements": flat}, text=format_table(flat))


EXPERIMENT = Experiment(
    module="simulations.residual_cost",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="residual_cost.json",
    code=("specdiff/residual.py", "specdiff/residual_law.py", "simulations/residual_cost.py"),
    cells=cells,
    run_cell=measure,
    summarize=summarize,
    timed=True,
    describe=describe,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement (``simulations.experiment``), write the JSON and print the table.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0, or 1 where a cell failed.
    """
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
