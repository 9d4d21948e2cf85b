"""What each rank holds of the model, the pipeline plan, and the draft source (rank 0).

Every rank loads the model the same way (same spec, dtype, seed: random weights come out identical on
every rank of one device type) and then drops what it does not run, so a stage holds only its layers (plus
the embedding table on stage 0) and rank 0 only the embedding, final norm and LM head.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sim.errors import InputError

from ..model import Transformer
from ..spd_controller import PipelinePlan, stage_bounds
from .config import RunConfig


def plan_anchors(cfg: RunConfig, num_layers: int) -> tuple[int, ...]:
    """Hidden indices the draft module reads: from the checkpoint's config, else the published default.
    Only SPD collects anchors; the AR methods collect nothing but the final hidden state."""
    if cfg.method != "spd":
        return (0,)
    from ..draft import CONFIG_FILE, default_anchors  # torch-backed, imported only here

    if cfg.draft_checkpoint:
        path = Path(cfg.draft_checkpoint) / CONFIG_FILE
        try:
            anchors = tuple(int(a) for a in json.loads(path.read_text())["config"]["anchors"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: cannot read the draft module's anchors ({exc})") from None
        return anchors
    return default_anchors(num_layers, cfg.stages, cfg.stage_split)


def make_plan(cfg: RunConfig, num_layers: int, anchors: tuple[int, ...]) -> PipelinePlan:
    return PipelinePlan(num_layers, stage_bounds(num_layers, cfg.stages, cfg.stage_split), anchors)


def load_target(cfg: RunConfig, device: str):
    from ..loaders import load_model

    model, tok = load_model(cfg.model, device, cfg.resolved_dtype(), max_seq_len=cfg.max_seq_len, seed=cfg.seed)
    if cfg.resolved_kernels() != "reference":  # the same kernels on every rank and in the AR baseline
        model.set_decode_options(fused_norm=True, float_mask=True)
    return model, tok


def keep_only(model: Transformer, start: int, end: int, head: bool) -> Transformer:
    """Free the layers outside [start, end) and, unless needed, the LM head (the embedding table stays: it
    also tells the model's device and dtype). Frees memory when several ranks share a GPU."""
    for i in range(model.config.num_layers):
        if not start <= i < end:
            model.layers[i] = nn.Module()
    if not head and not model.config.tie_word_embeddings:
        model.output.weight = nn.Parameter(torch.empty(0, device=model.device, dtype=model.dtype),
                                           requires_grad=False)
    if model.device.type == "cuda":
        torch.cuda.empty_cache()
    return model


def make_draft(cfg: RunConfig, target: Transformer, reference_for):
    """Rank 0's draft source: the PDM (untrained, or from a checkpoint), or replay wrapping a PDM that still
    runs for its real cost."""
    from ..draft import PDMConfig, PipelineDraftModule, ReplayDraft

    if cfg.draft_checkpoint:
        pdm = PipelineDraftModule.load(cfg.draft_checkpoint, target)
        if pdm.config.n != cfg.stages:
            raise InputError(f"--draft-checkpoint: trained for n={pdm.config.n} stages, run has --stages "
                             f"{cfg.stages}")
    else:
        vocab = min(cfg.draft_vocab, target.config.vocab_size) or None
        pdm_cfg = PDMConfig.default(target.config, cfg.stages, cfg.stage_split, tower_layers=cfg.draft_layers,
                                    draft_vocab_size=vocab)
        # Untrained: any K ids give the head its real size (a trained draft stores its frequent-token ids).
        ids = torch.arange(vocab, device=target.device) if vocab else None
        pdm = PipelineDraftModule(target, pdm_cfg, ids, seed=cfg.seed)
    pdm.eval().requires_grad_(False)
    if cfg.draft_graphs:  # the replay draft's inner PDM too: its forward is the cost it stands for
        pdm.use_graphs(True)
    if cfg.draft == "replay":
        return ReplayDraft(cfg.alpha, reference_for, target.config.vocab_size, seed=cfg.seed, inner=pdm)
    return pdm
