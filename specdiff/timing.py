"""Wall-clock timing that is correct on a GPU: synchronize before reading the clock.

Used by ``specdiff demo`` and the benchmark scripts so that plain and speculative runs are timed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``(function(), seconds)``, the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    output = function()
    synchronize(device)
    return output, time.perf_counter() - start


def median_seconds(function: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` timed calls after one untimed warm-up call."""
    function()
    times = sorted(timed(function, device)[1] for _ in range(repeats))
    return times[len(times) // 2]


class TimedModel:
    """Wraps a model and accumulates the synchronized wall time spent inside its calls.

    Parameters
    ----------
    model : callable
    device : torch.device
        Synchronized around each call (a no-op on the CPU).
    """

    def __init__(self, model: Callable[..., torch.Tensor], device: torch.device | None = None):
        self.model = model
        self.device = torch.device("cpu") if device is None else device
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *arguments: Any, **keywords: Any) -> torch.Tensor:
        output, seconds = timed(lambda: self.model(*arguments, **keywords), self.device)
        self.seconds += seconds
        self.calls += 1
        return output
