"""``specdiff.diagnostics.calibrate_run``: the real sampler's acceptance matches the theory (martingale z-scores at
ALPHA, two-sided) and a mis-scaled theory is rejected by the same test."""

from __future__ import annotations

import pytest
import torch

from specdiff.diagnostics import calibrate_run
from specdiff.drafters import FreeDrafter
from specdiff.kernels import DDPMKernel, linear_schedule
from specdiff.models import GaussianMixture
from specdiff.sampler import SpeculativeResult, sample
from tests.statistics import z_threshold

DATA = GaussianMixture(
    weights=torch.tensor([0.5, 0.5], dtype=torch.float64),
    means=torch.tensor([[1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64),
    variances=torch.tensor([0.1, 0.2], dtype=torch.float64),
)


def _run(rule: str, seed: int) -> SpeculativeResult:
    kernel = DDPMKernel(linear_schedule(1000), num_steps=60)
    start = torch.randn(128, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return sample(
        DATA.as_model(kernel), kernel, start, drafter=FreeDrafter(), window=5, rule=rule,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(seed + 1),
    )  # fmt: skip


@pytest.mark.statistical
@pytest.mark.parametrize("rule", ["token-reflection", "block"])
def test_measured_acceptance_matches_the_theory(rule: str) -> None:
    summary = calibrate_run(_run(rule, 31), rule)
    assert abs(summary.z) < z_threshold()
    assert summary.rounds > 500 and summary.positions[0].position == 1
    assert summary.measured_steps_per_round == pytest.approx(summary.predicted_steps_per_round, rel=0.1)


@pytest.mark.statistical
def test_mis_scaled_theory_is_rejected() -> None:
    # alpha(delta / 2) over-predicts acceptance: the same z-test must reject it.
    summary = calibrate_run(_run("token-reflection", 31), "token-reflection", delta_scale=0.5)
    assert summary.z < -z_threshold()


def test_calibrate_run_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="rule"):
        calibrate_run(_run("block", 1), "fast")
    with pytest.raises(ValueError, match="no window"):
        calibrate_run(SpeculativeResult(samples=torch.zeros(1, 1)), "block")


def _all_kept(weight: float, rounds: int = 100, window: int = 4) -> SpeculativeResult:
    """A synthetic block-rule log: every round keeps its whole window, every weight is ``weight``."""
    weights = torch.full((1, window), weight, dtype=torch.float64)
    return SpeculativeResult(
        samples=torch.zeros(1, 1),
        accepted=[torch.tensor([window])] * rounds,
        weights=[weights] * rounds,
        deltas=[torch.full((1, window), 1e-6, dtype=torch.float64)] * rounds,
        windows=[torch.tensor([window])] * rounds,
    )


def test_block_z_stays_small_when_every_weight_is_one_up_to_rounding() -> None:
    # A draft equal to the target up to float32 rounding: weights 1 - 1e-6, nothing rejected. Without the floor on the
    # sum of squares every round's difference is +4e-6 and z = sqrt(rounds) = 10; with it, z = sqrt(400e-6) = 0.02.
    summary = calibrate_run(_all_kept(1 - 1e-6), "block")
    assert abs(summary.z) < 0.1 and all(abs(row.z) < 0.1 for row in summary.positions)
    assert calibrate_run(_all_kept(1.0), "block").z == 0.0
    # Negative control: weights of 0.9 with nothing ever rejected in 100 rounds is far off, and is rejected.
    assert calibrate_run(_all_kept(0.9), "block").z > z_threshold()
