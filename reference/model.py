"""A small single-file Llama / Qwen3 decoder (gpt-fast / nanoGPT style): the target model of the executor.

API other modules code against (see docs/reference-model.md):

- ``ModelConfig``: shapes, rotary settings, special ids. ``ModelConfig.from_dict`` / ``to_dict``.
- ``Transformer(config)``:
    ``.embed(tokens[B,T]) -> h[B,T,d]``; ``.final_logits(h) -> logits[B,T,V]`` (final RMSNorm + LM head,
    returned as float32); ``.layers`` (``nn.ModuleList`` of ``Block``); ``.stage(start, end)``;
    ``.new_cache(batch_size)``; ``forward(tokens, positions, cache) -> logits`` (embed -> all layers -> head).
- ``StageModel(model, start, end)``: layers ``[start, end)`` as one pipeline stage.
    ``forward(h[B,T,d], positions, cache, collect=()) -> (h_out, {hidden_index: h})``. Hidden indices follow
    SPEC.md 1.2: 0 = embedding output, i = output of decoder layer i-1; a stage can return any index in
    ``[start, end]`` (``start`` is its own input). ``.new_cache(batch_size)``.
- ``KVCache``: a STATIC cache for a layer range, ``[layers, B, kv_heads, max_seq_len, head_dim]``, written at
    the given absolute positions. Attention uses a position-based causal mask (key slot j is visible to a
    query at position p iff j <= p), so stale entries past a prefix are never read before being overwritten:
    ``crop(length)`` after a reject is bookkeeping only.
- ``positions``: LongTensor ``[T]`` (same positions for every row) or ``[B, T]`` (per-row positions, e.g.
    right-padded prompt batches: pad slots land past a row's length and are overwritten before being attended).
    A CPU tensor also advances ``cache.length``; a device tensor leaves the bookkeeping to the caller.
- ``attention_inputs(model, positions, dtype, heads_per_kv)``: rotary cos/sin + position-based mask for ``Block``s
    (shared with any tower that uses the target's rotary tables, e.g. the draft module).
- ``OneTokenStep``: a one-token step (optionally embed + layers + head) captured in a CUDA graph with static
    shapes and the position as a device tensor; eager on CPU, same interface.
- ``generate_greedy(model, prompt_ids, max_new_tokens, eos)``: the AR greedy reference; every losslessness
    check compares against it token for token.

Weights use the Hugging Face ("half", rotate_half) rotary layout unless ``rope_interleaved`` is set (GGUF's
native layout). Projections are fused at load time (``wqkv`` = [q; k; v], ``w13`` = [gate; up]) so a one-token
step launches few kernels.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3.x frequency-dependent rotary scaling (``rope_type: llama3`` in HF configs)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class ModelConfig:
    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    max_seq_len: int = 2048  # KV-cache capacity = the runtime's context (prompt + generated tokens)
    tie_word_embeddings: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k before rotary
    rope_interleaved: bool = False  # True: rotate pairs (2i, 2i+1) (GGUF/Meta layout); False: halves (HF)
    rope_scaling: RopeScaling | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for f in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                  "head_dim", "max_seq_len"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) <= 0:
                raise ValueError(f"ModelConfig.{f} must be a positive integer, got {getattr(self, f)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even (rotary pairs)")

    @property
    def num_params(self) -> int:
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        attn = d * (self.num_heads + 2 * self.num_kv_heads) * hd + self.num_heads * hd * d
        per_layer = attn + 3 * d * f + 2 * d + (2 * hd if self.qk_norm else 0)
        emb = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + emb + d

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a plain dict (e.g. JSON); unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        d = dict(d)
        if d.get("rope_scaling") is not None and not isinstance(d["rope_scaling"], RopeScaling):
            d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
        if "eos_token_ids" in d:
            d["eos_token_ids"] = tuple(d["eos_token_ids"])
        return cls(**d)


def rope_tables(config: ModelConfig, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables in float32 (same arithmetic as HF's Llama rotary): ``[max_seq_len, head_dim]`` (each
    frequency twice, halves layout) or ``[max_seq_len, head_dim // 2]`` when ``rope_interleaved``."""
    hd = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(device=device,
                                                                                       dtype=torch.float) / hd))
    if config.rope_scaling is not None:
        inv_freq = _llama3_scaled(inv_freq, config.rope_scaling)
    t = torch.arange(config.max_seq_len, device=device, dtype=torch.float)
    freqs = torch.outer(t, inv_freq)
    if not config.rope_interleaved:
        freqs = torch.cat((freqs, freqs), dim=-1)
    return freqs.cos(), freqs.sin()


