"""Train the Stable-Diffusion-architecture digits model (``specdiff.integrations.digits``) on the CPU.

A ``UNet2DConditionModel`` with cross-attention on the text embeddings of a frozen, random two-layer
``CLIPTextModel`` (prompts ``"a handwritten seven"``), in pixel space on the 8x8 digits of scikit-learn (train
split). The recipe is the digits DiT's (``simulations.train_dit``, whose helpers it reuses: the learning-rate and EMA
schedules, the forward diffusion): eps-prediction MSE at uniform timesteps of the pipeline's own DDPM schedule,
AdamW with a linear warm-up then cosine decay, gradient clipping, an EMA of the weights (what ships). The
``label_dropout`` of the training config is here the probability of replacing a prompt by the empty prompt ``""``
(the unconditional half of classifier-free guidance). The text encoder is frozen, so the 11 prompt embeddings are
computed once. Every random draw comes from generators seeded by ``--training-seed`` (default 0, the shipped
weights' seed).

An experiment of one timed cell (``simulations.experiment``). The cell trains and, as a side effect, saves the whole
pipeline with ``save_pretrained`` into ``--output-dir`` (default ``specdiff/models/weights/sd_digits``, the shipped
model; ``results/smoke/sd_digits`` for the smoke preset; relative to the repository root) together with
``training.json`` (the training log, sizes, wall time, seed, commit). Its record is that metadata without the
provenance plus the UNet weights' SHA-256; the results file is ``results/train_sd_digits.json``. A finished cell is
kept in the store: give ``--fresh`` to train again. ``python -m simulations.sd_digits`` then measures the model.

Run ``python -m simulations.train_sd_digits`` (about 15 minutes on two cores) or ``--smoke`` (seconds).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import REPOSITORY_ROOT, git_commit, git_dirty, machine
from simulations.train_dit import TrainingConfig, output_directory, train_loop
from specdiff.integrations.digits import WEIGHTS_DIRECTORY, digit_prompt, untrained_digits_pipeline

DEFAULT_SEED = 0
SMOKE_OUTPUT_DIRECTORY = REPOSITORY_ROOT / "results" / "smoke" / "sd_digits"
#: The index of the empty prompt in the table of prompt embeddings (after the ten digits).
EMPTY_PROMPT = 10

FULL = TrainingConfig(iterations=3000, batch_size=128, learning_rate=1e-3, warmup_iterations=200, log_every=250)
SMOKE = TrainingConfig(iterations=4, batch_size=16, warmup_iterations=2, log_every=2)


@dataclass(frozen=True)
class Config:
    """One run: the training's hyper-parameters and where the pipeline goes.

    Attributes
    ----------
    training : TrainingConfig
        ``label_dropout`` is the probability of the empty prompt.
    output_dir : str
        The pipeline's folder; a relative path is relative to the repository root.
    training_seed : int
        Seeds the training (:func:`train`); the shipped weights used 0.
    """

    training: TrainingConfig
    output_dir: str
    training_seed: int = 0


PRESETS = {
    "full": Config(FULL, str(WEIGHTS_DIRECTORY.relative_to(REPOSITORY_ROOT))),
    "smoke": Config(SMOKE, str(SMOKE_OUTPUT_DIRECTORY.relative_to(REPOSITORY_ROOT))),
}


@dataclass(frozen=True)
class TrainingCell:
    """The one cell: train with ``training`` and save the pipeline to ``output_dir``."""

    training: TrainingConfig
    output_dir: str  # relative to the repository root when inside it, else absolute
    training_seed: int


def cells(config: Config) -> list[TrainingCell]:
    """One cell; its folder relative to the repository root when inside it (the key does not depend on where the
    repository lives)."""
    directory = output_directory(config.output_dir).resolve()
    root = REPOSITORY_ROOT.resolve()
    relative = directory.relative_to(root) if directory.is_relative_to(root) else directory
    return [TrainingCell(config.training, str(relative), config.training_seed)]


def prompt_embeddings(pipeline: Any) -> torch.Tensor:
    """The frozen text encoder's embeddings of the ten digit prompts and of ``""`` (index :data:`EMPTY_PROMPT`),
    shape (11, tokens, width), through the pipeline's own ``encode_prompt``."""
    prompts = [digit_prompt(digit) for digit in range(10)] + [""]
    with torch.no_grad():
        embeddings, _ = pipeline.encode_prompt(prompts, torch.device("cpu"), 1, False)
    return embeddings.detach()


