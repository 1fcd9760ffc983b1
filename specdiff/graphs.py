"""Graph replay of a sampling loop: a step run once per round from fixed addresses, recorded once and replayed.

A CUDA graph records the kernels one call of a function launches, with the memory they read and write, and
replays them with a single launch: no Python runs on a replay, so the host cost of a round (hundreds of kernel
launches) becomes one. What a replay cannot do is follow Python: it reads and writes exactly the addresses that
were used while recording. A loop whose step hands new tensors to the next step (``state = step(state)``) is
therefore run by :class:`StaticStep` as follows.

- The step's *carry* (its argument and the first part of its result, any nesting of dataclasses, tuples, lists
  and tensors) is copied once into static buffers (detached: capture and replays record no autograd history); the
  recorded step reads them, computes the next carry and copies it back into them (:func:`copy_carry`), so every
  replay starts from the previous one's result.
- Objects the step updates as a side effect (a drafter's memory, a policy's statistics: the *holders*) may keep
  their tensors either by writing into them in place (nothing to do) or by rebinding an attribute to a new tensor;
  a rebound attribute is copied back into the tensor it held before the step and bound to it again
  (:func:`restore_attributes`), so the next replay reads it where the recording read it.
- The step's *output* (the round's log) lives in the graph's memory and is overwritten by the next replay; the
  caller gets a clone.

The first ``warmup`` calls run the step as it is (CUDA libraries initialize lazily, ``torch.compile`` compiles,
drafters allocate their memory on first use); the next one records it and every later call replays it. If the
recording fails (a model that reads a value on the host cannot be captured), ``fallback=True`` warns and runs the
step as it is from then on; nothing the failed recording touched has run, so the run continues exactly.

:class:`CudaGraph` is ``torch.cuda.CUDAGraph``. :class:`SimulatedGraph` gives the same semantics on any device, so
that a CPU-only machine tests everything above: it records every aten operation of the captured call (a
``TorchDispatchMode``) and replays them on the recorded tensors, writing each result into the tensor it produced
when recorded; like a CUDA capture, recording leaves memory that existed before it unchanged (what the recorded
call wrote there is undone), fills the memory it allocated with garbage (NaN, or -1 for integers), and refuses any
read of a tensor's value on the host. A step that would read a stale address on a GPU gives a wrong result in the
simulation too (``tests/specdiff/test_graphs.py`` shows one).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from specdiff.opcount import SCALAR_READ_OPS

Output = TypeVar("Output")


class Graph(Protocol):
    """What :class:`StaticStep` needs of a graph: warm-up calls, one capture, replays."""

    def warm_up(self, function: Callable[[], Output]) -> Output:
        """Run ``function`` before the capture (on a CUDA side stream)."""

    def capture(self, function: Callable[[], Output]) -> Output:
        """Record ``function``; its outputs hold their values only after a replay."""

    def replay(self) -> None:
        """Run the recorded work again."""


# ---------------------------------------------------------------------------------------------------------------
# Carries and holders
# ---------------------------------------------------------------------------------------------------------------


def _leaves(carry: Any) -> Iterator[torch.Tensor]:
    """Every tensor of a carry, depth first, in field order (``None`` and Python values are skipped)."""
    if isinstance(carry, torch.Tensor):
        yield carry
    elif dataclasses.is_dataclass(carry) and not isinstance(carry, type):
        for item in dataclasses.fields(carry):
            yield from _leaves(getattr(carry, item.name))
    elif isinstance(carry, (tuple, list)):
        for item in carry:
            yield from _leaves(item)


def _mapped(carry: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """The carry with every tensor replaced by ``function(tensor)`` (same structure)."""
    if isinstance(carry, torch.Tensor):
        return function(carry)
    if dataclasses.is_dataclass(carry) and not isinstance(carry, type):
        changes = {item.name: _mapped(getattr(carry, item.name), function) for item in dataclasses.fields(carry)}
        return dataclasses.replace(carry, **changes)
    if isinstance(carry, (tuple, list)):
        return type(carry)(_mapped(item, function) for item in carry)
    return carry


def _shares_memory(left: torch.Tensor, right: torch.Tensor) -> bool:
    """Whether two tensors may overlap (same storage): a host check on metadata, no synchronization."""
    return left.untyped_storage().data_ptr() == right.untyped_storage().data_ptr()


def copy_carry(destination: Any, source: Any) -> None:
    """Copy every tensor of ``source`` into the tensor at the same place of ``destination`` (same structure).

    A source that shares memory with a destination written before it is read is cloned first, so the copies do
    not depend on their order (a round may hand the same tensor to two fields, or pass one through unchanged).

    Raises
    ------
    ValueError
        The two carries differ in structure, or a pair of tensors differs in shape or dtype.
    """
    targets, sources = list(_leaves(destination)), list(_leaves(source))
    if len(targets) != len(sources):
        raise ValueError(f"the step's carry changed structure: {len(sources)} tensors for {len(targets)} buffers")
    for target, value in zip(targets, sources, strict=True):
        if target.shape != value.shape or target.dtype != value.dtype:
            raise ValueError(
                f"the step's carry changed a tensor from {tuple(target.shape)} {target.dtype} to "
                f"{tuple(value.shape)} {value.dtype}: a replayed step needs fixed shapes"
            )
    sources = [
        value.clone() if any(_shares_memory(value, target) for target in targets) and value is not target else value
        for value, target in zip(sources, targets, strict=True)
    ]
    for target, value in zip(targets, sources, strict=True):
        if value is not target:
            target.copy_(value)


def tensor_attributes(holders: Sequence[object]) -> list[dict[str, torch.Tensor | None]]:
    """The tensor (or ``None``) attributes of each holder, by name: what :func:`restore_attributes` restores."""
    return [
        {name: value for name, value in vars(holder).items() if value is None or isinstance(value, torch.Tensor)}
        for holder in holders
    ]


def restore_attributes(holders: Sequence[object], before: list[dict[str, torch.Tensor | None]]) -> None:
    """Bind every tensor attribute the step rebound back to the tensor it held before, holding the new value.

    Raises
    ------
    RuntimeError
        An attribute was ``None`` (or absent) before and a tensor after, or changed shape or dtype: the step
        allocated memory a replay would not see (run more warm-up calls, or keep the tensor's shape fixed).
    """
    for holder, attributes in zip(holders, before, strict=True):
        for name, value in vars(holder).items():
            if not isinstance(value, torch.Tensor):
                continue
            previous = attributes.get(name)
            if previous is value:
                continue
            if previous is None or previous.shape != value.shape or previous.dtype != value.dtype:
                raise RuntimeError(
                    f"{type(holder).__name__}.{name} was bound to a new tensor of another shape (or none before) "
                    "during a replayed step: a graph cannot replay that allocation"
                )
            previous.copy_(value.clone() if _shares_memory(previous, value) else value)
            setattr(holder, name, previous)


# ---------------------------------------------------------------------------------------------------------------
# The replayed step
# ---------------------------------------------------------------------------------------------------------------


class StaticStep:
    """``step(carry) -> (carry, output)``, replayed from a graph after ``warmup`` ordinary calls.

    Parameters
    ----------
    step : callable
        ``carry -> (next carry, output)``: the same structure, shapes and dtypes every call, no host read of a
        tensor's value, and Python control flow that no longer changes after the warm-up calls.
    graph : Graph
        :class:`CudaGraph` on a CUDA device; :class:`SimulatedGraph` anywhere (tests).
    holders : sequence of objects
        Objects whose tensor attributes the step updates (see the module docstring).
    warmup : int
        Ordinary calls before the capture (>= 1).
    fallback : bool
        If the capture fails (a step that reads a value on the host, or a model CUDA cannot capture), warn and run
        the step as it is from then on, instead of raising.

    Calling it with the current carry returns ``(next carry, output)``. Once the step is recorded, the carry it
    returns is its static buffers (pass it back unchanged: a different carry is copied into them first), and the
    output is a clone of the graph's. Capture and replays run without autograd (sampling has no gradient).
    """

    def __init__(
        self,
        step: Callable[[Any], tuple[Any, Any]],
        graph: Graph,
        holders: Sequence[object] = (),
        *,
        warmup: int = 2,
        fallback: bool = False,
    ):
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {warmup!r}")
        self._step, self._graph, self._holders, self._warmup = step, graph, tuple(holders), int(warmup)
        self._fallback = fallback
        self._calls = 0
        self._failed = False
        self._static: Any = None
        self._output: Any = None

    @property
    def captured(self) -> bool:
        """Whether the step has been recorded (later calls replay it)."""
        return self._static is not None

    def __call__(self, carry: Any) -> tuple[Any, Any]:
        if self._failed:
            return self._step(carry)
        if self._calls < self._warmup:
            self._calls += 1
            return self._graph.warm_up(lambda: self._step(carry))
        if self._static is None:
            if not self._capture(carry):
                return self._step(carry)
        elif carry is not self._static:
            copy_carry(self._static, carry)
        self._graph.replay()
        return self._static, _mapped(self._output, torch.clone)

    def _capture(self, carry: Any) -> bool:
        """Record the step on static copies of ``carry``; False if it failed and ``fallback`` is set."""
        before = tensor_attributes(self._holders)
        with torch.no_grad():
            self._static = _mapped(carry, lambda tensor: tensor.detach().clone())
            try:
                self._output = self._graph.capture(self._recorded)
            except Exception as error:
                self._static = None
                if not self._fallback:
                    raise
                # Nothing ran (a capture only records), so the holders' earlier tensors are still current.
                for holder, attributes in zip(self._holders, before, strict=True):
                    for name, value in attributes.items():
                        setattr(holder, name, value)
                self._failed = True
                warnings.warn(
                    f"the step could not be captured as a graph ({type(error).__name__}: {error}); it runs without "
                    "one from now on",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return False
        return True

    def _recorded(self) -> Any:
        """One step on the static buffers, its next carry written back into them (what the graph records)."""
        before = tensor_attributes(self._holders)
        carry, output = self._step(self._static)
        copy_carry(self._static, carry)
        restore_attributes(self._holders, before)
        return output


class CudaGraph:
    """``torch.cuda.CUDAGraph``: warm-up calls and the capture on a side stream, replays on the current one.

    The capture is ``capture_begin`` / ``capture_end`` on a side stream, as ``torch.cuda.graph`` does, without the
    device synchronization, ``gc.collect()`` and ``empty_cache()`` it adds on entry: a sampler captures once per run,
    and a full garbage collection per run would be timed with it.
    """

    def __init__(self) -> None:
        self._graph = torch.cuda.CUDAGraph()

    def warm_up(self, function: Callable[[], Output]) -> Output:
        return self._on_side_stream(function)

    def capture(self, function: Callable[[], Output]) -> Output:
        def captured() -> Output:
            self._graph.capture_begin()
            try:
                return function()
            finally:
                self._graph.capture_end()

        return self._on_side_stream(captured)

    @staticmethod
    def _on_side_stream(function: Callable[[], Output]) -> Output:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            result = function()
        torch.cuda.current_stream().wait_stream(stream)
        return result

    def replay(self) -> None:
        self._graph.replay()


# ---------------------------------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Call:
    """One recorded operation: what it was called with and the tensors it returned (written again on replay)."""

    function: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outputs: tuple[torch.Tensor, ...]  # the fresh (non-aliasing) tensor results, in order; empty for views
    replay: bool  # False for pure views (a replay computes nothing for them)


def _writes(function: Any) -> bool:
    return any(
        argument.alias_info is not None and argument.alias_info.is_write for argument in function._schema.arguments
    )


def _aliases(function: Any) -> bool:
    return any(result.alias_info is not None for result in function._schema.returns)


class _Recorder(TorchDispatchMode):
    """Records every operation; saves the memory that existed before the capture before anything writes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[_Call] = []
        self.allocated: dict[int, torch.Tensor] = {}  # storage address -> a tensor on it, made while recording
        self.saved: dict[int, tuple[torch.UntypedStorage, torch.UntypedStorage]] = {}  # address -> (storage, copy)

    def __torch_dispatch__(self, function: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if function._overloadpacket.__name__ in SCALAR_READ_OPS:  # a host read: a synchronization
            raise RuntimeError(
                f"{function} reads a tensor's value on the host while a graph is being captured (on a GPU the "
                "capture fails: a replayed step must not synchronize)"
            )
        if _writes(function):
            for argument, value in zip(function._schema.arguments, _arguments(function, args, kwargs), strict=True):
                if argument.alias_info is not None and argument.alias_info.is_write:
                    for tensor in tree_flatten(value)[0]:
                        if isinstance(tensor, torch.Tensor):
                            self._save(tensor)
        result = function(*args, **kwargs)
        tensors = tuple(value for value in tree_flatten(result)[0] if isinstance(value, torch.Tensor))
        aliasing = _aliases(function)
        if not aliasing:
            inputs = {
                value.untyped_storage().data_ptr()
                for value in tree_flatten((args, kwargs))[0]
                if isinstance(value, torch.Tensor)
            }
            for tensor in tensors:
                address = tensor.untyped_storage().data_ptr()
                if address not in inputs:  # (an undeclared view, e.g. _unsafe_view, is not new memory)
                    self.allocated.setdefault(address, tensor)
        replay = _writes(function) or not aliasing
        self.calls.append(_Call(function, args, dict(kwargs), () if aliasing else tensors, replay))
        return result

    def _save(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address not in self.allocated and address not in self.saved:
            self.saved[address] = (storage, storage.clone())

    def restore(self) -> None:
        """Undo the recorded call's writes to earlier memory; fill the memory it allocated with garbage."""
        for storage, copy in self.saved.values():
            storage.copy_(copy)
        for tensor in self.allocated.values():
            tensor.fill_(math.nan if tensor.is_floating_point() or tensor.is_complex() else -1)  # True for booleans


def _arguments(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The value of every schema argument, positional or keyword (None where absent)."""
    values = list(args)
    for argument in function._schema.arguments[len(args) :]:
        values.append(kwargs.get(argument.name))
    return values


class SimulatedGraph:
    """A CUDA graph's semantics on any device (module docstring): for tests on a machine without CUDA."""

    def __init__(self) -> None:
        self._calls: list[_Call] | None = None

    def warm_up(self, function: Callable[[], Output]) -> Output:
        return function()

    def capture(self, function: Callable[[], Output]) -> Output:
        if self._calls is not None:
            raise RuntimeError("this graph is already captured")
        recorder = _Recorder()
        try:
            with recorder:
                outputs = function()
        finally:
            recorder.restore()  # also after a failed capture: nothing it touched has run, as on a GPU
        self._calls = recorder.calls
        return outputs

    def replay(self) -> None:
        if self._calls is None:
            raise RuntimeError("replay before capture")
        with torch.no_grad():  # a CUDA graph's replay records no autograd history either
            self._replay(self._calls)

    @staticmethod
    def _replay(calls: list[_Call]) -> None:
        for call in calls:
            if not call.replay:
                continue
            result = call.function(*call.args, **call.kwargs)
            fresh = [value for value in tree_flatten(result)[0] if isinstance(value, torch.Tensor)]
            for recorded, value in zip(call.outputs, fresh, strict=False):
                recorded.copy_(value)
