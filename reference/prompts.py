"""Evaluation prompts: ``data/prompts/*.jsonl`` (one object per line with ``question_id``, ``category``, ``turns``);
the first turn goes through the model's chat template as one user message, then is encoded.

``load_prompts("gsm8k", tok, max_seq_len=..., max_new_tokens=...)`` takes a set name (mt_bench, gsm8k, humaneval,
looked up in the shared data directory) or a path. Bad input -> ``InputError`` naming file and line: a missing
file, invalid JSON, no ``turns``, an empty prompt, or a prompt that with the new tokens exceeds the context.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sim.errors import InputError

from .tokenizer import ChatTokenizer

PROMPT_SETS = ("mt_bench", "gsm8k", "humaneval")
_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Prompt:
    source: str  # file name stem, e.g. "gsm8k"
    question_id: int | str
    category: str
    text: str  # the first turn, before the chat template
    token_ids: tuple[int, ...]  # chat-templated and encoded, ending with the generation prompt


def prompts_dir() -> Path:
    """$SPD_PROMPTS_DIR, else ``shared/data/prompts`` inside or beside the repository."""
    env = os.environ.get("SPD_PROMPTS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [_REPO / "shared" / "data" / "prompts", _REPO.parent / "shared" / "data" / "prompts"]
    for c in candidates:
        if c.is_dir():
            return c
    raise InputError(f"prompt directory not found (tried {', '.join(map(str, candidates))}); set SPD_PROMPTS_DIR")


def resolve_prompt_file(name_or_path: str) -> Path:
    if name_or_path in PROMPT_SETS:
        return prompts_dir() / f"{name_or_path}.jsonl"
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise InputError(f"{name_or_path}: prompt file not found (or use one of {', '.join(PROMPT_SETS)})")
    return path


def encode_prompt(tokenizer: ChatTokenizer, text: str, max_seq_len: int, max_new_tokens: int = 0,
                  where: str = "prompt") -> list[int]:
    """One user message through the chat template (or raw text when the model has no template)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: empty prompt")
    if tokenizer.chat_template is not None:
        ids = tokenizer.encode_chat([{"role": "user", "content": text}])
    else:
        ids = tokenizer.encode(text)
    if len(ids) + max_new_tokens > max_seq_len:
        raise InputError(f"{where}: prompt of {len(ids)} tokens + {max_new_tokens} new tokens exceeds the context "
                         f"of {max_seq_len} tokens")
    return ids


def load_prompts(name_or_path: str, tokenizer: ChatTokenizer | None, *, max_seq_len: int, max_new_tokens: int = 0,
                 limit: int | None = None) -> list[Prompt]:
    if tokenizer is None:
        raise InputError("prompts need a model with a tokenizer (random-weight shapes have none)")
    if limit is not None and limit <= 0:
        raise InputError(f"prompt limit must be positive, got {limit}")
    path = resolve_prompt_file(name_or_path)
    out: list[Prompt] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: invalid JSON ({exc.msg})") from None
            turns = obj.get("turns") if isinstance(obj, dict) else None
            if not isinstance(turns, list) or not turns:
                raise InputError(f"{where}: turns: expected a non-empty list of strings")
            ids = encode_prompt(tokenizer, turns[0], max_seq_len, max_new_tokens, where)
            out.append(Prompt(path.stem, obj.get("question_id", lineno), str(obj.get("category", "")), turns[0],
                              tuple(ids)))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise InputError(f"{path}: no prompts")
    return out
