"""Every figure of the paper, from the saved results only (no sampling here): PNG and PDF under ``docs/figures/``.

Each figure is written as ``STEM.png`` (150 dpi) and ``STEM.pdf`` (no creation date, so that regenerating an
unchanged figure does not change the file). Inputs are paths under the results folder (``results/``):

- ``acceptance_calibration``, from ``calibration.json``: (a) the per-step acceptance ``alpha(delta) = 2 Phi(-delta/2)``
  with the token rule's measured acceptance per window position, placed at the gap whose ``alpha`` is the position's
  predicted (mean) acceptance; (b) steps per round against a constant gap for the token and block rules at the run's
  window (theory), with every run's measured steps per round placed at the gap at which the theory gives its
  prediction, negative controls included; (c) measured against predicted rates per window position.
- ``block_vs_token_gain``, from ``speedup.json``: (a) the block-over-token gain in steps per round against a constant
  gap for several windows (``theory.cost.constant_gap_block_gain``), with the measured gains placed at the constant
  gap that gives the token rule's predicted steps per round; (b) gain against the window at the largest number of
  steps (committed reuse drafter), measured and predicted from the logged gaps; (c) measured against predicted gain,
  every comparison. (a) and (b) leave out the nearest reuse drafter, whose draft depends on the rule's residual.
- ``exactness_qq``, from ``exactness.json``: (a) QQ plots of the speculative samples against the closed-form law,
  every configuration and the negative controls; (b) the same, detrended, with the pointwise band of an exact sampler.
- ``speedup_heatmap``, from ``speedup.json``: steps per target call (top) over window and number of steps, per
  dimension (the defaults: token-reflection rule, free-nearest drafter), and (bottom, adaptive window) against the
  number of steps and against the dimension (both rules), and for every drafter against the dimension at the largest
  number of steps.
- ``gpu_cost_curves``, from ``gpu/bench_gpu.json`` (with ``gpu/bench_gpu_host.json`` and ``bench_cpu.json`` when
  present): (a) seconds per network call against the states per call on the GPU, every model and early exit; (b) the
  digits network's cost relative to one state, per placement.
- ``gpu_wall_speedup``, from ``gpu/bench_gpu.json`` (with ``gpu/bench_gpu_host.json`` when present): plain over
  speculative wall time per cell (drafter, window, rule by steps and batch), per run, and against the call ratio.
- ``demo_samples``, from ``demo/demo.json`` and ``demo/demo_digits.png``: the digits of ``specdiff demo``, plain and
  speculative, with the run's numbers.

- ``dit_digits_samples``, from ``dit_quality.json``: the shipped DiT's samples, one row per class (the images the
  quality run stored).
- ``sd_digits_samples``, from ``sd_digits.json``: the Stable-Diffusion-architecture digits model's plain samples,
  one row per prompt (the images its quality cell stored).

A figure whose inputs are missing is skipped and reported on stderr. Run
``python -m simulations.figures [--results DIR] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors, ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import optimize, stats

from simulations.bench_gpu import bench_view
from simulations.dit_quality import grid_figure
from simulations.provenance import REPOSITORY_ROOT
from theory.cost import constant_gap_block_gain
from theory.gaussian import acceptance_probability
from theory.verification import constant_gap_block_profile, token_profile

RESULTS = REPOSITORY_ROOT / "results"
FIGURES = REPOSITORY_ROOT / "docs" / "figures"
PNG_DPI = 150
DIMENSION_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")
DRAFTER_MARKERS = {
    "free-nearest": "o",
    "free-committed": "P",
    "frozen": "s",
    "model": "^",
    "extrapolating": "D",
    "free-exit": "v",
}
#: Drafters whose draft depends on the rule (the nearest reuse takes the rejected draft's prediction after a token
#: rejection): their block-over-token gain is not the per-round gain of the constant-gap theory.
RULE_DEPENDENT_DRAFTERS = ("free-nearest",)
CONTROL_MARKERS = ("X", "P", "*", "h", "8")
CONTROL_COLORS = ("tab:red", "tab:orange", "tab:pink", "tab:brown", "tab:olive", "tab:cyan")
RULE_COLORS = {"token": "tab:blue", "block": "tab:red"}
LARGEST_GAP = 60.0  # beyond it every rule accepts nothing (alpha(60) ~ 1e-51)

Payload = dict[str, Any]


def _load(path: Path) -> Payload:
    payload: Payload = json.loads(path.read_text())
    # A bench file, in either layout, as its speedup records and cost curves.
    return bench_view(payload) if path.name.startswith("bench") else payload


def _save(fig: Figure, stem: Path) -> list[Path]:
    """``stem.png`` and ``stem.pdf`` (the PDF without a creation date, so that it is reproducible)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
    fig.savefig(png, dpi=PNG_DPI)
    fig.savefig(pdf, metadata={"CreationDate": None})
    plt.close(fig)
    return [png, pdf]


def _rule(name: str) -> str:
    """``token`` or ``block``: the family of a verification rule (``token-reflection`` is a token rule)."""
    return "block" if name == "block" else "token"


def _dimension_color(dimensions: Sequence[int], dimension: int) -> str:
    return DIMENSION_COLORS[sorted(dimensions).index(dimension) % len(DIMENSION_COLORS)]


def _marker(drafter: str) -> str:
    return DRAFTER_MARKERS.get(drafter, "o")


