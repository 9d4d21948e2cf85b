#!/usr/bin/env python3
"""GPU driver for issue 5 (docs/training.md "GPU runs"): two modes, each one device call of at most 10 minutes
(and ``data``: only a new data set, for the experiment scripts of scripts/gpu/, e.g. train_wide_n4.sh).

  python scripts/gpu/train_and_eval.py train --model /var/tmp/model/smol.gguf --budget-s 480 [--gpus 2]
      data generation (--gen-budget-s, default a quarter of the budget and at most 150 s; with --gpus G, G
      disjoint prompt shards in parallel) -> train PDMs n in --stages, the chain head and the PPSD draft (the
      rest, minus a packing margin; drafters dealt out over the GPUs) -> $OUT/ckpt-*.tar (each <= 15 MiB;
      extract into reference/checkpoints/), $OUT/data*.safetensors + .json (the generated token ids, a few MB
      per shard, and their provenance: keep them, e.g. under .cache/train-data/, and carry them to a later
      call with --extra-data A,B and a new --data-seed, so the data grows from session to session; --data A,B
      reuses data instead of generating any), $OUT/train.log. Rerunning with --data
      and --resume-tar OUT_TARS, or on a fresh machine with --warm-from reference/checkpoints, continues
      training (same weights and draft vocabulary, fresh optimizer).
  python scripts/gpu/train_and_eval.py eval --model /var/tmp/model/smol.gguf --budget-s 540 [--gpus 2]
      eval-acceptance on all prompts at T=0 and T=1 (one temperature per GPU) for every checkpoint in
      --checkpoints -> $OUT/acceptance.json + acceptance.md; an fp32 engine cross-check on 2 prompts; then the
      losslessness check (SPD == AR greedy on every prompt, each trained n, --lossless-tokens new tokens,
      workers spread over the GPUs) with the remaining time -> $OUT/lossless.json (resumable with
      --lossless-resume).

Every step is a subprocess of this repository's own commands, so each one's output lands in the log as it runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def sh(cmd: list[str], log: Path, timeout: float | None = None) -> int:
    line = " ".join(cmd)
    print(f"$ {line}", flush=True)
    with open(log, "a") as f:
        f.write(f"\n$ {line}\n")
        f.flush()
        try:
            r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                               env={**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"})
            rc = r.returncode
        except subprocess.TimeoutExpired:
            f.write("TIMEOUT\n")
            rc = 124
    print(f"  -> exit {rc}", flush=True)
    return rc


def sh_parallel(cmds: list[list[str]], log: Path, timeout: float) -> int:
    """One command per GPU (CUDA_VISIBLE_DEVICES=i), concurrently; each one's output goes to ``log`` with a
    ``[gpu i]`` prefix once it ends. Returns the first non-zero exit status (124 on a timeout)."""
    if len(cmds) == 1:
        return sh(cmds[0], log, timeout)
    procs = []
    for i, cmd in enumerate(cmds):
        print(f"$ [gpu {i}] {' '.join(cmd)}", flush=True)
        part = log.with_name(f"{log.stem}.gpu{i}.part")
        f = open(part, "w")
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(i),
               "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
        procs.append((subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env), f, part, cmd))
    deadline = time.time() + timeout
    rcs = []
    for p, f, part, cmd in procs:
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = 124
        f.close()
        with open(log, "a") as out:
            out.write(f"\n$ [gpu {len(rcs)}] {' '.join(cmd)}\n")
            out.writelines(f"[gpu {len(rcs)}] {line}" for line in open(part))
            out.write(f"[gpu {len(rcs)}] -> exit {rc}\n")
        part.unlink()
        print(f"  [gpu {len(rcs)}] -> exit {rc}", flush=True)
        rcs.append(rc)
    return next((rc for rc in rcs if rc != 0), 0)


RETURN_LIMIT = 15 << 20  # files come back from a device call at 16 MiB each at most


def pack(ckpt_dir: Path, out: Path, limit: int = RETURN_LIMIT) -> list[Path]:
    """Checkpoints into tars of at most ``limit`` bytes (device calls return files of at most 16 MiB)."""
    dirs = sorted(d for d in ckpt_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    groups, cur, size = [], [], 0
    for d in dirs:
        s = sum(f.stat().st_size for f in d.iterdir())
        if cur and size + s > limit:
            groups.append(cur)
            cur, size = [], 0
        cur.append(d)
        size += s
    if cur:
        groups.append(cur)
    tars = []
    for i, g in enumerate(groups):
        path = out / f"ckpt-{i}.tar"
        with tarfile.open(path, "w") as t:
            for d in g:
                t.add(d, arcname=d.name)
        tars.append(path)
    return tars


def generate_data(a: argparse.Namespace, files: list[Path], seed: int, budget_s: float, log: Path) -> int:
    """Training data, one prompt shard per file, in parallel (shard i of len(files) on GPU i)."""
    small = ["--topics", "2", "--self-instruct", "1", "--doc-prompts", "2", "--max-prompts", "6",
             "--max-new-tokens", "12"] if a.smoke else ["--self-instruct", str(a.self_instruct)]
    return sh_parallel([[PY, "-m", "reference.training.make_data", "--model", a.model, "--out", str(f),
                         "--seed", str(seed), "--shard", f"{i}/{len(files)}", "--budget-s", str(budget_s),
                         "--gen-batch", "384", "--no-progress"] + small for i, f in enumerate(files)], log,
                       timeout=budget_s + 120)


def data_only(a: argparse.Namespace, out: Path, log: Path) -> int:
    """Mode ``data``: a new data set (--data-seed, --gen-budget-s, one shard per GPU) in --work, its provenance
    JSON copied to --out, the comma list of its shards written to OUT/data_files.txt (for the shell drivers)."""
    seed = a.data_seed if a.data_seed is not None else a.seed
    files = [Path(a.work) / f"data{i}_seed{seed}.safetensors" for i in range(a.gpus)]
    Path(a.work).mkdir(parents=True, exist_ok=True)
    rc = generate_data(a, files, seed, a.gen_budget_s or 100.0, log)
    made = [f for f in files if f.is_file()]
    for f in made:
        shutil.copy(f.with_suffix(".json"), out / f.with_suffix(".json").name)
    if not made:
        print(f"train_and_eval: no data generated (see {log})", file=sys.stderr)
        return rc or 1
    (out / "data_files.txt").write_text(",".join(map(str, made)) + "\n")
    return rc


def train(a: argparse.Namespace, out: Path, log: Path) -> int:
    t0 = time.time()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    G = a.gpus
    data = [Path(x) for x in a.data.split(",")] if a.data else [work / f"data{i}.safetensors" for i in range(G)]
    extra = [Path(x) for x in a.extra_data.split(",")] if a.extra_data else []
    missing = [str(d) for d in extra if not d.is_file()]
    if missing:
        print(f"train_and_eval: --extra-data: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    generate = not all(d.is_file() for d in data)
    data_seed = a.data_seed if a.data_seed is not None else a.seed
    if generate:
        rc = generate_data(a, data, data_seed, a.gen_budget_s or min(150.0, a.budget_s * 0.25), log)
        if rc != 0:
            return rc
    for tar in a.resume_tar or []:
        with tarfile.open(tar) as t:
            t.extractall(work / "ckpt", filter="data")
    if a.warm_from:  # e.g. reference/checkpoints: continue the committed drafters (weights + vocabulary)
        import shutil

        for d in sorted(Path(a.warm_from).iterdir()):
            if d.is_dir() and not (work / "ckpt" / d.name).exists():
                shutil.copytree(d, work / "ckpt" / d.name)
    left = a.budget_s - (time.time() - t0) - 60  # packing + model load margin
    stages = [x for x in (a.stages + ("," + a.extra_stages if a.extra_stages else "")).split(",") if x]
    # Drafters dealt out over the GPUs (SPD depths round-robin, chain on the first, PPSD on the last): every
    # process trains on all the data with the same seed, so the draft vocabulary and hold-out agree.
    jobs = [(["spd"], stages[i::G]) for i in range(G)]
    jobs[0][0].append("chain")
    jobs[-1][0].append("ppsd")
    cmds = []
    for methods, st in jobs:
        methods = [m for m in methods if m != "spd" or st]
        cmds.append([PY, "-m", "sim.cli", "train-draft", "--model", a.model, "--data", ",".join(map(str, data + extra)),
                     "--out-dir", str(work / "ckpt"), "--methods", ",".join(methods),
                     "--stages", ",".join(st) or "2", "--ppsd-stages", a.ppsd_stages,
                     "--budget-s", str(max(30.0, left - 30)), "--batch-size", str(a.batch_size), "--seed", str(a.seed),
                     "--checkpoint-every-s", "60", "--no-progress",
                     "--layout-extra-stages", str(a.layout_extra_stages)]
                    + (["--max-steps", "2", "--tower-ffn", "32", "--agg-rank", "8", "--draft-vocab", "256",
                        "--holdout", "1"] if a.smoke else []))
    rc = sh_parallel(cmds, log, timeout=max(60.0, left + 60))
    tag = f"_seed{data_seed}"
    for d in data:
        if d.with_suffix(".json").is_file():
            (out / (d.stem + tag + ".json")).write_bytes(d.with_suffix(".json").read_bytes())
        if generate and d.is_file() and d.stat().st_size <= RETURN_LIMIT:
            (out / (d.stem + tag + ".safetensors")).write_bytes(d.read_bytes())
    if (work / "ckpt").is_dir():
        for t in pack(work / "ckpt", out):
            print(f"wrote {t} ({t.stat().st_size / 2**20:.1f} MiB)")
    return rc


def merge_acceptance(parts: list[Path], dest: Path) -> None:
    """Result files of one evaluation split by temperature -> one file (results concatenated)."""
    import json

    docs = [json.loads(p.read_text()) for p in parts]
    doc = docs[0]
    for d in docs[1:]:
        doc["results"] += d["results"]
        doc["engine_cross_check"] += d["engine_cross_check"]
        doc["settings"]["temperatures"] += d["settings"]["temperatures"]
        doc["settings"]["wall_s"] = max(doc["settings"]["wall_s"], d["settings"]["wall_s"])
    dest.write_text(json.dumps(doc))
    for p in parts:
        p.unlink()


def evaluate(a: argparse.Namespace, out: Path, log: Path) -> int:
    t0 = time.time()
    ck = Path(a.checkpoints)
    temps = ["0", "1"]
    G = min(a.gpus, len(temps))
    parts = [out / f"acceptance.part{i}.json" for i in range(G)]
    rc = sh_parallel([[PY, "-m", "sim.cli", "eval-acceptance", "--model", a.model, "--draft", str(ck),
                       "--temperatures", ",".join(temps[i::G]), "--max-new-tokens", "16" if a.smoke else "256",
                       "--seed", str(a.seed), "--out", str(parts[i]), "--no-progress"]
                      + (["--limit", "1"] if a.smoke else []) for i in range(G)], log, timeout=a.budget_s * 0.6)
    if all(p.is_file() for p in parts):
        merge_acceptance(parts, out / "acceptance.json")
    if (out / "acceptance.json").is_file():
        with open(out / "acceptance.md", "w") as f:
            subprocess.run([PY, "-m", "sim.cli", "eval-acceptance", "--from", str(out / "acceptance.json")], cwd=REPO,
                           stdout=f, env={**os.environ, "PYTHONPATH": str(REPO)})
    pdms = sorted(d for d in ck.iterdir() if d.is_dir() and "-pdm-n" in d.name)
    # fp32 cross-check of the batched emulation against the in-process engine (exact comparison needs fp32)
    sh([PY, "-m", "sim.cli", "eval-acceptance", "--model", a.model, "--draft", str(pdms[0]), "--dtype", "fp32",
        "--datasets", "mt_bench", "--limit", "2", "--temperatures", "0,1", "--cross-check", "2",
        "--max-new-tokens", "16" if a.smoke else "64",
        "--out", str(out / "crosscheck.json"), "--no-progress"], log, timeout=120)
    left = a.budget_s - (time.time() - t0) - 20
    if left > 30:
        cmd = [PY, "-m", "reference.training.lossless", "--model", a.model, "--workers", str(a.workers),
               "--max-new-tokens", "16" if a.smoke else str(a.lossless_tokens)] + (["--limit", "1"] if a.smoke else []) + [
               "--budget-s", str(left - 15), "--out", str(out / "lossless.json")]
        if a.lossless_resume:
            cmd += ["--resume", a.lossless_resume]
        for d in pdms:
            cmd += ["--draft", str(d)]
        sh(cmd, log, timeout=left + 30)
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("train", "eval", "data"))
    p.add_argument("--model", required=True, help="GGUF path on the GPU machine, e.g. /var/tmp/model/smol.gguf")
    p.add_argument("--budget-s", type=float, default=480.0)
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--work", default="/var/tmp/spd-train")
    p.add_argument("--data", default=None, help="existing training data, comma-separated parts (skips generation)")
    p.add_argument("--extra-data", default=None,
                   help="earlier calls' data parts, comma-separated, trained on together with this call's")
    p.add_argument("--data-seed", type=int, default=None,
                   help="seed of data generation (default --seed); a new one per session gives new prompts")
    p.add_argument("--resume-tar", action="append", help="ckpt-*.tar of an earlier call (resume states are not kept)")
    p.add_argument("--warm-from", default=None, help="checkpoint directories to continue (e.g. reference/checkpoints)")
    p.add_argument("--stages", default="2,3,4,6")
    p.add_argument("--extra-stages", default="", help="e.g. 8,10 when the budget allows")
    p.add_argument("--ppsd-stages", default="4")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--layout-extra-stages", type=int, default=0,
                   help="train each SPD drafter on the staircase of n + this many stages (train-draft's option)")
    p.add_argument("--gpus", type=int, default=1, help="processes in parallel, one per GPU (data shards, drafters, "
                   "temperatures)")
    p.add_argument("--gen-budget-s", type=float, default=0.0, help="data generation budget (0 = a quarter, <= 150 s)")
    p.add_argument("--self-instruct", type=int, default=3, help="instructions per (topic, kind) meta-prompt")
    p.add_argument("--checkpoints", default=str(REPO / "reference" / "checkpoints"))
    p.add_argument("--workers", type=int, default=12, help="lossless check: processes sharing the GPU")
    p.add_argument("--lossless-resume", default=None)
    p.add_argument("--lossless-tokens", type=int, default=256, help="new tokens per prompt in the lossless check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny sizes everywhere: a CPU test of the plumbing")
    a = p.parse_args()
    # every step reads the evaluation prompts (overlap check, evaluation): say so before any GPU time is spent
    # (the GPU image has no shared/; carry .cache/prompts and set SPD_PROMPTS_DIR, docs/training.md)
    sys.path.insert(0, str(REPO))
    from reference.prompts import prompts_dir
    from sim.errors import InputError
    try:
        os.environ["SPD_PROMPTS_DIR"] = str(prompts_dir())
    except InputError as exc:
        print(f"train_and_eval: error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{a.mode}.log"
    return {"train": train, "eval": evaluate, "data": data_only}[a.mode](a, out, log)


if __name__ == "__main__":
    raise SystemExit(main())
