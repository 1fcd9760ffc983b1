"""The DeepCache-style drafter: the shallow forward against the full one (three UNet layouts, and a control where it
must differ), refusals, the hook's life cycle, what the drafter caches after a round, Stable Diffusion end to end,
the exactness of speculative against plain latents with this drafter (MMD and projected KS at ALPHA, with the
accept-always control rejected by the same test), and the cost measurement."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest
import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

from specdiff.chain import ModelChain
from specdiff.diagnostics import calibrate_run
from specdiff.drafters import RoundObservation
from specdiff.integrations.deepcache import (
    CachedFeatureDrafter,
    DeepFeatureTap,
    DraftCost,
    measure_draft_cost,
    unet_shallow_forward,
)
from specdiff.integrations.diffusers import (
    GuidedUNet,
    kernel_from_scheduler,
    plain_stable_diffusion,
    speculative_stable_diffusion,
)
from specdiff.integrations.tiny import tiny_scheduler, tiny_stable_diffusion_pipeline, tiny_unet
from specdiff.policies import FixedWindow
from specdiff.sampler import SpeculativeResult
from specdiff.verify import CONTROL_RULES
from tests.integrations.latents import STEPS, arm_options, latents_p_value, shifted
from tests.statistics import ALPHA, z_threshold

TOLERANCE = 1e-6


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unet(down: tuple[str, ...], up: tuple[str, ...], channels: tuple[int, ...], **options: Any) -> Any:
    """A small randomly initialized UNet2DConditionModel (seeded, the global generator left untouched)."""
    config: dict[str, Any] = {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": channels, "layers_per_block": 1,
        "down_block_types": down, "up_block_types": up, "cross_attention_dim": 32, "attention_head_dim": 8,
        "norm_num_groups": 32,
    }  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return UNet2DConditionModel(**config, **options).eval()


def _layout(name: str) -> tuple[Any, int]:
    """A UNet and its latent size: the tiny one (cross attention inside), one whose outer level has cross attention,
    and a three-level one at a size that is not a multiple of its upsampling factor (``upsample_size`` is passed)."""
    if name == "tiny":
        return tiny_unet(), 8
    if name == "outer-cross-attention":
        return _unet(("CrossAttnDownBlock2D", "DownBlock2D"), ("UpBlock2D", "CrossAttnUpBlock2D"), (32, 64)), 8
    down = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    return _unet(down, ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), (32, 32, 64)), 6


LAYOUTS = ["tiny", "outer-cross-attention", "three-levels"]


def _inputs(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = _seed(0)
    sample = torch.randn(3, 4, size, size, generator=generator)
    return sample, torch.tensor([999, 500, 3]), torch.randn(3, 16, 32, generator=generator)


def _full_forward(unet: Any, sample: torch.Tensor, timestep: torch.Tensor, embeddings: torch.Tensor) -> Any:
    """``(output, deep features)`` of a full forward, the features captured by a tap on ``up_blocks[-2]``."""
    with torch.no_grad(), DeepFeatureTap(unet) as tap:
        output = unet(sample, timestep, encoder_hidden_states=embeddings, return_dict=False)[0]
        return output, tap.take()


# ---------------------------------------------------------------------------------------------------------------
# The shallow forward
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shallow_forward_on_its_own_deep_features_is_the_full_forward(layout: str) -> None:
    unet, size = _layout(layout)
    sample, timestep, embeddings = _inputs(size)
    full, deep = _full_forward(unet, sample, timestep, embeddings)
    with torch.no_grad():
        shallow = unet_shallow_forward(unet, sample, timestep, embeddings, deep)
    assert shallow.shape == full.shape == (3, 4, size, size)
    assert float((shallow - full).abs().max()) < TOLERANCE
    assert not unet.up_blocks[-2]._forward_hooks  # the tap is gone


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shallow_forward_on_another_steps_deep_features_differs(layout: str) -> None:
    # The control of the test above: features from the same inputs at another timestep are not the full forward.
    unet, size = _layout(layout)
    sample, timestep, embeddings = _inputs(size)
    full, _ = _full_forward(unet, sample, timestep, embeddings)
    _, stale = _full_forward(unet, sample, torch.full_like(timestep, 250), embeddings)
    with torch.no_grad():
        shallow = unet_shallow_forward(unet, sample, timestep, embeddings, stale)
    assert float((shallow - full).abs().max()) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Refusals and the hook
# ---------------------------------------------------------------------------------------------------------------

TWO_LEVELS: dict[str, Any] = {
    "down": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "channels": (32, 64),
}


@pytest.mark.parametrize(
    ("layout", "options", "match"),
    [
        (TWO_LEVELS, {"num_class_embeds": 10}, "class embeddings"),
        (TWO_LEVELS, {"time_cond_proj_dim": 16}, "time_cond_proj_dim"),
        (TWO_LEVELS, {"encoder_hid_dim": 32}, "encoder_hid_dim"),
        (TWO_LEVELS, {"addition_embed_type": "text", "encoder_hid_dim": 32}, "addition_embed_type"),
        ({"down": ("DownBlock2D",), "up": ("UpBlock2D",), "channels": (32,)}, {}, "fewer than 2 levels"),
        (
            {"down": ("AttnDownBlock2D", "DownBlock2D"), "up": ("UpBlock2D", "AttnUpBlock2D"), "channels": (32, 64)},
            {},
            "block type AttnDownBlock2D; block type AttnUpBlock2D",
        ),
    ],
    ids=["class", "guidance-embedding", "encoder-projection", "addition", "one-level", "block-types"],
)
def test_unsupported_unets_are_refused_by_name(layout: dict[str, Any], options: dict[str, Any], match: str) -> None:
    unet = _unet(layout["down"], layout["up"], layout["channels"], **options)
    sample, timestep, embeddings = _inputs(8)
    with pytest.raises(ValueError, match=match):
        unet_shallow_forward(unet, sample, timestep, embeddings, sample)
    kernel = kernel_from_scheduler(tiny_stable_diffusion_pipeline().scheduler, 4)
    chain = ModelChain(GuidedUNet(unet, 1.0), kernel, {"encoder_hidden_states": embeddings})
    with pytest.raises(ValueError, match=match):
        CachedFeatureDrafter(0.3).reset(3, chain)
    assert not unet.up_blocks[-1]._forward_hooks and not unet.up_blocks[0]._forward_hooks


def test_the_drafter_refuses_other_models_and_bad_costs() -> None:
    kernel = kernel_from_scheduler(tiny_stable_diffusion_pipeline().scheduler, 4)
    with pytest.raises(ValueError, match="GuidedUNet"):
        CachedFeatureDrafter(0.3).reset(2, ModelChain(lambda x, t: x, kernel))
    with pytest.raises(ValueError, match="GuidedUNet"):
        CachedFeatureDrafter(0.3).reset(2, None)
    for cost in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="draft_cost_per_step"):
            CachedFeatureDrafter(cost)
    with pytest.raises(ValueError, match="measure_repeats"):
        CachedFeatureDrafter(measure_repeats=0)


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionPipeline:
    return tiny_stable_diffusion_pipeline(seed=0)


def _guided_chain(pipe: StableDiffusionPipeline, guidance_scale: float, scheduler: Any = None) -> ModelChain:
    """The chain ``speculative_stable_diffusion`` samples: three prompts, with negative ones when guided, and the
    kernel of ``scheduler`` (default the pipeline's)."""
    positive, negative = pipe.encode_prompt(["a cat", "a dog", "a cow"], "cpu", 1, guidance_scale > 1.0)
    conditioning = {"encoder_hidden_states": positive}
    if negative is not None:
        conditioning["negative_encoder_hidden_states"] = negative
    kernel = kernel_from_scheduler(pipe.scheduler if scheduler is None else scheduler, STEPS)
    return ModelChain(GuidedUNet(pipe.unet, guidance_scale), kernel, conditioning)


def test_the_hook_is_replaced_on_reset_and_removed_on_close(pipe: StableDiffusionPipeline) -> None:
    hooks = pipe.unet.up_blocks[-2]._forward_hooks
    chain = _guided_chain(pipe, 1.0)
    drafter = CachedFeatureDrafter()  # measures its cost in reset
    drafter.reset(3, chain)
    assert len(hooks) == 1 and drafter.measured_cost is not None
    assert drafter.draft_cost_per_step == drafter.measured_cost.ratio > 0
    drafter.reset(3, chain)
    assert len(hooks) == 1  # replaced, not duplicated
    drafter.close()
    assert len(hooks) == 0
    drafter.close()  # idempotent
    with CachedFeatureDrafter(0.3) as scoped:
        scoped.reset(3, chain)
        assert len(hooks) == 1
    assert len(hooks) == 0


@pytest.mark.parametrize(
    ("guidance_scale", "scheduler"),
    [
        (1.0, None),
        (3.0, None),
        (3.0, tiny_scheduler("euler-ancestral")),  # input scales other than 1
        (1.0, DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=True)),
    ],
    ids=["ddpm", "ddpm-guided", "euler-ancestral-guided", "ddpm-clipped"],
)
def test_a_round_caches_each_samples_committed_column(
    pipe: StableDiffusionPipeline, guidance_scale: float, scheduler: Any
) -> None:
    # After a round, a draft at a sample's last committed evaluated state (column ``accepted``) and step is the
    # target mean there: the cached features are that state's, in the right half and row, and the draft's model
    # input is the target's (the kernel's input scale, linear or probed).
    chain = _guided_chain(pipe, guidance_scale, scheduler)
    columns, batch = 3, 3
    roots = torch.tensor([0, 2, 5])
    steps = roots[:, None] + torch.arange(columns)
    states = torch.randn(batch, columns, 4, 8, 8, generator=_seed(1))
    rows = torch.arange(batch).repeat_interleave(columns)
    with CachedFeatureDrafter(0.3) as drafter, torch.no_grad():
        drafter.reset(batch, chain)
        assert not bool(drafter.ready(torch.arange(batch)).any())
        means, predictions = chain.evaluate(states.flatten(0, 1), steps.flatten(), rows)
        accepted, active = torch.tensor([2, 0, 1]), torch.tensor([True, True, False])
        observation = RoundObservation(
            roots, torch.full((batch,), columns - 1), accepted, states, predictions.reshape(batch, columns, 4, 8, 8),
            active, torch.ones(batch, dtype=torch.bool), STEPS,
        )  # fmt: skip
        drafter.observe_round(observation)
        assert drafter.ready(torch.arange(batch)).tolist() == [True, True, False]
        ready = torch.tensor([0, 1])
        committed = states[ready, accepted[ready]]
        drafted = drafter.draft(committed, steps[ready, accepted[ready]], ready, slot=0)
        expected = means.reshape(batch, columns, 4, 8, 8)[ready, accepted[ready]]
        assert float((drafted - expected).abs().max()) < 1e-5
        # and not the target mean at another column (the control: features of a different state and step)
        other = states[ready, 1 - accepted[ready].clamp(max=1)]
        moved = drafter.draft(other, steps[ready, 1 - accepted[ready].clamp(max=1)], ready, slot=0)
        target = means.reshape(batch, columns, 4, 8, 8)[ready, 1 - accepted[ready].clamp(max=1)]
        assert float((moved - target).abs().max()) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Stable Diffusion end to end
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("guidance_scale", [1.0, 7.5])
def test_stable_diffusion_with_cached_features(pipe: StableDiffusionPipeline, guidance_scale: float) -> None:
    with CachedFeatureDrafter(draft_cost_per_step=0.3) as drafter:
        result = speculative_stable_diffusion(
            pipe, ["a red cat", "a blue dog"], guidance_scale=guidance_scale, num_inference_steps=STEPS,
            drafter=drafter, window=FixedWindow(3), rule="block", generator=_seed(5), output_type="latent",
        )  # fmt: skip
    statistics = result.statistics
    assert isinstance(statistics, SpeculativeResult)
    assert result.latents.shape == (2, 4, 8, 8) and result.latents.dtype == torch.float32
    assert bool(torch.isfinite(result.latents).all())
    assert statistics.target_calls < STEPS and int(torch.cat(statistics.accepted).sum()) > 0
    assert statistics.draft_cost == pytest.approx(0.3 * statistics.draft_calls)
    assert not pipe.unet.up_blocks[-2]._forward_hooks