def _steps_per_round(delta: float, window: int, rule: str) -> float:
    """``1 + E tau`` for a constant gap ``delta`` over a window of ``window`` drafted steps."""
    if _rule(rule) == "block":
        return 1.0 + float(constant_gap_block_profile(delta, window).sum())
    return 1.0 + float(token_profile(np.full(window, delta)).sum())


def _equivalent_gap(steps_per_round: float, window: int, rule: str) -> float:
    """The constant gap at which the theory gives ``steps_per_round`` (NaN outside ``(1, window + 1]``)."""

    def excess(delta: float) -> float:
        return _steps_per_round(delta, window, rule) - steps_per_round

    if excess(0.0) <= 0.0:
        return 0.0
    if excess(LARGEST_GAP) >= 0.0:
        return float("nan")
    return float(optimize.brentq(excess, 0.0, LARGEST_GAP, xtol=1e-6))


def _alpha_inverse(acceptance: float) -> float:
    """The gap ``delta`` with ``alpha(delta) = acceptance``: ``-2 Phi^{-1}(acceptance / 2)``."""
    return float(-2.0 * stats.norm.ppf(min(max(acceptance, 1e-300), 1.0) / 2.0))


def _legend_handles(entries: Sequence[tuple[str, dict[str, Any]]]) -> list[Line2D]:
    return [Line2D([], [], label=label, **style) for label, style in entries]


def _heatmap(
    ax: Axes,
    grid: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    cmap: str,
    norm: colors.Normalize,
    fmt: str,
    fontsize: float = 7.0,
    origin: Literal["upper", "lower"] = "lower",
) -> Any:
    """``grid`` (rows x columns) as an image with one label per cell, dark text on light cells and vice versa."""
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="0.9")
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=colormap, norm=norm, origin=origin)
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            red, green, blue, _ = colormap(norm(value))
            luminance = 0.299 * red + 0.587 * green + 0.114 * blue
            ax.text(
                j,
                i,
                format(value, fmt),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="black" if luminance > 0.5 else "white",
            )
        else:
            ax.text(j, i, "–", ha="center", va="center", fontsize=fontsize, color="0.4")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    return image


def _log_ticks(axis: Any, low: float, high: float, margin: float = 1.5) -> None:
    """Ticks at the powers of two within ``[low / margin, high * margin]`` on a log axis, plain labels, no minor."""
    ticks = [2.0**k for k in range(-6, 11) if low / margin <= 2.0**k <= margin * high]
    axis.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    axis.set_minor_formatter(ticker.NullFormatter())


# ----------------------------------------------------------------------------------------------------------------------
# acceptance_calibration (calibration.json)


