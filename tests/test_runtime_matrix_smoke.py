"""The GPU executor matrix script, in its CPU --smoke form: runs, tabulates, packs the run directories."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_executor_matrix_smoke(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    r = subprocess.run([sys.executable, "scripts/gpu/executor_matrix.py", "--smoke", "--out", str(out), "--work",
                        str(work), "--only", "tiny_ar_cycle,tiny_spd2_a1.0_cycle"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {row["run"]: row for row in json.loads((out / "matrix_summary.json").read_text())["rows"]}
    assert set(rows) == {"tiny_ar_cycle", "tiny_spd2_a1.0_cycle"}
    spd = rows["tiny_spd2_a1.0_cycle"]
    assert spd["ok"] and spd["lossless_vs_reference"] is True
    assert spd["marginal_accept_rate"] == 1.0 and spd["l_acc"] > 1.5  # alpha 1: every draft accepted
    assert spd["speedup_vs_ar"] > 0 and abs(spd["speedup_over_l_acc"] - spd["speedup_vs_ar"] / spd["l_acc"]) < 1e-9
    assert "tiny_spd2_a1.0_cycle" in (out / "matrix_summary.txt").read_text()
    files = sorted(p.name for p in out.iterdir())
    assert files == ["executor_runs.tar.gz", "matrix_summary.json", "matrix_summary.txt"]
    with tarfile.open(out / "executor_runs.tar.gz") as tar:
        names = tar.getnames()
    assert "tiny_spd2_a1.0_cycle/trace.jsonl" in names and "tiny_ar_cycle/summary.json" in names
    assert not any(n.endswith("trace.perfetto.json") for n in names)