# ---------------------------------------------------------------------------------------------------------------
# Exactness: speculative against plain Stable Diffusion latents, with this drafter
# ---------------------------------------------------------------------------------------------------------------


class _ShiftedCachedFeatureDrafter(CachedFeatureDrafter):
    """This drafter with its means shifted (``tests.integrations.latents.shifted``): a worse draft, whose bias
    accept-always passes on to the samples."""

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        return shifted(super().draft(states, steps, rows, slot), states, steps, self._model_chain().kernel)


def _latents(pipe: StableDiffusionPipeline, seed: int, arm: Literal["plain", "exact", "control"]) -> Any:
    """``(latents (SAMPLES, 256) float64, statistics)`` of one arm: the plain loop, this drafter with the block rule,
    or the shifted drafter with accept-always."""
    options = arm_options(seed)
    if arm == "plain":
        result = plain_stable_diffusion(pipe, "a photo", **options)
    elif arm == "exact":
        with CachedFeatureDrafter(0.3) as drafter:
            result = speculative_stable_diffusion(
                pipe, "a photo", drafter=drafter, window=FixedWindow(3), rule="block", **options
            )
    else:
        with _ShiftedCachedFeatureDrafter(0.3) as shifted:
            rule = CONTROL_RULES["accept-always"]
            result = speculative_stable_diffusion(
                pipe, "a photo", drafter=shifted, window=FixedWindow(3), rule=rule, **options
            )
    return result.latents.flatten(1).double(), result.statistics


