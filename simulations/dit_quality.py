"""Sample quality of the shipped "digits" DiT: classifier accuracy on its samples and nearest-neighbour distances.

Samples are drawn class-conditionally (``samples_per_class`` per digit, no guidance by default) with the DDPM
ancestral sampler (``DDPMKernel(linear_schedule(1000), num_steps)``, ``fixed_small`` variance, trailing spacing)
run by ``specdiff.sampler.sample_plain`` from ``N(0, I)``, in float32, with per-sample generators seeded from
``--seed``. Then

(a) a support-vector classifier (scikit-learn ``SVC``, RBF kernel, default hyper-parameters) is fitted on the real
    train split and scored on the samples against their conditioning labels, and on the held-out real digits (its
    own accuracy, the ceiling to compare with);
(b) the mean Euclidean distance from each sample to its nearest train image is compared with the same for the
    held-out real digits: a much smaller value for the samples would mean memorization, a much larger one
    unrealistic samples.

Samples are clamped to [-1, 1] for classification, distances and display only.

Writes ``results/dit_quality.json``: seed, sizes, commit, the numbers, and the images of the sample grid (10 classes x
10 samples, 3 decimals), from which ``specdiff figures`` draws ``docs/figures/dit_digits_samples.png``; ``--figure
PATH`` also writes that grid as a PNG. Run ``python -m simulations.dit_quality`` (seconds) or ``--smoke``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from simulations.provenance import REPOSITORY_ROOT, git_commit, git_dirty, machine
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import ClassifierFreeGuidance, DiT, digits_dataset, load_pretrained
from specdiff.sampler import sample_plain

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "dit_quality.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "dit_quality.json"
DEFAULT_SEED = 0
NUM_CLASSES = 10


@dataclass(frozen=True)
class QualityConfig:
    """Sizes of one evaluation.

    Attributes
    ----------
    samples_per_class : int
    num_steps : int
        DDPM sampling steps (respaced from the 1000 training steps).
    guidance_scale : float
        Classifier-free guidance scale (1 = plain conditional sampling).
    grid_columns : int
        Samples per class shown in the figure (at most ``samples_per_class``).
    """

    samples_per_class: int = 20
    num_steps: int = 100
    guidance_scale: float = 1.0
    grid_columns: int = 10


FULL = QualityConfig()
SMOKE = QualityConfig(samples_per_class=2, num_steps=10, grid_columns=2)


def sample_digits(
    model: DiT, labels: torch.Tensor, num_steps: int, seed: int, guidance_scale: float = 1.0
) -> torch.Tensor:
    """Class-conditional DDPM ancestral samples, shape (B, 1, 8, 8), float32, unclamped.

    Parameters
    ----------
    model : DiT
    labels : Tensor, shape (B,), long
    num_steps : int
        Sampling steps (respaced, trailing).
    seed : int
        Seeds the initial noise and the per-sample step noise.
    guidance_scale : float
    """
    config = model.config
    kernel = DDPMKernel(linear_schedule(1000), num_steps=num_steps)
    generator = torch.Generator().manual_seed(seed)
    shape = (labels.shape[0], config.in_channels, config.input_size, config.input_size)
    x_init = torch.randn(shape, generator=generator, dtype=torch.float32)
    target = model if guidance_scale == 1.0 else ClassifierFreeGuidance(model, guidance_scale)
    with torch.no_grad():
        return sample_plain(target, kernel, x_init, generator=generator, conditioning={"y": labels}).samples


def fit_classifier(images: torch.Tensor, labels: torch.Tensor) -> Any:
    """An RBF support-vector classifier fitted on flattened images (n, 1, 8, 8) in [-1, 1]."""
    from sklearn.svm import SVC

    return SVC().fit(images.reshape(images.shape[0], -1).numpy(), labels.numpy())


def accuracy(classifier: Any, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` (n, 1, 8, 8) that ``classifier`` assigns to ``labels`` (n,)."""
    predicted = classifier.predict(images.reshape(images.shape[0], -1).numpy())
    return float(np.mean(predicted == labels.numpy()))


