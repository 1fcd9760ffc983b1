"""Count the kernel launches and the host synchronizations of torch code, on a machine without an accelerator.

On a GPU every tensor operation is a kernel launch (5-10 µs of host time each) and every read of a device value on
the host is a synchronization that drains the launch queue. :class:`OpCounter` is a
``torch.utils._python_dispatch.TorchDispatchMode``: every aten operation dispatched inside it is recorded and
classified, and :class:`OpCounts` summarizes them (``counts.per(rounds)`` divides by a number of rounds).

Kernel launches
    Every dispatched operation on the device except the pure metadata ones of :data:`METADATA_OPS` (views,
    reshapes that alias, ``detach``, ``lift_fresh``, size queries; and allocations without a kernel: ``empty*``,
    ``resize_``) and the host reads of :data:`SCALAR_READ_OPS` that compute nothing (``_local_scalar_dense``: the
    read of one value). Copies between host and device count as launches (a ``cudaMemcpyAsync`` on the stream
    costs the host about what a launch does). An operation is dispatched once however many kernels its backend
    implementation runs (a CUDA ``nonzero`` is a few, ``torch.zeros`` one fill), so the count is of host-side
    calls, which is what the launch overhead scales with.

Host synchronizations, by kind (:data:`SYNC_KINDS`)
    - ``scalar_read``: ``item()``, ``bool()``, ``int()``, ``float()`` of a device tensor (``aten._local_scalar_dense``)
      and the operations that return a Python value (``aten.is_nonzero``, ``aten.equal``, ``aten.allclose``).
    - ``data_dependent_shape``: operations whose output shape depends on the values, so the host must read a count
      (``nonzero``, ``masked_select``, ``unique*``, ``repeat_interleave`` with a tensor of repeats and no output
      size, ``masked_scatter``, ``bincount``, and ``index`` / ``index_put_`` with a boolean index on the device).
    - ``device_to_host_copy``: ``.cpu()``, ``.to("cpu")``, ``copy_`` into a host tensor, ``.tolist()`` of a device
      tensor (a blocking device-to-host copy waits for the stream).
    - ``host_to_device_copy``: a blocking copy from host memory to the device (``.to(device)``, ``copy_`` from a
      host tensor, ``torch.tensor(..., device=device)``): PyTorch's CUDA copy without ``non_blocking`` is
      ``cudaMemcpyAsync`` followed by ``cudaStreamSynchronize`` (``at::cuda::memcpy_and_sync``), so it also waits
      for every queued kernel.
    - ``host_index``: a host index tensor applied to a device tensor (``device_tensor[host_index]``, or as the
      indices of ``index_put_``): the indices are copied to the device with a blocking copy (one per index tensor).
    - ``mixed_device``: any other operation mixing device tensors with host tensors of one or more dimensions (a
      host tensor of zero dimensions is a scalar argument, which is allowed): on a real device most of these raise
      "Expected all tensors to be on the same device"; they are counted so that a simulation shows them.
    - ``host_read``: ``Tensor.numpy()``, ``Tensor.tolist()`` and ``numpy.asarray(tensor)`` (``__array__``), which do
      not dispatch at all, are counted by patching those methods while a counter is active, when the tensor counts
      as a device tensor.

    Copies with ``non_blocking=True`` are not synchronizations; they are counted in ``OpCounts.nonblocking_copies``
    (a device-to-host one is only safe to read after an event or a synchronization that the counter cannot see).

Where the tensors are: the ``cpu_is_host`` switch
    ``OpCounter()`` (``cpu_is_host=False``) treats every tensor, CPU ones included, as if it lived on the
    accelerator: a CPU-only run stands in for a run with everything on the device. It sees every launch (an upper
    bound: host bookkeeping counts as launches too), every scalar read and every data-dependent shape, and the
    ``numpy`` / ``tolist`` host reads; it cannot see host copies or host index tensors, because on a CPU-only
    machine ``.cpu()`` of a CPU tensor and a CPU index are no-ops that never dispatch.

    ``OpCounter(cpu_is_host=True)`` treats CPU tensors as host tensors and anything else as device tensors: ops on
    host tensors only are counted as ``host_ops`` (host work, no launch, no synchronization) and the host/device
    boundary becomes visible. It needs tensors that are not on the CPU, which a CPU-only machine gets from
    :class:`SimulatedDevice`: a dispatch mode under which tensors "on the device" (``torch.device("meta")``, the
    stand-in) are wrappers around real CPU tensors, so code runs with real values, data-dependent control flow
    included, while reporting ``tensor.device == meta``. Factory functions with ``device=meta`` and ``.to(meta)``
    produce such wrappers; ``.cpu()`` returns a plain CPU tensor; ``.numpy()`` of a device tensor raises as it does
    for a CUDA tensor. This is the mode that sees every kind above.

    Alternatives that were tried: ``torch._subclasses.fake_tensor.FakeTensorMode`` accepts ``device="cuda"`` on a
    CPU-only build and shows the device of every tensor, but it has no values, so any code that reads a value on
    the host stops with ``DataDependentOutputException`` (``bool(x.any())``), and a boolean index, a host index or
    ``.to("cuda")`` raise ("PyTorch is not linked with support for cuda devices"): it cannot run a sampler loop.
    Plain ``meta`` tensors have the same problem. With real CUDA tensors ``cpu_is_host=True`` works as is (and then
    needs no simulation).

What no mode sees
    Work that does not dispatch through aten: kernels generated by ``torch.compile`` (Inductor's fused kernels run
    as compiled C++ / Triton calls), custom C++ / CUDA extensions, and synchronizations made inside a backend kernel
    that this list does not name (for example the error checks of non-``_ex`` linear algebra, or
    ``torch.cuda.synchronize``). A ``TorchDispatchMode`` sees the operations below autograd and below the
    decomposition of composite operations (``reshape`` appears as ``view`` or as ``clone`` + ``_unsafe_view``).

    ``torch.compile`` under a counter: with torch 2.13 a compiled function called inside an active counter ran its
    operations eagerly (a fused ``(2 x + y).sin() * 3`` was counted as its four aten operations), so counts of
    compiled code are those of its eager operations: the synchronizations are right where the compiled code keeps
    its graph breaks, the launches are an upper bound (fusion is not seen). Time compiled code without a counter.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_leaves, tree_map

#: Overload packets (``aten.<name>``) that launch no kernel: views and other metadata changes, size queries, and
#: allocations without initialization (the caching allocator hands out memory without a kernel).
METADATA_OPS: frozenset[str] = frozenset(
    {
        # views
        "view",
        "_unsafe_view",
        "_reshape_alias",
        "reshape",
        "view_as",
        "expand",
        "expand_as",
        "as_strided",
        "as_strided_",
        "slice",
        "select",
        "narrow",
        "unsqueeze",
        "unsqueeze_",
        "squeeze",
        "squeeze_",
        "permute",
        "transpose",
        "transpose_",
        "swapaxes",
        "swapdims",
        "movedim",
        "moveaxis",
        "t",
        "t_",
        "numpy_T",
        "mT",
        "mH",
        "adjoint",
        "detach",
        "detach_",
        "alias",
        "split",
        "split_with_sizes",
        "unsafe_split",
        "unsafe_split_with_sizes",
        "tensor_split",
        "unbind",
        "chunk",
        "unsafe_chunk",
        "diagonal",
        "unfold",
        "flatten",
        "unflatten",
        "ravel",
        "view_as_real",
        "view_as_complex",
        "real",
        "imag",
        "conj",
        "_conj",
        "_neg_view",
        "resolve_conj",
        "resolve_neg",
        "lift_fresh",
        "lift",
        # allocations without a kernel
        "empty",
        "empty_like",
        "empty_strided",
        "empty_permuted",
        "new_empty",
        "new_empty_strided",
        "resize_",
        "set_",
        # size and layout queries
        "sym_size",
        "sym_stride",
        "sym_numel",
        "sym_storage_offset",
        "size",
        "stride",
        "numel",
        "dim",
        "is_contiguous",
        "is_strides_like_format",
        "is_non_overlapping_and_dense",
        "is_same_size",
        "prim",  # prim.device, prim.layout, ...
    }
)

#: Operations that hand a value to the host: a synchronization each; ``_local_scalar_dense`` and ``is_nonzero``
#: only read (no kernel), ``equal`` and ``allclose`` compute and read.
SCALAR_READ_OPS: frozenset[str] = frozenset({"_local_scalar_dense", "is_nonzero", "equal", "allclose"})
_READ_ONLY_OPS = frozenset({"_local_scalar_dense", "is_nonzero"})

#: Operations whose output shape depends on the values (always a synchronization on a device).
DATA_DEPENDENT_OPS: frozenset[str] = frozenset(
    {
        "nonzero",
        "argwhere",
        "masked_select",
        "unique",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "unique_dim_consecutive",
        "masked_scatter",
        "masked_scatter_",
        "bincount",
    }
)
_REPEAT_OPS = frozenset({"repeat_interleave"})
_INDEX_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl", "_index_put_impl_", "_unsafe_index"})
_COPY_OPS = frozenset({"_to_copy", "copy_", "copy"})

SYNC_KINDS: tuple[str, ...] = (
    "scalar_read",
    "data_dependent_shape",
    "device_to_host_copy",
    "host_to_device_copy",
    "host_index",
    "mixed_device",
    "host_read",
)

#: Where a simulated device tensor says it lives (:class:`SimulatedDevice`).
SIMULATED_DEVICE = torch.device("meta")


@dataclass
class OpCounts:
    """What an :class:`OpCounter` saw (or that divided by a number of rounds, see :meth:`per`).

    Attributes
    ----------
    ops : float
        Every dispatched aten operation.
    launches : float
        Kernel-launching operations on the device (see the module docstring).
    host_ops : float
        Operations on host tensors only (``cpu_is_host=True``; always 0 otherwise).
    syncs : dict
        Host synchronizations by kind, every kind of :data:`SYNC_KINDS` present.
    nonblocking_copies : float
        Copies between host and device with ``non_blocking=True`` (not synchronizations).
    op_names : Counter
        Every operation by name (``aten.add.Tensor``).
    launch_names : Counter
        The kernel-launching ones by name.
    sync_sites : Counter
        ``"kind: file:line (function)"`` of the first frame outside torch and this module, per synchronization.
    launches_within : Counter
        Kernel-launching operations made while a function named in the counter's ``attribute`` was running (on the
        Python stack), by that name; an operation inside nested named functions counts for each of them.
    """

    ops: float = 0
    launches: float = 0
    host_ops: float = 0
    syncs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SYNC_KINDS, 0))
    nonblocking_copies: float = 0
    op_names: Counter[str] = field(default_factory=Counter)
    launch_names: Counter[str] = field(default_factory=Counter)
    sync_sites: Counter[str] = field(default_factory=Counter)
    launches_within: Counter[str] = field(default_factory=Counter)

    @property
    def total_syncs(self) -> float:
        return sum(self.syncs.values())

    def per(self, number: float) -> OpCounts:
        """Every count divided by ``number`` (rounds, steps), for per-round figures."""
        if number <= 0:
            raise ValueError(f"number must be > 0, got {number!r}")

        def divided(counter: Counter[str]) -> Counter[str]:
            return Counter({name: value / number for name, value in counter.items()})

        return OpCounts(
            ops=self.ops / number,
            launches=self.launches / number,
            host_ops=self.host_ops / number,
            syncs={kind: value / number for kind, value in self.syncs.items()},
            nonblocking_copies=self.nonblocking_copies / number,
            op_names=divided(self.op_names),
            launch_names=divided(self.launch_names),
            sync_sites=divided(self.sync_sites),
            launches_within=divided(self.launches_within),
        )

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """A JSON-ready summary; ``top`` keeps only the most frequent names and sites."""
        return {
            "ops": self.ops,
            "launches": self.launches,
            "host_ops": self.host_ops,
            "syncs": self.total_syncs,
            "syncs_by_kind": dict(self.syncs),
            "nonblocking_copies": self.nonblocking_copies,
            "op_names": dict(self.op_names.most_common(top)),
            "launch_names": dict(self.launch_names.most_common(top)),
            "sync_sites": dict(self.sync_sites.most_common(top)),
            "launches_within": dict(self.launches_within),
        }


def _packet(func: Any) -> str:
    """``aten.add.Tensor`` -> ``add``; ``prim`` operations (``prim.device``: metadata queries) -> ``prim``."""
    if getattr(func, "namespace", None) == "prim":
        return "prim"
    return str(func.overloadpacket.__name__) if hasattr(func, "overloadpacket") else str(func)


_TORCH_DIRECTORY = str(Path(torch.__file__).resolve().parent)
_THIS_FILE = str(Path(__file__).resolve())


def _call_site() -> str:
    """``file:line (function)`` of the innermost frame outside torch and this module."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_TORCH_DIRECTORY) and filename != _THIS_FILE and not filename.startswith("<"):
            return f"{Path(filename).name}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back  # type: ignore[assignment]
    return "unknown"


