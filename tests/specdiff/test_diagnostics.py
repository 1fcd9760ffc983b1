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
