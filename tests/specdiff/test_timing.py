"""``specdiff.timing``: the timers return the function's output and non-negative times; no timing assertions."""

from __future__ import annotations

import torch

from specdiff.timing import TimedModel, median_seconds, timed


def test_timed_returns_the_output_and_a_duration() -> None:
    cpu = torch.device("cpu")
    output, seconds = timed(lambda: torch.ones(3).sum(), cpu)
    assert float(output) == 3.0 and seconds >= 0.0
    calls: list[int] = []
    assert median_seconds(lambda: calls.append(1), cpu, repeats=3) >= 0.0
    assert len(calls) == 4  # one warm-up, then three timed calls


def test_timed_model_forwards_and_accumulates() -> None:
    model = TimedModel(lambda x, scale=1.0: scale * x)
    assert torch.equal(model(torch.ones(2), scale=2.0), torch.full((2,), 2.0))
    model(torch.ones(2))
    assert model.calls == 2 and model.seconds >= 0.0
