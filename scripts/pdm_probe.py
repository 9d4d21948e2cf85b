#!/usr/bin/env python3
"""What a trained pipeline draft module relies on: held-out top-1 agreement with the target, per pipeline
fill m (tokens in flight when the draft runs: m = n is the steady state, m < n follows a flush) and with each
anchor's hidden states zeroed in turn.

    python scripts/pdm_probe.py --model /var/tmp/model/smol.gguf --data A.safetensors,B.safetensors \
        --draft reference/checkpoints/smollm2-pdm-n2 --draft reference/checkpoints/smollm2-pdm-n3 [--sequences 16]

The hold-out is the one ``spd train-draft`` kept out of training: give ``--data`` the parts in the order the
checkpoint's train.json lists them (``data.file``) and the same ``--seed``. Top-1 is the training metric
(reference.training.drafts.kl_loss) on the layouts of reference.training.layout, so it is comparable with
train.json's ``validation.top1``. Runs on CPU in a few minutes for 16 sequences (session 6 used it to show that
the n=2 drafter and the chain head lack a shallow anchor, docs/training.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.errors import InputError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2", help="target: smollm2, a .gguf path, an HF directory")
    p.add_argument("--data", required=True, help="training data parts, comma-separated, in training order")
    p.add_argument("--draft", action="append", required=True, help="SPD checkpoint directory (repeatable)")
    p.add_argument("--holdout", type=int, default=32, help="train-draft's --holdout")
    p.add_argument("--seed", type=int, default=0, help="train-draft's --seed (it picks the hold-out)")
    p.add_argument("--sequences", type=int, default=16, help="hold-out sequences probed (CPU time)")
    p.add_argument("--batch", type=int, default=8)
    a = p.parse_args(argv)
    try:
        return _probe(a)
    except InputError as e:
        print(f"pdm_probe: error: {e}", file=sys.stderr)
        return 2


def _probe(a: argparse.Namespace) -> int:
    import torch

    from reference.draft import PipelineDraftModule
    from reference.loaders import load_model
    from reference.training.data import TrainingData
    from reference.training.drafts import kl_loss, spd_logits, teacher_logits
    from reference.training.features import FeatureStore

    parts = [Path(x) for x in a.data.split(",") if x]
    missing = [str(x) for x in parts + [Path(d) for d in a.draft] if not x.exists()]
    if missing:
        raise InputError(f"no such file or directory: {', '.join(missing)}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = TrainingData.load_many([str(x) for x in parts])
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(a.seed)).tolist()
    hold = perm[:min(a.holdout, max(0, len(data) - 1))][:a.sequences]
    model, _ = load_model(a.model, "cpu", None, max_seq_len=max(len(data.seqs[i]) for i in hold) + 8)
    L = model.config.num_layers
    pdms = [PipelineDraftModule.load(Path(d), model).eval() for d in a.draft]
    indices = sorted({b for m in pdms for b in m.config.anchors} | {L})
    store = FeatureStore(model, [data.seqs[i] for i in hold], [data.prompt_lens[i] for i in hold], indices,
                         progress=False)
    ids = list(range(len(hold)))

    def top1(pdm, m: int, zero: tuple[int, ...] = ()) -> float:
        hits = count = 0.0
        with torch.no_grad():
            for i in range(0, len(ids), a.batch):
                b = store.batch(ids[i:i + a.batch])
                teacher = teacher_logits(model, b.hidden[L], pdm.vocab_ids)
                for z in zero:
                    b.hidden[z] = torch.zeros_like(b.hidden[z])
                logits, lay = spd_logits(pdm, b, m)
                _, t = kl_loss(logits, teacher, lay.query_valid)
                q = float(lay.query_valid.sum())
                hits, count = hits + float(t) * q, count + q
        return hits / count if count else float("nan")

    print(f"held-out top-1, {len(hold)} of train-draft's hold-out sequences ({store.num_tokens} tokens), CPU\n")
    print("| drafter | anchors | m | top-1 | " + " | ".join(["anchor zeroed: top-1"]) + " |")
    print("|---|---|---|---|---|")
    for d, pdm in zip(a.draft, pdms):
        anchors = pdm.config.anchors
        for m in range(1, pdm.config.n + 1):
            zeroed = ", ".join(f"h{z} {top1(pdm, m, (z,)):.3f}" for z in anchors[1:]) if m in (1, pdm.config.n) else ""
            print(f"| {Path(d).name} | {','.join(map(str, anchors))} | {m} | {top1(pdm, m):.3f} | {zeroed} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
