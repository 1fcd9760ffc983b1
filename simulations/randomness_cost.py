"""Cost per value of the counter-based draws (``specdiff.randomness``) against torch's generator draws, on the CPU.

For each layout B x n (rows x values per row) the script times, with one torch thread: ``counter_normals`` in
float32 and float64 and ``counter_uniforms`` (float64), for B keys at B steps and n codes of one purpose, against
``torch.randn`` (float32, float64) and ``torch.rand`` (float64) of shape (B, n) with a ``torch.Generator``. The keys,
steps and codes are made before the clock starts (a sampler keeps them from round to round). One repeat times
``calls`` consecutive calls, with ``calls`` chosen so that a repeat covers about ``values_per_repeat`` values (small
layouts are dominated by the per-op dispatch, which one call would time poorly). The repeats of the six methods are
interleaved, and the fastest repeat, after a warm-up call, is reported in nanoseconds per value and per call, with
the ratio to torch's draw of the same kind and dtype (``torch.randn`` for the normals, ``torch.rand`` for the
uniforms).

Cells (``simulations.experiment``; wall times, so ``timed``): one per layout, timing the six methods interleaved,
so each ratio to torch's draw comes from one complete measurement.

Run ``python -m simulations.randomness_cost`` (about 15 seconds) or ``--smoke`` (under a second). Writes
``results/randomness_cost.json``: the records (one per layout: ``batch``, ``width`` and its six ``measurements``,
each a :class:`Record`) and ``measurements``, the layouts' records flattened.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from specdiff.randomness import DRAFT_NOISE, counter_normals, counter_uniforms, random_codes, sample_keys

DEFAULT_SEED = 5

#: Timed methods: (name, dtype name, torch reference method of the same kind and dtype).
METHODS: tuple[tuple[str, str, str], ...] = (
    ("counter_normals", "float32", "torch.randn"),
    ("counter_normals", "float64", "torch.randn"),
    ("counter_uniforms", "float64", "torch.rand"),
    ("torch.randn", "float32", "torch.randn"),
    ("torch.randn", "float64", "torch.randn"),
    ("torch.rand", "float64", "torch.rand"),
)


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    layouts : tuple of (int, int)
        (B, n): rows and values per row of one call.
    repeats : int
        Timed repeats per (method, layout); the fastest is reported.
    values_per_repeat : int
        About this many values are drawn per repeat: ``calls = max(1, values_per_repeat // (B * n))``.
    """

    layouts: tuple[tuple[int, int], ...]
    repeats: int
    values_per_repeat: int


FULL = Config(layouts=((1, 64), (64, 64), (64, 16_384)), repeats=5, values_per_repeat=1 << 18)
SMOKE = Config(layouts=((1, 64), (8, 512)), repeats=2, values_per_repeat=1 << 12)


@dataclass(frozen=True)
class Record:
    """One (method, dtype, layout) measurement.

    Attributes
    ----------
    method : str
        ``counter_normals``, ``counter_uniforms``, ``torch.randn`` or ``torch.rand``.
    dtype : str
        Dtype of the values.
    batch, width : int
        B and n of one call.
    values : int
        ``batch * width``.
    calls : int
        Calls per timed repeat.
    repeats : int
    nanoseconds_per_value, nanoseconds_per_call : float
        Fastest repeat, divided by ``calls * values`` and by ``calls``.
    reference_method : str
        torch's draw of the same kind and dtype.
    ratio_to_reference : float
        ``nanoseconds_per_value`` over the reference method's on the same layout.
    """

    method: str
    dtype: str
    batch: int
    width: int
    values: int
    calls: int
    repeats: int
    nanoseconds_per_value: float
    nanoseconds_per_call: float
    reference_method: str
    ratio_to_reference: float


def _draw(method: str, dtype: torch.dtype, batch: int, width: int, seed: int) -> Callable[[], torch.Tensor]:
    """A call drawing one (batch, width) block by ``method``, its inputs made beforehand."""
    if method.startswith("counter"):
        keys = sample_keys(torch.Generator().manual_seed(seed), batch)
        steps = torch.arange(batch, dtype=torch.int64)
        codes = random_codes(DRAFT_NOISE, width)
        if method == "counter_normals":
            return lambda: counter_normals(keys, steps, codes, dtype)
        return lambda: counter_uniforms(keys, steps, codes)
    generator = torch.Generator().manual_seed(seed)
    draw = torch.randn if method == "torch.randn" else torch.rand
    return lambda: draw(batch, width, generator=generator, dtype=dtype)


