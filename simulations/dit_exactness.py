"""Exactness and calibration of speculative sampling on the trained digits DiT.

For each class, speculative samples (a rule and a drafter, the adaptive window unless a fixed one is given) are
compared with plain DDPM samples of the same model drawn with independent randomness, on the 64-d images: MMD with a
Gaussian kernel (median heuristic, permutation p-value) and KS on random projections (Bonferroni), Bonferroni over
the two tests and over the classes, judged at ``LEVEL``. The negative control (``accept-always``: every drafted step
accepted) must be rejected by the same test. The measured steps per round are calibrated against the theory for the
logged gaps (``specdiff.diagnostics``, martingale z-scores). Each configuration (rule, drafter, control, window) is a
cell of the sweep; the run passes when every check comes out as expected and every exact configuration's
calibration z-score is within the two-sided ``LEVEL`` bound.

Run ``python -m simulations.dit_exactness [--smoke] [--device cuda]`` (``--verbose`` prints each check as it
finishes). Writes ``results/dit_exactness.json`` (``results/smoke/dit_exactness.json`` with ``--smoke``). The
initial noises and the samplers' generators are drawn on the CPU from the cell's seed, which leaves out the device
(``shared_seed_fields``), so they are the same on every device; the samples are compared on the CPU. With
``--device cuda`` on a machine with several GPUs, each Dask worker runs its cells on its own GPU
(``simulations.experiment.local_device``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from scipy import stats

from simulations.common import network_drafter, shipped_digits
from simulations.controls import rule_with_control
from simulations.experiment import Experiment, Summary, local_device
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.diagnostics import calibrate_run
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample, sample_plain
from specdiff.stats import ks_two_sample_projection, mmd_test

LEVEL = 1e-3
DEFAULT_SEED = 17
#: The shipped checkpoint the checks sample from (its bytes enter the cells' keys).
WEIGHTS = ("specdiff/models/weights/dit_digits.safetensors", "specdiff/models/weights/dit_digits.json")


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    classes : tuple of int
        The digits compared, each with ``samples_per_class`` samples per arm.
    samples_per_class : int
    steps : int
        DDPM steps (respaced from the 1000 training steps).
    runs : tuple of (rule, drafter, control, window)
        The configurations checked; ``window`` is a fixed window, or None for the adaptive window.
    permutations : int
        Permutations of the MMD test.
    device : str
        Where the model runs (``--device``), e.g. ``"cpu"`` or ``"cuda"``.
    """

    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    runs: tuple[tuple[str, str, str | None, int | None], ...]
    permutations: int
    device: str = "cpu"

    def __post_init__(self) -> None:
        # The MMD half of a class's p-value is at least 1 / (permutations + 1), doubled by the MMD-KS Bonferroni and
        # multiplied by the classes: below LEVEL only with enough permutations, else that half could never reject.
        smallest = 2 * len(self.classes) / (self.permutations + 1)
        if smallest >= LEVEL:
            raise ValueError(f"{self.permutations} permutations cannot reject at {LEVEL} (smallest p = {smallest:.3g})")


FULL = Config(
    classes=tuple(range(10)),
    samples_per_class=100,
    steps=60,
    runs=(
        ("token-reflection", "free-nearest", None, None),
        ("block", "free-nearest", None, None),
        ("adaptive", "free-nearest", None, None),
        ("block", "frozen", None, 8),
        ("block", "free-nearest", "accept-always", 8),
    ),
    permutations=29_999,
)
SMOKE = Config(
    classes=(3,), samples_per_class=40, steps=10, runs=(("block", "free-nearest", None, 4),), permutations=2_999
)


@dataclass(frozen=True)
class CheckCell:
    """The parameters of one check: a cell of the sweep."""

    rule: str
    drafter: str
    control: str | None
    window: int | None  # a fixed window, or None for the adaptive window
    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    permutations: int
    device: str


@dataclass(frozen=True)
class DiTCheck:
    """One check's record."""

    rule: str
    drafter: str
    control: str | None
    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    class_p_values: list[float]
    p_value: float  # Bonferroni over classes
    rejected: bool
    expected_rejection: bool
    target_calls: int
    plain_target_calls: int
    calibration_z: float
    measured_steps_per_round: float
    predicted_steps_per_round: float
    device: str  # the device's name (a GPU's model name on CUDA)


def class_p_value(first: torch.Tensor, second: torch.Tensor, seed: int, permutations: int) -> float:
    """Bonferroni-combined p-value of MMD and projected KS (8 random directions) between two image samples."""
    generator = torch.Generator().manual_seed(seed)
    flat_first, flat_second = first.flatten(1).double(), second.flatten(1).double()
    mmd = mmd_test(flat_first, flat_second, permutations=permutations, generator=generator).p_value
    projection = ks_two_sample_projection(flat_first, flat_second, number_of_directions=8, generator=generator).p_value
    return min(1.0, 2 * min(mmd, projection))


