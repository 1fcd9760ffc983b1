"""The peer project's Gaussian-mixture benchmark (tree-specdiff, paper Sec. 5.1), run through this project's sampler.

The benchmark, rebuilt from its description:

- data: 5 equally weighted isotropic Gaussians in d = 512; means ~ U(-2, 2)^d, then standard deviations
  ~ U(0.10, 0.25), drawn in that order from ``numpy.random.default_rng(20260714)``;
- interpolant ``x_s = (1 - s) x0 + s xi`` (s = 1 noise, s = 0 data), the exact denoiser ``E[x0 | x_s]`` as the
  target, velocity ``v = (x - E[x0 | x]) / s``;
- grid ``s_j = linspace(1000, 1, 30) / 1000`` for j < 30 and ``s_30 = 0``; step j (``s -> s'``, ``dt = s' - s < 0``)
  is the churn reverse SDE with ``g^2 = 2 s / (1 - s)``, ``c = eps^2 g^2 / (2 s)``, ``eps = 0.06``: mean
  ``A x + B v`` with ``A = 1 + dt c`` and ``B = dt (1 + c (1 - s))``, standard deviation ``eps g sqrt(-dt)``;
- the first and last steps are deterministic Euler steps, excluded from both sides: the benchmark is the 28
  stochastic steps. The chain starts from N(0, I) at s = 1; the first Euler step is taken outside the sampler, so
  the first speculative round of a reuse drafter (which has no prediction yet) is a plain step and counted as its
  warm-up call. ``speedup = 28 / sequential target calls per trajectory`` (draft cost included), averaged over
  trajectories.

Every drafter that fits a network target (free reuse in both modes, frozen, extrapolating), windows 1-7 and the
adaptive policy, with token-reflection, block, and the policy choosing the rule per round. A round evaluates L + 1
target rows per sample (its window's states); the table reports that number next to the speedup.

Each (drafter, rule, window) is a cell of the experiment framework (``simulations.experiment``); every cell has the
same seed (``shared_seed_fields``), so all use the same start states and per-trajectory randomness (common random
numbers) and their comparisons are paired. The records hold counts of calls, not wall times. The summary adds a
sanity check of the benchmark itself (plain sampling of all 30 steps, seeded by ``SANITY_SEED``) and the peer's
published speedups.

Run ``python -m simulations.peer_gm`` (full, 100 trajectories per cell) or ``--smoke`` (seconds, used by the tests).
Writes ``results/peer_gm.json`` (``results/smoke/peer_gm.json`` with ``--smoke``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simulations.common import network_drafter
from simulations.experiment import Experiment, Summary
from simulations.experiment import main as experiment_main
from simulations.provenance import SAMPLER_CODE
from specdiff.chain import Model
from specdiff.kernels import GaussianTransition, Kernel
from specdiff.models.gmm import GaussianMixture
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample

DEFAULT_SEED = 11
#: The seed of the summary's sanity check (plain sampling of the benchmark; not a cell, so not from a cell's seed).
SANITY_SEED = 11
DATA_SEED = 20260714
DIMENSION = 512
COMPONENTS = 5
GRID_POINTS = 30
CHURN = 0.06
STOCHASTIC_STEPS = GRID_POINTS - 2
RULE_LABELS: dict[str, RuleName] = {"token": "token-reflection", "block": "block", "adaptive": "adaptive"}

#: The peer's published NFE speedups on this benchmark (their configuration: their speedup).
PEER_RESULTS: tuple[tuple[str, float], ...] = (
    ("no reuse of any evaluation (prefetch none)", 1.11),
    ("chain drafting 3 steps, reflection coupling", 1.77),
    ("tree, 2 children per node", 1.83),
    ("tree, 4 children per node", 1.89),
    ("chain drafting 7 steps", 1.93),
    ("tree with its leaves carried over (their best)", 2.04),
)


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Attributes
    ----------
    drafters : tuple of str
        Network drafters (``simulations.common.NETWORK_DRAFTER_NAMES``).
    rules : tuple of str
        Fixed rules (``"token"``, ``"block"``); the policy's choice per round is always added.
    windows : tuple of int
        Fixed windows (the adaptive window is always added).
    adaptive_max_window : int
    trajectories : int
        Trajectories per cell.
    sanity_samples : int
        Samples of the summary's sanity check.
    """

    drafters: tuple[str, ...]
    rules: tuple[str, ...]
    windows: tuple[int, ...]
    adaptive_max_window: int
    trajectories: int
    sanity_samples: int


FULL = Config(drafters=("free-nearest", "free-committed", "frozen", "extrapolating"), rules=("token", "block"),
              windows=tuple(range(1, 8)), adaptive_max_window=7, trajectories=100, sanity_samples=2000)  # fmt: skip
SMOKE = Config(drafters=("free-nearest", "frozen"), rules=("token", "block"), windows=(2,), adaptive_max_window=4,
               trajectories=8, sanity_samples=200)  # fmt: skip


