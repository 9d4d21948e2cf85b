"""Function-preserving widening of a trained draft module (Net2Net-style, zero-initialised fan-out).

A narrower checkpoint (tower FFN width f < f', aggregation rank r < r') is copied into a wider module so that the
wider one computes exactly the same rows and logits: the old units keep their weights, the new units' input
weights keep their random initialisation and their output weights start at zero. Training then continues with
the extra capacity from where the narrow drafter stopped instead of from scratch (issue 5: the n=4 drafter's
accumulated training is worth more than a from-scratch wider tower can catch up on in one device call).
"""
from __future__ import annotations

import dataclasses

import torch

from ..draft import PDMConfig, PipelineDraftModule

WIDENABLE = ("tower_ffn", "agg_rank")


def can_widen(old: PDMConfig, new: PDMConfig) -> bool:
    """True when ``new`` differs from ``old`` only by a wider tower FFN and/or aggregation rank (both factored)."""
    if old == new or (old.agg_rank is None) != (new.agg_rank is None):
        return False
    same_rest = dataclasses.replace(old, **{f: getattr(new, f) for f in WIDENABLE}) == new
    return same_rest and new.tower_ffn >= old.tower_ffn and (old.agg_rank is None or new.agg_rank >= old.agg_rank)


@torch.no_grad()
def widen_into(new: PipelineDraftModule, old: PipelineDraftModule) -> None:
    """Copy ``old``'s weights into the wider ``new`` (already randomly initialised) so both compute the same."""
    if not can_widen(old.config, new.config):
        raise ValueError(f"cannot widen {old.config} into {new.config}")
    f_old, f_new = old.config.tower_ffn, new.config.tower_ffn
    mine = new.state_dict()

    def factored(name: str) -> bool:  # aggregate.<j>.<0|1>.weight: the two factors of a rank-r aggregation
        return name.startswith("aggregate.") and name.count(".") == 3

    for name, w in old.state_dict().items():
        dst = mine[name]
        w = w.to(dst.dtype)
        if name.endswith("ffn.w13.weight"):  # [gate; up] rows: old units first in each half, new ones random
            dst[:f_old] = w[:f_old]
            dst[f_new:f_new + f_old] = w[f_old:]
        elif name.endswith("ffn.w2.weight") or (factored(name) and name.endswith(".1.weight")):
            dst.zero_()  # output weights: the new units' columns start at zero so they add nothing yet
            dst[:, :w.shape[1]] = w
        elif factored(name) and name.endswith(".0.weight"):
            dst[:w.shape[0]] = w  # the aggregation's down-projection: new rank rows keep their random init
        else:
            dst.copy_(w)
