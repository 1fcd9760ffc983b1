"""Figures from the saved results only (no sampling here): PNG files under ``docs/figures/``.

- ``acceptance_calibration.png``: the theory's ``alpha(delta)`` and expected steps per round (token vs block), and
  the measured acceptance per window position against the prediction (``results/calibration.json``);
- ``block_vs_token_gain.png``: measured against predicted block-over-token gain (``results/speedup.json``);
- ``exactness_qq.png``: QQ plots of the speculative samples against the closed-form law, with the negative
  controls (``results/exactness.json``);
- ``speedup_heatmap.png``: steps per target call over window and number of steps (``results/speedup.json``).

Run ``python -m simulations.figures [--results DIR] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from simulations.provenance import REPOSITORY_ROOT
from theory.gaussian import acceptance_probability
from theory.verification import constant_gap_block_profile, token_profile

RESULTS = REPOSITORY_ROOT / "results"
FIGURES = REPOSITORY_ROOT / "docs" / "figures"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def acceptance_figure(calibration: dict[str, Any], output: Path) -> None:
    deltas = np.linspace(0.0, 4.0, 200)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    left = axes[0]
    left.plot(deltas, acceptance_probability(deltas), color="black", label="α(δ) = 2Φ(−δ/2)")
    for window, style in ((4, ":"), (8, "--")):
        token = [1 + token_profile(np.full(window, d)).sum() for d in deltas]
        block = [1 + constant_gap_block_profile(float(d), window).sum() for d in deltas]
        left.plot(deltas, np.array(token) / (window + 1), style, color="tab:blue", label=f"token, L={window}")
        left.plot(deltas, np.array(block) / (window + 1), style, color="tab:red", label=f"block, L={window}")
    left.set_xlabel("gap δ")
    left.set_ylabel("α, and steps per round / (L+1)")
    left.set_title("Theory")
    left.legend(fontsize=7)
    right = axes[1]
    for record in calibration["records"]:
        if record["control"] is not None:
            continue
        rows = record["positions"]
        predicted = [row["predicted"] for row in rows]
        measured = [row["measured"] for row in rows]
        marker = "o" if record["rule"] == "block" else "s"
        right.scatter(predicted, measured, s=12, marker=marker, alpha=0.7)
    right.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    right.set_xlabel("predicted (token: mean α(δ_i); block: mean w_i)")
    right.set_ylabel("measured (token: acceptance; block: P(τ ≥ i))")
    right.set_title("Real sampler vs theory, per window position")
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def gain_figure(speedup: dict[str, Any], output: Path) -> None:
    gains = speedup["summary"]["gains"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    drafters = sorted({gain["drafter"] for gain in gains})
    for drafter in drafters:
        rows = [gain for gain in gains if gain["drafter"] == drafter]
        ax.errorbar(
            [row["predicted_gain"] for row in rows],
            [row["measured_gain"] for row in rows],
            yerr=[row["stderr"] for row in rows],
            fmt="o",
            markersize=3,
            label=drafter,
            alpha=0.7,
        )
    low = min(min(g["predicted_gain"] for g in gains), min(g["measured_gain"] for g in gains))
    high = max(max(g["predicted_gain"] for g in gains), max(g["measured_gain"] for g in gains))
    ax.plot([low, high], [low, high], color="black", linewidth=0.8)
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set_xlabel("predicted gain (from the logged gaps and weights)")
    ax.set_ylabel("measured gain (steps per call, block / token)")
    ax.set_title("Block over token at equal window")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def qq_figure(exactness: dict[str, Any], output: Path) -> None:
    probabilities = np.asarray(exactness["qq_probabilities"])
    normal = stats.norm.ppf(probabilities)
    fig, ax = plt.subplots(figsize=(5, 5))
    for record in exactness["records"]:
        if record.get("qq_quantiles") is None:
            continue
        control = record["control"]
        ax.plot(
            normal,
            record["qq_quantiles"],
            color="tab:red" if control else "tab:blue",
            alpha=0.9 if control else 0.15,
            linewidth=1.2 if control else 0.8,
            label=f"control: {control}" if control else None,
        )
    ax.plot(normal, normal, color="black", linewidth=0.8)
    ax.set_xlabel("N(0, 1) quantile")
    ax.set_ylabel("standardized sample quantile (mean direction)")
    ax.set_title("Exactness: all configurations (blue) and controls (red)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def speedup_figure(speedup: dict[str, Any], output: Path, drafter: str = "free-reuse", rule: str = "block") -> None:
    records = [r for r in speedup["records"] if r["drafter"] == drafter and r["rule"] == rule]
    dimensions = sorted({r["dimension"] for r in records})
    steps = sorted({r["steps"] for r in records})
    windows = [w for w in dict.fromkeys(r["window"] for r in records)]
    fig, axes = plt.subplots(1, len(dimensions), figsize=(4 * len(dimensions), 3.5), squeeze=False)
    for ax, dimension in zip(axes[0], dimensions, strict=True):
        grid = np.full((len(steps), len(windows)), np.nan)
        for r in records:
            if r["dimension"] == dimension:
                grid[steps.index(r["steps"]), windows.index(r["window"])] = r["steps_per_call"]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", origin="lower")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(windows)), windows, fontsize=7, rotation=45)
        ax.set_yticks(range(len(steps)), [str(s) for s in steps])
        ax.set_xlabel("window L")
        ax.set_ylabel("steps N")
        ax.set_title(f"d = {dimension}")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"Steps per target call, {rule} rule, {drafter} drafter")
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=FIGURES)
    arguments = parser.parse_args(argv)
    arguments.output.mkdir(parents=True, exist_ok=True)
    written = []
    figure_function = Callable[[dict[str, Any], Path], None]
    sources: dict[str, list[tuple[figure_function, str]]] = {
        "calibration.json": [(acceptance_figure, "acceptance_calibration.png")],
        "speedup.json": [(gain_figure, "block_vs_token_gain.png"), (speedup_figure, "speedup_heatmap.png")],
        "exactness.json": [(qq_figure, "exactness_qq.png")],
    }
    for source, figures in sources.items():
        path = arguments.results / source
        if not path.exists():
            print(f"missing {path}: run python -m simulations.{source.removesuffix('.json')} first", file=sys.stderr)
            return 1
        data = _load(path)
        for function, name in figures:
            function(data, arguments.output / name)
            written.append(name)
    print("wrote " + ", ".join(str(arguments.output / name) for name in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
