"""Everything ``spd run`` checks before any rank starts: the model's shape (without loading weights where
possible), the tokenised prompts, the stage split, the context, the devices.

Prompts: a set name (mt_bench, gsm8k, humaneval) or a JSON-lines file. Each line: ``{"turns": [...]}`` (the
first turn through the model's chat template, as ``reference.prompts`` encodes it), ``{"prompt": "..."}``
(same, one text), or ``{"prompt_ids": [...]}`` (token ids as they are: for random-weight models, which have
no tokenizer). ``question_id`` is carried through.
"""
from __future__ import annotations

import json
from pathlib import Path

from sim.errors import InputError

from .config import RunConfig


def describe_model(spec: str, max_seq_len: int | None):
    """(ModelConfig, tokenizer or None). Random shapes and checkpoint directories need no weights; the GGUF
    (default model) is small and carries its tokenizer in the same file, so it is loaded on the CPU."""
    from ..loaders import load_default_tokenizer, load_model, read_hf_dir
    from ..shapes import shape_config
    from ..tokenizer import ChatTokenizer

    if spec.startswith("random:"):
        return shape_config(spec[len("random:"):], max_seq_len), None
    if spec in ("smollm2", "default"):  # the embedded GGUF has exactly the smollm2-135m shape
        return shape_config("smollm2-135m", max_seq_len), load_default_tokenizer()
    path = Path(spec).expanduser()
    if path.is_dir():
        config, _ = read_hf_dir(path, max_seq_len, label="--model: ")
        return config, ChatTokenizer.from_hf_dir(path, config.eos_token_ids)
    if not path.exists():
        raise InputError(f"--model: {spec}: no such model file or directory (use smollm2, random:SHAPE, a "
                         f"checkpoint directory or a .gguf file)")
    model, tok = load_model(spec, "cpu", "float32", max_seq_len=max_seq_len)
    return model.config, tok


def read_prompts(name_or_path: str, tok, limit: int | None) -> list[dict]:
    """[{"question_id", "ids", "line"}]; one clear error per bad line. Context checks: ``check_against_model``."""
    from ..prompts import encode_prompt, resolve_prompt_file

    path = str(resolve_prompt_file(name_or_path))
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--prompts: {path}: unreadable ({exc})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}: line {i}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object")
        if "prompt_ids" in rec:
            ids = rec["prompt_ids"]
            if not isinstance(ids, list) or not all(isinstance(t, int) and t >= 0 for t in ids):
                raise InputError(f"{where}: prompt_ids: expected a list of non-negative token ids")
            text = None
        else:
            if "turns" in rec:
                turns = rec["turns"]
                text = turns[0] if isinstance(turns, list) and turns and isinstance(turns[0], str) else None
            else:
                text = rec.get("prompt") if isinstance(rec.get("prompt"), str) else None
            if text is None:
                raise InputError(f"{where}: expected 'turns' (list of strings), 'prompt' (string) or 'prompt_ids'")
            if tok is None:
                raise InputError(f"{where}: this model has no tokenizer (random weights): give 'prompt_ids'")
            ids = encode_prompt(tok, text, max_seq_len=1 << 62, where=where)  # context: check_against_model
        if not ids:
            raise InputError(f"{where}: empty prompt")
        out.append({"question_id": rec.get("question_id", len(out)), "ids": [int(t) for t in ids], "line": i})
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise InputError(f"--prompts: {path}: no prompts")
    return out


def check_against_model(cfg: RunConfig, model_config, prompts: list[dict]) -> None:
    """Stage split fits the model; every prompt + new tokens (+ in-flight drafts) fits the context; ids fit
    the vocabulary."""
    L, V, ctx = model_config.num_layers, model_config.vocab_size, model_config.max_seq_len
    if cfg.method != "ar":
        from ..spd_controller import stage_bounds

        stage_bounds(L, cfg.stages, cfg.stage_split, stages_field="--stages", split_field="--stage-split")
    # SPD drafts run up to n-1 positions ahead (n with speculative control: one GO past the end)
    spare = cfg.stages - 1 + int(cfg.speculative_control) if cfg.method == "spd" else 0
    for p in prompts:
        need = len(p["ids"]) + cfg.max_new_tokens + spare
        if need > ctx:
            raise InputError(f"{cfg.prompts}: line {p['line']}: prompt of {len(p['ids'])} tokens + "
                             f"{cfg.max_new_tokens} new tokens" + (f" + {spare} in-flight drafts" if spare else "")
                             + f" exceeds the context of {ctx} (see --max-seq-len)")
        bad = [t for t in p["ids"] if t >= V]
        if bad:
            raise InputError(f"{cfg.prompts}: line {p['line']}: token id {bad[0]} outside the vocabulary ({V})")


def check_devices(cfg: RunConfig) -> None:
    """Needs torch: CUDA present, placement indices exist."""
    import torch

    if cfg.device == "cpu":
        return
    if not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    count = torch.cuda.device_count()
    bad = [i for i in (cfg.placement or []) if i >= count]
    if bad:
        raise InputError(f"--placement: device index {bad[0]} but only {count} GPU(s) visible")
