"""The three drafters trained and measured here, all built on :class:`reference.draft.PipelineDraftModule` (its
staircase rows, tower, final norm and tied draft-vocabulary head; nothing of it is re-implemented):

* ``spd``: the PDM of SPEC.md 1.2 on the staircase layout (:func:`layout.staircase_layout`).
* ``ppsd``: a PPSD-style draft, run *after* each pipeline step over shallow first-stage features: a PDM
  whose anchors are ``(0, b1)`` (b1 = layers of stage 1), every row (the newest token too, which has just
  passed stage 1) contributing ``g_1`` in a plain causal stream.
* ``chain``: an EAGLE-style head (EAGLE-1 recipe): row j = FC(norm(emb(x_j)), norm(f_{j-1})) with f the
  target's last hidden state (or, further down a chain, the head's own predicted feature), one tower layer;
  it regresses f_j and predicts x_{j+1}. Hosted by a PDM with anchors ``(0, L)``: anchor 0 carries the token
  embedding and anchor L the (shifted) feature, so FC_1 is EAGLE's input projection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..draft import PDMConfig, PipelineDraftModule
from ..model import Transformer
from ..spd_controller import PipelinePlan, stage_bounds
from .features import Batch
from .layout import Layout, chain_layout, staircase_layout, stream_layout

METHODS = ("spd", "ppsd", "chain")


@dataclass(frozen=True)
class DraftDims:
    """Tower and head sizes shared by every drafter trained (so checkpoints stay small: see docs/training.md)."""

    tower_layers: int = 2
    tower_heads: int = 3
    tower_kv_heads: int = 1
    tower_ffn: int = 256
    agg_rank: int | None = 32
    draft_vocab_size: int | None = 16384

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_config(method: str, target: Transformer, n: int, dims: DraftDims,
                anchors: tuple[int, ...] | None = None) -> PDMConfig:
    tc = target.config
    common = dict(tower_heads=dims.tower_heads, tower_kv_heads=dims.tower_kv_heads, tower_ffn=dims.tower_ffn,
                  agg_rank=dims.agg_rank, draft_vocab_size=dims.draft_vocab_size)
    if method == "spd":
        extra = {} if anchors is None else {"anchors": tuple(anchors)}
        return PDMConfig.default(tc, n, tower_layers=dims.tower_layers, **common, **extra)
    base = dict(target_layers=tc.num_layers, hidden_size=tc.hidden_size, head_dim=tc.head_dim,
                vocab_size=tc.vocab_size, **common)
    if method == "ppsd":
        b1 = stage_bounds(tc.num_layers, n)[0][1]
        return PDMConfig(n=n, anchors=(0, b1), tower_layers=dims.tower_layers, **base)
    if method == "chain":  # EAGLE rows use one draft layer (SPEC.md 2)
        return PDMConfig(n=2, anchors=(0, tc.num_layers), tower_layers=1, **base)
    raise ValueError(f"unknown method {method!r}")


def depth_layers(pdm: PipelineDraftModule, stages: int | None = None) -> list[int]:
    """Layers passed at depth d = 0..n-1 (real stage boundaries, as the controller computes them) of a pipeline of
    ``stages`` stages (default: the drafter's own n)."""
    tc = pdm.target.config
    n = stages or pdm.config.n
    plan = PipelinePlan(tc.num_layers, stage_bounds(tc.num_layers, n), pdm.config.anchors)
    return [plan.layers_passed(d) for d in range(n)]


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, T, d], idx [B, R] -> [B, R, d]."""
    return torch.gather(x, 1, idx[..., None].expand(*idx.shape, x.shape[-1]))


def run_layout(pdm: PipelineDraftModule, hidden: dict[int, torch.Tensor], layout: Layout) -> torch.Tensor:
    """Tower outputs ``[B, R, d]`` of a layout whose rows take the features of position ``row_pos`` from
    ``hidden`` (every anchor of the PDM, ``[B, T, d]``) by the staircase rule of ``row_layers``."""
    rows_in = {b: _gather(hidden[b], layout.row_pos) for b in pdm.config.anchors}
    rows = pdm.build_rows(rows_in, layout.row_layers)
    return pdm.tower_forward(rows, layout.row_pos, attn_mask=layout.mask)


def query_logits(pdm: PipelineDraftModule, out: torch.Tensor, query_row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits over the draft vocabulary, the query rows' tower outputs) at ``query_row [B, Q]``."""
    hq = _gather(out, query_row)
    return pdm.logits(hq), hq