def grid() -> torch.Tensor:
    """The interpolant times ``s_0 = 1 > ... > s_29 = 0.001 > s_30 = 0``, shape (31,), float64."""
    return torch.cat([torch.linspace(1000.0, 1.0, GRID_POINTS, dtype=torch.float64) / 1000.0, torch.zeros(1)])


def benchmark_mixture() -> GaussianMixture:
    """The 5 isotropic Gaussians in d = 512, drawn as the benchmark specifies."""
    rng = np.random.default_rng(DATA_SEED)
    means = rng.uniform(-2.0, 2.0, size=(COMPONENTS, DIMENSION))
    deviations = rng.uniform(0.10, 0.25, size=COMPONENTS)
    weights = torch.full((COMPONENTS,), 1.0 / COMPONENTS, dtype=torch.float64)
    return GaussianMixture(weights, torch.from_numpy(means), torch.from_numpy(deviations**2))


def denoiser(mixture: GaussianMixture) -> Model:
    """``model(x, t) -> E[x0 | x_s = x]`` with ``s = grid()[t]``.

    ``x_s = (1 - s) x0 + s xi`` is the variance-preserving state ``x_s / r`` with ``r = sqrt((1 - s)^2 + s^2)`` and
    ``abar = (1 - s)^2 / r^2``, so the mixture's VP posterior mean is the denoiser.
    """
    times = grid()

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = times[t.reshape(-1)]
        scale = torch.sqrt((1.0 - s) ** 2 + s**2)
        vp_state = x.double() / scale.reshape(-1, *([1] * (x.dim() - 1)))
        return mixture.denoise(vp_state, ((1.0 - s) / scale) ** 2).to(x.dtype)

    return model


class ChurnKernel(Kernel):
    """The benchmark's reverse-SDE steps on the grid points ``first..last - 1`` (step n goes from ``s`` to ``s'``).

    The model predicts ``E[x0 | x_s]`` (fed the state itself) and is called with the grid index as its timestep.
    A step with ``s = 1`` or ``s' = 0`` is a deterministic Euler step (sigma 0).
    """

    def __init__(self, first: int, last: int, churn: float = CHURN) -> None:
        # No noise schedule: the grid replaces it (the base class's schedule-based helpers are not used).
        self.prediction_type = "sample"
        self.clip_sample = False
        self.timesteps = torch.arange(first, last, dtype=torch.long)
        times = grid()
        self._times = [(float(times[j]), float(times[j + 1])) for j in range(first, last)]
        self.churn = churn

    def transition(self, x: torch.Tensor, prediction: torch.Tensor, step_index: int) -> GaussianTransition:
        s, s_next = self._times[self._check_step(step_index)]
        dt = s_next - s
        velocity = (x - prediction) / s
        if s >= 1.0 or s_next <= 0.0:
            return GaussianTransition(x + dt * velocity, self._sigma(0.0, x))
        g_squared = 2.0 * s / (1.0 - s)
        c = self.churn**2 * g_squared / (2.0 * s)
        a, b = 1.0 + dt * c, dt * (1.0 + c * (1.0 - s))
        return GaussianTransition(a * x + b * velocity, self._sigma(self.churn * math.sqrt(g_squared * -dt), x))


def euler_step(model: Model, x: torch.Tensor, grid_index: int) -> torch.Tensor:
    """The deterministic Euler step from grid point ``grid_index`` (one model call, outside the benchmark)."""
    kernel = ChurnKernel(grid_index, grid_index + 1)
    steps = torch.full((x.shape[0],), grid_index, dtype=torch.long)
    return kernel.transition(x, model(x, steps), 0).mean


def stochastic_kernel() -> ChurnKernel:
    """The 28 stochastic steps, grid points 1..28."""
    return ChurnKernel(1, GRID_POINTS - 1)


