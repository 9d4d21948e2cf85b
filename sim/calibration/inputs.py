"""Find and load run traces: run directories, directories of runs, or trace files (plain, .xz or .gz)."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..traces import TRACE_FILES
from .extract import RunMeasurement, measure


def trace_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(f for name in TRACE_FILES for f in p.rglob(name))
            if not found:
                raise InputError(f"{p}: no {' / '.join(TRACE_FILES)} under this directory")
            out.extend(found)
        else:
            raise InputError(f"{p}: no such file or directory")
    return out


def load_runs(paths: list[str], require_full: bool = True) -> list[RunMeasurement]:
    return [measure(f, require_full) for f in trace_files(paths)]
