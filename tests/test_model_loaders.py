"""Loaders: a self-written tiny Hugging Face checkpoint against a plain reference computation, the GGUF q/k
permutation, random named shapes, load_model spec parsing and bad inputs."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from reference.loaders import gguf_to_hf_qk, hf_to_gguf_qk, load_model
from reference.model import ModelConfig, Transformer, generate_greedy
from reference.shapes import SHAPES, shape_config
from sim.errors import InputError

# ---- a plain, independent Llama/Qwen3 forward over HF-named weights (no cache, no fusing) ----------------


def _rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _inv_freq(cfg: dict) -> torch.Tensor:
    hd = cfg["head_dim"]
    inv = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rs = cfg.get("rope_scaling")
    if rs:  # Llama 3.1: wavelengths above low_wavelen / factor, below high_wavelen kept, band interpolated
        lo, hi, old = rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        out = []
        for f in inv.tolist():
            wl = 2 * math.pi / f
            if wl < old / hi:
                out.append(f)
            elif wl > old / lo:
                out.append(f / rs["factor"])
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * f / rs["factor"] + s * f)
        inv = torch.tensor(out, dtype=torch.float64)
    return inv


def naive_logits(sd: dict, cfg: dict, ids: list[int]) -> torch.Tensor:
    sd = {k: v.double() for k, v in sd.items()}
    H, Hkv, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
    T = len(ids)
    x = sd["model.embed_tokens.weight"][ids]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * _inv_freq(cfg)[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]

    def rope(t):
        return t * cos + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin

    causal = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = _rms(x, sd[p + "input_layernorm.weight"], eps)
        q = (a @ sd[p + "self_attn.q_proj.weight"].T).view(T, H, hd)
        k = (a @ sd[p + "self_attn.k_proj.weight"].T).view(T, Hkv, hd)
        v = (a @ sd[p + "self_attn.v_proj.weight"].T).view(T, Hkv, hd)
        if cfg["model_type"] == "qwen3":
            q, k = _rms(q, sd[p + "self_attn.q_norm.weight"], eps), _rms(k, sd[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
        att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + causal
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, H * hd)
        x = x + o @ sd[p + "self_attn.o_proj.weight"].T
        m = _rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        g, u = m @ sd[p + "mlp.gate_proj.weight"].T, m @ sd[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ sd[p + "mlp.down_proj.weight"].T
    head = sd["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else sd["lm_head.weight"]
    return _rms(x, sd["model.norm.weight"], eps) @ head.T


def tiny_hf_config(model_type: str, tied: bool, rope_scaling: dict | None = None) -> dict:
    return {"model_type": model_type, "architectures": ["X"], "vocab_size": 61, "hidden_size": 32,
            "intermediate_size": 80, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 12, "rope_theta": 5000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 256,
            "tie_word_embeddings": tied, "rope_scaling": rope_scaling, "bos_token_id": 1, "eos_token_id": 2}


def write_checkpoint(path, cfg: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    d, f, H, Hkv, hd = (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"],
                        cfg["num_key_value_heads"], cfg["head_dim"])

    def r(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    sd = {"model.embed_tokens.weight": r(cfg["vocab_size"], d, scale=1.0), "model.norm.weight": 1 + r(d, scale=0.1)}
    if not cfg["tie_word_embeddings"]:
        sd["lm_head.weight"] = r(cfg["vocab_size"], d)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd.update({p + "self_attn.q_proj.weight": r(H * hd, d), p + "self_attn.k_proj.weight": r(Hkv * hd, d),
                   p + "self_attn.v_proj.weight": r(Hkv * hd, d), p + "self_attn.o_proj.weight": r(d, H * hd),
                   p + "mlp.gate_proj.weight": r(f, d), p + "mlp.up_proj.weight": r(f, d),
                   p + "mlp.down_proj.weight": r(d, f), p + "input_layernorm.weight": 1 + r(d, scale=0.1),
                   p + "post_attention_layernorm.weight": 1 + r(d, scale=0.1)})
        if cfg["model_type"] == "qwen3":
            sd[p + "self_attn.q_norm.weight"] = 1 + r(hd, scale=0.1)
            sd[p + "self_attn.k_norm.weight"] = 1 + r(hd, scale=0.1)
    names = sorted(sd)  # two shards, as large checkpoints come
    save_file({k: sd[k] for k in names[::2]}, str(path / "model-00001-of-00002.safetensors"))
    save_file({k: sd[k] for k in names[1::2]}, str(path / "model-00002-of-00002.safetensors"))
    (path / "config.json").write_text(json.dumps(cfg))
    return sd


LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}


@pytest.mark.parametrize("model_type,tied,scaling", [("llama", False, None), ("qwen3", True, None),
                                                     ("llama", True, LLAMA3_SCALING)])
@torch.no_grad()
def test_hf_dir_matches_plain_reference(tmp_path, model_type, tied, scaling):
    cfg = tiny_hf_config(model_type, tied, scaling)
    sd = write_checkpoint(tmp_path, cfg)
    model, tok = load_model(str(tmp_path), "cpu", "fp32")
    assert tok is None
    assert model.config.qk_norm == (model_type == "qwen3") and model.config.tie_word_embeddings == tied
    assert model.config.max_seq_len == 256 and model.config.eos_token_ids == (2,)
    ids = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3, 23, 8, 4, 6, 2, 6, 43, 3, 38, 32]  # past 16: llama3 band matters
    want = naive_logits(sd, cfg, ids)
    got = model(torch.tensor([ids]), torch.arange(len(ids)), model.new_cache(1))[0].double()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_hf_dir_tokenizer_and_template(tmp_path, smollm2):
    """tokenizer.json + tokenizer_config.json (chat template) + generation_config.json eos ids."""
    _, gguf_tok = smollm2
    cfg = tiny_hf_config("llama", True)
    write_checkpoint(tmp_path, cfg)
    gguf_tok.tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": gguf_tok.chat_template, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    model, tok = load_model(str(tmp_path), "cpu")
    assert model.config.eos_token_ids == (2, 0) and tok.eos_token_ids == (2, 0) and tok.bos_token_id == 1
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    assert tok.encode_chat(msgs) == gguf_tok.encode_chat(msgs)
    assert tok.decode(tok.encode("Hello 123 world")) == "Hello 123 world"


@torch.no_grad()
def test_gguf_qk_permutation_is_interleaved_rotary():
    """Weights in GGUF's permuted layout with interleaved-pair rotary == HF layout with half rotary."""
    cfg = ModelConfig(name="p", vocab_size=50, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, max_seq_len=32)
    torch.manual_seed(0)
    half = Transformer(cfg).eval()
    inter = Transformer(ModelConfig.from_dict({**cfg.to_dict(), "rope_interleaved": True})).eval()
    inter.load_state_dict(half.state_dict())
    qs, ks = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    for layer in inter.layers:
        w = layer.attn.wqkv.weight
        q, k, v = w.split([qs, ks, ks])
        w.copy_(torch.cat([hf_to_gguf_qk(q, cfg.num_heads), hf_to_gguf_qk(k, cfg.num_kv_heads), v]))
        assert torch.equal(gguf_to_hf_qk(hf_to_gguf_qk(q, 4), 4), q)
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(1))
    a = half(ids, torch.arange(12), half.new_cache(1))
    b = inter(ids, torch.arange(12), inter.new_cache(1))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    inter.load_state_dict(half.state_dict())  # unpermuted weights with interleaved rotary: a different model
    c = inter(ids, torch.arange(12), inter.new_cache(1))
    assert not torch.allclose(a, c, rtol=1e-3, atol=1e-3)


