"""`spd eval-acceptance` end to end on the real default model and a committed checkpoint (tiny budget)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reference.training.results import FORMAT
from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_eval_acceptance_writes_file_says_so_and_reads_back(tmp_path, capsys):
    out = tmp_path / "acc.json"
    rc = main(["eval-acceptance", "--model", "smollm2", "--draft", str(ROOT / "reference/checkpoints/smollm2-pdm-n2"),
               "--draft", str(ROOT / "reference/checkpoints/smollm2-chain"), "--datasets", "mt_bench", "--limit", "1", "--max-new-tokens", "4", "--temperatures", "0",
               "--device", "cpu", "--no-progress", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == FORMAT and doc["settings"]["prompts"] == 1
    res = doc["results"]
    assert [(r["method"], r.get("stages"), r["temperature"]) for r in res] == [("spd", 2, 0.0), ("chain", None, 0.0)]
    assert len(res[0]["prompts"]) == 1 and res[0]["prompts"][0]["tokens"] <= 4
    # the chain head: draft k teacher-forced from every start s with s + k inside the path
    rec = res[1]["prompts"][0]
    assert rec["tf_starts"] == [max(0, rec["tokens"] - k) for k in range(1, res[1]["steps"] + 1)]
    assert all(0 <= a <= s for a, s in zip(rec["tf_accepted"], rec["tf_starts"]))
    # with --out the command still says what it did (one line), and --from prints the tables
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: 2 result(s)")
    assert main(["eval-acceptance", "--from", str(out)]) == 0
    assert "SPD" in capsys.readouterr().out
    assert main(["eval-acceptance", "--from", str(tmp_path / "missing.json")]) == 2
