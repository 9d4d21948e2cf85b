#!/usr/bin/env python3
"""Executor matrix for the GPU machines: the issue-4 headline and the runs the calibration (issue 6) fits on.

Run from the repository root with the repo on PYTHONPATH (no install needed):

    PYTHONPATH=. python scripts/gpu/executor_matrix.py --out "$OUT"          # 2 GPUs, ~8 minutes
    PYTHONPATH=. python scripts/gpu/executor_matrix.py --smoke --out /tmp/m  # CPU, tiny shapes (tested)

Each run is one ``spd run`` launch (``python -m reference.commands.run``), random bf16 weights of a real shape,
synthetic prompts (seeded token ids: the GPU machine needs no tokenizer), CUDA graphs for every one-token step.

1. Headline (qwen3-4b): AR on one GPU, SPD n=2 (controller and stage 1 on GPU 0 in one process, stage 1 on
   its own CUDA stream; stage 2 on GPU 1) with the replay draft at alpha 1.0 and 0.8, trace level ``cycle`` (no
   per-op synchronisation): wall-clock speedup over single-GPU AR and its ratio to the theoretical L_acc; the
   same with compiled kernels on both sides, with separate controller/stage-1 processes, and with an uneven
   stage split.
2. Calibration matrix (trace level ``full``): shapes smollm2-135m, qwen3-0.6b, qwen3-4b, llama-3.1-8b x
   {AR, AR pipeline n=2, SPD replay alpha 1.0/0.8/0.6 n=2}; n=3 and n=4 with several ranks per GPU; plus
   ``cycle``-level twins of some runs to measure what the instrumentation costs.

``--plan x4`` / ``--plan x8`` (issues 8 / 9, 4 / 8 GPUs, one stage per GPU, controller sharing GPU 0) and
``--plan x4-default-model --gguf PATH`` select the multi-GPU plans instead (``build_plan``; ``--list`` prints one,
``--call N`` runs one device call of it, ``--smoke`` runs it on CPU with tiny shapes); docs/multi-gpu-plan.md.
``--plan x4-long`` (calls 1-3, one repeat of the 4-GPU wall-clock set each) and ``--plan x2-long`` (the sub-1B
shapes at n=2, two repeats in one call) are session 10's repeated uninstrumented runs, meant for ``--prompts 8
--max-new-tokens 128`` (~6.5 minutes per call on H100); ``--plan x4-pin`` (calls 1, 2) runs three of them with and
without ``--pin-cpus``, side by side, to see whether pinning tightens their repeats (session 11: it does not;
docs/executor.md), ``--plan x2-pin`` repeats x2-long twice more with a pinned twin of SPD alpha 1.0, and
``--plan x2-shared`` runs qwen3-4b and llama-3.1-8b SPD n=3/4 with two stages on a GPU, at full trace and twice
uninstrumented (what the uninstrumented contention is fitted on; docs/calibration.md, session 11).

Runs are ordered by priority and skipped once ``--budget-s`` is spent. Outputs under ``--out``: the run
directories (under ``--work``) packed into ``executor_runs*.tar.gz`` (each about 15 MiB at most; Perfetto files left out, they are
regenerated from trace.jsonl by ``sim.traces.to_chrome_trace``), ``matrix_summary.json`` and a table
``matrix_summary.txt`` (also printed).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PART_LIMIT_BYTES = 15 * 1024 * 1024
DRAFT_VOCAB = 32768  # the replay draft's inner (untrained) PDM head: a 32k draft vocabulary, as EAGLE-3 / SPD use
TINY = ('random:custom:{"name":"tiny","vocab_size":211,"hidden_size":64,"intermediate_size":128,"num_layers":8,'
        '"num_heads":4,"num_kv_heads":2,"head_dim":16,"max_seq_len":512}')


@dataclass
class Spec:
    name: str
    shape: str  # model spec for --model
    method: str
    n: int
    placement: str | None
    alpha: float | None = None
    trace: str = "full"
    group: str = "calibration"
    draft_layers: int | None = None  # L_s of the (replay draft's untrained) PDM tower; None: the runtime's default 2
    checkpoint: str | None = None  # trained PDM directory: draft "pdm" instead of "replay"
    call: int = 1  # which device call of a multi-call plan runs it (--call)
    extra: tuple[str, ...] = ()  # further `spd run` arguments (e.g. --check-lossless)

    def args(self) -> list[str]:
        a = ["--method", self.method, "--stages", str(self.n), "--model", self.shape, "--trace", self.trace]
        if self.placement:
            a += ["--placement", self.placement]
        if self.method == "spd" and self.checkpoint:
            a += ["--draft", "pdm", "--draft-checkpoint", self.checkpoint]
        elif self.method == "spd":
            a += ["--draft", "replay", "--alpha", str(self.alpha)]
            if self.draft_layers is not None:
                a += ["--draft-layers", str(self.draft_layers)]
        return a + list(self.extra)

    @property
    def kernels(self) -> str:
        """The step kernels (``--kernels``; the CUDA default is fused): a speedup compares like with like."""
        return self.extra[self.extra.index("--kernels") + 1] if "--kernels" in self.extra else "default"


@dataclass
class Outcome:
    spec: Spec
    ok: bool
    wall_s: float
    summary: dict = field(default_factory=dict)
    error: str = ""


def _placements(n: int, gpus: int) -> str:
    """Controller with stage 1 on GPU 0; stages in contiguous blocks over the GPUs."""
    return ",".join(str(i) for i in [0] + [(s * gpus) // n for s in range(n)])


def build_matrix(smoke: bool, gpus: int) -> list[Spec]:
    if smoke:  # CPU: no placement
        return [Spec("tiny_ar_cycle", TINY, "ar", 1, None, trace="cycle", group="headline"),
                Spec("tiny_spd2_a1.0_cycle", TINY, "spd", 2, None, 1.0, "cycle", "headline"),
                Spec("tiny_arp2", TINY, "ar_pipeline", 2, None),
                Spec("tiny_spd2_a0.6", TINY, "spd", 2, None, 0.6),
                Spec("tiny_spd3_a0.8", TINY, "spd", 3, None, 0.8)]
    m: list[Spec] = []
    q4, pl2 = "random:qwen3-4b", _placements(2, gpus)
    dv = ("--draft-vocab", str(DRAFT_VOCAB))
    sep, comp = ("--process-per-rank",), ("--kernels", "compiled")
    # Headline (trace level cycle): the default runtime (one process per GPU; fused kernels; stage steps
    # and draft forwards replayed from CUDA graphs), a full-trace twin for the breakdown, the compiled kernels
    # on both sides of the speedup, a separate controller process, and an uneven split that gives stage 1
    # (which shares GPU 0 with the draft) fewer layers.
    m += [Spec("qwen3-4b_ar_cycle", q4, "ar", 1, "0", trace="cycle", group="headline"),
          Spec("qwen3-4b_spd2_a1.0_cycle", q4, "spd", 2, pl2, 1.0, "cycle", "headline", extra=dv),
          Spec("qwen3-4b_spd2_a0.8_cycle", q4, "spd", 2, pl2, 0.8, "cycle", "headline", extra=dv),
          Spec("qwen3-4b_ar_cycle_compiled", q4, "ar", 1, "0", trace="cycle", group="headline", extra=comp),
          Spec("qwen3-4b_spd2_a1.0_cycle_compiled", q4, "spd", 2, pl2, 1.0, "cycle", "headline", extra=dv + comp),
          Spec("qwen3-4b_spd2_a0.8_cycle_compiled", q4, "spd", 2, pl2, 0.8, "cycle", "headline", extra=dv + comp),
          Spec("qwen3-4b_spd2_a1.0_cycle_split17-19", q4, "spd", 2, pl2, 1.0, "cycle", "headline",
               extra=dv + ("--stage-split", "17,19")),
          Spec("qwen3-4b_spd2_a1.0_cycle_separate", q4, "spd", 2, pl2, 1.0, "cycle", "headline", extra=dv + sep),
          Spec("qwen3-4b_arp2_cycle", q4, "ar_pipeline", 2, pl2, trace="cycle", group="headline")]
    shapes = ["smollm2-135m", "qwen3-4b", "llama-3.1-8b", "qwen3-0.6b"]
    for sh in shapes:  # n = 2 on two GPUs, fully traced
        spec = f"random:{sh}"
        m.append(Spec(f"{sh}_ar", spec, "ar", 1, "0"))
        for a in (0.8, 1.0, 0.6):
            m.append(Spec(f"{sh}_spd2_a{a}", spec, "spd", 2, pl2, a, extra=dv))
        m.append(Spec(f"{sh}_arp2", spec, "ar_pipeline", 2, pl2))
    for n in (3, 4):  # several ranks per GPU
        for sh in ("qwen3-4b", "qwen3-0.6b", "llama-3.1-8b"):
            spec = f"random:{sh}"
            m.append(Spec(f"{sh}_spd{n}_a0.8", spec, "spd", n, _placements(n, gpus), 0.8, extra=dv))
            m.append(Spec(f"{sh}_arp{n}", spec, "ar_pipeline", n, _placements(n, gpus)))
    for sh in ("smollm2-135m", "qwen3-0.6b", "llama-3.1-8b"):  # instrumentation cost: cycle-level twins
        m.append(Spec(f"{sh}_spd2_a0.8_cycle", f"random:{sh}", "spd", 2, pl2, 0.8, "cycle", extra=dv))
        m.append(Spec(f"{sh}_ar_cycle", f"random:{sh}", "ar", 1, "0", trace="cycle"))
    return m


# ---- multi-GPU plans (issues 8 and 9): the runs those issues list, in priority order, split into device calls ----
PLANS = ("x2", "x2-long", "x2-pin", "x2-shared", "x4", "x4-long", "x4-pin", "x8", "x4-default-model", "spec-control")
PLAN_GPUS = {"x2": 2, "x2-long": 2, "x2-pin": 2, "x2-shared": 2, "x4": 4, "x4-long": 4, "x4-pin": 4, "x8": 8, "x4-default-model": 4, "spec-control": 2}
HEADLINE_SHAPES = ("qwen3-4b", "llama-3.1-8b")
ALPHAS = (1.0, 0.8, 0.6)
DEFAULT_MODEL_CKPT = "reference/checkpoints/smollm2-pdm-n4"
# Launch-time model behind --budget-s, fitted by eye on results/h100x2/matrix_summary.json (2x H100): AR 19-21 s,
# n=2 pipeline/SPD 25-28.5 s (model load + CUDA graph capture + replay reference pass + warm-up + decode; the
# 4B shape ~2.5 s slower than 135M). n > 2 was never measured on one GPU per stage: +15% margin.
_SIZE_S = {"qwen3-4b": 2.5, "llama-3.1-8b": 5.0}
# Runs longer than the default 4 prompts x 64 tokens: seconds per extra decoded token (the AR reference pass of a
# replay run plus the decode itself, at session 9's 4x H100 rates: 4B AR 180 tok/s, SPD 170-330 tok/s; 8B AR 134).
# Not yet checked against a longer run: read --list with a margin.
_PER_TOKEN_S = {"qwen3-4b": 0.012, "llama-3.1-8b": 0.016}
DEFAULT_DECODE_TOKENS = 4 * 64


def estimate_s(spec: Spec, decode_tokens: int = DEFAULT_DECODE_TOKENS) -> float:
    size = next((v for k, v in _SIZE_S.items() if k in spec.shape), 0.0)
    per_token = next((v for k, v in _PER_TOKEN_S.items() if k in spec.shape), 0.006)
    extra = per_token * max(0, decode_tokens - DEFAULT_DECODE_TOKENS)
    full = 1.5 if spec.trace == "full" else 0.0
    if spec.method == "ar":
        return 19.5 + size + full + extra
    t = 22.5 + 1.5 * spec.n + size + full + (0.5 if spec.method == "spd" else 0.0)
    t += 1.0 * max((spec.draft_layers or 2) - 2, 0)  # a deeper (eager) draft tower: slightly longer decode
    return t * (1.15 if spec.n > 2 else 1.0) + extra


def _one_per_gpu(n: int) -> str:
    """Controller shares GPU 0 with stage 1 (separate processes); stage s on GPU s-1: one stage per GPU."""
    return ",".join(str(i) for i in [0] + list(range(n)))


def _shape_runs(sh: str, n: int, trace: str, group: str, call: int, alphas=ALPHAS, ar: bool = True,
                arp: bool = True, draft_layers=()) -> list[Spec]:
    spec, sfx, pl = f"random:{sh}", "_cycle" if trace == "cycle" else "", _one_per_gpu(n)
    m = [Spec(f"{sh}_ar{sfx}", spec, "ar", 1, "0", trace=trace, group=group, call=call)] if ar else []
    m += [Spec(f"{sh}_spd{n}_a{a}{sfx}", spec, "spd", n, pl, a, trace, group, call=call) for a in alphas]
    m += [Spec(f"{sh}_arp{n}{sfx}", spec, "ar_pipeline", n, pl, trace=trace, group=group, call=call)] if arp else []
    m += [Spec(f"{sh}_spd{n}_a0.8_ls{ls}{sfx}", spec, "spd", n, pl, 0.8, trace, group, draft_layers=ls, call=call)
          for ls in draft_layers]
    return m


def _spec_control_twins(sh: str, n: int, call: int, ar: bool = True, default: tuple[float, ...] = (1.0, 0.8),
                        extra: tuple[str, ...] = ()) -> list[Spec]:
    """Cycle-level SPD at alpha 1.0 and 0.8 with --speculative-control, beside default-control twins (alphas in
    ``default``) and the AR baseline in the same call (names end in _c<call>)."""
    q, pl, sfx = f"random:{sh}", _one_per_gpu(n), f"_c{call}"
    m = [Spec(f"{sh}_ar_cycle{sfx}", q, "ar", 1, "0", trace="cycle", group="headline", call=call)] if ar else []
    m += [Spec(f"{sh}_spd{n}_a{a}_cycle{sfx}", q, "spd", n, pl, a, "cycle", "headline", call=call, extra=extra)
          for a in default]
    return m + [Spec(f"{sh}_spd{n}_a{a}_cycle_spec{sfx}", q, "spd", n, pl, a, "cycle", "headline", call=call,
                     extra=extra + ("--speculative-control",)) for a in (1.0, 0.8)]


def _qwen4_split(split: str, trace: str, group: str, call: int, tail: str = "") -> Spec:
    """qwen3-4b SPD n=4 at alpha 1.0, one stage per GPU, with an explicit stage split: the runs that check what
    `spd split` proposes against the balanced split (named ..._split8-14-8-6<tail>)."""
    return Spec(f"qwen3-4b_spd4_a1.0{'_cycle' if trace == 'cycle' else ''}_split{split.replace(',', '-')}{tail}",
                "random:qwen3-4b", "spd", 4, _one_per_gpu(4), 1.0, trace, group, call=call,
                extra=("--stage-split", split))


def build_plan(plan: str, gguf: str | None = None) -> list[Spec]:
    """The GPU runs of a plan, priority-ordered (within each call). Headline wall-clock runs at trace level
    'cycle' (no per-op syncs), calibration runs at 'full' (what `spd calibrate` fits, `spd validate` checks)."""
    if plan == "x2":
        return build_matrix(False, 2)
    if plan == "x4":  # issue 8; 4 GPUs. Call 1: qwen3-4b headline, both shapes' calibration; call 2: llama headline
        m = _shape_runs("qwen3-4b", 4, "cycle", "headline", 1)
        m += _shape_runs("qwen3-4b", 4, "full", "calibration", 1)
        m += _shape_runs("llama-3.1-8b", 4, "full", "calibration", 1)
        m += _shape_runs("llama-3.1-8b", 4, "cycle", "headline", 2)
        # call 3 (session 5): the split 7/9/9/11 that `spd split scenarios/h200x4_n4_qwen3-4b.json` predicts
        # 6.3% faster (stage 1 shares GPU 0 with the draft), against the balanced split in the same call
        q, pl = "random:qwen3-4b", _one_per_gpu(4)
        m += [Spec("qwen3-4b_ar_cycle_c3", q, "ar", 1, "0", trace="cycle", group="split", call=3),
              Spec("qwen3-4b_spd4_a1.0_cycle_c3", q, "spd", 4, pl, 1.0, "cycle", "split", call=3),
              _qwen4_split("7,9,9,11", "cycle", "split", 3),
              Spec("qwen3-4b_spd4_a0.8_cycle_split7-9-9-11", q, "spd", 4, pl, 0.8, "cycle", "split", call=3,
                   extra=("--stage-split", "7,9,9,11"))]
        m += _spec_control_twins("qwen3-4b", 4, 3, ar=False, default=(0.8,))  # session 6; call 3 has AR and a1.0
        # call 4 (session 9): session 8's model proposes 8/14/8/6 (+14.9%) and predicts the measured 7/9/9/11 as
        # slower; all three splits at cycle level (the wall clock) and at full trace (what the model is fitted on)
        for trace, sfx, group in (("cycle", "_cycle", "split"), ("full", "", "split-traced")):
            m.append(Spec(f"qwen3-4b_ar{sfx}_c4", q, "ar", 1, "0", trace=trace, group=group, call=4))
            m += [_qwen4_split(sp, trace, group, 4, "_c4") for sp in ("9,9,9,9", "7,9,9,11", "8,14,8,6")]
        # and the split `spd split scenarios/h100x4_n4.json --profile profiles/h100x4_2gpu_s8.json` proposes (+6.7%)
        m.append(_qwen4_split("8,12,9,7", "cycle", "split", 4, "_c4"))
        return m  # call 2 then runs --plan x4-default-model too (docs/multi-gpu-plan.md)
    if plan == "x2-long":  # session 10: the sub-1B shapes' n=2 wall-clock runs, two interleaved repeats in one call
        dv, m = ("--draft-vocab", str(DRAFT_VOCAB)), []
        for rep in (1, 2):
            for sh in ("smollm2-135m", "qwen3-0.6b"):
                m += [replace(s, name=f"{s.name}_r{rep}", extra=s.extra + (dv if s.method == "spd" else ()))
                      for s in _shape_runs(sh, 2, "cycle", "long", 1)]
        return m
    if plan == "x2-pin":  # session 11: repeats 3 and 4 of x2-long, each with a pinned twin of SPD at alpha 1.0
        # (the sub-1B configuration whose repeats spread most, 13.7% in session 10)
        dv, m = ("--draft-vocab", str(DRAFT_VOCAB)), []
        for rep in (3, 4):
            for sh in ("smollm2-135m", "qwen3-0.6b"):
                runs = _shape_runs(sh, 2, "cycle", "pin", 1)
                runs.insert(2, replace(runs[1], name=runs[1].name + "_pin", extra=runs[1].extra + ("--pin-cpus",)))
                m += [replace(s, name=f"{s.name}_r{rep}", extra=s.extra + (dv if s.method == "spd" else ()))
                      for s in runs]
        return m
    if plan == "x2-shared":  # session 11: several stages per GPU (n=3: 0,0,0,1; n=4: 0,0,0,1,1) on H100
        # full traces to fit the contention terms (the H100 profiles had none), then two interleaved repeats of
        # the uninstrumented runs they must forecast; run with --prompts 8 --max-new-tokens 128
        q, l8 = "random:qwen3-4b", "random:llama-3.1-8b"
        m = [Spec("qwen3-4b_spd3_a0.8", q, "spd", 3, _placements(3, 2), 0.8, group="shared"),
             Spec("qwen3-4b_arp3", q, "ar_pipeline", 3, _placements(3, 2), group="shared"),
             Spec("llama-3.1-8b_spd4_a0.8", l8, "spd", 4, _placements(4, 2), 0.8, group="shared"),
             Spec("llama-3.1-8b_arp4", l8, "ar_pipeline", 4, _placements(4, 2), group="shared")]
        for rep in (1, 2):
            for sh, spec in (("qwen3-4b", q), ("llama-3.1-8b", l8)):
                m.append(Spec(f"{sh}_ar_cycle_r{rep}", spec, "ar", 1, "0", trace="cycle", group="shared"))
                m += [Spec(f"{sh}_spd{n}_a0.8_cycle_r{rep}", spec, "spd", n, _placements(n, 2), 0.8, "cycle", "shared")
                      for n in (3, 4)]
        return m
    if plan == "x4-long":  # session 10: the x4 wall-clock set, one repeat per call (run with 8 prompts x 128 tokens)
        # 4 x 64-token runs repeat within 8%, the size of the error goal; each call measures the whole set once,
        # with its own AR baselines, so three calls give three interleaved repeats of every configuration
        m = []
        for call in (1, 2, 3):
            runs = _shape_runs("qwen3-4b", 4, "cycle", "long", call) + _shape_runs("llama-3.1-8b", 4, "cycle", "long", call)
            runs += [_qwen4_split(sp, "cycle", "long", call) for sp in ("8,12,9,7", "8,14,8,6", "7,9,9,11")]
            m += [replace(s, name=f"{s.name}_r{call}") for s in runs]
        return m
    if plan == "x4-pin":  # does --pin-cpus tighten the launch-to-launch spread? (session 10 found up to 10.6%)
        # calls 1 and 2, two repeats each: every configuration unpinned, then pinned, next to each other
        q, l8, pl = "random:qwen3-4b", "random:llama-3.1-8b", _one_per_gpu(4)
        m = []
        for call in (1, 2):
            for rep in (2 * call - 1, 2 * call):
                runs = [Spec("qwen3-4b_ar_cycle", q, "ar", 1, "0", trace="cycle", group="pin", call=call),
                        Spec("llama-3.1-8b_ar_cycle", l8, "ar", 1, "0", trace="cycle", group="pin", call=call)]
                for base in (Spec("qwen3-4b_spd4_a1.0_cycle", q, "spd", 4, pl, 1.0, "cycle", "pin", call=call),
                             Spec("llama-3.1-8b_spd4_a0.6_cycle", l8, "spd", 4, pl, 0.6, "cycle", "pin", call=call),
                             Spec("qwen3-4b_arp4_cycle", q, "ar_pipeline", 4, pl, trace="cycle", group="pin", call=call)):
                    runs += [base, replace(base, name=base.name + "_pin", extra=base.extra + ("--pin-cpus",))]
                m += [replace(s, name=f"{s.name}_r{rep}") for s in runs]
        return m
    if plan == "x8":  # issue 9; 8 GPUs, 2 calls; every call carries its own AR baseline per shape and trace level
        q, l8 = "qwen3-4b", "llama-3.1-8b"
        m = _shape_runs(q, 8, "cycle", "headline", 1, alphas=(1.0, 0.8), draft_layers=(3, 4))
        m += _shape_runs(q, 8, "full", "calibration", 1, draft_layers=(3, 4))
        m += _shape_runs(l8, 8, "full", "calibration", 2, draft_layers=(3, 4))
        m += _shape_runs(l8, 8, "cycle", "headline", 2, alphas=(0.8,), arp=False)
        m += _shape_runs(l8, 4, "full", "n4-comparison", 2, alphas=(0.8,), ar=False)
        m += _shape_runs(q, 4, "full", "n4-comparison", 2, alphas=(0.8,), ar=False)
        for sh in (q, l8):  # call 3 (session 6): speculative control at n=8 beside its default twins and AR
            m += _spec_control_twins(sh, 8, 3)
        return m
    if plan == "x4-default-model":  # issue 8's default model (real GGUF) with its trained PDM at n=4
        model, pl = gguf or "smollm2", _one_per_gpu(4)
        ck, chk = DEFAULT_MODEL_CKPT, ("--check-lossless",)
        return [Spec("smollm2_ar_cycle", model, "ar", 1, "0", trace="cycle", group="headline"),
                Spec("smollm2_spd4_trainedpdm_cycle", model, "spd", 4, pl, None, "cycle", "headline", checkpoint=ck,
                     extra=chk),
                Spec("smollm2_arp4_cycle", model, "ar_pipeline", 4, pl, trace="cycle", group="headline"),
                Spec("smollm2_ar", model, "ar", 1, "0"),
                Spec("smollm2_spd4_trainedpdm", model, "spd", 4, pl, None, checkpoint=ck, extra=chk),
                Spec("smollm2_arp4", model, "ar_pipeline", 4, pl)]
    if plan == "spec-control":  # issue 4's n=2 headline with --speculative-control, against the default, same call
        dv, sc = ("--draft-vocab", str(DRAFT_VOCAB)), ("--speculative-control",)  # dv: as the x2 headline runs
        m = [r for sh in HEADLINE_SHAPES for r in _spec_control_twins(sh, 2, 1, extra=dv)]
        q, pl2 = "random:qwen3-4b", _one_per_gpu(2)
        m += [Spec("qwen3-4b_spd2_a1.0_cycle_spec_split17-19_c1", q, "spd", 2, pl2, 1.0, "cycle", "headline",
                   extra=dv + sc + ("--stage-split", "17,19")),
              Spec("qwen3-4b_spd2_a1.0_spec_c1", q, "spd", 2, pl2, 1.0, "full", "breakdown", extra=dv + sc),
              Spec("qwen3-4b_spd2_a0.6_cycle_spec_c1", q, "spd", 2, pl2, 0.6, "cycle", "headline", extra=dv + sc)]
        return m
    raise ValueError(f"unknown plan {plan!r} (one of {', '.join(PLANS)})")


def smoke_plan(plan: str) -> list[Spec]:
    """The plan with tiny shapes and no placement (CPU, gloo); the default-model plan keeps the 135M shape
    (random weights) so that the trained n=4 PDM's anchors and sizes fit."""
    out = []
    for s in build_plan(plan):
        model = "random:smollm2-135m" if s.checkpoint else TINY
        extra = s.extra if "--stage-split" not in s.extra else ()  # a split of the real shape's layer count
        out.append(Spec(s.name, model, s.method, s.n, None, s.alpha, s.trace, s.group, s.draft_layers,
                        s.checkpoint, s.call, extra))
    return out