def test_named_shapes_have_their_real_sizes():
    # parameter counts of the published models (embedding included), to within 1%
    expect = {"smollm2-135m": 134.5e6, "qwen3-0.6b": 596e6, "llama-3.2-1b": 1.236e9, "qwen3-4b": 4.02e9,
              "llama-3.1-8b": 8.03e9}
    for name, n in expect.items():
        assert abs(SHAPES[name].num_params / n - 1) < 0.01, (name, SHAPES[name].num_params)
    assert shape_config("qwen3-4b", max_seq_len=512).max_seq_len == 512


@torch.no_grad()
def test_random_model_is_seeded_and_runs():
    spec = 'random:custom:{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, ' \
           '"num_heads": 4, "num_kv_heads": 1, "head_dim": 8, "qk_norm": true, "tie_word_embeddings": true}'
    a, tok = load_model(spec, "cpu", seed=5)
    b, _ = load_model(spec, "cpu", seed=5)
    c, _ = load_model(spec, "cpu", seed=6)
    assert tok is None and a.config.name == "custom" and a.dtype == torch.float32
    assert a.output.weight is a.tok_embeddings.weight
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.layers[0].ffn.w13.weight, c.layers[0].ffn.w13.weight)
    assert generate_greedy(a, [1, 2, 3], 5) == generate_greedy(b, [1, 2, 3], 5)
    m, _ = load_model("random:smollm2-135m", "cpu", "bf16", max_seq_len=64)
    assert m.dtype == torch.bfloat16 and m.config.num_layers == 30 and m.config.max_seq_len == 64


@pytest.mark.parametrize("spec,kwargs,msg", [
    ("random:gpt-9", {}, "unknown model shape"),
    ("random:custom:{not json", {}, "invalid JSON"),
    ('random:custom:{"hidden_size": 8}', {}, "random:custom"),
    ('random:custom:[1]', {}, "JSON object"),
    ("/nonexistent/model/dir", {}, "not 'smollm2'"),
    ("/nonexistent/model.gguf", {}, "GGUF file not found"),
    ("smollm2", {"device": "tpu"}, "device"),
    ("smollm2", {"dtype": "int3"}, "dtype"),
    ("smollm2", {"max_seq_len": 100000}, "exceeds the model's context"),
    ("random:qwen3-4b", {"max_seq_len": 0}, "max_seq_len"),
])
def test_bad_specs_raise_input_error(spec, kwargs, msg):
    with pytest.raises(InputError, match=msg):
        load_model(spec, **{"device": "cpu", **kwargs})


def test_bad_checkpoint_dirs(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        load_model(str(tmp_path), "cpu")
    cfg = tiny_hf_config("llama", False)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="no \\*.safetensors"):
        load_model(str(tmp_path), "cpu")
    write_checkpoint(tmp_path, cfg)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(InputError, match="model_type"):
        load_model(str(tmp_path), "cpu")
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "hidden_size": 48}))
    with pytest.raises(InputError, match="shape"):
        load_model(str(tmp_path), "cpu")
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(InputError, match="invalid JSON"):
        load_model(str(tmp_path), "cpu")
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "vocab_size"}))
    with pytest.raises(InputError, match="missing field vocab_size"):
        load_model(str(tmp_path), "cpu")
