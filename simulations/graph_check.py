"""Does a replayed round give the round's own samples? Graph replay against the round run as it is, bitwise.

For each configuration (drafter, rule, window, compiled or not) the trained digits DiT is sampled twice from the same
noise and generator seed: with ``graph="off"`` (every round run as it is) and with the graph of the device
(``graph="cuda"`` on a CUDA device: the CUDA graph path; ``graph="simulated"`` elsewhere:
:class:`specdiff.graphs.SimulatedGraph`, which stands for a CUDA graph on a machine without one). The two runs must
agree **bitwise**: the samples, and every per-round statistic (root steps, windows, accepted lengths, block flags,
gaps and weights, NaN where NaN). Replaying changes nothing that is computed, so any difference is a bug of the
replay: memory the replay does not see, an allocation it cannot repeat, a host read inside the round. A failed
capture (an exception with ``graph="cuda"``) is recorded as a disagreement.

One thing besides the replay differs between the two runs: a replayed round is as wide as the policy's largest window
(static shapes), a round run as it is only as wide as its longest window, so the model is called on more rows. A
network's output for a row can depend on how many rows it is called with, in the last bits (matrix products pick
their kernels by size). Eager cells therefore call the DiT one row at a time (:class:`RowwiseModel`: the same
network, each row's output independent of the others), so that only the replay can make a difference. Compiled cells
run with ``compile=True`` in both runs, whose rounds are as wide as the policy's largest window either way, and call
the DiT as it is; they run on CUDA only (the simulation records the operations torch dispatches, and Inductor's
generated CPU kernels are not dispatched, so it cannot replay them): elsewhere they are recorded as ``"not run"``.

Negative control (``control=True``): a drafter that keeps its memory in a Python list (the root's prediction of the
last round) instead of its own tensor attributes, which breaks the replay's contract (``Drafter``'s docstring); its
replayed samples must differ. The run passes when every configuration agrees and every control disagrees (at least
one control must have run; the presets run one first).

Run ``python -m simulations.graph_check [--smoke] [--device cuda]``. This check is made for the GPU run
(``simulations/gpu_checks.sh`` runs the ``full`` preset on CUDA, where it is the first test of the CUDA graph path
on real hardware); on a CPU the ``full`` preset runs the same configurations through the simulation (the compiled
ones take minutes to compile there). Writes ``results/graph_check.json`` (``results/smoke/graph_check.json`` with
``--smoke``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from simulations.common import network_drafter, shipped_digits
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.drafters import Drafter, FreeDrafter, RoundObservation
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT
from specdiff.policies import AdaptiveWindow, FixedWindow
from specdiff.sampler import SpeculativeResult, sample

DEFAULT_SEED = 23
#: The shipped checkpoint sampled (its bytes enter the cells' keys).
WEIGHTS = ("specdiff/models/weights/dit_digits.safetensors", "specdiff/models/weights/dit_digits.json")
#: The per-round statistics compared besides the samples.
LOG_FIELDS = ("steps", "windows", "accepted", "block_verified", "deltas", "weights")


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    batch : int
        Samples per run (labels ``0, 1, ...`` mod 10).
    steps : int
        DDPM steps (respaced from the 1000 training steps).
    runs : tuple of (drafter, rule, window, compiled, control)
        The configurations; ``window`` a fixed window or None for the adaptive window; ``control`` True for the
        negative control (its drafter is then the list-memory drafter, whatever ``drafter`` says).
    device : str
        Where the model and the states live (``--device``).
    """

    batch: int
    steps: int
    runs: tuple[tuple[str, str, int | None, bool, bool], ...]
    device: str = "cpu"


_EAGER = tuple(
    (drafter, rule, window, False, False)
    for drafter in ("free-nearest", "free-committed", "free-exit", "frozen", "extrapolating")
    for rule, window in (("block", 8), ("token-reflection", 8), ("adaptive", None))
)
FULL = Config(
    batch=4,
    steps=40,
    runs=(
        ("free-nearest", "block", 4, False, True),
        *_EAGER,
        ("free-nearest", "block", 8, True, False),
        ("free-nearest", "block", 4, True, True),
        ("free-nearest", "adaptive", None, True, False),
    ),
)
SMOKE = Config(
    batch=2,
    steps=12,
    runs=(
        ("free-nearest", "block", 4, False, False),
        ("frozen", "adaptive", None, False, False),
        ("free-nearest", "block", 4, False, True),
    ),
)


@dataclass(frozen=True)
class CheckCell:
    """One configuration: a cell of the sweep."""

    drafter: str
    rule: str
    window: int | None
    compiled: bool
    control: bool
    batch: int
    steps: int
    device: str


class ListMemoryDrafter(FreeDrafter):
    """Negative control: keeps the root's prediction of the last round in a Python list, out of a replay's sight."""

    def reset(self, batch: int, chain: Any, device: torch.device | str = "cpu") -> None:
        super().reset(batch, chain, device)
        self.memory: list[torch.Tensor] = []

    def observe_round(self, observation: RoundObservation) -> None:
        super().observe_round(observation)
        self.memory[:] = [observation.predictions[:, 0]]

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        if not self.memory:
            return super().draft(states, steps, rows, slot)
        return self._model_chain().means(states, self.memory[0][rows], steps)


class RowwiseModel:
    """A model called one row at a time (the rows' outputs concatenated): each row's output is then independent of
    the other rows of a call, whatever their number. Early exit (``forward_first_k``) is row-wise too."""

    def __init__(self, model: DiT):
        self.model = model
        self.depth = model.depth

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(x.shape[0])])

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        rows = range(x.shape[0])
        return torch.cat([self.model.forward_first_k(x[i : i + 1], t[i : i + 1], y[i : i + 1], k) for i in rows])


