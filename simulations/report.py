"""The results page and the README's headline table, generated from the committed JSON results (never by hand).

``python -m simulations.report`` writes the whole of ``docs/results.md`` (every table, with its provenance, and a
flag on any result whose commit is older than the last change to the code it measures) and the README's headline
table between ``<!-- report:headline -->`` and ``<!-- /report:headline -->``; ``--check`` exits 1 when either is
out of date (the test suite runs it). Staleness is read from this clone's git history.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulations import (
    calibration,
    dit_exactness,
    dit_quality,
    dit_speedup,
    exactness,
    graph_check,
    many_samples,
    overhead,
    peer_gm,
    randomness_cost,
    residual_cost,
    round_cost,
    sd_digits,
    speedup,
    sweep_cost,
    theory_accuracy,
    train_sd_digits,
)
from simulations.bench_gpu import EXPERIMENT as BENCH_EXPERIMENT
from simulations.bench_gpu import bench_view
from simulations.exactness import passed as check_passed
from simulations.provenance import REPOSITORY_ROOT, SAMPLER_CODE, measured_content

README = REPOSITORY_ROOT / "README.md"
RESULTS = REPOSITORY_ROOT / "results"
RESULTS_PAGE = REPOSITORY_ROOT / "docs" / "results.md"


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / name
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    # A bench file, in either layout, as its speedup records and cost curves.
    return bench_view(payload) if path.name.startswith("bench") else payload


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _by(records: Sequence[dict[str, Any]], *fields: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Records keyed by the tuple of their ``fields``."""
    return {tuple(record[field] for field in fields): record for record in records}


def _provenance(payload: dict[str, Any], command: str) -> str:
    return f"`{command}` (commit `{payload['commit'][:10]}`, {payload.get('seconds', 0):.0f} s)"


def exactness_table(results: Path) -> str:
    payload = _load(results, "exactness.json")
    if payload is None:
        return "_Run `python -m simulations.exactness`._"
    records = payload["records"]
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for record in records:
        if record["family"] == "control":
            continue
        groups.setdefault((record["family"], record["kernel"], record["dimension"]), []).append(record)
    rows = []
    for (family, kernel, dimension), members in groups.items():
        kept = sum(not member["rejected"] for member in members)
        rechecks = [
            f"{member['drafter']}, {member['rule']}: p = {member['recheck_p_value']:.3g} at n = "
            f"{member['recheck_samples']}{'' if check_passed(member) else ' **failed**'}"
            for member in members
            if member.get("recheck_p_value") is not None
        ]
        rows.append(
            [
                family,
                kernel,
                str(dimension),
                f"{len(members)} ({len({m['drafter'] for m in members})} drafters x "
                f"{len({m['rule'] for m in members})} rules)",
                f"{kept}/{len(members)}",
                f"{min(member['p_value'] for member in members):.3g}",
                str(members[0]["samples"]),
                "; ".join(rechecks) or "-",
            ]
        )
    for record in records:
        if record["family"] == "control":
            verdict = "rejected" if record["rejected"] else "**not rejected**"
            rows.append(
                [
                    "control: " + record["control"],
                    record["kernel"],
                    str(record["dimension"]),
                    f"{record['rule']}, {record['drafter']} drafter",
                    verdict,
                    f"{record['p_value']:.3g}",
                    str(record["samples"]),
                    "-",
                ]
            )
    header = ["check", "kernel", "d", "configurations", "kept at 1e-3", "smallest p", "n", "rejected, rechecked at 4n"]
    passed = sum(check_passed(record) for record in records)
    return (
        f"{_provenance(payload, 'python -m simulations.exactness')}:\n\n{_table(header, rows)}\n\n"
        f"{passed}/{len(records)} checks as expected (a rejected exact configuration fails only if its independent "
        "recheck at 4x the samples rejects too)."
    )


def calibration_table(results: Path) -> str:
    payload = _load(results, "calibration.json")
    if payload is None:
        return "_Run `python -m simulations.calibration`._"
    rows = []
    for record in payload["records"]:
        rows.append(
            [
                str(record["dimension"]),
                record["drafter"],
                record["rule"],
                record["control"] or "-",
                str(record["rounds"]),
                f"{record['measured_steps_per_round']:.3f}",
                f"{record['predicted_steps_per_round']:.3f}",
                f"{record['z']:+.2f}",
            ]
        )
    header = ["d", "drafter", "rule", "control", "rounds", "steps/round measured", "predicted", "z"]
    return (
        f"{_provenance(payload, 'python -m simulations.calibration')}; |z| > {payload['z_level']:.2f} rejects at "
        f"{payload['level']:g}:\n\n{_table(header, rows)}"
    )


