"""Batched attention layouts that reproduce, for every query position at once, the rows the executor's draft
module sees in one cycle (SPEC.md 1.2, reference/draft.py).

Staircase layout (SPD). For a newest token at position t with m tokens in flight (1 <= m <= n; m = n in the
steady state, m < n while the pipeline refills after a flush or after the prefill), the PDM's rows are:
positions <= t-m as full-depth rows (its KV cache), then tokens t-d at depth d for d = m-1..0 (newest last);
the last row predicts position t+1. Row (t-d, depth d) depends only on (t, m), so one layout holds

* a causal stream of T full-depth rows (row j = position j, layers passed L), and
* a grid of in-flight rows, n per query position t: grid row (t, d) = position t-d at depth d, used iff d < m_t,

with a boolean mask: a full row attends full rows <= itself; an in-flight row of query t attends full rows
<= t-m_t and the in-flight rows of the same query that are not newer than itself (d' >= d, d' < m_t).
Unused grid rows (d >= m_t, or an invalid query) attend only themselves, so they never produce NaN and no
valid row reads them. The query row of t is grid row (t, 0).

Queries: t in [prompt_len, length-2] (the first draft follows the prefill token at position prompt_len; the
last one predicts position length-1), with m_t clamped to t - prompt_len + 1 (prompt tokens are always full
depth: they come from the prefill).

Chain layout (EAGLE-style, :func:`chain_layout`): the same stream plus, per start s, rows for chain steps
2..k at positions s+1..s+k-1 attending the stream rows <= s and earlier steps of the same chain.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Layout:
    """One batched layout. Rows: ``row_pos [B, R]`` (rotary position = the sequence position whose features the
    row uses), ``row_layers [B, R]`` (layers passed, picks the staircase level), ``mask [B, 1, R, R]`` (True =
    may attend). Queries: ``query_row [B, Q]`` (row whose output predicts position ``query_pos + 1``),
    ``query_pos [B, Q]``, ``query_valid [B, Q]``, ``query_inflight [B, Q]`` (m used; 0 where invalid)."""

    row_pos: torch.Tensor
    row_layers: torch.Tensor
    mask: torch.Tensor
    query_row: torch.Tensor
    query_pos: torch.Tensor
    query_valid: torch.Tensor
    query_inflight: torch.Tensor

    @property
    def num_rows(self) -> int:
        return int(self.row_pos.shape[1])


def query_range(lengths: torch.Tensor, prompt_lens: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t [T], valid [B, T])``: query positions and which are drafts the executor makes and verifies."""
    t = torch.arange(T, device=lengths.device)
    valid = (t[None, :] >= prompt_lens[:, None]) & (t[None, :] <= lengths[:, None] - 2)
    return t, valid


