"""The peer's Gaussian-mixture benchmark (``simulations.peer_gm``) and the DiT drafting sweep
(``simulations.dit_speedup``): the benchmark is built as specified, and both scripts' smoke runs record what their
tables read (no timing assertions)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from simulations import dit_speedup, peer_gm
from simulations.experiment import make_cells
from specdiff.chain import kernel_sigmas


def test_the_benchmark_mixture_and_grid_are_as_specified() -> None:
    mixture = peer_gm.benchmark_mixture()
    assert mixture.means.shape == (5, 512) and torch.allclose(
        mixture.weights, torch.full((5,), 0.2, dtype=torch.float64)
    )
    # Means first, then standard deviations, from default_rng(20260714).
    rng = np.random.default_rng(20260714)
    np.testing.assert_array_equal(mixture.means.numpy(), rng.uniform(-2, 2, size=(5, 512)))
    np.testing.assert_array_equal(mixture.variances.sqrt().numpy(), np.sqrt(rng.uniform(0.10, 0.25, size=5) ** 2))
    times = peer_gm.grid()
    assert times.shape == (31,) and times[0] == 1.0 and times[29] == pytest.approx(0.001) and times[30] == 0.0


def test_the_churn_steps_follow_the_reverse_sde() -> None:
    whole = peer_gm.ChurnKernel(0, 30)
    sigmas = kernel_sigmas(whole)
    # The first (s = 1) and last (s' = 0) steps are deterministic Euler steps; the 28 between are stochastic.
    assert sigmas[0] == 0.0 and sigmas[-1] == 0.0 and bool((sigmas[1:-1] > 0).all())
    assert peer_gm.stochastic_kernel().num_steps == peer_gm.STOCHASTIC_STEPS == 28
    # Step 10 by hand: mean A x + B v, v = (x - x0) / s, sd eps g sqrt(-dt).
    s, s_next = float(peer_gm.grid()[10]), float(peer_gm.grid()[11])
    dt, g2 = s_next - s, 2 * s / (1 - s)
    c = 0.06**2 * g2 / (2 * s)
    x, x0 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    step = whole.transition(x, x0, 10)
    expected = (1 + dt * c) * x + dt * (1 + c * (1 - s)) * (x - x0) / s
    torch.testing.assert_close(step.mean, expected)
    assert float(step.sigma) == pytest.approx(0.06 * math.sqrt(g2 * -dt))


def test_the_denoiser_is_the_posterior_mean_of_the_interpolant() -> None:
    mixture = peer_gm.benchmark_mixture()
    model = peer_gm.denoiser(mixture)
    # Near s = 0 the state is the data: a point at a component mean is denoised to (almost) itself.
    index = torch.tensor([29])
    x = mixture.means[2:3].clone()
    assert float((model(x, index) - x).abs().max()) < 1e-2
    # At s = 1 the state says nothing: the denoiser gives the mixture's mean.
    torch.testing.assert_close(model(torch.randn(1, 512, dtype=torch.float64), torch.tensor([0])), mixture.mean()[None])


def test_peer_benchmark_smoke_run_records_speedups(tmp_path: Path) -> None:
    output = tmp_path / "peer_gm.json"
    assert peer_gm.main(["--smoke", "--output", str(output), "--store", str(tmp_path / "cells")]) == 0
    payload = json.loads(output.read_text())
    records = payload["records"]
    config = peer_gm.SMOKE
    assert len(records) == len(config.drafters) * (len(config.rules) * (len(config.windows) + 1) + 1)
    assert {(r["drafter"], r["rule"], r["window"]) for r in records} == {
        (c.drafter, c.rule, c.window) for c in peer_gm.cells(config)
    }
    for record in records:
        assert "wall_seconds" not in record and record["trajectories"] == config.trajectories
        assert record["speedup_of_mean_calls"] == pytest.approx(peer_gm.STOCHASTIC_STEPS / record["calls"])
        assert 1 <= record["rows_per_round"] <= config.adaptive_max_window + 1
        if record["rule"] in ("token", "block"):
            assert record["block_fraction"] == (1.0 if record["rule"] == "block" else 0.0)
    sanity = payload["sanity"]
    assert sanity["samples"] == config.sanity_samples and sum(sanity["component_shares"]) == pytest.approx(1.0)
    assert len(sanity["spread_over_sd"]) == peer_gm.COMPONENTS
    assert [p["speedup"] for p in payload["peer"]][-1] == 2.04
    assert payload["config"]["trajectories"] == config.trajectories and payload["passed"] is True
    # Common random numbers: every cell has the same seed (so the same start states), and distinct keys.
    details = payload["sweep"]["cells_detail"]
    assert len({d["seed"] for d in details}) == 1 and len({d["key"] for d in details}) == len(records)


def test_peer_benchmark_cells_are_independent_of_their_order() -> None:
    cell = peer_gm.PeerCell("free-nearest", "token", "2", 4, 6)
    first, second = peer_gm.measure(cell, seed=3), peer_gm.measure(cell, seed=3)
    assert first == second and peer_gm.measure(cell, seed=4) != first


def test_dit_speedup_smoke_run_records_steps_per_call(tmp_path: Path) -> None:
    output = tmp_path / "dit_speedup.json"
    assert dit_speedup.main(["--smoke", "--output", str(output), "--store", str(tmp_path / "cells")]) == 0
    payload = json.loads(output.read_text())
    records = payload["records"]
    assert len(records) == len(dit_speedup.cells(dit_speedup.SMOKE)) == payload["sweep"]["cells"]
    for record in records:
        assert "wall_seconds" not in record and record["samples"] == dit_speedup.SMOKE.samples
        assert record["steps_per_call"] == pytest.approx(record["steps"] / record["calls"])
        assert record["target_calls"] <= record["steps"]
        assert record["calls"] == pytest.approx(record["target_calls"] + record["draft_cost"])
    assert {r["rule"] for r in records} == {"token", "block", "adaptive"}
    assert payload["config"]["steps"] == list(dit_speedup.SMOKE.steps)
    # Common random numbers: the cells of one N share their seed.
    assert len({d["seed"] for d in payload["sweep"]["cells_detail"]}) == len(dit_speedup.SMOKE.steps)


def test_dit_speedup_cells_of_one_n_share_their_seed() -> None:
    config = replace(dit_speedup.SMOKE, steps=(20, 50), drafters=("frozen",))
    cells = make_cells(dit_speedup.EXPERIMENT, config, root_seed=1)
    seeds = {steps: {c.seed for c in cells if c.parameters.steps == steps} for steps in config.steps}
    assert all(len(group) == 1 for group in seeds.values()) and seeds[20] != seeds[50]
    assert len({c.key for c in cells}) == len(cells)
