"""Trained-draft checkpoints: the draft module's own files (``pdm.safetensors`` + ``pdm.json``, written and
validated by ``reference.draft``) plus ``train.json``: which drafter it is (spd / ppsd / chain), the target
(name, shape, GGUF sha256), the training settings, budget and result, and the data provenance.

Loading reads JSON and safetensors only: nothing in the files is executed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.io import atomic_write_json, read_json_with_format

from ..draft import PipelineDraftModule
from ..model import Transformer
from .drafts import METHODS

TRAIN_META = "train.json"
META_FORMAT = "spd-draft-training/1"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def target_record(model: Transformer, source: str, gguf_sha256: str | None) -> dict[str, Any]:
    c = model.config
    return {"name": c.name, "source": source, "gguf_sha256": gguf_sha256, "num_layers": c.num_layers,
            "hidden_size": c.hidden_size, "vocab_size": c.vocab_size}


def save_checkpoint(pdm: PipelineDraftModule, directory: str | Path, method: str, meta: dict[str, Any]) -> Path:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    directory = Path(directory)
    pdm.save(directory)
    atomic_write_json(directory / TRAIN_META, {"format": META_FORMAT, "method": method, **meta})
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / TRAIN_META
    if not path.is_file():
        raise InputError(f"{path}: not found (is {directory} a checkpoint written by `spd train-draft`?)")
    meta = read_json_with_format(path, META_FORMAT)
    if meta.get("method") not in METHODS:
        raise InputError(f"{path}: method: expected one of {', '.join(METHODS)}, got {meta.get('method')!r}")
    return meta


def load_checkpoint(directory: str | Path, target: Transformer) -> tuple[PipelineDraftModule, dict[str, Any]]:
    """(draft module on the target's device and dtype, in eval mode; its train.json)."""
    meta = read_meta(directory)
    want = (meta.get("target") or {}).get("num_layers")
    if want is not None and want != target.config.num_layers:
        raise InputError(f"{Path(directory) / TRAIN_META}: trained for a {want}-layer target, model has "
                         f"{target.config.num_layers}")
    pdm = PipelineDraftModule.load(directory, target).eval().requires_grad_(False)
    return pdm, meta