def acceptance_figure(calibration: Payload, output_stem: Path) -> list[Path]:
    """Acceptance against the gap, theory and the calibration runs (see the module docstring)."""
    records = calibration["records"]
    window = int(calibration["config"]["window"])
    dimensions = sorted({record["dimension"] for record in records})
    controls = sorted({record["control"] for record in records if record["control"] is not None})
    control_marker = {control: CONTROL_MARKERS[k % len(CONTROL_MARKERS)] for k, control in enumerate(controls)}
    token_controls = sorted({r["control"] for r in records if r["control"] is not None and _rule(r["rule"]) == "token"})
    fig, (alpha_ax, round_ax, position_ax) = plt.subplots(1, 3, figsize=(16, 5.2), layout="constrained")

    # (a) per-step acceptance of the token rule, per window position.
    largest = 4.0
    for record in records:
        if _rule(record["rule"]) != "token":
            continue
        rows = record["positions"]
        gaps = np.array([_alpha_inverse(row["predicted"]) for row in rows])
        measured = np.array([row["measured"] for row in rows])
        errors = np.sqrt(measured * (1 - measured) / np.array([row["count"] for row in rows]))
        largest = max(largest, float(gaps.max()) + 0.3)
        style: dict[str, Any] = (
            {"color": _dimension_color(dimensions, record["dimension"]), "marker": _marker(record["drafter"])}
            if record["control"] is None
            else {"color": "black", "marker": control_marker[record["control"]]}
        )
        alpha_ax.errorbar(gaps, measured, yerr=errors, linestyle="none", markersize=4, alpha=0.8, **style)
    deltas = np.linspace(0.0, largest, 300)
    alpha_ax.plot(deltas, acceptance_probability(deltas), color="black", linewidth=1.0)
    alpha_ax.set_xlabel("gap δ (at which α(δ) is the predicted mean acceptance)")
    alpha_ax.set_ylabel("acceptance per drafted step")
    alpha_ax.set_title("(a) Token rule: acceptance per window position", fontsize=10)
    drafters = sorted({record["drafter"] for record in records})
    alpha_ax.legend(
        handles=_legend_handles(
            [("α(δ) = 2Φ(−δ/2)", {"color": "black"})]
            + [
                (f"d = {d}", {"color": _dimension_color(dimensions, d), "marker": "o", "linestyle": "none"})
                for d in dimensions
            ]
            + [(drafter, {"color": "0.5", "marker": _marker(drafter), "linestyle": "none"}) for drafter in drafters]
            + [
                (f"control: {c}", {"color": "black", "marker": control_marker[c], "linestyle": "none"})
                for c in token_controls
            ]
        ),
        fontsize=7,
        loc="upper right",
    )

    # (b) steps per round against a constant gap, both rules, with every run at its theory-equivalent gap.
    points = []
    for record in records:
        rule = _rule(record["rule"])
        gap = _equivalent_gap(record["predicted_steps_per_round"], window, rule)
        difference = record["measured_steps_per_round"] - record["predicted_steps_per_round"]
        error = abs(difference / record["z"]) if record["z"] else 0.0
        points.append((record, rule, gap, error))
    finite = [gap for _, _, gap, _ in points if np.isfinite(gap)]
    deltas = np.linspace(0.0, max([4.0, *(gap + 0.3 for gap in finite)]), 200)
    for rule in ("token", "block"):
        curve = [_steps_per_round(float(delta), window, rule) for delta in deltas]
        round_ax.plot(deltas, curve, color=RULE_COLORS[rule], linewidth=1.0, label=f"{rule} rule, theory")
    for record, rule, gap, error in points:
        if not np.isfinite(gap):
            continue
        point_style: dict[str, Any] = (
            {"color": RULE_COLORS[rule], "marker": _marker(record["drafter"]), "markersize": 5}
            if record["control"] is None
            else {"color": "black", "marker": control_marker[record["control"]], "markersize": 8}
        )
        round_ax.errorbar(gap, record["measured_steps_per_round"], yerr=error, linestyle="none", **point_style)
    round_ax.set_xlabel("constant gap δ at which the theory gives the run's prediction")
    round_ax.set_ylabel(f"steps per round (window L = {window})")
    round_ax.set_title("(b) Steps per round: theory (lines), measured (points)", fontsize=10)
    round_ax.legend(
        handles=_legend_handles(
            [(f"{rule} rule, theory", {"color": RULE_COLORS[rule]}) for rule in ("token", "block")]
            + [(drafter, {"color": "0.5", "marker": _marker(drafter), "linestyle": "none"}) for drafter in drafters]
            + [
                (
                    f"control: {c} (off its prediction)",
                    {"color": "black", "marker": control_marker[c], "linestyle": "none"},
                )
                for c in controls
            ]
        ),
        fontsize=7,
        loc="upper right",
    )

    # (c) measured against predicted, per window position.
    for record in records:
        positions = record["positions"]
        predicted = [row["predicted"] for row in positions]
        measured_rates = [row["measured"] for row in positions]
        scatter_style: dict[str, Any] = (
            {"color": RULE_COLORS[_rule(record["rule"])], "marker": _marker(record["drafter"]), "s": 14}
            if record["control"] is None
            else {"color": "black", "marker": control_marker[record["control"]], "s": 30}
        )
        position_ax.scatter(predicted, measured_rates, alpha=0.7, **scatter_style)
    position_ax.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    position_ax.set_xlabel("predicted (token: mean α(δ_i); block: mean w_i)")
    position_ax.set_ylabel("measured (token: acceptance at i; block: P(τ ≥ i))")
    position_ax.set_title("(c) Per window position, every run", fontsize=10)
    position_ax.legend(
        handles=_legend_handles(
            [
                (f"{rule} rule", {"color": RULE_COLORS[rule], "marker": "o", "linestyle": "none"})
                for rule in ("token", "block")
            ]
            + [
                (f"control: {c}", {"color": "black", "marker": control_marker[c], "linestyle": "none"})
                for c in controls
            ]
        ),
        fontsize=7,
        loc="upper left",
    )
    fig.suptitle(
        f"Acceptance against the gap: real sampler ({calibration['config']['steps']} DDPM steps, "
        f"{calibration['config']['samples']} samples per run) against the theory"
    )
    return _save(fig, output_stem)


# ----------------------------------------------------------------------------------------------------------------------
# block_vs_token_gain and speedup_heatmap (speedup.json)


def _shown_windows(windows: Sequence[int], count: int = 4) -> list[int]:
    """Up to ``count`` windows >= 2 to draw, powers of two first."""
    candidates = sorted({w for w in windows if w >= 2})
    powers = [w for w in candidates if w & (w - 1) == 0]
    return (powers or candidates)[-count:]


