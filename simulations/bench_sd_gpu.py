"""Benchmark: speculative sampling of Stable Diffusion- and DiT-sized diffusers networks, wall clock, on one GPU.

What it measures, per network of the preset, each measurement one cell of the experiment framework
(``simulations.experiment``; a timed experiment: its records are wall times), in this order:

1. **Batch-cost curve** (records of ``kind: "cost-curve"``): seconds per call of the guided model function at each
   number of states of ``cost_batches`` (a call on M latents runs the network on 2M rows: classifier-free
   guidance puts the unconditional and the conditional halves in one call), median of ``repeats`` timed calls.
2. **Overhead** (``kind: "overhead"``): the sampler's own time per round, in ms (``overhead_milliseconds``) and as
   a fraction of one network call on the batch (``overhead_fraction``; target under ``OVERHEAD_TARGET`` = 3%).
   Plain sampling, then speculative sampling with the perfect drafter (below), both with every network call timed
   and synchronized (:class:`specdiff.timing.TimedModel`): the wall time outside the network calls over the rounds.
   The plain loop's own time per step is recorded beside it (``plain_step_milliseconds``).
3. **Efficiency** (``kind: "efficiency"``): for N steps, B images and window L, plain sampling then speculative
   sampling of the same noise and seeds with the **perfect drafter** (the target itself drafts: every step is
   accepted, ``target_calls = ceil(N / (L + 1))``; block rule, fixed window L). The draft's own calls are timed
   and removed (``speedup_without_draft``) and compared with the ideal ``(L + 1) / c(L + 1)``, where
   ``c(L + 1) = c(B (L + 1)) / c(B)`` is the cost of a round's call relative to a plain step's, both measured in the
   cell: ``efficiency = speedup_without_draft / ideal_speedup``. ``speedup`` is the raw ratio of the two wall
   times, draft included.
4. **Trained model** (``kind: "speedup"``): plain against speculative Stable Diffusion
   (:func:`specdiff.integrations.diffusers.speculative_stable_diffusion`, its default Free Drafter, the rules of
   ``trained_rules`` and the windows of ``trained_windows``) of a *trained* ``StableDiffusionPipeline`` saved in
   the folder ``trained_weights`` (``--trained-weights FOLDER``; default the shipped digits model of
   ``specdiff.integrations.digits``, prompted ``TRAINED_PROMPT`` with guidance ``GUIDANCE["trained"]``). A folder
   that holds no saved pipeline makes this part one cell whose record has ``kind: "skipped"`` and a note saying so.

**What depends on the weights.** The networks of parts 1-3 have random weights (from ``weights_seed``): their
numbers do not depend on the weights. The cost of a call, the sampler's overhead and the perfect drafter's
efficiency depend only on the architecture, the sizes, the precision and the device (the perfect drafter's
acceptance is 1 by construction, up to the rounding of a batched half-precision call: ``target_calls`` shows any
rejection). **Acceptance** - how many steps a real drafter commits per call, hence the real speedup - depends on
the weights: only part 4 measures it. Every record says which (``depends_on_weights``).

**Networks.** ``sd-1.5``: a ``UNet2DConditionModel`` built from Stable Diffusion 1.5's published config
(block_out_channels (320, 640, 1280, 1280), 2 layers per block, cross-attention width 768, attention head dim 8,
64x64x4 latents; 859.5 M parameters), a 12-layer CLIP text encoder of width 768 over 77 tokens (SD 1.5's, with the
offline byte tokenizer of ``specdiff.integrations.tiny`` instead of CLIP's 49,408-token vocabulary), guidance 7.5,
DDPM with SD's ``scaled_linear`` training schedule (``steps_offset`` 0, so that N = 1000 stays in range).
``dit-xl-2``: a ``DiTTransformer2DModel`` sized as DiT-XL/2 (28 layers, width 1152, 16 heads, patch 2, 32x32x4
latents, 1000 classes, learned sigma), guidance 4.0, DDIM with ``eta = 1`` on DiT's linear schedule. Both in
``precision`` (float16 by default); the latents, means and verification stay float32. ``tiny-sd`` and ``tiny-dit``
(the smoke preset) are the networks of the tiny pipelines of ``specdiff.integrations.tiny`` (8x8x4 latents). The
samplers are called as the diffusers integration calls them (:class:`GuidedUNet` / :class:`GuidedDiT`,
:func:`kernel_from_scheduler`, :func:`specdiff.sample` / :func:`specdiff.sample_plain`), eagerly, under
``torch.no_grad``; prompt encoding and VAE decoding, the same for plain and speculative sampling and outside the
loop, are not timed. Each cell first runs a short untimed plain and speculative sampling of its shapes (the
warm-up), so that no first-call cost enters a timing.

Records are flat JSON, in the format of ``simulations.bench_gpu``: ``kind, model, steps, batch, rule, drafter,
window, target_calls, wall_seconds, baseline_wall_seconds, speedup, device, commit`` and more (efficiency records add
``efficiency, ideal_speedup, speedup_without_draft, cost_ratio, draft_seconds``; overhead records add
``overhead_fraction, overhead_milliseconds, plain_step_milliseconds, call_seconds``); cost-curve records hold
``kind, model, batches, network_rows, seconds, device, commit``. Top level: ``complete`` (every cell ran),
``skipped`` (the notes of skipped parts), ``overhead_target`` and ``overhead_below_target``.

Presets: ``full`` (the GPU run: SD-1.5 and DiT-XL/2 at N = 50, 200, 1000 and 1 and 4 images, window 4) and
``smoke`` (the tiny networks on the CPU, seconds: the tests run the script's whole logic with it). Options:
``--device`` (default cuda when available, else cpu), ``--precision float16|bfloat16|float32`` and
``--trained-weights FOLDER``. The cells run in the order above, the efficiency cells by increasing N (N = 1000
last); unless ``--max-seconds S`` is given, no cell starts after ``DEFAULT_MAX_SECONDS`` (390 s), so that the whole
run stays under 8 minutes (the results file then says ``"complete": false`` and ``sweep.not_run`` counts the cells
left; finished cells are kept in the store, so a rerun measures only the rest).

Run ``python -m simulations.bench_sd_gpu [--smoke] [--device cuda] [--max-seconds S]``. Writes
``results/gpu/bench_sd_gpu.json`` (full) or ``results/smoke/gpu/bench_sd_gpu.json`` (smoke).
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simulations.cells import derived_seed
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import REPOSITORY_ROOT, SAMPLER_CODE, git_commit
from specdiff.drafters import FreeDrafter, Model, ModelDrafter
from specdiff.integrations.diffusers import (
    SUPPORTED_SCHEDULERS,
    GuidedDiT,
    GuidedUNet,
    SchedulerKernel,
    kernel_from_scheduler,
    plain_stable_diffusion,
    speculative_stable_diffusion,
)

# (Importing specdiff.integrations.digits also lets diffusers load the shipped pixel-space pipeline, which names this
# module as its VAE's library: diffusers loads a component's class only from a module already imported.)
from specdiff.integrations.digits import digit_prompt
from specdiff.integrations.tiny import tiny_dit_transformer, tiny_text_encoder, tiny_tokenizer, tiny_unet
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import ChainResult, SpeculativeResult, sample, sample_plain
from specdiff.timing import TimedModel, median_seconds, timed
from specdiff.verify import Rule

DEFAULT_SEED = 0
#: The sampler's own time per round should stay under this fraction of one network call.
OVERHEAD_TARGET = 0.03
#: No cell starts after this many seconds unless ``--max-seconds`` says otherwise (the run stays under 8 minutes).
DEFAULT_MAX_SECONDS = 390.0
#: The trained Stable Diffusion-architecture pipeline (``save_pretrained`` layout), from the root: the digits model.
TRAINED_WEIGHTS = "specdiff/models/weights/sd_digits"
#: The trained model's prompt (the digits model's prompts are "a handwritten <digit>").
TRAINED_PROMPT = digit_prompt(7)
#: The prompt of every Stable Diffusion run (random weights: its content does not matter, its 77 tokens do).
PROMPT = "a photograph of an astronaut riding a horse"
#: Stable Diffusion's training schedule.
SD_SCHEDULE: dict[str, Any] = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
PRECISIONS: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
#: Guidance scale of each family: Stable Diffusion's and DiTPipeline's defaults, and the trained digits model's.
GUIDANCE = {"unet": 7.5, "dit": 4.0, "trained": 2.0}
#: The network family of each model name.
FAMILIES = {"sd-1.5": "unet", "tiny-sd": "unet", "dit-xl-2": "dit", "tiny-dit": "dit"}
#: Record kinds whose numbers do not depend on the weights, and those that do.
WEIGHT_INDEPENDENT = ("cost-curve", "overhead", "efficiency")
WEIGHT_DEPENDENT = ("speedup",)


@dataclass(frozen=True)
class Config:
    """Sizes and options of one run.

    Attributes
    ----------
    models : tuple of str
        Random-weight networks (``FAMILIES``) of the cost, overhead and efficiency cells.
    steps, batches : tuple of int
        N and the number of images B of the efficiency cells.
    windows : tuple of int
        Perfect-drafter windows L.
    cost_batches : tuple of int
        Numbers of latents of the cost curves.
    overhead_steps : int
        N of the overhead cells (one per model, batch and window: the time per round does not depend on N).
    warm_up_steps : int
        Steps of the untimed warm-up runs that start each sampling cell.
    repeats : int
        Timed calls per point of a cost (the median is kept).
    weights_seed : int
        Seeds the random weights (the same networks in every cell).
    trained_steps, trained_batches : tuple of int
    trained_rules : tuple of str
    trained_windows : tuple of str
        A fixed window length (``"8"``) or ``"adaptive"`` (the default :class:`AdaptiveWindow`).
    precision : str
        The networks' dtype, a key of ``PRECISIONS``.
    device : str or None
        None: cuda when available, else cpu.
    trained_weights : str
        Folder of a trained ``StableDiffusionPipeline`` (relative to the repository root, or absolute).
    """

    models: tuple[str, ...]
    steps: tuple[int, ...]
    batches: tuple[int, ...]
    windows: tuple[int, ...]
    cost_batches: tuple[int, ...]
    overhead_steps: int
    warm_up_steps: int
    repeats: int
    weights_seed: int = 0
    trained_steps: tuple[int, ...] = (50, 200)
    trained_batches: tuple[int, ...] = (1, 4)
    trained_rules: tuple[str, ...] = ("token-reflection", "block")
    trained_windows: tuple[str, ...] = ("adaptive",)
    precision: str = "float16"
    device: str | None = None
    trained_weights: str = TRAINED_WEIGHTS


FULL = Config(
    models=("sd-1.5", "dit-xl-2"),
    steps=(50, 200, 1000),
    batches=(1, 4),
    windows=(4,),
    cost_batches=(1, 2, 4, 5, 8, 10, 16, 20, 32, 64),
    overhead_steps=50,
    warm_up_steps=10,
    repeats=5,
)
SMOKE = Config(
    models=("tiny-sd", "tiny-dit"),
    steps=(7, 10),
    batches=(1, 2),
    windows=(4,),
    cost_batches=(1, 2, 5, 10),
    overhead_steps=10,
    warm_up_steps=5,
    repeats=3,
    trained_steps=(6,),
    trained_batches=(2,),
    precision="float32",
)
PRESETS: dict[str, Config] = {"full": FULL, "smoke": SMOKE}


# --- Cells ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostCurveCell:
    """Seconds per guided call of ``model`` at each number of latents of ``batches``."""

    model: str
    batches: tuple[int, ...]
    repeats: int
    precision: str
    device: str
    weights_seed: int
    kind: str = field(default="cost-curve", init=False)


@dataclass(frozen=True)
class OverheadCell:
    """The sampler's own time per round: plain and perfect-drafter runs with every network call timed."""

    model: str
    steps: int
    batch: int
    window: int
    warm_up_steps: int
    precision: str
    device: str
    weights_seed: int
    kind: str = field(default="overhead", init=False)


