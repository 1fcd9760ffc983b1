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

Run ``python -m simulations.peer_gm`` (full, 100 trajectories per cell) or ``--smoke``. Writes
``results/peer_gm.json``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from simulations.common import network_drafter, script_arguments, write_results
from simulations.provenance import REPOSITORY_ROOT
from specdiff.chain import Model
from specdiff.kernels import GaussianTransition, Kernel
from specdiff.models.gmm import GaussianMixture
from specdiff.policies import AdaptiveWindow, FixedWindow, WindowPolicy
from specdiff.sampler import RuleName, sample

DEFAULT_OUTPUT = REPOSITORY_ROOT / "results" / "peer_gm.json"
SMOKE_OUTPUT = REPOSITORY_ROOT / "results" / "smoke" / "peer_gm.json"
DEFAULT_SEED = 11
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
class Record:
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
    wall_seconds: float


def _policy(window: str, config: Config) -> WindowPolicy:
    if window == "adaptive":
        return AdaptiveWindow(max_window=config.adaptive_max_window)
    return FixedWindow(int(window))


def measure(config: Config, drafter: str, rule: str, window: str, seed: int) -> Record:
    """One cell: ``config.trajectories`` trajectories of the 28 stochastic steps."""
    model = denoiser(benchmark_mixture())
    kernel = stochastic_kernel()
    result = sample(
        model,
        kernel,
        start_states(model, config.trajectories, seed),
        drafter=network_drafter(drafter),
        window=_policy(window, config),
        rule=RULE_LABELS[rule],
        generator=torch.Generator().manual_seed(seed + 1),
    )
    calls = result.sample_sequential_cost.numpy()
    ratios = STOCHASTIC_STEPS / calls
    return Record(
        drafter=drafter,
        rule=rule,
        window=window,
        trajectories=config.trajectories,
        speedup=float(ratios.mean()),
        speedup_stderr=float(ratios.std(ddof=1) / math.sqrt(ratios.size)),
        speedup_of_mean_calls=float(STOCHASTIC_STEPS / calls.mean()),
        calls=float(calls.mean()),
        target_calls=float(result.sample_rounds.double().mean()),
        draft_cost=float(result.sample_draft_cost.mean()),
        rows_per_round=result.rows_per_round,
        block_fraction=float(torch.cat(result.block_verified).double().mean()) if result.block_verified else 0.0,
        wall_seconds=result.wall_seconds,
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


def run(config: Config, seed: int, progress: bool = True) -> list[Record]:
    records = []
    windows = [str(w) for w in config.windows] + ["adaptive"]
    cells = [(d, r, w) for d in config.drafters for r in config.rules for w in windows]
    cells += [(d, "adaptive", "adaptive") for d in config.drafters]
    for drafter, rule, window in cells:
        # Common random numbers: every cell uses the same start states and per-trajectory randomness.
        record = measure(config, drafter, rule, window, seed)
        records.append(record)
        if progress:
            print(
                f"{drafter:<15} {rule:<6} L={window:<8} speedup {record.speedup:5.2f} +- {record.speedup_stderr:.2f}"
                f"  rows/round {record.rows_per_round:4.1f}  {record.wall_seconds:.1f}s",
                flush=True,
            )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    arguments = script_arguments(argv, __doc__ or "", DEFAULT_SEED, DEFAULT_OUTPUT, SMOKE_OUTPUT)
    config = SMOKE if arguments.smoke else FULL
    start = time.perf_counter()
    records = run(config, arguments.seed)
    payload: dict[str, Any] = {
        "script": "simulations.peer_gm",
        "preset": arguments.preset,
        "seed": arguments.seed,
        "config": asdict(config),
        "sanity": sanity(config.sanity_samples, arguments.seed),
        "peer": [{"configuration": name, "speedup": value} for name, value in PEER_RESULTS],
        "records": [asdict(r) for r in records],
        "seconds": time.perf_counter() - start,
    }
    write_results(arguments.output, payload)
    print(f"wrote {arguments.output} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
