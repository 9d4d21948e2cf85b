"""Target features computed once per sequence and reused for every draft module trained on it.

One teacher-forced pass of each sequence collects the hidden states at every index any draft needs (the union
of the anchors of all n trained, the PPSD stage boundary and L, whose final norm + LM head gives the teacher
logits). They are kept flat on the training device (``[indices, tokens, d]``, the target's dtype) and handed
out as right-padded batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm import tqdm

from ..model import Transformer
from .generate import pad_batch, teacher_forced_hidden


@dataclass
class Batch:
    tokens: torch.Tensor        # [B, T] right-padded
    lengths: torch.Tensor       # [B]
    prompt_lens: torch.Tensor   # [B]
    hidden: dict[int, torch.Tensor]  # index -> [B, T, d]


class FeatureStore:
    def __init__(self, model: Transformer, seqs: Sequence[Sequence[int]], prompt_lens: Sequence[int],
                 indices: Sequence[int], batch_tokens: int = 65536, progress: bool = True) -> None:
        self.indices = tuple(sorted(set(int(i) for i in indices) | {model.config.num_layers}))
        self.slot = {b: k for k, b in enumerate(self.indices)}
        self.device = model.device
        self.seqs = [list(map(int, s)) for s in seqs]
        self.prompt_lens = torch.tensor([int(p) for p in prompt_lens])
        self.lengths = torch.tensor([len(s) for s in self.seqs])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(self.lengths, 0)])
        d = model.config.hidden_size
        self.flat = torch.empty(len(self.indices), int(self.offsets[-1]), d, dtype=model.dtype, device=self.device)
        order = sorted(range(len(self.seqs)), key=lambda i: len(self.seqs[i]))  # similar lengths pad less
        chunks, cur, cur_max = [], [], 0
        for i in order:
            cur_max = max(cur_max, len(self.seqs[i]))
            if cur and cur_max * (len(cur) + 1) > batch_tokens:
                chunks.append(cur)
                cur, cur_max = [], len(self.seqs[i])
            cur.append(i)
        if cur:
            chunks.append(cur)
        for chunk in tqdm(chunks, desc="target features", disable=not progress):
            tokens, lengths = pad_batch([self.seqs[i] for i in chunk], self.device)
            hid = teacher_forced_hidden(model, tokens, self.indices)
            for r, i in enumerate(chunk):
                a, n = int(self.offsets[i]), len(self.seqs[i])
                for b in self.indices:
                    self.flat[self.slot[b], a:a + n] = hid[b][r, :n]

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def batch(self, ids: Sequence[int], indices: Sequence[int] | None = None) -> Batch:
        ids = [int(i) for i in ids]
        want = self.indices if indices is None else tuple(indices)
        tokens, lengths = pad_batch([self.seqs[i] for i in ids], self.device)
        T = tokens.shape[1]
        hidden = {}
        for b in want:
            out = torch.zeros(len(ids), T, self.flat.shape[-1], dtype=self.flat.dtype, device=self.device)
            for r, i in enumerate(ids):
                a, n = int(self.offsets[i]), len(self.seqs[i])
                out[r, :n] = self.flat[self.slot[b], a:a + n]
            hidden[b] = out
        return Batch(tokens, lengths, self.prompt_lens[ids].to(self.device), hidden)