def _llama3_scaled(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    # Long wavelengths are divided by `factor`, short ones kept, the band between is interpolated.
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """x ``[B, T, heads, hd]``. Interleaved: cos/sin ``[B or 1, T, 1, hd/2]`` float32. Halves: cos/sin
    ``[B or 1, T, 1, hd]`` already in x's dtype (HF casts them before multiplying). Returns x's dtype."""
    if interleaved:
        xf = x.float().unflatten(-1, (-1, 2))
        x0, x1 = xf[..., 0], xf[..., 1]
        out = torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2)
        return out.to(x.dtype)
    # HF order: q*cos + rotate_half(q)*sin
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class RMSNorm(nn.Module):
    fused = False  # opt-in (Transformer.set_decode_options): one F.rms_norm with the weight, in x's dtype

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32, scale in the model dtype (the HF Llama order). F.rms_norm without a weight is
        # x * rsqrt(mean(x^2) + eps), bit-identical to the explicit formula on CPU and one fused kernel on CUDA.
        if self.fused:  # one kernel, one rounding (not bit-identical to the HF order)
            return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), eps=self.eps)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class KVCache:
    """Static K/V storage for ``num_layers`` consecutive layers; shapes never change (CUDA-graph friendly)."""

    def __init__(self, num_layers: int, batch_size: int, max_seq_len: int, num_kv_heads: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype) -> None:
        shape = (num_layers, batch_size, num_kv_heads, max_seq_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.length = 0  # bookkeeping: positions [0, length) hold valid entries

    def crop(self, length: int) -> None:
        """Back to the prefix ``[0, length)``. With the position-based mask nothing needs erasing."""
        if not 0 <= length <= self.max_seq_len:
            raise ValueError(f"crop length {length} outside [0, {self.max_seq_len}]")
        self.length = min(self.length, length)

    def reset(self) -> None:
        self.length = 0


class Attention(nn.Module):
    # Opt-in (Transformer.set_decode_options): "sdpa" (default) or "flash_seqused": for one query token, batch 1,
    # 1-D positions on CUDA, flash-attention varlen over the cache with a device-side key count (position + 1):
    # reads only the filled slots, no mask, native GQA, graph-capturable. Other calls use SDPA.
    impl = "sdpa"

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.c = c
        self.q_size, self.kv_size = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        self.wqkv = nn.Linear(c.hidden_size, self.q_size + 2 * self.kv_size, bias=False)
        self.wo = nn.Linear(self.q_size, c.hidden_size, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps) if c.qk_norm else None
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps) if c.qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.c
        q, k, v = self.wqkv(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(B, T, c.num_heads, c.head_dim)
        k = k.view(B, T, c.num_kv_heads, c.head_dim)
        v = v.view(B, T, c.num_kv_heads, c.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, cos, sin, c.rope_interleaved).transpose(1, 2)  # [B, H, T, hd]
        k = apply_rope(k, cos, sin, c.rope_interleaved).transpose(1, 2)
        v = v.transpose(1, 2)
        if positions.dim() == 1:
            k_cache.index_copy_(2, positions, k)
            v_cache.index_copy_(2, positions, v)
        else:  # per-row positions [B, T]
            idx = positions[:, None, :, None].expand(B, c.num_kv_heads, T, c.head_dim)
            k_cache.scatter_(2, idx, k)
            v_cache.scatter_(2, idx, v)
        # GQA without repeating K/V: the G query heads sharing a KV head become G*T query rows of that head
        # (HF maps KV head j to query heads j*G .. j*G+G-1). Plain multi-head SDPA with a mask then runs on
        # every backend (CUDA's memory-efficient kernel accepts masks; enable_gqa + mask would fall back to the
        # math path, which copies the whole cache per step).
        if self.impl == "flash_seqused" and T == 1 and B == 1 and positions.dim() == 1 and x.is_cuda:
            return self.wo(self._flash_seqused(q, k_cache, v_cache, positions).reshape(B, T, self.q_size))
        G = c.num_heads // c.num_kv_heads
        qg = q.reshape(B, c.num_kv_heads, G * T, c.head_dim)
        y = F.scaled_dot_product_attention(qg, k_cache, v_cache, attn_mask=mask)
        y = y.reshape(B, c.num_heads, T, c.head_dim).transpose(1, 2).reshape(B, T, self.q_size)
        return self.wo(y)

    def _flash_seqused(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                       positions: torch.Tensor) -> torch.Tensor:
        S = k_cache.shape[2]
        key = (str(q.device), S)
        consts = getattr(self, "_fa_consts", {})
        if key not in consts:  # built on the first (eager, pre-capture) call: no host->device copies in a graph
            consts[key] = (torch.tensor([0, 1], dtype=torch.int32, device=q.device),
                           torch.tensor([0, S], dtype=torch.int32, device=q.device))
            self._fa_consts = consts
        cu_q, cu_k = consts[key]
        used = (positions[-1:] + 1).to(torch.int32)
        qf = q.transpose(1, 2).reshape(1, self.c.num_heads, self.c.head_dim)  # [total_q=1, H, hd]
        kf = k_cache[0].transpose(0, 1)  # [S, Hkv, hd] (strided view of the cache)
        vf = v_cache[0].transpose(0, 1)
        out = torch.ops.aten._flash_attention_forward(qf, kf, vf, cu_q, cu_k, 1, S, 0.0, False, False,
                                                      seqused_k=used)[0]
        return out  # [1, H, hd]


class FeedForward(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.ffn = c.intermediate_size
        self.w13 = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)  # [gate; up]
        self.w2 = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).split([self.ffn, self.ffn], dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.attn = Attention(c)
        self.ffn_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.ffn = FeedForward(c)

    def forward(self, h, cos, sin, positions, mask, k_cache, v_cache):
        h = h + self.attn(self.attn_norm(h), cos, sin, positions, mask, k_cache, v_cache)
        return h + self.ffn(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.tok_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.output = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # Rotary tables and the key-slot index live outside the state dict and stay float32 whatever the
        # model dtype: built lazily per device (model.to(bf16) must not round the angles).
        self._tables: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._tables:
            cos, sin = rope_tables(self.config, device)
            self._tables[key] = (cos, sin, torch.arange(self.config.max_seq_len, device=device))
        return self._tables[key]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok_embeddings(tokens)

    logits_fp32 = True  # opt-in False (set_decode_options): logits stay in the model dtype
    float_mask = False  # opt-in True: attention_inputs returns an additive 0/-inf mask in the compute dtype

    def final_logits(self, h: torch.Tensor) -> torch.Tensor:
        out = self.output(self.norm(h))
        return out.float() if self.logits_fp32 else out

    def set_decode_options(self, *, fused_norm: bool = False, float_mask: bool = False, attn_impl: str = "sdpa",
                           logits_fp32: bool = True) -> "Transformer":
        """Opt-in decode fast paths (scripts/gpu/bench_ar.py --variants times them); the defaults restore the
        reference behaviour exactly. ``fused_norm``: RMSNorm as one F.rms_norm with the weight in the model dtype;
        ``float_mask``: additive mask built once per forward instead of SDPA converting a boolean mask per layer;
        ``attn_impl``: "sdpa" or "flash_seqused" (see ``Attention.impl``); ``logits_fp32``: cast the logits."""
        if attn_impl not in ("sdpa", "flash_seqused"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'flash_seqused', got {attn_impl!r}")
        for mod in self.modules():
            if isinstance(mod, RMSNorm):
                mod.fused = fused_norm
            elif isinstance(mod, Attention):
                mod.impl = attn_impl
        self.float_mask, self.logits_fp32 = float_mask, logits_fp32
        return self

    def stage(self, start: int, end: int) -> "StageModel":
        return StageModel(self, start, end)

    def new_cache(self, batch_size: int = 1) -> KVCache:
        return self.stage(0, self.config.num_layers).new_cache(batch_size)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        h, _ = self.stage(0, self.config.num_layers)(self.embed(tokens), positions, cache)
        return self.final_logits(h)


class StageModel(nn.Module):
    """Decoder layers ``[start, end)`` of ``model`` (shared weights, not copies) run as one pipeline stage."""

    def __init__(self, model: Transformer, start: int, end: int) -> None:
        super().__init__()
        L = model.config.num_layers
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= L):
            raise ValueError(f"stage layer range [{start}, {end}) must satisfy 0 <= start < end <= {L}")
        # A plain list keeps the parent model out of this module's state dict / parameters twice.
        self._model = [model]
        self.start, self.end = start, end
        self.layers = nn.ModuleList(model.layers[start:end])

    @property
    def model(self) -> Transformer:
        return self._model[0]

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def new_cache(self, batch_size: int = 1) -> KVCache:
        c, m = self.config, self.model
        return KVCache(self.end - self.start, batch_size, c.max_seq_len, c.num_kv_heads, c.head_dim, m.device,
                       m.dtype)

    def forward(self, h: torch.Tensor, positions: torch.Tensor, cache: KVCache,
                collect: Iterable[int] = (), layer_fns: Sequence | None = None
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """``layer_fns``: callables used instead of the layers (e.g. their compiled versions), one per layer."""
        collect = tuple(collect)
        for i in collect:
            if not self.start <= i <= self.end:
                raise ValueError(f"hidden index {i} is not produced by stage [{self.start}, {self.end})")
        if cache.k.shape[0] != self.end - self.start:
            raise ValueError(f"cache holds {cache.k.shape[0]} layers, stage has {self.end - self.start}")
        device = h.device
        if positions.device.type == "cpu" and device.type != "cpu":
            # CPU positions: the bookkeeping below is free; the copy is tiny.
            cpu_positions, positions = positions, positions.to(device, non_blocking=True)
        else:
            cpu_positions = positions if positions.device.type == "cpu" else None
        c = self.config
        cos, sin, mask = attention_inputs(self.model, positions, h.dtype, c.num_heads // c.num_kv_heads)
        hidden: dict[int, torch.Tensor] = {}
        if self.start in collect:
            hidden[self.start] = h
        for j, layer in enumerate(layer_fns or self.layers):
            h = layer(h, cos, sin, positions, mask, cache.k[j], cache.v[j])
            if self.start + j + 1 in collect:
                hidden[self.start + j + 1] = h
        if cpu_positions is not None and cpu_positions.numel():
            cache.length = max(cache.length, int(cpu_positions.max()) + 1)
        return h, hidden


def attention_inputs(model: Transformer, positions: torch.Tensor, dtype: torch.dtype, heads_per_kv: int,
                     mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cos, sin and the causal mask a ``Block`` takes for queries at ``positions`` (``[T]`` or ``[B, T]``, on the
    compute device) over a static cache of ``max_seq_len`` slots. The mask has one row per (group member,
    position) pair, ``heads_per_kv * T`` rows (see ``Attention.forward``); True = may attend. Any decoder tower
    sharing the model's head_dim and rotary settings (e.g. a draft module) builds its inputs here too.
    ``mask``: an explicit ``[B or 1, 1, T, S]`` mask (e.g. a training layout) instead of the causal one."""
    cos_t, sin_t, slots = model.tables(positions.device)
    cos = cos_t[positions].unsqueeze(-2)  # [T or B,T, 1, hd or hd/2]
    sin = sin_t[positions].unsqueeze(-2)
    if not model.config.rope_interleaved:
        cos, sin = cos.to(dtype), sin.to(dtype)
    if positions.dim() == 1:
        cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
        if mask is None:
            mask = (slots[None, :] <= positions[:, None])[None, None]  # [1, 1, T, S]
    elif mask is None:
        mask = (slots[None, None, :] <= positions[:, :, None])[:, None]  # [B, 1, T, S]
    if getattr(model, "float_mask", False) and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    return cos, sin, mask.repeat(1, 1, heads_per_kv, 1)


class OneTokenStep:
    """One-token forward of a stage with static shapes, replayed from a CUDA graph on CUDA (eager on CPU).

    ``embed=True``: input is token ids ``[B, 1]`` (embedding inside); else hidden ``[B, 1, d]``.
    ``head=True``: output is float32 logits ``[B, 1, V]`` (final norm + LM head inside); else hidden.
    ``step(x, position) -> (out, {hidden_index: h})``; ``position`` is a Python int. On CUDA the returned
    tensors are static buffers overwritten by the next step: consume or clone them first.
    Capture runs warm-up forwards that write K/V at the last cache slot; that slot is overwritten before it
    is ever attended, so the cache contents stay valid.
    """

    def __init__(self, stage: StageModel, cache: KVCache, *, embed: bool = False, head: bool = False,
                 collect: Sequence[int] = (), use_graph: bool | None = None, warmup_steps: int = 3,
                 compile: bool = False) -> None:
        self.stage, self.cache, self.embed, self.head, self.collect = stage, cache, embed, head, tuple(collect)
        # compile: torch.compile of each layer for this step only (inductor fuses a layer's small elementwise
        # kernels; the layers share one compiled graph), compiled in the warm-up steps and then captured in the
        # CUDA graph. Prefill keeps the eager layers (its shapes vary).
        self._layer_fns = [torch.compile(layer, dynamic=False) for layer in stage.layers] if compile else None
        model = stage.model
        device = model.device
        B = cache.batch_size
        if embed:
            self.static_in = torch.zeros(B, 1, dtype=torch.long, device=device)
        else:
            self.static_in = torch.zeros(B, 1, model.config.hidden_size, dtype=model.dtype, device=device)
        self.static_pos = torch.full((1,), cache.max_seq_len - 1, dtype=torch.long, device=device)
        self.use_graph = (device.type == "cuda") if use_graph is None else use_graph
        if self.use_graph and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model, this one is on {device}")
        self.graph = None
        if self.use_graph:
            # Capture on the model's device whatever the current device is: torch.cuda.graph() captures the
            # current device's stream, and kernels on another device would silently stay out of the graph.
            with torch.cuda.device(device):
                self._capture(warmup_steps)
        elif compile:  # compile now, not inside the first timed generation
            saved_length = cache.length
            with torch.inference_mode():
                for _ in range(warmup_steps):
                    self._run()
            cache.length = saved_length

    def _capture(self, warmup_steps: int) -> None:
        device, cache = self.static_in.device, self.cache
        saved_length = cache.length
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(warmup_steps):
                self._run()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: another thread of this process (a rank on its own stream) may launch work meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"), torch.inference_mode():
            self.static_out = self._run()
        cache.length = saved_length

    def _run(self) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        x = self.stage.model.embed(self.static_in) if self.embed else self.static_in
        h, hidden = self.stage(x, self.static_pos, self.cache, self.collect, self._layer_fns)
        return (self.stage.model.final_logits(h) if self.head else h), hidden

    def step(self, x: torch.Tensor, position: int) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        if not 0 <= position < self.cache.max_seq_len:
            raise ValueError(f"position {position} outside the cache [0, {self.cache.max_seq_len})")
        self.static_in.copy_(x, non_blocking=True)
        self.static_pos.fill_(position)
        if self.graph is not None:
            self.graph.replay()
            out = self.static_out
        else:
            with torch.inference_mode():
                out = self._run()
        self.cache.length = max(self.cache.length, position + 1)
        return out


@torch.inference_mode()
def generate_greedy(model: Transformer, prompt_ids: Sequence[int] | torch.Tensor, max_new_tokens: int,
                    eos: int | Iterable[int] | None = None, *, use_graph: bool | None = None) -> list[int]:
    """AR greedy decoding, batch 1: prefill the prompt, then one-token steps. Returns the new token ids
    (the prefill token first), stopping after an ``eos`` id (included) or ``max_new_tokens``.

    Uses a cache of ``config.max_seq_len`` slots; SPD runs must use the same capacity for bit-identical
    attention reductions.
    """
    ids = [int(t) for t in (prompt_ids.tolist() if isinstance(prompt_ids, torch.Tensor) else prompt_ids)]
    c = model.config
    if not ids:
        raise ValueError("empty prompt")
    if len(ids) + max_new_tokens > c.max_seq_len:
        raise ValueError(f"prompt {len(ids)} + {max_new_tokens} new tokens exceeds max_seq_len {c.max_seq_len}")
    eos_set = set() if eos is None else ({int(eos)} if isinstance(eos, int) else {int(e) for e in eos})
    device = model.device
    full = model.stage(0, c.num_layers)
    cache = full.new_cache(1)
    out: list[int] = []
    if max_new_tokens <= 0:
        return out
    logits = model(torch.tensor([ids], device=device), torch.arange(len(ids)), cache)
    tok = int(logits[0, -1].argmax())
    out.append(tok)
    step = OneTokenStep(full, cache, embed=True, head=True, use_graph=use_graph) if max_new_tokens > 1 else None
    x = torch.zeros(1, 1, dtype=torch.long, device=device)
    while len(out) < max_new_tokens and tok not in eos_set:
        x.fill_(tok)
        logits, _ = step.step(x, len(ids) + len(out) - 1)
        tok = int(logits[0, -1].argmax())
        out.append(tok)
    return out


def init_random_(model: Transformer, seed: int, std: float = 0.02) -> Transformer:
    """Seeded random weights (normal(0, std) matrices, unit norms), generated on the model's device."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=gen)
    return model