def _nearest_committed_split(gains: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Block-over-token comparisons with the nearest reuse drafter, and with every other drafter."""
    nearest = [g for g in gains if g["drafter"] == "free-nearest"]
    return nearest, [g for g in gains if g["drafter"] != "free-nearest"]


def _below(gains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Comparisons where block is below token by more than 3 standard errors."""
    return [g for g in gains if g["measured_gain"] < 1 - 3 * g["stderr"]]


def speedup_table(results: Path) -> str:
    payload = _load(results, "speedup.json")
    if payload is None:
        return "_Run `python -m simulations.speedup`._"
    index = _by(payload["records"], "steps", "dimension", "drafter", "rule", "window")
    others = [d for d in payload["config"]["drafters"] if d not in ("free-nearest", "free-committed")]

    def adaptive(steps: int, dimension: int, drafter: str, rules: Sequence[str]) -> str:
        return " / ".join(
            f"{index[(steps, dimension, drafter, rule, 'adaptive')]['steps_per_call']:.2f}" for rule in rules
        )

    rows = []
    for steps in payload["config"]["steps"]:
        for dimension in payload["config"]["dimensions"]:
            token, block = (index[(steps, dimension, "free-committed", rule, "8")] for rule in ("token", "block"))
            rows.append(
                [
                    str(steps),
                    str(dimension),
                    adaptive(steps, dimension, "free-nearest", ("token", "block", "adaptive")),
                    adaptive(steps, dimension, "free-committed", ("token", "block")),
                    *[adaptive(steps, dimension, drafter, ("token", "block")) for drafter in others],
                    f"{block['steps_per_call'] / token['steps_per_call']:.3f} "
                    f"({block['predicted_steps_per_round'] / token['predicted_steps_per_round']:.3f})",
                ]
            )
    header = [
        "N",
        "d",
        "free-nearest token / block / chosen",
        "free-committed token / block",
        *[f"{d} token / block" for d in others],
        "block gain at L = 8, free-committed: measured (predicted)",
    ]
    summary = payload["summary"]
    defaults = [a for a in summary["adaptive"] if a["drafter"] == "free-nearest" and a["rule"] == "token"]
    worst_plain = max(defaults, key=lambda a: a["excess_over_plain"])
    worst_best = max(defaults, key=lambda a: a["excess_over_best"])
    nearest, other = _nearest_committed_split(summary["gains"])
    return (
        f"{_provenance(payload, 'python -m simulations.speedup')}; steps per sequential target call (N / calls per "
        f"sample, draft costs included: the frozen draft's root call, 0.1 call per step for the model draft), "
        f'{payload["config"]["samples"]} samples per cell, adaptive window; "chosen": the policy chooses the rule '
        f'per sample and round (`rule="adaptive"`):\n\n{_table(header, rows)}\n\n'
        f"The default (nearest reuse, token-reflection, adaptive window) against plain sampling, worst cell: "
        f"{worst_plain['adaptive_calls']:.1f} calls for N = {worst_plain['steps']} (d = {worst_plain['dimension']}); "
        f"against its best fixed window, worst excess {100 * worst_best['excess_over_best']:+.1f}% "
        f"(N = {worst_best['steps']}, d = {worst_best['dimension']}, best L = {worst_best['best_fixed_window']}). "
        f"Block vs token at equal window, every drafter but the nearest reuse: {len(other)} comparisons, "
        f"{len(_below(other))} with block below token by more than 3 standard errors; measured gains "
        f"{min(g['measured_gain'] for g in other):.3f}-{max(g['measured_gain'] for g in other):.3f}. With the nearest "
        f"reuse drafter, whose draft profits from the reflection residual keeping the rejected draft's noise, block "
        f"is below token in {len(_below(nearest))} of {len(nearest)} comparisons (gains "
        f"{min(g['measured_gain'] for g in nearest):.3f}-{max(g['measured_gain'] for g in nearest):.3f})."
    )


def _best(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return max(records, key=lambda r: r[key])


def _window_label(record: dict[str, Any]) -> str:
    return "adaptive" if record["window"] == "adaptive" else f"L = {record['window']}"


def peer_table(results: Path) -> str:
    """The peer's Gaussian-mixture benchmark side by side with ours."""
    payload = _load(results, "peer_gm.json")
    if payload is None:
        return "_Run `python -m simulations.peer_gm`._"
    records = payload["records"]
    index = _by(records, "drafter", "rule", "window")
    exact = [r for r in records if r["drafter"] != "frozen"]
    best = _best(exact, "speedup")
    chain = {k: index.get(("free-nearest", "token", str(k))) for k in (3, 7)}
    frozen = _best([r for r in records if r["drafter"] == "frozen"], "speedup")
    candidates: dict[str, tuple[dict[str, Any] | None, str]] = {
        "no reuse of any evaluation (prefetch none)": (frozen, "frozen drafter (a root call per round), best window"),
        "chain drafting 3 steps, reflection coupling": (chain[3], "nearest reuse, token-reflection, L = 3"),
        "chain drafting 7 steps": (chain[7], "nearest reuse, token-reflection, L = 7"),
        "tree with its leaves carried over (their best)": (best, f"our best: {best['drafter']}, {best['rule']}, "
                                                            f"{_window_label(best)}"),
    }  # fmt: skip
    rows = []
    for peer in payload["peer"]:
        record, label = candidates.get(peer["configuration"], (None, "- (no tree drafting here)"))
        rows.append(
            [
                peer["configuration"],
                f"{peer['speedup']:.2f}x",
                label if record is not None else "-",
                f"{record['rows_per_round']:.1f}" if record is not None else "-",
                f"{record['speedup']:.2f}x ± {record['speedup_stderr']:.2f}" if record is not None else "-",
            ]
        )
    side = _table(["peer's configuration", "peer", "ours", "our rows per round", "our speedup"], rows)
    drafters = list(dict.fromkeys(r["drafter"] for r in records))
    grid = []
    for drafter in drafters:
        row = [drafter]
        for rule in ("token", "block"):
            fixed = [r for r in records if r["drafter"] == drafter and r["rule"] == rule and r["window"] != "adaptive"]
            top = _best(fixed, "speedup")
            row.append(f"{top['speedup']:.2f}x ({_window_label(top)}, {top['rows_per_round']:.1f} rows)")
            row.append(f"{index[(drafter, rule, 'adaptive')]['speedup']:.2f}x")
        chosen = index[(drafter, "adaptive", "adaptive")]
        row.append(f"{chosen['speedup']:.2f}x ({100 * chosen['block_fraction']:.0f}% block)")
        grid.append(row)
    header = ["drafter", "token: best fixed", "token: adaptive", "block: best fixed", "block: adaptive", "chosen rule"]
    sanity = payload["sanity"]
    shares = ", ".join(f"{share:.3f}" for share in sanity["component_shares"])
    spreads = ", ".join(f"{spread:.3f}" for spread in sanity["spread_over_sd"])
    return (
        f"{_provenance(payload, 'python -m simulations.peer_gm')}; speedup = 28 / sequential target calls per "
        f"trajectory (warm-up included), averaged over {payload['config']['trajectories']} trajectories per cell; "
        f"a round evaluates L + 1 target rows per trajectory. The peer's numbers are those it publishes.\n\n{side}"
        f"\n\nEvery drafter and rule (windows 1-{max(payload['config']['windows'])} and the adaptive window; "
        f'"chosen": the policy chooses the rule per trajectory and round):\n\n{_table(header, grid)}\n\n'
        f"Sanity check (plain sampling, {sanity['samples']} samples): share of samples nearest each component "
        f"{shares}; their spread over the component's standard deviation {spreads} (the benchmark's description: "
        f"0.19-0.21 and 0.88-0.93)."
    )


def dit_speedup_table(results: Path) -> str:
    """Steps per call on the digits DiT by drafter and rule at each N."""
    payload = _load(results, "dit_speedup.json")
    if payload is None:
        return "_Run `python -m simulations.dit_speedup`._"
    records = payload["records"]
    index = _by(records, "steps", "drafter", "rule", "window")
    rows = []
    for steps in payload["config"]["steps"]:
        for drafter in payload["config"]["drafters"]:
            row = [str(steps), drafter]
            for rule in ("token", "block"):
                fixed = [r for r in records if (r["steps"], r["drafter"], r["rule"]) == (steps, drafter, rule)]
                fixed = [r for r in fixed if r["window"] != "adaptive"]
                top = _best(fixed, "steps_per_call")
                adaptive = index[(steps, drafter, rule, "adaptive")]
                row.append(f"{adaptive['steps_per_call']:.2f} ± {adaptive['steps_per_call_stderr']:.2f}")
                row.append(f"{top['steps_per_call']:.2f} ({_window_label(top)})")
            chosen = index[(steps, drafter, "adaptive", "adaptive")]
            row.append(f"{chosen['steps_per_call']:.2f} ({100 * chosen['block_fraction']:.0f}% block)")
            rows.append(row)
    header = ["N", "drafter", "token, adaptive", "token, best fixed", "block, adaptive", "block, best fixed", "chosen"]
    windows = ", ".join(str(w) for w in payload["config"]["windows"])
    return (
        f"{_provenance(payload, 'python -m simulations.dit_speedup')}; steps per sequential target call (N / calls "
        f"per sample, draft costs included), {payload['config']['samples']} samples per cell, fixed windows "
        f"{windows} and the adaptive window (at most {payload['config']['adaptive_max_window']}):\n\n"
        f"{_table(header, rows)}"
    )


def rule_choice_text(results: Path) -> str:
    """Does the policy's per-round rule choice beat the best fixed rule? Every benchmark, adaptive window."""
    rows = []
    peer = _load(results, "peer_gm.json")
    if peer is not None:
        by_cell = _by(peer["records"], "drafter", "rule", "window")
        cells = [by_cell[("free-nearest", rule, "adaptive")] for rule in ("token", "block", "adaptive")]
        rows.append(_choice_row("peer benchmark", "speedup", cells))
    dit = _load(results, "dit_speedup.json")
    if dit is not None:
        by_steps = _by(dit["records"], "steps", "drafter", "rule", "window")
        for steps in dit["config"]["steps"]:
            cells = [by_steps[(steps, "free-nearest", rule, "adaptive")] for rule in ("token", "block", "adaptive")]
            rows.append(_choice_row(f"digits DiT, N = {steps}", "steps_per_call", cells))
    speedup = _load(results, "speedup.json")
    if speedup is not None:
        by_size = _by(speedup["records"], "steps", "dimension", "drafter", "rule", "window")
        for steps in speedup["config"]["steps"]:
            for dimension in speedup["config"]["dimensions"]:
                cells = [
                    by_size[(steps, dimension, "free-nearest", rule, "adaptive")]
                    for rule in ("token", "block", "adaptive")
                ]
                rows.append(_choice_row(f"mixture, N = {steps}, d = {dimension}", "steps_per_call", cells))
    if not rows:
        return "_Run `python -m simulations.peer_gm`, `simulations.dit_speedup` and `simulations.speedup`._"
    wins = sum(row[-1] == "yes" for row in rows)
    header = ["benchmark (nearest reuse, adaptive window)", "token", "block", "chosen per round", "chosen highest"]
    return (
        f"{_table(header, rows)}\n\nThe per-round choice is above the best fixed rule in {wins} of {len(rows)} "
        "benchmarks (steps per call, or the peer's speedup; point estimates, whose standard errors are in the tables "
        "above)."
    )


def _choice_row(name: str, key: str, cells: list[dict[str, Any]]) -> list[str]:
    token, block, chosen = (cell[key] for cell in cells)
    return [name, f"{token:.2f}", f"{block:.2f}", f"{chosen:.2f}", "yes" if chosen > max(token, block) else "no"]


def drafting_table(results: Path) -> str:
    return "\n\n".join(
        [
            "### The peer's Gaussian-mixture benchmark",
            peer_table(results),
            "### The digits DiT",
            dit_speedup_table(results),
            "### Choosing the rule per round",
            rule_choice_text(results),
        ]
    )


def overhead_table(results: Path) -> str:
    payload = _load(results, "overhead.json")
    if payload is None:
        return "_Run `python -m simulations.overhead`._"
    best: dict[str, dict[str, Any]] = {}
    for measurement in payload["measurements"]:
        current = best.get(measurement["sampler"])
        if current is None or measurement["wall_seconds"] < current["wall_seconds"]:
            best[measurement["sampler"]] = measurement
    rows = [
        [
            name,
            f"{m['wall_seconds']:.2f}",
            f"{m['model_seconds']:.2f}",
            f"{100 * m['overhead_fraction']:.0f}%",
            str(m["target_calls"]),
            f"{m['overhead_microseconds_per_state']:.1f}",
            f"{m['model_microseconds_per_state']:.1f}",
        ]
        for name, m in best.items()
    ]
    headers = ["sampler", "wall s", "in the model s", "overhead", "target calls", "overhead us/state", "model us/state"]
    parts = []
    for profile in payload["profiles"]:
        total = profile["total_seconds"]
        seconds = profile["part_seconds"]
        shares = ", ".join(f"{label} {100 * part / total:.0f}%" for label, part in seconds.items())
        parts.append(f"{profile['sampler']}: {shares}")
    plain = best["plain"]
    noise, model = payload["noise_microseconds_per_state"], plain["model_microseconds_per_state"]
    floor = (
        f"Drawing the {payload['config']['dimension']} float64 normals of one state alone takes {noise:.2f} us against "
        f"{model:.2f} us for the model (plain run), so any exact sampler of this chain spends at least "
        f"{100 * noise / (noise + model):.0f}% of its time outside the model; plain sampling spends "
        f"{100 * plain['overhead_fraction']:.0f}%."
    )
    sizes = payload["config"]
    memory = "kept freed memory (glibc `mallopt`)" if payload["kept_freed_memory"] else "default allocator"
    return (
        f"`python -m simulations.overhead` (commit `{payload['commit'][:10]}`; d = {sizes['dimension']}, "
        f"{sizes['components']} components, float64, batch {sizes['batch']}, N = {sizes['steps']}, CPU, one thread, "
        f"{memory}, fastest of {sizes['repeats']}):\n\n"
        f"{_table(headers, rows)}\n\n"
        f"{floor} Where the wall time goes (cProfile, which inflates the Python-level parts): {'; '.join(parts)}."
    )


def _cells(payload: dict[str, Any] | None, mode: str = "eager") -> dict[tuple[Any, ...], dict[str, Any]]:
    if payload is None:
        return {}
    return {
        (cell["dimension"], cell["batch"], cell["window"], cell["rule"]): cell
        for cell in payload["cells"]
        if cell["mode"] == mode and cell["status"] == "measured"
    }


def _plain_step(payload: dict[str, Any] | None, dimension: int, batch: int, mode: str = "eager") -> float | None:
    for row in (payload or {}).get("plain", []):
        if (row["dimension"], row["batch"], row["mode"], row["status"]) == (dimension, batch, mode, "measured"):
            return float(row["sampler_microseconds_per_step"])
    return None


def round_cost_table(results: Path) -> str:
    after = _load(results, "round_cost.json")
    if after is None:
        return "_Run `python -m simulations.round_cost`._"
    before = _load(results, "round_cost_before.json")
    old, new, compiled = _cells(before), _cells(after), _cells(after, "compiled")

    def counts(cell: dict[str, Any] | None, key: str, digits: int) -> str:
        value = None if cell is None or cell.get("counts_per_round") is None else cell["counts_per_round"].get(key)
        return "–" if value is None else f"{value:.{digits}f}"

    def micros(cell: dict[str, Any] | None) -> str:
        return "–" if cell is None else f"{cell['sampler_microseconds_per_round']:.0f}"

    rows = []
    for key in sorted(new):
        dimension, batch, window, rule = key
        plain_step = _plain_step(after, dimension, batch)
        rows.append(
            [
                str(dimension),
                str(batch),
                str(window),
                rule,
                f"{counts(old.get(key), 'launches', 0)} → {counts(new[key], 'launches', 0)}",
                f"{counts(old.get(key), 'syncs', 1)} → {counts(new[key], 'syncs', 1)} "
                f"({counts(new[key], 'loop_syncs', 1)} in the loop)",
                f"{micros(old.get(key))} → {micros(new[key])}",
                micros(compiled.get(key)),
                "–" if plain_step is None else f"{plain_step:.0f}",
            ]
        )
    headers = [
        "d",
        "B",
        "L",
        "rule",
        "launches / round, before → after",
        "host syncs / round, before → after (loop only)",
        "own µs / round eager, before → after",
        "own µs / round compiled",
        "own µs / plain step",
    ]
    sizes = after["config"]
    targets = "; ".join(
        f"{name.replace('_', ' ')}: **{target['status']}**" for name, target in after["targets"].items()
    )
    return (
        f"`python -m simulations.round_cost` (commit `{after['commit'][:10]}`, {after.get('seconds', 0):.0f} s; "
        f"before: commit `{(before or {}).get('commit', '?')[:10]}`): a near-free chain `0.98 x + b`, float32, "
        f"N = {sizes['steps']}, CPU, one thread; counts per round on a simulated device (every CPU tensor of the "
        f"sampler standing for a device tensor); the sampler's own time is the wall time less the mean functions' "
        f"(eager) or the wall time with both means traced into the graph (compiled: one graph per round, and per "
        f"plain step), fastest of {sizes['repeats']}{_compiled_repeats(sizes)}; before and after are separate runs, "
        f"which may be on machines "
        f"of different speed (compare the ratios within a run):\n\n{_table(headers, rows)}\n\n"
        f"Targets: {targets}.{_attribution_text(after)}{_steady_state_text(after)}{_randomness_text(results)}"
    )


def graph_check_table(results: Path) -> str:
    payload = _load(results, "graph_check.json")
    if payload is None:
        return "_Run `python -m simulations.graph_check`._"
    rows = []
    for record in payload["records"]:
        window = "adaptive" if record["window"] is None else str(record["window"])
        if record["status"] != "ran":
            outcome = f"not run ({record['reason']})"
        elif record["error"]:
            outcome = f"capture failed: {record['error'][:80]}"
        else:
            outcome = "bitwise equal" if record["agree"] else f"differ (max {record['max_abs_difference']:.2g})"
        rows.append(
            [
                ("control: list memory" if record["control"] else record["drafter"]),
                record["rule"],
                window,
                "compiled" if record["compiled"] else "eager",
                record["graph"],
                str(record.get("rounds", "–")),
                outcome,
            ]
        )
    headers = ["drafter", "rule", "window", "mode", "graph", "rounds", "replayed against run as it is"]
    verdict = "passed" if payload["passed"] else "**failed**"
    return (
        f"`python -m simulations.graph_check` (commit `{payload['commit'][:10]}`, {payload.get('seconds', 0):.0f} s, "
        f"device {payload['config']['device']}): the digits DiT sampled with every round run as it is and replayed "
        f"from a graph, same noise and seed; {verdict} (every configuration bitwise equal, the control different):"
        f"\n\n{_table(headers, rows)}"
    )


def _attribution_text(after: dict[str, Any]) -> str:
    """How many of the eager block round's launches (d = 64, B = 1, L = 8) the residual's quantile and mass make."""
    target = after["targets"].get("launches_per_round", {})
    key = "block d=64 B=1"
    within = {name: values.get(key) for name, values in target.get("of_which", {}).items()}
    total = target.get("launches_per_round", {}).get(key)
    if total is None or not within or None in within.values():
        return ""
    return (
        f" Of the eager block round's {total:.0f} launches (d = 64, B = 1, L = {round_cost.TARGET_WINDOW}), "
        f"the residual's quantile makes {within[round_cost.RESIDUAL_QUANTILE]:.0f} (`{round_cost.RESIDUAL_QUANTILE}`) "
        f"and its mass {within[round_cost.RESIDUAL_MASS]:.0f} (`{round_cost.RESIDUAL_MASS}`, the stop probabilities)."
    )


def _compiled_repeats(sizes: dict[str, Any]) -> str:
    return f" (compiled: {sizes['compiled_repeats']})" if "compiled_repeats" in sizes else ""


def _steady_state_text(after: dict[str, Any]) -> str:
    """The compiled rounds' steady state beside the target (judged on whole runs), where it was measured."""
    target = after["targets"].get("compiled_round_time", {})
    ratios = target.get("steady_state_round_over_plain_step")
    if not ratios:
        return ""
    fixed = target["fixed_microseconds_per_run"]
    factor = after["config"].get("longer_factor", "?")
    return (
        f" The compiled target is judged on whole runs of N = {after['config']['steps']} steps: "
        + ", ".join(f"{rule} {ratio:.2f}x" for rule, ratio in target["round_over_plain_step"].items())
        + f" a plain step. Split by a second run {factor} times longer into a cost per added round and a fixed cost "
        f"per run (d = 64, B = 1, L = {round_cost.TARGET_WINDOW}): each added round costs "
        + ", ".join(f"{rule} {ratio:.2f}x" for rule, ratio in ratios.items())
        + f" an added plain step ({target['steady_state_plain_microseconds_per_step']:.0f} µs), and a run costs "
        + ", ".join(f"{name} {value:.0f} µs" for name, value in fixed.items())
        + " once (keys, first plan, statistics to the host)."
    )


def _randomness_text(results: Path) -> str:
    payload = _load(results, "randomness_cost.json")
    if payload is None:
        return ""
    cells = [
        f"{record['batch']}x{record['width']}: {record['nanoseconds_per_value']:.0f} ns against "
        f"{record['nanoseconds_per_value'] / record['ratio_to_reference']:.0f} ns"
        for record in payload["measurements"]
        if record["method"] == "counter_normals" and record["dtype"] == "float64"
    ]
    return (
        f" Counter-based normals (float64) per value against `torch.randn` with a generator, by batch x values per "
        f"sample (`python -m simulations.randomness_cost`, commit `{payload['commit'][:10]}`, CPU, one thread): "
        + "; ".join(cells)
        + "."
    )


#: The GPU runs and their labels: states on the GPU; on the host (DeviceModel); on the GPU, both samplers compiled.
GPU_BENCHES = {
    "bench_gpu.json": "states on the GPU",
    "bench_gpu_host.json": "states on the host",
    "bench_gpu_compiled.json": "states on the GPU, compiled",
}
SPEEDUP_HEADER = ["N", "batch", "drafter", "window", "fewer calls, token / block"]


def _pairs(bench: dict[str, Any]) -> dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any]]]:
    """(N, batch, drafter, window) -> (token record, block record), sorted by N and batch."""
    index = _by(bench["records"], "steps", "batch", "drafter", "window", "rule")
    pairs = {}
    for (steps, batch, drafter, window, rule), token in sorted(index.items(), key=lambda item: item[0][:2]):
        block = index.get((steps, batch, drafter, window, "block"))
        if rule == "token" and block is not None:
            pairs[(steps, batch, drafter, window)] = (token, block)
    return pairs