def spd_logits(pdm: PipelineDraftModule, batch: Batch, inflight: torch.Tensor | int,
               layout_stages: int | None = None) -> tuple[torch.Tensor, Layout]:
    """PDM logits ``[B, T, V_draft]`` for every query position with ``inflight`` tokens in flight, on the staircase
    of ``layout_stages`` stages (default: the drafter's own n; more is a training option, TrainSettings)."""
    B, T = batch.tokens.shape
    m = torch.as_tensor(inflight, device=batch.tokens.device).expand(B, T)
    lay = staircase_layout(batch.lengths, batch.prompt_lens, T, m, depth_layers(pdm, layout_stages),
                           pdm.target.config.num_layers)
    logits, _ = query_logits(pdm, run_layout(pdm, batch.hidden, lay), lay.query_row)
    return logits, lay


def ppsd_logits(pdm: PipelineDraftModule, batch: Batch) -> tuple[torch.Tensor, Layout]:
    T = batch.tokens.shape[1]
    lay = stream_layout(batch.lengths, batch.prompt_lens, T, pdm.target.config.num_layers)
    logits, _ = query_logits(pdm, run_layout(pdm, batch.hidden, lay), lay.query_row)
    return logits, lay


def chain_features_in(pdm: PipelineDraftModule, batch: Batch, noise: float = 0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Stream row j's feature input: the target's last hidden state at j-1 (zeros for j = 0), optionally with
    EAGLE's uniform training noise."""
    L = pdm.target.config.num_layers
    f = torch.cat([torch.zeros_like(batch.hidden[L][:, :1]), batch.hidden[L][:, :-1]], dim=1)
    if noise > 0:
        u = torch.rand(f.shape, generator=generator, device=f.device, dtype=torch.float32)
        f = f + ((u - 0.5) * 2 * noise).to(f.dtype)
    return f


def chain_outputs(pdm: PipelineDraftModule, batch: Batch, steps: int) -> tuple[torch.Tensor, Layout]:
    """Run a chain of ``steps`` drafts from every start s at once (teacher-forced tokens, the head's own
    features from step 2 on). Returns tower outputs ``[B, T, steps, d]`` (step k's output predicts s+k) and
    the layout (queries = starts)."""
    B, T = batch.tokens.shape
    L = pdm.target.config.num_layers
    lay = chain_layout(batch.lengths, batch.prompt_lens, T, steps, L)
    emb = batch.hidden[0]
    f_stream = chain_features_in(pdm, batch)
    g = steps - 1
    # grid rows (s, k) for k = 0..g-1 are chain step k+2 at position s+k+1: token x_{s+k+1}
    pos_grid = lay.row_pos[:, T:].clamp(max=T - 1)
    emb_rows = torch.cat([emb, _gather(emb, pos_grid)], dim=1)
    prev = torch.zeros(B, T, g, emb.shape[-1], dtype=emb.dtype, device=emb.device)
    out = None
    for k in range(steps):  # pass k fixes the feature input of step k+2
        f_rows = torch.cat([f_stream, prev.reshape(B, T * g, -1)], dim=1)
        rows = pdm.build_rows({0: emb_rows, L: f_rows}, lay.row_layers)
        out = pdm.tower_forward(rows, lay.row_pos, attn_mask=lay.mask)
        if k == steps - 1:
            break
        step_out = _gather(out, lay.query_row.reshape(B, T * steps)).reshape(B, T, steps, -1)
        prev = step_out[:, :, :g].to(prev.dtype)  # step j's output is step j+1's feature input
    assert out is not None
    return _gather(out, lay.query_row.reshape(B, T * steps)).reshape(B, T, steps, -1), lay


# ------------------------------------------------------------------------------------------------ teacher
def teacher_logits(target: Transformer, h_final: torch.Tensor, vocab_ids: torch.Tensor | None) -> torch.Tensor:
    """The target's next-token logits restricted to the draft vocabulary (float32): softmax over them is the
    target distribution renormalised to the draft vocabulary, the KL target."""
    w = target.output.weight if vocab_ids is None else target.output.weight[vocab_ids]
    return (target.norm(h_final) @ w.t()).float()


def kl_loss(draft_logits: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean KL(p_teacher || q_draft) over valid queries, and the top-1 agreement there."""
    lq = F.log_softmax(draft_logits.float(), dim=-1)
    lp = F.log_softmax(teacher.float(), dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    w = valid.float()
    denom = w.sum().clamp(min=1.0)
    top1 = ((draft_logits.argmax(-1) == teacher.argmax(-1)).float() * w).sum() / denom
    return (kl * w).sum() / denom, top1