def write_prompts(path: Path, count: int, length: int, vocab: int, seed: int) -> None:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps({"question_id": i, "prompt_ids": [rng.randrange(vocab) for _ in range(length)]})
                            + "\n" for i in range(count)))


def run_one(spec: Spec, work: Path, prompts: Path | str, device: str, max_new_tokens: int, timeout_s: float,
            env: dict, prompt_args: tuple[str, ...] = ()) -> Outcome:
    run_dir = work / "runs" / spec.name
    cmd = [sys.executable, "-m", "reference.commands.run", *spec.args(), "--device", device,
           "--prompts", str(prompts), *prompt_args, "--max-new-tokens", str(max_new_tokens), "--out", str(run_dir),
           "--seed", "0", "--warmup", "1"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Outcome(spec, False, time.monotonic() - t0, error=f"timed out after {timeout_s:g} s")
    wall = time.monotonic() - t0
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "logs" / "launcher.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        return Outcome(spec, False, wall, error=(r.stderr.strip().splitlines() or ["?"])[-1][:300])
    return Outcome(spec, True, wall, json.loads((run_dir / "summary.json").read_text()))


def roofline_ms(shape: str, hbm_tb_s: float) -> float | None:
    """Weights one decode step must read (bf16), over HBM bandwidth (TB/s). The untied input embedding is not
    read."""
    if not shape.startswith("random:") or shape.startswith("random:custom"):
        return None
    from reference.shapes import SHAPES

    c = SHAPES[shape[len("random:"):]]
    params = c.num_params - (0 if c.tie_word_embeddings else c.vocab_size * c.hidden_size)
    return 2 * params / (hbm_tb_s * 1e12) * 1e3


def table(outcomes: list[Outcome], hbm_tb_s: float = 3.35) -> tuple[str, list[dict]]:
    """The summary table; ``hbm_tb_s``: the GPU's peak HBM bandwidth, for the AR runs' roofline share."""
    base = {}
    for o in outcomes:  # single-device AR with the same trace level and kernels is each shape's denominator
        if o.ok and o.spec.method == "ar":
            base[(o.spec.shape, o.spec.trace, o.spec.kernels)] = o.summary["decode_tokens_per_s"]
    rows, lines = [], []
    hdr = f"{'run':28s} {'trace':5s} {'tok/s':>9s} {'ms/tok':>8s} {'speedup':>7s} {'L_acc':>6s} {'ratio':>6s} " \
          f"{'accept':>6s} {'roof%':>6s} {'lossless':>8s}"
    lines.append(hdr)
    for o in outcomes:
        s = o.summary
        row = {"run": o.spec.name, **asdict(o.spec), "ok": o.ok, "wall_s": round(o.wall_s, 1), "error": o.error}
        if not o.ok:
            lines.append(f"{o.spec.name:28s} FAILED: {o.error}")
            rows.append(row)
            continue
        tps = s["decode_tokens_per_s"]
        ar = base.get((o.spec.shape, o.spec.trace, o.spec.kernels))
        speedup = tps / ar if ar else None
        lacc = s.get("l_acc_mean_of_ratios") if o.spec.method == "spd" else (1.0 if o.spec.method == "ar" else None)
        ratio = speedup / lacc if speedup and lacc else None
        roof = roofline_ms(o.spec.shape, hbm_tb_s)
        roof_pct = 100 * roof / s["decode_ms_per_token"] if roof and o.spec.method == "ar" else None
        row.update({"decode_tokens_per_s": tps, "decode_ms_per_token": s["decode_ms_per_token"],
                    "speedup_vs_ar": speedup, "l_acc": lacc, "speedup_over_l_acc": ratio,
                    "marginal_accept_rate": s.get("marginal_accept_rate"), "roofline_pct": roof_pct,
                    "lossless_vs_reference": s.get("lossless_vs_reference"), "cycle_ms_mean": s.get("cycle_ms_mean")})
        rows.append(row)

        def f(x, spec):
            return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))

        lines.append(f"{o.spec.name:28s} {o.spec.trace:5s} {tps:9.1f} {s['decode_ms_per_token']:8.3f} "
                     f"{f(speedup, '7.3f')} {f(lacc, '6.3f')} {f(ratio, '6.3f')} "
                     f"{f(s.get('marginal_accept_rate'), '6.3f')} {f(roof_pct, '6.1f')} "
                     f"{str(s.get('lossless_vs_reference', '-')):>8s}")
    return "\n".join(lines), rows


