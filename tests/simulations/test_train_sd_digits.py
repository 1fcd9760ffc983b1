"""Training the Stable-Diffusion-architecture digits model (``simulations.train_sd_digits``): the smoke run saves a
pipeline that loads offline and samples, with its record; the training is a function of its training seed; the
text encoder stays frozen."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from simulations import train_sd_digits
from specdiff.integrations.digits import load_digits_pipeline, untrained_digits_pipeline


def test_smoke_run_saves_a_loadable_pipeline_and_its_record(tmp_path: Path) -> None:
    folder, output, store = tmp_path / "sd", tmp_path / "train.json", tmp_path / "store"
    arguments = ["--smoke", "--training-seed", "4", "--output-dir", str(folder), "--output", str(output)]
    arguments += ["--store", str(store)]
    assert train_sd_digits.main(arguments) == 0
    payload = json.loads(output.read_text())
    (record,) = payload["records"]
    metadata = json.loads((folder / "training.json").read_text())
    assert metadata["training"] == record["training"] and metadata["seed"] == record["seed"] == 4
    assert metadata["commit"] and "machine" in metadata
    assert record["training"]["iterations"] == train_sd_digits.SMOKE.iterations
    assert math.isfinite(record["training"]["final_loss"]) and payload["final_loss"] == record["training"]["final_loss"]
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert record["unet_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in folder.rglob("*.safetensors"))  # readable by all
    pipe = load_digits_pipeline(folder)
    untrained = untrained_digits_pipeline(4)
    assert record["unet_parameters"] == sum(p.numel() for p in pipe.unet.parameters())
    # the UNet was trained (it moved from its initialization); the text encoder was not
    pairs = zip(pipe.unet.parameters(), untrained.unet.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    assert all(
        torch.equal(a, b)
        for a, b in zip(pipe.text_encoder.parameters(), untrained.text_encoder.parameters(), strict=True)
    )
    # A rerun reads the finished training from the store: nothing is written again.
    before = weights.stat().st_mtime_ns
    assert train_sd_digits.main(arguments) == 0
    assert json.loads(output.read_text())["sweep"]["resumed"] == 1 and weights.stat().st_mtime_ns == before


def test_the_training_is_a_function_of_its_training_seed(tmp_path: Path) -> None:
    smoke = train_sd_digits.SMOKE
    first = train_sd_digits.run_training(train_sd_digits.TrainingCell(smoke, str(tmp_path / "a"), 2), seed=10)
    second = train_sd_digits.run_training(train_sd_digits.TrainingCell(smoke, str(tmp_path / "b"), 2), seed=11)
    other = train_sd_digits.run_training(train_sd_digits.TrainingCell(smoke, str(tmp_path / "c"), 3), seed=10)
    assert first["unet_weights_sha256"] == second["unet_weights_sha256"] != other["unet_weights_sha256"]
