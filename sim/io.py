"""Atomic file output: a failed run never leaves a half-written file in place of a good one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError


def _file_mode() -> int:
    """The mode open() would give a new file: mkstemp creates 0600, which would hide outputs from other users."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()  # read once: os.umask is process-wide, so setting it per call would race between threads


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # an output path the user gave that cannot be written: bad input, not a traceback
        why = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError):  # mkdir met a file where a folder belongs
            why = "a path above it is a file, not a folder"
        raise InputError(f"{path}: cannot write ({why})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # e.g. the output path is a directory, or the disk is full
            raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json_with_format(path: str | os.PathLike, expected_format: str) -> dict:
    """A JSON object whose ``format`` key must equal ``expected_format``; anything else is an InputError."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise InputError(f"{path}: format: expected {expected_format!r}")
    return meta
