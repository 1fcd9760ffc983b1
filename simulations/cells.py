"""Keys and seeds of cells: the part of the experiment framework that records depend on.

A cell's seed is the first 63 bits of a SHA-256 of its identity (the experiment's module, its parameters less any
shared-seed fields, the sweep's root seed), written as canonical JSON; seeds for purposes inside a cell are hashes
of the cell's seed and the purpose's name. Arrays travel through JSON bit for bit as base64 float64 bytes. Every
experiment's results measure this module (``simulations.experiment.FRAMEWORK_CODE``); the rest of the framework
(engines, store, command line, progress) does not change a record.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulations.provenance import REPOSITORY_ROOT


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: dataclasses as mappings, tensors and arrays as lists, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: jsonable(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist"):  # a torch tensor, without importing torch here
        return jsonable(value.tolist())
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def digest(document: Any) -> str:
    text = json.dumps(jsonable(document), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def code_version(paths: Sequence[str], root: Path = REPOSITORY_ROOT) -> str:
    """SHA-256 of the contents of ``paths`` (relative to ``root``), in order; a missing file counts as empty."""
    digest = hashlib.sha256()
    for path in paths:
        file = root / path
        digest.update(path.encode() + b"\0")
        digest.update(file.read_bytes() if file.is_file() else b"")
        digest.update(b"\0")
    return digest.hexdigest()


def cell_seed(module: str, parameters: Any, root_seed: int, shared_seed_fields: Sequence[str] = ()) -> int:
    """The seed of a cell: the first 63 bits of the SHA-256 of its identity (module, parameters but their
    ``shared_seed_fields``, root seed)."""
    identity = {name: value for name, value in jsonable(parameters).items() if name not in shared_seed_fields}
    return int(digest({"module": module, "parameters": identity, "seed": root_seed})[:16], 16) >> 1


def cell_key(module: str, parameters: Any, root_seed: int, version: str) -> str:
    """The key of a cell's stored record: 128 bits of the SHA-256 of its identity and the measured code's version."""
    return digest({"module": module, "parameters": parameters, "seed": root_seed, "code": version})[:32]


def derived_seed(seed: int, purpose: str) -> int:
    """An independent seed for one ``purpose`` inside a cell (e.g. ``"recheck"``): a hash of both, 63 bits."""
    return int(digest({"seed": seed, "purpose": purpose})[:16], 16) >> 1


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A float64 array as JSON, bit for bit: its shape and its little-endian bytes in base64."""
    data = np.ascontiguousarray(array, dtype="<f8")
    return {"shape": list(data.shape), "float64_base64": base64.b64encode(data.tobytes()).decode()}


def decode_array(document: Mapping[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_array`."""
    data = np.frombuffer(base64.b64decode(document["float64_base64"]), dtype="<f8")
    return data.reshape(document["shape"]).copy()
