"""Where the sampler's arithmetic runs: a network on an accelerator for states that stay on the host.

A speculative round is one batched network call plus a few hundred small tensor operations (drafting, verification,
bookkeeping) on (B, L + 1, *event) tensors. For a small network on a GPU each of those operations costs a kernel
launch; on the host it costs a few microseconds. :class:`DeviceModel` runs only the network on the accelerator:
``sample(DeviceModel(model, "cuda"), kernel, x_init_on_cpu, ...)`` keeps the states, the randomness and the
verification on the CPU and moves each batched call's inputs to the GPU and its prediction back. The samples are
exactly as distributed as before; only where the arithmetic happens changes.
"""

from __future__ import annotations

from typing import Any

import torch

from specdiff.drafters import Model


class DeviceModel:
    """``model`` run on ``device`` for inputs that live elsewhere.

    Parameters
    ----------
    model : callable
        ``model(x, t, **conditioning) -> prediction``, already on ``device``.
    device : torch.device or str
        Where the model's inputs are moved: x (M, *event), t (M,) and every tensor in ``conditioning``.

    Notes
    -----
    The prediction comes back on the device of ``x`` (its dtype is the model's). ``forward_first_k`` (the early-exit
    draft) and ``depth`` are forwarded when the wrapped model has them, so ``FreeDrafter(exit_blocks=K)`` works
    through the wrapper.
    """

    def __init__(self, model: Model, device: torch.device | str):
        if not callable(model):
            raise ValueError("model must be callable")
        self.model = model
        self.device = torch.device(device)

    def _to_device(self, value: Any) -> Any:
        return value.to(self.device) if isinstance(value, torch.Tensor) else value

    def _call(self, function: Model, x: torch.Tensor, t: torch.Tensor, **keywords: Any) -> torch.Tensor:
        moved = {name: self._to_device(value) for name, value in keywords.items()}
        return function(x.to(self.device), t.to(self.device), **moved).to(x.device)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return self._call(self.model, x, t, **conditioning)

    @property
    def forward_first_k(self) -> Model:
        """The wrapped model's ``forward_first_k(x, t, k=..., **conditioning)`` through the same transfers.

        Raises AttributeError when the wrapped model has none (so ``getattr(..., None)`` sees none).
        """
        forward_first_k = getattr(self.model, "forward_first_k", None)
        if forward_first_k is None:
            raise AttributeError(f"{type(self.model).__name__} has no forward_first_k")

        def call(x: torch.Tensor, t: torch.Tensor, **keywords: Any) -> torch.Tensor:
            return self._call(forward_first_k, x, t, **keywords)

        return call

    @property
    def depth(self) -> int:
        """The wrapped model's ``depth`` (AttributeError if it has none)."""
        depth = getattr(self.model, "depth", None)
        if depth is None:
            raise AttributeError(f"{type(self.model).__name__} has no depth")
        return int(depth)
