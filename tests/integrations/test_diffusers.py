"""The diffusers integration: kernels against ``scheduler.step``, refusals, the Stable Diffusion and DiT pipelines
end to end (outputs, precision, save and load), and the exactness of speculative against plain Stable Diffusion
latents (MMD and projected KS at ALPHA, with the accept-always control rejected by the same test).

Kernel checks: for each step the mean and sigma of ``scheduler.step`` are recovered from two calls with seeded
generators (``prev = mean + sigma z`` with the replayed noises ``z``), on a copy of the scheduler whose state is
converted to float64 (the same values; diffusers otherwise rounds its coefficients in float32), and compared with the
kernel's transition to ``TOLERANCE``; one float32 run per family checks the realistic precision too.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Any

import pytest
import torch

# Imported from their modules, as specdiff.integrations.diffusers does: the top-level names of diffusers resolve to
# its dummy placeholder classes for a type checker.
from diffusers.pipelines.dit.pipeline_dit import DiTPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from diffusers.schedulers.scheduling_heun_discrete import HeunDiscreteScheduler
from diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete import KDPM2AncestralDiscreteScheduler
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler
from diffusers.schedulers.scheduling_pndm import PNDMScheduler
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from specdiff.chain import ModelChain, kernel_sigmas
from specdiff.diagnostics import calibrate_run
from specdiff.drafters import FreeDrafter
from specdiff.integrations.diffusers import (
    SUPPORTED_SCHEDULERS,
    DiffusionPipelineSamples,
    GuidedDiT,
    GuidedUNet,
    SchedulerKernel,
    dit_forward_first_blocks,
    kernel_from_scheduler,
    plain_dit_pipeline,
    plain_stable_diffusion,
    speculative_dit_pipeline,
    speculative_stable_diffusion,
)
from specdiff.integrations.tiny import tiny_dit_pipeline, tiny_stable_diffusion_pipeline
from specdiff.kernels import respace
from specdiff.policies import FixedWindow
from specdiff.sampler import ChainResult, SamplerRule, SpeculativeResult
from tests.integrations.latents import STEPS, arm_options, latents_p_value, shifted
from tests.statistics import ALPHA, z_threshold

TOLERANCE = 1e-5
SCHEDULE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
SPACINGS = ("leading", "trailing", "linspace")
LIMITS: tuple[dict[str, bool], ...] = ({}, {"clip_sample": True}, {"thresholding": True})


# ---------------------------------------------------------------------------------------------------------------
# Kernels against scheduler.step
# ---------------------------------------------------------------------------------------------------------------


def _float64_state(scheduler: Any, steps: int) -> Any:
    """A copy after ``set_timesteps(steps)`` whose tensors of coefficients are float64 (same values)."""
    prepared = copy.deepcopy(scheduler)
    prepared.set_timesteps(steps)
    for name in ("alphas_cumprod", "one", "final_alpha_cumprod", "sigmas"):
        value = getattr(prepared, name, None)
        if isinstance(value, torch.Tensor):
            setattr(prepared, name, value.double())
    return prepared


def _step_mean_and_sigma(
    prepared: Any, step_index: int, x: torch.Tensor, output: torch.Tensor, **options: Any
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """``scheduler.step``'s mean and sigma at step ``step_index`` (two seeded calls, noises replayed), and what
    ``scale_model_input`` feeds the network."""
    timestep = prepared.timesteps[step_index]
    samples, noises, scaled = [], [], x
    for seed in (1, 2):
        scheduler = prepared
        if isinstance(scheduler, EulerAncestralDiscreteScheduler):  # the only stateful step: it counts its steps
            scheduler = copy.deepcopy(prepared)
            scheduler.set_begin_index(step_index)
        scaled = scheduler.scale_model_input(x, timestep)
        generator = torch.Generator().manual_seed(seed)
        samples.append(scheduler.step(output, timestep, x, generator=generator, **options).prev_sample.double())
        replay = torch.Generator().manual_seed(seed)
        noises.append(randn_tensor(tuple(x.shape), generator=replay, dtype=output.dtype).double())
    difference = noises[0] - noises[1]
    sigma = float(((samples[0] - samples[1]) * difference).sum() / (difference * difference).sum())
    return samples[0] - sigma * noises[0], sigma, scaled


def _largest_errors(
    scheduler: Any, steps: int, kernel_options: dict[str, Any], step_options: dict[str, Any], float64: bool = True
) -> float:
    """The largest error of the kernel's mean, sigma and model input against the scheduler's, over every step."""
    kernel = kernel_from_scheduler(scheduler, steps, **kernel_options)
    reference = _prepared(scheduler, steps)
    assert torch.equal(kernel.timesteps, reference.timesteps)
    assert kernel.prior_std == float(reference.init_noise_sigma)
    prepared = _float64_state(scheduler, steps) if float64 else reference
    dtype = torch.float64 if float64 else torch.float32
    generator = torch.Generator().manual_seed(steps)
    largest = 0.0
    for step in range(steps):
        scale = 1.0 / float(kernel.input_scales[step])  # the state's scale: 1 (VP), sqrt(sigma^2 + 1) (Euler)
        x = (scale * torch.randn(2, 4, 4, 4, generator=generator)).to(dtype)
        output = torch.randn(2, 4, 4, 4, generator=generator).to(dtype)
        mean, sigma, scaled = _step_mean_and_sigma(prepared, step, x, output, **step_options)
        transition = kernel.transition(x, output, step)
        errors = [
            float((transition.mean.double() - mean).abs().max()) / max(1.0, scale),
            abs(float(transition.sigma) - sigma),
            float((kernel.model_input(x, step).double() - scaled.double()).abs().max()),
        ]
        largest = max(largest, *errors)
    return largest


def _prepared(scheduler: Any, steps: int) -> Any:
    prepared = copy.deepcopy(scheduler)
    prepared.set_timesteps(steps)
    return prepared


def _configurations(steps: int) -> list[tuple[str, dict[str, Any]]]:
    """Every prediction type without a limit, and each limit with some prediction type (at 1000 steps: epsilon)."""
    if steps >= 1000:
        return [("epsilon", {})]
    plain: list[tuple[str, dict[str, Any]]] = [(prediction, {}) for prediction in ("epsilon", "v_prediction", "sample")]
    return [*plain, ("epsilon", LIMITS[1]), ("v_prediction", LIMITS[2]), ("sample", LIMITS[2])]


def _offset(spacing: str, steps: int) -> int:
    # SD's leading spacing uses steps_offset 1, which with steps = T would run past the training schedule
    return 1 if spacing == "leading" and steps < 1000 else 0


STEP_COUNTS = [10, 50, pytest.param(1000, marks=pytest.mark.slow)]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_ddpm_kernel_matches_scheduler_step(steps: int, spacing: str) -> None:
    for prediction, limit in _configurations(steps):
        for variance in ("fixed_small", "fixed_large", "fixed_small_log"):
            scheduler = DDPMScheduler(
                **SCHEDULE, timestep_spacing=spacing, steps_offset=_offset(spacing, steps),
                prediction_type=prediction, variance_type=variance, **{"clip_sample": False, **limit},
            )  # fmt: skip
            # 1e-10: diffusers' last step with t > 0 has noise 1e-10 (a clamp); the kernel makes it deterministic
            assert _largest_errors(scheduler, steps, {}, {}) < TOLERANCE, (prediction, variance, limit)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_ddim_kernel_matches_scheduler_step(steps: int, spacing: str) -> None:
    for prediction, limit in _configurations(steps):
        for eta, alpha_to_one, clipped_output in ((0.5, True, False), (1.0, False, True)):
            scheduler = DDIMScheduler(
                **SCHEDULE, timestep_spacing=spacing, steps_offset=_offset(spacing, steps),
                prediction_type=prediction, set_alpha_to_one=alpha_to_one, **{"clip_sample": False, **limit},
            )  # fmt: skip
            kernel_options = {"eta": eta, "use_clipped_model_output": clipped_output}
            error = _largest_errors(scheduler, steps, kernel_options, kernel_options)
            assert error < TOLERANCE, (prediction, limit, eta, alpha_to_one)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_euler_ancestral_kernel_matches_scheduler_step(steps: int, spacing: str) -> None:
    for prediction in ("epsilon", "v_prediction"):
        scheduler = EulerAncestralDiscreteScheduler(
            **SCHEDULE, timestep_spacing=spacing, steps_offset=_offset(spacing, steps), prediction_type=prediction
        )
        # model_input is checked against scale_model_input inside
        assert _largest_errors(scheduler, steps, {}, {}) < TOLERANCE, prediction


@pytest.mark.parametrize(
    ("scheduler", "options"),
    [
        (DDPMScheduler(**SCHEDULE, clip_sample=False, variance_type="fixed_large"), {}),
        (DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False), {"eta": 0.7}),
        (EulerAncestralDiscreteScheduler(**SCHEDULE, prediction_type="v_prediction"), {}),
    ],
    ids=["ddpm", "ddim", "euler-ancestral"],
)
def test_kernels_match_scheduler_step_in_float32(scheduler: Any, options: dict[str, Any]) -> None:
    assert _largest_errors(scheduler, 50, options, options, float64=False) < TOLERANCE


def test_kernel_leaves_the_scheduler_untouched_and_feeds_the_chain() -> None:
    scheduler = DDPMScheduler(**SCHEDULE, clip_sample=False, timestep_spacing="trailing")
    before = scheduler.timesteps.clone()
    kernel = kernel_from_scheduler(scheduler, 20)
    assert scheduler.num_inference_steps is None and torch.equal(scheduler.timesteps, before)
    assert isinstance(kernel, SchedulerKernel) and not kernel.clip_sample and kernel.num_steps == 20
    # The chain's vectorized linear path (coefficients probed once) gives the kernel's own means, rows at any steps.
    chain = ModelChain(lambda x, t: x, kernel)
    generator = torch.Generator().manual_seed(0)
    states, predictions = torch.randn(6, 4, 4, 4, generator=generator), torch.randn(6, 4, 4, 4, generator=generator)
    steps = torch.tensor([0, 3, 3, 7, 18, 19])
    means = chain.means(states, predictions, steps)
    for row, step in enumerate(steps.tolist()):
        expected = kernel.transition(states[row : row + 1], predictions[row : row + 1], step).mean
        assert torch.allclose(means[row : row + 1], expected, atol=1e-6)
    sigmas = kernel_sigmas(kernel)
    assert sigmas[-1] == 0 and bool((sigmas[:-1] > 0).all())


def test_clipping_and_thresholding_take_the_non_linear_path() -> None:
    for limit in ({"clip_sample": True}, {"thresholding": True, "clip_sample": False}):
        kernel = kernel_from_scheduler(DDPMScheduler(**SCHEDULE, **limit), 10)
        assert kernel.clip_sample
        chain = ModelChain(lambda x, t: x, kernel)
        states = 3.0 * torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(1))
        steps = torch.tensor([0, 0, 5, 9])
        means = chain.means(states, states, steps)
        for row, step in enumerate(steps.tolist()):
            expected = kernel.transition(states[row : row + 1], states[row : row + 1], step).mean
            assert torch.allclose(means[row : row + 1], expected)


# ---------------------------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------------------------


class _CustomDDPMScheduler(DDPMScheduler):
    """A subclass: its step could differ, so it is refused."""


@pytest.mark.parametrize(
    "scheduler",
    [
        PNDMScheduler(),
        DPMSolverMultistepScheduler(),
        UniPCMultistepScheduler(),
        LMSDiscreteScheduler(),
        EulerDiscreteScheduler(),
        HeunDiscreteScheduler(),
        KDPM2AncestralDiscreteScheduler(),
        _CustomDDPMScheduler(),
        object(),
    ],
    ids=lambda scheduler: type(scheduler).__name__,
)
def test_unsupported_schedulers_are_refused_with_the_reason(scheduler: Any) -> None:
    with pytest.raises(ValueError, match="is not supported") as raised:
        kernel_from_scheduler(scheduler, 10)
    message = str(raised.value)
    assert all(name in message for name in SUPPORTED_SCHEDULERS) and "Gaussian" in message


@pytest.mark.parametrize(
    ("scheduler", "options", "match"),
    [
        (DDIMScheduler(), {"eta": 0.0}, "deterministic"),
        (DDPMScheduler(variance_type="learned_range"), {}, "learned_range"),
        (DDPMScheduler(variance_type="fixed_large_log"), {}, "fixed_large_log"),
        (EulerAncestralDiscreteScheduler(prediction_type="sample"), {}, "epsilon and v_prediction"),
        (DDPMScheduler(), {"eta": 0.5}, "DDIMScheduler only"),
        (DDPMScheduler(steps_offset=1), {}, "leave"),  # leading spacing with steps_offset 1 and N = T: t = 1000
    ],
)
def test_unsupported_options_are_refused(scheduler: Any, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kernel_from_scheduler(scheduler, 1000, **options)


def test_respace_is_diffusers_spacing_but_for_the_documented_rounding_of_halves() -> None:
    # specdiff.kernels rounds a half-integer T - n T / N up; diffusers rounds it to even, i.e. down when its integer
    # part is even. Equal everywhere else.
    differing_steps = 0
    for steps in (1, 3, 7, 10, 16, 50, 64, 100, 333, 1000):
        for spacing in ("trailing", "leading"):
            scheduler = DDPMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
            scheduler.set_timesteps(steps)
            ours, theirs = respace(1000, steps, spacing=spacing), scheduler.timesteps.to(torch.int64)
            positions = [Fraction(1000) - Fraction(1000 * n, steps) for n in range(steps)]
            halves_up = [p.denominator == 2 and math.floor(p) % 2 == 0 for p in positions]
            expected = theirs + torch.tensor(halves_up, dtype=torch.int64) * (spacing == "trailing")
            assert torch.equal(ours, expected)
            differing_steps += int(spacing == "trailing") * sum(halves_up)
    assert respace(1000, 16)[3] == 812 and differing_steps > 0  # N = 16: t_3 = 812 here, 811 in diffusers


def test_bad_step_counts_are_refused() -> None:
    for steps in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="num_inference_steps"):
            kernel_from_scheduler(DDPMScheduler(), steps)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Pipelines end to end
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionPipeline:
    return tiny_stable_diffusion_pipeline(seed=0)


@pytest.fixture(scope="module")
def dit() -> DiTPipeline:
    return tiny_dit_pipeline(seed=0)


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_stable_diffusion_runs_end_to_end(pipe: StableDiffusionPipeline) -> None:
    before = pipe.scheduler.timesteps.clone()
    outputs = {
        output_type: speculative_stable_diffusion(
            pipe, ["a red cat", "a blue dog"], num_inference_steps=8, generator=_seed(3), output_type=output_type
        )
        for output_type in ("pil", "np", "pt", "latent")
    }
    assert torch.equal(pipe.scheduler.timesteps, before)
    for result in outputs.values():
        assert isinstance(result, DiffusionPipelineSamples) and isinstance(result.statistics, SpeculativeResult)
        assert result.latents.shape == (2, 4, 8, 8) and result.latents.dtype == torch.float32
        assert torch.equal(result.latents, outputs["latent"].latents)  # same generator, same samples
    assert [image.size for image in outputs["pil"].images] == [(16, 16), (16, 16)]
    assert outputs["np"].images.shape == (2, 16, 16, 3) and outputs["pt"].images.shape == (2, 3, 16, 16)
    assert torch.equal(outputs["latent"].images, outputs["latent"].latents)
    assert 0.0 <= float(outputs["pt"].images.min()) and float(outputs["pt"].images.max()) <= 1.0
    plain = plain_stable_diffusion(pipe, "a cat", num_inference_steps=8, generator=_seed(3), output_type="np")
    assert isinstance(plain.statistics, ChainResult) and plain.statistics.target_calls == 8
    assert plain.images.shape == (1, 16, 16, 3)


def test_stable_diffusion_options(pipe: StableDiffusionPipeline) -> None:
    embeddings = pipe.encode_prompt("a cat", "cpu", 1, False)[0]
    result = speculative_stable_diffusion(
        pipe, prompt_embeds=embeddings.repeat(3, 1, 1), guidance_scale=1.0, num_inference_steps=6,
        generator=[_seed(seed) for seed in range(3)], output_type="latent", window=2, rule="token-reflection",
    )  # fmt: skip
    assert result.latents.shape == (3, 4, 8, 8) and bool(torch.isfinite(result.latents).all())
    doubled = plain_stable_diffusion(
        pipe, "a cat", negative_prompt="blurry", num_images_per_prompt=2, num_inference_steps=4, generator=_seed(0),
        output_type="latent",
    )  # fmt: skip
    assert doubled.latents.shape == (2, 4, 8, 8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        drawn = plain_stable_diffusion(pipe, "a cat", num_inference_steps=3, output_type="latent")  # generator=None
    assert drawn.latents.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="output_type"):
        speculative_stable_diffusion(pipe, "a cat", output_type="jpeg")  # type: ignore[arg-type]


@pytest.mark.parametrize("scheduler", ["ddim", "euler-ancestral"])
def test_stable_diffusion_with_other_schedulers(scheduler: str) -> None:
    pipeline = tiny_stable_diffusion_pipeline(seed=0, scheduler=scheduler)  # type: ignore[arg-type]
    options: dict[str, Any] = {"num_inference_steps": 6, "generator": _seed(1), "output_type": "np"}
    result = speculative_stable_diffusion(pipeline, "a cat", **options)
    assert result.images.shape == (1, 16, 16, 3) and bool(torch.isfinite(result.latents).all())


def test_stable_diffusion_refuses_its_default_scheduler(pipe: StableDiffusionPipeline) -> None:
    pipeline = StableDiffusionPipeline(**{**pipe.components, "scheduler": PNDMScheduler()})
    with pytest.raises(ValueError, match="PNDMScheduler is not supported"):
        speculative_stable_diffusion(pipeline, "a cat", num_inference_steps=4, generator=_seed(0))


def test_guided_unet_is_the_pipelines_classifier_free_guidance(pipe: StableDiffusionPipeline) -> None:
    positive, negative = pipe.encode_prompt(["a cat", "a dog"], "cpu", 1, True)
    x = torch.randn(2, 4, 8, 8, generator=_seed(0))
    t = torch.tensor([901, 11])
    with torch.no_grad():
        guided = GuidedUNet(pipe.unet, 7.5)(x, t, positive, negative)
        # the pipeline's loop: [uncond, cond] halves in one call, then uncond + scale (cond - uncond)
        both = pipe.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([negative, positive]))
        unconditional, conditional = both.sample.chunk(2)
    assert torch.allclose(guided, unconditional + 7.5 * (conditional - unconditional), atol=1e-5)


def test_dit_runs_end_to_end(dit: DiTPipeline) -> None:
    labels = dit.get_label_ids(["three", "one"])
    images = speculative_dit_pipeline(dit, labels, num_inference_steps=8, generator=_seed(2), output_type="np")
    assert images.images.shape == (2, 16, 16, 3) and isinstance(images.statistics, SpeculativeResult)
    pil = speculative_dit_pipeline(dit, labels, num_inference_steps=8, generator=_seed(2), output_type="pil")
    assert torch.equal(pil.latents, images.latents) and len(pil.images) == 2
    latents = plain_dit_pipeline(dit, [5], num_inference_steps=8, guidance_scale=1.0, generator=_seed(2))
    assert isinstance(latents.statistics, ChainResult) and latents.latents.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="deterministic"):
        speculative_dit_pipeline(dit, labels, num_inference_steps=8, eta=0.0, generator=_seed(2))
    with pytest.raises(ValueError, match="class_labels"):
        speculative_dit_pipeline(dit, [1000], num_inference_steps=8, generator=_seed(2))


def test_dit_early_exit_drafter(dit: DiTPipeline) -> None:
    transformer = dit.transformer
    x = torch.randn(3, 4, 8, 8, generator=_seed(0))
    t, labels = torch.tensor([999, 500, 3]), torch.tensor([0, 1, 1000])
    with torch.no_grad():
        full = transformer(x, timestep=t, class_labels=labels).sample
        assert torch.allclose(dit_forward_first_blocks(transformer, x, t, labels, blocks=2), full, atol=1e-6)
        model = GuidedDiT(transformer, 4.0)
        assert model.depth == 2 and model.forward_first_k(x, t, 1, labels[:3].clamp(max=5)).shape == (3, 4, 8, 8)
    result = speculative_dit_pipeline(
        dit, [0, 1, 2, 3], num_inference_steps=12, drafter=FreeDrafter(exit_blocks=1), window=FixedWindow(3),
        generator=_seed(4), output_type="latent",
    )  # fmt: skip
    statistics = result.statistics
    assert isinstance(statistics, SpeculativeResult) and statistics.draft_calls > 0
    assert statistics.draft_cost == pytest.approx(0.5 * statistics.draft_calls)  # K / depth per drafted step


def test_low_precision_models_give_valid_float32_latents() -> None:
    pipeline = tiny_stable_diffusion_pipeline(seed=0)
    reference = GuidedUNet(pipeline.unet, 3.0)
    embeddings = pipeline.encode_prompt(["a cat"], "cpu", 1, True)
    x, t = torch.randn(1, 4, 8, 8, generator=_seed(0)), torch.tensor([500])
    with torch.no_grad():
        full = reference(x, t, *embeddings)
        pipeline.unet.to(torch.bfloat16)
        low = GuidedUNet(pipeline.unet, 3.0)(x, t, *embeddings)
    assert low.dtype == torch.float32 and float((low - full).abs().max()) < 0.1 * float(full.abs().max())
    for result in (
        speculative_stable_diffusion(pipeline, "a cat", num_inference_steps=6, generator=_seed(1), output_type="np"),
        plain_stable_diffusion(pipeline, "a cat", num_inference_steps=6, generator=_seed(1), output_type="latent"),
    ):
        assert result.latents.dtype == torch.float32 and bool(torch.isfinite(result.latents).all())
    dit = tiny_dit_pipeline(seed=0)
    dit.transformer.to(torch.bfloat16)
    result = speculative_dit_pipeline(dit, [1, 2], num_inference_steps=6, generator=_seed(1), output_type="pt")
    assert result.latents.dtype == torch.float32 and bool(torch.isfinite(result.latents).all())
    assert result.images.shape == (2, 3, 16, 16)


def test_saved_pipeline_loads_offline_and_samples_the_same(pipe: StableDiffusionPipeline, tmp_path: Any) -> None:
    pipe.save_pretrained(tmp_path)
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path, local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, DDPMScheduler)
    options: dict[str, Any] = {"num_inference_steps": 5, "output_type": "latent"}
    first = speculative_stable_diffusion(pipe, "a cat", generator=_seed(7), **options)
    second = speculative_stable_diffusion(loaded, "a cat", generator=_seed(7), **options)
    assert torch.equal(first.latents, second.latents)


# ---------------------------------------------------------------------------------------------------------------
# Exactness: speculative against plain Stable Diffusion latents
# ---------------------------------------------------------------------------------------------------------------


class _ShiftedDrafter(FreeDrafter):
    """The reuse Free Drafter with its means shifted (``tests.integrations.latents.shifted``): a worse draft
    (exactness does not depend on it), whose bias accept-always passes on to the samples."""

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        return shifted(super().draft(states, steps, rows, slot), states, steps, self._model_chain().kernel)


def _latents(pipe: StableDiffusionPipeline, seed: int, rule: SamplerRule | None) -> tuple[torch.Tensor, Any]:
    options = arm_options(seed)
    if rule is None:
        result = plain_stable_diffusion(pipe, "a photo", **options)
    else:
        drafter, window = _ShiftedDrafter(), FixedWindow(3)
        result = speculative_stable_diffusion(pipe, "a photo", drafter=drafter, window=window, rule=rule, **options)
    return result.latents.flatten(1).double(), result.statistics


@pytest.fixture(scope="module")
def plain_latents(pipe: StableDiffusionPipeline) -> torch.Tensor:
    return _latents(pipe, seed=11, rule=None)[0]


@pytest.mark.statistical
@pytest.mark.slow
def test_speculative_stable_diffusion_latents_match_plain_latents(
    pipe: StableDiffusionPipeline, plain_latents: torch.Tensor
) -> None:
    latents, statistics = _latents(pipe, seed=12, rule="block")
    # two comparisons (law and calibration), Bonferroni
    assert latents_p_value(latents, plain_latents, seed=13) > ALPHA / 2
    assert abs(calibrate_run(statistics, "block").z) < z_threshold(ALPHA, comparisons=2)
    accepted = torch.cat(statistics.accepted)
    assert statistics.target_calls < STEPS and int(accepted.sum()) > 0 and int((accepted < 3).sum()) > 0


@pytest.mark.statistical
@pytest.mark.slow
def test_accept_always_control_is_rejected_on_stable_diffusion(
    pipe: StableDiffusionPipeline, plain_latents: torch.Tensor
) -> None:
    # A control's name: the sampler resolves it (specdiff.verify.resolve_rule), but SamplerRule does not list it.
    latents, _ = _latents(pipe, seed=14, rule="accept-always")  # type: ignore[arg-type]
    assert latents_p_value(latents, plain_latents, seed=15) < ALPHA
