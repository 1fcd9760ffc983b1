"""Plain against speculative Stable Diffusion on the trained digits model (``specdiff.integrations.digits``).

The shipped Stable-Diffusion-architecture model (a ``UNet2DConditionModel`` with cross-attention on a frozen CLIP
text encoder, pixel space, trained by ``python -m simulations.train_sd_digits``) sampled through
``specdiff.integrations.diffusers``: ``plain_stable_diffusion`` and ``speculative_stable_diffusion`` with the
prompts ``"a handwritten zero"`` ... ``"a handwritten nine"`` and classifier-free guidance. Three kinds of cells:

- **quality**: plain samples of every prompt; a digit classifier (``simulations.dit_quality``: an RBF SVM fitted on
  the real train split) scores them against their prompt's digit, as for the DiT, and a grid of the first samples of
  each prompt is kept for ``docs/figures/sd_digits_samples.png``.
- **check**: speculative against plain samples of every prompt (independent randomness), for a rule, a drafter
  (``free-nearest``: the reuse Free Drafter; ``cached-features``: the DeepCache-style drafter of
  ``specdiff.integrations.deepcache``), a window (fixed, or the adaptive policy) and optionally a negative control:
  target calls against plain's; exactness by MMD and projected KS (``simulations.dit_exactness``'s test, Bonferroni
  over the two) on the samples of all prompts pooled (both arms hold the same prompts, so under exactness they
  follow the same mixture), judged at its ``LEVEL``, the control expected to be rejected, with each prompt's own
  p-value reported unadjusted;
  the measured steps per round against the theory for the logged gaps (martingale z, ``calibrate_run``) with the
  per-position table; the classifier's accuracy on the speculative samples; and the CPU wall time of both arms.
- **draft cost**: the cached-feature drafter's cost in target-call units, measured (``measure_draft_cost``: one
  shallow forward against one full forward of the trained UNet with guidance, median of repeats), at a few batches.

A timed experiment (its records hold wall times), run serially. Writes ``results/sd_digits.json``
(``results/smoke/sd_digits.json`` with ``--smoke``). Run ``python -m simulations.sd_digits`` (about 15 minutes on
the CPU) or ``--smoke``. ``--weights-dir FOLDER`` measures another saved pipeline (default: the shipped one).
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from simulations.controls import rule_with_control
from simulations.dit_exactness import LEVEL, as_expected, class_p_value, z_bound
from simulations.dit_quality import accuracy, fit_classifier, grid_images, nearest_neighbour_distances
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import REPOSITORY_ROOT, SAMPLER_CODE
from specdiff.diagnostics import calibrate_run
from specdiff.drafters import Drafter, FreeDrafter
from specdiff.integrations.deepcache import CachedFeatureDrafter, measure_draft_cost
from specdiff.integrations.diffusers import plain_stable_diffusion, speculative_stable_diffusion
from specdiff.integrations.digits import WEIGHTS_DIRECTORY, digit_prompt, load_digits_pipeline
from specdiff.models.dit import digits_dataset
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy

DEFAULT_SEED = 23
#: The shipped model's weights (their bytes enter the cells' keys and the results page's staleness check).
SHIPPED_WEIGHTS = (
    "specdiff/models/weights/sd_digits/unet/diffusion_pytorch_model.safetensors",
    "specdiff/models/weights/sd_digits/text_encoder/model.safetensors",
)
DRAFTERS = ("free-nearest", "cached-features")
#: The draft cost the cached-feature drafter is given in the checks (its measured value is a separate cell; a fixed
#: window does not use it, the adaptive one weighs it).
CACHED_FEATURES_COST = 0.5


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    classes : tuple of int
        The digits prompted.
    guidance_scale : float
        Classifier-free guidance of every run.
    quality_samples_per_class, quality_steps : int
        The quality cell's sizes.
    grid_columns : int
        Samples per prompt kept for the figure.
    samples_per_class, steps : int
        The checks' sizes (per arm).
    runs : tuple of (rule, drafter, control, window, steps)
        The checks; ``window`` a fixed window or None (the adaptive policy); ``steps`` None for ``steps``.
    permutations : int
        Of the MMD test.
    cost_batches : tuple of int
        Images per call at which the cached-feature drafter's cost is measured.
    cost_repeats : int
    weights_dir : str
        The saved pipeline (relative to the repository root, or absolute).
    """

    classes: tuple[int, ...]
    guidance_scale: float
    quality_samples_per_class: int
    quality_steps: int
    grid_columns: int
    samples_per_class: int
    steps: int
    runs: tuple[tuple[str, str, str | None, int | None, int | None], ...]
    permutations: int
    cost_batches: tuple[int, ...]
    cost_repeats: int
    weights_dir: str = str(WEIGHTS_DIRECTORY.relative_to(REPOSITORY_ROOT))

    def __post_init__(self) -> None:
        # The smallest p-value a check can reach (its MMD half, doubled by the MMD-KS Bonferroni) must be below LEVEL.
        smallest = 2 / (self.permutations + 1)
        if smallest >= LEVEL:
            raise ValueError(f"{self.permutations} permutations cannot reject at {LEVEL} (smallest p = {smallest:.3g})")


