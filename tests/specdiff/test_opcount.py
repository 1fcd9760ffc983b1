"""``specdiff.opcount``: launches and host synchronizations of known snippets, nesting, and state restored on errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from specdiff.opcount import SYNC_KINDS, OpCounter, OpCounts, SimulatedDevice, SimulatedTensor


def _syncs(counts: OpCounts) -> dict[str, float]:
    """The kinds with a nonzero count."""
    return {kind: value for kind, value in counts.syncs.items() if value}


def test_an_elementwise_op_is_one_launch() -> None:
    a, b = torch.randn(4), torch.randn(4)
    with OpCounter() as counter:
        a + b
    assert (counter.counts.ops, counter.counts.launches, counter.counts.total_syncs) == (1, 1, 0)
    assert counter.counts.launch_names == {"aten.add.Tensor": 1}


def test_views_and_allocations_launch_nothing() -> None:
    x = torch.randn(2, 3, 4)
    with OpCounter() as counter:
        x.view(6, 4)
        x.reshape(6, 4)  # contiguous: a view
        x.transpose(0, 1)
        x.permute(2, 0, 1)
        x.unsqueeze(0).squeeze(0)
        x[0, 1:]
        x[:, None].expand(2, 5, 3, 4)
        x.detach()
        x.unbind(0)
        x.chunk(2, dim=2)
        torch.empty(3)
        torch.empty_like(x)
    assert counter.counts.ops > 10
    assert counter.counts.launches == 0 and counter.counts.total_syncs == 0


def test_a_copying_reshape_and_a_fill_launch() -> None:
    x = torch.randn(2, 3)
    with OpCounter() as counter:
        x.t().reshape(6)  # not contiguous: clone + _unsafe_view
        torch.zeros(3)
    assert counter.counts.launch_names == {"aten.clone.default": 1, "aten.zeros.default": 1}


def test_bool_of_a_reduction_is_one_launch_and_one_scalar_read() -> None:
    x = torch.randn(5)
    with OpCounter() as counter:
        assert bool(x.any()) is True
    assert counter.counts.launches == 1
    assert _syncs(counter.counts) == {"scalar_read": 1}


@pytest.mark.parametrize(
    "read",
    [lambda x: x.sum().item(), lambda x: float(x.sum()), lambda x: int(x.argmax()), lambda x: torch.equal(x, x)],
)
def test_scalar_reads(read) -> None:
    x = torch.randn(5)
    with OpCounter() as counter:
        read(x)
    assert _syncs(counter.counts) == {"scalar_read": 1}


def test_data_dependent_shapes() -> None:
    x = torch.tensor([1.0, -1.0, 2.0])
    mask = x > 0
    for snippet in (
        lambda: x[mask],
        lambda: torch.nonzero(mask),
        lambda: torch.masked_select(x, mask),
        lambda: torch.unique(x),
        lambda: torch.arange(3).repeat_interleave(torch.tensor([1, 2, 1])),
    ):
        with OpCounter() as counter:
            snippet()
        assert _syncs(counter.counts) == {"data_dependent_shape": 1}
    with OpCounter() as counter:
        x[torch.tensor([0, 2])]
        torch.arange(3).repeat_interleave(2)
        torch.arange(3).repeat_interleave(torch.tensor([1, 2, 1]), output_size=4)
    assert counter.counts.total_syncs == 0


def test_host_reads_are_counted_and_the_patches_removed() -> None:
    x = torch.randn(3)
    originals = (torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.__array__)
    with OpCounter() as counter:
        x.numpy()
        assert len(x.tolist()) == 3
        np.asarray(x)
    assert counter.counts.syncs["host_read"] == 3
    assert (torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.__array__) == originals
    x.numpy()  # uncounted once the counter is gone
    assert counter.counts.syncs["host_read"] == 3


def test_sync_sites_name_the_calling_line() -> None:
    x = torch.randn(3)
    with OpCounter() as counter:
        x.sum().item()
    ((site, number),) = counter.counts.sync_sites.items()
    assert site.startswith("scalar_read: test_opcount.py:") and number == 1


def test_nested_counters_both_count() -> None:
    a = torch.randn(3)
    with OpCounter() as outer:
        a + a
        with OpCounter() as inner:
            a * a
            bool(a.all())
        a - a
    assert inner.counts.launches == 2 and inner.counts.total_syncs == 1
    assert outer.counts.launches == 4 and outer.counts.total_syncs == 1


def test_excluded_operations_are_counted_apart() -> None:
    a = torch.randn(3)
    with OpCounter() as counter:
        a + a
        with counter.excluding():
            a * a
            a.sum().item()
    assert counter.counts.launch_names == {"aten.add.Tensor": 1}
    assert counter.excluded.launches == 2 and counter.excluded.syncs["scalar_read"] == 1


def test_state_is_restored_after_an_exception() -> None:
    original_numpy = torch.Tensor.numpy
    counter = OpCounter()
    with pytest.raises(RuntimeError, match="boom"), counter:
        torch.randn(2) + 1
        raise RuntimeError("boom")
    assert counter.counts.launches == 2
    assert _get_current_dispatch_mode_stack() == []
    assert torch.Tensor.numpy is original_numpy
    assert OpCounter._active == []
    torch.randn(2) + 1  # nothing counts any more
    assert counter.counts.launches == 2


def test_per_divides_every_count() -> None:
    x = torch.randn(3)
    with OpCounter() as counter:
        for _ in range(4):
            bool((x + 1).any())
    per = counter.counts.per(4)
    assert per.launches == 2 and per.syncs["scalar_read"] == 1 and per.ops == 3
    assert per.launch_names["aten.add.Tensor"] == 1
    assert set(per.to_dict()["syncs_by_kind"]) == set(SYNC_KINDS)
    with pytest.raises(ValueError):
        counter.counts.per(0)


def _inner(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1  # 2 launches


def _outer(x: torch.Tensor) -> torch.Tensor:
    return _inner(x - 1).exp()  # 1 + 2 + 1 launches


def test_launches_are_attributed_to_the_named_functions_running() -> None:
    x = torch.randn(3)
    with OpCounter(attribute=("test_opcount._inner", "test_opcount._outer", "test_opcount._absent")) as counter:
        _outer(x)
        _inner(x)
        x.neg()
    within = counter.counts.launches_within
    assert counter.counts.launches == 7
    assert within == {"test_opcount._outer": 4, "test_opcount._inner": 4}
    assert counter.counts.per(2).launches_within["test_opcount._inner"] == 2
    assert counter.counts.to_dict()["launches_within"] == dict(within)
    # Without names nothing is attributed.
    with OpCounter() as plain:
        _outer(x)
    assert plain.counts.launches == 4 and not plain.counts.launches_within


# --- the host/device boundary on the simulated device ---------------------------------------------------------------


def test_simulated_device_tensors_compute_real_values() -> None:
    x = torch.randn(4)
    with SimulatedDevice() as simulation:
        y = simulation.put(x)
        z = (2 * y + torch.ones(4, device=simulation.device)).sum(0)
        assert isinstance(z, SimulatedTensor) and z.device == simulation.device
        host = z.cpu()
    assert type(host) is torch.Tensor and host.device.type == "cpu"
    torch.testing.assert_close(host, (2 * x + 1).sum(0))
    # Outside the mode a simulated tensor still computes (uncounted).
    torch.testing.assert_close(SimulatedDevice.host(y * 3), 3 * x)


def test_the_counter_sees_the_host_device_boundary() -> None:
    x, index = torch.randn(6), torch.tensor([0, 2])
    with SimulatedDevice() as simulation, OpCounter(cpu_is_host=True) as counter:
        y = simulation.put(x)
        device_index = index.to(simulation.device)  # host -> device: blocking, a synchronization
        y[device_index]  # device index: one launch, no synchronization
        y[index]  # host index: copied to the device
        y[index] = 0.0
        y.cpu()  # device -> host
        y.to("cpu", non_blocking=True)  # not a synchronization
        bool((y > 0).any())  # scalar read of a device value
        bool((x > 0).any())  # host only: no launch, no synchronization
        y + x  # a host tensor in a device op: an error on a real device
        y + x[0]  # a zero-dimensional host tensor is a scalar: allowed
        built = torch.tensor([1.0, 2.0], device=simulation.device)  # built on the host, copied to the device
        assert isinstance(built, SimulatedTensor) and SimulatedDevice.host(built).tolist() == [1.0, 2.0]
        assert len(y.tolist()) == 6  # device -> host
        with pytest.raises(TypeError):
            y.numpy()
    assert _syncs(counter.counts) == {
        "host_to_device_copy": 2,
        "host_index": 2,
        "device_to_host_copy": 2,
        "scalar_read": 1,
        "mixed_device": 1,
    }
    assert counter.counts.nonblocking_copies == 1
    assert counter.counts.host_ops == 3  # x > 0, its any() and the read of that host value


def test_without_cpu_is_host_the_boundary_is_invisible() -> None:
    x, index = torch.randn(6), torch.tensor([0, 2])
    with OpCounter() as counter:
        x.cpu()
        x.to("cpu")
        x[index]
    assert counter.counts.launches == 1 and counter.counts.total_syncs == 0


def test_fake_cuda_tensors_show_host_copies() -> None:
    from torch._subclasses import fake_tensor

    with fake_tensor.FakeTensorMode():
        x = torch.empty(4, device="cuda")  # a fake CUDA tensor: this works on a CPU-only build
        with OpCounter(cpu_is_host=True) as counter:
            (2 * x).cpu()
        assert _syncs(counter.counts) == {"device_to_host_copy": 1}
        # No values: a host read of a fake tensor raises (so a sampler loop cannot run on fake tensors).
        with pytest.raises(Exception, match="_local_scalar_dense"), OpCounter(cpu_is_host=True):
            bool(x.any())
    assert _get_current_dispatch_mode_stack() == []


def test_the_simulation_restores_torch_tensor_after_an_exception() -> None:
    factories = (torch.tensor, torch.as_tensor)
    with pytest.raises(RuntimeError, match="boom"), SimulatedDevice() as simulation:
        assert torch.tensor is not factories[0]
        assert isinstance(torch.as_tensor([1.0], device=simulation.device), SimulatedTensor)
        raise RuntimeError("boom")
    assert (torch.tensor, torch.as_tensor) == factories
    assert _get_current_dispatch_mode_stack() == []


@pytest.mark.slow
def test_torch_compile_after_a_simulation_still_traces_the_real_factories() -> None:
    # In a fresh process (torch.compile's tracer not loaded yet): a simulation patches torch.as_tensor while it is
    # active; a function calling torch.as_tensor must still compile into one graph afterwards.
    code = (
        "import torch\n"
        "from specdiff.opcount import SimulatedDevice\n"
        "with SimulatedDevice() as simulation:\n"
        "    torch.as_tensor([1.0], device=simulation.device)\n"
        "f = torch.compile(lambda x: torch.as_tensor(x, dtype=torch.float64) * 2, fullgraph=True, backend='eager')\n"
        "print(f(torch.ones(2)).tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[2.0, 2.0]"
