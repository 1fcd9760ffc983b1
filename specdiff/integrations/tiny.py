"""Tiny, randomly initialized diffusers pipelines, built offline: for tests and examples, never for images.

``tiny_stable_diffusion_pipeline`` is a ``StableDiffusionPipeline`` with a two-level ``UNet2DConditionModel``
(channels (32, 64), cross-attention width 32, 8x8 latents with 4 channels), a two-level ``AutoencoderKL`` (16x16 RGB
images), a two-layer ``CLIPTextModel`` of width 32 and a ``CLIPTokenizer`` whose byte-level BPE vocabulary holds the
256 byte symbols (each alone and at the end of a word) and no merges, so every prompt tokenizes, one token per byte.
``tiny_dit_pipeline`` is a ``DiTPipeline`` with a two-layer ``DiTTransformer2DModel`` (learned sigma: 2 x 4 output
channels) on 8x8 latents, the same autoencoder and a ``DDIMScheduler`` (DiT's published scheduler).

Weights are a pure function of ``seed``: each model is initialized inside ``torch.random.fork_rng`` after
``torch.manual_seed``, so the caller's global random state is left untouched. Nothing is downloaded: the tokenizer's
``vocab.json`` and ``merges.txt`` are written to a temporary directory and loaded from there.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.transformers.dit_transformer_2d import DiTTransformer2DModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.dit.pipeline_dit import DiTPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SchedulerName = Literal["ddpm", "ddim", "euler-ancestral"]
SCHEDULER_NAMES: tuple[str, ...] = ("ddpm", "ddim", "euler-ancestral")

#: Tokens of the tiny tokenizer (and so of the text encoder's position table).
MAX_PROMPT_TOKENS = 16
#: The 1000 ImageNet classes plus the null class of classifier-free guidance, as ``DiTPipeline`` expects.
DIT_CLASSES = 1000
#: Human-readable names of the tiny DiT's first classes (``DiTPipeline.get_label_ids`` maps them to ids).
DIT_LABELS = {index: name for index, name in enumerate(["zero", "one", "two", "three", "four", "five"])}

_Built = TypeVar("_Built")


def _seeded(seed: int, build: Callable[[], _Built]) -> _Built:
    """``build()`` with torch's global generator seeded by ``seed``, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of the bytes used by byte-level BPE (GPT-2's ``bytes_to_unicode``), by byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[byte] for byte in range(256)]


def tiny_tokenizer(max_tokens: int = MAX_PROMPT_TOKENS) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: 514 tokens (2 special, 256 bytes, 256 word-final bytes).

    Parameters
    ----------
    max_tokens : int
        ``model_max_length``: prompts are padded or truncated to this many tokens (one per byte, plus the start and
        end tokens).

    Returns
    -------
    CLIPTokenizer
        ``<|startoftext|>`` is id 0 and ``<|endoftext|>`` (also the padding) id 1.
    """
    symbols = _byte_symbols()
    tokens = ["<|startoftext|>", "<|endoftext|>", *symbols, *(symbol + "</w>" for symbol in symbols)]
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer.from_pretrained(directory, model_max_length=max_tokens)


def tiny_text_encoder(vocabulary_size: int, seed: int = 0, max_tokens: int = MAX_PROMPT_TOKENS) -> CLIPTextModel:
    """A two-layer CLIP text encoder of width 32 over ``vocabulary_size`` tokens and ``max_tokens`` positions."""
    config = CLIPTextConfig(
        vocab_size=vocabulary_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_tokens,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return _seeded(seed, lambda: CLIPTextModel(config).eval())


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    """A two-level ``UNet2DConditionModel``: channels (32, 64), cross-attention width 32, 8x8 latents of 4 channels."""
    return _seeded(
        seed,
        lambda: UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        ).eval(),
    )


def tiny_autoencoder(seed: int = 0) -> AutoencoderKL:
    """A two-level ``AutoencoderKL``: 16x16 RGB images to 8x8 latents of 4 channels (``vae_scale_factor`` 2)."""
    return _seeded(
        seed,
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=16,
        ).eval(),
    )


def tiny_scheduler(name: SchedulerName = "ddpm") -> SchedulerMixin:
    """Stable Diffusion's training schedule (``scaled_linear``, 1000 steps) in a supported diffusers scheduler.

    Parameters
    ----------
    name : {"ddpm", "ddim", "euler-ancestral"}

    Returns
    -------
    DDPMScheduler, DDIMScheduler or EulerAncestralDiscreteScheduler
        No clipping of the predicted sample (Stable Diffusion's latents are not bounded).
    """
    schedule = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}
    if name == "ddpm":
        return DDPMScheduler(**schedule, clip_sample=False)
    if name == "ddim":
        return DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False)
    if name == "euler-ancestral":
        return EulerAncestralDiscreteScheduler(**schedule)
    raise ValueError(f"scheduler must be one of {SCHEDULER_NAMES}, got {name!r}")


def tiny_stable_diffusion_pipeline(seed: int = 0, scheduler: SchedulerName = "ddpm") -> StableDiffusionPipeline:
    """A tiny ``StableDiffusionPipeline`` (no safety checker), deterministic in ``seed``; see the module notes.

    Parameters
    ----------
    seed : int
        Seeds the weights of the UNet, the autoencoder and the text encoder (each its own offset of it).
    scheduler : {"ddpm", "ddim", "euler-ancestral"}
        The pipeline's scheduler (:func:`tiny_scheduler`).

    Returns
    -------
    StableDiffusionPipeline
        On the CPU in float32, progress bars off; 8x8x4 latents, 16x16 images.
    """
    tokenizer = tiny_tokenizer()
    components: dict[str, Any] = {
        "vae": tiny_autoencoder(seed + 1),
        "text_encoder": tiny_text_encoder(len(tokenizer), seed + 2),
        "tokenizer": tokenizer,
        "unet": tiny_unet(seed),
        "scheduler": tiny_scheduler(scheduler),
        "safety_checker": None,
        "feature_extractor": None,
    }
    pipeline = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def tiny_dit_transformer(seed: int = 0) -> DiTTransformer2DModel:
    """A two-layer ``DiTTransformer2DModel`` (width 32, patch 2) on 8x8x4 latents with learned sigma (8 outputs)."""
    return _seeded(
        seed,
        lambda: DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            sample_size=8,
            patch_size=2,
            num_embeds_ada_norm=DIT_CLASSES,
        ).eval(),
    )


def tiny_dit_pipeline(seed: int = 0) -> DiTPipeline:
    """A tiny ``DiTPipeline`` with a ``DDIMScheduler`` (linear betas, as the published DiT), deterministic in ``seed``.

    Returns
    -------
    DiTPipeline
        On the CPU in float32, progress bars off; 8x8x4 latents, 16x16 images, labels :data:`DIT_LABELS`.
    """
    pipeline = DiTPipeline(
        transformer=tiny_dit_transformer(seed),
        vae=tiny_autoencoder(seed + 1),
        scheduler=DDIMScheduler(clip_sample=False),
        id2label=dict(DIT_LABELS),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