def gain_figure(speedup: Payload, output_stem: Path) -> list[Path]:
    """Block-over-token gain against the gap and the window (see the module docstring)."""
    gains = [
        gain
        for gain in speedup["summary"]["gains"]
        if gain["window"] != "adaptive" and gain["drafter"] not in RULE_DEPENDENT_DRAFTERS
    ]
    every_gain = speedup["summary"]["gains"]
    records = {(r["steps"], r["dimension"], r["drafter"], r["rule"], r["window"]): r for r in speedup["records"]}
    windows = _shown_windows([int(gain["window"]) for gain in gains])
    window_colors = {w: plt.get_cmap("viridis")(k / max(len(windows) - 1, 1) * 0.85) for k, w in enumerate(windows)}
    drafters = list(dict.fromkeys(gain["drafter"] for gain in every_gain))
    same_draft = [d for d in drafters if d not in RULE_DEPENDENT_DRAFTERS]
    dimensions = sorted({gain["dimension"] for gain in every_gain})
    fig, (gap_ax, window_ax, scatter_ax) = plt.subplots(1, 3, figsize=(16, 5.2), layout="constrained")

    # (a) gain against a constant gap, theory per window, measured at the token rule's equivalent gap.
    smallest, largest = 0.01, 4.0
    for gain in gains:
        window = int(gain["window"])
        token = records[(gain["steps"], gain["dimension"], gain["drafter"], "token", gain["window"])]
        if window not in windows or token["mean_window"] < 0.95 * window:  # skip windows cut short by the chain's end
            continue
        gap = _equivalent_gap(token["predicted_steps_per_round"], window, "token")
        if not np.isfinite(gap):
            continue
        largest = max(largest, 1.2 * gap)
        gap_ax.errorbar(
            max(gap, smallest),
            gain["measured_gain"],
            yerr=gain["stderr"],
            linestyle="none",
            markersize=4,
            alpha=0.75,
            color=window_colors[window],
            marker=_marker(gain["drafter"]),
        )
    deltas = np.geomspace(smallest, largest, 300)
    theory = constant_gap_block_gain(deltas, max(windows)) if windows else np.ones((deltas.size, 1))
    for window in windows:
        gap_ax.plot(deltas, theory[:, window], color=window_colors[window], linewidth=1.2)
    gap_ax.axhline(1.0, color="grey", linewidth=0.5)
    gap_ax.set_xscale("log")
    gap_ax.set_xlabel("constant gap δ\n(points: the gap at which the token rule's theory gives the run's prediction)")
    gap_ax.set_ylabel("gain, block / token (theory: steps per round; measured: per call)")
    gap_ax.set_title(
        "(a) Gain against the gap: constant-gap theory (lines), measured (points);\ndrafters whose draft does not "
        "depend on the rule",
        fontsize=10,
    )
    gap_ax.legend(
        handles=_legend_handles(
            [(f"L = {w}", {"color": window_colors[w], "marker": "o"}) for w in windows]
            + [(d, {"color": "0.5", "marker": _marker(d), "linestyle": "none"}) for d in same_draft]
        ),
        fontsize=7,
        loc="upper right",
    )

    # (b) gain against the window at the largest number of steps: measured and predicted from the logged gaps.
    steps = max(gain["steps"] for gain in every_gain)
    drafter = "free-committed" if "free-committed" in same_draft else (same_draft or drafters)[0]
    for dimension in dimensions:
        rows = sorted(
            (g for g in gains if (g["steps"], g["dimension"], g["drafter"]) == (steps, dimension, drafter)),
            key=lambda g: int(g["window"]),
        )
        color = _dimension_color(dimensions, dimension)
        x = [int(g["window"]) for g in rows]
        window_ax.plot(x, [g["predicted_gain"] for g in rows], color=color, linewidth=1.0)
        window_ax.errorbar(
            x,
            [g["measured_gain"] for g in rows],
            yerr=[g["stderr"] for g in rows],
            color=color,
            marker="o",
            markersize=4,
            linestyle="none",
            label=f"d = {dimension}",
        )
    window_ax.axhline(1.0, color="grey", linewidth=0.5)
    window_ax.set_xlabel("window L")
    window_ax.set_ylabel("gain in steps per target call, block / token")
    window_ax.set_title(
        f"(b) Against the window, N = {steps}, {drafter} drafter:\nmeasured (points), predicted from the logged gaps "
        "(lines)",
        fontsize=10,
    )
    window_ax.legend(fontsize=7, loc="upper left")

    # (c) measured against predicted, every comparison.
    for name in drafters:
        rows = [gain for gain in every_gain if gain["drafter"] == name]
        scatter_ax.errorbar(
            [row["predicted_gain"] for row in rows],
            [row["measured_gain"] for row in rows],
            yerr=[row["stderr"] for row in rows],
            fmt=_marker(name),
            markersize=3,
            label=name,
            alpha=0.6,
        )
    low = min(min(g["predicted_gain"] for g in every_gain), min(g["measured_gain"] for g in every_gain))
    high = max(max(g["predicted_gain"] for g in every_gain), max(g["measured_gain"] for g in every_gain))
    scatter_ax.plot([low, high], [low, high], color="black", linewidth=0.8)
    scatter_ax.axhline(1.0, color="grey", linewidth=0.5)
    scatter_ax.set_xlabel("predicted gain (from the logged gaps and weights)")
    scatter_ax.set_ylabel("measured gain (steps per call, block / token)")
    scatter_ax.set_title(f"(c) Measured against predicted, all {len(every_gain)} comparisons", fontsize=10)
    scatter_ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Block over token verification at equal window")
    return _save(fig, output_stem)