@dataclass(frozen=True)
class EfficiencyCell:
    """A timed pair, plain then perfect-drafter speculative sampling, and the two costs of the ideal speedup."""

    model: str
    steps: int
    batch: int
    window: int
    warm_up_steps: int
    repeats: int
    precision: str
    device: str
    weights_seed: int
    kind: str = field(default="efficiency", init=False)


@dataclass(frozen=True)
class TrainedCell:
    """A timed pair, plain then speculative Stable Diffusion, of the trained pipeline in ``weights``."""

    weights: str
    fingerprint: str  # of the folder's files: a new or changed model is a new cell
    steps: int
    batch: int
    rule: str
    window: str
    warm_up_steps: int
    precision: str
    device: str
    kind: str = field(default="speedup", init=False)


@dataclass(frozen=True)
class SkippedCell:
    """A part of the benchmark that cannot run here, and why."""

    part: str
    weights: str
    note: str
    kind: str = field(default="skipped", init=False)


#: The parameters of a cell of this experiment.
BenchCell = CostCurveCell | OverheadCell | EfficiencyCell | TrainedCell | SkippedCell


def default_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_folder(path: str) -> Path:
    """``path`` as a folder: absolute, or relative to the repository root."""
    folder = Path(path)
    return folder if folder.is_absolute() else REPOSITORY_ROOT / folder