def _speedups(pair: tuple[dict[str, Any], dict[str, Any]] | None) -> str:
    return "–" if pair is None else f"{pair[0]['speedup']:.2f}x / {pair[1]['speedup']:.2f}x"


def _efficiencies(bench: dict[str, Any]) -> str:
    perfect = sorted((r for r in bench["records"] if r["drafter"] == "perfect"), key=lambda r: (r["steps"], r["batch"]))
    return ", ".join(f"N={r['steps']} B={r['batch']} L={r['window']}: {100 * r['efficiency']:.0f}%" for r in perfect)


def _sampler_time(bench: dict[str, Any]) -> str:
    """The sampler's own time per round and per plain step, from the perfect-drafter records and the digits curve.

    Per round: wall time minus the draft's (measured) time minus ``rounds x c(B (L + 1))``; per plain step: the
    baseline's wall time minus ``N c(B)``, over N. Empty when the run has no perfect-drafter record.
    """
    perfect = [r for r in bench["records"] if r["drafter"] == "perfect"]
    if not perfect:
        return ""
    digits = [c for c in bench["cost_curves"] if c["model"] == "digits"]
    curve = max(digits, key=lambda c: c["blocks"])  # the full network, not an early exit

    def cost(states: int) -> float:
        return float(np.interp(states, curve["batches"], curve["seconds"]))

    rounds = [
        (r["wall_seconds"] - r["draft_seconds"] - r["target_calls"] * cost(r["batch"] * (int(r["window"]) + 1)))
        / r["target_calls"]
        for r in perfect
    ]
    steps = [(r["baseline_wall_seconds"] - r["steps"] * cost(r["batch"])) / r["steps"] for r in perfect]
    text = (
        f"the sampler's own time per speculative round {1e3 * min(rounds):.1f}–{1e3 * max(rounds):.1f} ms and per "
        f"plain step {1e3 * min(steps):.2f}–{1e3 * max(steps):.2f} ms (perfect-drafter records: wall time less the "
        f"draft's time and the network's time from the cost curve)"
    )
    if min(*rounds, *steps) < 0:
        text += (
            ", not reliable in this run: a negative value means the cost curve, timed apart from the runs, "
            "overstates the network's time inside them"
        )
    return text