def pack(work: Path, out: Path) -> list[Path]:
    """work/runs/* into out/executor_runs*.tar.gz, parts of about PART_LIMIT_BYTES at most."""
    runs = sorted((work / "runs").iterdir()) if (work / "runs").is_dir() else []
    parts: list[Path] = []
    current: list[Path] = []

    def flush(batch: list[Path]) -> None:
        if not batch:
            return
        path = out / f"executor_runs{'' if not parts else f'_{len(parts) + 1}'}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for d in batch:
                for f in sorted(d.rglob("*")):
                    if f.is_file() and f.name != "trace.perfetto.json":
                        tar.add(f, arcname=str(f.relative_to(work / "runs")))
        parts.append(path)

    budget = 0
    for d in runs:
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and f.name != "trace.perfetto.json")
        est = size // 6  # JSON lines compress ~6-10x
        if current and budget + est > PART_LIMIT_BYTES:
            flush(current)
            current, budget = [], 0
        current.append(d)
        budget += est
    flush(current)
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="what comes back: tar.gz parts and the summary (few files)")
    ap.add_argument("--work", default=None, help="run directories (default: a fresh temporary directory)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, a handful of runs")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop launching runs after this long")
    ap.add_argument("--prompts", type=int, default=4, help="synthetic prompts per run")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--only", default=None, help="comma-separated substrings: run only matching names")
    ap.add_argument("--plan", choices=PLANS, default="x2",
                    help="x2: the 2-GPU matrix (default); x4 / x8: issues 8 / 9; x4-default-model: real GGUF + "
                         "trained n=4 PDM (needs --gguf on the GPU machine)")
    ap.add_argument("--call", type=int, default=None, help="run only this device call of the plan (1, 2)")
    ap.add_argument("--gguf", default=None, help="x4-default-model: path of the default model's GGUF")
    ap.add_argument("--prompt-set", default="mt_bench",
                    help="x4-default-model: text prompt set or JSONL file (the real tokenizer encodes it)")
    ap.add_argument("--stop-after-failures", type=int, default=2,
                    help="stop launching after this many failed runs in a row (a broken build fails every run, "
                         "and each failure can take the 180-s run timeout)")
    ap.add_argument("--list", action="store_true", help="print the plan (name, call, placement, estimate) and exit")
    args = ap.parse_args(argv)
    tokens = args.prompts * args.max_new_tokens  # decoded per run: the launch-time estimate grows with it
    if args.list:
        plan = smoke_plan(args.plan) if args.smoke else build_plan(args.plan, args.gguf)
        total: dict[int, float] = {}
        for s in plan:
            if args.call is None or s.call == args.call:
                total[s.call] = total.get(s.call, 0.0) + estimate_s(s, tokens)
                print(f"call {s.call}  {s.name:34s} {s.group:13s} {s.trace:5s} n={s.n} "
                      f"placement={s.placement or '-':18s} est {estimate_s(s, tokens):5.1f} s")
        print("estimated launch time per call: " + ", ".join(f"call {c}: {t:.0f} s" for c, t in sorted(total.items())))
        return 0
    if args.plan == "x4-default-model" and not args.smoke and not args.gguf:
        print("executor_matrix: --plan x4-default-model needs --gguf PATH (the default model's GGUF)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="executor_matrix_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.smoke:
        device, gpus, vocab, gpu_name, bandwidth = "cpu", 0, 211, "-", 3.35
        args.max_new_tokens, args.prompts, args.prompt_len = min(args.max_new_tokens, 16), min(args.prompts, 2), 8
    else:
        import torch

        from reference.shapes import hbm_tb_s

        device, gpus, vocab = "cuda", torch.cuda.device_count(), 49152
        gpu_name = torch.cuda.get_device_name(0) if gpus else "?"
        bandwidth = hbm_tb_s(gpu_name)
        if gpus < max(1, PLAN_GPUS[args.plan] if args.plan != "x2" else 1):
            print(f"executor_matrix: plan {args.plan} needs {PLAN_GPUS[args.plan]} GPUs, {gpus} visible "
                  "(use --smoke on CPU)", file=sys.stderr)
            return 2
    prompts: Path | str = work / "prompts.jsonl"
    prompt_args: tuple[str, ...] = ()
    if args.plan == "x4-default-model" and not args.smoke:  # real model: text prompts through its tokenizer
        prompts, prompt_args = args.prompt_set, ("--limit", str(args.prompts))
    else:
        write_prompts(Path(prompts), args.prompts, args.prompt_len, vocab if args.plan != "x4-default-model" else
                      49152, seed=0)
    if args.plan == "x2":
        matrix = build_matrix(args.smoke, max(gpus, 1))
    else:
        matrix = smoke_plan(args.plan) if args.smoke else build_plan(args.plan, args.gguf)
    if args.call is not None:
        matrix = [s for s in matrix if s.call == args.call]
    if args.only:
        keys = args.only.split(",")
        matrix = [s for s in matrix if any(k in s.name for k in keys)]
    t_start = time.monotonic()
    outcomes: list[Outcome] = []
    skipped: list[str] = []
    failed_in_a_row = 0
    for spec in matrix:
        if failed_in_a_row >= args.stop_after_failures:
            print(f"[skip] {spec.name}: {failed_in_a_row} runs failed in a row", flush=True)
            skipped.append(spec.name)
            continue
        left = args.budget_s - (time.monotonic() - t_start)
        # multi-GPU plans: skip a run whose estimated launch time no longer fits (the device call has a hard limit)
        need = estimate_s(spec, tokens) if args.plan != "x2" and not args.smoke else 15.0
        if left < need:
            print(f"[skip] {spec.name}: budget spent ({left:.0f} s left, needs ~{need:.0f} s)", flush=True)
            skipped.append(spec.name)
            continue
        o = run_one(spec, work, prompts, device, args.max_new_tokens, timeout_s=min(180.0, max(left, 30.0)), env=env,
                    prompt_args=prompt_args)
        outcomes.append(o)
        failed_in_a_row = 0 if o.ok else failed_in_a_row + 1
        tps = o.summary.get("decode_tokens_per_s")
        print(f"[{time.monotonic() - t_start:6.1f} s] {spec.name}: "
              + (f"{tps:.1f} tok/s ({o.wall_s:.1f} s)" if o.ok else f"FAILED {o.error}"), flush=True)
    text, rows = table(outcomes, bandwidth)
    (out / "matrix_summary.txt").write_text(text + "\n")
    (out / "matrix_summary.json").write_text(json.dumps(
        {"device": device, "gpus": gpus, "gpu_name": gpu_name, "hbm_tb_s": bandwidth, "rows": rows,
         **({"plan": args.plan, "call": args.call, "skipped": skipped} if args.plan != "x2" else {})}, indent=1))
    parts = pack(work, out)
    print(text)
    if skipped:
        print("skipped (run them in a later call with --only): " + ",".join(skipped))
    print("packed: " + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)" for p in parts))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