def speedup_figure(
    speedup: Payload, output_stem: Path, drafter: str = "free-nearest", rule: str = "token"
) -> list[Path]:
    """Steps per target call over window, steps and dimension (see the module docstring)."""
    records = speedup["records"]
    drafters = list(dict.fromkeys(r["drafter"] for r in records))
    drafter = drafter if drafter in drafters else drafters[0]
    index = {(r["steps"], r["dimension"], r["drafter"], r["rule"], r["window"]): r for r in records}
    dimensions = sorted({r["dimension"] for r in records})
    steps = sorted({r["steps"] for r in records})
    windows = list(dict.fromkeys(r["window"] for r in records))
    columns = max(len(dimensions), 3)
    fig = plt.figure(figsize=(4.6 * columns, 11), layout="constrained")
    grid = fig.add_gridspec(2, columns, height_ratios=(1.5, 1))
    values = [r["steps_per_call"] for r in records if (r["drafter"], r["rule"]) == (drafter, rule)]
    norm = colors.Normalize(vmin=min(values), vmax=max(values))
    image = None
    heat_axes = []
    for k, dimension in enumerate(dimensions):
        ax = fig.add_subplot(grid[0, k])
        cells = np.full((len(windows), len(steps)), np.nan)
        for (i, window), (j, n) in itertools.product(enumerate(windows), enumerate(steps)):
            record = index.get((n, dimension, drafter, rule, window))
            if record is not None:
                cells[i, j] = record["steps_per_call"]
        image = _heatmap(ax, cells, windows, [str(s) for s in steps], "viridis", norm, ".1f", fontsize=7.5)
        if "adaptive" in windows:  # set the adaptive policy apart from the fixed windows
            ax.axhline(windows.index("adaptive") - 0.5, color="white", linewidth=2.0)
        ax.set_xlabel("steps N")
        ax.set_ylabel("window L")
        ax.set_title(f"d = {dimension}", fontsize=10)
        heat_axes.append(ax)
    if image is not None:
        fig.colorbar(image, ax=heat_axes, shrink=0.9, label="steps per target call")

    def line(ax: Axes, x: Sequence[float], keys: Sequence[tuple[Any, ...]], **style: Any) -> None:
        points = [(value, index[key]["steps_per_call"]) for value, key in zip(x, keys, strict=True) if key in index]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=4, **style)

    steps_ax, dimension_ax, drafter_ax = (fig.add_subplot(grid[1, k]) for k in range(3))
    for dimension in dimensions:
        color = _dimension_color(dimensions, dimension)
        for name, linestyle in (("block", "-"), ("token", "--")):
            line(
                steps_ax,
                steps,
                [(n, dimension, drafter, name, "adaptive") for n in steps],
                color=color,
                linestyle=linestyle,
                label=f"d = {dimension}, {name}",
            )
    step_colors = {n: plt.get_cmap("plasma")(k / max(len(steps) - 1, 1) * 0.85) for k, n in enumerate(steps)}
    for n in steps:
        for name, linestyle in (("block", "-"), ("token", "--")):
            line(
                dimension_ax,
                dimensions,
                [(n, d, drafter, name, "adaptive") for d in dimensions],
                color=step_colors[n],
                linestyle=linestyle,
                label=f"N = {n}, {name}",
            )
    largest = max(steps)
    for name in drafters:
        line(drafter_ax, dimensions, [(largest, d, name, "block", "adaptive") for d in dimensions], label=name)
    for ax, xlabel, title in (
        (steps_ax, "steps N", f"(a) Against the number of steps ({drafter} drafter)"),
        (dimension_ax, "dimension d", f"(b) Against the dimension ({drafter} drafter)"),
        (drafter_ax, "dimension d", f"(c) Every drafter, block rule, N = {largest}"),
    ):
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set_xscale("log")
        ticks = steps if ax is steps_ax else dimensions
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("steps per target call (adaptive window)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0.0, 1.35 * ax.get_ylim()[1])  # headroom for the legend above the lines
        ax.legend(fontsize=7, ncol=2 if ax is not drafter_ax else 1, loc="upper right")
    fig.suptitle(
        f"Steps per sequential target call (plain sampling: 1); top: {rule} rule, {drafter} drafter, by window; "
        f"{speedup['config']['samples']} samples per cell"
    )
    return _save(fig, output_stem)


# ----------------------------------------------------------------------------------------------------------------------
# exactness_qq (exactness.json)


def qq_figure(exactness: Payload, output_stem: Path) -> list[Path]:
    """QQ plots, plain and detrended (see the module docstring)."""
    probabilities = np.asarray(exactness["qq_probabilities"])
    normal = stats.norm.ppf(probabilities)
    records = [record for record in exactness["records"] if record.get("qq_quantiles") is not None]
    exact = [record for record in records if record["control"] is None]
    kernels = list(dict.fromkeys(record["kernel"] for record in exact))
    kernel_colors = {kernel: DIMENSION_COLORS[k % len(DIMENSION_COLORS)] for k, kernel in enumerate(kernels)}
    fig, (qq_ax, detrended_ax) = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
    for record in exact:
        qq_ax.plot(normal, record["qq_quantiles"], color="tab:blue", alpha=0.15, linewidth=0.8)
    controls = [record for record in records if record["control"] is not None]
    for k, record in enumerate(controls):
        qq_ax.plot(
            normal,
            record["qq_quantiles"],
            color=CONTROL_COLORS[k % len(CONTROL_COLORS)],
            linewidth=1.4,
            label=f"control: {record['control']}",
        )
    qq_ax.plot(normal, normal, color="black", linewidth=0.8, label="exact law")
    qq_ax.plot([], [], color="tab:blue", linewidth=0.8, label=f"{len(exact)} exact configurations")
    qq_ax.set_xlabel("N(0, 1) quantile")
    qq_ax.set_ylabel("standardized sample quantile (mean direction)")
    qq_ax.set_title("(a) QQ plots: every configuration and the negative controls", fontsize=10)
    qq_ax.legend(fontsize=7, loc="upper left")

    for record in exact:
        detrended_ax.plot(
            normal,
            np.asarray(record["qq_quantiles"]) - normal,
            color=kernel_colors[record["kernel"]],
            alpha=0.25,
            linewidth=0.8,
        )
    standard_error = np.sqrt(probabilities * (1 - probabilities)) / stats.norm.pdf(normal)  # times 1 / sqrt(n)
    z = stats.norm.isf(exactness["level"] / 2)
    for samples, linestyle in zip(sorted({record["samples"] for record in exact}), ("--", ":", "-."), strict=False):
        band = z * standard_error / np.sqrt(samples)
        detrended_ax.plot(
            normal,
            band,
            color="black",
            linestyle=linestyle,
            linewidth=0.9,
            label=f"pointwise {1 - exactness['level']:.3g} band, n = {samples}",
        )
        detrended_ax.plot(normal, -band, color="black", linestyle=linestyle, linewidth=0.9)
    for kernel in kernels:
        detrended_ax.plot([], [], color=kernel_colors[kernel], label=f"kernel: {kernel}")
    detrended_ax.axhline(0.0, color="grey", linewidth=0.5)
    detrended_ax.set_xlabel("N(0, 1) quantile")
    detrended_ax.set_ylabel("sample quantile − N(0, 1) quantile")
    detrended_ax.set_title("(b) Detrended, exact configurations only", fontsize=10)
    detrended_ax.legend(fontsize=7, loc="upper center", ncol=2)
    dimensions = sorted({record["dimension"] for record in exact})
    fig.suptitle(
        f"Exactness: speculative samples against the closed-form law ({', '.join(kernels)}; d = "
        f"{', '.join(map(str, dimensions))}; {exactness['config']['steps']} steps)"
    )
    return _save(fig, output_stem)


# ----------------------------------------------------------------------------------------------------------------------
# gpu_cost_curves and gpu_wall_speedup (gpu/bench_gpu.json, gpu/bench_gpu_host.json, bench_cpu.json)

BENCH_LABELS = {
    "gpu/bench_gpu.json": "states on the GPU",
    "gpu/bench_gpu_host.json": "states on the host, network on the GPU",
    "bench_cpu.json": "CPU",
}


def _device(bench: Payload) -> str:
    return str(bench["records"][0]["device"]) if bench["records"] else "?"


def gpu_cost_figure(benches: Mapping[str, Payload], output_stem: Path) -> list[Path]:
    """Seconds per network call against the states per call (see the module docstring)."""
    gpu = benches["gpu/bench_gpu.json"]
    fig, (absolute_ax, relative_ax) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    models = list(dict.fromkeys(curve["model"] for curve in gpu["cost_curves"]))
    model_colors = {model: DIMENSION_COLORS[k % len(DIMENSION_COLORS)] for k, model in enumerate(models)}
    for curve in gpu["cost_curves"]:
        depths = sorted((c["blocks"] for c in gpu["cost_curves"] if c["model"] == curve["model"]), reverse=True)
        full = depths[0]
        absolute_ax.plot(
            curve["batches"],
            1e3 * np.asarray(curve["seconds"]),
            color=model_colors[curve["model"]],
            linestyle=("-", "--", ":", "-.")[min(depths.index(curve["blocks"]), 3)],  # deeper exits: denser lines
            marker="o",
            markersize=3,
            label=f"{curve['model']}, {curve['blocks']} block{'s' if curve['blocks'] != 1 else ''}"
            + (" (full)" if curve["blocks"] == full else " (early exit)"),
        )
    absolute_ax.set_xscale("log", base=2)
    absolute_ax.set_yscale("log")
    absolute_ax.set_xlabel("states per call (batch B x (window L + 1))")
    absolute_ax.set_ylabel("milliseconds per call")
    absolute_ax.set_title(
        f"(a) Cost of one network call, {_device(gpu)}, {BENCH_LABELS['gpu/bench_gpu.json']}", fontsize=10
    )
    absolute_ax.legend(fontsize=7, loc="upper left")

    largest, blocks = 1, set()
    for name, bench in benches.items():
        digits = [curve for curve in bench["cost_curves"] if curve["model"] == "digits"]
        if not digits:
            continue
        curve = max(digits, key=lambda c: c["blocks"])
        seconds = np.asarray(curve["seconds"])
        largest, device = max(largest, *curve["batches"]), _device(bench)
        blocks.add(curve["blocks"])
        label = BENCH_LABELS.get(name, name) + ("" if device.lower() == "cpu" else f" ({device})")
        relative_ax.plot(
            curve["batches"],
            seconds / seconds[0],
            marker="o",
            markersize=3,
            label=f"{label}: {1e3 * seconds[0]:.2f} ms for {curve['batches'][0]} state(s)",
        )
    batches = np.array([1, largest])
    relative_ax.plot(batches, batches, color="grey", linestyle=":", label="cost proportional to the states")
    relative_ax.set_xscale("log", base=2)
    relative_ax.set_yscale("log")
    relative_ax.set_xlabel("states per call")
    relative_ax.set_ylabel("cost relative to one state")
    depth = "/".join(str(b) for b in sorted(blocks))
    relative_ax.set_title(f"(b) Digits network (full, {depth} blocks), per placement", fontsize=10)
    relative_ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Cost of one network call against the number of states it evaluates")
    return _save(fig, output_stem)


def gpu_speedup_figure(benches: Mapping[str, Payload], output_stem: Path) -> list[Path]:
    """Plain over speculative wall time per cell and against the call ratio (see the module docstring)."""
    runs = {name: bench for name, bench in benches.items() if name.startswith("gpu/")}
    configurations = list(
        dict.fromkeys((r["drafter"], r["window"], r["rule"]) for bench in runs.values() for r in bench["records"])
    )
    cells = sorted({(r["steps"], r["batch"]) for bench in runs.values() for r in bench["records"]})
    speedups = [r["speedup"] for bench in runs.values() for r in bench["records"]]
    span = max(max(speedups), 1 / min(speedups))
    norm = colors.LogNorm(vmin=1 / span, vmax=span)
    fig = plt.figure(figsize=(5.2 * len(runs) + 5.5, 7.5), layout="constrained")
    grid = fig.add_gridspec(1, len(runs) + 1, width_ratios=[1.0] * len(runs) + [0.95])
    image = None
    heat_axes = []
    for k, (name, bench) in enumerate(runs.items()):
        ax = fig.add_subplot(grid[0, k])
        index = {(r["drafter"], r["window"], r["rule"], r["steps"], r["batch"]): r["speedup"] for r in bench["records"]}
        values = np.array(
            [[index.get((*configuration, *cell), np.nan) for cell in cells] for configuration in configurations]
        )
        image = _heatmap(
            ax,
            values,
            [f"{d}, L={w}, {r}" for d, w, r in configurations],
            [f"N={n}\nB={b}" for n, b in cells],
            "RdBu",
            norm,
            ".2f",
            fontsize=6.5,
            origin="upper",
        )
        ax.tick_params(axis="both", labelsize=7)
        if k > 0:
            ax.set_yticklabels([])
        done = "" if bench.get("complete", True) else "; stopped early: '–' did not run"
        ax.set_title(f"({'abc'[k]}) {BENCH_LABELS.get(name, name)}\n{_device(bench)}{done}", fontsize=9)
        heat_axes.append(ax)
    if image is not None:
        bar = fig.colorbar(image, ax=heat_axes, location="bottom", shrink=0.6, aspect=40)
        bar.set_label("wall speedup, plain / speculative (blue: faster than plain sampling)")
        _log_ticks(bar.ax.xaxis, 1 / span, span, margin=1.0)
    scatter_ax = fig.add_subplot(grid[0, len(runs)])
    for k, (name, bench) in enumerate(runs.items()):
        rows = [r for r in bench["records"] if r["drafter"] != "perfect"]
        perfect = [r for r in bench["records"] if r["drafter"] == "perfect"]
        color = DIMENSION_COLORS[k]
        scatter_ax.scatter(
            [r["call_ratio"] for r in rows],
            [r["speedup"] for r in rows],
            s=12,
            alpha=0.6,
            color=color,
            label=f"{BENCH_LABELS.get(name, name)}",
        )
        scatter_ax.scatter(
            [r["call_ratio"] for r in perfect],
            [r["speedup"] for r in perfect],
            s=40,
            marker="*",
            color=color,
            edgecolor="black",
            linewidth=0.4,
            label=f"{BENCH_LABELS.get(name, name)}, perfect drafter",
        )
    ratios = [r["call_ratio"] for bench in runs.values() for r in bench["records"]]
    line = np.array([min(ratios), max(ratios)])
    scatter_ax.plot(line, line, color="black", linewidth=0.8, label="speedup = call ratio")
    scatter_ax.axhline(1.0, color="grey", linewidth=0.5)
    scatter_ax.set_xscale("log")
    scatter_ax.set_yscale("log")
    _log_ticks(scatter_ax.xaxis, min(ratios), max(ratios))
    _log_ticks(scatter_ax.yaxis, min(speedups), max(max(speedups), max(ratios)))
    scatter_ax.set_xlabel("call ratio (plain target calls / speculative)")
    scatter_ax.set_ylabel("wall speedup (plain / speculative)")
    scatter_ax.set_title(f"({'abc'[len(runs)]}) Wall speedup against the call ratio", fontsize=9)
    scatter_ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Wall-clock speedup of the digits DiT (plain and speculative timed in the same process)")
    return _save(fig, output_stem)


# ----------------------------------------------------------------------------------------------------------------------
# demo_samples (demo/demo.json, demo/demo_digits.png)


def sd_digits_figure(sd_digits: Payload, output_stem: Path) -> list[Path]:
    """The trained Stable-Diffusion-architecture digits model's plain samples, one row per prompt."""
    quality = next(record for record in sd_digits["records"] if record["kind"] == "quality")
    figure = grid_figure(quality["grid"])
    figure.suptitle(
        f"SD-architecture digits model: plain samples, {quality['steps']} DDPM steps, guidance "
        f"{quality['guidance_scale']:g} (one row per prompt)",
        fontsize=7,
    )
    return _save(figure, output_stem)


def demo_samples_figure(demo: Payload, image: np.ndarray, output_stem: Path) -> list[Path]:
    """The demo's digits (plain and speculative), drawn at their own resolution, with the run's numbers."""
    inked = np.flatnonzero((np.asarray(image)[..., :3] < 0.98).any(axis=(1, 2)))  # rows that are not blank
    if inked.size:
        image = image[max(int(inked[0]) - 6, 0) : int(inked[-1]) + 7]
    height, width = image.shape[:2]
    caption = 0.36  # inches above the image
    fig = plt.figure(figsize=(width / PNG_DPI, height / PNG_DPI + caption))
    ax = fig.add_axes((0.0, 0.0, 1.0, (height / PNG_DPI) / (height / PNG_DPI + caption)))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    fig.text(
        0.5,
        1.0 - 0.08 / (height / PNG_DPI + caption),
        f"specdiff demo ({demo['device']}): N = {demo['steps']} DDPM steps, batch {demo['batch']}, {demo['rule']} "
        f"rule, {demo['drafter']} drafter\n{demo['plain_target_calls']} → {demo['speculative_target_calls']} "
        f"sequential target calls ({demo['call_ratio']:.2f}x), wall time {demo['plain_wall_seconds']:.2f} s → "
        f"{demo['speculative_wall_seconds']:.2f} s; steps per round {demo['measured_steps_per_round']:.2f} measured, "
        f"{demo['predicted_steps_per_round']:.2f} predicted",
        ha="center",
        va="top",
        fontsize=6.5,
    )
    return _save(fig, output_stem)


# ----------------------------------------------------------------------------------------------------------------------
# The list of figures and the command line


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file stem, the inputs it needs and may use (paths under the results folder), how to draw it."""

    stem: str
    inputs: tuple[str, ...]
    draw: Callable[[Mapping[str, Any], Path], list[Path]]
    optional: tuple[str, ...] = ()


HOW_TO_MAKE = {
    "calibration.json": "python -m simulations.calibration",
    "speedup.json": "python -m simulations.speedup",
    "exactness.json": "python -m simulations.exactness",
    "gpu/bench_gpu.json": "python -m simulations.bench_gpu --preset gpu --output results/gpu/bench_gpu.json (on a GPU)",
    "demo/demo.json": "specdiff demo --output-dir results/demo",
    "dit_quality.json": "python -m simulations.dit_quality",
    "sd_digits.json": "python -m simulations.sd_digits",
    "demo/demo_digits.png": "specdiff demo --output-dir results/demo",
}

FIGURE_SPECS: tuple[FigureSpec, ...] = (
    FigureSpec(
        "acceptance_calibration", ("calibration.json",), lambda p, s: acceptance_figure(p["calibration.json"], s)
    ),
    FigureSpec("block_vs_token_gain", ("speedup.json",), lambda p, s: gain_figure(p["speedup.json"], s)),
    FigureSpec("exactness_qq", ("exactness.json",), lambda p, s: qq_figure(p["exactness.json"], s)),
    FigureSpec("speedup_heatmap", ("speedup.json",), lambda p, s: speedup_figure(p["speedup.json"], s)),
    FigureSpec(
        "gpu_cost_curves",
        ("gpu/bench_gpu.json",),
        lambda p, s: gpu_cost_figure(p, s),
        optional=("gpu/bench_gpu_host.json", "bench_cpu.json"),
    ),
    FigureSpec(
        "gpu_wall_speedup",
        ("gpu/bench_gpu.json",),
        lambda p, s: gpu_speedup_figure(p, s),
        optional=("gpu/bench_gpu_host.json",),
    ),
    FigureSpec(
        "dit_digits_samples", ("dit_quality.json",), lambda p, s: _save(grid_figure(p["dit_quality.json"]["grid"]), s)
    ),
    FigureSpec("sd_digits_samples", ("sd_digits.json",), lambda p, s: sd_digits_figure(p["sd_digits.json"], s)),
    FigureSpec(
        "demo_samples",
        ("demo/demo.json", "demo/demo_digits.png"),
        lambda p, s: demo_samples_figure(p["demo/demo.json"], p["demo/demo_digits.png"], s),
    ),
)


def _read_input(path: Path) -> Any:
    return mpimg.imread(path) if path.suffix == ".png" else _load(path)


def missing_inputs(results: Path) -> dict[str, list[str]]:
    """Figure stem -> the required inputs (paths under ``results``) that do not exist; figures with none left out."""
    missing = {spec.stem: [name for name in spec.inputs if not (results / name).exists()] for spec in FIGURE_SPECS}
    return {stem: names for stem, names in missing.items() if names}


def write_figures(results: Path, output: Path) -> list[Path]:
    """Every figure whose inputs exist under ``results``, written under ``output``; the others reported on stderr."""
    missing = missing_inputs(results)
    written: list[Path] = []
    cache: dict[str, Any] = {}
    for spec in FIGURE_SPECS:
        if spec.stem in missing:
            for name in missing[spec.stem]:
                hint = f" (made by: {HOW_TO_MAKE[name]})" if name in HOW_TO_MAKE else ""
                print(f"skipped {spec.stem}: missing input {results / name}{hint}", file=sys.stderr)
            continue
        available = [name for name in (*spec.inputs, *spec.optional) if (results / name).exists()]
        for name in available:
            if name not in cache:
                cache[name] = _read_input(results / name)
        written += spec.draw({name: cache[name] for name in available}, output / spec.stem)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: results/)")
    parser.add_argument("--output", type=Path, default=FIGURES, help="figures folder (default: docs/figures/)")
    arguments = parser.parse_args(argv)
    if not arguments.results.is_dir():
        print(f"missing results folder {arguments.results}: run the simulations first", file=sys.stderr)
        return 1
    written = write_figures(arguments.results, arguments.output)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"no figure made: no input found under {arguments.results}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