def _baseline_spread(bench: dict[str, Any]) -> float:
    """Largest ratio between the plain baselines timed in one (N, batch) cell: the run-to-run timing noise."""
    cells: dict[tuple[int, int], list[float]] = {}
    for record in bench["records"]:
        cells.setdefault((record["steps"], record["batch"]), []).append(record["baseline_wall_seconds"])
    return max(max(times) / min(times) for times in cells.values())


def _pairs_note(bench: dict[str, Any]) -> str:
    """How a record's speedup was taken: one timed pair, or the median of the cell's repeated pairs."""
    counts = sorted({int(record.get("pairs", 1)) for record in bench["records"]})
    if counts in ([], [1]):
        return "one timed pair per cell"
    return f"the median over each cell's {'/'.join(map(str, counts))} timed pairs"


def _bench_text(bench: dict[str, Any]) -> str:
    device = bench["records"][0]["device"] if bench["records"] else "?"
    rows = [
        [
            str(key[0]),
            str(key[1]),
            key[2],
            key[3],
            f"{token['call_ratio']:.2f}x / {block['call_ratio']:.2f}x",
            _speedups((token, block)),
        ]
        for key, (token, block) in _pairs(bench).items()
    ]
    text = (
        f"`python -m simulations.bench_gpu --preset {bench['preset']}` on **{device}** (commit "
        f"`{bench['commit'][:10]}`); speedup = plain wall time / speculative wall time, same process, "
        f"{_pairs_note(bench)}:\n\n"
        f"{_table([*SPEEDUP_HEADER, 'wall speedup, token / block'], rows)}"
    )
    if _efficiencies(bench):
        text += f"\n\nPerfect-drafter efficiency (speedup without the draft's time / ideal): {_efficiencies(bench)}."
    return text


def _corrections(results: Path) -> dict[str, Any]:
    """GPU result file name -> its provenance correction (``results/gpu/provenance_corrections.json``)."""
    return dict((_load(results / "gpu", "provenance_corrections.json") or {}).get("files", {}))


def _commit_note(results: Path, name: str, run: dict[str, Any]) -> str:
    corrections = _corrections(results)
    if name in corrections:
        fix = corrections[name]
        return (
            f"commit `{fix['tree_commit'][:10]}`; the machine's stale git recorded `{fix['recorded_commit'][:10]}`, "
            f"see `results/gpu/provenance_corrections.json`"
        )
    return f"commit `{run['commit'][:10]}`"


