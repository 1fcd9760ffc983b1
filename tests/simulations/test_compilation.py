"""``simulations.compilation``: a compiled function past its limit of graphs raises instead of running eagerly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from simulations import bench_gpu, graph_check, round_cost
from simulations.compilation import strict_compilation


def _strict() -> bool:
    return bool(torch._dynamo.config.fail_on_recompile_limit_hit)


@pytest.fixture(autouse=True)
def _lenient() -> Iterator[None]:
    """torch's own setting (the suite's conftest makes every test strict). Through torch's ``config.patch``, not
    ``monkeypatch``: pytest 9.2's undo deletes an attribute a module serves through ``__getattr__``, and a deleted
    config entry is gone for the rest of the process."""
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=False):
        yield


def _shapes(function: Callable[[torch.Tensor], torch.Tensor], sizes: range) -> list[torch.Tensor]:
    return [function(torch.ones(size)) for size in sizes]


def _compiled() -> Callable[[torch.Tensor], torch.Tensor]:
    # dynamic=False: one graph per input shape, as the sampler compiles (dynamo's eager backend: no code generation)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    return torch.compile(lambda x: x * 2.0 + 1.0, backend="eager", dynamic=False)


def test_past_its_limit_a_compiled_function_raises() -> None:
    function = _compiled()
    with strict_compilation(limit=2):
        assert [float(y[0]) for y in _shapes(function, range(1, 3))] == [3.0, 3.0]  # two graphs: within the limit
        with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
            function(torch.ones(3))
    torch._dynamo.reset()


def test_without_it_torch_runs_the_function_eagerly_past_the_limit() -> None:
    # Negative control: the same third shape under torch's own setting only warns and runs eagerly.
    function = _compiled()
    with torch._dynamo.config.patch(recompile_limit=2):
        _shapes(function, range(1, 3))
        assert float(function(torch.ones(3))[0]) == 3.0
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # the third ran without a graph
    torch._dynamo.reset()


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"), strict_compilation(limit=0):
        pass


# --- The experiments that compile run their compiled samplers within it (and only those) -------------------------


def test_round_cost_runs_compiled_samplers_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool]] = []

    def sampler(*args: Any, **keywords: Any) -> SimpleNamespace:
        seen.append((keywords.get("compile", False), _strict()))
        return SimpleNamespace(rounds=1)

    monkeypatch.setattr(round_cost, "speculative_chain", sampler)
    monkeypatch.setattr(round_cost, "plain_chain", sampler)
    b = round_cost.drift(4)
    x_init, sigmas = round_cost.initial_state(1, 4, 0), torch.full((3,), 0.1, dtype=torch.float64)
    for name, keywords in (("speculative", {"compile": True}), ("plain", {"compile": True}), ("speculative", {})):
        round_cost._run(name, *round_cost.means(b), x_init, sigmas, 0, 4, "block", keywords)
    assert seen == [(True, True), (True, True), (False, False)]
    assert not _strict()  # only within the run


def test_bench_gpu_runs_compiled_cells_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_gpu, "run_sampling", lambda cell, seed: {"strict": _strict()})
    cells = [cell for cell in bench_gpu.cells(bench_gpu.SMOKE) if isinstance(cell, bench_gpu.SamplingCell)][:1]
    for cell in cells:
        assert bench_gpu.run_cell(replace(cell, compiled=True), 0) == {"strict": True}
        assert bench_gpu.run_cell(replace(cell, compiled=False), 0) == {"strict": False}


def test_graph_check_runs_compiled_cells_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool]] = []

    def sampler(*args: Any, **keywords: Any) -> None:
        seen.append((keywords["compile"], _strict()))

    monkeypatch.setattr(graph_check, "sample", sampler)
    cell = graph_check.cells(graph_check.SMOKE)[0]
    for compiled in (True, False):
        graph_check._run(replace(cell, compiled=compiled), "off", 0)
    assert seen == [(True, True), (False, False)]
