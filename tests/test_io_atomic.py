"""sim.io atomic writes: content lands whole, and the file gets the usual umask mode (not mkstemp's 0600)."""
from __future__ import annotations

import json
import os
import stat

from sim import io as sio


def test_atomic_write_mode_follows_umask(tmp_path):
    out = sio.atomic_write_text(tmp_path / "sub" / "x.csv", "a,b\n")
    assert out.read_text() == "a,b\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "x.json"
    sio.atomic_write_json(path, {"ok": 1})
    try:
        sio.atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    except TypeError:
        pass
    assert json.loads(path.read_text()) == {"ok": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_output_is_one_line_exit_2(tmp_path, capsys):
    from sim.cli import main

    (tmp_path / "f").write_text("a file, not a folder")
    (tmp_path / "d").mkdir()
    for out in (tmp_path / "f" / "t.json", tmp_path / "d"):  # parent is a file; target is a folder
        assert main(["simulate", "--tokens", "50", "--method", "spd n=4 Ls=4", "--trace", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("spd simulate: error: ") and "cannot write" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"] and not list((tmp_path / "d").iterdir())