def _gpu_bench_text(results: Path, runs: dict[str, dict[str, Any]]) -> str:
    """One table: call ratios and wall speedups of every GPU run (each speedup measured within its own run)."""
    pairs = {name: _pairs(run) for name, run in runs.items()}
    appearance = {key: None for table in pairs.values() for key in table}  # the runs' order of drafters and windows
    keys = sorted(appearance, key=lambda key: key[:2])
    rows = []
    for key in keys:
        first = next(table[key] for table in pairs.values() if key in table)
        calls = f"{first[0]['call_ratio']:.2f}x / {first[1]['call_ratio']:.2f}x"
        rows.append(
            [str(key[0]), str(key[1]), key[2], key[3], calls, *(_speedups(pairs[name].get(key)) for name in runs)]
        )
    header = [*SPEEDUP_HEADER, *(f"wall speedup, token / block ({GPU_BENCHES[name]})" for name in runs)]
    lines = []
    for name, run in runs.items():
        device = run["records"][0]["device"] if run["records"] else "?"
        done = (
            ""
            if run.get("complete", True)
            else f", stopped after {run['max_seconds']:.0f} s: cells without a value did not run"
        )
        perfect = (
            f" Perfect-drafter efficiency (speedup without the draft's time / ideal): {_efficiencies(run)}; "
            f"{_sampler_time(run)};"
            if _efficiencies(run)
            else ""
        )
        lines.append(
            f"- {GPU_BENCHES[name]}: `python -m simulations.bench_gpu --preset {run['preset']}` on **{device}** "
            f"({_commit_note(results, name, run)}; {run['seconds']:.0f} s{done}; {_pairs_note(run)}).{perfect} The "
            f"plain baselines timed within one cell differ by up to {_baseline_spread(run):.2f}x."
        )
    cpu = _load(results, "bench_cpu.json")
    if cpu is not None and _sampler_time(cpu):
        lines.append(
            f"- for comparison, the CPU run (`results/bench_cpu.json`, commit `{cpu['commit'][:10]}`, network on the "
            f"CPU): {_sampler_time(cpu)}."
        )
    return (
        "GPU benchmark; speedup = plain wall time / speculative wall time, measured in the same process with the "
        "same placement; the call ratios are the first run's:\n\n" + "\n".join(lines) + "\n\n" + _table(header, rows)
    )


def dit_table(results: Path) -> str:
    parts = []
    quality = _load(results, "dit_quality.json")
    if quality is not None:
        metrics = quality["metrics"]
        parts.append(
            f"Model quality (`python -m simulations.dit_quality`, {quality['samples']} samples, "
            f"{quality['config']['num_steps']} DDPM steps): a digit classifier (RBF SVM fitted on the real training "
            f"split) labels {100 * metrics['classifier_accuracy_samples']:.1f}% of the samples as their conditioning "
            f"class ({100 * metrics['classifier_accuracy_heldout_real']:.1f}% on held-out real digits); mean distance "
            f"to the nearest training image {metrics['nearest_train_distance_samples_mean']:.2f} for samples vs "
            f"{metrics['nearest_train_distance_heldout_real_mean']:.2f} for held-out real digits (no copies)."
        )
    demo = _load(results / "demo", "demo.json")
    if demo is not None:
        parts.append(
            f"`specdiff demo --output-dir results/demo` ({demo['device']}, N = {demo['steps']}, batch "
            f"{demo['batch']}): {demo['plain_target_calls']} → {demo['speculative_target_calls']} sequential target "
            f"calls ({demo['call_ratio']:.2f}x), wall {demo['plain_wall_seconds']:.2f} s → "
            f"{demo['speculative_wall_seconds']:.2f} s ({demo['wall_speedup']:.2f}x); steps per round measured "
            f"{demo['measured_steps_per_round']:.2f}, predicted {demo['predicted_steps_per_round']:.2f} "
            f"(z = {demo['calibration_z']:+.2f}). On this device a call on {demo['max_window'] + 1} states per sample "
            f"costs {demo['batch_cost_ratio']:.1f}x a call on one."
        )
    for folder, where in ((results, "the CPU"), (results / "gpu", "the GPU")):
        exactness = _load(folder, "dit_exactness.json")
        if exactness is None:
            continue
        rows = [
            [
                record["rule"],
                record["drafter"],
                record["control"] or "-",
                f"{record['p_value']:.3g}",
                "rejected" if record["rejected"] else "kept",
                "as expected" if record["rejected"] == record["expected_rejection"] else "**not as expected**",
                f"{record['plain_target_calls']} → {record['target_calls']}",
            ]
            for record in exactness["records"]
        ]
        sizes = exactness.get("config", exactness.get("sizes"))  # a GPU file written before the framework: "sizes"
        header = ["rule", "drafter", "control", "p (Bonferroni over classes)", "verdict", "", "target calls"]
        parts.append(
            f"Exactness on {where}: {_provenance(exactness, 'python -m simulations.dit_exactness')}; speculative "
            f"against plain samples of every class (MMD and projected KS), judged at {exactness['level']:g}; "
            f"sizes {json.dumps(sizes)}:\n\n{_table(header, rows)}"
        )
    return "\n\n".join(parts) if parts else "_Run `specdiff demo` and `python -m simulations.dit_quality`._"


def _sd_check_row(record: dict[str, Any]) -> list[str]:
    window = "adaptive" if record["window"] is None else str(record["window"])
    verdict = "as expected" if record["rejected"] == record["expected_rejection"] else "**not as expected**"
    return [
        record["rule"],
        record["drafter"],
        window,
        str(record["steps"]),
        record["control"] or "-",
        f"{record['plain_target_calls']} → {record['target_calls']} ({record['call_ratio']:.2f}x)",
        f"{record['measured_steps_per_round']:.2f} / {record['predicted_steps_per_round']:.2f} "
        f"(z = {record['calibration_z']:+.2f})",
        f"{record['p_value']:.3g} {'rejected' if record['rejected'] else 'kept'}, {verdict}",
        f"{100 * record['classifier_accuracy_speculative']:.0f}% / {100 * record['classifier_accuracy_plain']:.0f}%",
        f"{record['plain_wall_seconds']:.0f} → {record['speculative_wall_seconds']:.0f}",
    ]


def sd_digits_table(results: Path) -> str:
    parts = []
    training = _load(results, "train_sd_digits.json")
    if training is not None:
        (record,) = training["records"]
        parts.append(
            f"Training ({_provenance(training, 'python -m simulations.train_sd_digits')}): a "
            f"{record['unet_parameters'] / 1e6:.2f}M-parameter UNet, {record['training']['iterations']} iterations of "
            f"{record['training']['batch_size']} images in {record['training']['wall_seconds'] / 60:.1f} min on "
            f"{training['machine']['cpus']} CPU cores (one torch thread), final loss "
            f"{record['training']['final_loss']:.4f}; the text encoder ({record['text_encoder_parameters']} "
            "parameters) is random and frozen."
        )
    payload = _load(results, "sd_digits.json")
    if payload is None:
        return "\n\n".join(parts) or "_Run `python -m simulations.sd_digits`._"
    records = payload["records"]
    quality = next((r for r in records if r["kind"] == "quality"), None)
    if quality is not None:
        parts.append(
            f"Quality ({_provenance(payload, 'python -m simulations.sd_digits')}): "
            f"{len(quality['classes']) * quality['samples_per_class']} plain samples, {quality['steps']} DDPM steps, "
            f"guidance {quality['guidance_scale']:g}: the digit classifier of the DiT's quality check labels "
            f"{100 * quality['classifier_accuracy_samples']:.1f}% of them as their prompt's digit "
            f"({100 * quality['classifier_accuracy_heldout_real']:.1f}% on held-out real digits); mean distance to "
            f"the nearest training image {quality['nearest_train_distance_samples_mean']:.2f} against "
            f"{quality['nearest_train_distance_heldout_real_mean']:.2f} for held-out real digits. Samples: "
            "`docs/figures/sd_digits_samples.png`."
        )
    checks = [r for r in records if r["kind"] == "check"]
    if checks:
        header = [
            "rule", "drafter", "window", "N", "control", "target calls", "steps / round measured / predicted",
            "exactness p (prompts pooled)", "classifier: speculative / plain", "CPU seconds",
        ]  # fmt: skip
        parts.append(
            f"Speculative against plain samples of every prompt ({checks[0]['samples_per_class']} per prompt and "
            f"arm, guidance {checks[0]['guidance_scale']:g}), judged at {payload['level']:g}; the calibration z is "
            f"the martingale z-score of the measured acceptance against the theory for the logged gaps:\n\n"
            + _table(header, [_sd_check_row(r) for r in checks])
        )
        first = {}
        for record in checks:
            rows = record["calibration_positions"]
            if record["control"] is None and record["window"] is not None and rows:
                first[(record["rule"], record["drafter"])] = rows[0]
        if first:
            parts.append(
                "Acceptance at the first drafted position, measured (predicted): "
                + "; ".join(
                    f"{rule}, {drafter}: {row['measured']:.3f} ({row['predicted']:.3f})"
                    for (rule, drafter), row in first.items()
                )
                + "."
            )
    costs = [r for r in records if r["kind"] == "draft-cost"]
    if costs:
        parts.append(
            "The cached-feature drafter's cost, measured on the CPU (one shallow forward over one full forward of the "
            "guided UNet): " + ", ".join(f"{r['ratio']:.2f} of a call at {r['batch']} image(s)" for r in costs) + "."
        )
    return "\n\n".join(parts)


