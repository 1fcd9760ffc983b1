"""Exactness and calibration of speculative sampling on the trained digits DiT.

For each class, speculative samples (a rule and a drafter, the adaptive window) are compared with plain DDPM samples
of the same model drawn with independent randomness, on the 64-d images: MMD with a Gaussian kernel (median
heuristic, permutation p-value) and KS on random projections (Bonferroni), Bonferroni over the two tests and over
the classes, judged at ``LEVEL``. The negative control (``accept-always``: every drafted step accepted) must be
rejected by the same test. The measured steps per round are calibrated against the theory for the logged gaps
(``specdiff.diagnostics``, martingale z-scores).

Run ``python -m simulations.dit_exactness [--smoke] [--device cuda]``. Writes ``results/dit_exactness.json``. The
initial noises and the samplers' generators are the same on every device; the samples are compared on the CPU.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from scipy import stats

from simulations.common import network_drafter, script_arguments, write_results
from simulations.controls import rule_with_control
from simulations.provenance import REPOSITORY_ROOT
from specdiff.diagnostics import calibrate_run
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models.dit import DiT, load_pretrained
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample, sample_plain
from specdiff.stats import ks_two_sample_projection, mmd_test

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "dit_exactness.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "dit_exactness.json"
LEVEL = 1e-3
DEFAULT_SEED = 17


@dataclass(frozen=True)
class Config:
    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    runs: tuple[tuple[str, str, str | None, int | None], ...]  # (rule, drafter, control, fixed window or adaptive)
    permutations: int

    def __post_init__(self) -> None:
        # The MMD half of a class's p-value is at least 1 / (permutations + 1), doubled by the MMD-KS Bonferroni and
        # multiplied by the classes: below LEVEL only with enough permutations, else that half could never reject.
        smallest = 2 * len(self.classes) / (self.permutations + 1)
        if smallest >= LEVEL:
            raise ValueError(f"{self.permutations} permutations cannot reject at {LEVEL} (smallest p = {smallest:.3g})")


FULL = Config(
    classes=tuple(range(10)),
    samples_per_class=100,
    steps=60,
    runs=(
        ("token-reflection", "free-nearest", None, None),
        ("block", "free-nearest", None, None),
        ("adaptive", "free-nearest", None, None),
        ("block", "frozen", None, 8),
        ("block", "free-nearest", "accept-always", 8),
    ),
    permutations=29_999,
)
SMOKE = Config(
    classes=(3,), samples_per_class=40, steps=10, runs=(("block", "free-nearest", None, 4),), permutations=2_999
)


@dataclass(frozen=True)
class DiTCheck:
    rule: str
    drafter: str
    control: str | None
    classes: tuple[int, ...]
    samples_per_class: int
    steps: int
    class_p_values: list[float]
    p_value: float  # Bonferroni over classes
    rejected: bool
    expected_rejection: bool
    target_calls: int
    plain_target_calls: int
    calibration_z: float
    measured_steps_per_round: float
    predicted_steps_per_round: float


def class_p_value(first: torch.Tensor, second: torch.Tensor, seed: int, permutations: int) -> float:
    """Bonferroni-combined p-value of MMD and projected KS (8 random directions) between two image samples."""
    generator = torch.Generator().manual_seed(seed)
    flat_first, flat_second = first.flatten(1).double(), second.flatten(1).double()
    mmd = mmd_test(flat_first, flat_second, permutations=permutations, generator=generator).p_value
    projection = ks_two_sample_projection(flat_first, flat_second, number_of_directions=8, generator=generator).p_value
    return min(1.0, 2 * min(mmd, projection))


def check(
    model: DiT,
    *,
    rule: RuleName,
    drafter: str,
    control: str | None,
    classes: Sequence[int],
    samples_per_class: int,
    steps: int,
    seed: int,
    permutations: int = 200,
    window: WindowPolicy | None = None,
) -> DiTCheck:
    """Speculative vs plain samples of ``model`` per class, on the model's device; see the module docstring."""
    device = next(model.parameters()).device
    kernel = DDPMKernel(linear_schedule(1000), num_steps=steps)
    labels = torch.tensor(list(classes)).repeat_interleave(samples_per_class)
    batch = int(labels.numel())
    shape = (batch, model.config.in_channels, model.config.input_size, model.config.input_size)
    plain_noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    speculative_noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    conditioning = {"y": labels.to(device)}
    with torch.no_grad():
        plain = sample_plain(
            model, kernel, plain_noise, generator=torch.Generator().manual_seed(seed + 2), conditioning=conditioning
        )
        speculative = sample(
            model,
            kernel,
            speculative_noise,
            drafter=network_drafter(drafter),
            window=window or AdaptiveWindow(),
            rule=rule_with_control(rule, control),
            generator=torch.Generator().manual_seed(seed + 3),
            conditioning=conditioning,
        )
    speculative_samples, plain_samples = speculative.samples.cpu(), plain.samples.cpu()
    p_values = [
        class_p_value(speculative_samples[labels == c], plain_samples[labels == c], seed + 4 + c, permutations)
        for c in classes
    ]
    combined = min(1.0, len(p_values) * min(p_values))
    calibration = calibrate_run(speculative, rule)
    return DiTCheck(
        rule=rule,
        drafter=drafter,
        control=control,
        classes=tuple(classes),
        samples_per_class=samples_per_class,
        steps=steps,
        class_p_values=p_values,
        p_value=combined,
        rejected=combined < LEVEL,
        expected_rejection=control is not None,
        target_calls=speculative.target_calls,
        plain_target_calls=plain.target_calls,
        calibration_z=calibration.z,
        measured_steps_per_round=calibration.measured_steps_per_round,
        predicted_steps_per_round=calibration.predicted_steps_per_round,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT, device_option=True)
    config, output = (SMOKE if arguments.smoke else FULL), arguments.output
    device = torch.device(arguments.device)
    model = load_pretrained("digits", device=device)
    start = time.perf_counter()
    checks = []
    for index, (rule, drafter, control, window) in enumerate(config.runs):
        result = check(
            model,
            rule=rule,  # type: ignore[arg-type]
            drafter=drafter,
            control=control,
            classes=config.classes,
            samples_per_class=config.samples_per_class,
            steps=config.steps,
            seed=arguments.seed + 1000 * index,
            permutations=config.permutations,
            window=None if window is None else FixedWindow(window),
        )
        checks.append(result)
        verdict = "ok" if result.rejected == result.expected_rejection else "FAILED"
        print(
            f"{rule:<17} {drafter:<11} {control or '-':<14} p = {result.p_value:.3g}  calls {result.target_calls} "
            f"vs {result.plain_target_calls}  steps/round {result.measured_steps_per_round:.2f} (predicted "
            f"{result.predicted_steps_per_round:.2f}, z = {result.calibration_z:+.2f})  {verdict}",
            flush=True,
        )
    z_level = float(stats.norm.isf(LEVEL / 2))
    passed = all(c.rejected == c.expected_rejection for c in checks) and all(
        abs(c.calibration_z) <= z_level for c in checks if c.control is None
    )
    payload: dict[str, Any] = {
        "script": "simulations.dit_exactness",
        "preset": arguments.preset,
        "seed": arguments.seed,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "level": LEVEL,
        "sizes": asdict(config),
        "seconds": time.perf_counter() - start,
        "all_passed": passed,
        "records": [asdict(c) for c in checks],
    }
    write_results(output, payload)
    print(f"wrote {output}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["FULL", "LEVEL", "SMOKE", "check", "class_p_value", "main"]