def fastest_seconds(calls: Sequence[Callable[[], object]], count: int, repeats: int) -> list[float]:
    """Fastest of ``repeats`` timings of ``count`` consecutive calls of each of ``calls``, in seconds.

    Each call is warmed up once; the repeats are interleaved (repeat r times every call in turn), so a change of the
    machine's load affects all of them alike.

    Parameters
    ----------
    calls : sequence of callable
    count, repeats : int

    Returns
    -------
    list of float
        One per call.
    """
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, timings in zip(calls, times, strict=True):
            start = time.perf_counter()
            for _ in range(count):
                call()
            timings.append(time.perf_counter() - start)
    return [min(timings) for timings in times]


@dataclass(frozen=True)
class LayoutCell:
    """One layout B x n: every method of :data:`METHODS`, their repeats interleaved.

    Attributes
    ----------
    batch, width : int
        B and n of one call.
    repeats, values_per_repeat : int
        As in :class:`Config`.
    """

    batch: int
    width: int
    repeats: int
    values_per_repeat: int


@dataclass(frozen=True)
class Layout:
    """The record of a :class:`LayoutCell`: one :class:`Record` per method of :data:`METHODS`, in that order."""

    batch: int
    width: int
    measurements: list[Record]


def cells(config: Config) -> list[LayoutCell]:
    """Every layout of ``config``."""
    return [LayoutCell(batch, width, config.repeats, config.values_per_repeat) for batch, width in config.layouts]


def measure(cell: LayoutCell, seed: int) -> Layout:
    """Time every method of :data:`METHODS` on the cell's layout, and each against torch's draw of its kind.

    Parameters
    ----------
    cell : LayoutCell
    seed : int
        Seeds the keys and the generators.

    Returns
    -------
    Layout
    """
    batch, width = cell.batch, cell.width
    values = batch * width
    calls = max(1, cell.values_per_repeat // values)
    draws = [_draw(method, getattr(torch, dtype), batch, width, seed) for method, dtype, _ in METHODS]
    fastest = fastest_seconds(draws, calls, cell.repeats)
    timed = {(method, dtype): seconds / calls for (method, dtype, _), seconds in zip(METHODS, fastest, strict=True)}
    records = []
    for method, dtype_name, reference in METHODS:
        seconds = timed[method, dtype_name]
        records.append(
            Record(method, dtype_name, batch, width, values, calls, cell.repeats, 1e9 * seconds / values,
                   1e9 * seconds, reference, seconds / timed[reference, dtype_name])
        )  # fmt: skip
    return Layout(batch, width, records)


def measurements(layouts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of ``layouts`` (as JSON mappings) flattened, in order."""
    return [record for layout in layouts for record in layout["measurements"]]


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of the records (as JSON mappings of :class:`Record`)."""
    header = f"{'B x n':>11} {'method':>16} {'dtype':>7} {'ns/value':>9} {'us/call':>9} {'vs torch':>8}"
    lines = [header, "-" * len(header)]
    for record in records:
        layout = f"{record['batch']}x{record['width']}"
        lines.append(
            f"{layout:>11} {record['method']:>16} {record['dtype']:>7} "
            f"{record['nanoseconds_per_value']:>9.2f} {record['nanoseconds_per_call'] / 1e3:>9.2f} "
            f"{record['ratio_to_reference']:>8.2f}"
        )
    return "\n".join(lines)


def describe(layout: Mapping[str, Any]) -> str:
    """The printed lines of one layout."""
    return format_table(layout["measurements"]).split("\n", 2)[2]


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Every measurement flattened (``measurements``), with the device; the table to print."""
    flat = measurements(records)
    return Summary(fields={"device": "cpu", "measurements": flat}, text=format_table(flat))


EXPERIMENT = Experiment(
    module="simulations.randomness_cost",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="randomness_cost.json",
    code=("specdiff/randomness.py", "simulations/randomness_cost.py"),
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
