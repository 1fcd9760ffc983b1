"""Train the "digits" DiT (``specdiff.models.dit``) on the 8x8 digits of scikit-learn, on one CPU thread.

Recipe: DDPM linear schedule with T = 1000 training steps, eps-prediction MSE at uniform timesteps, label dropout
0.1 to the null class (for classifier-free guidance), AdamW with a linear warm-up then cosine decay, gradient
clipping, and an exponential moving average (EMA) of the weights, which is what ships. Batches are drawn with
replacement from the train split only (:func:`specdiff.models.dit.digits_dataset`). Every random draw (the
initialization, batches, timesteps, noise, label dropout) comes from generators seeded by ``--training-seed``
(default 0, the shipped weights' seed), so a run is reproducible on a given machine; ``--seed`` seeds only the
quality evaluation.

An experiment of one cell (``simulations.experiment``; timed: the record holds the training's wall time). The cell
trains and, as a side effect, writes to ``--output-dir`` (default ``specdiff/models/weights``; ``results/smoke/dit``
for the smoke preset; a relative path is relative to the repository root) ``dit_digits.safetensors`` (EMA weights)
and ``dit_digits.json`` (config, training log, sizes, wall time, seed, commit). Its record is that metadata without
the provenance, plus the paths written and the weights' SHA-256; the results file is ``results/train_dit.json``
(``results/smoke/train_dit.json`` for the smoke preset). A finished cell is kept in the store and not rerun: give
``--fresh`` to train (and write the checkpoint) again. Then, unless ``--skip-quality``, the sample quality is
evaluated (``simulations.dit_quality``, its finished cells stored in ``<store>/dit_quality``):
``results/dit_quality.json``, from which ``specdiff figures`` draws ``docs/figures/dit_digits_samples.png`` (the
smoke preset writes both into the output folder instead).

Run ``python -m simulations.train_dit`` (about 12 minutes) or ``--smoke`` (seconds).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from simulations import dit_quality
from simulations.experiment import Experiment, Summary, parse_arguments
from simulations.experiment import main as experiment_main
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


#: ``predict(model, noisy (B, C, H, W), timesteps (B,), labels (B,)) -> eps prediction``: how a training loop calls
#: its model on a batch (the labels after dropout).
Predict = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def train_loop(
    model: torch.nn.Module,
    predict: Predict,
    config: TrainingConfig,
    null_label: int,
    generator: torch.Generator,
    alphas_cumprod: torch.Tensor,
) -> tuple[torch.nn.Module, list[dict[str, float]], float]:
    """Train an eps-prediction denoiser on the digits' train split (the recipe of the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    predict : Predict
        Calls the model on a batch.
    config : TrainingConfig
    null_label : int
        What a dropped label becomes (the null class, or the index of the empty prompt).
    generator : torch.Generator
        Every draw of the training: batches, timesteps, noise, label dropout.
    alphas_cumprod : Tensor, shape (T,)
        The training schedule.

    Returns
    -------
    ema_model : torch.nn.Module
        The EMA weights, in eval mode.
    log : list of dict
        ``{"iteration", "loss", "learning_rate", "seconds"}`` every ``log_every`` iterations (and at the end),
        ``loss`` being the mean training loss since the previous entry.
    wall_seconds : float
    """
    ema_model = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, 0.999), weight_decay=config.weight_decay
    )
    images, labels = digits_dataset("train")
    log: list[dict[str, float]] = []
    window_losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for iteration in range(config.iterations):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(iteration, config)
        indices = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
        noisy, timesteps, noise = noisy_batch(images[indices], alphas_cumprod, generator)
        batch_labels = drop_labels(labels[indices], config.label_dropout, null_label, generator)
        loss = torch.nn.functional.mse_loss(predict(model, noisy, timesteps, batch_labels), noise)
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


def _predict_dit(model: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> Any:
    return model(noisy, timesteps, labels)


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
        As :func:`train_loop`'s.
    wall_seconds : float
    """
    model_config = DIT_PRESETS[PRESET]
    model = DiT(model_config, generator=torch.Generator().manual_seed(seed))
    alphas_cumprod = linear_schedule(TRAIN_TIMESTEPS).alphas_cumprod.to(torch.float32)
    generator = torch.Generator().manual_seed(seed + 1)
    ema_model, log, wall_seconds = train_loop(
        model, _predict_dit, config, model_config.num_classes, generator, alphas_cumprod
    )
    assert isinstance(ema_model, DiT)
    return ema_model, log, wall_seconds


def save(model: DiT, directory: Path, metadata: dict[str, Any], name: str = PRESET) -> tuple[Path, Path]:
    """Write ``dit_{name}.safetensors`` (contiguous float32 tensors) and ``dit_{name}.json`` (metadata + config)."""
    weights_path, config_path = weight_paths(name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float32).contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(weights_path))
    weights_path.chmod(0o644)  # safetensors creates the file owner-only
    config_path.write_text(json.dumps({"name": name, "config": model.config.to_dict(), **metadata}, indent=2) + "\n")
    return weights_path, config_path


