"""The sharded many-sample job: exact at its n, its control rejected, and bit for bit the same however it is run."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from simulations import many_samples
from simulations.experiment import Engine, make_cells, sweep


def _run(tmp_path: Path, name: str, *arguments: str) -> dict[str, Any]:
    output = tmp_path / f"{name}.json"
    status = many_samples.main(
        ["--smoke", "--output", str(output), "--store", str(tmp_path / f"{name}-store"), *arguments]
    )
    assert status == 0
    return json.loads(output.read_text())


def test_the_job_keeps_the_exact_rule_rejects_its_control_and_is_the_same_on_two_workers(tmp_path: Path) -> None:
    serial = _run(tmp_path, "serial")
    jobs = {job["control"]: job for job in serial["jobs"]}
    assert not jobs[None]["rejected"] and jobs[None]["samples"] == many_samples.SMOKE.samples
    assert jobs["accept-always"]["rejected"]  # the negative control, at the same level
    samples = np.load(tmp_path / "serial.samples.npy")
    assert samples.shape == (many_samples.SMOKE.samples, many_samples.SMOKE.dimension)
    assert many_samples.samples_digest(samples) == jobs[None]["sha256"]
    assert all("samples" not in record and len(record["sha256"]) == 64 for record in serial["records"])
    dask = _run(tmp_path, "dask", "--workers", "2")
    assert dask["jobs"] == serial["jobs"] and dask["records"] == serial["records"]
    resumed = _run(tmp_path, "serial")
    assert resumed["sweep"]["resumed"] == len(serial["records"]) and resumed["jobs"] == serial["jobs"]


def test_a_samples_value_depends_on_its_key_not_on_the_shards() -> None:
    digests = set()
    for shard in (250, 500, 2000):
        config = dataclasses.replace(many_samples.SMOKE, shard=shard, controls=())
        experiment = many_samples.EXPERIMENT
        result = sweep(experiment, make_cells(experiment, config, 11), Engine(), None, progress=io.StringIO())
        digests.add(many_samples.samples_digest(many_samples.job_samples(result.records, None)))
    assert len(digests) == 1
    # ... while another root seed gives other samples.
    other = sweep(
        many_samples.EXPERIMENT,
        make_cells(many_samples.EXPERIMENT, many_samples.SMOKE, 12),
        Engine(),
        None,
        progress=io.StringIO(),
    )
    assert many_samples.samples_digest(many_samples.job_samples(other.records, None)) not in digests
