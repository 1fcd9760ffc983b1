"""DeviceModel: the network on one device, the sampler's states on another."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from specdiff.drafters import FreeDrafter
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import load_pretrained
from specdiff.placement import DeviceModel
from specdiff.policies import FixedWindow
from specdiff.sampler import sample, sample_plain

torch.set_num_threads(1)


class _Recorder:
    """A model that records the devices of its inputs and answers on the CPU."""

    def __init__(self) -> None:
        self.devices: list[tuple[str, ...]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.devices.append((x.device.type, t.device.type, y.device.type))
        return torch.ones(x.shape, dtype=torch.float16)

    def forward_first_k(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        self.devices.append((x.device.type, t.device.type, y.device.type))
        return torch.full(x.shape, float(k))


def test_inputs_go_to_the_device_and_the_prediction_comes_back() -> None:
    recorder = _Recorder()
    wrapped = DeviceModel(recorder, "meta")  # a device that holds no data: only placement is observable
    x, t, y = torch.zeros(3, 1, 2, 2), torch.arange(3), torch.arange(3)
    output = wrapped(x, t, y=y)
    assert recorder.devices == [("meta", "meta", "meta")]
    assert output.device == x.device and output.dtype == torch.float16 and bool((output == 1).all())
    early = wrapped.forward_first_k(x, t, y=y, k=2)
    assert recorder.devices[-1] == ("meta", "meta", "meta") and bool((early == 2).all())


def test_forward_first_k_and_depth_exist_only_when_the_model_has_them() -> None:
    def plain_model(x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return x

    bare = DeviceModel(plain_model, "cpu")
    assert getattr(bare, "forward_first_k", None) is None and getattr(bare, "depth", None) is None
    dit = DeviceModel(load_pretrained("digits"), "cpu")
    assert dit.depth == 4 and callable(dit.forward_first_k)
    with pytest.raises(ValueError, match="callable"):
        DeviceModel(42, "cpu")  # type: ignore[arg-type]


@pytest.mark.slow
def test_sampling_through_the_wrapper_is_bitwise_the_same() -> None:
    model = load_pretrained("digits")
    kernel = DDPMKernel(linear_schedule(1000), num_steps=100)
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    conditioning = {"y": torch.tensor([0, 3, 7, 9])}
    wrapped = DeviceModel(model, "cpu")
    with torch.no_grad():
        for drafter in (FreeDrafter(), FreeDrafter(exit_blocks=2)):
            runs = [
                sample(
                    runner,
                    kernel,
                    noise,
                    drafter=drafter,
                    window=FixedWindow(4),
                    rule="block",
                    generator=torch.Generator().manual_seed(1),
                    conditioning=conditioning,
                )
                for runner in (model, wrapped)
            ]
            assert torch.equal(runs[0].samples, runs[1].samples)
            assert runs[0].target_calls == runs[1].target_calls and runs[0].target_calls < 100
        plain = [
            sample_plain(runner, kernel, noise, generator=torch.Generator().manual_seed(2), conditioning=conditioning)
            for runner in (model, wrapped)
        ]
    assert torch.equal(plain[0].samples, plain[1].samples)
