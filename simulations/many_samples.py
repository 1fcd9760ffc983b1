"""Many samples, sharded by sample key: an exactness check at large n that any number of workers computes alike.

A *job* draws ``samples`` samples of one-Gaussian data in ``dimension`` dimensions (the closed-form law of
``simulations.exactness``) with the speculative sampler, and tests them against the chain's exact final law by the
projected one-sample KS test at level ``LEVEL`` (4 projections, Bonferroni). The job is split into shards of
``shard`` consecutive samples; each shard is a cell. Sample i's randomness depends on its key alone: its initial
noise and its sampler key come from generators seeded by ``derived_seed(job_seed, "noise i")`` and
``derived_seed(job_seed, "key i")``, where the job's seed is the cells' common seed (the shard bounds are
``shared_seed_fields``, outside the seed). So the samples, and their SHA-256 in the results file, are bit for bit
the same whether the shards run in one process, on K Dask workers or on a cluster, and whatever the shard size
(tested on the CPU). With ``device="cuda"`` on a machine with several GPUs, each Dask worker runs its shards on its
own device (``simulations.experiment.local_device``).

Each job of ``controls`` runs the same check with a deliberately wrong rule (``simulations.controls``), which the
test must reject. Run ``python -m simulations.many_samples`` (200 000 samples, minutes; add ``--workers K``) or
``--smoke``. Writes ``results/many_samples.json`` (the p-values and the samples' hash) and the samples themselves
to ``results/many_samples.samples.npy`` (not tracked).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simulations.cells import decode_array, derived_seed, encode_array
from simulations.common import gaussian_problem, make_drafter, make_kernel
from simulations.controls import CONTROLS, rule_with_control
from simulations.exactness import closed_form_pvalue
from simulations.experiment import Experiment, Summary, local_device
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.policies import AdaptiveWindow
from specdiff.sampler import DEFAULT_RULE, RuleName, sample

#: Per-job false-positive rate of the KS check.
LEVEL = 1e-3


@dataclass(frozen=True)
class Config:
    """A job and its negative controls."""

    dimension: int
    kernel: str
    steps: int
    drafter: str
    rule: RuleName
    samples: int
    shard: int
    controls: tuple[str, ...]
    control_samples: int
    device: str = "cpu"


FULL = Config(
    dimension=16,
    kernel="ddpm",
    steps=20,
    drafter="free-nearest",
    rule=DEFAULT_RULE,
    samples=200_000,
    shard=10_000,
    controls=("accept-always",),
    control_samples=20_000,
)
SMOKE = Config(
    dimension=4,
    kernel="ddpm",
    steps=10,
    drafter="free-nearest",
    rule=DEFAULT_RULE,
    samples=2_000,
    shard=500,
    controls=("accept-always",),
    control_samples=2_000,
)


@dataclass(frozen=True)
class Shard:
    """Samples ``first`` .. ``first + count - 1`` of a job (``control`` None: the exact rule)."""

    dimension: int
    kernel: str
    steps: int
    drafter: str
    rule: RuleName
    control: str | None
    device: str
    first: int
    count: int


def shards(config: Config) -> list[Shard]:
    """The exact job's shards, then each control's."""
    jobs = [(None, config.samples), *((control, config.control_samples) for control in config.controls)]
    return [
        Shard(
            config.dimension,
            config.kernel,
            config.steps,
            config.drafter,
            config.rule,
            control,
            config.device,
            first,
            min(config.shard, total - first),
        )
        for control, total in jobs
        for first in range(0, total, config.shard)
    ]


def sample_generators(job_seed: int, first: int, count: int, purpose: str) -> list[torch.Generator]:
    """One generator per sample ``first .. first + count - 1``, seeded by ``derived_seed(job_seed, purpose i)``."""
    return [
        torch.Generator().manual_seed(derived_seed(job_seed, f"{purpose} {i}")) for i in range(first, first + count)
    ]


def run_shard(shard: Shard, seed: int) -> dict[str, Any]:
    """The shard's samples (bit for bit, as :func:`simulations.cells.encode_array`) and its target calls."""
    problem, kernel = gaussian_problem(shard.dimension), make_kernel(shard.kernel, shard.steps)
    device = local_device(shard.device)
    noise = torch.stack(
        [
            torch.randn(shard.dimension, dtype=torch.float64, generator=generator)
            for generator in sample_generators(seed, shard.first, shard.count, "noise")
        ]
    )
    result = sample(
        problem.data.as_model(kernel),
        kernel,
        (kernel.prior_std * noise).to(device),
        drafter=make_drafter(shard.drafter, problem, kernel),
        window=AdaptiveWindow(max_window=8),
        rule=rule_with_control(shard.rule, shard.control),
        generator=sample_generators(seed, shard.first, shard.count, "key"),
    )
    return {
        "control": shard.control,
        "first": shard.first,
        "count": shard.count,
        "target_calls": result.target_calls,
        "samples": encode_array(result.samples.detach().cpu().double().numpy()),
    }


def job_samples(records: Sequence[Mapping[str, Any]], control: str | None) -> np.ndarray:
    """A job's samples, (n, d), in key order, from its shards' records."""
    parts = sorted((r for r in records if r["control"] == control), key=lambda r: r["first"])
    return np.concatenate([decode_array(r["samples"]) for r in parts])


def samples_digest(samples: np.ndarray) -> str:
    """SHA-256 of the samples' little-endian float64 bytes."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<f8").tobytes()).hexdigest()


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Each job's KS p-value against the closed-form law (the exact job kept, each control rejected) and hash."""
    problem = gaussian_problem(config.dimension)
    jobs: list[dict[str, Any]] = []
    for control in (None, *config.controls):
        draws = job_samples(records, control)
        p_value, _ = closed_form_pvalue(problem, config.kernel, config.steps, torch.from_numpy(draws), seed=0)
        calls = [r["target_calls"] for r in records if r["control"] == control]
        jobs.append(
            {
                "control": control,
                "samples": len(draws),
                "p_value": p_value,
                "rejected": p_value < LEVEL,
                "expected_rejection": control is not None,
                "sha256": samples_digest(draws),
                "mean_target_calls_per_shard": float(np.mean(calls)),
            }
        )
    passed = all(job["rejected"] == job["expected_rejection"] for job in jobs)
    text = "\n".join(
        f"{job['control'] or 'exact':<16} n={job['samples']:<7} p={job['p_value']:.3g} "
        f"{'rejected' if job['rejected'] else 'kept'}  sha256 {job['sha256'][:16]}"
        for job in jobs
    )
    return Summary(
        fields={"level": LEVEL, "jobs": jobs},
        passed=passed,
        text=text,
        arrays={"samples": job_samples(records, None)},
    )


def condense(record: Mapping[str, Any]) -> dict[str, Any]:
    """A shard's record without its samples, which go to the ``.samples.npy`` file; their hash stays."""
    samples = decode_array(record["samples"])
    return {**{k: v for k, v in record.items() if k != "samples"}, "sha256": samples_digest(samples)}


EXPERIMENT = Experiment(
    module="simulations.many_samples",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=11,
    output="many_samples.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/models/gmm.py",
        "specdiff/stats.py",
        "simulations/common.py",
        "simulations/controls.py",
        "simulations/exactness.py",
        "simulations/many_samples.py",
    ),
    cells=shards,
    run_cell=run_shard,
    summarize=summarize,
    options=("device",),
    shared_seed_fields=("first", "count"),
    condense=condense,
)

__all__ = ["CONTROLS", "EXPERIMENT", "FULL", "LEVEL", "SMOKE", "Config", "Shard", "job_samples", "main", "shards"]


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
