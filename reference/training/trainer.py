"""Distillation loop shared by the three drafters: wall-clock budget, periodic checkpoints, resume, seeding.

Resume state (``state.pt`` in the work directory: float32 weights, AdamW state, step, elapsed seconds) is
written atomically every ``checkpoint_every_s`` and at the end, and read back with
``torch.load(weights_only=True)`` (never executes code). Batches are drawn from a generator seeded by
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sim.errors import InputError
from sim.io import atomic_write_bytes

from ..draft import PipelineDraftModule
from .drafts import chain_features_in, kl_loss, ppsd_logits, spd_logits, teacher_logits
from .features import FeatureStore
from .layout import stream_layout


@dataclass(frozen=True)
class TrainSettings:
    budget_s: float = 60.0              # wall clock of this model's training (resumed time counts)
    max_steps: int = 100_000
    batch_size: int = 16                # sequences per step
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every_s: float = 60.0
    steady_fraction: float = 0.5        # SPD: share of queries with the pipeline full (m = n); rest m ~ U{1..n-1}
    layout_extra_stages: int = 0        # SPD: train an n-stage drafter on the layouts of n + this many stages
    feature_noise: float = 0.1          # chain: EAGLE's uniform noise on input features (fraction of feature RMS)
    feature_weight: float = 1.0         # chain: weight of the feature regression (smooth L1) next to the KL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainSummary:
    method: str
    steps: int
    queries_seen: int
    wall_s: float
    stopped_by: str          # "budget" | "max_steps" | "interrupted"
    resumed_from_step: int
    final_loss: float        # exponential moving average of the training loss (KL, + feature loss for chain)
    final_top1: float        # EMA of draft-argmax == teacher-argmax over the draft vocabulary (train batches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lr_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% over the run's progress (steps or budget, whichever is nearer)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_loss(method: str, pdm: PipelineDraftModule, store: FeatureStore, ids: list[int], s: TrainSettings,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss, top1, queries) of one batch."""
    target, L = pdm.target, pdm.target.config.num_layers
    batch = store.batch(ids)
    B, T = batch.tokens.shape
    dev = batch.tokens.device
    teacher = teacher_logits(target, batch.hidden[L], pdm.vocab_ids)  # [B, T, Vd]
    if method == "spd":
        # layout_extra_stages > 0: the deeper pipeline's staircase (more tokens in flight, each shallower); the
        # drafter is still used at its own n. Session 7 found an n=3-trained drafter better at n=2 than n=2's own.
        n = pdm.config.n + s.layout_extra_stages
        u = torch.rand(B, T, generator=gen, device="cpu")
        warm = torch.randint(1, max(n, 2), (B, T), generator=gen, device="cpu")
        m = torch.where(u < s.steady_fraction, torch.full_like(warm, n), warm.clamp(max=n)).to(dev)
        logits, lay = spd_logits(pdm, batch, m, layout_stages=n)
        loss, top1 = kl_loss(logits, teacher, lay.query_valid)
        return loss, top1, int(lay.query_valid.sum())
    if method == "ppsd":
        logits, lay = ppsd_logits(pdm, batch)
        loss, top1 = kl_loss(logits, teacher, lay.query_valid)
        return loss, top1, int(lay.query_valid.sum())
    # chain: one step (stream) with noisy real features (EAGLE-1); the feature target is h_L itself
    rms = batch.hidden[L].float().pow(2).mean().sqrt()
    f_in = chain_features_in(pdm, batch, noise=float(rms) * s.feature_noise, generator=None)
    lay = stream_layout(batch.lengths, batch.prompt_lens, T, L)
    rows = pdm.build_rows({0: batch.hidden[0], L: f_in}, lay.row_layers)
    out = pdm.tower_forward(rows, lay.row_pos, attn_mask=lay.mask)
    logits = pdm.logits(out)
    kl, top1 = kl_loss(logits, teacher, lay.query_valid)
    w = lay.query_valid.float()[..., None]
    feat = torch.nn.functional.smooth_l1_loss((out.float() / rms) * w, (batch.hidden[L].float() / rms) * w,
                                              reduction="sum") / (w.sum() * out.shape[-1]).clamp(min=1.0)
    return kl + s.feature_weight * feat, top1, int(lay.query_valid.sum())


def train(method: str, pdm: PipelineDraftModule, store: FeatureStore, settings: TrainSettings,
          work_dir: str | Path, train_ids: list[int] | None = None, progress: bool = True,
          stop_at_step: int | None = None) -> TrainSummary:
    """Train ``pdm`` in place (float32 master weights, bf16 autocast on CUDA) until the budget or max_steps.
    ``stop_at_step`` interrupts the run there (state saved; the schedule still follows ``max_steps``)."""
    work_dir = Path(work_dir)
    ids_all = list(range(len(store))) if train_ids is None else list(train_ids)
    if not ids_all:
        raise InputError("training data: no sequences")
    pdm.float().train()
    params = [p for p in pdm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.95))
    step, elapsed0, ema_loss, ema_top1 = 0, 0.0, float("nan"), float("nan")
    state_path = work_dir / "state.pt"
    if state_path.is_file():
        try:
            st = torch.load(state_path, map_location=pdm.device, weights_only=True)
            pdm.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
        except Exception as exc:  # a state from another shape/method is bad input, not a crash
            raise InputError(f"{state_path}: cannot resume ({exc}); delete it to start over") from None
        step, elapsed0 = int(st["step"]), float(st["elapsed_s"])
        ema_loss, ema_top1 = float(st["ema_loss"]), float(st["ema_top1"])
    resumed_from = step
    use_amp = pdm.device.type == "cuda"
    t0 = time.perf_counter()
    last_ckpt = t0
    queries = 0

    def save_state() -> None:
        buf = io.BytesIO()
        torch.save({"model": pdm.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed_s": elapsed0 + time.perf_counter() - t0, "ema_loss": ema_loss, "ema_top1": ema_top1}, buf)
        atomic_write_bytes(state_path, buf.getvalue())

    bar = tqdm(total=settings.max_steps, initial=step, desc=f"train {method} n={pdm.config.n}", disable=not progress)
    stopped = "max_steps"
    while step < settings.max_steps:
        if stop_at_step is not None and step >= stop_at_step:
            stopped = "interrupted"
            break
        elapsed = elapsed0 + time.perf_counter() - t0
        if elapsed >= settings.budget_s:
            stopped = "budget"
            break
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
        ids = [ids_all[int(i)] for i in torch.randint(len(ids_all), (settings.batch_size,), generator=gen)]
        progress_frac = max(step / settings.max_steps, elapsed / max(settings.budget_s, 1e-9))
        for g in opt.param_groups:
            g["lr"] = settings.lr * _lr_factor(step, progress_frac, settings.warmup_steps)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss, top1, nq = step_loss(method, pdm, store, ids, settings, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        step += 1
        queries += nq
        lv, tv = float(loss.detach()), float(top1)
        ema_loss = lv if math.isnan(ema_loss) else 0.95 * ema_loss + 0.05 * lv
        ema_top1 = tv if math.isnan(ema_top1) else 0.95 * ema_top1 + 0.05 * tv
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.3f}", top1=f"{ema_top1:.3f}")
        if time.perf_counter() - last_ckpt >= settings.checkpoint_every_s:
            save_state()
            last_ckpt = time.perf_counter()
    bar.close()
    save_state()
    pdm.eval()
    return TrainSummary(method, step, queries, elapsed0 + time.perf_counter() - t0, stopped, resumed_from,
                        ema_loss, ema_top1)
