"""``specdiff demo``: plain vs speculative sampling of the shipped DiT trained on the 8x8 digits.

The same initial noises and per-sample seeds are sampled twice in one process, with the same model, batch,
precision and device: plain DDPM ancestral sampling (one target call per step) and speculative sampling (the
default rule, the reuse Free Drafter, the adaptive window weighing the expected gain against the measured cost of a
call on m states per sample). Both outputs are exactly distributed as the DDPM sampler; the
demo reports sequential target calls, wall time, the measured steps per round against the theory's prediction for
the logged gaps (``specdiff.diagnostics``), and writes the two sample grids side by side.

On a GPU only the network runs there (:class:`specdiff.placement.DeviceModel`): the samplers' states, randomness and
verification stay on the host, for both samplers, which the H100 benchmark found faster for this small network
(``results/gpu/bench_gpu_host.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from specdiff.diagnostics import calibrate_run
from specdiff.drafters import FreeDrafter
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT, load_pretrained
from specdiff.placement import DeviceModel
from specdiff.policies import AdaptiveWindow
from specdiff.sampler import DEFAULT_RULE, sample, sample_plain
from specdiff.timing import median_seconds, timed


@dataclass(frozen=True)
class DemoResult:
    """What ``specdiff demo`` measured (one process, same model, batch, device and seeds for both samplers)."""

    device: str
    steps: int
    batch: int
    rule: str
    drafter: str
    max_window: int
    seed: int
    plain_target_calls: int
    speculative_target_calls: int
    plain_wall_seconds: float
    speculative_wall_seconds: float
    call_ratio: float
    wall_speedup: float
    measured_steps_per_round: float
    predicted_steps_per_round: float
    calibration_z: float
    mean_window: float
    plain_steps: int
    batch_cost_ratio: float  # c(max_window + 1) / c(1): what a round of the longest window costs
    measured_cost: bool


class CountingModel:
    """Forwards to the DiT (``model(x, t, y)``, and ``forward_first_k`` for an early-exit draft) and advances a
    progress bar by one per target call."""

    def __init__(self, model: DiT | DeviceModel, bar: tqdm | None):
        self.model = model
        self.bar = bar
        self.depth = model.depth

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bar is not None:
            self.bar.update(1)
        return self.model(x, t, y=y)

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        return self.model.forward_first_k(x, t, y=y, k=k)


def measure_batch_cost(
    model: DiT, kernel: DDPMKernel, states: torch.Tensor, labels: torch.Tensor, max_window: int, repeats: int = 3
) -> list[float]:
    """Seconds of one target call on ``m`` states per sample, ``m = 1 .. max_window + 1`` (median of ``repeats``).

    This is the cost curve ``c(m)`` the adaptive window weighs its expected gain against: flat on a GPU at small
    batch, about linear on a CPU.
    """
    curve = []
    timestep = kernel.timesteps[:1].to(states.device)
    for copies in range(1, max_window + 2):
        x = states.repeat(copies, 1, 1, 1)
        t, y = timestep.expand(x.shape[0]), labels.repeat(copies)

        def call(x: torch.Tensor = x, t: torch.Tensor = t, y: torch.Tensor = y) -> torch.Tensor:
            return model(x, t, y)

        curve.append(median_seconds(call, states.device, repeats))
    return curve


def run_demo(
    *,
    steps: int = 200,
    samples_per_class: int = 2,
    max_window: int = 16,
    measured_cost: bool = False,
    seed: int = 0,
    device: str | None = None,
    output_dir: Path | None = None,
    progress: bool = True,
) -> DemoResult:
    """Sample the shipped digits DiT plainly and speculatively; print nothing, return the measurements.

    Parameters
    ----------
    steps : int
        DDPM sampling steps N (respaced from the 1000 training steps).
    samples_per_class : int
        Samples of each of the 10 digits (batch = 10 x this).
    max_window : int
        Largest window of the adaptive policy.
    measured_cost : bool
        Weigh windows against the measured cost curve ``c(m)`` (minimizes wall time on this device; on a CPU, where
        ``c(m)`` grows about linearly, this falls back to plain steps) instead of a flat one (minimizes target calls,
        the GPU regime).
    seed : int
        Seeds the initial noises and the per-sample generators (the same for both samplers).
    device : str, optional
        Default: "cuda" when available, else "cpu".
    output_dir : Path, optional
        Where ``demo_digits.png`` is written (nothing written when None; ``specdiff demo`` writes the returned
        measurements beside it as ``demo.json``, with their provenance).
    progress : bool
        Show progress bars (target calls).

    Returns
    -------
    DemoResult
    """
    if steps < 2 or samples_per_class < 1 or max_window < 1:
        raise ValueError("steps must be >= 2, samples_per_class >= 1 and max_window >= 1")
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_pretrained("digits", device=target)
    # On a GPU only the network runs there; the states, the randomness and the verification stay on the host.
    runner: DiT | DeviceModel = model if target.type == "cpu" else DeviceModel(model, target)
    kernel = DDPMKernel(linear_schedule(1000), num_steps=steps)
    labels = torch.arange(10).repeat_interleave(samples_per_class)
    batch = int(labels.numel())
    shape = (batch, model.config.in_channels, model.config.input_size, model.config.input_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def generators() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(seed * 100_003 + index) for index in range(batch)]

    with torch.no_grad():
        runner(noise[:1], kernel.timesteps[:1], y=labels[:1])  # warm-up, outside the timings
        cost_curve = measure_batch_cost(model, kernel, noise.to(target), labels.to(target), max_window)
        bar = tqdm(total=steps, desc="plain DDPM", disable=not progress, unit="call")
        plain, plain_seconds = timed(
            lambda: sample_plain(
                CountingModel(runner, bar), kernel, noise, generator=generators(), conditioning={"y": labels}
            ),
            target,
        )
        bar.close()
        bar = tqdm(desc="speculative", disable=not progress, unit="call")  # fewer calls than steps: no total
        speculative, speculative_seconds = timed(
            lambda: sample(
                CountingModel(runner, bar),
                kernel,
                noise,
                drafter=FreeDrafter(),
                window=AdaptiveWindow(max_window=max_window, batch_cost=cost_curve if measured_cost else None),
                rule=DEFAULT_RULE,
                generator=generators(),
                conditioning={"y": labels},
            ),
            target,
        )
        bar.close()
    calibration = calibrate_run(speculative, DEFAULT_RULE)
    result = DemoResult(
        device=str(target) if target.type == "cpu" else torch.cuda.get_device_name(target),
        steps=steps,
        batch=batch,
        rule=DEFAULT_RULE,
        drafter="free-nearest",
        max_window=max_window,
        seed=seed,
        plain_target_calls=plain.target_calls,
        speculative_target_calls=speculative.target_calls,
        plain_wall_seconds=plain_seconds,
        speculative_wall_seconds=speculative_seconds,
        call_ratio=plain.target_calls / speculative.target_calls,
        wall_speedup=plain_seconds / speculative_seconds,
        measured_steps_per_round=calibration.measured_steps_per_round,
        predicted_steps_per_round=calibration.predicted_steps_per_round,
        calibration_z=calibration.z,
        mean_window=float(torch.cat(speculative.windows).double().mean()),
        plain_steps=speculative.plain_steps,
        batch_cost_ratio=cost_curve[-1] / cost_curve[0],
        measured_cost=measured_cost,
    )
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_grids(
            [("plain DDPM", plain.samples), (f"speculative ({DEFAULT_RULE})", speculative.samples)],
            samples_per_class,
            output_dir / "demo_digits.png",
        )
    return result


def write_grids(panels: Sequence[tuple[str, torch.Tensor]], per_class: int, path: Path) -> None:
    """Grids of digits side by side, as a PNG (in each, rows: samples of a class; columns: the 10 classes).

    Parameters
    ----------
    panels : sequence of (str, Tensor)
        A title and the samples, shape (10 * per_class, 1, H, W), ordered class by class.
    per_class : int
        Samples of each class.
    path : Path
        The PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 0.55 * per_class + 0.8), squeeze=False)
    for axis, (title, images) in zip(axes[0], panels, strict=True):
        grid = images.detach().float().cpu().clamp(-1, 1)[:, 0]  # (B, H, W)
        size = grid.shape[-1]
        tiles = grid.reshape(10, per_class, size, size).permute(1, 2, 0, 3).reshape(per_class * size, 10 * size)
        axis.imshow(tiles.numpy(), cmap="gray_r", vmin=-1, vmax=1)
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def format_demo(result: DemoResult) -> str:
    """The text report of ``specdiff demo``."""
    return "\n".join(
        [
            f"device {result.device}; DDPM, N = {result.steps} steps, batch {result.batch} (10 digits x "
            f"{result.batch // 10}), seed {result.seed}",
            f"{'':<26}{'plain':>10}{'speculative':>14}",
            f"{'sequential target calls':<26}{result.plain_target_calls:>10}{result.speculative_target_calls:>14}",
            f"{'wall time (s)':<26}{result.plain_wall_seconds:>10.2f}{result.speculative_wall_seconds:>14.2f}",
            f"speculative: {result.rule} rule, Free Drafter ({result.drafter}), adaptive window (max "
            f"{result.max_window}, mean {result.mean_window:.1f}, "
            f"{'measured' if result.measured_cost else 'flat'} cost model); "
            f"{result.plain_steps} sample-steps taken plainly",
            f"a call on {result.max_window + 1} states per sample costs {result.batch_cost_ratio:.1f}x a call on one "
            f"on this device (about 1x on a GPU at small batch)",
            f"steps per round: measured {result.measured_steps_per_round:.3f}, predicted from the logged gaps "
            f"{result.predicted_steps_per_round:.3f} (z = {result.calibration_z:+.2f})",
            f"target calls: {result.call_ratio:.2f}x fewer; wall-clock speedup {result.wall_speedup:.2f}x",
        ]
    )
