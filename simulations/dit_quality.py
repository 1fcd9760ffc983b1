"""Sample quality of the shipped "digits" DiT: classifier accuracy on its samples and nearest-neighbour distances.

Samples are drawn class-conditionally (``samples_per_class`` per digit, no guidance by default) with the DDPM
ancestral sampler (``DDPMKernel(linear_schedule(1000), num_steps)``, ``fixed_small`` variance, trailing spacing)
run by ``specdiff.sampler.sample_plain`` from ``N(0, I)``, in float32, with one generator seeded from the cell's seed.
Then

(a) a support-vector classifier (scikit-learn ``SVC``, RBF kernel, default hyper-parameters) is fitted on the real
    train split and scored on the samples against their conditioning labels, and on the held-out real digits (its
    own accuracy, the ceiling to compare with);
(b) the mean Euclidean distance from each sample to its nearest train image is compared with the same for the
    held-out real digits: a much smaller value for the samples would mean memorization, a much larger one
    unrealistic samples.

Samples are clamped to [-1, 1] for classification, distances and display only.

One cell (the experiment framework, ``simulations.experiment``): its parameters are the sizes, the model's name and
folder and the SHA-256 of its weights, so a retrained model is a new cell. Writes ``results/dit_quality.json``
(``results/smoke/dit_quality.json`` with ``--smoke``): the standard header, the numbers (``metrics``), the sizes
(``samples``, ``train_images``, ``heldout_images``; the steps are ``config.num_steps``) and the images of the sample
grid (``grid``: 10 classes x ``grid_columns`` samples, 3 decimals), from which ``specdiff figures`` draws
``docs/figures/dit_digits_samples.png``; ``--figure PATH`` also writes that grid as a PNG. Options: ``--name`` (the
model, ``dit_{name}.safetensors``), ``--weights-dir`` (default: the shipped weights), ``--guidance-scale``. Run
``python -m simulations.dit_quality`` (seconds) or ``--smoke``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import ClassifierFreeGuidance, DiT, digits_dataset, load_pretrained, weight_paths
from specdiff.sampler import sample_plain

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_SEED = 0
NUM_CLASSES = 10
SAMPLER = "DDPMKernel(linear_schedule(1000), num_steps, fixed_small, trailing) via sample_plain, float32"


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
    name : str
        The pretrained model (``dit_{name}.safetensors``).
    weights_dir : str, optional
        The folder of the weights (default: the shipped weights).
    figure : str, optional
        Also write the sample grid to this PNG (not part of the cell).
    """

    samples_per_class: int = 20
    num_steps: int = 100
    guidance_scale: float = 1.0
    grid_columns: int = 10
    name: str = "digits"
    weights_dir: str | None = None
    figure: str | None = None


FULL = QualityConfig()
SMOKE = QualityConfig(samples_per_class=2, num_steps=10, grid_columns=2)


@dataclass(frozen=True)
class QualityCell:
    """The parameters of the one cell: the sizes and the model (name, folder, digest of its files)."""

    samples_per_class: int
    num_steps: int
    guidance_scale: float
    grid_columns: int
    name: str
    weights_dir: str | None
    weights_sha256: str


@dataclass(frozen=True)
class QualityRecord:
    """The cell's record: the model, the sizes, the numbers and the sample grid."""

    model: str
    parameters: int  # the model's parameter count
    samples: int
    samples_per_class: int
    num_steps: int
    guidance_scale: float
    train_images: int
    heldout_images: int
    metrics: dict[str, Any]
    grid: dict[str, Any]


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


def evaluate(
    model: DiT, config: QualityConfig | QualityCell, seed: int
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Draw the samples and compute every quality number.

    Returns
    -------
    metrics : dict
    samples : Tensor, shape (10 * samples_per_class, 1, 8, 8), clamped to [-1, 1]
    labels : Tensor, shape (10 * samples_per_class,), long (class-major order)
    """
    labels = torch.arange(NUM_CLASSES).repeat_interleave(config.samples_per_class)
    raw = sample_digits(model, labels, config.num_steps, seed, config.guidance_scale)
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


def weights_digest(name: str, weights_dir: str | None) -> str:
    """SHA-256 of the model's weights and config files (``dit_{name}.safetensors`` and ``.json``)."""
    digest = hashlib.sha256()
    for path in weight_paths(name, None if weights_dir is None else Path(weights_dir)):
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def cells(config: QualityConfig) -> list[QualityCell]:
    """The one cell of ``config`` (the figure is not part of it)."""
    return [
        QualityCell(
            samples_per_class=config.samples_per_class,
            num_steps=config.num_steps,
            guidance_scale=config.guidance_scale,
            grid_columns=config.grid_columns,
            name=config.name,
            weights_dir=config.weights_dir,
            weights_sha256=weights_digest(config.name, config.weights_dir),
        )
    ]


def run_cell(cell: QualityCell, seed: int) -> QualityRecord:
    """Load the model, draw the samples from ``seed`` and score them."""
    model = load_pretrained(cell.name, directory=None if cell.weights_dir is None else Path(cell.weights_dir))
    metrics, samples, labels = evaluate(model, cell, seed)
    return QualityRecord(
        model=cell.name,
        parameters=model.num_parameters(),
        samples=int(labels.shape[0]),
        samples_per_class=cell.samples_per_class,
        num_steps=cell.num_steps,
        guidance_scale=cell.guidance_scale,
        train_images=int(digits_dataset("train")[0].shape[0]),
        heldout_images=int(digits_dataset("heldout")[0].shape[0]),
        metrics=metrics,
        grid=grid_images(samples, labels, min(cell.grid_columns, cell.samples_per_class)),
    )


def save_figure(grid: Mapping[str, Any], path: Path) -> None:
    """Draw ``grid`` (:func:`grid_images`) with :func:`grid_figure` into the PNG ``path``."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure = grid_figure(dict(grid))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summarize(config: QualityConfig, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The record's model, sizes, numbers and grid as top-level fields; draws the figure if ``config.figure``."""
    if not records:
        return Summary(passed=False, text="no record")
    record = records[0]
    if config.figure is not None:
        save_figure(record["grid"], Path(config.figure))
    fields = {
        "model": record["model"],
        "parameters": record["parameters"],
        "sampler": SAMPLER,
        "device": "cpu",
        "samples": record["samples"],
        "train_images": record["train_images"],
        "heldout_images": record["heldout_images"],
        "metrics": record["metrics"],
        "grid": record["grid"],
    }
    lines = [f"{key:>45}: {value:.4f}" for key, value in record["metrics"].items() if isinstance(value, float)]
    if config.figure is not None:
        lines.append(f"wrote {config.figure}")
    return Summary(fields=fields, text="\n".join(lines))


EXPERIMENT = Experiment(
    module="simulations.dit_quality",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="dit_quality.json",
    code=(*SAMPLER_CODE, "specdiff/models/dit.py", "simulations/dit_quality.py"),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    options=("name", "weights_dir", "guidance_scale", "figure"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate, write the JSON (and the figure with ``--figure``), print the numbers; 0 when the cell ran."""
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
