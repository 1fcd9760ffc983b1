"""The ``specdiff`` command line: ``demo``, ``theory``, ``sample``, ``verify``, ``figures`` and ``bench``.

- ``specdiff demo``: the shipped digits DiT sampled plainly and speculatively in one process (``specdiff.demo``).
- ``specdiff theory``: predicted against Monte-Carlo acceptance and accepted lengths (``simulations.theory_table``).
- ``specdiff sample``: a DiT with a chosen kernel, rule, drafter and window, to an image grid and the run's
  statistics (``simulations.sampling``).
- ``specdiff verify``: the exactness suite at a chosen size, with its report (``simulations.exactness``).
- ``specdiff figures``: every figure, from the committed results (``simulations.figures``).
- ``specdiff bench``: the wall-clock benchmark of plain against speculative sampling (``simulations.bench_gpu``).

Every subcommand takes ``--seed``, ``--device``, ``--json`` (a JSON document on stdout, progress and messages on
stderr) and ``--no-progress``. Bad arguments end with exit status 2 and a one-line message, before any long work
starts. Outputs go to ``specdiff-output/`` (ignored by git) unless ``--output-dir`` names another folder: ``demo``
and ``sample`` write a JSON file with the standard header of the results files (``simulations.experiment``: script,
preset ``"arguments"``, seed, config, provenance, seconds) and the run's numbers; ``verify`` and ``bench`` run their
experiment with its store of finished cells in ``OUTPUT_DIR/cells``, so a rerun reuses them (``bench --fresh`` times
every cell again).

The command line lives in ``simulations`` (the top layer) because ``verify``, ``figures`` and ``bench`` run the
simulation scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import torch

from simulations.experiment import standard_header, write_json

#: Where the commands write unless told otherwise (``.gitignore`` lists it).
OUTPUT_ROOT = Path("specdiff-output")


class CommandLineError(Exception):
    """Bad input to a subcommand: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number_list(kind: Callable[[str], Any], text: str) -> list[Any]:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None


def _floats(text: str) -> list[float]:
    return _number_list(float, text)


def _ints(text: str) -> list[int]:
    return _number_list(int, text)


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    common.add_argument("--json", action="store_true", help="print a JSON document instead of the text report")
    common.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return common