def folder_fingerprint(path: str) -> str | None:
    """A hash of the names, sizes and modification times of the files of a saved diffusers pipeline in ``path``;
    None when ``path`` holds none (no ``model_index.json``)."""
    folder = weights_folder(path)
    if not (folder / "model_index.json").is_file():
        return None
    digest = hashlib.sha256()
    for file in sorted(item for item in folder.rglob("*") if item.is_file()):
        status = file.stat()
        digest.update(f"{file.relative_to(folder)}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def trained_cells(config: Config, device: str) -> list[TrainedCell | SkippedCell]:
    """Every (N, B, rule, window) of the trained pipeline, or one skipped cell when there is none."""
    fingerprint = folder_fingerprint(config.trained_weights)
    if fingerprint is None:
        note = (
            f"skipped: no trained Stable Diffusion-architecture model ({config.trained_weights} holds no saved "
            "diffusers pipeline). Acceptance, hence the real speedup, depends on trained weights; the trained digits "
            "DiT's wall-clock speedups are in results/gpu/bench_gpu.json (python -m simulations.bench_gpu). Save a "
            "trained StableDiffusionPipeline there, or pass --trained-weights FOLDER, to measure them."
        )
        return [SkippedCell("trained-speedup", config.trained_weights, note)]
    return [
        TrainedCell(
            weights=config.trained_weights,
            fingerprint=fingerprint,
            steps=steps,
            batch=batch,
            rule=rule,
            window=window,
            warm_up_steps=config.warm_up_steps,
            precision=config.precision,
            device=device,
        )
        for steps in config.trained_steps
        for batch in config.trained_batches
        for rule in config.trained_rules
        for window in config.trained_windows
    ]


def cells(config: Config) -> list[BenchCell]:
    """Cost curves, overhead cells, efficiency cells (N outer, ascending: N = 1000 last), then the trained part."""
    device, precision, seed = config.device or default_device(), config.precision, config.weights_seed
    curves = [
        CostCurveCell(model, config.cost_batches, config.repeats, precision, device, seed) for model in config.models
    ]
    overhead = [
        OverheadCell(model, config.overhead_steps, batch, window, config.warm_up_steps, precision, device, seed)
        for model in config.models
        for batch in config.batches
        for window in config.windows
    ]
    efficiency = [
        EfficiencyCell(model, steps, batch, window, config.warm_up_steps, config.repeats, precision, device, seed)
        for steps in config.steps
        for batch in config.batches
        for model in config.models
        for window in config.windows
    ]
    return [*curves, *overhead, *efficiency, *trained_cells(config, device)]


# --- Networks ------------------------------------------------------------------------------------------------------


def _seeded_on(device: torch.device, seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` with its parameters created on ``device`` from torch's generator seeded by ``seed`` (the caller's
    random state is restored afterwards), then moved to ``device`` whole (buffers made from NumPy arrays, such as
    DiT's position embedding, ignore the default device)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        return build().to(device)


def sd15_unet() -> Any:
    """Stable Diffusion 1.5's ``UNet2DConditionModel`` (its published config), random weights."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def sd15_text_encoder(vocabulary_size: int) -> Any:
    """A CLIP text encoder sized as Stable Diffusion 1.5's (12 layers, width 768, 77 positions) over the offline
    byte tokenizer's ``vocabulary_size`` tokens, random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocabulary_size,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def dit_xl2_transformer() -> Any:
    """A ``DiTTransformer2DModel`` sized as DiT-XL/2 (28 layers, 16 heads of 72, patch 2, 32x32x4 latents, 1000
    classes, learned sigma), random weights."""
    from diffusers.models.transformers.dit_transformer_2d import DiTTransformer2DModel

    return DiTTransformer2DModel(
        num_attention_heads=16,
        attention_head_dim=72,
        in_channels=4,
        out_channels=8,
        num_layers=28,
        sample_size=32,
        patch_size=2,
        num_embeds_ada_norm=1000,
    ).eval()


@dataclass(frozen=True)
class Network:
    """A random-weight network on its device, with what its guided model function needs.

    Attributes
    ----------
    name : str
    family : {"unet", "dit"}
    module : UNet2DConditionModel or DiTTransformer2DModel
    text_encoder, tokenizer : CLIP text model and tokenizer (the UNet family only)
    device : torch.device
    """

    name: str
    family: str
    module: Any
    text_encoder: Any
    tokenizer: Any
    device: torch.device

    @property
    def guidance_scale(self) -> float:
        return GUIDANCE[self.family]

    def model(self) -> GuidedUNet | GuidedDiT:
        """The guided model function, as the diffusers integration builds it."""
        if self.family == "unet":
            return GuidedUNet(self.module, self.guidance_scale)
        return GuidedDiT(self.module, self.guidance_scale)

    def latent_shape(self) -> tuple[int, int, int]:
        config = self.module.config
        return int(config.in_channels), int(config.sample_size), int(config.sample_size)

    def kernel(self, steps: int) -> SchedulerKernel:
        """DDPM on Stable Diffusion's schedule (UNet), DDIM with ``eta = 1`` on DiT's linear schedule (DiT)."""
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

        if self.family == "unet":
            return kernel_from_scheduler(DDPMScheduler(**SD_SCHEDULE, clip_sample=False), steps)
        return kernel_from_scheduler(DDIMScheduler(clip_sample=False), steps, eta=1.0)

    def conditioning(self, batch: int) -> dict[str, torch.Tensor]:
        """Per-sample conditioning of ``batch`` samples: the prompt's and the empty prompt's embeddings (B, 77, D)
        (UNet, as ``StableDiffusionPipeline.encode_prompt``), or the class labels ``0..B-1`` (DiT)."""
        if self.family == "dit":
            return {"class_labels": torch.arange(batch, device=self.device) % 1000}
        return {
            "encoder_hidden_states": self._embeddings([PROMPT] * batch),
            "negative_encoder_hidden_states": self._embeddings([""] * batch),
        }

    def _embeddings(self, prompts: list[str]) -> torch.Tensor:
        length = int(self.text_encoder.config.max_position_embeddings)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        with torch.no_grad():
            return self.text_encoder(tokens.input_ids.to(self.device))[0]


def _build_network(name: str, device: torch.device, seed: int) -> Network:
    if name == "sd-1.5":
        tokenizer = tiny_tokenizer()
        tokenizer.model_max_length = 77
        unet = _seeded_on(device, seed, sd15_unet)
        encoder = _seeded_on(device, seed + 1, lambda: sd15_text_encoder(len(tokenizer)))
        return Network(name, "unet", unet, encoder, tokenizer, device)
    if name == "tiny-sd":
        tokenizer = tiny_tokenizer()
        small_unet: Any = tiny_unet(seed)
        small_encoder: Any = tiny_text_encoder(len(tokenizer), seed + 1)
        return Network(name, "unet", small_unet.to(device), small_encoder.to(device), tokenizer, device)
    if name == "dit-xl-2":
        return Network(name, "dit", _seeded_on(device, seed, dit_xl2_transformer), None, None, device)
    if name == "tiny-dit":
        transformer: Any = tiny_dit_transformer(seed)
        return Network(name, "dit", transformer.to(device), None, None, device)
    raise ValueError(f"model must be one of {sorted(FAMILIES)}, got {name!r}")


@functools.cache
def network(name: str, precision: str, device: str, seed: int) -> Network:
    """The network ``name``, random weights from ``seed``, in ``precision`` on ``device``; built once per process."""
    built = _build_network(name, torch.device(device), seed)
    dtype = PRECISIONS[precision]
    # torch's own ``to``: diffusers' would warn about modules kept in float32, which these configs have none of
    torch.nn.Module.to(built.module, dtype)
    if built.text_encoder is not None:
        built.text_encoder.to(dtype)
    return built


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``"cpu"``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@functools.cache
def commit() -> str:
    """The commit the records were measured at (``simulations.provenance.git_commit``), read once per process."""
    return git_commit()


# --- Sampling --------------------------------------------------------------------------------------------------------


class _Case:
    """One (network, N, B) case: plain and speculative runs with the same noise (``seed``) and the same per-sample
    generators (sample i's from ``seed + 1 + i``)."""

    def __init__(self, net: Network, steps: int, batch: int, seed: int):
        self.net, self.batch, self.seed, self.device = net, batch, seed, net.device
        self.kernel = net.kernel(steps)
        self.model: Model = net.model()
        self.conditioning = net.conditioning(batch)
        noise = torch.randn(batch, *net.latent_shape(), generator=torch.Generator().manual_seed(seed))
        self.noise = (noise * self.kernel.prior_std).to(self.device)

    def generators(self) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(self.seed + 1 + i) for i in range(self.batch)]

    def plain(self, model: Model | None = None) -> tuple[ChainResult, float]:
        """Plain ancestral sampling and its synchronized wall seconds."""
        with torch.no_grad():
            return timed(
                lambda: sample_plain(
                    model or self.model,
                    self.kernel,
                    self.noise,
                    generator=self.generators(),
                    conditioning=self.conditioning,
                ),
                self.device,
            )

    def perfect(self, window: int, model: Model | None = None) -> tuple[SpeculativeResult, float, TimedModel]:
        """Speculative sampling with the target as its own (timed) draft, block rule, fixed ``window``."""
        draft = TimedModel(self.model, self.device)
        drafter = ModelDrafter(draft, 0.0, name="perfect")
        with torch.no_grad():
            result, seconds = timed(
                lambda: sample(
                    model or self.model,
                    self.kernel,
                    self.noise,
                    drafter=drafter,
                    window=FixedWindow(window),
                    rule="block",
                    generator=self.generators(),
                    conditioning=self.conditioning,
                ),
                self.device,
            )
        return result, seconds, draft


def _warm_up(net: Network, batch: int, window: int, steps: int, seed: int) -> None:
    """Untimed plain and perfect-drafter runs of ``steps`` steps: every shape of the timed runs, once."""
    if steps < 1:
        return
    case = _Case(net, steps, batch, seed)
    case.plain()
    case.perfect(window)


def call_seconds(net: Network, states: int, repeats: int, seed: int) -> float:
    """Median seconds of one guided call on ``states`` latents (2 x ``states`` network rows), random latents and
    timesteps from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(states, *net.latent_shape(), generator=generator).to(net.device)
    t = torch.randint(0, 1000, (states,), generator=generator).to(net.device)
    model, conditioning = net.model(), net.conditioning(states)
    with torch.no_grad():
        return median_seconds(lambda: model(x, t, **conditioning), net.device, repeats)


def _cell_network(cell: CostCurveCell | OverheadCell | EfficiencyCell) -> Network:
    return network(cell.model, cell.precision, cell.device, cell.weights_seed)


def _context(net: Network, precision: str) -> dict[str, Any]:
    return {
        "model": net.name,
        "device": device_name(net.device),
        "precision": precision,
        "guidance_scale": net.guidance_scale,
        "latent_shape": list(net.latent_shape()),
        "weights": "random",
        "depends_on_weights": False,
        "commit": commit(),
    }


def run_cost_curve(cell: CostCurveCell, seed: int) -> dict[str, Any]:
    """A cost-curve record: median seconds per guided call at each number of latents."""
    net = _cell_network(cell)
    seconds = [call_seconds(net, states, cell.repeats, derived_seed(seed, "cost")) for states in cell.batches]
    return {
        "kind": "cost-curve",
        **_context(net, cell.precision),
        "batches": list(cell.batches),
        "network_rows": [2 * states for states in cell.batches],
        "seconds": seconds,
    }


def _pair_fields(
    steps: int, batch: int, window: int, result: SpeculativeResult, wall: float, baseline: float
) -> dict[str, Any]:
    return {
        "steps": steps,
        "batch": batch,
        "rule": "block",
        "drafter": "perfect",
        "window": str(window),
        "target_calls": result.target_calls,
        "expected_target_calls": math.ceil(steps / (window + 1)),
        "baseline_target_calls": steps,
        "call_ratio": steps / result.target_calls,
        "wall_seconds": wall,
        "baseline_wall_seconds": baseline,
        "speedup": baseline / wall,
    }


def run_overhead(cell: OverheadCell, seed: int) -> dict[str, Any]:
    """An overhead record: the sampler's own time per round (outside every network call) and per plain step."""
    net = _cell_network(cell)
    _warm_up(net, cell.batch, cell.window, cell.warm_up_steps, derived_seed(seed, "warm-up"))
    case = _Case(net, cell.steps, cell.batch, seed)
    plain_target = TimedModel(case.model, case.device)
    _, baseline = case.plain(plain_target)
    target = TimedModel(case.model, case.device)
    result, wall, draft = case.perfect(cell.window, target)
    call = plain_target.seconds / plain_target.calls
    plain_step = (baseline - plain_target.seconds) / cell.steps
    per_round = (wall - draft.seconds - target.seconds) / result.rounds
    return {
        "kind": "overhead",
        **_context(net, cell.precision),
        **_pair_fields(cell.steps, cell.batch, cell.window, result, wall, baseline),
        "instrumented": True,  # every network call synchronized: wall times a little above the efficiency cells'
        "rounds": result.rounds,
        "call_seconds": call,
        "target_call_seconds": target.seconds / target.calls,
        "draft_seconds": draft.seconds,
        "draft_calls": draft.calls,
        "overhead_seconds": per_round,
        "overhead_milliseconds": 1e3 * per_round,
        "overhead_fraction": per_round / call,
        "plain_step_milliseconds": 1e3 * plain_step,
        "plain_step_fraction": plain_step / call,
        "overhead_target": OVERHEAD_TARGET,
    }


def run_efficiency(cell: EfficiencyCell, seed: int) -> dict[str, Any]:
    """An efficiency record: the costs c(B) and c(B (L + 1)), then the timed plain and perfect-drafter runs."""
    net = _cell_network(cell)
    _warm_up(net, cell.batch, cell.window, cell.warm_up_steps, derived_seed(seed, "warm-up"))
    inputs = derived_seed(seed, "cost")
    plain_call = call_seconds(net, cell.batch, cell.repeats, inputs)
    round_call = call_seconds(net, cell.batch * (cell.window + 1), cell.repeats, inputs)
    case = _Case(net, cell.steps, cell.batch, seed)
    _, baseline = case.plain()
    result, wall, draft = case.perfect(cell.window)
    cost_ratio = round_call / plain_call
    ideal = (cell.window + 1) / cost_ratio
    without_draft = baseline / (wall - draft.seconds)
    return {
        "kind": "efficiency",
        **_context(net, cell.precision),
        **_pair_fields(cell.steps, cell.batch, cell.window, result, wall, baseline),
        "draft_seconds": draft.seconds,
        "draft_calls": draft.calls,
        "speedup_without_draft": without_draft,
        "call_seconds": plain_call,
        "round_call_seconds": round_call,
        "cost_ratio": cost_ratio,
        "ideal_speedup": ideal,
        "efficiency": without_draft / ideal,
    }


@functools.cache
def trained_pipeline(weights: str, fingerprint: str, precision: str, device: str) -> Any:
    """The saved ``StableDiffusionPipeline`` in ``weights``, offline, on ``device`` in ``precision``; its scheduler
    replaced by a ``DDPMScheduler`` of the same config when the sampler does not support it. ``fingerprint`` keys
    the cache (a changed folder is loaded again)."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    pipe = StableDiffusionPipeline.from_pretrained(
        weights_folder(weights), local_files_only=True, dtype=PRECISIONS[precision]
    )
    if type(pipe.scheduler).__name__ not in SUPPORTED_SCHEDULERS:
        pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _trained_policy(window: str) -> WindowPolicy:
    return AdaptiveWindow() if window == "adaptive" else FixedWindow(int(window))


def run_trained(cell: TrainedCell, seed: int) -> dict[str, Any]:
    """A speedup record of the trained pipeline: plain, then speculative (Free Drafter) Stable Diffusion."""
    pipe = trained_pipeline(cell.weights, cell.fingerprint, cell.precision, cell.device)
    device = torch.device(cell.device)
    rule: Rule = "block" if cell.rule == "block" else "token-reflection"
    guidance = GUIDANCE["trained"]

    def generators(offset: int) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(seed + offset + i) for i in range(cell.batch)]

    def plain(steps: int, offset: int) -> Any:
        return plain_stable_diffusion(
            pipe, TRAINED_PROMPT, num_images_per_prompt=cell.batch, num_inference_steps=steps,
            guidance_scale=guidance, generator=generators(offset), output_type="latent",
        )  # fmt: skip

    def speculative(steps: int, offset: int) -> Any:
        return speculative_stable_diffusion(
            pipe, TRAINED_PROMPT, num_images_per_prompt=cell.batch, num_inference_steps=steps,
            guidance_scale=guidance, drafter=FreeDrafter(), window=_trained_policy(cell.window), rule=rule,
            generator=generators(offset), output_type="latent",
        )  # fmt: skip

    with torch.no_grad():
        if cell.warm_up_steps > 0:
            plain(cell.warm_up_steps, cell.batch)
            speculative(cell.warm_up_steps, cell.batch)
        _, baseline = timed(lambda: plain(cell.steps, 0), device)
        output, wall = timed(lambda: speculative(cell.steps, 0), device)
    statistics = output.statistics
    return {
        "kind": "speedup",
        "model": f"trained:{Path(cell.weights).name}",
        "device": device_name(device),
        "precision": cell.precision,
        "guidance_scale": guidance,
        "weights": cell.weights,
        "depends_on_weights": True,
        "commit": commit(),
        "scheduler": type(pipe.scheduler).__name__,
        "steps": cell.steps,
        "batch": cell.batch,
        "rule": "token" if rule == "token-reflection" else "block",
        "drafter": "free-nearest",
        "window": cell.window,
        "target_calls": statistics.target_calls,
        "baseline_target_calls": cell.steps,
        "call_ratio": cell.steps / statistics.target_calls,
        "wall_seconds": wall,
        "baseline_wall_seconds": baseline,
        "speedup": baseline / wall,
    }


def run_skipped(cell: SkippedCell, seed: int) -> dict[str, Any]:
    """The record of a skipped part: its note (nothing is measured)."""
    del seed
    return {"kind": "skipped", "part": cell.part, "weights": cell.weights, "note": cell.note, "commit": commit()}


def run_cell(cell: BenchCell, seed: int) -> dict[str, Any]:
    """The record of one cell."""
    if isinstance(cell, CostCurveCell):
        return run_cost_curve(cell, seed)
    if isinstance(cell, OverheadCell):
        return run_overhead(cell, seed)
    if isinstance(cell, EfficiencyCell):
        return run_efficiency(cell, seed)
    if isinstance(cell, TrainedCell):
        return run_trained(cell, seed)
    return run_skipped(cell, seed)


# --- Summary -------------------------------------------------------------------------------------------------------


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per record."""
    kind = record["kind"]
    if kind == "skipped":
        return f"{record['part']}: {record['note']}"
    if kind == "cost-curve":
        points = ", ".join(f"{b}: {1e3 * s:.3g} ms" for b, s in zip(record["batches"], record["seconds"], strict=True))
        return f"cost curve {record['model']} ({record['precision']}, latents: time per guided call): {points}"
    line = (
        f"{kind:<10} {record['model']:<16} N={record['steps']:<5} B={record['batch']:<2} {record['rule']:<5} "
        f"{record['drafter']:<12} L={record['window']:<8} calls {record['target_calls']:<4} "
        f"speedup {record['speedup']:.2f}x"
    )
    if kind == "efficiency":
        line += (
            f"; without the draft {record['speedup_without_draft']:.2f}x of ideal {record['ideal_speedup']:.2f}x"
            f" = efficiency {record['efficiency']:.0%}"
        )
    if kind == "overhead":
        line += (
            f"; sampler {record['overhead_milliseconds']:.2f} ms per round = {record['overhead_fraction']:.1%} of a "
            f"call ({1e3 * record['call_seconds']:.2f} ms), plain loop {record['plain_step_milliseconds']:.2f} ms "
            "per step"
        )
    return line


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """Whether every cell ran, the skipped parts' notes, whether every overhead met the target, a line per record."""
    overhead = [record["overhead_fraction"] for record in records if record["kind"] == "overhead"]
    below = all(fraction < OVERHEAD_TARGET for fraction in overhead) if overhead else None
    return Summary(
        fields={
            "complete": len(records) == len(cells(config)),
            "skipped": [record["note"] for record in records if record["kind"] == "skipped"],
            "overhead_target": OVERHEAD_TARGET,
            "overhead_below_target": below,
            "weight_independent_kinds": list(WEIGHT_INDEPENDENT),
            "weight_dependent_kinds": list(WEIGHT_DEPENDENT),
        },
        text="\n".join(describe(record) for record in records),
    )


EXPERIMENT = Experiment(
    module="simulations.bench_sd_gpu",
    description=__doc__ or "",
    presets=PRESETS,
    default_seed=DEFAULT_SEED,
    output="gpu/bench_sd_gpu.json",
    code=(
        *SAMPLER_CODE,
        "specdiff/integrations/diffusers.py",
        "specdiff/integrations/tiny.py",
        "specdiff/timing.py",
        "simulations/bench_sd_gpu.py",
    ),
    cells=cells,
    run_cell=run_cell,
    summarize=summarize,
    timed=True,
    describe=describe,
    options=("device", "precision", "trained_weights"),
)


def with_default_budget(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--max-seconds DEFAULT_MAX_SECONDS`` added unless it gives ``--max-seconds`` itself."""
    arguments = list(argv)
    given = any(argument == "--max-seconds" or argument.startswith("--max-seconds=") for argument in arguments)
    return arguments if given else [*arguments, "--max-seconds", str(DEFAULT_MAX_SECONDS)]


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, with_default_budget(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "DEFAULT_MAX_SECONDS",
    "EXPERIMENT",
    "OVERHEAD_TARGET",
    "PRESETS",
    "BenchCell",
    "Config",
    "CostCurveCell",
    "EfficiencyCell",
    "OverheadCell",
    "SkippedCell",
    "TrainedCell",
    "cells",
    "main",
    "run_cell",
    "summarize",
]
