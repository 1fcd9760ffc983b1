"""``simulations.graph_check``: replayed rounds of the digits DiT against the rounds run as they are, bitwise, with a
list-memory drafter as the negative control (on the CPU through the simulated graph)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from simulations import graph_check
from simulations.common import shipped_digits

torch.set_num_threads(1)


def test_the_smoke_check_agrees_bitwise_and_catches_its_control(tmp_path: Path) -> None:
    output = tmp_path / "graph_check.json"
    assert graph_check.main(["--smoke", "--output", str(output), "--store", str(tmp_path / "store")]) == 0
    payload = json.loads(output.read_text())
    assert payload["passed"] and payload["config"]["device"] == "cpu"
    records = payload["records"]
    checks = [record for record in records if not record["control"]]
    controls = [record for record in records if record["control"]]
    assert checks and controls
    for record in checks:
        assert record["graph"] == "simulated" and record["rounds"] >= 4
        assert record["identical_samples"] and record["identical_logs"] and record["max_abs_difference"] == 0.0
    for record in controls:
        assert record["error"] is None and not record["identical_samples"] and record["max_abs_difference"] > 1e-3
    assert payload["checks_agreeing"] == len(checks) and payload["controls_disagreeing"] == len(controls)


def test_the_row_wise_model_is_the_network_row_by_row() -> None:
    network = shipped_digits("cpu")
    rowwise = graph_check.RowwiseModel(network)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(10, 1, 8, 8, generator=generator)
    t, y = torch.arange(10) * 90, torch.arange(10)
    with torch.no_grad():
        whole = rowwise(x, t, y)
        assert torch.equal(whole[:2], rowwise(x[:2], t[:2], y[:2]))  # independent of the call's other rows
        assert torch.equal(whole[3], network(x[3:4], t[3:4], y[3:4])[0])
        assert torch.equal(
            rowwise.forward_first_k(x, t, y, 2)[5], network.forward_first_k(x[5:6], t[5:6], y[5:6], 2)[0]
        )
    assert rowwise.depth == network.depth


def _record(control: bool, agree: bool, error: str | None = None) -> dict[str, Any]:
    cell = graph_check.CheckCell("free-nearest", "block", 4, False, control, 2, 12, "cpu")
    return {**cell.__dict__, "graph": "simulated", "status": "ran", "rounds": 5, "error": error, "agree": agree}


def test_the_verdict_needs_every_check_equal_and_every_control_different_without_error() -> None:
    def passed(*records: dict[str, Any]) -> bool:
        return graph_check.summarize(graph_check.SMOKE, records).passed

    assert passed(_record(False, True), _record(True, False))
    assert not passed(_record(False, False), _record(True, False))  # a replay that differs fails the run
    assert not passed(_record(False, True), _record(True, True))  # a control that is not caught fails it
    assert not passed(_record(False, True), _record(True, False, "RuntimeError: capture"))  # an error is no catch
    not_run = {**_record(False, False), "status": "not run", "reason": "compiled cells run on CUDA only"}
    assert passed(_record(False, True), _record(True, False), not_run)
    assert not passed(_record(False, True))  # no control ran: nothing shows the check can fail


def test_compiled_cells_are_not_run_off_cuda() -> None:
    cell = graph_check.CheckCell("free-nearest", "block", 8, True, False, 2, 12, "cpu")
    record = graph_check.run_check(cell, 0)
    assert record["status"] == "not run" and "CUDA" in record["reason"]
    assert "not run" in graph_check.describe(record)
