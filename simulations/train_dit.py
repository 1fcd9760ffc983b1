"""Train the "digits" DiT (``specdiff.models.dit``) on the 8x8 digits of scikit-learn, on one CPU thread.

Recipe: DDPM linear schedule with T = 1000 training steps, eps-prediction MSE at uniform timesteps, label dropout
0.1 to the null class (for classifier-free guidance), AdamW with a linear warm-up then cosine decay, gradient
clipping, and an exponential moving average (EMA) of the weights, which is what ships. Batches are drawn with
replacement from the train split only (:func:`specdiff.models.dit.digits_dataset`). Every random draw (the
initialization, batches, timesteps, noise, label dropout) comes from generators seeded by ``--seed``, so a run is
reproducible on a given machine.

Outputs (in ``--output-dir``, default ``specdiff/models/weights``): ``dit_digits.safetensors`` (EMA weights) and
``dit_digits.json`` (config, training log, sizes, wall time, seed, commit). Then the sample quality is evaluated
(``simulations.dit_quality``): ``results/dit_quality.json``, from which ``specdiff figures`` draws
``docs/figures/dit_digits_samples.png``.

Run ``python -m simulations.train_dit`` (about 12 minutes) or ``--smoke`` (seconds; writes everything, quality
report included, under ``results/smoke/dit`` or the given ``--output-dir``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from simulations import dit_quality
from simulations.provenance import REPOSITORY_ROOT, git_commit, git_dirty, machine
from specdiff.kernels import linear_schedule
from specdiff.models.dit import DIT_PRESETS, DiT, digits_dataset, weight_paths

PRESET = "digits"
DEFAULT_OUTPUT_DIRECTORY = REPOSITORY_ROOT / "specdiff" / "models" / "weights"
SMOKE_OUTPUT_DIRECTORY = REPOSITORY_ROOT / "results" / "smoke" / "dit"
DEFAULT_SEED = 0
TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one training run.

    Attributes
    ----------
    iterations : int
        Optimizer steps.
    batch_size : int
    learning_rate : float
        Peak AdamW learning rate.
    final_learning_rate_fraction : float
        The cosine decay ends at ``learning_rate * final_learning_rate_fraction``.
    warmup_iterations : int
        Linear warm-up from 0 to the peak.
    weight_decay : float
    gradient_clip : float
        Maximum global gradient norm.
    ema_decay : float
        EMA decay, used as ``min(ema_decay, (1 + i) / (10 + i))`` at iteration i.
    label_dropout : float
        Probability of replacing a label by the null class.
    log_every : int
        Iterations per training-log entry (mean loss over the window).
    """

    iterations: int = 3500
    batch_size: int = 128
    learning_rate: float = 1e-3
    final_learning_rate_fraction: float = 0.05
    warmup_iterations: int = 200
    weight_decay: float = 0.01
    gradient_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    log_every: int = 250


FULL = TrainingConfig()
SMOKE = TrainingConfig(iterations=6, batch_size=16, warmup_iterations=2, log_every=2)


def learning_rate_at(iteration: int, config: TrainingConfig) -> float:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``learning_rate * final_learning_rate_fraction``."""
    if iteration < config.warmup_iterations:
        return config.learning_rate * (iteration + 1) / config.warmup_iterations
    span = max(1, config.iterations - config.warmup_iterations)
    progress = min(1.0, (iteration - config.warmup_iterations) / span)
    floor = config.learning_rate * config.final_learning_rate_fraction
    return floor + (config.learning_rate - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(iteration: int, config: TrainingConfig) -> float:
    """EMA decay at iteration ``iteration``: ``min(ema_decay, (1 + i) / (10 + i))`` (short memory early on)."""
    return min(config.ema_decay, (1.0 + iteration) / (10.0 + iteration))


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model``, parameter by parameter, in place."""
    for ema_parameter, parameter in zip(ema_model.parameters(), model.parameters(), strict=True):
        ema_parameter.lerp_(parameter, 1.0 - decay)