def _drafter(cell: CheckCell) -> Drafter:
    return ListMemoryDrafter() if cell.control else network_drafter(cell.drafter)


def _run(cell: CheckCell, graph: str, seed: int) -> SpeculativeResult:
    device = torch.device(cell.device)
    kernel = DDPMKernel(linear_schedule(1000), num_steps=cell.steps)
    network = shipped_digits(cell.device)
    model = network if cell.compiled else RowwiseModel(network)
    shape = (cell.batch, network.config.in_channels, network.config.input_size, network.config.input_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    labels = (torch.arange(cell.batch) % 10).to(device)
    with torch.no_grad():
        return sample(
            model,
            kernel,
            noise,
            drafter=_drafter(cell),
            window=AdaptiveWindow() if cell.window is None else FixedWindow(cell.window),
            rule=cell.rule,  # type: ignore[arg-type]
            generator=torch.Generator().manual_seed(seed + 1),
            conditioning={"y": labels},
            compile=cell.compiled,
            graph=graph,  # type: ignore[arg-type]
        )


def identical(left: torch.Tensor, right: torch.Tensor) -> bool:
    """Bitwise equal (on the CPU), NaN where NaN."""
    left, right = left.cpu(), right.cpu()
    return left.shape == right.shape and bool(((left == right) | (left.isnan() & right.isnan())).all())


def logs_identical(left: SpeculativeResult, right: SpeculativeResult) -> bool:
    """Every per-round statistic of :data:`LOG_FIELDS` bitwise equal, round by round."""
    return (left.rounds, left.plain_steps) == (right.rounds, right.plain_steps) and all(
        len(getattr(left, name)) == len(getattr(right, name))
        and all(identical(a, b) for a, b in zip(getattr(left, name), getattr(right, name), strict=True))
        for name in LOG_FIELDS
    )


def run_check(cell: CheckCell, seed: int) -> dict[str, Any]:
    """Sample the cell's configuration as it is and replayed; compare."""
    on_cuda = torch.device(cell.device).type == "cuda"
    graph = "cuda" if on_cuda else "simulated"
    if cell.compiled and not on_cuda:
        return {**cell.__dict__, "graph": graph, "status": "not run", "reason": "compiled cells run on CUDA only"}
    off = _run(cell, "off", seed)
    record: dict[str, Any] = {**cell.__dict__, "graph": graph, "status": "ran", "rounds": off.rounds}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # (an explicit graph raises rather than falls back)
            replayed = _run(cell, graph, seed)
    except Exception as error:  # a failed capture is a disagreement, recorded
        return {**record, "error": f"{type(error).__name__}: {str(error)[:300]}", "agree": False}
    same_samples = identical(off.samples, replayed.samples)
    same_logs = logs_identical(off, replayed)
    difference = (off.samples.double() - replayed.samples.double()).abs().max().item()
    return {
        **record,
        "error": None,
        "identical_samples": same_samples,
        "identical_logs": same_logs,
        "max_abs_difference": difference,
        "agree": same_samples and same_logs,
    }


def _control_caught(record: Mapping[str, Any]) -> bool:
    """A control is caught when it ran through and its replay differs (an error is not the difference sought)."""
    return record["error"] is None and not record["agree"]


def cells(config: Config) -> list[CheckCell]:
    """One cell per configuration of ``config.runs``, in order."""
    return [
        CheckCell(drafter, rule, window, compiled, control, config.batch, config.steps, config.device)
        for drafter, rule, window, compiled, control in config.runs
    ]


def describe(record: Mapping[str, Any]) -> str:
    """One line per check."""
    window = "adaptive" if record["window"] is None else f"L={record['window']}"
    mode = "compiled" if record["compiled"] else "eager"
    kind = "control " if record["control"] else ""
    head = f"{kind}{record['drafter']:>14} {record['rule']:>16} {window:>8} {mode:>8} {record['graph']:>9}: "
    if record["status"] != "ran":
        return f"{head}not run ({record['reason']})"
    outcome = "agree" if record["agree"] else "DIFFER" + (f" ({record['error']})" if record.get("error") else "")
    expected = _control_caught(record) if record["control"] else record["agree"]
    return f"{head}{record['rounds']} rounds, {outcome}{'' if expected else '  <- UNEXPECTED'}"


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """``passed``: every configuration run agrees, and at least one control ran, and every control run ran through
    (no error) and disagrees."""
    ran = [record for record in records if record["status"] == "ran"]
    checks = [record for record in ran if not record["control"]]
    controls = [record for record in ran if record["control"]]
    caught = all(_control_caught(record) for record in controls)
    passed = bool(controls) and caught and all(record["agree"] for record in checks)
    fields = {
        "checks_agreeing": sum(record["agree"] for record in checks),
        "checks": len(checks),
        "controls_disagreeing": sum(_control_caught(record) for record in controls),
        "controls": len(controls),
    }
    text = "\n".join(describe(record) for record in records)
    counts = (
        f"{fields['checks_agreeing']}/{len(checks)} agree, "
        f"{fields['controls_disagreeing']}/{len(controls)} controls differ"
    )
    return Summary(fields=fields, text=f"{text}\n{counts}", passed=passed)


EXPERIMENT = Experiment(
    module="simulations.graph_check",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="graph_check.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/models/dit.py",
        *WEIGHTS,
        "simulations/common.py",
        "simulations/graph_check.py",
    ),
    cells=cells,
    run_cell=run_check,
    summarize=summarize,
    describe=describe,
    options=("device",),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (``simulations.experiment``), write the JSON and print one line per configuration.

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
