"""Tokenizer + chat template for the executor, built with the `tokenizers` package (no transformers).

Two sources:
- a GGUF file's GPT-2 byte-level BPE (``tokenizer.ggml.tokens`` / ``merges`` / ``token_type``) and its
  Jinja ``tokenizer.chat_template`` (``ChatTokenizer.from_gguf_fields``);
- a Hugging Face checkpoint directory's ``tokenizer.json`` + ``tokenizer_config.json`` (``from_hf_dir``).

The chat template is rendered with Jinja2 the way transformers renders it (sandboxed, trim_blocks,
lstrip_blocks), so any model's own template works; special tokens in the rendered text (``<|im_start|>``)
are matched as single ids by the tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from sim.errors import InputError

# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4


@dataclass
class ChatTokenizer:
    tokenizer: Tokenizer
    chat_template: str | None
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    add_bos: bool = False

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.bos_token_id] if self.add_bos and self.bos_token_id is not None else []) + ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise InputError("model has no chat template; pass raw text instead")
        return _render(self.chat_template, messages, add_generation_prompt,
                       bos_token=self._token_str(self.bos_token_id),
                       eos_token=self._token_str(self.eos_token_ids[0] if self.eos_token_ids else None))

    def encode_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
        # The template writes any BOS itself; do not add a second one.
        text = self.apply_chat_template(messages, add_generation_prompt)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _token_str(self, i: int | None) -> str:
        return "" if i is None else (self.tokenizer.id_to_token(i) or "")

    # ---- builders ----------------------------------------------------------------------------------

    @classmethod
    def from_gguf_fields(cls, tokens: list[str], merges: list[str], token_types: list[int], pre: str,
                         chat_template: str | None, bos_token_id: int | None, eos_token_id: int | None,
                         add_bos: bool) -> "ChatTokenizer":
        vocab = {t: i for i, t in enumerate(tokens)}
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        # ByteLevel(use_regex=True) applies the GPT-2 split regex; llama.cpp's "smollm" pre-type also splits
        # every digit on its own first (as SmolLM2's tokenizer.json does).
        steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        if pre == "smollm":
            steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
        elif pre not in ("gpt-2", "default", "smollm"):
            raise InputError(f"GGUF tokenizer.ggml.pre {pre!r} is not supported (supported: smollm, gpt-2)")
        tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
        tok.decoder = decoders.ByteLevel()
        special = [AddedToken(tokens[i], special=True, normalized=False)
                   for i, ty in enumerate(token_types) if ty in (_GGUF_CONTROL, _GGUF_USER_DEFINED)]
        tok.add_special_tokens(special)
        return cls(tok, chat_template, bos_token_id, (eos_token_id,) if eos_token_id is not None else (), add_bos)

    @classmethod
    def from_hf_dir(cls, path: Path, eos_token_ids: tuple[int, ...]) -> "ChatTokenizer | None":
        """``tokenizer.json`` (+ ``tokenizer_config.json`` for the chat template); None when absent."""
        tj = path / "tokenizer.json"
        if not tj.is_file():
            return None
        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as exc:  # tokenizers raises its own exception types for malformed files
            raise InputError(f"{tj}: cannot load tokenizer: {exc}") from None
        cfg: dict[str, Any] = {}
        tc = path / "tokenizer_config.json"
        if tc.is_file():
            try:
                cfg = json.loads(tc.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{tc}: invalid JSON: {exc}") from None
        template = cfg.get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        bos = _token_id(tok, cfg.get("bos_token"))
        eos = eos_token_ids or tuple(i for i in [_token_id(tok, cfg.get("eos_token"))] if i is not None)
        # Llama-3 style tokenizers add BOS in their post-processor; encode() without special tokens skips it.
        return cls(tok, template, bos, eos, add_bos=bool(cfg.get("add_bos_token", False)))


def _token_id(tok: Tokenizer, entry: Any) -> int | None:
    if isinstance(entry, dict):
        entry = entry.get("content")
    return tok.token_to_id(entry) if isinstance(entry, str) else None


def _render(template: str, messages: list[dict[str, str]], add_generation_prompt: bool, **special: str) -> str:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise InputError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                **special)
    except jinja2.TemplateError as exc:
        raise InputError(f"chat template: {exc}") from None