def noisy_batch(
    images: torch.Tensor, alphas_cumprod: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward-diffuse clean images at uniform training timesteps.

    Parameters
    ----------
    images : Tensor, shape (B, C, H, W)
    alphas_cumprod : Tensor, shape (T,)
    generator : torch.Generator

    Returns
    -------
    noisy : Tensor, shape (B, C, H, W)
        ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
    timesteps : Tensor, shape (B,), long
    noise : Tensor, shape (B, C, H, W)
        ``eps``, the regression target.
    """
    batch = images.shape[0]
    timesteps = torch.randint(0, alphas_cumprod.shape[0], (batch,), generator=generator)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    alpha = alphas_cumprod[timesteps].to(images.dtype)[:, None, None, None]
    return alpha.sqrt() * images + (1.0 - alpha).sqrt() * noise, timesteps, noise


def drop_labels(labels: torch.Tensor, probability: float, null_class: int, generator: torch.Generator) -> torch.Tensor:
    """Replace each label by ``null_class`` with probability ``probability``, shape (B,)."""
    dropped = torch.rand(labels.shape, generator=generator) < probability
    return torch.where(dropped, torch.full_like(labels, null_class), labels)


def train(config: TrainingConfig, seed: int) -> tuple[DiT, list[dict[str, float]], float]:
    """Train the "digits" preset.

    Parameters
    ----------
    config : TrainingConfig
    seed : int
        Seeds the initialization (``seed``) and all training draws (``seed + 1``).

    Returns
    -------
    ema_model : DiT
        The EMA weights, in eval mode.
    log : list of dict
        ``{"iteration", "loss", "learning_rate", "seconds"}`` every ``log_every`` iterations (and at the end),
        ``loss`` being the mean training loss since the previous entry.
    wall_seconds : float
    """
    model_config = DIT_PRESETS[PRESET]
    model = DiT(model_config, generator=torch.Generator().manual_seed(seed))
    ema_model = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, 0.999), weight_decay=config.weight_decay
    )
    images, labels = digits_dataset("train")
    alphas_cumprod = linear_schedule(TRAIN_TIMESTEPS).alphas_cumprod.to(torch.float32)
    generator = torch.Generator().manual_seed(seed + 1)
    log: list[dict[str, float]] = []
    window_losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for iteration in range(config.iterations):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(iteration, config)
        indices = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
        noisy, timesteps, noise = noisy_batch(images[indices], alphas_cumprod, generator)
        batch_labels = drop_labels(labels[indices], config.label_dropout, model_config.num_classes, generator)
        loss = torch.nn.functional.mse_loss(model(noisy, timesteps, batch_labels), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
        optimizer.step()
        update_ema(ema_model, model, ema_decay_at(iteration, config))
        window_losses.append(loss.item())
        done = iteration + 1
        if done % config.log_every == 0 or done == config.iterations:
            entry = {
                "iteration": done,
                "loss": sum(window_losses) / len(window_losses),
                "learning_rate": learning_rate_at(iteration, config),
                "seconds": time.perf_counter() - start,
            }
            log.append(entry)
            window_losses = []
            print(f"iteration {done:>6d}  loss {entry['loss']:.4f}  {entry['seconds']:.0f} s", flush=True)
    return ema_model, log, time.perf_counter() - start


def save(model: DiT, directory: Path, metadata: dict[str, Any], name: str = PRESET) -> tuple[Path, Path]:
    """Write ``dit_{name}.safetensors`` (contiguous float32 tensors) and ``dit_{name}.json`` (metadata + config)."""
    weights_path, config_path = weight_paths(name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float32).contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(weights_path))
    weights_path.chmod(0o644)  # safetensors creates the file owner-only
    config_path.write_text(json.dumps({"name": name, "config": model.config.to_dict(), **metadata}, indent=2) + "\n")
    return weights_path, config_path


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m simulations.train_dit", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a handful of iterations (seconds), for tests")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--output-dir", type=Path, default=None, help="where the weights and config go")
    parser.add_argument("--skip-quality", action="store_true", help="do not evaluate the samples after training")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train, save the EMA weights and config, then evaluate the sample quality.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0).
    """
    arguments = build_parser().parse_args(argv)
    config = SMOKE if arguments.smoke else FULL
    default_directory = SMOKE_OUTPUT_DIRECTORY if arguments.smoke else DEFAULT_OUTPUT_DIRECTORY
    directory: Path = arguments.output_dir or default_directory
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, log, wall_seconds = train(config, arguments.seed)
    finally:
        torch.set_num_threads(previous_threads)
    metadata = {
        "parameters": model.num_parameters(),
        "training": {
            "preset": "smoke" if arguments.smoke else "full",
            "dataset": "sklearn.datasets.load_digits, train split",
            "schedule": f"linear_schedule({TRAIN_TIMESTEPS})",
            "objective": "eps-prediction MSE, uniform timesteps",
            "weights": "EMA",
            **asdict(config),
            "seed": arguments.seed,
            "wall_seconds": wall_seconds,
            "final_loss": log[-1]["loss"],
            "log": log,
        },
        "seed": arguments.seed,
        "commit": git_commit(),
        "dirty": git_dirty(),
        "machine": machine(),
    }
    weights_path, config_path = save(model, directory, metadata)
    print(f"wrote {weights_path} and {config_path} ({wall_seconds:.1f} s of training)")
    if not arguments.skip_quality:
        quality_arguments = ["--weights-dir", str(directory), "--seed", str(arguments.seed)]
        if arguments.smoke:
            quality_arguments += [
                "--smoke",
                "--output",
                str(directory / "dit_quality.json"),
                "--figure",
                str(directory / "dit_digits_samples.png"),
            ]
        dit_quality.main(quality_arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