def device_name(device: torch.device) -> str:
    """The model name of a CUDA device, else the device as a string (``"cpu"``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def check(
    model: DiT,
    *,
    rule: RuleName,
    drafter: str,
    control: str | None,
    classes: Sequence[int],
    samples_per_class: int,
    steps: int,
    seed: int,
    permutations: int = 200,
    window: WindowPolicy | None = None,
) -> DiTCheck:
    """Speculative vs plain samples of ``model`` per class, on the model's device; see the module docstring.

    Parameters
    ----------
    model : DiT
    rule : RuleName
        The verification rule (``"adaptive"``: the window policy chooses per sample and round).
    drafter : str
        One of ``simulations.common.NETWORK_DRAFTER_NAMES``.
    control : str or None
        A negative control of ``simulations.controls`` (expected to be rejected), or None.
    classes : sequence of int
    samples_per_class : int
    steps : int
        DDPM steps.
    seed : int
        The noises use ``seed`` and ``seed + 1``, the samplers ``seed + 2`` and ``seed + 3``, the tests of class c
        ``seed + 4 + c``.
    permutations : int
        Permutations of the MMD test.
    window : WindowPolicy, optional
        Default: the adaptive window.

    Returns
    -------
    DiTCheck
    """
    device = next(model.parameters()).device
    kernel = DDPMKernel(linear_schedule(1000), num_steps=steps)
    labels = torch.tensor(list(classes)).repeat_interleave(samples_per_class)
    batch = int(labels.numel())
    shape = (batch, model.config.in_channels, model.config.input_size, model.config.input_size)
    plain_noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    speculative_noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    conditioning = {"y": labels.to(device)}
    with torch.no_grad():
        plain = sample_plain(
            model, kernel, plain_noise, generator=torch.Generator().manual_seed(seed + 2), conditioning=conditioning
        )
        speculative = sample(
            model,
            kernel,
            speculative_noise,
            drafter=network_drafter(drafter),
            window=window or AdaptiveWindow(),
            rule=rule_with_control(rule, control),
            generator=torch.Generator().manual_seed(seed + 3),
            conditioning=conditioning,
        )
    speculative_samples, plain_samples = speculative.samples.cpu(), plain.samples.cpu()
    p_values = [
        class_p_value(speculative_samples[labels == c], plain_samples[labels == c], seed + 4 + c, permutations)
        for c in classes
    ]
    combined = min(1.0, len(p_values) * min(p_values))
    calibration = calibrate_run(speculative, rule)
    return DiTCheck(
        rule=rule,
        drafter=drafter,
        control=control,
        classes=tuple(classes),
        samples_per_class=samples_per_class,
        steps=steps,
        class_p_values=p_values,
        p_value=combined,
        rejected=combined < LEVEL,
        expected_rejection=control is not None,
        target_calls=speculative.target_calls,
        plain_target_calls=plain.target_calls,
        calibration_z=calibration.z,
        measured_steps_per_round=calibration.measured_steps_per_round,
        predicted_steps_per_round=calibration.predicted_steps_per_round,
        device=device_name(device),
    )


def cells(config: Config) -> list[CheckCell]:
    """One cell per configuration of ``config.runs``, in order."""
    return [
        CheckCell(
            rule=rule,
            drafter=drafter,
            control=control,
            window=window,
            classes=config.classes,
            samples_per_class=config.samples_per_class,
            steps=config.steps,
            permutations=config.permutations,
            device=config.device,
        )
        for rule, drafter, control, window in config.runs
    ]


def run_check(cell: CheckCell, seed: int) -> DiTCheck:
    """The check of one cell, with the shipped model on the cell's device (:func:`local_device` of it)."""
    return check(
        shipped_digits(local_device(cell.device)),
        rule=cell.rule,  # type: ignore[arg-type]
        drafter=cell.drafter,
        control=cell.control,
        classes=cell.classes,
        samples_per_class=cell.samples_per_class,
        steps=cell.steps,
        seed=seed,
        permutations=cell.permutations,
        window=None if cell.window is None else FixedWindow(cell.window),
    )


def z_bound() -> float:
    """The two-sided normal bound of the calibration z-scores at ``LEVEL``."""
    return float(stats.norm.isf(LEVEL / 2))


def as_expected(record: Mapping[str, Any]) -> bool:
    """A control rejected, an exact configuration kept with its calibration z-score within :func:`z_bound`."""
    if record["rejected"] != record["expected_rejection"]:
        return False
    return record["control"] is not None or abs(record["calibration_z"]) <= z_bound()


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per check."""
    return (
        f"{record['rule']:<17} {record['drafter']:<13} {record['control'] or '-':<14} p = {record['p_value']:.3g}  "
        f"calls {record['target_calls']} vs {record['plain_target_calls']}  steps/round "
        f"{record['measured_steps_per_round']:.2f} (predicted {record['predicted_steps_per_round']:.2f}, "
        f"z = {record['calibration_z']:+.2f})  {'ok' if as_expected(record) else 'FAILED'}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Every check as expected; the level and the device for the report."""
    passed = all(as_expected(record) for record in records)
    devices = list(dict.fromkeys(str(record["device"]) for record in records)) or [config.device]
    return Summary(
        fields={"device": ", ".join(devices), "level": LEVEL, "all_passed": passed},
        passed=passed,
        text="\n".join(describe(record) for record in records),
    )


EXPERIMENT = Experiment(
    module="simulations.dit_exactness",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="dit_exactness.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/models/dit.py",
        "specdiff/stats.py",
        "specdiff/diagnostics.py",
        *WEIGHTS,
        "simulations/common.py",
        "simulations/controls.py",
        "simulations/dit_exactness.py",
    ),
    cells=cells,
    run_cell=run_check,
    summarize=summarize,
    describe=describe,
    options=("device",),
    shared_seed_fields=("device",),
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXPERIMENT",
    "FULL",
    "LEVEL",
    "SMOKE",
    "CheckCell",
    "Config",
    "DiTCheck",
    "as_expected",
    "cells",
    "check",
    "class_p_value",
    "main",
    "run_check",
]
