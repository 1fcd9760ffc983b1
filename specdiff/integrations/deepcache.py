"""A DeepCache-style drafter for Stable Diffusion: the UNet's shallow branch on cached deep features.

DeepCache (Ma, Fang and Wang, "DeepCache: Accelerating Diffusion Models for Free", CVPR 2024) observes that the
high-level features of a UNet's deep branch change slowly between adjacent denoising steps, while the shallow
branch (the outermost level: the input convolution, the first down block, the last up block and the output layers)
carries the fine detail. It caches the deep branch's output at one step and, at the next steps, recomputes only the
shallow branch, fed with the cached deep features and fresh skip connections.

Here that partial forward is a *draft*. :func:`unet_shallow_forward` is ``UNet2DConditionModel.forward`` through
its outermost level only: the time embedding, ``conv_in`` and ``down_blocks[0]`` (whose outputs are the skip
connections of the last up block), then ``up_blocks[-1]`` fed with the cached output of ``up_blocks[-2]`` (the deep
features), and ``conv_norm_out``, ``conv_act``, ``conv_out``. :class:`CachedFeatureDrafter` drafts every step of a
speculative window with it:

- *What is cached*: per sample, the output of ``up_blocks[-2]`` (shape (k, C, h, w): k = 2 with classifier-free
  guidance, the unconditional half first; k = 1 without) at the last committed evaluated state of the latest
  verification pass, captured by a forward hook on ``up_blocks[-2]`` during the sampler's batched target call
  (drafts never run that block, so the hook sees target calls only). The drafter takes it after each round
  (:meth:`CachedFeatureDrafter.observe_round`) with whole-batch tensor operations, no host reads.
- *Its cost*: one drafted step is one shallow forward, a fraction of a full forward that depends on the network and
  the batch (the outermost level holds the most pixels but the fewest channels); :func:`measure_draft_cost`
  measures it as a wall-time ratio, which the adaptive window policy weighs against the acceptance.
- *Exactness*: the draft is a function of the past (the committed trajectory's target features and the drafted
  states), so verification makes every rule exact whatever the draft's quality; the cached features only decide how
  often drafts are accepted, and so the speed.

Only the plain UNet is supported (Stable Diffusion 1.x and 2.x): class embeddings, addition embeddings, a guidance
embedding (``time_cond_proj_dim``), an encoder projection, fewer than two levels and block types other than
``DownBlock2D``, ``CrossAttnDownBlock2D``, ``UpBlock2D`` and ``CrossAttnUpBlock2D`` are refused by name
(:func:`check_shallow_forward_support`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch

from specdiff.chain import ModelChain, _per_row, linear_coefficients
from specdiff.drafters import Drafter, RoundObservation, _check_cost
from specdiff.integrations.diffusers import GuidedUNet
from specdiff.kernels import Kernel
from specdiff.verify import take_column

__all__ = [
    "SUPPORTED_DOWN_BLOCKS",
    "SUPPORTED_UP_BLOCKS",
    "CachedFeatureDrafter",
    "DeepFeatureTap",
    "DraftCost",
    "check_shallow_forward_support",
    "measure_draft_cost",
    "unet_shallow_forward",
]

#: Down and up block types whose skip connections :func:`unet_shallow_forward` accounts for.
SUPPORTED_DOWN_BLOCKS: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D")
SUPPORTED_UP_BLOCKS: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D")
#: Conditioning names of :class:`specdiff.integrations.diffusers.GuidedUNet`.
PROMPT = "encoder_hidden_states"
NEGATIVE_PROMPT = "negative_encoder_hidden_states"


# ---------------------------------------------------------------------------------------------------------------
# The shallow forward
# ---------------------------------------------------------------------------------------------------------------


def _skip_count(block: Any) -> int:
    """Skip connections a supported down block yields: one per resnet and one per downsampler."""
    downsamplers = getattr(block, "downsamplers", None)
    return len(block.resnets) + (0 if downsamplers is None else len(downsamplers))


def _unsupported_features(unet: Any) -> list[str]:
    """The features of ``unet`` that :func:`unet_shallow_forward` does not implement, by name (empty: supported)."""
    config = unet.config
    found = []
    if getattr(unet, "class_embedding", None) is not None:
        found.append("class embeddings (class_embed_type / num_class_embeds)")
    if config.get("addition_embed_type") is not None:
        found.append(f"addition embeddings (addition_embed_type={config.addition_embed_type!r})")
    if config.get("time_cond_proj_dim") is not None:
        found.append("a guidance embedding (time_cond_proj_dim)")
    if getattr(unet, "encoder_hid_proj", None) is not None:
        found.append("an encoder projection (encoder_hid_dim)")
    if len(unet.up_blocks) < 2:
        found.append(f"fewer than 2 levels ({len(unet.up_blocks)} up block)")
    blocks = [(block, SUPPORTED_DOWN_BLOCKS) for block in unet.down_blocks]
    blocks += [(block, SUPPORTED_UP_BLOCKS) for block in unet.up_blocks]
    found += [
        f"block type {type(block).__name__}" for block, supported in blocks if type(block).__name__ not in supported
    ]
    if not found:
        skips = 1 + sum(_skip_count(block) for block in unet.down_blocks)
        consumed = sum(len(block.resnets) for block in unet.up_blocks)
        outer = 1 + _skip_count(unet.down_blocks[0])
        if skips != consumed or len(unet.up_blocks[-1].resnets) > outer:
            found.append(f"a skip-connection layout the last up block cannot take from the first level ({skips})")
    return found


def check_shallow_forward_support(unet: Any) -> None:
    """Raise ValueError naming every feature of ``unet`` that :func:`unet_shallow_forward` does not implement.

    Parameters
    ----------
    unet : UNet2DConditionModel
    """
    if not hasattr(unet, "up_blocks") or not hasattr(unet, "down_blocks") or not hasattr(unet, "config"):
        raise ValueError(f"the shallow forward needs a diffusers UNet2DConditionModel, got {type(unet).__name__}")
    found = _unsupported_features(unet)
    if found:
        raise ValueError("the UNet's shallow forward does not support " + "; ".join(found))


def _time_embedding(unet: Any, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """The block embedding ``emb`` (M, D) of ``UNet2DConditionModel.forward`` without class or addition embeddings."""
    embedding = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    return embedding if unet.time_embed_act is None else unet.time_embed_act(embedding)


def _has_cross_attention(block: Any) -> bool:
    return bool(getattr(block, "has_cross_attention", False))


def _outer_skips(
    unet: Any, hidden: torch.Tensor, embedding: torch.Tensor, encoder_hidden_states: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The skip connections the last up block consumes: ``conv_in``'s output and ``down_blocks[0]``'s first ones."""
    block = unet.down_blocks[0]
    if _has_cross_attention(block):
        _, residuals = block(hidden_states=hidden, temb=embedding, encoder_hidden_states=encoder_hidden_states)
    else:
        _, residuals = block(hidden_states=hidden, temb=embedding)
    return ((hidden, *residuals))[: len(unet.up_blocks[-1].resnets)]


