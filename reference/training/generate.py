"""Batched generation and teacher-forced feature passes of the frozen target (the data side of training).

Sequences of different lengths are right-padded and given per-row positions (``reference.model`` accepts
``positions [B, T]``): a padded slot of a row lands past that row's length and is overwritten before any real
token attends it, so each row computes what it would alone (up to batch-size numerics).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..model import Transformer


def pad_batch(seqs: Sequence[Sequence[int]], device: torch.device, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [B, T] right-padded with ``pad``, lengths [B])``."""
    T = max(len(s) for s in seqs)
    out = torch.full((len(seqs), T), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out.to(device), torch.tensor([len(s) for s in seqs], device=device)


@torch.inference_mode()
def generate_batch(model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                   temperature: float = 0.0, seed: int = 0, eos_ids: Sequence[int] = (),
                   stop_ids: Sequence[int] = ()) -> list[list[int]]:
    """New tokens for each prompt (prefill token first; stops after an ``eos_ids`` token, included, or a
    ``stop_ids`` token, excluded). ``temperature`` 0 = greedy, else seeded multinomial sampling."""
    if not prompts:
        return []
    device = model.device
    L, B = model.config.num_layers, len(prompts)
    if max(len(p) for p in prompts) + max_new_tokens > model.config.max_seq_len:
        raise ValueError(f"prompt + {max_new_tokens} new tokens exceed max_seq_len {model.config.max_seq_len}")
    tokens, lengths = pad_batch(prompts, device)
    stage = model.stage(0, L)
    cache = stage.new_cache(B)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    T = tokens.shape[1]
    positions = torch.arange(T, device=device)[None, :].expand(B, T).contiguous()
    h, _ = stage(model.embed(tokens), positions, cache)
    last = h[torch.arange(B, device=device), lengths - 1]  # [B, d]
    eos = torch.tensor(list(eos_ids) or [-1], device=device)
    stop = torch.tensor(list(stop_ids) or [-1], device=device)
    out = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n_out = torch.zeros(B, dtype=torch.long, device=device)
    for i in range(max_new_tokens):
        logits = model.final_logits(last[:, None, :])[:, 0]
        if temperature > 0:
            tok = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=gen)[:, 0]
        else:
            tok = logits.argmax(dim=-1)
        is_stop = torch.isin(tok, stop)
        out[:, i] = tok
        n_out = torch.where(done | is_stop, n_out, n_out + 1)
        done = done | torch.isin(tok, eos) | is_stop
        if bool(done.all()) or i == max_new_tokens - 1:
            break
        pos = (lengths + i)[:, None]
        h, _ = stage(model.embed(tok[:, None]), pos, cache)
        last = h[:, 0]
    res = []
    for row, k in zip(out.tolist(), n_out.tolist()):
        res.append(row[:k])
    return res


@torch.inference_mode()
def teacher_forced_hidden(model: Transformer, tokens: torch.Tensor, indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """One pass of right-padded ``tokens [B, T]`` through the whole target: ``{hidden index: [B, T, d]}`` for
    every requested index (0 = embedding output, i = output of layer i-1). Padded slots hold garbage."""
    L = model.config.num_layers
    B, T = tokens.shape
    stage = model.stage(0, L)
    cache = stage.new_cache(B)
    positions = torch.arange(T, device=tokens.device)[None, :].expand(B, T).contiguous()
    emb = model.embed(tokens)
    _, hid = stage(emb, positions, cache, sorted(set(indices) - {0}))
    if 0 in indices:
        hid[0] = emb
    return hid