def start_states(model: Model, trajectories: int, seed: int) -> torch.Tensor:
    """N(0, I) at s = 1 after the first (deterministic) Euler step, (trajectories, 512) float64."""
    noise = torch.randn(trajectories, DIMENSION, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return euler_step(model, noise, 0)


@dataclass(frozen=True)
class PeerCell:
    """The parameters of one cell."""

    drafter: str
    rule: str  # "token", "block", or "adaptive" (the policy chooses per sample and round)
    window: str  # "1".."7" or "adaptive"
    adaptive_max_window: int
    trajectories: int


@dataclass(frozen=True)
class Record:
    """One cell's record."""

    drafter: str
    rule: str  # "token", "block", or "adaptive" (the policy chooses per sample and round)
    window: str  # "1".."7" or "adaptive"
    trajectories: int
    speedup: float  # mean over trajectories of 28 / calls
    speedup_stderr: float
    speedup_of_mean_calls: float  # 28 / mean calls
    calls: float  # mean sequential target calls (+ draft cost) per trajectory
    target_calls: float
    draft_cost: float
    rows_per_round: float  # target rows a round evaluates per trajectory (L + 1), averaged over its rounds
    block_fraction: float  # share of verified rounds that used the block rule


def cells(config: Config) -> list[PeerCell]:
    """Every drafter with each fixed rule at every window (the adaptive one included), then every drafter with the
    rule chosen per round (adaptive window)."""
    windows = [str(w) for w in config.windows] + ["adaptive"]
    fixed = [
        PeerCell(drafter, rule, window, config.adaptive_max_window, config.trajectories)
        for drafter in config.drafters
        for rule in config.rules
        for window in windows
    ]
    chosen = [
        PeerCell(drafter, "adaptive", "adaptive", config.adaptive_max_window, config.trajectories)
        for drafter in config.drafters
    ]
    return fixed + chosen


def window_policy(window: str, adaptive_max_window: int) -> WindowPolicy:
    """The adaptive window (at most ``adaptive_max_window``) for ``"adaptive"``, else a fixed window."""
    return AdaptiveWindow(max_window=adaptive_max_window) if window == "adaptive" else FixedWindow(int(window))


def measure(cell: PeerCell, seed: int) -> Record:
    """One cell: ``cell.trajectories`` trajectories of the 28 stochastic steps; the start states use ``seed``, the
    trajectories' randomness ``seed + 1``."""
    model = denoiser(benchmark_mixture())
    kernel = stochastic_kernel()
    result = sample(
        model,
        kernel,
        start_states(model, cell.trajectories, seed),
        drafter=network_drafter(cell.drafter),
        window=window_policy(cell.window, cell.adaptive_max_window),
        rule=RULE_LABELS[cell.rule],
        generator=torch.Generator().manual_seed(seed + 1),
    )
    calls = result.sample_sequential_cost.numpy()
    ratios = STOCHASTIC_STEPS / calls
    return Record(
        drafter=cell.drafter,
        rule=cell.rule,
        window=cell.window,
        trajectories=cell.trajectories,
        speedup=float(ratios.mean()),
        speedup_stderr=float(ratios.std(ddof=1) / math.sqrt(ratios.size)),
        speedup_of_mean_calls=float(STOCHASTIC_STEPS / calls.mean()),
        calls=float(calls.mean()),
        target_calls=float(result.sample_rounds.double().mean()),
        draft_cost=float(result.sample_draft_cost.mean()),
        rows_per_round=result.rows_per_round,
        block_fraction=float(torch.cat(result.block_verified).double().mean()) if result.block_verified else 0.0,
    )


def sanity(samples: int, seed: int) -> dict[str, Any]:
    """Plain sampling of all 30 steps: the share of samples nearest each component and their spread around it, in
    units of the component's standard deviation (the benchmark's check: 0.19-0.21 and 0.88-0.93)."""
    mixture = benchmark_mixture()
    model = denoiser(mixture)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, DIMENSION, dtype=torch.float64, generator=generator)
    kernel = ChurnKernel(0, GRID_POINTS)
    steps = torch.zeros(samples, dtype=torch.long)
    for step in range(kernel.num_steps):
        transition = kernel.transition(x, model(x, steps + step), step)
        x = transition.mean + transition.sigma * torch.randn(x.shape, dtype=x.dtype, generator=generator)
    nearest = torch.cdist(x, mixture.means).argmin(dim=1)
    shares = torch.bincount(nearest, minlength=COMPONENTS).double() / samples
    spreads = []
    for component in range(COMPONENTS):
        members = x[nearest == component]
        deviation = (members - mixture.means[component]).pow(2).mean().sqrt()
        spreads.append(float(deviation / mixture.variances[component].sqrt()))
    return {"samples": samples, "component_shares": shares.tolist(), "spread_over_sd": spreads}


def describe(record: Mapping[str, Any]) -> str:
    """A printed line per cell."""
    return (
        f"{record['drafter']:<15} {record['rule']:<8} L={record['window']:<8} speedup {record['speedup']:5.2f} "
        f"+- {record['speedup_stderr']:.2f}  rows/round {record['rows_per_round']:4.1f}"
    )


def summarize(config: Config, records: Sequence[Mapping[str, Any]]) -> Summary:
    """The sanity check of the benchmark (plain sampling, ``SANITY_SEED``) and the peer's published speedups (a
    measurement: it always passes)."""
    check = sanity(config.sanity_samples, SANITY_SEED)
    peer = [{"configuration": name, "speedup": value} for name, value in PEER_RESULTS]
    best = max(records, key=lambda record: record["speedup"]) if records else None
    shares = ", ".join(f"{share:.3f}" for share in check["component_shares"])
    text = f"sanity: component shares {shares}" + (f"\nbest: {describe(best)}" if best is not None else "")
    return Summary(fields={"sanity": check, "peer": peer}, text=text)


EXPERIMENT = Experiment(
    module="simulations.peer_gm",
    description=__doc__ or "",
    presets={"full": FULL, "smoke": SMOKE},
    default_seed=DEFAULT_SEED,
    output="peer_gm.json",
    code=(*SAMPLER_CODE, "specdiff/models/gmm.py", "simulations/common.py", "simulations/peer_gm.py"),
    cells=cells,
    run_cell=measure,
    summarize=summarize,
    describe=describe,
    shared_seed_fields=("drafter", "rule", "window", "adaptive_max_window"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return experiment_main(EXPERIMENT, argv)


if __name__ == "__main__":
    sys.exit(main())