def _upsample_size(unet: Any, sample: torch.Tensor, skips: tuple[torch.Tensor, ...]) -> torch.Size | None:
    """What ``forward`` passes the last up block as ``upsample_size``: None unless the sample's size is not a
    multiple of the overall upsampling factor, then the spatial size of the last skip connection it consumes."""
    factor = 2**unet.num_upsamplers
    if all(size % factor == 0 for size in sample.shape[-2:]):
        return None
    return skips[-1].shape[2:]


def _outer_up(
    unet: Any,
    deep_features: torch.Tensor,
    embedding: torch.Tensor,
    skips: tuple[torch.Tensor, ...],
    encoder_hidden_states: torch.Tensor,
    upsample_size: torch.Size | None,
) -> torch.Tensor:
    """``up_blocks[-1]`` on the deep features (M, C, h, w) and the skip connections, as ``forward`` calls it."""
    block = unet.up_blocks[-1]
    if _has_cross_attention(block):
        return block(
            hidden_states=deep_features,
            temb=embedding,
            res_hidden_states_tuple=skips,
            encoder_hidden_states=encoder_hidden_states,
            upsample_size=upsample_size,
        )
    return block(
        hidden_states=deep_features, temb=embedding, res_hidden_states_tuple=skips, upsample_size=upsample_size
    )