@pytest.fixture(scope="module")
def plain_latents(pipe: StableDiffusionPipeline) -> torch.Tensor:
    return _latents(pipe, seed=21, arm="plain")[0]


@pytest.mark.statistical
@pytest.mark.slow
def test_speculative_latents_with_cached_features_match_plain_latents(
    pipe: StableDiffusionPipeline, plain_latents: torch.Tensor
) -> None:
    latents, statistics = _latents(pipe, seed=22, arm="exact")
    assert isinstance(statistics, SpeculativeResult)
    # two comparisons (law and calibration), Bonferroni
    assert latents_p_value(latents, plain_latents, seed=23) > ALPHA / 2
    assert abs(calibrate_run(statistics, "block").z) < z_threshold(ALPHA, comparisons=2)
    accepted = torch.cat(statistics.accepted)
    assert statistics.target_calls < STEPS and int(accepted.sum()) > 0 and int((accepted < 3).sum()) > 0


@pytest.mark.statistical
@pytest.mark.slow
def test_accept_always_control_with_cached_features_is_rejected(
    pipe: StableDiffusionPipeline, plain_latents: torch.Tensor
) -> None:
    latents, _ = _latents(pipe, seed=24, arm="control")
    assert latents_p_value(latents, plain_latents, seed=25) < ALPHA


# ---------------------------------------------------------------------------------------------------------------
# The cost
# ---------------------------------------------------------------------------------------------------------------


def test_measure_draft_cost_reports_a_sane_ratio(pipe: StableDiffusionPipeline) -> None:
    sample, timestep, embeddings = _inputs(8)
    cost = measure_draft_cost(pipe.unet, sample, timestep, embeddings, repeats=3)
    assert isinstance(cost, DraftCost) and cost.full_seconds > 0 and cost.shallow_seconds > 0
    assert 0 < cost.ratio < 1.5 and cost.ratio == pytest.approx(cost.shallow_seconds / cost.full_seconds)
    assert not pipe.unet.up_blocks[-2]._forward_hooks
    with pytest.raises(ValueError, match="repeats"):
        measure_draft_cost(pipe.unet, sample, timestep, embeddings, repeats=0)