def nearest_neighbour_distances(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each query to its nearest reference, shape (n,), float64.

    Parameters
    ----------
    queries : Tensor, shape (n, *event)
    references : Tensor, shape (m, *event)
    """
    flat_queries = queries.reshape(queries.shape[0], -1).to(torch.float64)
    flat_references = references.reshape(references.shape[0], -1).to(torch.float64)
    return torch.cdist(flat_queries, flat_references).min(dim=1).values


def evaluate(model: DiT, config: QualityConfig, seed: int) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Draw the samples and compute every quality number.

    Returns
    -------
    metrics : dict
    samples : Tensor, shape (10 * samples_per_class, 1, 8, 8), clamped to [-1, 1]
    labels : Tensor, shape (10 * samples_per_class,), long (class-major order)
    """
    labels = torch.arange(NUM_CLASSES).repeat_interleave(config.samples_per_class)
    start = time.perf_counter()
    raw = sample_digits(model, labels, config.num_steps, seed, config.guidance_scale)
    sampling_seconds = time.perf_counter() - start
    samples = raw.clamp(-1.0, 1.0)
    train_images, train_labels = digits_dataset("train")
    heldout_images, heldout_labels = digits_dataset("heldout")
    classifier = fit_classifier(train_images, train_labels)
    sample_distances = nearest_neighbour_distances(samples, train_images)
    heldout_distances = nearest_neighbour_distances(heldout_images, train_images)
    per_class = [accuracy(classifier, samples[labels == digit], labels[labels == digit]) for digit in range(10)]
    metrics = {
        "classifier": "sklearn.svm.SVC() (RBF, default hyper-parameters) on the real train split",
        "classifier_accuracy_samples": accuracy(classifier, samples, labels),
        "classifier_accuracy_samples_per_class": per_class,
        "classifier_accuracy_heldout_real": accuracy(classifier, heldout_images, heldout_labels),
        "nearest_train_distance_samples_mean": float(sample_distances.mean()),
        "nearest_train_distance_heldout_real_mean": float(heldout_distances.mean()),
        "nearest_train_distance_samples_median": float(sample_distances.median()),
        "nearest_train_distance_heldout_real_median": float(heldout_distances.median()),
        "fraction_raw_samples_outside_unit_interval": float((raw.abs() > 1.0).double().mean()),
        "sampling_seconds": sampling_seconds,
    }
    return metrics, samples, labels


def grid_images(samples: torch.Tensor, labels: torch.Tensor, columns: int) -> dict[str, Any]:
    """The first ``columns`` samples of each class, as JSON-ready nested lists (3 decimals).

    Parameters
    ----------
    samples : Tensor, shape (n, 1, 8, 8), in [-1, 1]
    labels : Tensor, shape (n,), long
    columns : int

    Returns
    -------
    dict
        ``{"columns": columns, "images": [class][column][row][pixel]}``.
    """
    rows = [samples[labels == digit][:columns, 0].double().round(decimals=3).tolist() for digit in range(NUM_CLASSES)]
    return {"columns": columns, "images": rows}


def grid_figure(grid: dict[str, Any]) -> Figure:
    """One row per class (0..9): the images of :func:`grid_images`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = grid["columns"]
    figure, axes = plt.subplots(NUM_CLASSES, columns, figsize=(0.6 * columns + 0.4, 0.6 * NUM_CLASSES), squeeze=False)
    for digit, images in enumerate(grid["images"]):
        for column, image in enumerate(images):
            axis = axes[digit, column]
            axis.imshow(image, cmap="gray_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        axes[digit, 0].set_ylabel(str(digit), rotation=0, labelpad=8, va="center")
    figure.suptitle("DiT 'digits' samples (DDPM, one row per class)", fontsize=8)
    figure.tight_layout()
    return figure


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m simulations.dit_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 samples per class, 10 steps")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--name", default="digits", help="pretrained model name (dit_{name}.safetensors)")
    parser.add_argument("--weights-dir", type=Path, default=None, help="default: the shipped weights")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/dit_quality.json)")
    parser.add_argument("--figure", type=Path, default=None, help="also write the sample grid to this PNG")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate, write the JSON and the figure, print the numbers.

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
    if arguments.guidance_scale is not None:
        config = QualityConfig(
            config.samples_per_class, config.num_steps, arguments.guidance_scale, config.grid_columns
        )
    output: Path = arguments.output or (SMOKE_OUTPUT if arguments.smoke else DEFAULT_OUTPUT)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_pretrained(arguments.name, directory=arguments.weights_dir)
        metrics, samples, labels = evaluate(model, config, arguments.seed)
    finally:
        torch.set_num_threads(previous_threads)
    payload: dict[str, Any] = {
        "experiment": "dit_quality",
        "preset": "smoke" if arguments.smoke else "full",
        "model": arguments.name,
        "parameters": model.num_parameters(),
        "seed": arguments.seed,
        "commit": git_commit(),
        "dirty": git_dirty(),
        "sizes": {
            "samples": int(labels.shape[0]),
            "samples_per_class": config.samples_per_class,
            "num_steps": config.num_steps,
            "train_images": int(digits_dataset("train")[0].shape[0]),
            "heldout_images": int(digits_dataset("heldout")[0].shape[0]),
        },
        "config": asdict(config),
        "sampler": "DDPMKernel(linear_schedule(1000), num_steps, fixed_small, trailing) via sample_plain, float32",
        "machine": machine(),
        "device": "cpu",
        "metrics": metrics,
        "grid": grid_images(samples, labels, min(config.grid_columns, config.samples_per_class)),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2) + "\n")
    if arguments.figure is not None:
        arguments.figure.parent.mkdir(parents=True, exist_ok=True)
        figure = grid_figure(payload["grid"])
        figure.savefig(arguments.figure, dpi=100)
        import matplotlib.pyplot as plt

        plt.close(figure)
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"{key:>45}: {value:.4f}")
    print(f"wrote {output}" + (f" and {arguments.figure}" if arguments.figure is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