def _output_layers(unet: Any, hidden: torch.Tensor) -> torch.Tensor:
    """``conv_norm_out``, ``conv_act`` (when the UNet has a norm) and ``conv_out``."""
    if unet.conv_norm_out:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return unet.conv_out(hidden)


def unet_shallow_forward(
    unet: Any,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    deep_features: torch.Tensor,
) -> torch.Tensor:
    """``UNet2DConditionModel.forward`` through its outermost level, on cached deep features.

    The time embedding, ``conv_in``, ``down_blocks[0]``, then ``up_blocks[-1]`` fed with ``deep_features`` and the
    fresh skip connections of ``conv_in`` and ``down_blocks[0]``, then the output layers. With the deep features of
    a full forward at the same inputs it is that forward (up to floating-point reassociation).

    Parameters
    ----------
    unet : UNet2DConditionModel
        A plain UNet (:func:`check_shallow_forward_support`).
    sample : Tensor, shape (M, C_in, H, W)
        In the UNet's dtype, as ``forward`` takes it.
    timestep : Tensor, shape (M,) or ()
    encoder_hidden_states : Tensor, shape (M, S, D)
    deep_features : Tensor, shape (M, C, H', W')
        The output of ``up_blocks[-2]`` of an earlier full forward (the input of ``up_blocks[-1]``).

    Returns
    -------
    Tensor, shape (M, C_out, H, W)
    """
    check_shallow_forward_support(unet)
    if deep_features.shape[0] != sample.shape[0]:
        raise ValueError(f"deep_features has {deep_features.shape[0]} rows for a sample of {sample.shape[0]}")
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    embedding = _time_embedding(unet, sample, timestep)
    skips = _outer_skips(unet, unet.conv_in(sample), embedding, encoder_hidden_states)
    upsample_size = _upsample_size(unet, sample, skips)
    hidden = _outer_up(unet, deep_features, embedding, skips, encoder_hidden_states, upsample_size)
    return _output_layers(unet, hidden)


