"""Training the digits DiT (``simulations.train_dit``) as an experiment of one cell: the smoke run writes a loadable
checkpoint and its record, the training is a function of its training seed, and a finished training is read from
the store."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from simulations import train_dit
from specdiff.models.dit import load_pretrained


def test_smoke_run_writes_a_loadable_checkpoint_its_record_and_the_quality_report(tmp_path: Path) -> None:
    folder, output, store = tmp_path / "dit", tmp_path / "train_dit.json", tmp_path / "store"
    arguments = ["--smoke", "--seed", "1", "--training-seed", "4", "--output-dir", str(folder), "--output", str(output)]
    arguments += ["--store", str(store)]
    assert train_dit.main(arguments) == 0
    payload = json.loads(output.read_text())
    (record,) = payload["records"]
    (cell,) = payload["sweep"]["cells_detail"]
    assert payload["seed"] == 1 and payload["preset"] == "smoke" and payload["config"]["output_dir"] == str(folder)
    model = load_pretrained("digits", directory=folder)
    metadata = json.loads((folder / "dit_digits.json").read_text())
    # the checkpoint's metadata is the record plus its provenance; the training seed seeded the training
    assert metadata["seed"] == record["seed"] == metadata["training"]["seed"] == 4 != cell["seed"]
    assert metadata["training"] == record["training"] and metadata["commit"] and "machine" in metadata
    assert record["training"]["iterations"] == train_dit.SMOKE.iterations == record["training"]["log"][-1]["iteration"]
    assert record["parameters"] == metadata["parameters"] == model.num_parameters()
    assert math.isfinite(record["training"]["final_loss"]) and payload["final_loss"] == record["training"]["final_loss"]
    weights = (folder / "dit_digits.safetensors").read_bytes()
    assert record["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert record["weights_path"] == str(folder / "dit_digits.safetensors")
    quality = json.loads((folder / "dit_quality.json").read_text())
    assert quality["preset"] == "smoke" and (folder / "dit_digits_samples.png").stat().st_size > 0
    assert list((store / "dit_quality").glob("*.json"))  # the quality evaluation's cells, beside the training's
    # A rerun reads the finished training from the store: the checkpoint is not written again.
    before = (folder / "dit_digits.safetensors").stat().st_mtime_ns
    assert train_dit.main([*arguments, "--skip-quality"]) == 0
    again = json.loads(output.read_text())
    assert again["sweep"]["resumed"] == 1 and again["records"] == payload["records"]
    assert (folder / "dit_digits.safetensors").stat().st_mtime_ns == before


def test_the_training_is_a_function_of_its_training_seed(tmp_path: Path) -> None:
    first = train_dit.run_training(train_dit.TrainingCell(train_dit.SMOKE, str(tmp_path / "a"), 2), seed=10)
    second = train_dit.run_training(train_dit.TrainingCell(train_dit.SMOKE, str(tmp_path / "b"), 2), seed=11)
    other = train_dit.run_training(train_dit.TrainingCell(train_dit.SMOKE, str(tmp_path / "c"), 3), seed=10)
    assert first["weights_sha256"] == second["weights_sha256"] != other["weights_sha256"]
    a, b = load_pretrained("digits", directory=tmp_path / "a"), load_pretrained("digits", directory=tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_the_output_folder_is_relative_to_the_repository_root(tmp_path: Path) -> None:
    (relative,) = train_dit.cells(train_dit.PRESETS["smoke"])
    assert relative.output_dir == "results/smoke/dit" and relative.training == train_dit.SMOKE
    assert train_dit.output_directory(relative.output_dir) == train_dit.SMOKE_OUTPUT_DIRECTORY
    assert train_dit.cells(train_dit.PRESETS["full"])[0].output_dir == "specdiff/models/weights"
    assert train_dit.cells(train_dit.PRESETS["full"])[0].training_seed == 0  # the shipped weights' seed
    (absolute,) = train_dit.cells(train_dit.Config(train_dit.SMOKE, str(tmp_path)))
    assert absolute.output_dir == str(tmp_path) and train_dit.output_directory(absolute.output_dir) == tmp_path
