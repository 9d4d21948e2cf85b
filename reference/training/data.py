"""Offline training data: prompts that never touch the evaluation sets, and the target's own continuations.

Prompt sources (all offline):

* ``self-instruct``: the target writes instructions from ``topics.META_PROMPTS`` x ``topics.TOPICS`` (sampled);
* ``template``: ``topics.TEMPLATES`` x ``topics.TOPICS``;
* ``package-docs``: Python functions with docstrings from installed packages' source (read with ``ast``, never
  imported or executed), given as "complete this function" tasks (the shape of a code prompt).

Overlap check (``NgramIndex``): every candidate prompt is compared with every turn of every evaluation prompt
(``data/prompts/*.jsonl``) on lower-cased word 8-grams; a prompt sharing any 8-gram is dropped. Generated
responses are checked the same way with 13-grams (the GPT-3 contamination rule) and dropped on a hit. The
counts go into the data's provenance record.

Storage: ``<name>.safetensors`` (flat int32 tokens, int64 offsets, prompt lengths, a sampled flag) +
``<name>.json`` (provenance), both written atomically; loading reads only those formats.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sim.errors import InputError
from sim.io import atomic_write_bytes, atomic_write_json

DATA_FORMAT = "spd-training-data/1"
_WORD = re.compile(r"[a-z0-9]+")


# --------------------------------------------------------------------------------------------- overlap
def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class NgramIndex:
    """Word n-grams of a reference corpus (the evaluation prompts)."""

    def __init__(self, texts: Iterable[str], n: int) -> None:
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        for t in texts:
            w = words(t)
            self.grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))

    def hits(self, text: str) -> int:
        w = words(text)
        return sum(tuple(w[i:i + self.n]) in self.grams for i in range(len(w) - self.n + 1))


def eval_prompt_texts(prompt_dir: Path) -> list[str]:
    """Every turn of every evaluation prompt (data/prompts/*.jsonl)."""
    files = sorted(prompt_dir.glob("*.jsonl"))
    if not files:
        raise InputError(f"{prompt_dir}: no evaluation prompt files (*.jsonl) to check overlap against")
    out = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.extend(str(t) for t in json.loads(line).get("turns", []))
    return out


# ---------------------------------------------------------------------------------------- package docs
def package_doc_prompts(roots: Sequence[Path], limit: int, min_doc: int = 80, max_doc: int = 700) -> list[str]:
    """'Complete this function' tasks from functions with docstrings in the ``.py`` files under ``roots``
    (sorted, deterministic). Files are parsed with ``ast``; nothing is imported or executed."""
    out: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "test" in path.parts[-1] or "/tests/" in str(path):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node)
                if not doc or not min_doc <= len(doc) <= max_doc or "\n\n" not in doc + "\n\n":
                    continue
                args = ", ".join(a.arg for a in node.args.args)
                first = doc.strip().split("\n\n")[0]
                body = "\n".join("    " + ln for ln in first.splitlines())
                out.append(f"Complete the following Python function.\n\n```python\ndef {node.name}({args}):\n"
                           f"    \"\"\"\n{body}\n    \"\"\"\n```")
                if len(out) >= limit:
                    return out
    return out


def clean_instruction(text: str) -> str | None:
    """First paragraph of a self-instruct reply, unquoted; None when too short or too long to be a prompt."""
    t = text.strip().split("\n\n")[0].strip()
    t = re.sub(r"^(question|request|problem|task)\s*:\s*", "", t, flags=re.I).strip().strip('"').strip()
    return t if 15 <= len(t) <= 600 else None


# ------------------------------------------------------------------------------------------- the data
@dataclass
class TrainingData:
    """Token sequences (chat-templated prompt + the target's continuation) for distillation."""

    seqs: list[list[int]]
    prompt_lens: list[int]
    sampled: list[bool]               # True: continuation sampled at T=1; False: greedy
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.seqs) == len(self.prompt_lens) == len(self.sampled)):
            raise ValueError("seqs, prompt_lens and sampled must have the same length")

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return sum(len(s) for s in self.seqs)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".safetensors":
            raise InputError(f"{path}: training data must be a .safetensors path")
        lens = torch.tensor([len(s) for s in self.seqs], dtype=torch.long)
        flat = torch.tensor([t for s in self.seqs for t in s], dtype=torch.int32)
        tensors = {"tokens": flat, "offsets": torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)]),
                   "prompt_lens": torch.tensor(self.prompt_lens, dtype=torch.int32),
                   "sampled": torch.tensor(self.sampled, dtype=torch.uint8)}
        atomic_write_bytes(path, st_save(tensors))
        atomic_write_json(path.with_suffix(".json"), {"format": DATA_FORMAT, "sequences": len(self),
                                                      "tokens": self.num_tokens, "provenance": self.provenance})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TrainingData":
        path = Path(path)
        meta_path = path.with_suffix(".json")
        for p in (path, meta_path):
            if not p.is_file():
                raise InputError(f"{p}: training data file not found")
        try:
            meta = json.loads(meta_path.read_text())
            t = st_load(path.read_bytes())
        except Exception as exc:  # JSON or safetensors errors: a corrupt file is bad input
            raise InputError(f"{path}: unreadable training data ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != DATA_FORMAT:
            raise InputError(f"{meta_path}: format: expected {DATA_FORMAT!r}")
        need = {"tokens", "offsets", "prompt_lens", "sampled"}
        if need - set(t):
            raise InputError(f"{path}: missing tensors {sorted(need - set(t))}")
        off = t["offsets"].tolist()
        flat = t["tokens"].tolist()
        seqs = [flat[a:b] for a, b in zip(off[:-1], off[1:])]
        pl = [int(x) for x in t["prompt_lens"].tolist()]
        if len(pl) != len(seqs) or any(not 0 < p < len(s) for p, s in zip(pl, seqs)):
            raise InputError(f"{path}: prompt lengths do not fit the sequences")
        return cls(seqs, pl, [bool(x) for x in t["sampled"].tolist()], meta.get("provenance", {}))

    @classmethod
    def load_many(cls, paths: Sequence[str | Path]) -> "TrainingData":
        """Several files (e.g. the shards of ``make_data --shard``, or the data of several sessions) as one set,
        in the given order, each distinct sequence once (sessions share their template prompts, whose greedy
        answers repeat: a copy on both sides of the hold-out split would flatter it); provenance keeps each
        part's record and the number of duplicates dropped."""
        parts = [cls.load(p) for p in paths]
        if len(parts) == 1:
            return parts[0]
        seen, seqs, plens, sampled = set(), [], [], []
        for d in parts:
            for s, p, smp in zip(d.seqs, d.prompt_lens, d.sampled):
                key = tuple(s)
                if key not in seen:
                    seen.add(key)
                    seqs.append(s)
                    plens.append(p)
                    sampled.append(smp)
        total = sum(len(d.seqs) for d in parts)
        return cls(seqs, plens, sampled, {"parts": [{"file": Path(p).name, **d.provenance} for p, d in zip(paths, parts)],
                                          "duplicates_dropped": total - len(seqs)})

    def vocab_counts(self, vocab_size: int) -> torch.Tensor:
        """Token counts over the generated parts (what a draft has to predict)."""
        gen = [t for s, p in zip(self.seqs, self.prompt_lens) for t in s[p:]]
        return torch.bincount(torch.tensor(gen, dtype=torch.long), minlength=vocab_size)