class DeepFeatureTap:
    """A forward hook on ``unet.up_blocks[-2]`` keeping the output (the deep features) of the latest full forward.

    Parameters
    ----------
    unet : UNet2DConditionModel

    Attributes
    ----------
    features : Tensor or None
        The output (M, C, h, w) of ``up_blocks[-2]`` in the latest full forward since the last :meth:`take` (None
        before any). A reference only: no copy, no host read.

    Notes
    -----
    The hook stays on the UNet until :meth:`close` (or the end of a ``with`` block); while it is there it keeps a
    reference to the latest output, which :meth:`take` releases.
    """

    def __init__(self, unet: Any) -> None:
        self.features: torch.Tensor | None = None
        self.block = unet.up_blocks[-2]
        self._handle: Any = self.block.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self.features = output.detach()

    def take(self) -> torch.Tensor | None:
        """The latest deep features (None if none since the last take), releasing the tap's reference."""
        features, self.features = self.features, None
        return features

    def close(self) -> None:
        """Remove the hook (idempotent) and release the features."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.features = None

    def __enter__(self) -> DeepFeatureTap:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------------
# Its cost
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftCost:
    """Measured wall time of one full and one shallow forward at the same batch (medians over repeats).

    Attributes
    ----------
    full_seconds : float
    shallow_seconds : float
    ratio : float
        ``shallow_seconds / full_seconds``: the cost of a drafted step in target calls.
    """

    full_seconds: float
    shallow_seconds: float
    ratio: float


def _seconds(function: Callable[[], object], device: torch.device) -> float:
    """Wall time of ``function()``, synchronizing the device before and after on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure_draft_cost(
    unet: Any,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    repeats: int = 5,
) -> DraftCost:
    """The wall-time ratio of one shallow forward to one full forward of ``unet`` at these inputs.

    One full forward captures the deep features (and warms up), one shallow forward warms up, then full and shallow
    forwards alternate ``repeats`` times; each time is the median of its repeats.

    Parameters
    ----------
    unet : UNet2DConditionModel
    sample : Tensor, shape (M, C_in, H, W)
        In the UNet's dtype, on its device (timed there).
    timestep : Tensor, shape (M,) or ()
    encoder_hidden_states : Tensor, shape (M, S, D)
    repeats : int
        Timed forwards of each kind, >= 1.

    Returns
    -------
    DraftCost
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    check_shallow_forward_support(unet)

    def full() -> object:
        return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)

    with torch.no_grad():
        with DeepFeatureTap(unet) as tap:
            full()
            deep = tap.take()
        assert deep is not None

        def shallow() -> object:
            return unet_shallow_forward(unet, sample, timestep, encoder_hidden_states, deep)

        shallow()
        times = [(_seconds(full, sample.device), _seconds(shallow, sample.device)) for _ in range(repeats)]
    full_seconds = statistics.median(full_time for full_time, _ in times)
    shallow_seconds = statistics.median(shallow_time for _, shallow_time in times)
    return DraftCost(full_seconds, shallow_seconds, shallow_seconds / full_seconds)


# ---------------------------------------------------------------------------------------------------------------
# The drafter
# ---------------------------------------------------------------------------------------------------------------


def _input_scale_table(kernel: Kernel) -> torch.Tensor:
    """``model_input(x, n) = scale[n] x`` for every step, (N,) float64 (every kernel here scales the state)."""
    if not kernel.clip_sample:
        return linear_coefficients(kernel).input_scale.clone()
    one = torch.ones(1, 1, dtype=torch.float64)
    scales = [float(kernel.model_input(one, step)[0, 0]) for step in range(kernel.num_steps)]
    return torch.tensor(scales, dtype=torch.float64)


def _guided_unet(chain: ModelChain | None) -> GuidedUNet:
    """The chain's GuidedUNet, checked: its UNet supports the shallow forward and the chain has prompt embeddings."""
    model = None if chain is None else chain.model
    if chain is None or not isinstance(model, GuidedUNet):
        name = "no model chain" if chain is None else type(model).__name__
        raise ValueError(
            "CachedFeatureDrafter drafts with the shallow branch of a "
            f"specdiff.integrations.diffusers.GuidedUNet (speculative_stable_diffusion), got {name}"
        )
    check_shallow_forward_support(model.unet)
    if PROMPT not in chain.conditioning:
        raise ValueError(f"CachedFeatureDrafter needs the conditioning {PROMPT!r}")
    return model


def _deep_features_by_column(features: torch.Tensor, observation: RoundObservation) -> torch.Tensor:
    """The target call's deep features (k B L', C, h, w), halves first then rows ``b L' + j``, as (B, k, C, h, w)
    at each sample's column ``accepted`` (its last committed evaluated state)."""
    batch, columns = observation.accepted.shape[0], observation.predictions.shape[1]
    rows = batch * columns
    if features.shape[0] % rows != 0 or features.shape[0] // rows not in (1, 2):
        raise ValueError(
            f"the latest full forward had {features.shape[0]} rows, not 1 or 2 times the round's {rows}: was the UNet "
            "called between the target call and observe_round?"
        )
    halves = features.shape[0] // rows
    by_sample = features.reshape(halves, batch, columns, *features.shape[1:]).transpose(0, 1).transpose(1, 2)
    return take_column(by_sample, observation.accepted)