def _output_option(parser: argparse.ArgumentParser, default: Path, what: str) -> None:
    parser.add_argument("--output-dir", type=Path, default=default, help=f"where {what} go (default {default})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``specdiff`` command."""
    parser = _Parser(prog="specdiff", description="Exact speculative sampling of diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common_options()]

    demo = commands.add_parser(
        "demo", parents=common, help="plain against speculative sampling of the shipped digits DiT"
    )
    demo.add_argument("--steps", type=int, default=200, help="DDPM sampling steps (default 200)")
    demo.add_argument("--samples-per-class", type=int, default=2, help="samples of each digit (batch = 10 x this)")
    demo.add_argument("--max-window", type=int, default=16, help="largest window of the adaptive policy")
    demo.add_argument(
        "--measured-cost", action="store_true", help="weigh windows against this device's measured call cost"
    )
    _output_option(demo, OUTPUT_ROOT / "demo", "demo.json and demo_digits.png")

    theory = commands.add_parser(
        "theory", parents=common, help="predicted against Monte-Carlo accepted lengths, token and block rules"
    )
    theory.add_argument("--deltas", type=_floats, default=[0.1, 0.25, 0.5, 1.0, 2.0], help="comma-separated gaps")
    theory.add_argument("--windows", type=_ints, default=[2, 4, 8], help="comma-separated window lengths")
    theory.add_argument("--samples", type=int, default=20_000, help="Monte-Carlo windows per cell and rule")
    theory.add_argument("--dimension", type=int, default=8, help="dimension of the synthetic chain")

    from simulations.common import KERNEL_NAMES
    from simulations.sampling import SAMPLE_DRAFTER_NAMES
    from specdiff.sampler import DEFAULT_RULE
    from specdiff.verify import NAMED_RULES

    sample = commands.add_parser("sample", parents=common, help="sample a DiT: an image grid and the statistics")
    sample.add_argument("--model", default="digits", help="a shipped model's name or a dit_NAME.safetensors file")
    sample.add_argument("--steps", type=int, default=100, help="sampling steps (default 100)")
    sample.add_argument("--kernel", choices=KERNEL_NAMES, default="ddpm")
    sample.add_argument("--rule", choices=[*NAMED_RULES, "adaptive"], default=DEFAULT_RULE)
    sample.add_argument("--drafter", choices=SAMPLE_DRAFTER_NAMES, default="free-nearest", help="'none': plain")
    sample.add_argument("--window", default="adaptive", help="'adaptive' or a fixed window length")
    sample.add_argument("--samples-per-class", type=int, default=2, help="samples of each class (batch = 10 x this)")
    _output_option(sample, OUTPUT_ROOT / "sample", "sample.json and sample_grid.png")

    verify = commands.add_parser("verify", parents=common, help="the exactness suite, with its report")
    verify.add_argument(
        "--size", choices=("smoke", "full"), default="smoke", help="smoke: about a minute; full: the committed run"
    )
    _output_option(verify, OUTPUT_ROOT / "verify", "exactness.json and the finished checks (cells/)")

    figures = commands.add_parser("figures", parents=common, help="every figure, from the committed results")
    figures.add_argument("--results", type=Path, default=None, help="results folder (default: the repository's)")
    figures.add_argument("--output-dir", type=Path, default=None, help="default: the repository's docs/figures")

    from simulations.bench_gpu import PRESETS

    bench = commands.add_parser("bench", parents=common, help="wall clock of plain against speculative sampling")
    bench.add_argument("--preset", choices=sorted(PRESETS), default="smoke", help="smoke: seconds; full: minutes")
    bench.add_argument("--max-seconds", type=float, default=None, help="start no new cell after this")
    bench.add_argument("--compile", action="store_true", help="sample with compile=True")
    bench.add_argument("--fresh", action="store_true", help="time every cell again (default: keep the finished ones)")
    _output_option(bench, OUTPUT_ROOT / "bench", "bench_PRESET.json and the finished cells (cells/)")
    return parser


def check_device(name: str | None) -> torch.device:
    """The torch device a subcommand runs on; ``CommandLineError`` for an unknown or unavailable one."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandLineError(f"unknown device {name!r}: use cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise CommandLineError(f"unsupported device {name!r}: use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandLineError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def check_writable(directory: Path) -> Path:
    """Create ``directory`` and check that a file can be written there, before any long work starts."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise CommandLineError(f"cannot write to {directory}: {error.strerror or error}") from None
    return directory


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CommandLineError(message)


@contextlib.contextmanager
def _messages_to_stderr(enabled: bool) -> Iterator[None]:
    """With ``--json``, what a job prints goes to stderr so that stdout holds the JSON document only."""
    if enabled:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    else:
        yield


#: The ``preset`` of the results files of ``demo`` and ``sample``: they have none, their config is the arguments.
COMMAND_PRESET = "arguments"


def _write_run(path: Path, script: str, seed: int, config: Any, seconds: float, fields: dict[str, Any]) -> None:
    """Write a command's results file: the standard header, ``seconds`` and the run's ``fields``."""
    write_json(path, {**standard_header(script, COMMAND_PRESET, seed, config), "seconds": seconds, **fields})


def _emit(arguments: argparse.Namespace, document: Any, text: str = "") -> None:
    if arguments.json:
        print(json.dumps(document, indent=1))
    elif text:
        print(text)


def _demo(arguments: argparse.Namespace) -> int:
    from specdiff.demo import format_demo, run_demo

    _require(arguments.steps >= 2, f"--steps must be >= 2, got {arguments.steps}")
    _require(arguments.samples_per_class >= 1, f"--samples-per-class must be >= 1, got {arguments.samples_per_class}")
    _require(arguments.max_window >= 1, f"--max-window must be >= 1, got {arguments.max_window}")
    device = check_device(arguments.device)
    output = check_writable(arguments.output_dir)
    start = time.perf_counter()
    result = run_demo(
        steps=arguments.steps,
        samples_per_class=arguments.samples_per_class,
        max_window=arguments.max_window,
        measured_cost=arguments.measured_cost,
        seed=arguments.seed,
        device=str(device),
        output_dir=output,
        progress=not arguments.no_progress,
    )
    config = {
        "steps": arguments.steps,
        "samples_per_class": arguments.samples_per_class,
        "max_window": arguments.max_window,
        "measured_cost": arguments.measured_cost,
        "device": str(device),
    }
    seconds = time.perf_counter() - start
    _write_run(output / "demo.json", "specdiff demo", arguments.seed, config, seconds, asdict(result))
    written = f"wrote {output / 'demo.json'} and {output / 'demo_digits.png'}"
    _emit(arguments, {**asdict(result), "output_dir": str(output)}, f"{format_demo(result)}\n{written}")
    return 0


def _theory(arguments: argparse.Namespace) -> int:
    from simulations.theory_table import format_theory_table, theory_table

    deltas, windows = arguments.deltas, arguments.windows
    _require(bool(deltas) and bool(windows), "--deltas and --windows must each name at least one value")
    _require(
        all(math.isfinite(delta) and delta >= 0 for delta in deltas), f"--deltas must be finite and >= 0: {deltas}"
    )
    _require(all(window >= 1 for window in windows), f"--windows must be >= 1: {windows}")
    _require(arguments.samples >= 2, f"--samples must be >= 2, got {arguments.samples}")
    _require(arguments.dimension >= 1, f"--dimension must be >= 1, got {arguments.dimension}")
    _require(check_device(arguments.device).type == "cpu", "specdiff theory runs on the cpu only")
    start = time.perf_counter()
    rows = theory_table(
        deltas,
        windows,
        samples=arguments.samples,
        dimension=arguments.dimension,
        seed=arguments.seed,
        progress=not arguments.no_progress,
    )
    legend = (
        f"\nE[tau]: expected accepted drafted steps per round (theory.verification, exact integration); MC: "
        f"specdiff.verify on {arguments.samples} synthetic windows in d = {arguments.dimension} "
        f"(mean ± standard error, z = (MC - theory) / stderr); block gain: (1 + E tau_block) / "
        f"(1 + E tau_token), steps per target call. {time.perf_counter() - start:.1f} s."
    )
    document = [
        {**asdict(row), "block_gain": row.block_gain, "token_z": row.token_z, "block_z": row.block_z} for row in rows
    ]
    _emit(arguments, document, format_theory_table(rows) + legend)
    return 0


def _sample(arguments: argparse.Namespace) -> int:
    from simulations.sampling import SampleRequest, check_request, format_sample, load_model, run_sample

    device = check_device(arguments.device)
    request = SampleRequest(
        model=arguments.model,
        steps=arguments.steps,
        kernel=arguments.kernel,
        rule=arguments.rule,
        drafter=arguments.drafter,
        window=arguments.window,
        samples_per_class=arguments.samples_per_class,
        seed=arguments.seed,
        device=str(device),
    )
    try:
        check_request(request)
        model = load_model(request.model, device)
    except (ValueError, FileNotFoundError) as error:
        raise CommandLineError(str(error)) from None
    output = check_writable(arguments.output_dir)
    start = time.perf_counter()
    report = run_sample(request, model, output, progress=not arguments.no_progress)
    seconds = time.perf_counter() - start
    _write_run(output / "sample.json", "specdiff sample", arguments.seed, request, seconds, asdict(report))
    written = f"wrote {output / 'sample.json'} and {output / 'sample_grid.png'}"
    _emit(arguments, {**asdict(report), "output_dir": str(output)}, f"{format_sample(report)}\n{written}")
    return 0


def _verify(arguments: argparse.Namespace) -> int:
    from simulations import exactness

    _require(check_device(arguments.device).type == "cpu", "specdiff verify runs on the cpu only")
    folder = check_writable(arguments.output_dir)
    output = folder / "exactness.json"
    script_arguments = ["--seed", str(arguments.seed), "--output", str(output), "--store", str(folder / "cells")]
    with _messages_to_stderr(arguments.json):
        status = exactness.main(script_arguments + (["--smoke"] if arguments.size == "smoke" else []))
    payload = json.loads(output.read_text())
    summary = {"all_passed": payload["all_passed"], "checks": len(payload["records"]), "output": str(output)}
    _emit(arguments, summary, f"report: {output}")
    return status


def _figures(arguments: argparse.Namespace) -> int:
    from simulations import figures

    results = figures.RESULTS if arguments.results is None else arguments.results
    _require(results.is_dir(), f"no results folder {results}")
    output = check_writable(figures.FIGURES if arguments.output_dir is None else arguments.output_dir)
    with _messages_to_stderr(arguments.json):
        written = figures.write_figures(results, output)  # a figure without its inputs is reported on stderr
        for path in written:
            print(f"wrote {path}")
    _emit(arguments, {"written": [str(path) for path in written], "missing": figures.missing_inputs(results)})
    return 0 if written else 1


def _bench(arguments: argparse.Namespace) -> int:
    from simulations import bench_gpu

    device = check_device(arguments.device)
    _require(arguments.max_seconds is None or arguments.max_seconds > 0, "--max-seconds must be > 0")
    folder = check_writable(arguments.output_dir)
    output = folder / f"bench_{arguments.preset}.json"
    script_arguments = ["--preset", arguments.preset, "--device", str(device), "--seed", str(arguments.seed)]
    script_arguments += ["--output", str(output), "--store", str(folder / "cells")]
    if arguments.max_seconds is not None:
        script_arguments += ["--max-seconds", str(arguments.max_seconds)]
    if arguments.compile:
        script_arguments.append("--compile")
    if arguments.fresh:
        script_arguments.append("--fresh")
    with _messages_to_stderr(arguments.json):
        status = bench_gpu.main(script_arguments)
    payload = json.loads(output.read_text())
    _emit(arguments, {"complete": payload.get("complete"), "output": str(output)})
    return status


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "theory": _theory,
    "sample": _sample,
    "verify": _verify,
    "figures": _figures,
    "bench": _bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``specdiff`` console script; returns the exit status."""
    arguments = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        _require(arguments.seed >= 0, f"--seed must be >= 0, got {arguments.seed}")
        return COMMANDS[arguments.command](arguments)
    except CommandLineError as error:
        print(f"specdiff {arguments.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["OUTPUT_ROOT", "CommandLineError", "build_parser", "check_device", "check_writable", "main"]
