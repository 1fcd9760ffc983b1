"""A toy experiment for the framework's tests: cells that sleep, draw from their seed, and can be told to fail.

Importable by Dask worker processes (the tests run from the repository root).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main


@dataclass(frozen=True)
class ToyConfig:
    cells: int
    sleep: float
    failing: tuple[int, ...] = ()


@dataclass(frozen=True)
class ToyCell:
    index: int
    sleep: float
    fail: bool


def toy_cells(config: ToyConfig) -> list[ToyCell]:
    return [ToyCell(index, config.sleep, index in config.failing) for index in range(config.cells)]


def run_toy_cell(cell: ToyCell, seed: int) -> dict[str, Any]:
    time.sleep(cell.sleep)
    if cell.fail:
        raise RuntimeError(f"cell {cell.index} was told to fail")
    draws = np.random.default_rng(seed).standard_normal(3)
    return {"index": cell.index, "seed": seed, "draws": draws.tolist()}


def summarize_toy(config: ToyConfig, records: Sequence[Mapping[str, Any]]) -> Summary:
    return Summary(fields={"total": float(sum(sum(r["draws"]) for r in records))}, passed=True)


EXPERIMENT = Experiment(
    module="tests.simulations.toy_experiment",
    description="A toy experiment for the framework's tests.",
    presets={
        "full": ToyConfig(cells=24, sleep=0.25),
        "smoke": ToyConfig(cells=6, sleep=0.0),
        "failing": ToyConfig(cells=6, sleep=0.0, failing=(2,)),
    },
    default_seed=1,
    output="toy.json",
    code=("tests/simulations/toy_experiment.py",),
    cells=toy_cells,
    run_cell=run_toy_cell,
    summarize=summarize_toy,
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