FULL = Config(
    classes=tuple(range(10)),
    guidance_scale=2.0,
    quality_samples_per_class=50,
    quality_steps=100,
    grid_columns=10,
    samples_per_class=20,
    steps=50,
    runs=(
        ("block", "free-nearest", None, 4, None),
        ("token-reflection", "free-nearest", None, 4, None),
        ("block", "cached-features", None, 4, None),
        ("token-reflection", "cached-features", None, 4, None),
        ("token-reflection", "free-nearest", None, None, None),
        ("block", "free-nearest", "accept-always", 8, None),
        ("token-reflection", "free-nearest", None, None, 200),
    ),
    permutations=29_999,
    cost_batches=(1, 8, 64),
    cost_repeats=20,
)
SMOKE = Config(
    classes=(3, 7),
    guidance_scale=2.0,
    quality_samples_per_class=4,
    quality_steps=8,
    grid_columns=2,
    samples_per_class=16,
    steps=12,
    runs=(("block", "cached-features", None, 3, None), ("block", "free-nearest", "accept-always", 3, None)),
    permutations=19_999,
    cost_batches=(2,),
    cost_repeats=2,
)


@dataclass(frozen=True)
class QualityCell:
    """Plain samples of every prompt, scored by the classifier."""

    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    guidance_scale: float
    grid_columns: int
    weights: str
    fingerprint: str  # of the weights: a retrained model is a new cell
    kind: str = field(default="quality", init=False)


@dataclass(frozen=True)
class CheckCell:
    """Speculative against plain samples of every prompt, for one configuration."""

    rule: str
    drafter: str
    control: str | None
    window: int | None
    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    guidance_scale: float
    permutations: int
    weights: str
    fingerprint: str
    kind: str = field(default="check", init=False)


@dataclass(frozen=True)
class CostCell:
    """The cached-feature drafter's measured cost at ``batch`` images per call."""

    batch: int
    guidance_scale: float
    repeats: int
    weights: str
    fingerprint: str
    kind: str = field(default="draft-cost", init=False)


SdCell = QualityCell | CheckCell | CostCell


def weights_fingerprint(weights: str) -> str:
    """SHA-256 (16 hex digits) of the saved pipeline's files, names and bytes."""
    folder = REPOSITORY_ROOT / weights
    digest = hashlib.sha256()
    for file in sorted(item for item in folder.rglob("*") if item.is_file() and item.name != "training.json"):
        digest.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def cells(config: Config) -> list[SdCell]:
    """The quality cell, the checks in order, then the draft-cost cells."""
    weights, fingerprint = config.weights_dir, weights_fingerprint(config.weights_dir)
    quality: list[SdCell] = [
        QualityCell(
            config.classes,
            config.quality_samples_per_class,
            config.quality_steps,
            config.guidance_scale,
            config.grid_columns,
            weights,
            fingerprint,
        )
    ]
    checks: list[SdCell] = [
        CheckCell(
            rule,
            drafter,
            control,
            window,
            config.classes,
            config.samples_per_class,
            steps or config.steps,
            config.guidance_scale,
            config.permutations,
            weights,
            fingerprint,
        )
        for rule, drafter, control, window, steps in config.runs
    ]
    costs: list[SdCell] = [
        CostCell(batch, config.guidance_scale, config.cost_repeats, weights, fingerprint)
        for batch in config.cost_batches
    ]
    return quality + checks + costs


@functools.lru_cache(maxsize=1)
def pipeline(weights: str) -> Any:
    """The saved pipeline, loaded once per process."""
    return load_digits_pipeline(REPOSITORY_ROOT / weights)


@functools.lru_cache(maxsize=1)
def classifier() -> Any:
    """The digit classifier of ``simulations.dit_quality``, fitted once per process."""
    return fit_classifier(*digits_dataset("train"))


def prompts_of(classes: Sequence[int], samples_per_class: int) -> tuple[list[str], torch.Tensor]:
    """The prompt of every sample (class-major) and its digit (B,)."""
    labels = torch.tensor(list(classes)).repeat_interleave(samples_per_class)
    return [digit_prompt(int(digit)) for digit in labels], labels