def gpu_table(results: Path) -> str:
    runs = {name: run for name in GPU_BENCHES if (run := _load(results / "gpu", name)) is not None}
    if runs:
        return _gpu_bench_text(results, runs)
    bench = _load(results, "bench_cpu.json")
    return _bench_text(bench) if bench is not None else "_Run `python -m simulations.bench_gpu`._"


def residual_cost_table(results: Path) -> str:
    payload = _load(results, "residual_cost.json")
    if payload is None:
        return "_Run `python -m simulations.residual_cost`._"
    index = _by(payload["measurements"], "delta", "weight", "method")
    rows = []
    for delta, weight, method in index:
        if method != "inverse_cdf" or (delta, weight, "rejection") not in index:
            continue
        inverse, rejection = index[(delta, weight, "inverse_cdf")], index[(delta, weight, "rejection")]
        rows.append(
            [
                f"{delta:g}",
                f"{weight:g}",
                f"{inverse['microseconds_per_draw']:.1f}",
                f"{rejection['microseconds_per_draw']:.1f}",
                f"{rejection['mean_proposals_per_draw']:.1f}",
            ]
        )
    header = ["δ", "w", "inverse CDF µs / draw", "rejection µs / draw", "rejection proposals / draw"]
    first = payload["measurements"][0]
    return (
        f"`python -m simulations.residual_cost` (commit `{payload['commit'][:10]}`, d = {first['dimension']}, "
        f"{first['draws']} draws, CPU, one thread, median of {first['repeats']}):\n\n{_table(header, rows)}"
    )


def sweeps_table(results: Path) -> str:
    """The many-sample job's checks and what Dask costs."""
    parts = []
    many = _load(results, "many_samples.json")
    if many is not None:
        config, sweep = many["config"], many["sweep"]
        rows = [
            [
                job["control"] or "exact rule",
                str(job["samples"]),
                f"{job['p_value']:.3g}",
                "rejected" if job["rejected"] else "kept",
                "as expected" if job["rejected"] == job["expected_rejection"] else "**not as expected**",
                f"`{job['sha256'][:16]}`",
            ]
            for job in many["jobs"]
        ]
        parts.append(
            f"{_provenance(many, 'python -m simulations.many_samples')}: one-Gaussian data in d = "
            f"{config['dimension']}, {config['kernel']} with N = {config['steps']}, {config['drafter']} drafter, "
            f"{config['rule']} rule, adaptive window; shards of {config['shard']} samples ({sweep['cells']} cells, "
            f"{sweep['engine']}); projected KS against the closed-form law at level {many['level']:g}. The hash is "
            f"of the samples' float64 bytes in key order, the same on any number of workers and for any shard size."
            f"\n\n{_table(['job', 'samples', 'p', 'verdict', '', 'SHA-256 of the samples'], rows)}"
        )
    cost = _load(results, "sweep_cost.json")
    if cost is not None:
        rows = [
            [
                f"`exactness --preset {r['preset']}`" if r["kind"] == "sweep" else "no-op cells",
                str(r["cells"]),
                "serial" if r["workers"] == 0 else f"{r['workers']} Dask workers",
                f"{r['wall_seconds']:.2f}",
            ]
            for r in cost["records"]
        ]
        speedups = ", ".join(f"{preset} {ratio:.2f}x" for preset, ratio in cost["speedup_by_preset"].items())
        parts.append(
            f"{_provenance(cost, 'python -m simulations.sweep_cost')}, {cost['machine'].get('cpus', '?')} CPU cores: "
            "wall time of whole sweeps, "
            f"cluster start and shutdown included.\n\n{_table(['sweep', 'cells', 'engine', 'seconds'], rows)}\n\n"
            f"Speedup of the cluster over serial (serial over cluster wall time): {speedups}. Starting the cluster "
            f"costs {cost['cluster_start_seconds']:.1f} s; Dask adds "
            f"{1e3 * cost['overhead_seconds_per_cell']:.2f} ms per cell."
        )
    return "\n\n".join(parts) if parts else "_Run `python -m simulations.many_samples` and `simulations.sweep_cost`._"


def theory_accuracy_table(results: Path) -> str:
    payload = _load(results, "theory_accuracy.json")
    if payload is None:
        return "_Run `python -m simulations.theory_accuracy`._"
    rows = [
        [
            "`log_residual_mass`: worst relative error against mpmath",
            f"{payload['log_residual_mass_worst_relative_error']:.1e}",
        ],
        [
            "block `E[w_i]`, constant gap: against the exact recursion",
            f"{payload['constant_gap_vs_exact_recursion']:.1e}",
        ],
        ["block `E[w_i]`, mixed gaps: against a 4x finer grid", f"{payload['mixed_gaps_vs_4x_finer_grid']:.1e}"],
    ]
    return f"{_provenance(payload, 'python -m simulations.theory_accuracy')}:\n\n{_table(['check', 'value'], rows)}"


def corrections_text(results: Path) -> str:
    corrections = _corrections(results)
    if not corrections:
        return "None."
    return "\n".join(
        f"- `results/gpu/{name}`: recorded commit `{fix['recorded_commit'][:10]}`, measured tree `"
        f"{fix['tree_commit'][:10]}` ({fix.get('reason', 'see results/gpu/provenance_corrections.json')})."
        for name, fix in corrections.items()
    )


# The code each result measures: a result whose commit is older than the last change to these paths is flagged. A
# script's results measure the code its experiment lists (``Experiment.measured_code``, which also enters its cells'
# keys); the demo is a command, not an experiment.
DEMO_CODE = (
    *SAMPLER_CODE,
    "specdiff/models/dit.py",
    "specdiff/demo.py",
    "specdiff/diagnostics.py",
    "simulations/cli.py",
)


@dataclass(frozen=True)
class Section:
    """One section of ``docs/results.md``: its table, the result files it reads and the code they measure."""

    name: str
    title: str
    intro: str
    table: Callable[[Path], str]
    sources: Mapping[str, tuple[str, ...]]  # result file (relative to the results folder) -> the paths it measures


