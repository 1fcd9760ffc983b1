"""A small Stable-Diffusion-architecture model of the 8x8 digits, trained here, as a diffusers pipeline.

Acceptance measured on random weights says nothing about a real model; this one is trained (by
``python -m simulations.train_sd_digits``, about 15 minutes on two CPU cores) and ships with the package as a saved
``StableDiffusionPipeline`` (``specdiff/models/weights/sd_digits``, about 4 MB), so that the Stable Diffusion path
of specdiff can be measured on a model that has learned something. Its parts:

- **Prompts** ``"a handwritten zero"`` ... ``"a handwritten nine"`` (:func:`digit_prompt`), and ``""`` for the
  unconditional half of classifier-free guidance (10% of the training prompts are replaced by it).
- **Text encoder**: the offline byte-level ``CLIPTokenizer`` of :mod:`specdiff.integrations.tiny` (one token per
  byte, :data:`PROMPT_TOKENS` positions) and a two-layer ``CLIPTextModel`` of width 32 with *random, frozen*
  weights (seed 0): the prompts are told apart by their tokens; only the UNet learns.
- **Denoiser**: a ``UNet2DConditionModel`` with two levels (channels 32 and 64), cross-attention on the text
  embeddings at the inner level, eps-prediction.
- **Pixel space**: the "latents" are the images themselves, one channel in [-1, 1] (the digits of
  ``sklearn.datasets.load_digits``, :func:`specdiff.models.dit.digits_dataset`, train split). No autoencoder is
  trained: :class:`PixelSpaceDecoder` stands in for the pipeline's VAE (scale factor 1, scaling factor 1; decoding
  repeats the gray channel into RGB), so the pipeline's own decoding and postprocessing return 8x8 images.
- **Schedule**: DDPM with linear betas from 1e-4 to 0.02 over 1000 training steps (the digits DiT's), "trailing"
  timestep spacing, no clipping of the predicted sample; :func:`digits_scheduler`.

:func:`load_digits_pipeline` loads the shipped (or any saved) model offline; :func:`untrained_digits_pipeline` builds
the same architecture with random weights (what training starts from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

from specdiff.integrations.tiny import tiny_text_encoder, tiny_tokenizer

#: The words of the prompts, by digit.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Token positions of the tokenizer and the text encoder: the longest prompt, 19 bytes, plus start and end.
PROMPT_TOKENS = 24
#: Where the trained pipeline ships (``save_pretrained`` layout).
WEIGHTS_DIRECTORY = Path(__file__).resolve().parents[1] / "models" / "weights" / "sd_digits"
#: Seeds of the random initial weights of the UNet and of the (frozen) text encoder.
UNET_SEED = 0
TEXT_ENCODER_SEED = 1


def digit_prompt(digit: int) -> str:
    """The prompt of a digit: ``"a handwritten seven"`` for 7.

    Parameters
    ----------
    digit : int
        In 0..9.

    Returns
    -------
    str
    """
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an int in 0..9, got {digit!r}")
    return f"a handwritten {DIGIT_NAMES[digit]}"


def digits_unet(seed: int = UNET_SEED) -> UNet2DConditionModel:
    """The denoiser with random weights: two levels (32, 64 channels), cross-attention width 32, 8x8x1 inputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=16,
        )


def digits_scheduler() -> DDPMScheduler:
    """DDPM, linear betas 1e-4 to 0.02 over 1000 steps, eps-prediction, trailing spacing, no clipping."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=False,
        timestep_spacing="trailing",
        steps_offset=1,
    )


class PixelSpaceDecoder(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """The "VAE" of a pixel-space pipeline: the latents are the images, in [-1, 1].

    ``config.block_out_channels`` has one entry, so ``StableDiffusionPipeline.vae_scale_factor`` is 1, and
    ``config.scaling_factor`` is 1. :meth:`decode` repeats a one-channel image into three channels (RGB) for the
    pipeline's postprocessing. It holds one buffer (``gain`` = 1) so that ``save_pretrained`` writes a weights file
    and ``from_pretrained`` reloads it.

    Parameters
    ----------
    channels : int
        Channels of the images (1: gray, repeated into RGB; 3: RGB as is).
    scaling_factor : float
        Kept at 1 (the latents are not scaled).
    block_out_channels : tuple of int
        One entry (scale factor 1).
    """

    @register_to_config
    def __init__(self, channels: int = 1, scaling_factor: float = 1.0, block_out_channels: tuple[int, ...] = (1,)):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if len(block_out_channels) != 1:
            raise ValueError("a pixel-space decoder has one level: block_out_channels must have one entry")
        self.register_buffer("gain", torch.ones(()))

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> Any:
        """The RGB images (B, 3, H, W) in [-1, 1] of latents (B, channels, H, W): a ``DecoderOutput`` or a tuple."""
        channels = int(self.config["channels"])
        if latents.dim() != 4 or latents.shape[1] != channels:
            raise ValueError(f"latents must have shape (B, {channels}, H, W), got {tuple(latents.shape)}")
        images = latents * self.gain.to(latents.dtype)
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        return DecoderOutput(sample=images) if return_dict else (images,)


def untrained_digits_pipeline(unet_seed: int = UNET_SEED) -> StableDiffusionPipeline:
    """The pipeline with a randomly initialized UNet (what training starts from) and the frozen text encoder.

    Returns
    -------
    StableDiffusionPipeline
        On the CPU in float32, no safety checker, progress bars off.
    """
    tokenizer = tiny_tokenizer(PROMPT_TOKENS)
    components: dict[str, Any] = {
        "vae": PixelSpaceDecoder(),
        "text_encoder": tiny_text_encoder(len(tokenizer), TEXT_ENCODER_SEED, PROMPT_TOKENS),
        "tokenizer": tokenizer,
        "unet": digits_unet(unet_seed),
        "scheduler": digits_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
    }
    pipeline = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def load_digits_pipeline(
    directory: str | Path | None = None, *, dtype: torch.dtype = torch.float32
) -> StableDiffusionPipeline:
    """The trained digits pipeline, loaded offline (``local_files_only``) with ``from_pretrained``.

    Parameters
    ----------
    directory : str or Path, optional
        A folder written by ``save_pretrained`` (default: the shipped model, :data:`WEIGHTS_DIRECTORY`).
    dtype : torch.dtype
        Of the UNet and the text encoder (the sampler keeps its states in float32 whatever it is).

    Returns
    -------
    StableDiffusionPipeline
        On the CPU, progress bars off.
    """
    folder = WEIGHTS_DIRECTORY if directory is None else Path(directory)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no saved pipeline (no model_index.json); "
            "train one with python -m simulations.train_sd_digits"
        )
    pipeline = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