def make_drafter(name: str) -> Drafter:
    """``free-nearest`` (the reuse Free Drafter) or ``cached-features`` (cost :data:`CACHED_FEATURES_COST`)."""
    if name == "free-nearest":
        return FreeDrafter(reuse="nearest")
    if name == "cached-features":
        return CachedFeatureDrafter(draft_cost_per_step=CACHED_FEATURES_COST)
    raise ValueError(f"unknown drafter {name!r}; choose from {DRAFTERS}")


def _images(latents: torch.Tensor) -> torch.Tensor:
    """Final latents (B, 1, 8, 8) as images for the classifier: clamped to [-1, 1], float32 on the CPU."""
    return latents.detach().cpu().float().clamp(-1.0, 1.0)


def run_quality(cell: QualityCell, seed: int) -> dict[str, Any]:
    """Plain samples of every prompt: classifier accuracy (overall and per prompt), distances, the grid."""
    prompts, labels = prompts_of(cell.classes, cell.samples_per_class)
    start = time.perf_counter()
    result = plain_stable_diffusion(
        pipeline(cell.weights), prompts, num_inference_steps=cell.steps, guidance_scale=cell.guidance_scale,
        generator=torch.Generator().manual_seed(seed), output_type="latent",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    samples = _images(result.latents)
    heldout_images, heldout_labels = digits_dataset("heldout")
    train_images, _ = digits_dataset("train")
    per_class = [accuracy(classifier(), samples[labels == c], labels[labels == c]) for c in cell.classes]
    return {
        **asdict(cell),
        "classifier_accuracy_samples": accuracy(classifier(), samples, labels),
        "classifier_accuracy_samples_per_class": per_class,
        "classifier_accuracy_heldout_real": accuracy(classifier(), heldout_images, heldout_labels),
        "nearest_train_distance_samples_mean": float(nearest_neighbour_distances(samples, train_images).mean()),
        "nearest_train_distance_heldout_real_mean": float(
            nearest_neighbour_distances(heldout_images, train_images).mean()
        ),
        "fraction_raw_samples_outside_unit_interval": float((result.latents.abs() > 1.0).double().mean()),
        "grid": grid_images(samples, labels, cell.grid_columns) | {"classes": list(cell.classes)},
        "wall_seconds": seconds,
    }


def _policy(window: int | None) -> WindowPolicy:
    return AdaptiveWindow() if window is None else FixedWindow(window)


def run_check(cell: CheckCell, seed: int) -> dict[str, Any]:
    """Plain (noise ``seed``) and speculative (noise ``seed + 1``) samples of every prompt, compared pooled (test
    seeded ``seed + 2``) and per prompt (``seed + 3 + c``), calibrated, scored and timed."""
    pipe = pipeline(cell.weights)
    prompts, labels = prompts_of(cell.classes, cell.samples_per_class)
    options: dict[str, Any] = {
        "num_inference_steps": cell.steps, "guidance_scale": cell.guidance_scale, "output_type": "latent",
    }  # fmt: skip
    start = time.perf_counter()
    plain = plain_stable_diffusion(pipe, prompts, generator=torch.Generator().manual_seed(seed), **options)
    plain_seconds = time.perf_counter() - start
    rule = rule_with_control(cell.rule, cell.control)  # type: ignore[arg-type]
    drafter = make_drafter(cell.drafter)
    start = time.perf_counter()
    speculative = speculative_stable_diffusion(
        pipe, prompts, drafter=drafter, window=_policy(cell.window), rule=rule,
        generator=torch.Generator().manual_seed(seed + 1), **options,
    )  # fmt: skip
    speculative_seconds = time.perf_counter() - start
    if isinstance(drafter, CachedFeatureDrafter):
        drafter.close()  # its forward hook leaves the UNet
    plain_latents, speculative_latents = plain.latents.cpu(), speculative.latents.cpu()
    # Judged: all prompts pooled (both arms hold the same prompts, so under exactness the same mixture). Reported
    # for information: each prompt's own p-value, unadjusted.
    pooled = class_p_value(speculative_latents, plain_latents, seed + 2, cell.permutations)
    p_values = [
        class_p_value(speculative_latents[labels == c], plain_latents[labels == c], seed + 3 + c, cell.permutations)
        for c in cell.classes
    ]
    statistics = speculative.statistics
    calibration = calibrate_run(statistics, cell.rule)  # type: ignore[arg-type]
    accepted = torch.cat(statistics.accepted).double()  # type: ignore[union-attr]
    return {
        **asdict(cell),
        "class_p_values": p_values,
        "p_value": pooled,
        "rejected": pooled < LEVEL,
        "expected_rejection": cell.control is not None,
        "target_calls": int(statistics.target_calls),
        "plain_target_calls": int(plain.statistics.target_calls),
        "call_ratio": plain.statistics.target_calls / statistics.target_calls,
        "calibration_z": calibration.z,
        "measured_steps_per_round": calibration.measured_steps_per_round,
        "predicted_steps_per_round": calibration.predicted_steps_per_round,
        "calibration_positions": [asdict(row) for row in calibration.positions],
        "mean_accepted": float(accepted.mean()),
        "classifier_accuracy_speculative": accuracy(classifier(), _images(speculative_latents), labels),
        "classifier_accuracy_plain": accuracy(classifier(), _images(plain_latents), labels),
        "plain_wall_seconds": plain_seconds,
        "speculative_wall_seconds": speculative_seconds,
    }


def run_cost(cell: CostCell, seed: int) -> dict[str, Any]:
    """The cached-feature drafter's measured cost on the trained UNet with guidance (2 x ``batch`` rows)."""
    pipe = pipeline(cell.weights)
    generator = torch.Generator().manual_seed(seed)
    prompts, _ = prompts_of((7,), cell.batch)
    embeddings, negative = pipe.encode_prompt(prompts, torch.device("cpu"), 1, cell.guidance_scale > 1.0)
    guided = cell.guidance_scale > 1.0
    rows = 2 * cell.batch if guided else cell.batch
    latents = torch.randn((rows, 1, 8, 8), generator=generator)
    hidden = torch.cat([negative, embeddings]) if guided else embeddings
    timesteps = torch.full((rows,), 500, dtype=torch.long)
    with torch.no_grad():
        cost = measure_draft_cost(pipe.unet, latents, timesteps, hidden, repeats=cell.repeats)
    return {**asdict(cell), "rows": rows, **asdict(cost)}


def run_cell(cell: SdCell, seed: int) -> dict[str, Any]:
    """Dispatch on the cell's kind."""
    if isinstance(cell, QualityCell):
        return run_quality(cell, seed)
    if isinstance(cell, CheckCell):
        return run_check(cell, seed)
    return run_cost(cell, seed)


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per cell."""
    if record["kind"] == "quality":
        return (
            f"quality: classifier accuracy {100 * record['classifier_accuracy_samples']:.1f}% on "
            f"{len(record['classes']) * record['samples_per_class']} plain samples "
            f"({100 * record['classifier_accuracy_heldout_real']:.1f}% on held-out real digits)"
        )
    if record["kind"] == "draft-cost":
        return f"draft cost at batch {record['batch']}: {record['ratio']:.3f} of a call"
    window = "adaptive" if record["window"] is None else str(record["window"])
    return (
        f"{record['rule']:<17} {record['drafter']:<16} {record['control'] or '-':<14} L={window:<8} "
        f"N={record['steps']:<4} p = {record['p_value']:.3g}  calls {record['plain_target_calls']} -> "
        f"{record['target_calls']}  steps/round {record['measured_steps_per_round']:.2f} (predicted "
        f"{record['predicted_steps_per_round']:.2f}, z = {record['calibration_z']:+.2f})  "
        f"{'ok' if as_expected(record) else 'FAILED'}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Passed when every check is as expected and every measured cost is finite and positive."""
    checks = [record for record in records if record["kind"] == "check"]
    costs = [record for record in records if record["kind"] == "draft-cost"]
    passed = all(as_expected(record) for record in checks) and all(
        math.isfinite(record["ratio"]) and record["ratio"] > 0 for record in costs
    )
    return Summary(
        fields={"level": LEVEL, "z_bound": z_bound(), "all_passed": passed},
        passed=passed,
        text="\n".join(describe(record) for record in records),
    )


EXPERIMENT = Experiment(
    module="simulations.sd_digits",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="sd_digits.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/diagnostics.py",
        "specdiff/stats.py",
        "specdiff/integrations/diffusers.py",
        "specdiff/integrations/digits.py",
        "specdiff/integrations/deepcache.py",
        "specdiff/integrations/tiny.py",
        "simulations/controls.py",
        "simulations/dit_exactness.py",
        "simulations/dit_quality.py",
        "simulations/sd_digits.py",
        *SHIPPED_WEIGHTS,
    ),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    timed=True,
    describe=describe,
    options=("weights_dir",),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment (``simulations.experiment.main``)."""
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