SECTIONS = (
    Section(
        "exactness",
        "Exactness",
        "Every rule × drafter × kernel × dimension against the exact law of the chain (one-Gaussian data: closed "
        "form) and, for mixture data, against plain sampling; the negative controls are deliberately wrong rules "
        "that the same test must reject. Each check is judged at level 1e-3.",
        exactness_table,
        {"exactness.json": exactness.EXPERIMENT.measured_code},
    ),
    Section(
        "calibration",
        "Calibration against the theory",
        "The real sampler's acceptance against `α(δ)` for the logged gaps (token rule) and its accepted lengths "
        "against the block weights `Σ w_i` (block rule), as martingale z-scores (`specdiff.diagnostics`), on "
        "mixture data.",
        calibration_table,
        {"calibration.json": calibration.EXPERIMENT.measured_code},
    ),
    Section(
        "speedup",
        "Speedup in target calls",
        "Steps per sequential target call on mixture data, every drafter, fixed and adaptive windows, token and "
        "block rules, against the theory's prediction.",
        speedup_table,
        {"speedup.json": speedup.EXPERIMENT.measured_code},
    ),
    Section(
        "drafting",
        "Drafters and rules",
        "Which prediction the reuse Free Drafter takes, and which rule verifies, decide where the next round starts: "
        "after a rejection, token-reflection keeps the rejected draft's noise orthogonal to the gap, so the new root "
        "lands near the rejected draft, whose target prediction the nearest reuse drafter (the default) then drafts "
        "from; the block rule's residual draws that noise afresh. Measured on the peer project tree-specdiff's "
        "Gaussian-mixture benchmark, on the digits DiT and (section above) on the mixtures; the default rule "
        "(token-reflection) and drafter (nearest reuse) were chosen from these tables.",
        drafting_table,
        {
            "peer_gm.json": peer_gm.EXPERIMENT.measured_code,
            "dit_speedup.json": dit_speedup.EXPERIMENT.measured_code,
        },
    ),
    Section(
        "dit",
        "The digits DiT",
        "The shipped class-conditional DiT (1.27M parameters, trained on scikit-learn's 8x8 digits by "
        "`python -m simulations.train_dit`): its quality, the demo, and exactness with a real network.",
        dit_table,
        {
            "dit_quality.json": dit_quality.EXPERIMENT.measured_code,
            "demo/demo.json": DEMO_CODE,
            "dit_exactness.json": dit_exactness.EXPERIMENT.measured_code,
            "gpu/dit_exactness.json": dit_exactness.EXPERIMENT.measured_code,
        },
    ),
    Section(
        "sd_digits",
        "Stable Diffusion: a trained digits model",
        "A Stable-Diffusion-architecture model trained here (`specdiff.integrations.digits`: a UNet2DConditionModel "
        'with cross-attention on a frozen CLIP text encoder, pixel space, prompts "a handwritten seven"), sampled '
        "through `speculative_stable_diffusion` and `plain_stable_diffusion`: quality, exactness, acceptance against "
        "the theory, and the reuse Free Drafter against the cached-feature (DeepCache-style) drafter. The CPU seconds "
        "are for reference only: on a CPU a call on L + 1 states costs about L + 1 calls on one, so fewer calls do "
        "not buy wall time there (the GPU benchmark is `python -m simulations.bench_sd_gpu`).",
        sd_digits_table,
        {
            "sd_digits.json": sd_digits.EXPERIMENT.measured_code,
            "train_sd_digits.json": train_sd_digits.EXPERIMENT.measured_code,
        },
    ),
    Section(
        "gpu",
        "Wall clock on a GPU",
        "Plain against speculative sampling of the digits DiT, every drafter, token and block rules, with the "
        "sampler's states on the GPU and on the host (`specdiff.placement.DeviceModel`); each speedup is plain over "
        "speculative wall time measured in one process. On a CPU a call on m states costs about m calls on one, so "
        "fewer calls buy little wall time; on a GPU a batch of L + 1 states costs about one call.",
        gpu_table,
        dict.fromkeys((*(f"gpu/{name}" for name in GPU_BENCHES), "bench_cpu.json"), BENCH_EXPERIMENT.measured_code),
    ),
    Section(
        "overhead",
        "The sampler's own overhead",
        "Everything but the model calls, on the exact denoiser of a 64-d Gaussian mixture (a few microseconds per "
        "state, about as much as drawing that state's noise); the per-state columns say what the share would be for "
        "a costlier model.",
        overhead_table,
        {"overhead.json": overhead.EXPERIMENT.measured_code},
    ),
    Section(
        "round_cost",
        "The sampler's round",
        "Kernel-launching operations and host synchronizations per round counted on a CPU (`specdiff.opcount`), "
        "and the sampler's own time per round, before and after the round was rebuilt as a fixed set of tensor "
        "operations.",
        round_cost_table,
        {
            "round_cost.json": round_cost.EXPERIMENT.measured_code,
            "randomness_cost.json": randomness_cost.EXPERIMENT.measured_code,
        },
    ),
    Section(
        "graph_check",
        "Graph replay",
        "A replayed round (`graph=`, `specdiff.graphs`) against the same round run as it is, bitwise: on a CUDA "
        "device through a CUDA graph, elsewhere through `SimulatedGraph`, which stands for one. Eager configurations "
        "call the model one row at a time, so that the replayed round's width (the policy's largest window) cannot "
        "change the network's last bits; the control is a drafter whose memory a replay cannot see.",
        graph_check_table,
        {"graph_check.json": graph_check.EXPERIMENT.measured_code},
    ),
    Section(
        "residual_cost",
        "Cost of a residual draw",
        "The weighted residual sampler by inverse CDF (the default) against rejection sampling; neither calls the "
        "network. Rejection collapses at small δ and w, which is why the inverse CDF is the default.",
        residual_cost_table,
        {"residual_cost.json": residual_cost.EXPERIMENT.measured_code},
    ),
    Section(
        "theory_accuracy",
        "Accuracy of the theory's numerics",
        "The closed forms and the numerical integration of the block rule, against independent references.",
        theory_accuracy_table,
        {"theory_accuracy.json": theory_accuracy.EXPERIMENT.measured_code},
    ),
    Section(
        "sweeps",
        "Sweeps at scale",
        "Every simulation is a list of keyed cells that runs serially, on a local Dask cluster (`--workers K`) or on "
        "an existing one (`--scheduler ADDRESS`), with identical records, and resumes from its store after an "
        "interruption (docs/design.md §7). A large sampling job shards by sample key.",
        sweeps_table,
        {
            "many_samples.json": many_samples.EXPERIMENT.measured_code,
            "sweep_cost.json": sweep_cost.EXPERIMENT.measured_code,
        },
    ),
)


def _git(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True)


def _git_bytes(root: Path, *arguments: str) -> bytes | None:
    """The standard output of a git command in ``root`` as bytes, or None when it fails."""
    completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True)
    return completed.stdout if completed.returncode == 0 else None


def _recorded_commit(results: Path, source: str, payload: dict[str, Any]) -> str | None:
    """The commit a result was measured at (a provenance correction wins over the recorded one)."""
    corrections = _corrections(results)
    name = Path(source).name
    if source.startswith("gpu/") and name in corrections:
        return str(corrections[name]["tree_commit"])
    commit = payload.get("commit")
    return str(commit) if commit else None


def staleness(commit: str | None, code: Sequence[str], root: Path = REPOSITORY_ROOT) -> str | None:
    """Why a result measured at ``commit`` is stale for ``code`` (paths relative to the repository ``root``), or None
    when it is current.

    Stale: no commit recorded, a commit this clone does not know, or a file of ``code`` whose measured content
    (``measured_content``: docstrings and comments do not count) differs between ``commit`` and the working tree,
    uncommitted changes included.
    """
    if commit is None:
        return "no commit recorded"
    if _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return f"commit `{commit[:10]}` is not in this repository's history"
    # An uncommitted change reads the same as a later commit, so the page does not change when the change is committed.
    changed = "the code it measures changed after this run"
    if _git(root, "ls-files", "--others", "--exclude-standard", "--", *code).stdout.strip():
        return changed  # a file of the code that git does not track yet: it was not in the commit
    differing = _git(root, "diff", "--name-only", "--no-renames", commit, "--", *code).stdout.splitlines()
    for path in differing:
        before = _git_bytes(root, "show", f"{commit}:{path}")
        file = root / path
        if before is None or not file.is_file():
            return changed  # added or removed since the run
        if measured_content(path, before) != measured_content(path, file.read_bytes()):
            return changed
    return None


def stale_results(results: Path) -> dict[str, str]:
    """Result file (relative to ``results``) -> why it is stale, for every stale result of every section."""
    reasons = {}
    for section in SECTIONS:
        for source, code in section.sources.items():
            payload = _load(results, source)
            if payload is None:
                continue
            reason = staleness(_recorded_commit(results, source, payload), code)
            if reason is not None:
                reasons[source] = reason
    return reasons


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, spaces to hyphens, punctuation dropped."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def results_page(results: Path, stale: Mapping[str, str]) -> str:
    """The whole of ``docs/results.md``: every section's table, provenance and the flags of ``stale_results``."""
    lines = [
        "# Results",
        "",
        "<!-- Generated by `python -m simulations.report` from the JSON files under results/; do not edit. -->",
        "",
        "Every table below is generated from a committed JSON result by `python -m simulations.report`; each says",
        "the command that produced it and the commit it ran at. A result is flagged **stale** when the code it",
        "measures changed after its run (the numbers then describe the older code); edits to docstrings and",
        "comments do not count. Rerun the named command and `python -m simulations.report` to refresh a table.",
        "",
        *[f"- [{section.title}](#{_anchor(section.title)})" for section in SECTIONS],
        "- [Provenance corrections](#provenance-corrections)",
        "",
    ]
    for section in SECTIONS:
        lines += [f"## {section.title}", "", section.intro, ""]
        flags = [
            f"> ⚠ **Stale:** `results/{source}`: {stale[source]}." for source in section.sources if source in stale
        ]
        if flags:
            lines += [*flags, ""]
        lines += [section.table(results), ""]
    lines += ["## Provenance corrections", "", corrections_text(results), ""]
    return "\n".join(lines)


