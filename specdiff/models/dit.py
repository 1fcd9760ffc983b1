"""A Diffusion Transformer (DiT, Peebles & Xie 2023) written from scratch, with an early exit for self-drafting.

Architecture (eps-prediction only, no learned sigma):

- **Patch embedding**: a ``patch_size``-strided convolution maps ``x`` (B, C, H, W) to ``T = (H / p)^2`` tokens of
  width ``hidden_size``, plus fixed 2-D sin-cos positional embeddings (not learned, not saved).
- **Conditioning** ``c = timestep_embedding(t) + class_embedding(y)``, shape (B, hidden): the timestep goes through
  a 256-frequency sinusoidal embedding and a two-layer SiLU MLP; the class table has ``num_classes + 1`` rows, the
  last one (index ``num_classes``) being the *null class* of classifier-free guidance. The model itself never
  drops labels: training scripts replace labels by the null class with their own generator.
- **adaLN-Zero blocks**: ``x += gate_msa * attention(modulate(norm(x), shift_msa, scale_msa))`` and
  ``x += gate_mlp * mlp(modulate(norm(x), shift_mlp, scale_mlp))``, the six modulation vectors being a linear
  map of ``SiLU(c)`` initialized to zero, so every block is the identity at initialization.
- **Final layer**: adaLN (shift, scale; zero-initialized) then a zero-initialized linear map to ``p * p * C``
  values per token, unpatchified to (B, C, H, W). The network outputs exactly zero at initialization.

:meth:`DiT.forward_first_k` runs only the first ``k`` blocks and then the final layer (the *early-exit* draft of
docs/design.md §3.6–3.7); with ``k == depth`` it is :meth:`DiT.forward`.

Weights ship as safetensors plus a JSON config (:func:`load_pretrained`); :func:`digits_dataset` gives the 8x8
digits of scikit-learn (no download) with a fixed train / held-out split.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

WEIGHTS_DIRECTORY = Path(__file__).resolve().parent / "weights"
#: Width of the sinusoidal timestep features fed to the timestep MLP (as in DiT).
TIMESTEP_FREQUENCIES = 256
#: Seed of the fixed permutation behind the train / held-out split of the digits.
DIGITS_SPLIT_SEED = 0
#: Fraction of each class held out.
DIGITS_HELDOUT_FRACTION = 0.2
DIGITS_SPLITS: tuple[str, ...] = ("train", "heldout", "all")


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class DiTConfig:
    """Shape of a DiT.

    Attributes
    ----------
    input_size : int
        Height = width of the (latent) image.
    patch_size : int
        Side of a square patch; must divide ``input_size``.
    in_channels : int
        Channels of the image; the output (an eps prediction) has the same number.
    hidden_size : int
        Token width; a multiple of ``num_heads`` and of 4 (for the 2-D sin-cos embedding).
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads.
    mlp_ratio : float
        Hidden width of the block MLP divided by ``hidden_size`` (positive).
    num_classes : int
        Number of real classes; index ``num_classes`` is the null class.
    learn_sigma : bool
        Must be False: only eps prediction is supported.
    """

    input_size: int
    patch_size: int
    in_channels: int
    hidden_size: int
    depth: int
    num_heads: int
    mlp_ratio: float
    num_classes: int
    learn_sigma: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "num_classes"):
            _check_positive_int(name, getattr(self, name))
        if self.input_size % self.patch_size != 0:
            raise ValueError(f"patch_size ({self.patch_size}) must divide input_size ({self.input_size})")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        if self.hidden_size % 4 != 0:
            raise ValueError(f"hidden_size must be a multiple of 4 (2-D sin-cos embedding), got {self.hidden_size}")
        ratio = self.mlp_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"mlp_ratio must be a positive finite number, got {ratio!r}")
        if self.learn_sigma is not False:
            raise ValueError("learn_sigma=True is not supported: this DiT predicts eps only")

    @property
    def grid_size(self) -> int:
        """Patches per side, ``input_size / patch_size``."""
        return self.input_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Tokens per image, ``grid_size ** 2``."""
        return self.grid_size**2

    @property
    def out_channels(self) -> int:
        """Channels of the eps prediction (= ``in_channels``)."""
        return self.in_channels

    @property
    def mlp_hidden_size(self) -> int:
        """Hidden width of the block MLP, ``int(hidden_size * mlp_ratio)``."""
        return int(self.hidden_size * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiTConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError."""
        names = {field.name for field in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown DiTConfig keys: {sorted(unknown)}")
        required = {field.name for field in fields(cls) if field.name != "learn_sigma"}
        missing = required - set(values)
        if missing:
            raise ValueError(f"missing DiTConfig keys: {sorted(missing)}")
        return cls(**values)


def paper_preset(hidden_size: int, depth: int, num_heads: int) -> DiTConfig:
    """A DiT paper shape on 32x32x4 latents (256x256 images), patch 2, 1000 ImageNet classes, eps-only output."""
    return DiTConfig(
        input_size=32,
        patch_size=2,
        in_channels=4,
        hidden_size=hidden_size,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        num_classes=1000,
    )


#: Named shapes. "digits" is the small model trained here on the 8x8 digits; the others are the DiT paper's
#: S/2, B/2 and XL/2 on 32x32x4 latents (256x256 images), with eps-only output.
DIT_PRESETS: dict[str, DiTConfig] = {
    "digits": DiTConfig(
        input_size=8, patch_size=2, in_channels=1, hidden_size=128, depth=4, num_heads=4, mlp_ratio=4.0, num_classes=10
    ),
    "S/2": paper_preset(hidden_size=384, depth=12, num_heads=6),
    "B/2": paper_preset(hidden_size=768, depth=12, num_heads=12),
    "XL/2": paper_preset(hidden_size=1152, depth=28, num_heads=16),
}


def count_parameters(config: DiTConfig) -> int:
    """Number of trainable parameters of ``DiT(config)``, computed from the shapes alone (no allocation).

    Parameters
    ----------
    config : DiTConfig

    Returns
    -------
    int
    """
    hidden, patch = config.hidden_size, config.patch_size
    linear = lambda inputs, outputs: inputs * outputs + outputs  # noqa: E731
    patch_embedding = config.in_channels * patch * patch * hidden + hidden
    timestep = linear(TIMESTEP_FREQUENCIES, hidden) + linear(hidden, hidden)
    labels = (config.num_classes + 1) * hidden
    attention = linear(hidden, 3 * hidden) + linear(hidden, hidden)
    mlp = linear(hidden, config.mlp_hidden_size) + linear(config.mlp_hidden_size, hidden)
    block = attention + mlp + linear(hidden, 6 * hidden)
    final = linear(hidden, 2 * hidden) + linear(hidden, patch * patch * config.out_channels)
    return patch_embedding + timestep + labels + config.depth * block + final


# ---------------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------------


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """1-D sin-cos embedding of ``positions`` (M,), shape (M, embed_dim): ``[sin(p w_i), cos(p w_i)]``.

    ``w_i = 10000^(-i / (embed_dim / 2))`` for ``i = 0..embed_dim/2 - 1``; ``embed_dim`` must be even.
    """
    if embed_dim % 2 != 0:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(embed_dim: int, grid_size: int) -> np.ndarray:
    """Fixed 2-D sin-cos positional embedding of a ``grid_size`` x ``grid_size`` grid, shape (grid_size^2, embed_dim).

    Token ``r * grid_size + c`` (row-major) gets ``[sincos_1d(c), sincos_1d(r)]``, each half of width
    ``embed_dim / 2`` (as in MAE / DiT); ``embed_dim`` must be a multiple of 4.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim must be a multiple of 4, got {embed_dim}")
    rows, columns = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    return np.concatenate([sincos_1d(embed_dim // 2, columns), sincos_1d(embed_dim // 2, rows)], axis=1)


def timestep_features(
    timesteps: torch.Tensor, dim: int = TIMESTEP_FREQUENCIES, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal timestep features, shape (B, dim): ``[cos(t f_i), sin(t f_i)]`` with ``f_i = max_period^(-i/half)``.

    Parameters
    ----------
    timesteps : Tensor, shape (B,)
        Training timesteps, integer or float (fractional values are allowed).
    dim : int
        Even feature width.
    max_period : float

    Returns
    -------
    Tensor, shape (B, dim), float32
    """
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    angles = timesteps.to(torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x (1 + scale) + shift`` of tokens (B, T, D) by per-image vectors (B, D)."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


# ---------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, T, D)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> (B, T, D)."""
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        attended = functional.scaled_dot_product_attention(query, key, value)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: attention and MLP, each shifted, scaled and gated by the conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_hidden_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attention = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden_size),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden_size, hidden_size),
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) and conditioning (B, D) -> tokens (B, T, D)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(conditioning).chunk(6, dim=1)
        x = x + gate_msa[:, None, :] * self.attention(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp[:, None, :] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a linear map to ``patch_size^2 * out_channels`` values per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) and conditioning (B, D) -> patch values (B, T, p * p * C)."""
        shift, scale = self.modulation(conditioning).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Class-conditional DiT predicting eps.

    Parameters
    ----------
    config : DiTConfig
    generator : torch.Generator, optional
        Source of the random initialization (default: torch's global generator).
    """

    def __init__(self, config: DiTConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(config, DiTConfig):
            raise ValueError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = config
        hidden = config.hidden_size
        self.patch_embedding = nn.Conv2d(config.in_channels, hidden, config.patch_size, stride=config.patch_size)
        self.timestep_mlp = nn.Sequential(nn.Linear(TIMESTEP_FREQUENCIES, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.class_embedding = nn.Embedding(config.num_classes + 1, hidden)
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden, config.num_heads, config.mlp_hidden_size) for _ in range(config.depth)]
        )
        self.final_layer = FinalLayer(hidden, config.patch_size, config.out_channels)
        positions = torch.from_numpy(sincos_2d(hidden, config.grid_size)).to(torch.float32)
        self.register_buffer("position_embedding", positions[None], persistent=False)
        self._initialize(generator)

    def _initialize(self, generator: torch.Generator | None) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
        weight = self.patch_embedding.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1), generator=generator)
        if self.patch_embedding.bias is not None:
            nn.init.zeros_(self.patch_embedding.bias)
        nn.init.normal_(self.class_embedding.weight, std=0.02, generator=generator)
        for layer in self.timestep_mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02, generator=generator)
        # adaLN-Zero: every modulation and the output projection start at zero.
        zero_modules: list[nn.Module] = [self.final_layer.modulation, self.final_layer.linear]
        zero_modules += [block.modulation for block in self.blocks if isinstance(block, DiTBlock)]
        for module in zero_modules:
            for parameter in module.parameters():
                nn.init.zeros_(parameter)

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return self.config.depth

    def num_parameters(self) -> int:
        """Number of parameters (all trainable; the positional embedding is a buffer)."""
        return sum(parameter.numel() for parameter in self.parameters())

    def conditioning(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``timestep_mlp(features(t)) + class_embedding(y)``, shape (B, D), from t (B,) and labels y (B,).

        Label values are range-checked for labels on the CPU only (elsewhere the check would cost a host-device
        synchronization), with numpy: host work that a graph capture does not record, and that ``torch.compile``
        leaves out (an out-of-range label still fails in the embedding).
        """
        if t.dim() != 1 or y.dim() != 1 or t.shape[0] != y.shape[0]:
            raise ValueError(f"t and y must both have shape (B,), got {tuple(t.shape)} and {tuple(y.shape)}")
        if y.dtype != torch.long:
            raise ValueError(f"y must be a long tensor of class labels, got {y.dtype}")
        if y.device.type == "cpu" and not torch.compiler.is_compiling():
            labels = y.numpy()
            if ((labels < 0) | (labels > self.config.num_classes)).any():
                raise ValueError(f"labels must be in [0, {self.config.num_classes}] ({self.config.num_classes} = null)")
        features = timestep_features(t).to(self.class_embedding.weight.dtype)
        return self.timestep_mlp(features) + self.class_embedding(y)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus positions, shape (B, T, D), from images (B, C, H, W)."""
        expected = (self.config.in_channels, self.config.input_size, self.config.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2)
        return tokens + self.position_embedding.to(tokens.dtype)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch values (B, T, p * p * C) -> images (B, C, H, W)."""
        grid, patch, channels = self.config.grid_size, self.config.patch_size, self.config.out_channels
        batch = patches.shape[0]
        values = patches.reshape(batch, grid, grid, patch, patch, channels)
        return values.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, grid * patch, grid * patch)

    def _run(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, blocks: int) -> torch.Tensor:
        if t.dim() == 1 and t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        conditioning = self.conditioning(t, y)
        tokens = self.embed(x)
        for block in self.blocks[:blocks]:
            tokens = block(tokens, conditioning)
        return self.unpatchify(self.final_layer(tokens, conditioning))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eps prediction.

        Parameters
        ----------
        x : Tensor, shape (B, C, H, W)
            VP state at timestep t.
        t : Tensor, shape (B,)
            Training timesteps (long or float).
        y : Tensor, shape (B,), long
            Class labels in ``[0, num_classes]``; ``num_classes`` is the null class.

        Returns
        -------
        Tensor, shape (B, C, H, W)
        """
        return self._run(x, t, y, self.depth)

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """Early exit: the first ``k`` blocks, then the final layer; same shapes as :meth:`forward`.

        ``k`` is an integer in ``[1, depth]``; ``k == depth`` equals :meth:`forward`.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= self.depth:
            raise ValueError(f"k must be an integer in [1, {self.depth}], got {k!r}")
        return self._run(x, t, y, int(k))


class ClassifierFreeGuidance:
    """A DiT with classifier-free guidance: ``eps_null + scale (eps_y - eps_null)``, in one doubled batch.

    It has the DiT's call signature, ``depth`` and ``forward_first_k`` (the early exit is guided the same way), so it
    plugs into :func:`specdiff.sampler.sample` and the early-exit Free Drafter.

    Parameters
    ----------
    model : DiT
    scale : float
        Guidance scale (1: the conditional model).
    """

    def __init__(self, model: DiT, scale: float) -> None:
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale!r}")
        self.model, self.scale = model, float(scale)
        self.depth = model.depth
        self.config = model.config

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        null = torch.full_like(y, self.config.num_classes)
        both = self.model.forward_first_k(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), k)
        conditional, unconditional = both.chunk(2)
        return unconditional + self.scale * (conditional - unconditional)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward_first_k(x, t, y, self.depth)


# ---------------------------------------------------------------------------------------------------------------
# Weights and data
# ---------------------------------------------------------------------------------------------------------------


def weight_paths(name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """``(dit_{name}.safetensors, dit_{name}.json)`` in ``directory`` (default: the shipped weights)."""
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ValueError(f"model name must contain only letters, digits, '_' and '-', got {name!r}")
    folder = WEIGHTS_DIRECTORY if directory is None else Path(directory)
    return folder / f"dit_{name}.safetensors", folder / f"dit_{name}.json"


def load_pretrained(
    name: str = "digits",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    directory: Path | None = None,
) -> DiT:
    """Load a trained DiT (safetensors weights + JSON config), in eval mode.

    Parameters
    ----------
    name : str
        Reads ``dit_{name}.safetensors`` and ``dit_{name}.json`` (its ``"config"`` entry).
    device : torch.device or str, optional
    dtype : torch.dtype
    directory : Path, optional
        Where the files are (default: ``specdiff/models/weights``).

    Returns
    -------
    DiT
    """
    from safetensors.torch import load_file

    weights_path, config_path = weight_paths(name, directory)
    missing = [str(path) for path in (weights_path, config_path) if not path.is_file()]
    if missing:
        available = sorted(path.stem[4:] for path in weights_path.parent.glob("dit_*.safetensors"))
        raise FileNotFoundError(f"no pretrained DiT {name!r}: missing {missing}; available: {available}")
    config = DiTConfig.from_dict(json.loads(config_path.read_text())["config"])
    model = DiT(config, generator=torch.Generator().manual_seed(0))  # leaves the global generator alone
    model.load_state_dict(load_file(str(weights_path)), strict=True)
    return model.to(device=device, dtype=dtype).eval()


def digits_split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / held-out indices of the digits: a fixed permutation per class, 20% held out.

    Parameters
    ----------
    labels : ndarray, shape (n,)

    Returns
    -------
    (train, heldout) : two sorted int64 arrays, disjoint, covering ``0..n-1``
    """
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    train: list[np.ndarray] = []
    heldout: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = round(DIGITS_HELDOUT_FRACTION * members.size)
        heldout.append(members[:count])
        train.append(members[count:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(heldout)).astype(np.int64)


def digits_dataset(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits of ``sklearn.datasets.load_digits`` (1797 images, shipped with scikit-learn).

    Parameters
    ----------
    split : {"train", "heldout", "all"}
        A fixed stratified 80 / 20 split (:func:`digits_split_indices`).

    Returns
    -------
    images : Tensor, shape (n, 1, 8, 8), float32
        Pixel values 0..16 mapped linearly to [-1, 1].
    labels : Tensor, shape (n,), long
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split must be one of {DIGITS_SPLITS}, got {split!r}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64) / 8.0 - 1.0
    labels = np.asarray(digits.target, dtype=np.int64)
    if split != "all":
        train, heldout = digits_split_indices(labels)
        chosen = train if split == "train" else heldout
        images, labels = images[chosen], labels[chosen]
    return torch.from_numpy(images[:, None].astype(np.float32)), torch.from_numpy(labels)