def _flatten_halves(features: torch.Tensor) -> torch.Tensor:
    """(M, k, C, h, w) features as (k M, C, h, w), the unconditional half first (``GuidedUNet``'s batch order)."""
    return features.transpose(0, 1).reshape(-1, *features.shape[2:])


class CachedFeatureDrafter(Drafter):
    """Drafts every step of a window with the UNet's shallow branch on the deep features of the latest target call.

    The target must be a :class:`specdiff.integrations.diffusers.GuidedUNet` (what
    :func:`~specdiff.integrations.diffusers.speculative_stable_diffusion` builds). :meth:`reset` puts a forward hook
    (:class:`DeepFeatureTap`) on ``unet.up_blocks[-2]``; after each verification pass the drafter keeps, per
    sample, that block's output at the last committed evaluated state (window column ``accepted``), and drafts a
    step by :func:`unet_shallow_forward` on it, with the step's own input scale, timestep and classifier-free
    guidance as ``GuidedUNet`` combines them. A sample is not ready before its first target call (it takes a plain
    step). See the module notes.

    The hook stays on the UNet between sampling calls: a new :meth:`reset` replaces it, :meth:`close` (or leaving a
    ``with`` block) removes it.

    Parameters
    ----------
    draft_cost_per_step : float, optional
        Cost of a drafted step in target calls (finite, >= 0). None (default): measured in :meth:`reset` by
        :func:`measure_draft_cost` on the UNet at the draft's batch (the config's sample size), once per batch and
        layout; the measurement is kept in :attr:`measured_cost`.
    measure_repeats : int
        Timed forwards of each kind when measuring.

    Attributes
    ----------
    measured_cost : DraftCost or None
        The latest measurement (None when the cost was given).
    """

    name = "cached-features"

    def __init__(self, draft_cost_per_step: float | None = None, measure_repeats: int = 5) -> None:
        if isinstance(measure_repeats, bool) or not isinstance(measure_repeats, int) or measure_repeats < 1:
            raise ValueError(f"measure_repeats must be a positive int, got {measure_repeats!r}")
        self._given_cost = (
            None if draft_cost_per_step is None else _check_cost(draft_cost_per_step, "draft_cost_per_step")
        )
        self.draft_cost_per_step = 0.0 if self._given_cost is None else self._given_cost
        self.measure_repeats = measure_repeats
        self.measured_cost: DraftCost | None = None
        self._measurements: dict[tuple[object, ...], DraftCost] = {}
        self._tap: DeepFeatureTap | None = None
        self._features: torch.Tensor | None = None  # (B, k, C, h, w) once observed

    def __repr__(self) -> str:
        return f"CachedFeatureDrafter(draft_cost_per_step={self._given_cost!r})"

    def reset(self, batch: int, chain: ModelChain | None, device: torch.device | str = "cpu") -> None:
        super().reset(batch, chain, device)
        self.close()
        model = _guided_unet(chain)
        assert chain is not None
        self._input_scales = _input_scale_table(chain.kernel).to(self.device)
        self._timesteps = chain.kernel.timesteps.to(self.device)
        self._has_features = torch.zeros(batch, dtype=torch.bool, device=self.device)
        if self._given_cost is None:
            self.measured_cost = self._measure(model, chain)
            self.draft_cost_per_step = self.measured_cost.ratio
        self._tap = DeepFeatureTap(model.unet)

    def _measure(self, model: GuidedUNet, chain: ModelChain) -> DraftCost:
        """The draft's cost at this batch (measured once per batch, layout and UNet)."""
        unet = model.unet
        embeddings = chain.conditioning[PROMPT]
        if NEGATIVE_PROMPT in chain.conditioning:
            embeddings = torch.cat([chain.conditioning[NEGATIVE_PROMPT], embeddings])
        size = unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else (size[0], size[1])
        shape = (embeddings.shape[0], int(unet.config.in_channels), int(height), int(width))
        key = (id(unet), shape, tuple(embeddings.shape), unet.dtype, unet.device)
        if key not in self._measurements:
            generator = torch.Generator().manual_seed(0)
            sample = torch.randn(shape, generator=generator).to(unet.device, unet.dtype)
            timestep = chain.kernel.timesteps[chain.kernel.num_steps // 2].expand(shape[0]).to(unet.device)
            arguments = (sample, timestep, embeddings.to(unet.device, unet.dtype))
            self._measurements[key] = measure_draft_cost(unet, *arguments, repeats=self.measure_repeats)
        return self._measurements[key]

    def close(self) -> None:
        """Remove the forward hook from the UNet and release the cached features (idempotent)."""
        if self._tap is not None:
            self._tap.close()
            self._tap = None
        self._features = None

    def __enter__(self) -> CachedFeatureDrafter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def ready(self, rows: torch.Tensor) -> torch.Tensor:
        return self._has_features[rows]

    def observe_round(self, observation: RoundObservation) -> None:
        super().observe_round(observation)
        features = None if self._tap is None else self._tap.take()
        if features is None:
            raise RuntimeError("CachedFeatureDrafter saw no full UNet forward this round: call reset first")
        latest = _deep_features_by_column(features, observation)
        _, _, seen = observation.column(observation.accepted)
        if self._features is None or self._features.shape != latest.shape:
            self._features = torch.zeros_like(latest)
        wide = seen.to(latest.device).reshape((-1,) + (1,) * (latest.dim() - 1))
        self._features = torch.where(wide, latest, self._features)
        self._has_features = self._has_features | seen

    def draft(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        chain = self._model_chain()
        if self._features is None:  # no sample is ready: a draft the sampler masks
            return chain.means(states, torch.zeros_like(states), steps)
        model = chain.model
        assert isinstance(model, GuidedUNet)
        inputs = _per_row(self._input_scales, steps, states) * states
        conditioning = {name: value[rows.to(value.device)] for name, value in chain.conditioning.items()}
        features = self._features[rows.to(self._features.device)]
        with torch.no_grad():
            predictions = _guided_shallow_prediction(model, inputs, self._timesteps[steps], conditioning, features)
        return chain.means(states, predictions, steps)


def _guided_shallow_prediction(
    model: GuidedUNet,
    inputs: torch.Tensor,
    timesteps: torch.Tensor,
    conditioning: dict[str, torch.Tensor],
    features: torch.Tensor,
) -> torch.Tensor:
    """``GuidedUNet.__call__`` with the shallow forward: the (guided) prediction (M, C, h, w) in the inputs' dtype.

    ``features`` (M, k, C', h', w') are the cached deep features, k = 2 (unconditional half first) with the negative
    embeddings in ``conditioning``, else 1.
    """
    unet, dtype = model.unet, model.unet.dtype
    negative = conditioning.get(NEGATIVE_PROMPT)
    halves = 1 if negative is None else 2
    if features.shape[1] != halves:
        raise ValueError(f"the cached features have {features.shape[1]} halves, the guidance needs {halves}")
    deep = _flatten_halves(features).to(dtype)
    if negative is None:
        output = unet_shallow_forward(unet, inputs.to(dtype), timesteps, conditioning[PROMPT].to(dtype), deep)
        return output.to(inputs.dtype)
    states = torch.cat([inputs, inputs]).to(dtype)
    embeddings = torch.cat([negative, conditioning[PROMPT]]).to(dtype)
    output = unet_shallow_forward(unet, states, torch.cat([timesteps, timesteps]), embeddings, deep)
    unconditional, conditional = output.to(inputs.dtype).chunk(2)
    return unconditional + model.guidance_scale * (conditional - unconditional)
