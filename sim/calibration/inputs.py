"""Find and load run traces: run directories, directories of runs, or compressed ``trace.jsonl.gz`` files."""
from __future__ import annotations

import gzip
import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from .extract import RunMeasurement, measure


def trace_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(list(p.rglob("trace.jsonl")) + list(p.rglob("trace.jsonl.gz")))
            if not found:
                raise InputError(f"{p}: no trace.jsonl or trace.jsonl.gz under this directory")
            out.extend(found)
        else:
            raise InputError(f"{p}: no such file or directory")
    return out


def load_runs(paths: list[str], require_full: bool = True) -> list[RunMeasurement]:
    runs = []
    for f in trace_files(paths):
        if f.suffix == ".gz":
            try:
                text = gzip.decompress(f.read_bytes())
            except (OSError, EOFError) as exc:
                raise InputError(f"{f}: not a readable gzip file ({exc})") from None
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "trace.jsonl").write_bytes(text)
                m = measure(tmp, require_full)
            runs.append(replace(m, path=str(f)))
        else:
            runs.append(measure(f, require_full))
    return runs
