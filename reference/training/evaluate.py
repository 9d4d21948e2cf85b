"""Acceptance of trained drafters on prompts, batched over prompts (docs/acceptance-format.md).

1. Generate each prompt's committed path with the target: greedy (T = 0: AR's output) or sampled (T > 0).
2. One teacher-forced pass over prompt + path gives every anchor's hidden state and the target's logits.
3. Each drafter runs on the exact rows the executor would give it: the PDM on the staircase layout for
   every m = 1..n, the PPSD draft on the first-stage stream, the chain head unrolled ``steps`` times.
4. ``reference.training.emulate`` replays the cycle (or round) schedule with those outcomes.

:func:`engine_crosscheck` runs the in-process engine (reference/local_engine.py) on a few prompts and
compares: identical tokens and accept sequences at T = 0, identical draft logits at every verified draft at
any temperature.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..draft import PipelineDraftModule
from ..model import Transformer
from ..spd_controller import stage_bounds
from .drafts import chain_outputs, ppsd_logits, spd_logits
from .emulate import ChainRun, PipelineRun, chain_schedule, pipeline_schedule
from .features import Batch
from .generate import generate_batch, pad_batch, teacher_forced_hidden


@dataclass
class EvalPrompt:
    dataset: str
    question_id: Any
    prompt_ids: tuple[int, ...]


@dataclass
class Drafter:
    """A drafter to measure: ``method`` spd | ppsd | chain; ``steps`` (chain only) drafts per round."""

    name: str
    method: str
    pdm: PipelineDraftModule
    steps: int = 5
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptOutcome:
    prompt: EvalPrompt
    tokens: int
    run: PipelineRun | ChainRun
    # chain only: (sum of draft k's outcomes, starts) for k = 1..steps over *every* start on the committed path
    teacher_forced: tuple[list[float], list[int]] | None = None


def teacher_forced_positions(table: np.ndarray, P: int, G: int, steps: int) -> tuple[list[float], list[int]]:
    """The chain head's draft k from every start s = P..P+G-1-k of the committed path (the path's tokens, the
    head's own features from step 2 on), not only from the starts where a round began with drafts 1..k-1
    accepted. Conditional acceptance at a deep position is measured on the chains that got there, which are
    the easy ones; this is EAGLE's "k-alpha" (k-1 estimated features), free of that selection. Returns per k the
    sum of outcomes (T=0: 1/0; T>0: min(1, q/p) of the path token) and the number of starts."""
    sums, starts = [], []
    for k in range(1, steps + 1):
        col = table[P:max(P, P + G - k), k - 1]
        sums.append(round(float(col.sum()), 4))
        starts.append(int(col.shape[0]))
    return sums, starts


def generate_paths(model: Transformer, prompts: Sequence[EvalPrompt], max_new_tokens: int, temperature: float,
                   seed: int, batch_size: int, eos_ids: Sequence[int], progress: bool = True) -> list[list[int]]:
    """Committed paths, batched over prompts of similar length. Sampling is seeded per batch."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].prompt_ids))
    out: list[list[int]] = [[] for _ in prompts]
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for c, chunk in enumerate(tqdm(chunks, desc=f"paths T={temperature:g}", disable=not progress)):
        paths = generate_batch(model, [prompts[i].prompt_ids for i in chunk], max_new_tokens,
                               temperature=temperature, seed=seed * 7919 + c, eos_ids=eos_ids)
        for i, p in zip(chunk, paths):
            out[i] = p
    return out


def _vocab_index(pdm: PipelineDraftModule, vocab_size: int, device: torch.device) -> torch.Tensor:
    """Map target id -> row of the draft logits (-1 outside the draft vocabulary)."""
    if pdm.vocab_ids is None:
        return torch.arange(vocab_size, device=device)
    idx = torch.full((vocab_size,), -1, dtype=torch.long, device=device)
    idx[pdm.vocab_ids] = torch.arange(pdm.vocab_ids.numel(), device=device)
    return idx


def _outcome(pdm: PipelineDraftModule, logits: torch.Tensor, nxt: torch.Tensor, log_p_next: torch.Tensor | None,
             temperature: float, vocab_index: torch.Tensor) -> torch.Tensor:
    """Per query: T=0 -> 1.0/0.0 (draft argmax == next path token); T>0 -> min(1, q(x)/p(x)), x the next path
    token. ``logits [..., V_draft]``, ``nxt [...]`` target ids, ``log_p_next [...]`` log p(x) at temperature T."""
    if temperature == 0:
        arg = logits.argmax(-1)
        tok = arg if pdm.vocab_ids is None else pdm.vocab_ids[arg]
        return (tok == nxt).double()
    logq = torch.log_softmax(logits.double() / temperature, dim=-1)
    row = vocab_index[nxt]
    lq = torch.gather(logq, -1, row.clamp(min=0)[..., None])[..., 0]
    lq = torch.where(row >= 0, lq, torch.full_like(lq, -float("inf")))
    return torch.exp(torch.clamp(lq - log_p_next.double(), max=0.0))


