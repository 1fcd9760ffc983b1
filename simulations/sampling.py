"""``specdiff sample``: sample a DiT (the shipped one or a local checkpoint) with a chosen kernel, rule, drafter and
window, and report the run's statistics beside an image grid.

The model is ``model(x, t, y) -> eps`` on the linear schedule with 1000 training steps (how the shipped digits DiT
was trained, ``simulations.train_dit``). With ``drafter="none"`` the run is plain sampling (one target call per
step), the reference the speculative runs are exactly distributed as.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from simulations.common import KERNEL_NAMES, NETWORK_DRAFTER_NAMES, make_kernel, network_drafter
from specdiff.demo import CountingModel, write_grids
from specdiff.diagnostics import calibrate_run
from specdiff.models.dit import DiT, load_pretrained
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import ChainResult, SpeculativeResult, sample, sample_plain
from specdiff.verify import NAMED_RULES

PLAIN = "none"
SAMPLE_DRAFTER_NAMES = (*NETWORK_DRAFTER_NAMES, PLAIN)


@dataclass(frozen=True)
class SampleRequest:
    """What ``specdiff sample`` was asked for (validated by :func:`check_request` before any sampling)."""

    model: str  # a shipped model's name, or a path to a ``*.safetensors`` file with its ``*.json`` config beside it
    steps: int
    kernel: str
    rule: str
    drafter: str
    window: str  # "adaptive" or a window length
    samples_per_class: int
    seed: int
    device: str


@dataclass(frozen=True)
class SampleReport:
    """The statistics of one ``specdiff sample`` run (speculative fields are None for a plain run)."""

    request: SampleRequest
    batch: int
    target_calls: int
    wall_seconds: float
    rounds: int | None
    mean_window: float | None
    plain_steps: int | None
    measured_steps_per_round: float | None
    predicted_steps_per_round: float | None
    calibration_z: float | None


def check_request(request: SampleRequest) -> None:
    """Raise ``ValueError`` with a one-line message for a request that cannot run.

    Parameters
    ----------
    request : SampleRequest
    """
    if request.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {request.steps}")
    if request.samples_per_class < 1:
        raise ValueError(f"--samples-per-class must be >= 1, got {request.samples_per_class}")
    if request.kernel not in KERNEL_NAMES:
        raise ValueError(f"unknown kernel {request.kernel!r}; choose from {', '.join(KERNEL_NAMES)}")
    if request.rule not in NAMED_RULES:
        raise ValueError(f"unknown rule {request.rule!r}; choose from {', '.join(NAMED_RULES)}")
    if request.drafter not in SAMPLE_DRAFTER_NAMES:
        raise ValueError(f"unknown drafter {request.drafter!r}; choose from {', '.join(SAMPLE_DRAFTER_NAMES)}")
    window_policy(request.window)


def window_policy(window: str) -> WindowPolicy:
    """``"adaptive"`` (maximum 16) or a fixed window length ``>= 1``."""
    if window == "adaptive":
        return AdaptiveWindow(max_window=16)
    if not window.isdigit() or int(window) < 1:
        raise ValueError(f"--window must be 'adaptive' or an integer >= 1, got {window!r}")
    return FixedWindow(int(window))


def load_model(name_or_path: str, device: torch.device) -> DiT:
    """A shipped DiT by name, or a local checkpoint ``NAME.safetensors`` with ``NAME.json`` beside it.

    Raises
    ------
    FileNotFoundError
        When the model or its config is missing (the message lists the shipped models).
    """
    path = Path(name_or_path)
    if path.suffix == ".safetensors":
        stem = path.stem
        if not stem.startswith("dit_"):
            raise FileNotFoundError(f"a local checkpoint must be named dit_NAME.safetensors, got {path.name}")
        return load_pretrained(stem[4:], device=device, directory=path.parent)
    return load_pretrained(name_or_path, device=device)


def run_sample(request: SampleRequest, model: DiT, output_dir: Path | None, progress: bool = True) -> SampleReport:
    """Sample 10 x ``samples_per_class`` digits (class by class) and report the run.

    Parameters
    ----------
    request : SampleRequest
    model : DiT
        The model ``request.model`` names (:func:`load_model`), on ``request.device``.
    output_dir : Path, optional
        Where ``sample_grid.png`` goes (nothing written when None; ``specdiff sample`` writes the report beside it
        as ``sample.json``, with its provenance).
    progress : bool
        Show a progress bar of the target calls.

    Returns
    -------
    SampleReport
    """
    check_request(request)
    device = torch.device(request.device)
    kernel = make_kernel(request.kernel, request.steps)
    labels = torch.arange(10, device=device).repeat_interleave(request.samples_per_class)
    shape = (labels.numel(), model.config.in_channels, model.config.input_size, model.config.input_size)
    noise = kernel.prior_std * torch.randn(shape, generator=torch.Generator().manual_seed(request.seed))
    noise = noise.to(device)
    generator = torch.Generator().manual_seed(request.seed + 1)
    bar = tqdm(desc="target calls", disable=not progress, unit="call")
    start = time.perf_counter()
    with torch.no_grad():
        counted = CountingModel(model, bar)
        result: ChainResult | SpeculativeResult
        if request.drafter == PLAIN:
            result = sample_plain(counted, kernel, noise, generator=generator, conditioning={"y": labels})
        else:
            result = sample(
                counted,
                kernel,
                noise,
                drafter=network_drafter(request.drafter),
                window=window_policy(request.window),
                rule=NAMED_RULES[request.rule],
                generator=generator,
                conditioning={"y": labels},
            )
    wall = time.perf_counter() - start
    bar.close()
    report = _report(request, result, int(labels.numel()), wall)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        title = "plain" if request.drafter == PLAIN else f"{request.rule}, {request.drafter}, window {request.window}"
        write_grids([(title, result.samples)], request.samples_per_class, output_dir / "sample_grid.png")
    return report


def _report(request: SampleRequest, result: ChainResult | SpeculativeResult, batch: int, wall: float) -> SampleReport:
    if not isinstance(result, SpeculativeResult) or not result.accepted:
        return SampleReport(request, batch, result.target_calls, wall, None, None, None, None, None, None)
    calibration = calibrate_run(result, request.rule)
    return SampleReport(
        request=request,
        batch=batch,
        target_calls=result.target_calls,
        wall_seconds=wall,
        rounds=result.rounds,
        mean_window=float(torch.cat(result.windows).double().mean()),
        plain_steps=result.plain_steps,
        measured_steps_per_round=calibration.measured_steps_per_round,
        predicted_steps_per_round=calibration.predicted_steps_per_round,
        calibration_z=calibration.z,
    )


def format_sample(report: SampleReport) -> str:
    """The text report of ``specdiff sample``."""
    request = report.request
    lines = [
        f"model {request.model} on {request.device}; {request.kernel}, N = {request.steps} steps, batch "
        f"{report.batch} (10 classes x {request.samples_per_class}), seed {request.seed}",
        f"sequential target calls {report.target_calls}; wall time {report.wall_seconds:.2f} s",
    ]
    if report.measured_steps_per_round is not None:
        lines += [
            f"speculative: {request.rule} rule, {request.drafter} drafter, window {request.window} (mean "
            f"{report.mean_window:.1f}); {report.rounds} rounds; {report.plain_steps} sample-steps taken plainly",
            f"steps per round: measured {report.measured_steps_per_round:.3f}, predicted from the logged gaps "
            f"{report.predicted_steps_per_round:.3f} (z = {report.calibration_z:+.2f}); "
            f"{request.steps / report.target_calls:.2f}x fewer target calls than plain sampling",
        ]
    return "\n".join(lines)


__all__ = [
    "SAMPLE_DRAFTER_NAMES",
    "SampleReport",
    "SampleRequest",
    "check_request",
    "format_sample",
    "load_model",
    "run_sample",
    "window_policy",
]
