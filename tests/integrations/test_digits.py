"""The Stable-Diffusion-architecture digits model: its pieces, the save / load round trip, and the shipped weights.

The shipped model's quality is checked with a fixed seed against a bound far from chance (10% for ten digits): a
retrained or corrupted model that has not learned the prompts fails it; its exactness and acceptance are measured by
``python -m simulations.sd_digits`` (tests/simulations/test_sd_digits.py runs its smoke preset).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import pytest
import torch

from simulations.dit_quality import accuracy, fit_classifier
from specdiff.integrations.diffusers import plain_stable_diffusion, speculative_stable_diffusion
from specdiff.integrations.digits import (
    DIGIT_NAMES,
    PROMPT_TOKENS,
    WEIGHTS_DIRECTORY,
    PixelSpaceDecoder,
    digit_prompt,
    load_digits_pipeline,
    untrained_digits_pipeline,
)
from specdiff.models.dit import digits_dataset

#: Classifier accuracy the shipped model's guided samples must reach (chance: 0.1).
ACCURACY_BOUND = 0.6


def test_prompts_fit_the_tokenizer_without_truncation() -> None:
    pipe = untrained_digits_pipeline()
    assert [digit_prompt(digit) for digit in (0, 7)] == ["a handwritten zero", "a handwritten seven"]
    for digit in range(10):
        tokens = pipe.tokenizer(digit_prompt(digit)).input_ids
        # one token per byte of each word (spaces split words), plus the start and end tokens
        assert len(tokens) == len(f"ahandwritten{DIGIT_NAMES[digit]}") + 2 <= PROMPT_TOKENS
    for bad in (-1, 10, 2.0, True):
        with pytest.raises(ValueError, match="digit must be"):
            digit_prompt(bad)  # type: ignore[arg-type]


def test_pixel_space_decoder_repeats_gray_into_rgb_and_refuses_bad_shapes() -> None:
    decoder = PixelSpaceDecoder()
    latents = torch.linspace(-1.0, 1.0, 2 * 64).reshape(2, 1, 8, 8)
    (images,) = decoder.decode(latents, return_dict=False)
    assert images.shape == (2, 3, 8, 8) and all(torch.equal(images[:, c], latents[:, 0]) for c in range(3))
    assert torch.equal(decoder.decode(latents).sample, images)
    with pytest.raises(ValueError, match="latents must have shape"):
        decoder.decode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        PixelSpaceDecoder(channels=2)
    with pytest.raises(ValueError, match="one level"):
        PixelSpaceDecoder(block_out_channels=(1, 2))


class _SamplingOptions(TypedDict):
    """Keyword options of ``plain_stable_diffusion`` shared by two calls."""

    num_inference_steps: int
    guidance_scale: float


def test_pipeline_decodes_its_latents_into_images_and_round_trips_through_save_and_load(tmp_path: Path) -> None:
    pipe = untrained_digits_pipeline(unet_seed=5)
    assert pipe.vae_scale_factor == 1 and pipe.tokenizer.model_max_length == PROMPT_TOKENS
    options: _SamplingOptions = {"num_inference_steps": 4, "guidance_scale": 2.0}
    result = plain_stable_diffusion(pipe, digit_prompt(3), generator=torch.Generator().manual_seed(0), **options)
    assert result.latents.shape == (1, 1, 8, 8) and result.images[0].size == (8, 8)
    pipe.save_pretrained(tmp_path)
    loaded = load_digits_pipeline(tmp_path)
    assert isinstance(loaded.vae, PixelSpaceDecoder)
    again = plain_stable_diffusion(loaded, digit_prompt(3), generator=torch.Generator().manual_seed(0), **options)
    assert torch.equal(again.latents, result.latents)
    with pytest.raises(FileNotFoundError, match="no saved pipeline"):
        load_digits_pipeline(tmp_path / "absent")


def test_shipped_model_is_a_trained_stable_diffusion_pipeline_that_follows_its_prompts() -> None:
    assert (WEIGHTS_DIRECTORY / "model_index.json").is_file()
    pipe = load_digits_pipeline()
    digits = torch.arange(10).repeat_interleave(6)
    prompts = [digit_prompt(int(digit)) for digit in digits]
    result = speculative_stable_diffusion(
        pipe, prompts, num_inference_steps=30, guidance_scale=2.0, generator=torch.Generator().manual_seed(4),
        output_type="latent",
    )  # fmt: skip
    classifier = fit_classifier(*digits_dataset("train"))
    assert accuracy(classifier, result.latents.clamp(-1.0, 1.0), digits) >= ACCURACY_BOUND
    # The negative control of this check: the untrained UNet's samples do not reach the bound.
    untrained = plain_stable_diffusion(
        untrained_digits_pipeline(), prompts, num_inference_steps=30, guidance_scale=2.0,
        generator=torch.Generator().manual_seed(4), output_type="latent",
    )  # fmt: skip
    assert accuracy(classifier, untrained.latents.clamp(-1.0, 1.0), digits) < ACCURACY_BOUND