@torch.inference_mode()
def outcome_tables(model: Transformer, drafters: Sequence[Drafter], seqs: Sequence[Sequence[int]],
                   prompt_lens: Sequence[int], temperature: float) -> list[dict[str, np.ndarray]]:
    """For one batch of sequences (prompt + path): per sequence, per drafter name, a table of outcomes:
    spd ``[T, n]`` (column m-1 = m in flight), ppsd ``[T, 1]``, chain ``[T, steps]`` (column k-1 = draft k
    of a round starting at s). Rows are query positions t (s for chain)."""
    dev = model.device
    L = model.config.num_layers
    tokens, lengths = pad_batch(seqs, dev)
    B, T = tokens.shape
    need = {L} | {b for d in drafters for b in d.pdm.config.anchors}
    hid = teacher_forced_hidden(model, tokens, sorted(need))
    batch = Batch(tokens, lengths, torch.tensor(list(prompt_lens), device=dev), hid)
    # next token and its log-probability under the target at temperature T
    nxt = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)
    log_p_next = None
    if temperature > 0:
        lp = torch.log_softmax(model.final_logits(hid[L]).double() / temperature, dim=-1)
        log_p_next = torch.gather(lp, -1, nxt[..., None])[..., 0]
        del lp
    out: list[dict[str, np.ndarray]] = [{} for _ in range(B)]
    for d in drafters:
        vidx = _vocab_index(d.pdm, model.config.vocab_size, dev)
        if d.method == "spd":
            cols = []
            for m in range(1, d.pdm.config.n + 1):
                logits, _ = spd_logits(d.pdm, batch, m)
                cols.append(_outcome(d.pdm, logits, nxt, log_p_next, temperature, vidx))
            table = torch.stack(cols, dim=-1)
        elif d.method == "ppsd":
            logits, _ = ppsd_logits(d.pdm, batch)
            table = _outcome(d.pdm, logits, nxt, log_p_next, temperature, vidx)[..., None]
        else:
            feats, _ = chain_outputs(d.pdm, batch, d.steps)  # [B, T, steps, d]; step k predicts s+k
            cols = []
            for k in range(d.steps):
                pos = (torch.arange(T, device=dev) + k).clamp(max=T - 1)  # position whose next token is s+k+1
                nk = nxt[:, pos]
                lpk = None if log_p_next is None else log_p_next[:, pos]
                cols.append(_outcome(d.pdm, d.pdm.logits(feats[:, :, k]), nk, lpk, temperature, vidx))
            table = torch.stack(cols, dim=-1)
        table = table.float().cpu().numpy()
        for i in range(B):
            out[i][d.name] = table[i]
    return out


def evaluate(model: Transformer, drafters: Sequence[Drafter], prompts: Sequence[EvalPrompt], *,
             max_new_tokens: int, temperature: float, seed: int, eos_ids: Sequence[int], gen_batch: int = 64,
             max_mask_elems: int = 1 << 27, paths: Sequence[Sequence[int]] | None = None, progress: bool = True
             ) -> dict[str, list[PromptOutcome]]:
    """Outcomes per drafter name, one per prompt (prompt order). ``paths`` reuses committed paths."""
    if paths is None:
        paths = generate_paths(model, prompts, max_new_tokens, temperature, seed, gen_batch, eos_ids, progress)
    results: dict[str, list[PromptOutcome | None]] = {d.name: [None] * len(prompts) for d in drafters}
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].prompt_ids) + len(paths[i]))
    n_max = max([d.pdm.config.n if d.method == "spd" else d.steps for d in drafters] + [1])
    chunks, cur = [], []
    for i in order:  # the staircase layout's mask has B*(T*(n+1))^2 entries: keep it bounded
        T_i = len(prompts[i].prompt_ids) + len(paths[i])
        if cur and (len(cur) + 1) * (T_i * (n_max + 1)) ** 2 > max_mask_elems:
            chunks.append(cur)
            cur = []
        cur.append(i)
    if cur:
        chunks.append(cur)
    for chunk in tqdm(chunks, desc=f"score T={temperature:g}", disable=not progress):
        seqs = [list(prompts[i].prompt_ids) + list(paths[i]) for i in chunk]
        tables = outcome_tables(model, drafters, seqs, [len(prompts[i].prompt_ids) for i in chunk], temperature)
        for i, tab in zip(chunk, tables):
            P, G = len(prompts[i].prompt_ids), len(paths[i])
            for d in drafters:
                rng = np.random.default_rng([seed, i, int(temperature * 1000), sum(map(ord, d.name))])
                tf = teacher_forced_positions(tab[d.name], P, G, d.steps) if d.method == "chain" else None
                results[d.name][i] = PromptOutcome(prompts[i], G, _schedule(d, tab[d.name], P, G, temperature, rng), tf)
    return {k: [o for o in v if o is not None] for k, v in results.items()}