def staircase_layout(lengths: torch.Tensor, prompt_lens: torch.Tensor, T: int, inflight: torch.Tensor,
                     depth_layers: Sequence[int], num_layers: int) -> Layout:
    """SPD layout for a batch of right-padded sequences of padded length ``T``.

    ``inflight [B, T]`` (or broadcastable): tokens in flight m for the query at each position (1..n, clamped to
    what the prompt allows). ``depth_layers[d]``: layers a token has passed at depth d (d = 0..n-1, from the
    real stage boundaries: ``PipelinePlan.layers_passed``); full-depth rows pass ``num_layers``.
    """
    device = lengths.device
    B, n = int(lengths.shape[0]), len(depth_layers)
    t, qvalid = query_range(lengths, prompt_lens, T)
    m = torch.as_tensor(inflight, device=device).expand(B, T).clamp(min=1, max=n)
    m = torch.minimum(m, (t[None, :] - prompt_lens[:, None] + 1).clamp(min=1))
    m = torch.where(qvalid, m, torch.zeros_like(m))
    d = torch.arange(n, device=device)
    # ---- rows
    full_pos = t[None, :].expand(B, T)
    grid_pos = (t[:, None] - d[None, :]).clamp(min=0).reshape(1, T * n).expand(B, T * n)
    row_pos = torch.cat([full_pos, grid_pos], dim=1)
    lp = torch.as_tensor(list(depth_layers), device=device, dtype=torch.long)
    row_layers = torch.cat([torch.full((B, T), num_layers, device=device, dtype=torch.long),
                            lp.repeat(T)[None, :].expand(B, T * n)], dim=1)
    # ---- mask blocks
    R = T * (n + 1)
    mask = torch.zeros(B, R, R, dtype=torch.bool, device=device)
    mask[:, :T, :T] = torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))
    gvalid = d[None, None, :] < m[:, :, None]  # [B, T, n]
    # in-flight (t, d) -> full j: j <= t - m_t
    see_full = (t[None, None, :] <= (t[None, :] - m)[:, :, None]) & qvalid[:, :, None]  # [B, T(t), T(j)]
    mask[:, T:, :T] = (see_full[:, :, None, :] & gvalid[:, :, :, None]).reshape(B, T * n, T)
    # in-flight (t, d) -> in-flight (t, d'): d <= d' < m_t (same query only: block-diagonal)
    local = (d[None, :] >= d[:, None])[None, None] & gvalid[:, :, None, :] & gvalid[:, :, :, None]  # [B,T,n,n]
    local = local | (~gvalid[:, :, :, None] & torch.eye(n, dtype=torch.bool, device=device)[None, None])
    grid = mask[:, T:, T:].view(B, T, n, T, n)
    idx = torch.arange(T, device=device)
    grid[:, idx, :, idx, :] = local.permute(1, 0, 2, 3)  # advanced indexing puts the t axis first
    query_row = (T + t * n)[None, :].expand(B, T)
    return Layout(row_pos, row_layers, mask[:, None], query_row, t[None, :].expand(B, T), qvalid, m)


def stream_layout(lengths: torch.Tensor, prompt_lens: torch.Tensor, T: int, num_layers: int) -> Layout:
    """A plain causal stream of full-depth rows; the query for t is row t itself (PPSD-style draft: every token,
    the newest included, contributes its first-stage features; EAGLE step 1: real features)."""
    device = lengths.device
    B = int(lengths.shape[0])
    t, qvalid = query_range(lengths, prompt_lens, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))[None, None].expand(B, 1, T, T)
    pos = t[None, :].expand(B, T)
    return Layout(pos, torch.full((B, T), num_layers, device=device, dtype=torch.long), mask, pos, pos, qvalid,
                  qvalid.long())


def chain_layout(lengths: torch.Tensor, prompt_lens: torch.Tensor, T: int, steps: int, num_layers: int) -> Layout:
    """EAGLE-style chain: stream rows (step 1 of every start s is stream row s) plus, for every start s, chain
    rows for steps k = 2..steps at position s+k-1. Grid row (s, k-2) attends stream rows <= s and the chain
    rows of the same start with a smaller or equal step. ``query_row [B, T, steps]`` gives, per start, the row
    of each step (the output of step k predicts position s+k)."""
    device = lengths.device
    B, g = int(lengths.shape[0]), steps - 1
    t, qvalid = query_range(lengths, prompt_lens, T)
    R = T * (1 + g)
    mask = torch.zeros(B, R, R, dtype=torch.bool, device=device)
    mask[:, :T, :T] = torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))
    if g > 0:
        k = torch.arange(g, device=device)
        see_full = (t[None, :] <= t[:, None])  # [T(s), T(j)]
        mask[:, T:, :T] = see_full[:, None, :].expand(T, g, T).reshape(T * g, T)[None]
        local = (k[None, :] <= k[:, None])  # [g(k), g(k')]: k' <= k
        grid = mask[:, T:, T:].view(B, T, g, T, g)
        idx = torch.arange(T, device=device)
        grid[:, idx, :, idx, :] = local[None, None].expand(T, B, g, g)
    grid_pos = (t[:, None] + 1 + torch.arange(g, device=device)[None, :]).reshape(1, T * g)
    row_pos = torch.cat([t[None, :], grid_pos], dim=1).expand(B, R)
    rows = torch.cat([t[:, None], T + t[:, None] * g + torch.arange(g, device=device)[None, :]], dim=1)  # [T, steps]
    return Layout(row_pos, torch.full((B, R), num_layers, device=device, dtype=torch.long), mask[:, None],
                  rows[None].expand(B, T, steps), t[None, :].expand(B, T), qvalid, qvalid.long())