@dataclass(frozen=True)
class Config:
    """One run: the training's hyper-parameters, where the checkpoint goes, and whether to evaluate it afterwards.

    Attributes
    ----------
    training : TrainingConfig
    output_dir : str
        The checkpoint's folder; a relative path is relative to the repository root.
    skip_quality : bool
        Do not evaluate the samples (``simulations.dit_quality``) after training.
    training_seed : int
        Seeds the training (:func:`train`); the shipped weights used 0.
    """

    training: TrainingConfig
    output_dir: str
    skip_quality: bool = False
    training_seed: int = 0


PRESETS = {
    "full": Config(FULL, str(DEFAULT_OUTPUT_DIRECTORY.relative_to(REPOSITORY_ROOT))),
    "smoke": Config(SMOKE, str(SMOKE_OUTPUT_DIRECTORY.relative_to(REPOSITORY_ROOT))),
}


@dataclass(frozen=True)
class TrainingCell:
    """The one cell: train with ``training`` and write the checkpoint to ``output_dir``."""

    training: TrainingConfig
    output_dir: str  # relative to the repository root when inside it, else absolute
    training_seed: int


def output_directory(output_dir: str) -> Path:
    """``output_dir`` as a path: a relative one is relative to the repository root."""
    return REPOSITORY_ROOT / Path(output_dir).expanduser()


def cells(config: Config) -> list[TrainingCell]:
    """One cell; its folder is written relative to the repository root when inside it (so the cell's key does not
    depend on where the repository lives)."""
    directory = output_directory(config.output_dir).resolve()
    root = REPOSITORY_ROOT.resolve()
    relative = directory.relative_to(root) if directory.is_relative_to(root) else directory
    return [TrainingCell(config.training, str(relative), config.training_seed)]


def run_training(cell: TrainingCell, seed: int) -> dict[str, Any]:
    """Train, write ``dit_digits.safetensors`` and ``dit_digits.json`` to the cell's folder, return the record.

    The record is the checkpoint's metadata without its provenance (commit, dirty tree, machine), plus where the
    weights went and their SHA-256. The cell's ``training_seed`` seeds the training (:func:`train`), not the cell's
    ``seed``, so that the default reproduces the shipped weights' seed.
    """
    seed = cell.training_seed
    model, log, wall_seconds = train(cell.training, seed)
    record: dict[str, Any] = {
        "parameters": model.num_parameters(),
        "training": {
            "dataset": "sklearn.datasets.load_digits, train split",
            "schedule": f"linear_schedule({TRAIN_TIMESTEPS})",
            "objective": "eps-prediction MSE, uniform timesteps",
            "weights": "EMA",
            **asdict(cell.training),
            "seed": seed,
            "wall_seconds": wall_seconds,
            "final_loss": log[-1]["loss"],
            "log": log,
        },
        "seed": seed,
    }
    provenance = {"commit": git_commit(), "dirty": git_dirty(), "machine": machine()}
    weights_path, config_path = save(model, output_directory(cell.output_dir), {**record, **provenance})
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    folder = Path(cell.output_dir)
    written = {"weights_path": str(folder / weights_path.name), "config_path": str(folder / config_path.name)}
    return {**record, **written, "weights_sha256": digest}


def describe(record: Mapping[str, Any]) -> str:
    """A printed line for the training record."""
    training = record["training"]
    return (
        f"wrote {record['weights_path']} and {record['config_path']}: {training['iterations']} iterations, "
        f"final loss {training['final_loss']:.4f}, {training['wall_seconds']:.1f} s of training"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Passed when the final training loss is finite."""
    (record,) = records
    return Summary(
        fields={"final_loss": record["training"]["final_loss"], "weights_path": record["weights_path"]},
        passed=math.isfinite(record["training"]["final_loss"]),
        text=describe(record),
    )


EXPERIMENT = Experiment(
    module="simulations.train_dit",
    description=__doc__ or "",
    presets=PRESETS,
    default_seed=DEFAULT_SEED,
    output="train_dit.json",
    code=("specdiff/models/dit.py", "specdiff/kernels.py", "simulations/train_dit.py"),
    cells=cells,
    run_cell=run_training,
    summarize=summarize,
    timed=True,
    describe=describe,
    options=("output_dir", "skip_quality", "training_seed"),
)


def evaluate_quality(config: Config, preset: str, seed: int, store: Path) -> int:
    """Run ``simulations.dit_quality`` on the checkpoint in ``config.output_dir`` with ``seed`` and the store
    ``store``; the smoke preset writes its report and figure into that folder."""
    directory = output_directory(config.output_dir)
    quality_arguments = ["--weights-dir", str(directory), "--seed", str(seed), "--store", str(store)]
    if preset == "smoke":
        quality_arguments += [
            "--smoke",
            "--output",
            str(directory / "dit_quality.json"),
            "--figure",
            str(directory / "dit_digits_samples.png"),
        ]
    return dit_quality.main(quality_arguments)


def main(argv: Sequence[str] | None = None) -> int:
    """Train and save the EMA weights and config (the experiment), then evaluate the sample quality.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 when the training and the quality evaluation ran.
    """
    status = experiment_main(EXPERIMENT, argv)
    arguments = parse_arguments(EXPERIMENT, argv)
    config = EXPERIMENT.config(arguments.preset, arguments.overrides)
    if status != 0 or config.skip_quality:
        return status
    return evaluate_quality(config, arguments.preset, arguments.seed, arguments.store / "dit_quality")


if __name__ == "__main__":
    sys.exit(main())
