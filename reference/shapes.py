"""Named real model shapes for random-weight timing runs (latency does not depend on weight values).

The numbers are the public configs of each model (layers, widths, heads, head_dim, vocabulary, rotary base
and scaling, tied embeddings, Qwen3 q/k norm). ``max_seq_len`` is the runtime KV-cache capacity, not the
model's trained context.
"""
from __future__ import annotations

import dataclasses
import json

from sim.errors import InputError

from .model import ModelConfig, RopeScaling

DEFAULT_MAX_SEQ_LEN = 2048

_LLAMA3_ROPE_1B = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=8192)
_LLAMA3_ROPE_8B = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=8192)

SHAPES: dict[str, ModelConfig] = {
    "smollm2-135m": ModelConfig(
        name="smollm2-135m", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
        num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0, rms_norm_eps=1e-5,
        max_seq_len=DEFAULT_MAX_SEQ_LEN, tie_word_embeddings=True, bos_token_id=1, eos_token_ids=(2,)),
    "qwen3-0.6b": ModelConfig(
        name="qwen3-0.6b", vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_layers=28,
        num_heads=16, num_kv_heads=8, head_dim=128, rope_theta=1000000.0, rms_norm_eps=1e-6,
        max_seq_len=DEFAULT_MAX_SEQ_LEN, tie_word_embeddings=True, qk_norm=True, eos_token_ids=(151645, 151643)),
    "llama-3.2-1b": ModelConfig(
        name="llama-3.2-1b", vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
        num_heads=32, num_kv_heads=8, head_dim=64, rope_theta=500000.0, rms_norm_eps=1e-5,
        max_seq_len=DEFAULT_MAX_SEQ_LEN, tie_word_embeddings=True, rope_scaling=_LLAMA3_ROPE_1B,
        bos_token_id=128000, eos_token_ids=(128001, 128008, 128009)),
    "qwen3-4b": ModelConfig(
        name="qwen3-4b", vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_layers=36,
        num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=1000000.0, rms_norm_eps=1e-6,
        max_seq_len=DEFAULT_MAX_SEQ_LEN, tie_word_embeddings=True, qk_norm=True, eos_token_ids=(151645, 151643)),
    "llama-3.1-8b": ModelConfig(
        name="llama-3.1-8b", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
        num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=500000.0, rms_norm_eps=1e-5,
        max_seq_len=DEFAULT_MAX_SEQ_LEN, tie_word_embeddings=False, rope_scaling=_LLAMA3_ROPE_8B,
        bos_token_id=128000, eos_token_ids=(128001, 128008, 128009)),
}


def shape_config(name: str, max_seq_len: int | None = None) -> ModelConfig:
    """Config of a named shape, or ``custom:{json}`` (ModelConfig fields; ``name`` defaults to "custom")."""
    if name.startswith("custom:"):
        raw = name[len("custom:"):]
        try:
            d = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"random:custom: invalid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(d, dict):
            raise InputError("random:custom: expected a JSON object of ModelConfig fields")
        d.setdefault("name", "custom")
        d.setdefault("max_seq_len", DEFAULT_MAX_SEQ_LEN)
        try:
            config = ModelConfig.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise InputError(f"random:custom: {exc}") from None
    elif name in SHAPES:
        config = SHAPES[name]
    else:
        raise InputError(f"unknown model shape {name!r}; known: {', '.join(SHAPES)}, custom:{{json}}")
    if max_seq_len is not None:
        config = dataclasses.replace(config, max_seq_len=max_seq_len)
    return config


# Peak HBM bandwidth (TB/s) by GPU name, for roofline percentages; the first key found in the name wins.
_HBM_TB_S = {"H200": 4.8, "H100 PCIe": 2.0, "H100": 3.35}


def hbm_tb_s(device_name: str) -> float:
    """Peak HBM bandwidth of the named GPU in TB/s (H100 SXM's 3.35 when the name is not known)."""
    for key, tb in _HBM_TB_S.items():
        if key in device_name:
            return tb
    return 3.35
