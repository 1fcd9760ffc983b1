"""Exactness of speculative sampling: every rule x drafter x kernel x dimension against the exact law.

Three families of checks, each a p-value judged at the declared per-check level ``LEVEL``:

- **closed form**: one-Gaussian data, so the discretized chain is linear-Gaussian and the law of its final sample
  is known exactly (``gaussian_chain_marginals``). One-sample KS of the speculative samples on 4 projections (the
  mean direction and 3 random ones, Bonferroni).
- **against plain sampling**: Gaussian-mixture data (no closed form); the speculative samples against
  ``sample_plain`` of the same model with independent randomness, by projected KS, MMD and energy distance
  (``specdiff.stats.compare_samplers``, ``COMPARISON_PERMUTATIONS`` permutations), Bonferroni over the three.
- **negative controls** (``simulations.controls``): deliberately wrong variants of the block rule run through the
  same closed-form check, which must reject each of them; they use a poor draft model (``control_problem``), 10 steps
  and n = 20 000 so that rejections, and so the residual, matter.

With ``LEVEL = 1e-3`` per check, about one full run in eight (120 exact checks) rejects an exact configuration by
chance.
So a rejected exact configuration is **rechecked** once with fresh, independent randomness and 4x the samples, and
fails only if the recheck rejects too: a false failure then has probability ``LEVEL**2`` per configuration (about
1e-4 for the whole run), while a real defect, detectable at n, is detected at 4n with more power. Both p-values are
recorded. The negative controls are not rechecked: they must be rejected at the first stage. The window policy is
the adaptive one (plain steps included) unless stated.

Run ``python -m simulations.exactness`` (full, minutes) or ``--smoke`` (seconds, used by the tests). Writes
``results/exactness.json`` and prints a table of p-values.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from simulations.cells import derived_seed
from simulations.common import (
    DRAFTER_NAMES,
    KERNEL_NAMES,
    Problem,
    gaussian_problem,
    initial_noise,
    make_drafter,
    make_kernel,
    mixture_problem,
)
from simulations.controls import CONTROLS, rule_with_control
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.models.gmm import gaussian_chain_marginals, perturbed
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample, sample_plain
from specdiff.stats import compare_samplers, ks_one_sample_projection, random_directions
from specdiff.verify import RULES, VerificationRule

DEFAULT_SEED = 7
#: Per-check false-positive rate.
LEVEL = 1e-3
#: Permutations of the MMD and energy tests against plain sampling: their p-values are at least 1 / (P + 1), so the
#: Bonferroni-combined p-value 3 / (P + 1) must be able to fall below LEVEL (with P = 200 they could never reject).
COMPARISON_PERMUTATIONS = 3999
#: A rejected exact configuration is rechecked with this many times the samples ...
RECHECK_FACTOR = 4


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    dimensions: tuple[int, ...]
    kernels: tuple[str, ...]
    drafters: tuple[str, ...]
    rules: tuple[RuleName, ...]
    steps: int
    samples: int
    samples_high_dimension: int  # for d >= 1024
    comparison_dimensions: tuple[int, ...]
    comparison_samples: int
    control_samples: int
    control_steps: int
    controls: tuple[str, ...]


FULL = Config(
    dimensions=(2, 64, 1024),
    kernels=KERNEL_NAMES,
    drafters=DRAFTER_NAMES,
    rules=(*RULES, "adaptive"),
    steps=20,
    samples=4000,
    samples_high_dimension=2000,
    comparison_dimensions=(2, 64),
    comparison_samples=1500,
    control_samples=20_000,
    control_steps=10,
    controls=CONTROLS,
)
#: A medium sweep (minutes): every rule and two drafters on two kernels, for timing the engines.
MEDIUM = Config(
    dimensions=(2, 64),
    kernels=("ddpm", "ddim"),
    drafters=("free-nearest", "model"),
    rules=(*RULES, "adaptive"),
    steps=20,
    samples=2000,
    samples_high_dimension=2000,
    comparison_dimensions=(2,),
    comparison_samples=600,
    control_samples=20_000,
    control_steps=10,
    controls=CONTROLS,
)
SMOKE = Config(
    dimensions=(2,),
    kernels=("ddpm",),
    drafters=("free-nearest", "model"),
    rules=RULES,
    steps=10,
    samples=600,
    samples_high_dimension=600,
    comparison_dimensions=(2,),
    comparison_samples=300,
    control_samples=3000,
    control_steps=10,
    controls=("accept-always",),
)


@dataclass(frozen=True)
class CheckCell:
    """The parameters of one check: a cell of the sweep."""

    family: str  # "closed-form", "vs-plain" or "control"
    kernel: str
    dimension: int
    drafter: str
    rule: RuleName
    control: str | None
    samples: int
    steps: int


@dataclass(frozen=True)
class Check:
    """One exactness check."""

    family: str  # "closed-form", "vs-plain" or "control"
    kernel: str
    dimension: int
    drafter: str
    rule: str
    window: str
    control: str | None
    samples: int
    p_value: float
    rejected: bool
    expected_rejection: bool
    target_calls: int
    steps: int
    qq_quantiles: list[float] | None = None  # closed-form checks: standardized projection quantiles
    recheck_p_value: float | None = None  # a rejected exact configuration, rechecked at 4x the samples
    recheck_samples: int | None = None

    @property
    def passed(self) -> bool:
        return passed(asdict(self))


def passed(check: Mapping[str, Any]) -> bool:
    """Whether a check (as a record) came out as expected: a control rejected, an exact configuration kept (at the
    first stage or at its recheck)."""
    if check["expected_rejection"]:
        return bool(check["rejected"])
    recheck = check["recheck_p_value"]
    return not check["rejected"] or (recheck is not None and recheck >= LEVEL)


def _speculate(
    problem: Problem,
    kernel_name: str,
    drafter: str,
    rule: RuleName | VerificationRule,
    policy: WindowPolicy,
    samples: int,
    steps: int,
    seed: int,
) -> tuple[torch.Tensor, int]:
    kernel = make_kernel(kernel_name, steps)
    result = sample(
        problem.data.as_model(kernel),
        kernel,
        initial_noise(kernel, samples, problem.dimension, seed),
        drafter=make_drafter(drafter, problem, kernel),
        window=policy,
        rule=rule,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    return result.samples, result.target_calls


#: Probabilities at which the QQ data of the closed-form checks are recorded.
QQ_PROBABILITIES = tuple((i + 0.5) / 50 for i in range(50))


def closed_form_pvalue(
    problem: Problem, kernel_name: str, steps: int, samples: torch.Tensor, seed: int
) -> tuple[float, list[float]]:
    """Bonferroni p-value of the projected one-sample KS test against the chain's closed-form final law, and the
    empirical quantiles (at ``QQ_PROBABILITIES``) of the standardized projection on the mean direction."""
    marginals = gaussian_chain_marginals(problem.data, make_kernel(kernel_name, steps))
    mean = torch.from_numpy(marginals.means[-1])
    covariance = torch.from_numpy(marginals.covariances[-1])
    direction = mean / mean.norm()
    directions = torch.cat(
        [direction[None, :], random_directions(3, problem.dimension, generator=torch.Generator().manual_seed(seed))]
    )
    standardized = (samples.double() @ direction - mean @ direction) / torch.sqrt(direction @ covariance @ direction)
    quantiles = torch.quantile(standardized, torch.tensor(QQ_PROBABILITIES, dtype=torch.float64)).tolist()
    return ks_one_sample_projection(samples, mean, covariance, directions).p_value, quantiles


def control_problem(dimension: int) -> Problem:
    """The problem of the negative controls: one Gaussian with a poor draft model (mean shifted by 1), so that
    rejections and residual draws are frequent and a wrong rule shows at n = 20 000."""
    problem = gaussian_problem(dimension)
    sign = torch.tensor([(-1.0) ** i for i in range(dimension)], dtype=torch.float64) / math.sqrt(dimension)
    return Problem("gaussian-poor-draft", dimension, problem.data, perturbed(problem.data, mean_shift=sign))


def _closed_form_check(cell: CheckCell, seed: int) -> Check:
    policy: WindowPolicy
    if cell.control is None:
        problem, policy = gaussian_problem(cell.dimension), AdaptiveWindow(max_window=8)
    else:
        problem, policy = control_problem(cell.dimension), FixedWindow(4)
    rule = rule_with_control(cell.rule, cell.control)
    draws, calls = _speculate(problem, cell.kernel, cell.drafter, rule, policy, cell.samples, cell.steps, seed)
    p_value, quantiles = closed_form_pvalue(problem, cell.kernel, cell.steps, draws, seed + 2)
    return Check(
        family=cell.family,
        kernel=cell.kernel,
        dimension=cell.dimension,
        drafter=cell.drafter,
        rule=cell.rule,
        window=repr(policy),
        control=cell.control,
        samples=cell.samples,
        p_value=p_value,
        rejected=p_value < LEVEL,
        expected_rejection=cell.control is not None,
        target_calls=calls,
        steps=cell.steps,
        qq_quantiles=quantiles,
    )


def _plain_comparison_check(cell: CheckCell, seed: int) -> Check:
    dimension, drafter, rule, n = cell.dimension, cell.drafter, cell.rule, cell.samples
    problem = mixture_problem(dimension)
    kernel = make_kernel("ddpm", cell.steps)
    model = problem.data.as_model(kernel)
    plain = sample_plain(
        model,
        kernel,
        initial_noise(kernel, n, dimension, seed + 10),
        generator=torch.Generator().manual_seed(seed + 11),
    )
    speculative, calls = _speculate(problem, "ddpm", drafter, rule, AdaptiveWindow(max_window=8), n, cell.steps, seed)
    report = compare_samplers(
        speculative,
        plain.samples,
        generator=torch.Generator().manual_seed(seed + 12),
        alpha=LEVEL / 3,
        permutations=COMPARISON_PERMUTATIONS,
    )
    p_value = min(1.0, 3 * min(row.p_value for row in report.rows))
    return Check(
        family="vs-plain",
        kernel="ddpm",
        dimension=dimension,
        drafter=drafter,
        rule=rule,
        window="AdaptiveWindow(max_window=8)",
        control=None,
        samples=n,
        p_value=p_value,
        rejected=p_value < LEVEL,
        expected_rejection=False,
        target_calls=calls,
        steps=cell.steps,
    )


def cells(config: Config) -> list[CheckCell]:
    """The checks of ``config``: closed form (every kernel, dimension, drafter and rule), against plain sampling,
    and the negative controls."""
    closed_form = [
        CheckCell(
            "closed-form",
            kernel,
            dimension,
            drafter,
            rule,
            None,
            config.samples if dimension < 1024 else config.samples_high_dimension,
            config.steps,
        )
        for kernel in config.kernels
        for dimension in config.dimensions
        for drafter in config.drafters
        for rule in config.rules
    ]
    comparisons = [
        CheckCell("vs-plain", "ddpm", dimension, drafter, rule, None, config.comparison_samples, config.steps)
        for dimension in config.comparison_dimensions
        for drafter in ("free-nearest", "model")
        for rule in config.rules
    ]
    controls = [
        CheckCell("control", "ddpm", 2, "model", "block", control, config.control_samples, config.control_steps)
        for control in config.controls
    ]
    return closed_form + comparisons + controls


def run_check(cell: CheckCell, seed: int) -> Check:
    """One check; a rejected exact configuration is rechecked with ``RECHECK_FACTOR`` times the samples and an
    independent seed (``derived_seed(seed, "recheck")``). Controls are not rechecked."""
    make = _plain_comparison_check if cell.family == "vs-plain" else _closed_form_check
    check = make(cell, seed)
    if not check.rejected or cell.control is not None:
        return check
    larger = replace(cell, samples=RECHECK_FACTOR * cell.samples)
    again = make(larger, derived_seed(seed, "recheck"))
    return replace(check, recheck_p_value=again.p_value, recheck_samples=again.samples)


def describe(check: Mapping[str, Any]) -> str:
    """A printed line per check."""
    verdict = "ok" if passed(check) else "FAILED"
    label = check["control"] or "-"
    recheck = ""
    if check["recheck_p_value"] is not None:
        recheck = f"  recheck n={check['recheck_samples']} p={check['recheck_p_value']:.3g}"
    return (
        f"{check['family']:<11} {check['kernel']:<15} d={check['dimension']:<5} {check['drafter']:<13} "
        f"{check['rule']:<16} {label:<19} n={check['samples']:<6} p={check['p_value']:<10.3g} "
        f"{'rejected' if check['rejected'] else 'kept':<8} {verdict}{recheck}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Every check as expected; the level and the QQ probabilities for the report."""
    failed = [check for check in records if not passed(check)]
    return Summary(
        fields={"level": LEVEL, "qq_probabilities": QQ_PROBABILITIES, "all_passed": not failed},
        passed=not failed,
        text="\n".join(describe(check) for check in failed)
        + f"\n{len(records) - len(failed)}/{len(records)} checks as expected",
    )


EXPERIMENT = Experiment(
    module="simulations.exactness",
    description=__doc__ or "",
    presets={"full": FULL, "medium": MEDIUM, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="exactness.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/models/gmm.py",
        "specdiff/stats.py",
        "simulations/common.py",
        "simulations/controls.py",
        "simulations/exactness.py",
    ),
    cells=cells,
    run_cell=run_check,
    summarize=summarize,
    describe=describe,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXPERIMENT",
    "FULL",
    "LEVEL",
    "MEDIUM",
    "SMOKE",
    "Check",
    "CheckCell",
    "Config",
    "cells",
    "closed_form_pvalue",
    "main",
    "passed",
    "run_check",
]
