"""Synthetic executor traces made by the simulator itself (tests of the fit, development without GPUs).

A known profile -> ``calibrated_method`` scenario -> the SimPy dataflow model with a timeline ->
the same JSON-lines trace format ``spd run`` writes (docs/traces.md), so ``spd calibrate`` must recover
the profile's parameters from it. Event mapping (one simulated generation per prompt):
control span -> ``ctrl_send`` (rank 0) and ``ctrl_recv`` (stage ranks, ending when the forward starts);
forward span -> ``forward`` minus the sender-side send cost, then ``send`` (what=hidden) of that cost;
"send -> rank 0" span -> ``send`` + matched ``recv`` on rank 0 ending at its arrival; draft / verify
spans -> ``draft`` / ``verify``; one cycle record per cycle ending before the bookkeeping span.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..des import TraceRecorder, simulate
from ..io import atomic_write_text
from ..scenario import Acceptance
from .extract import ModelShape
from .profile import Profile
from .profile_to_scenario import calibrated_method


def synthetic_run(out_dir: str | Path, profile: Profile, shape: ModelShape, method: str, n: int = 1,
                  draft_layers: int = 1, alpha: float = 0.8, prompts: int = 2, tokens: int = 32, seed: int = 0,
                  placement: tuple[str, ...] | None = None, spread: str = "lognormal",
                  environment: dict | None = None) -> Path:
    world = 1 if method == "ar" else n + 1
    placement = placement or tuple("host/cpu" for _ in range(world))
    cal = calibrated_method(profile, shape, method, stages=n, draft_layers=draft_layers, placement=placement,
                            draft_source="replay", acceptance=Acceptance(alpha), spread=spread)
    send_ms = profile.send_ms.mean_ms
    events, cycles, prompt_recs = [], [], []
    offset = 0.0
    seq: dict[str, int] = {}
    for p in range(prompts):
        spec = cal.scenario.methods[0]
        rec = TraceRecorder(0, "synthetic", max_cycles=10**9)
        res = simulate(cal.scenario, spec, tokens, seed=seed * 1000 + p, model="dataflow", costs=cal.costs,
                       trace=rec) if method != "ar" else simulate(cal.scenario, spec, tokens, seed=seed * 1000 + p)
        ns = lambda ms: int(round((ms + offset) * 1e6))  # noqa: E731
        if method == "ar":
            r = res.records
            for k in range(len(r)):
                events.append({"rank": 0, "name": "forward", "prompt": p, "cycle": k + 1, "t0_ns": ns(r.start_ms[k]),
                               "t1_ns": ns(r.end_ms[k])})
                cycles.append({"prompt": p, "cycle": k + 1, "control": "AR_STEP", "in_flight": 1, "event": "ar",
                               "committed": [0], "new_token": 0, "t0_ns": ns(r.start_ms[k]), "t1_ns": ns(r.end_ms[k])})
            accepts = []
        else:
            accepts = _convert(rec.events, p, n, ns, send_ms, events, cycles, seq, method)
        prompt_recs.append({"prompt": p, "question_id": p, "prompt_tokens": 8, "N": tokens + 1, "K": res.cycles,
                            "R": res.refill_rejects, "rejects": res.rejects, "accepts": accepts,
                            "stop_reason": "max_new_tokens", "prefill_ns": 0, "decode_ns": int(round(res.time_ms * 1e6)),
                            "t_start_ns": ns(0.0), "t_first_ns": ns(0.0), "t_end_ns": ns(res.time_ms)})
        offset += res.time_ms + 1.0
    split = cal.scenario.methods[0].split or (shape.layers,)
    bounds, start = [], 0
    for k in split:
        bounds.append([start, start + k])
        start += k
    env = {"torch": "synthetic", "cuda": None, "driver": None, **(environment or {})}
    header = {"type": "header", "format": "spd-trace", "version": 1, "method": method, "n_stages": n if method != "ar" else 1,
              "placement": None, "rank_devices": [d.split("/")[1] for d in placement],
              "hosts": [d.split("/")[0] for d in placement], "device_names": ["synthetic"],
              "model": {"name": shape.name, "num_layers": shape.layers, "hidden_size": shape.hidden_size,
                        "intermediate_size": shape.intermediate_size, "num_heads": shape.num_heads,
                        "num_kv_heads": shape.num_kv_heads, "head_dim": shape.head_dim, "vocab_size": shape.vocab_size},
              "stage_layers": bounds, "draft": ({"source": "replay", "alpha": alpha, "layers": draft_layers}
                                                if method == "spd" else None),
              "temperature": 0.0, "seed": seed, "max_new_tokens": tokens + 1, "trace_level": "full", "env": env}
    lines = [json.dumps(header)]
    lines += [json.dumps({"type": "event", **e}) for e in sorted(events, key=lambda e: (e["t0_ns"], e["rank"]))]
    lines += [json.dumps({"type": "cycle", **c}) for c in cycles]
    lines += [json.dumps({"type": "prompt", **r}) for r in prompt_recs]
    lines.append(json.dumps({"type": "summary", "format": "spd-run-summary", "version": 1, "method": method, "synthetic": True}))
    out = Path(out_dir)
    atomic_write_text(out / "trace.jsonl", "\n".join(lines) + "\n")
    return out


def _convert(chrome: list[dict], prompt: int, n: int, ns, send_ms: float, events: list, cycles: list,
             seq: dict[str, int], method: str = "spd") -> list[int]:
    by_cycle: dict[int, list[dict]] = {}
    cyc_spans = []
    for e in chrome:
        if e.get("ph") != "X":
            continue
        if e["tid"] == 1000:
            cyc_spans.append(e)
        else:
            by_cycle.setdefault(int(e["args"].get("cycle", 0)), []).append(e)
    accepts: list[int] = []
    prev_reject = False

    def nxt(link: str) -> int:
        seq[link] = seq.get(link, -1) + 1
        return seq[link]

    for i, c in enumerate(sorted(cyc_spans, key=lambda e: e["ts"]), start=1):
        t0 = c["ts"] / 1000.0
        t1 = t0 + c["dur"] / 1000.0
        ctrl_end = t0
        fwd_start: dict[int, float] = {}
        for e in sorted(by_cycle.get(i, []), key=lambda e: e["ts"]):
            s, d, name, tid = e["ts"] / 1000.0, e["dur"] / 1000.0, e["name"], e["tid"]
            if tid == 0 and name.startswith("control"):
                ctrl_end = s + d
                events.append({"rank": 0, "name": "ctrl_send", "prompt": prompt, "cycle": i, "t0_ns": ns(s),
                               "t1_ns": ns(s + d), "op": "CYCLE"})
            elif tid == 0 and name.startswith("draft"):
                events.append({"rank": 0, "name": "draft", "prompt": prompt, "cycle": i, "t0_ns": ns(s), "t1_ns": ns(s + d)})
            elif tid == 0 and name == "verify":
                events.append({"rank": 0, "name": "verify", "prompt": prompt, "cycle": i, "t0_ns": ns(s), "t1_ns": ns(s + d)})
            elif tid == 0 and name.startswith("bookkeeping"):
                t1 = s
            elif 1 <= tid <= n and name == "forward":
                last = tid == n
                f = d - (0.0 if last else send_ms)
                fwd_start[tid] = s
                events.append({"rank": tid, "name": "ctrl_recv", "prompt": prompt, "cycle": i, "t0_ns": ns(ctrl_end),
                               "t1_ns": ns(s), "op": "CYCLE"})
                events.append({"rank": tid, "name": "forward", "prompt": prompt, "cycle": i, "t0_ns": ns(s), "t1_ns": ns(s + f)})
                if not last:
                    events.append({"rank": tid, "name": "send", "prompt": prompt, "cycle": i, "t0_ns": ns(s + f),
                                   "t1_ns": ns(s + d), "what": "hidden", "peer": tid + 1, "bytes": 0,
                                   "link": f"{tid}->{tid + 1}", "seq": nxt(f"{tid}->{tid + 1}")})
            elif tid >= 100 and "rank 0" in name:
                s_rank = tid - 100
                link = f"{s_rank}->0"
                k = nxt(link)
                events.append({"rank": s_rank, "name": "send", "prompt": prompt, "cycle": i, "t0_ns": ns(s),
                               "t1_ns": ns(s), "what": "collect", "peer": 0, "bytes": 0, "link": link, "seq": k})
                events.append({"rank": 0, "name": "recv", "prompt": prompt, "cycle": i, "t0_ns": ns(s),
                               "t1_ns": ns(s + d), "peer": s_rank, "bytes": 0, "link": link, "seq": k})
        outcome = c["args"].get("outcome", -1)
        # as the executor labels them: an AR-pipeline step is "ar", an SPD cycle without a verification "fill"
        event = "ar" if method == "ar_pipeline" else "fill" if outcome == -1 else ("accept" if outcome == 1 else "reject")
        if outcome in (0, 1):
            accepts.append(int(outcome))
        cycles.append({"prompt": prompt, "cycle": i, "control": "DISCARD" if prev_reject else "GO",
                       "in_flight": int(c["args"].get("in_flight", 1)), "event": event, "committed": [],
                       "new_token": 0, "t0_ns": ns(t0), "t1_ns": ns(t1)})
        prev_reject = outcome == 0
    return accepts