def train(config: TrainingConfig, seed: int) -> tuple[Any, list[dict[str, float]], float]:
    """Train the pipeline's UNet (initialized from ``seed``; the training draws from ``seed + 1``) with
    ``simulations.train_dit.train_loop``, a dropped prompt being the empty one.

    Returns
    -------
    pipeline : StableDiffusionPipeline
        With the EMA UNet, in eval mode.
    log : list of dict
        As ``train_loop``'s.
    wall_seconds : float
    """
    pipeline = untrained_digits_pipeline(seed)
    embeddings = prompt_embeddings(pipeline)

    def predict(model: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, prompts: torch.Tensor) -> Any:
        return model(noisy, timesteps, encoder_hidden_states=embeddings[prompts], return_dict=False)[0]

    alphas_cumprod = pipeline.scheduler.alphas_cumprod.to(torch.float32)
    generator = torch.Generator().manual_seed(seed + 1)
    ema_model, log, wall_seconds = train_loop(pipeline.unet, predict, config, EMPTY_PROMPT, generator, alphas_cumprod)
    pipeline.register_modules(unet=ema_model)
    return pipeline, log, wall_seconds


def run_training(cell: TrainingCell, seed: int) -> dict[str, Any]:
    """Train, save the pipeline and ``training.json`` to the cell's folder, return the record.

    The cell's ``training_seed`` seeds the training, not the cell's ``seed``, so that the default reproduces the
    shipped weights' seed.
    """
    seed = cell.training_seed
    pipeline, log, wall_seconds = train(cell.training, seed)
    parameters = sum(parameter.numel() for parameter in pipeline.unet.parameters())
    record: dict[str, Any] = {
        "unet_parameters": parameters,
        "text_encoder_parameters": sum(parameter.numel() for parameter in pipeline.text_encoder.parameters()),
        "training": {
            "dataset": "sklearn.datasets.load_digits, train split, pixel space in [-1, 1]",
            "schedule": "DDPM linear betas 1e-4..0.02, 1000 steps (the pipeline's scheduler)",
            "objective": "eps-prediction MSE, uniform timesteps; empty prompt with probability label_dropout",
            "text_encoder": "random, frozen (seed specdiff.integrations.digits.TEXT_ENCODER_SEED)",
            "weights": "EMA",
            **asdict(cell.training),
            "seed": seed,
            "wall_seconds": wall_seconds,
            "final_loss": log[-1]["loss"],
            "log": log,
        },
        "seed": seed,
    }
    folder = output_directory(cell.output_dir)
    pipeline.save_pretrained(folder, safe_serialization=True)
    for weights in folder.rglob("*.safetensors"):
        weights.chmod(0o644)  # safetensors creates its files owner-only
    provenance = {"commit": git_commit(), "dirty": git_dirty(), "machine": machine()}
    (folder / "training.json").write_text(json.dumps({**record, **provenance}, indent=2) + "\n")
    unet_weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    digest = hashlib.sha256(unet_weights.read_bytes()).hexdigest()
    return {**record, "output_dir": cell.output_dir, "unet_weights_sha256": digest}


def describe(record: Mapping[str, Any]) -> str:
    """A printed line for the training record."""
    training = record["training"]
    return (
        f"saved the pipeline to {record['output_dir']}: {training['iterations']} iterations, final loss "
        f"{training['final_loss']:.4f}, {training['wall_seconds']:.1f} s of training"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Passed when the final training loss is finite."""
    (record,) = records
    return Summary(
        fields={"final_loss": record["training"]["final_loss"], "output_dir": record["output_dir"]},
        passed=math.isfinite(record["training"]["final_loss"]),
        text=describe(record),
    )


EXPERIMENT = Experiment(
    module="simulations.train_sd_digits",
    description=__doc__ or "",
    presets=PRESETS,
    default_seed=DEFAULT_SEED,
    output="train_sd_digits.json",
    code=(
        "specdiff/integrations/digits.py",
        "specdiff/integrations/tiny.py",
        "specdiff/models/dit.py",
        "simulations/train_dit.py",
        "simulations/train_sd_digits.py",
    ),
    cells=cells,
    run_cell=run_training,
    summarize=summarize,
    timed=True,
    describe=describe,
    options=("output_dir", "training_seed"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Train and save the pipeline (the experiment)."""
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
