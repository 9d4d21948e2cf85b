"""The 4- and 8-GPU plans of scripts/gpu/executor_matrix.py (issues 8 and 9): listed without launching, plus one
CPU smoke launch of the x4 plan's first SPD run."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("executor_matrix", REPO / "scripts/gpu/executor_matrix.py")
em = importlib.util.module_from_spec(_spec)
sys.modules["executor_matrix"] = em
_spec.loader.exec_module(em)


def _placement_ok(s, gpus):
    if s.method == "ar":
        return s.placement == "0"
    p = [int(x) for x in s.placement.split(",")]
    return len(p) == s.n + 1 and p[0] == 0 and p[1:] == list(range(s.n)) and max(p) < gpus  # one stage per GPU


@pytest.mark.parametrize("plan,gpus,depths", [("x4", 4, {4}), ("x8", 8, {8, 4})])
def test_plan_lists_required_runs(plan, gpus, depths):
    runs = em.build_plan(plan)
    names = [s.name for s in runs]
    assert len(names) == len(set(names))
    assert all(_placement_ok(s, gpus) for s in runs)
    for sh in ("qwen3-4b", "llama-3.1-8b"):
        mine = [s for s in runs if s.shape == f"random:{sh}"]
        assert {s.trace for s in mine if s.method == "ar"} == {"full", "cycle"}
        top = max(depths)
        assert {s.alpha for s in mine if s.method == "spd" and s.n == top and s.trace == "full"} == {1.0, 0.8, 0.6}
        for n in depths:
            assert any(s.method == "ar_pipeline" and s.n == n for s in mine)
            assert any(s.method == "spd" and s.n == n for s in mine)
        if plan == "x8":  # draft towers 2 (default), 3, 4 at n=8
            assert {s.draft_layers or 2 for s in mine if s.method == "spd" and s.n == 8 and s.trace == "full"} \
                == {2, 3, 4}
    assert {s.trace for s in runs if s.group in ("headline", "split")} == {"cycle"}
    assert {s.trace for s in runs if s.group not in ("headline", "split")} == {"full"}
    split = [s for s in runs if "--stage-split" in s.extra]  # the split `spd split` predicts best, beside an even one
    assert plan != "x4" or (split and all(sum(map(int, s.extra[1].split(","))) == 36 for s in split))
    for call in {s.call for s in runs}:  # each device call fits its 10 minutes (with the launch-time model)
        assert sum(em.estimate_s(s) for s in runs if s.call == call) < 560


def test_default_model_plan():
    runs = em.build_plan("x4-default-model", "/var/tmp/model/smol.gguf")
    spd = [s for s in runs if s.method == "spd"]
    assert spd and all(s.checkpoint.endswith("smollm2-pdm-n4") and s.n == 4 for s in spd)
    assert all(s.shape == "/var/tmp/model/smol.gguf" for s in runs)
    assert "--draft-checkpoint" in spd[0].args() and "--check-lossless" in spd[0].args()
    assert (REPO / em.DEFAULT_MODEL_CKPT / "pdm.json").is_file()
    r = subprocess.run([sys.executable, "scripts/gpu/executor_matrix.py", "--plan", "x4-default-model", "--out",
                        "/tmp/unused"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--gguf" in r.stderr


def test_replay_draft_layers_in_args():
    s = next(s for s in em.build_plan("x8") if s.draft_layers == 4)
    a = s.args()
    assert a[a.index("--draft-layers") + 1] == "4" and a[a.index("--alpha") + 1] == "0.8"
    assert "--draft-layers" not in next(s for s in em.build_plan("x4") if s.method == "spd").args()


def test_x4_first_spd_run_smoke_on_cpu(tmp_path):
    first = next(s for s in em.smoke_plan("x4") if s.method == "spd" and s.call == 1)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "scripts/gpu/executor_matrix.py", "--plan", "x4", "--smoke", "--out", str(out),
                        "--work", str(tmp_path / "work"), "--only", first.name, "--call", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                  "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((out / "matrix_summary.json").read_text())["rows"]
    assert [row["run"] for row in rows] == [first.name]
    assert rows[0]["ok"] and rows[0]["n"] == 4 and rows[0]["lossless_vs_reference"] is True


def test_forecast_table_prints_a_row_per_method(capsys):
    """docs/multi-gpu-plan.md's forecast table comes from this script: closed form and simulator per method."""
    spec = importlib.util.spec_from_file_location("forecast_table", REPO / "scripts" / "forecast_table.py")
    ft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ft)
    assert ft.main([str(REPO / "scenarios" / "h100x4_n4.json"), "--profile",
                    str(REPO / "profiles" / "h100x2_full_traces.json"), "--tokens", "400"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| x4: ")]
    names = [r.split("`")[1] for r in rows]
    assert names[0] == "qwen3-4b_ar" and "qwen3-4b_spd4_a1.0" in names and len(rows) == 5
    cells = rows[0].split("|")
    assert cells[2].strip() == "1.00" and cells[3].strip().endswith("1.000")  # AR is its own baseline


@pytest.mark.parametrize("plan", ["x4", "x8"])
def test_larger_plans_carry_speculative_twins(plan):
    runs = em.build_plan(plan)
    names = {s.name for s in runs}
    spec = [s for s in runs if "--speculative-control" in s.extra]
    assert {s.alpha for s in spec} == {1.0, 0.8} and {s.n for s in spec} == {int(plan[1:])}
    for s in spec:  # the default twin and the AR baseline ran in the same call
        twin = next(r for r in runs if r.name == s.name.replace("_cycle_spec", "_cycle"))
        ar = [r for r in runs if r.method == "ar" and r.shape == s.shape and r.call == s.call and r.trace == "cycle"]
        assert twin.call == s.call and ar and s.name in names


def test_speculative_control_plan_pairs_every_run_with_its_default_twin():
    """Issue 4's n=2 headline with --speculative-control: each speculative cycle-level run has its default twin and
    its shape's AR baseline in the same call, and the call fits its 10 minutes."""
    runs = em.build_plan("spec-control")
    names = {s.name for s in runs}
    spec = [s for s in runs if "--speculative-control" in s.extra]
    assert spec and all(s.method == "spd" and s.n == 2 for s in spec)
    for s in spec:
        if s.trace == "cycle" and "--stage-split" not in s.extra and s.alpha in (1.0, 0.8):
            assert s.name.replace("_cycle_spec", "_cycle") in names
        assert f"{s.shape.split(':')[1]}_ar_cycle_c1" in names
    assert sum(em.estimate_s(s) for s in runs) < 560


def test_launch_estimate_grows_with_the_decoded_tokens():
    """Longer runs (issue 6's noise floor: 8 prompts x 256 tokens instead of 4 x 64) take longer to launch and
    decode: the estimate behind --budget-s and --list grows with them, and is unchanged at the default."""
    spec = next(s for s in em.build_plan("x4") if s.method == "spd" and s.shape == "random:qwen3-4b")
    base = em.estimate_s(spec)
    assert em.estimate_s(spec, em.DEFAULT_DECODE_TOKENS) == base
    assert em.estimate_s(spec, 8 * 256) == pytest.approx(base + 0.012 * (8 * 256 - 4 * 64))


@pytest.mark.parametrize("plan,repeats", [("x4-long", 3), ("x2-long", 2), ("x4-pin", 4)])
def test_repeat_plans_measure_every_configuration_once_per_repeat(plan, repeats):
    """Session 10's repeated wall-clock plans: unique names ending in the repeat (_rK), every repeat the same set
    of uninstrumented configurations with its own AR baseline per shape in its call (speedups divide by the same
    call's AR), and x4-pin's pinned runs next to their unpinned twins."""
    runs = em.build_plan(plan)
    names = [s.name for s in runs]
    assert len(names) == len(set(names)) and {s.trace for s in runs} == {"cycle"}
    by_rep: dict[str, list] = {}
    for s in runs:
        base, rep = s.name.rsplit("_r", 1)
        by_rep.setdefault(rep, []).append((base, s))
    assert sorted(by_rep) == [str(k) for k in range(1, repeats + 1)]
    configs = [sorted(b for b, _ in v) for v in by_rep.values()]
    assert all(c == configs[0] for c in configs)
    for v in by_rep.values():
        calls = {s.call for _, s in v}
        assert len(calls) == 1  # a repeat never straddles two calls
        for _, s in v:
            assert any(r.method == "ar" and r.shape == s.shape for _, r in v)
    if plan == "x4-pin":
        for i, s in enumerate(runs):
            if "--pin-cpus" in s.extra:
                twin = runs[i - 1]
                assert twin.name == s.name.replace("_pin", "") and twin.extra + ("--pin-cpus",) == s.extra
        assert sum("--pin-cpus" in s.extra for s in runs) == 3 * repeats