def _schedule(d: Drafter, table: np.ndarray, P: int, G: int, temperature: float, rng: np.random.Generator):
    def decide(prob: float) -> bool:
        return prob >= 0.5 if temperature == 0 else bool(rng.random() < prob)

    if d.method == "chain":
        return chain_schedule(P, G, d.steps, lambda s, k: decide(float(table[s, k - 1])))
    n = d.pdm.config.n
    if d.method == "ppsd":
        return pipeline_schedule(P, G, n, lambda t, m: decide(float(table[t, 0])))
    return pipeline_schedule(P, G, n, lambda t, m: decide(float(table[t, m - 1])))


def largest_stage(num_layers: int, n: int) -> int:
    return max(e - s for s, e in stage_bounds(num_layers, n))


# ------------------------------------------------------------------------------------------- cross-check
class RecordingDraft:
    """Wraps a draft source and keeps (newest position, tokens in flight, logits) of every proposal."""

    def __init__(self, inner: PipelineDraftModule) -> None:
        self.inner, self.vocab_ids, self.config = inner, inner.vocab_ids, inner.config
        self.calls: list[tuple[int, int, torch.Tensor]] = []

    def begin(self, prompt) -> None:
        self.calls = []
        self.inner.begin(prompt)

    def propose(self, inp) -> torch.Tensor:
        logits = self.inner.propose(inp)
        self.calls.append((inp.target_position - 1, len(inp.inflight), logits.detach().float().cpu().clone()))
        return logits

    def crop(self, length: int) -> None:
        self.inner.crop(length)


@dataclass
class CrossCheck:
    prompts: int
    tokens_equal: bool          # T=0: engine tokens == emulator path (AR greedy)
    accepts_equal: bool         # T=0: engine accept sequence == emulated one
    cycles_equal: bool          # T=0: engine K == emulated K
    max_logit_diff: float       # every verified draft: engine logits vs layout logits
    compared_drafts: int


@torch.inference_mode()
def engine_crosscheck(model: Transformer, pdm: PipelineDraftModule, prompts: Sequence[EvalPrompt],
                      max_new_tokens: int, temperature: float, seed: int, eos_ids: Sequence[int]) -> CrossCheck:
    from ..local_engine import LocalEngine
    from ..verify import SamplingConfig

    eng = LocalEngine(model, pdm.config.n)
    drafter = Drafter("spd", "spd", pdm)
    tok_eq = acc_eq = cyc_eq = True
    max_diff, compared = 0.0, 0
    for i, p in enumerate(prompts):
        rec = RecordingDraft(pdm)
        run = eng.generate_spd(p.prompt_ids, rec, max_new_tokens, eos_ids, SamplingConfig(temperature, seed + i))
        res = run.result
        path = res.tokens
        if temperature == 0:
            ref = generate_batch(model, [p.prompt_ids], max_new_tokens, eos_ids=eos_ids)[0]
            tok_eq &= ref == path
            emu = evaluate(model, [drafter], [p], max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                           eos_ids=eos_ids, paths=[path], progress=False)["spd"][0].run
            acc_eq &= list(emu.accepts) == list(res.accepts)
            cyc_eq &= emu.cycles == res.cycles
        # draft logits of every proposal made from the committed path, engine vs batched layout
        P = len(p.prompt_ids)
        seq = list(p.prompt_ids) + path
        toks, lengths = pad_batch([seq], model.device)
        hid = teacher_forced_hidden(model, toks, sorted(set(pdm.config.anchors) | {model.config.num_layers}))
        batch = Batch(toks, lengths, torch.tensor([P], device=model.device), hid)
        per_m = {m: spd_logits(pdm, batch, m)[0][0].float().cpu() for m in range(1, pdm.config.n + 1)}
        committed_end = P + len(path) - 1
        # Only proposals made from committed tokens are comparable (the others were flushed unverified): for
        # a newest position t < committed_end that is the *latest* proposal made at t (any in-flight draft
        # rejected after it would bring a correction and a later proposal at t).
        latest = {t: k for k, (t, _, _) in enumerate(rec.calls)}
        for t, k in latest.items():
            _, m, logits = rec.calls[k]
            if t + 1 > committed_end:
                continue
            max_diff = max(max_diff, float((per_m[m][t] - logits).abs().max()))
            compared += 1
    return CrossCheck(len(prompts), tok_eq, acc_eq, cyc_eq, max_diff, compared)