def _drafting_headlines(results: Path) -> list[list[str]]:
    """Headline rows of the peer benchmark and of the default drafter and rule on the DiT."""
    rows = []
    peer = _load(results, "peer_gm.json")
    if peer is not None:
        best = _best([r for r in peer["records"] if r["drafter"] != "frozen"], "speedup")
        peer_best = max(p["speedup"] for p in peer["peer"])
        rows.append(
            [
                "the peer's Gaussian-mixture benchmark (tree-specdiff)",
                f"{best['speedup']:.2f}x ({best['drafter']}, {best['rule']}, {_window_label(best)}, "
                f"{best['rows_per_round']:.1f} target rows per round) against the peer's best {peer_best:.2f}x",
                "peer_gm.json",
            ]
        )
    dit = _load(results, "dit_speedup.json")
    if dit is not None:
        index = _by(dit["records"], "steps", "drafter", "rule", "window")
        parts = []
        for steps in dit["config"]["steps"]:
            new = index.get((steps, "free-nearest", "token", "adaptive"))
            old = index.get((steps, "free-committed", "block", "adaptive"))
            if new is not None and old is not None:
                parts.append(f"N = {steps}: {old['steps_per_call']:.2f} → {new['steps_per_call']:.2f}")
    if dit is not None and parts:
        rows.append(
            [
                "default drafter and rule (digits DiT, steps per call)",
                "committed reuse with block → nearest reuse with token-reflection: " + ", ".join(parts),
                "dit_speedup.json",
            ]
        )
    return rows


def headline_table(results: Path, stale: Mapping[str, str]) -> str:
    """The README's short table: exactness, calls saved, wall clock on a GPU, block over token (``stale`` marked)."""
    rows = []
    exactness = _load(results, "exactness.json")
    if exactness is not None:
        records = exactness["records"]
        controls = [r for r in records if r["family"] == "control"]
        rows.append(
            [
                "exactness (Gaussian chains)",
                f"{sum(check_passed(r) for r in records)}/{len(records)} checks as expected at level "
                f"{exactness['level']:g}; {sum(r['rejected'] for r in controls)}/{len(controls)} wrong rules rejected",
                "exactness.json",
            ]
        )
    dit = _load(results, "dit_exactness.json")
    if dit is not None:
        kept = [r for r in dit["records"] if not r["expected_rejection"]]
        controls = [r for r in dit["records"] if r["expected_rejection"]]
        rows.append(
            [
                "exactness (digits DiT)",
                f"{sum(not r['rejected'] for r in kept)}/{len(kept)} speculative configurations kept; "
                + ", ".join(f"{r['control']} rejected at p = {r['p_value']:.1g}" for r in controls if r["rejected"]),
                "dit_exactness.json",
            ]
        )
    sd = _load(results, "sd_digits.json")
    if sd is not None:
        checks = [r for r in sd["records"] if r["kind"] == "check"]
        kept = [r for r in checks if not r["expected_rejection"]]
        fewest = max(kept, key=lambda r: r["call_ratio"]) if kept else None
        rejected_controls = ", ".join(
            f"{r['control']} rejected at p = {r['p_value']:.1g}"
            for r in checks
            if r["expected_rejection"] and r["rejected"]
        )
        calls = (
            ""
            if fewest is None
            else f"; {fewest['plain_target_calls']} → {fewest['target_calls']} target calls ({fewest['rule']}, "
            f"{fewest['drafter']}, N = {fewest['steps']})"
        )
        rows.append(
            [
                "exactness (Stable Diffusion architecture, trained digits model)",
                f"{sum(not r['rejected'] for r in kept)}/{len(kept)} speculative configurations kept; "
                + rejected_controls
                + calls,
                "sd_digits.json",
            ]
        )
    many = _load(results, "many_samples.json")
    if many is not None:
        exact = next(job for job in many["jobs"] if job["control"] is None)
        controls = [job for job in many["jobs"] if job["control"] is not None]
        rows.append(
            [
                "exactness at large n (sharded by sample key)",
                f"{exact['samples']} samples in d = {many['config']['dimension']}: "
                f"{'kept' if not exact['rejected'] else 'rejected'} at p = {exact['p_value']:.2g}; "
                + ", ".join(
                    f"{job['control']} rejected at p = {job['p_value']:.1g}" for job in controls if job["rejected"]
                )
                + f"; engine: {many['sweep']['engine']}",
                "many_samples.json",
            ]
        )
    demo = _load(results / "demo", "demo.json")
    if demo is not None:
        rows.append(
            [
                "sequential target calls (digits DiT)",
                f"{demo['plain_target_calls']} → {demo['speculative_target_calls']} ({demo['call_ratio']:.2f}x fewer), "
                f"N = {demo['steps']}, {demo['rule']} rule, {demo['drafter']} drafter, adaptive window",
                "demo/demo.json",
            ]
        )
    host = _load(results / "gpu", "bench_gpu_host.json")
    if host is not None:
        best: dict[int, dict[str, Any]] = {}
        for record in host["records"]:
            if record["batch"] == 1 and record["drafter"] != "perfect" and "speedup" in record:
                if record["steps"] not in best or record["speedup"] > best[record["steps"]]["speedup"]:
                    best[record["steps"]] = record
        device = host["records"][0]["device"] if host["records"] else "?"
        rows.append(
            [
                f"wall clock on a GPU ({device}, batch 1)",
                "best speedup "
                + ", ".join(
                    f"N = {steps}: {record['speedup']:.2f}x ({record['rule']}, {record['drafter']})"
                    for steps, record in sorted(best.items())
                ),
                "gpu/bench_gpu_host.json",
            ]
        )
    rows += _drafting_headlines(results)
    speedup = _load(results, "speedup.json")
    if speedup is not None:
        nearest, other = _nearest_committed_split(speedup["summary"]["gains"])
        rows.append(
            [
                "block over token (steps per call, equal window, mixtures)",
                f"{min(g['measured_gain'] for g in other):.3f}–{max(g['measured_gain'] for g in other):.3f}x over "
                f"{len(other)} comparisons with the committed reuse, frozen, extrapolating and model drafters; "
                f"{len(_below(other))} below 1 by more than 3 standard errors; with the nearest reuse drafter, block "
                f"below token by more than 3 standard errors in {len(_below(nearest))} of {len(nearest)}",
                "speedup.json",
            ]
        )
    table = _table(
        ["", "result", "source"],
        [
            [claim, value + (" ⚠ stale" if source in stale else ""), f"`results/{source}`"]
            for claim, value, source in rows
        ],
    )
    return table + "\n\nEvery result, its command and its provenance: [docs/results.md](docs/results.md)."


def render(text: str, results: Path, stale: Mapping[str, str]) -> str:
    """``text`` with its headline section replaced by the freshly generated table."""
    pattern = re.compile(r"(<!-- report:headline -->\n)(?:.*?\n)?(<!-- /report:headline -->)", re.DOTALL)
    table = headline_table(results, stale)
    return pattern.sub(lambda match: match.group(1) + table + "\n" + match.group(2), text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README or the results page is stale")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--page", type=Path, default=RESULTS_PAGE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    readme = arguments.readme.read_text()
    stale = stale_results(arguments.results)  # git queries: once, for the page and the headline
    outputs = {
        arguments.readme: render(readme, arguments.results, stale),
        arguments.page: results_page(arguments.results, stale),
    }
    if arguments.check:
        outdated = [str(path) for path, text in outputs.items() if not path.exists() or path.read_text() != text]
        if outdated:
            print(f"out of date: {', '.join(outdated)}: run python -m simulations.report", file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