def _running_functions(names: frozenset[str]) -> set[str]:
    """Which of ``names`` (``"module.function"``) are running: on the Python stack of the caller."""
    running = set()
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        qualified = f"{Path(code.co_filename).stem}.{code.co_name}"
        if qualified in names:
            running.add(qualified)
        frame = frame.f_back  # type: ignore[assignment]
    return running


class OpCounter(TorchDispatchMode):
    """Record and classify every aten operation dispatched inside ``with OpCounter() as counter:``.

    Parameters
    ----------
    cpu_is_host : bool
        False (default): every tensor counts as a device tensor (a CPU-only run standing in for one on the device).
        True: CPU tensors are host tensors, others (a real accelerator's, or :class:`SimulatedDevice`'s) device
        tensors, which makes host copies, host index tensors and host-only work visible.
    record_sites : bool
        Record the Python call site of every synchronization in ``OpCounts.sync_sites``.
    attribute : sequence of str
        Functions, named ``"module.function"`` (the file's name without ``.py``, then the function's name, e.g.
        ``"residual_law.residual_offset_quantile"``), whose kernel launches are also counted apart in
        ``OpCounts.launches_within`` (found on the Python stack of each launch: slow, for a few counted rounds).

    Counters nest: an inner counter's operations are counted by the outer one too. ``counter.excluding()`` sends
    the operations inside it to ``counter.excluded`` instead of ``counter.counts`` (for example a model whose own
    operations should not be charged to the sampler that calls it). The host-read patches of ``Tensor.numpy``,
    ``Tensor.tolist`` and ``Tensor.__array__`` are installed on entry and removed on exit, exceptions included.
    """

    _active: ClassVar[list[OpCounter]] = []

    def __init__(self, *, cpu_is_host: bool = False, record_sites: bool = True, attribute: Sequence[str] = ()):
        super().__init__()
        self.cpu_is_host = cpu_is_host
        self.record_sites = record_sites
        self.attribute = frozenset(attribute)
        self.counts = OpCounts()
        self.excluded = OpCounts()
        self._excluding = 0
        self._saved_methods: dict[str, Any] = {}
        self._reading = False

    # --- entering and leaving -------------------------------------------------------------------------------------

    def __enter__(self) -> OpCounter:
        self._patch_host_reads()
        try:
            super().__enter__()
        except BaseException:
            self._restore_host_reads()
            raise
        OpCounter._active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if OpCounter._active and OpCounter._active[-1] is self:
                OpCounter._active.pop()
            super().__exit__(*exc)
        finally:
            self._restore_host_reads()

    @contextmanager
    def excluding(self) -> Iterator[None]:
        """Count the operations inside the block in ``self.excluded`` instead of ``self.counts``."""
        self._excluding += 1
        try:
            yield
        finally:
            self._excluding -= 1

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.counts, self.excluded = OpCounts(), OpCounts()

    # --- classification -------------------------------------------------------------------------------------------

    def _on_device(self, tensor: torch.Tensor) -> bool:
        return not self.cpu_is_host or tensor.device.type != "cpu"

    def _target(self) -> OpCounts:
        return self.excluded if self._excluding else self.counts

    def _sync(self, counts: OpCounts, kind: str, number: int = 1) -> None:
        counts.syncs[kind] += number
        if self.record_sites:
            counts.sync_sites[f"{kind}: {_call_site()}"] += number

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        self._record(func, args, kwargs)
        return func(*args, **kwargs)

    def _record(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        counts = self._target()
        name, packet = str(func), _packet(func)
        counts.ops += 1
        counts.op_names[name] += 1
        tensors = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        target_device = kwargs.get("device")
        to_device = target_device is not None and self._device_name_on_device(target_device)
        on_device = [tensor for tensor in tensors if self._on_device(tensor)]
        if not on_device and not to_device:
            if packet not in METADATA_OPS:
                counts.host_ops += 1
            return
        if packet not in METADATA_OPS and packet not in _READ_ONLY_OPS:
            counts.launches += 1
            counts.launch_names[name] += 1
            if self.attribute:
                counts.launches_within.update(_running_functions(self.attribute))
        # Host tensors of >= 1 dimension in a device operation.
        host = [tensor for tensor in tensors if not self._on_device(tensor) and tensor.dim() > 0]
        if packet in SCALAR_READ_OPS:
            self._sync(counts, "scalar_read")
        elif packet in DATA_DEPENDENT_OPS:
            self._sync(counts, "data_dependent_shape")
        elif packet in _REPEAT_OPS:
            # repeat_interleave.Tensor(repeats), repeat_interleave.self_Tensor(self, repeats) or .self_int
            repeats = args[0] if name.endswith(".Tensor") else (args[1] if len(args) > 1 else kwargs.get("repeats"))
            if isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None:
                self._sync(counts, "data_dependent_shape")
        elif packet in _COPY_OPS:
            self._record_copy(counts, packet, args, kwargs)
            return
        if packet in _INDEX_OPS:
            self._record_index(counts, args)
            return
        if host and packet not in _COPY_OPS:
            self._sync(counts, "mixed_device")

    def _device_name_on_device(self, device: Any) -> bool:
        return not self.cpu_is_host or torch.device(device).type != "cpu"

    def _record_copy(self, counts: OpCounts, packet: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if packet == "_to_copy":
            source = args[0]
            device = kwargs.get("device")
            destination_on_device = self._on_device(source) if device is None else self._device_name_on_device(device)
        else:  # copy_(destination, source)
            destination, source = args[0], args[1]
            destination_on_device = self._on_device(destination)
        source_on_device = self._on_device(source) if isinstance(source, torch.Tensor) else destination_on_device
        if source_on_device == destination_on_device:
            return
        non_blocking = bool(kwargs.get("non_blocking", args[2] if packet != "_to_copy" and len(args) > 2 else False))
        if non_blocking:
            counts.nonblocking_copies += 1
        else:
            self._sync(counts, "host_to_device_copy" if destination_on_device else "device_to_host_copy")

    def _record_index(self, counts: OpCounts, args: tuple[Any, ...]) -> None:
        self_tensor = args[0]
        indices = args[1] if len(args) > 1 else ()
        index_tensors = [index for index in indices if isinstance(index, torch.Tensor)]
        if not self._on_device(self_tensor):
            return
        for index in index_tensors:
            if not self._on_device(index):
                self._sync(counts, "host_index")
            elif index.dtype in (torch.bool, torch.uint8):
                self._sync(counts, "data_dependent_shape")
        values = args[2] if len(args) > 2 and isinstance(args[2], torch.Tensor) else None
        if values is not None and not self._on_device(values) and values.dim() > 0:
            self._sync(counts, "mixed_device")

    # --- host reads that do not dispatch --------------------------------------------------------------------------

    _HOST_READS: ClassVar[tuple[str, ...]] = ("numpy", "tolist", "__array__")

    def _patch_host_reads(self) -> None:
        counter = self
        for method in self._HOST_READS:
            original = getattr(torch.Tensor, method)
            self._saved_methods[method] = original
            setattr(torch.Tensor, method, _counting_method(counter, method, original))

    def _restore_host_reads(self) -> None:
        for method, original in reversed(list(self._saved_methods.items())):
            setattr(torch.Tensor, method, original)
        self._saved_methods.clear()

    def _host_read(self, method: str, tensor: torch.Tensor) -> None:
        if self._on_device(tensor):
            counts = self._target()
            counts.op_names[f"Tensor.{method}"] += 1
            self._sync(counts, "host_read")


def _counting_method(counter: OpCounter, method: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if counter._reading or counter not in OpCounter._active:
            return original(tensor, *args, **kwargs)
        counter._host_read(method, tensor)
        counter._reading = True  # __array__ calls numpy(): one read
        try:
            return original(tensor, *args, **kwargs)
        finally:
            counter._reading = False

    counted.__name__ = method
    counted.__doc__ = original.__doc__
    return counted


# --- the simulated device ---------------------------------------------------------------------------------------


class SimulatedTensor(torch.Tensor):
    """A tensor that says it lives on :data:`SIMULATED_DEVICE` and holds a real CPU tensor (``.host_data``)."""

    host_data: torch.Tensor

    @staticmethod
    def __new__(cls, data: torch.Tensor) -> SimulatedTensor:
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls,
            data.shape,
            strides=data.stride(),
            storage_offset=data.storage_offset(),
            dtype=data.dtype,
            layout=data.layout,
            device=SIMULATED_DEVICE,
            requires_grad=False,
        )
        wrapper.host_data = data
        return wrapper

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        return f"SimulatedTensor({self.host_data!r})"

    def tolist(self) -> Any:
        for counter in OpCounter._active:  # a blocking device-to-host copy
            counts = counter._target()
            counts.op_names["Tensor.tolist"] += 1
            counter._sync(counts, "device_to_host_copy")
        return self.host_data.tolist()

    def numpy(self, *, force: bool = False) -> Any:
        raise TypeError(
            "can't convert a simulated device tensor to numpy (as for a CUDA tensor): use Tensor.cpu() first"
        )

    def __array__(self, dtype: Any = None) -> Any:
        return self.numpy()

    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
        cls, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        return _simulate(func, args, dict(kwargs or {}))


def _is_simulated_device(device: Any) -> bool:
    return device is not None and torch.device(device).type == SIMULATED_DEVICE.type


def _simulate(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``func`` on the CPU data of the simulated tensors; device results come back as simulated tensors."""
    wrappers: dict[int, SimulatedTensor] = {}

    def unwrap(value: Any) -> Any:
        if isinstance(value, SimulatedTensor):
            wrappers[id(value.host_data)] = value
            return value.host_data
        return value

    plain_args, plain_kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
    if "device" in plain_kwargs and plain_kwargs["device"] is not None:
        to_device = _is_simulated_device(plain_kwargs["device"])
        if to_device:
            plain_kwargs["device"] = torch.device("cpu")
    else:
        to_device = bool(wrappers)
    output = func(*plain_args, **plain_kwargs)

    def wrap(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and not isinstance(value, SimulatedTensor):
            if id(value) in wrappers:  # in-place and out= operations return their argument
                return wrappers[id(value)]
            if to_device:
                return SimulatedTensor(value)
        return value

    return tree_map(wrap, output)


def _host_built(factory: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``factory(data, device=meta)`` -> ``factory(data, device=cpu).to(meta)``; other calls as they are."""

    def built(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not _is_simulated_device(kwargs.get("device")):
            return factory(data, *args, **kwargs)
        return factory(data, *args, **{**kwargs, "device": torch.device("cpu")}).to(SIMULATED_DEVICE)

    built.__name__ = getattr(factory, "__name__", "factory")
    built.__doc__ = factory.__doc__
    return built


class SimulatedDevice(TorchDispatchMode):
    """Run torch code as if an accelerator were present: ``torch.device("meta")`` stands in for it.

    Inside ``with SimulatedDevice() as simulation:``, factory functions with ``device=simulation.device`` and
    ``.to(simulation.device)`` give :class:`SimulatedTensor` objects (real CPU data, ``device`` meta), operations on
    them give simulated tensors, and ``.cpu()`` gives plain CPU tensors. Enter it before (outside) an
    ``OpCounter(cpu_is_host=True)`` so that the counter sees the operations first. ``simulation.put(tensor)`` makes
    a simulated copy of a CPU tensor without dispatching anything (for setting up inputs uncounted).

    ``torch.tensor(data, device=meta)`` and ``torch.as_tensor(data, device=meta)`` build their data on the device
    without dispatching (they would give a meta tensor without values), so they are patched while the simulation is
    active: the data is built on the CPU and moved with ``.to(meta)``, which a counter sees as the blocking
    host-to-device copy it is on a real device. ``Tensor.new_tensor`` is not patched.

    Limitations: no generator lives on the simulated device (draws with a CPU generator and ``device=meta`` are
    made on the CPU and wrapped); autograd is not simulated; ``torch.compile`` does not trace simulated tensors.
    """

    device: ClassVar[torch.device] = SIMULATED_DEVICE
    _FACTORIES: ClassVar[tuple[str, ...]] = ("tensor", "as_tensor")

    def __init__(self) -> None:
        super().__init__()
        self._saved_factories: dict[str, Any] = {}

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        return _simulate(func, args, dict(kwargs or {}))

    def __enter__(self) -> SimulatedDevice:
        # torch.compile's tracer records which torch functions it may trace by identity when it is first loaded; let
        # it load before the factories are patched, or it would know the patched ones and refuse the real ones later.
        import torch._dynamo

        for name in self._FACTORIES:
            original = getattr(torch, name)
            self._saved_factories[name] = original
            setattr(torch, name, _host_built(original))
        try:
            super().__enter__()
        except BaseException:
            self._restore_factories()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._restore_factories()

    def _restore_factories(self) -> None:
        for name, original in self._saved_factories.items():
            setattr(torch, name, original)
        self._saved_factories.clear()

    @staticmethod
    def put(tensor: torch.Tensor) -> SimulatedTensor:
        """A simulated device tensor holding a copy of the CPU tensor ``tensor``."""
        if isinstance(tensor, SimulatedTensor):
            return tensor
        with _disable_current_modes():
            return SimulatedTensor(tensor.detach().clone())

    @staticmethod
    def host(tensor: torch.Tensor) -> torch.Tensor:
        """The CPU data of a simulated tensor (no copy, nothing dispatched); other tensors as they are."""
        return tensor.host_data if isinstance(tensor, SimulatedTensor) else tensor
