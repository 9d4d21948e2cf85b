"""Draft sources for SPD (the ``DraftSource`` protocol of ``reference.spd_controller``).

- :class:`PipelineDraftModule` (PDM, SPEC.md 1.2): multi-depth anchor features of the in-flight tokens,
  aggregated per depth (the "staircase"), a small decoder tower over them, the target's final norm and a
  head over a draft vocabulary. Untrained here; SPD stays exactly lossless whatever it proposes.
- :class:`ReplayDraft` (T=0, measurement only): proposes the token a prior AR greedy run produced with
  probability alpha and a wrong token otherwise, while still running a PDM forward for its real cost.

Checkpoints: ``save(dir)`` writes ``pdm.safetensors`` + ``pdm.json`` (config and target shape); ``load``
validates the JSON and never executes anything from the files.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from sim.errors import InputError
from sim.io import atomic_write_bytes, atomic_write_json, read_json_with_format

from .model import Block, KVCache, ModelConfig, RMSNorm, Transformer, attention_inputs
from .spd_controller import DraftInput, TokenFeatures, stage_bounds

if TYPE_CHECKING:
    from .draft_graph import DraftGraphs

CHECKPOINT_FORMAT = "spd-pdm/1"
WEIGHTS_FILE, CONFIG_FILE = "pdm.safetensors", "pdm.json"


# ------------------------------------------------------------------------------------------- config
def default_anchors(num_layers: int, n: int, split: Sequence[int] | None = None) -> tuple[int, ...]:
    """SPEC.md 1.2: {0, L/n, 3L/n, 6L/n, L-1} clipped to [0, L] and de-duplicated, with k·L/n read as the
    layers passed after k stages of the real split (exact for even splits, the true boundary otherwise)."""
    bounds = stage_bounds(num_layers, n, split)
    passed = [0] + [b[1] for b in bounds]  # passed[k] = layers after k stages

    def after(k: int) -> int:
        return passed[min(k, n)]

    return tuple(sorted({0, after(1), after(3), after(6), max(0, num_layers - 1)}))


def anchor_level(anchors: Sequence[int], layers_passed: int) -> int:
    """The staircase rule: the largest j with anchors[j] <= layers_passed (a token contributes g_j)."""
    j = 0
    for i, b in enumerate(anchors):
        if b <= layers_passed:
            j = i
    return j


@dataclass(frozen=True)
class PDMConfig:
    """Shape of a pipeline draft module. The target signature (``target_*``) is checked on load.

    ``tower_heads``/``tower_kv_heads``: attention heads of the tower (head_dim is the target's, so the rotary
    tables are the target's). ``tower_ffn``: the tower's SwiGLU width (narrower than the target's keeps the
    checkpoint small). ``agg_rank``: FC_j factored as (j+1)d -> rank -> d; None = a full (j+1)d x d matrix.
    ``draft_vocab_size``: None = the full target vocabulary, else the size of the frequent-token subset whose
    ids are stored with the weights. ``tie_head``: the head is the target's embedding rows of the draft
    vocabulary (nothing stored); else an own trainable matrix.
    """

    n: int
    anchors: tuple[int, ...]
    target_layers: int
    hidden_size: int
    head_dim: int
    vocab_size: int
    tower_layers: int = 2
    tower_heads: int = 1
    tower_kv_heads: int = 1
    tower_ffn: int = 256
    agg_rank: int | None = 32
    draft_vocab_size: int | None = None
    tie_head: bool = True

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InputError:
            return InputError(f"PDMConfig.{field}: {why}")

        for f in ("n", "target_layers", "hidden_size", "head_dim", "vocab_size", "tower_layers", "tower_heads",
                  "tower_kv_heads", "tower_ffn"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(f, f"must be a positive integer, got {v!r}")
        if self.n < 2:
            raise bad("n", "SPD needs at least 2 stages")
        a = self.anchors
        if (not isinstance(a, tuple) or not a or a[0] != 0 or list(a) != sorted(set(a))
                or a[-1] > self.target_layers or not all(isinstance(x, int) for x in a)):
            raise bad("anchors", f"{a!r} must be strictly increasing integers from 0 up to {self.target_layers}")
        if self.tower_heads % self.tower_kv_heads:
            raise bad("tower_heads", f"{self.tower_heads} is not a multiple of tower_kv_heads {self.tower_kv_heads}")
        if self.agg_rank is not None and (not isinstance(self.agg_rank, int) or self.agg_rank < 1):
            raise bad("agg_rank", f"must be a positive integer or null, got {self.agg_rank!r}")
        if self.draft_vocab_size is not None and not (
                isinstance(self.draft_vocab_size, int) and 1 <= self.draft_vocab_size <= self.vocab_size):
            raise bad("draft_vocab_size", f"must be in [1, {self.vocab_size}] or null, got {self.draft_vocab_size!r}")
        if not isinstance(self.tie_head, bool):
            raise bad("tie_head", "must be true or false")

    @classmethod
    def default(cls, target: ModelConfig, n: int, split: Sequence[int] | None = None, **overrides: Any) -> "PDMConfig":
        """Defaults sized so the SmolLM2 checkpoint stays under 8 MB in bf16: two tower layers with the target's
        attention heads and a half-width FFN, rank-32 aggregation, head tied to the target's embeddings."""
        base = dict(n=n, anchors=default_anchors(target.num_layers, n, split), target_layers=target.num_layers,
                    hidden_size=target.hidden_size, head_dim=target.head_dim, vocab_size=target.vocab_size,
                    tower_heads=target.num_heads, tower_kv_heads=target.num_kv_heads,
                    tower_ffn=max(1, target.hidden_size // 2))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["anchors"] = list(self.anchors)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "pdm.json") -> "PDMConfig":
        if not isinstance(d, dict):
            raise InputError(f"{source}: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{source}: unknown PDMConfig field(s): {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("anchors"), list):
            d["anchors"] = tuple(d["anchors"])
        try:
            return cls(**d)
        except TypeError as exc:  # a missing required field
            raise InputError(f"{source}: {exc}") from None
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None

    def check_target(self, target: ModelConfig, source: str = "PDM") -> None:
        for mine, theirs in (("target_layers", "num_layers"), ("hidden_size", "hidden_size"),
                             ("head_dim", "head_dim"), ("vocab_size", "vocab_size")):
            if getattr(self, mine) != getattr(target, theirs):
                raise InputError(f"{source}: draft module built for {mine}={getattr(self, mine)}, target model "
                                 f"{target.name!r} has {getattr(target, theirs)}")


def frequent_vocab(token_ids: torch.Tensor | Sequence[int], size: int, vocab_size: int) -> torch.Tensor:
    """The ``size`` most frequent ids in a token stream (ties: lower id first), sorted: a draft vocabulary."""
    counts = torch.bincount(torch.as_tensor(token_ids, dtype=torch.long).reshape(-1), minlength=vocab_size)
    # A stable sort on -count keeps lower ids first among equal counts: deterministic.
    order = torch.sort(-counts, stable=True).indices[:size]
    return torch.sort(order).values


def level_groups(levels: Sequence[int]) -> list[tuple[int, list[int]]]:
    """Rows grouped by staircase level (levels ascending, rows in order): FC_j runs once per level, batched."""
    return [(j, [k for k, lv in enumerate(levels) if lv == j]) for j in sorted(set(levels))]


# ------------------------------------------------------------------------------------------- the PDM
class PipelineDraftModule(nn.Module):
    """SPEC.md 1.2. Holds a reference to the frozen target (embedding rows for a tied head, final norm) without
    registering it, so ``state_dict`` holds the draft module's own weights only."""

    def __init__(self, target: Transformer, config: PDMConfig, vocab_ids: torch.Tensor | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        config.check_target(target.config)
        self.config = config
        self._target = [target]
        tc = target.config
        self.tower_config = dataclasses.replace(
            tc, name=f"{tc.name}-pdm", num_layers=config.tower_layers, num_heads=config.tower_heads,
            num_kv_heads=config.tower_kv_heads, intermediate_size=config.tower_ffn, tie_word_embeddings=False)
        if (vocab_ids is None) != (config.draft_vocab_size is None):
            raise InputError("PDM: draft_vocab_size and vocab_ids must be given together")
        if vocab_ids is not None:
            vocab_ids = torch.as_tensor(vocab_ids, dtype=torch.long).reshape(-1)
            if (vocab_ids.numel() != config.draft_vocab_size or vocab_ids.unique().numel() != vocab_ids.numel()
                    or int(vocab_ids.min()) < 0 or int(vocab_ids.max()) >= config.vocab_size):
                raise InputError(f"PDM: vocab_ids must be {config.draft_vocab_size} distinct ids in "
                                 f"[0, {config.vocab_size})")
            self.register_buffer("vocab_ids", vocab_ids.to(target.device))
        else:
            self.vocab_ids = None
        d, m = config.hidden_size, len(config.anchors)
        # Per-anchor norms: the residual stream's scale grows with depth; normalising each anchor before the
        # concatenation keeps every depth on one scale for the aggregation layers.
        self.anchor_norms = nn.ModuleList(RMSNorm(d, tc.rms_norm_eps) for _ in range(m))
        self.aggregate = nn.ModuleList(self._fc((j + 1) * d, d) for j in range(m))
        self.tower = nn.ModuleList(Block(self.tower_config) for _ in range(config.tower_layers))
        vd = config.draft_vocab_size or config.vocab_size
        self.head = None if config.tie_head else nn.Linear(d, vd, bias=False)
        self.to(device=target.device, dtype=target.dtype)
        self._init_weights(seed)
        self.cache: KVCache | None = None
        self._tied_key: tuple | None = None
        self._tied_weight: torch.Tensor | None = None
        self._graphs: DraftGraphs | None = None  # use_graphs(True)

    def _fc(self, d_in: int, d_out: int) -> nn.Module:
        r = self.config.agg_rank
        if r is None:
            return nn.Linear(d_in, d_out, bias=False)
        return nn.Sequential(nn.Linear(d_in, r, bias=False), nn.Linear(r, d_out, bias=False))

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        if self.target.device.type == "meta":
            return
        gen = torch.Generator(device=self.target.device).manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or ".anchor_norms." in f".{name}":
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)

    # ---- plumbing
    @property
    def target(self) -> Transformer:
        return self._target[0]

    @property
    def device(self) -> torch.device:
        return self.target.device

    def head_weight(self) -> torch.Tensor:
        """[V_draft, d]: own head, or the target's embedding rows of the draft vocabulary (tied)."""
        if self.head is not None:
            return self.head.weight
        w = self.target.tok_embeddings.weight
        if self.vocab_ids is None:
            return w
        # Gathering the rows every cycle would copy V_draft x d per draft (160 MB for a 32k subset of a 4B
        # model): keep the gathered copy while the (frozen) embedding stays the same tensor.
        # (an inference-mode copy cannot be saved for backward: training must not reuse it; a target created
        # under inference mode has inference tensors, which keep no version counter)
        version = None if w.is_inference() else w._version
        key = (w.data_ptr(), version, w.dtype, w.device, self.vocab_ids.data_ptr(), torch.is_inference_mode_enabled())
        if self._tied_key != key:
            self._tied_weight, self._tied_key = w[self.vocab_ids], key
        return self._tied_weight

    def stored_tensors(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: trainable weights (cast to ``dtype``) and the draft vocabulary ids, stored as
        int32 (half the bytes of the int64 buffer; ``load`` widens them again)."""
        out = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
               for k, v in self.state_dict().items()}
        if "vocab_ids" in out:
            out["vocab_ids"] = out["vocab_ids"].to(torch.int32)
        return out

    # ---- rows (shared by inference and training)
    def _aggregate_level(self, j: int, anchor_hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        """g_j = FC_j(concat(norm_0(h[b_0]), ..., norm_j(h[b_j]))) over any leading shape."""
        x = torch.cat([self.anchor_norms[i](anchor_hidden[i]) for i in range(j + 1)], dim=-1)
        return self.aggregate[j](x)

    def build_rows(self, hidden: dict[int, torch.Tensor], layers_passed: torch.Tensor) -> torch.Tensor:
        """Dense form for training layouts: ``hidden[b]`` is ``[..., T, d]`` for every anchor b (the full target
        forward of a sequence), ``layers_passed`` ``[..., T]`` (or broadcastable) says how deep each row is
        (0 = newest, embedding only; L = completed). Returns rows ``[..., T, d]`` by the staircase rule."""
        anchors = torch.tensor(self.config.anchors, device=layers_passed.device)
        levels = torch.searchsorted(anchors, layers_passed.contiguous(), right=True) - 1
        ref = hidden[self.config.anchors[0]]
        levels = levels.expand(ref.shape[:-1])
        out = torch.zeros(ref.shape, dtype=ref.dtype, device=ref.device)
        for j in torch.unique(levels).tolist():
            sel = levels == j
            out = out.index_put((sel,), self._aggregate_level(j, [hidden[b][sel] for b in self.config.anchors[:j + 1]]))
        return out

    def row_levels(self, tokens: Sequence[TokenFeatures]) -> tuple[int, ...]:
        """The staircase level of each row: the anchors it reads are ``config.anchors[:level + 1]``."""
        return tuple(anchor_level(self.config.anchors, t.layers_passed) for t in tokens)

    def rows_from_features(self, tokens: Sequence[TokenFeatures]) -> torch.Tensor:
        """Inference form: one row per token ``[T, d]``, in the given order, each from its own anchors."""
        levels = self.row_levels(tokens)
        return self.rows_from_groups(levels, self._stack_groups(tokens, levels))

    def _stack_groups(self, tokens: Sequence[TokenFeatures], levels: Sequence[int]) -> list[list[torch.Tensor]]:
        """The eager inputs of ``rows_from_groups``: per level, each anchor's hidden states of its rows stacked."""
        return [[torch.stack([tokens[k].hidden[b].reshape(-1) for k in idx]) for b in self.config.anchors[:j + 1]]
                for j, idx in level_groups(levels)]

    def rows_from_groups(self, levels: Sequence[int], groups: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """Rows ``[T, d]`` from anchor inputs already batched per level: ``groups[i][a]`` is ``[rows, d]``, anchor
        ``a``'s hidden states of the rows of the i-th ``level_groups(levels)`` entry. Shared by the eager path
        (fresh stacks) and the static one (buffers filled in place), so both run the same ops in the same order."""
        out: list[torch.Tensor | None] = [None] * len(levels)
        for (j, idx), hs in zip(level_groups(levels), groups):
            g = self._aggregate_level(j, hs)
            for r, k in enumerate(idx):
                out[k] = g[r]
        return torch.stack(out)  # type: ignore[arg-type]

    # ---- tower
    def tower_forward(self, rows: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder tower. With ``cache``: rows ``[1, T, d]`` at absolute ``positions [T]`` (K/V written at
        those slots, causal by position). Without: a training layout with its own ``attn_mask``
        ``[B or 1, 1, T, T]`` (True = may attend) and rotary ``positions`` ``[T]`` or ``[B, T]``; rows may
        repeat a position (the staircase views of one token)."""
        B, T, _ = rows.shape
        tc = self.tower_config
        if cache is not None:  # causal by position over the cache slots
            write_at, mask = positions, None
        else:
            if attn_mask is None:
                raise ValueError("tower_forward without a cache needs attn_mask")
            write_at, mask = torch.arange(T, device=rows.device), attn_mask
        # the tower shares the target's head_dim and rotary settings, hence its tables and this helper
        cos, sin, mask = attention_inputs(self.target, positions, rows.dtype, tc.num_heads // tc.num_kv_heads, mask)
        h = rows
        for j, layer in enumerate(self.tower):
            if cache is not None:
                k_j, v_j = cache.k[j], cache.v[j]
            else:  # fresh scratch per layer: autograd-safe in-place writes
                shape = (B, tc.num_kv_heads, T, tc.head_dim)
                k_j = torch.zeros(shape, dtype=rows.dtype, device=rows.device)
                v_j = torch.zeros(shape, dtype=rows.dtype, device=rows.device)
            h = layer(h, cos, sin, write_at, mask, k_j, v_j)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Target's final norm, then the draft head: float32 ``[..., V_draft]``."""
        return (self.target.norm(h) @ self.head_weight().t()).float()

    # ---- DraftSource
    def new_cache(self) -> KVCache:
        tc = self.tower_config
        return KVCache(tc.num_layers, 1, tc.max_seq_len, tc.num_kv_heads, tc.head_dim, self.device,
                       self.target.dtype)

    def begin(self, prompt: list[TokenFeatures]) -> None:
        """New generation: reset the cache and write the prompt's full-depth rows."""
        if self.cache is None:
            self.cache = self.new_cache()
        self.cache.reset()
        if prompt:
            self._persist(prompt)

    def _persist(self, completed: list[TokenFeatures]) -> None:
        self._forward(completed, [])

    def propose(self, inp: DraftInput) -> torch.Tensor:
        """Rows: the tokens completed since the last call (appended to the cache for good), then the in-flight
        tokens at their depths (recomputed each cycle, dropped from the cache after)."""
        return self._forward(inp.completed, inp.inflight, static=self._graphs is not None)

    def use_graphs(self, enabled: bool = True, max_layouts: int = 64) -> "PipelineDraftModule":
        """Opt-in: ``propose`` runs a static-shape forward per layout (rows completed, level of each row), from
        static buffers, replayed from a CUDA graph captured on first use on CUDA (``reference.draft_graph``); on
        CPU the same static path runs eagerly. Same math as the eager path. At most ``max_layouts`` layouts,
        eager beyond. ``begin`` (the prompt's rows, any length) stays eager."""
        from .draft_graph import DraftGraphs  # imports this module: only when asked for

        self._graphs = DraftGraphs(self.device, max_layouts) if enabled else None
        return self

    def _forward(self, completed: list[TokenFeatures], inflight: list[TokenFeatures],
                 static: bool = False) -> torch.Tensor:
        assert self.cache is not None, "begin() first"
        tokens = list(completed) + list(inflight)
        start = self.cache.length
        positions = [t.position for t in tokens]
        if positions != list(range(start, start + len(tokens))):
            raise RuntimeError(f"PDM rows at positions {positions} do not continue its cache of length {start}")
        logits = self._graphs.run(self, len(completed), tokens, start) if static else None
        if logits is None:  # eager (or past the static path's layout cap)
            levels = self.row_levels(tokens)
            logits = self.cached_forward(levels, self._stack_groups(tokens, levels),
                                         torch.arange(start, start + len(tokens), device=self.device))
        # In-flight rows were written past the completed prefix; the position-based mask never reads a slot
        # before it is rewritten, so keeping only the prefix is bookkeeping.
        self.cache.length = start + len(completed)
        return logits

    def cached_forward(self, levels: Sequence[int], groups: Sequence[Sequence[torch.Tensor]],
                       positions: torch.Tensor) -> torch.Tensor:
        """Rows (see ``rows_from_groups``) through the tower at ``positions [T]`` (a device tensor; K/V written
        into ``self.cache`` there), then the head on the last row: logits ``[V_draft]``. No host syncs and no
        shape that depends on values: the body a CUDA graph captures."""
        rows = self.rows_from_groups(levels, groups).unsqueeze(0)
        h = self.tower_forward(rows, positions, self.cache)
        return self.logits(h[0, -1])

    def crop(self, length: int) -> None:
        if self.cache is not None:
            self.cache.crop(length)

    # ---- checkpoints
    def save(self, directory: str | Path, dtype: torch.dtype | None = torch.bfloat16) -> Path:
        """``pdm.safetensors`` (weights in ``dtype``, default bf16 to keep checkpoints small; None keeps the
        module's dtype) and ``pdm.json``. Both written atomically."""
        directory = Path(directory)
        atomic_write_bytes(directory / WEIGHTS_FILE, st_save(self.stored_tensors(dtype)))
        atomic_write_json(directory / CONFIG_FILE, {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict()})
        return directory

    @classmethod
    def load(cls, directory: str | Path, target: Transformer) -> "PipelineDraftModule":
        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise InputError(f"{p}: draft checkpoint file not found")
        meta = read_json_with_format(cfg_path, CHECKPOINT_FORMAT)
        config = PDMConfig.from_dict(meta.get("config"), str(cfg_path))
        config.check_target(target.config, str(cfg_path))
        try:
            tensors = st_load(w_path.read_bytes())
        except Exception as exc:  # safetensors raises its own error types on corrupt files
            raise InputError(f"{w_path}: unreadable safetensors file ({exc})") from None
        pdm = cls(target, config, tensors.get("vocab_ids"))
        own = pdm.state_dict()
        missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or extra:
            raise InputError(f"{w_path}: tensors do not match the config (missing {missing[:3]}, extra {extra[:3]})")
        for k, v in tensors.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise InputError(f"{w_path}: {k} has shape {tuple(v.shape)}, config needs {tuple(own[k].shape)}")
        pdm.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
        return pdm


# ------------------------------------------------------------------------------------------- replay
class ReplayDraft:
    """T=0 measurement draft with exactly controlled acceptance.

    For the draft of position p it proposes ``reference[p - prompt_len]`` (the token a prior AR greedy run
    produced there) with probability ``alpha``, else a different token. SPD commits exactly AR's tokens, so
    the target's argmax at p *is* the reference token: the real verification accepts iff the coin said so.
    ``inner`` (a PDM) still runs its forward every cycle for its real cost; its output is ignored.
    Coins are drawn per draft (including drafts later flushed), seeded per (seed, prompt): reproducible.
    """

    vocab_ids = None
    greedy_only = True  # its acceptance means "alpha" only under greedy verification

    def __init__(self, alpha: float, reference_for: Callable[[tuple[int, ...]], Sequence[int]], vocab_size: int,
                 seed: int = 0, inner: Any | None = None) -> None:
        if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
            raise InputError(f"alpha: must be in [0, 1], got {alpha!r}")
        self.alpha, self.reference_for, self.vocab_size = float(alpha), reference_for, int(vocab_size)
        self.seed, self.inner = int(seed), inner
        self._reference: list[int] = []
        self._prompt_len = 0
        self.generator = torch.Generator()

    def begin(self, prompt: list[TokenFeatures]) -> None:
        ids = tuple(t.token for t in prompt)
        self._prompt_len = len(ids)
        self._reference = [int(t) for t in self.reference_for(ids)]
        prompt_hash = zlib.crc32(json.dumps(ids).encode())
        self.generator.manual_seed((self.seed * 1_000_003 + prompt_hash) % (2 ** 63))
        if self.inner is not None:
            self.inner.begin(prompt)

    def propose(self, inp: DraftInput) -> torch.Tensor:
        device = torch.device("cpu")
        if self.inner is not None:
            device = self.inner.propose(inp).device  # real cost; proposal ignored
        i = inp.target_position - self._prompt_len
        coin = float(torch.rand((), dtype=torch.float64, generator=self.generator))
        offset = int(torch.randint(1, self.vocab_size, (), generator=self.generator)) if self.vocab_size > 1 else 0
        right = self._reference[i] if 0 <= i < len(self._reference) else None
        if right is None:  # past the reference: never verified when the reference is AR's full output
            token = offset
        elif coin < self.alpha:
            token = right
        else:
            token = (right + offset) % self.vocab_size  # offset in [1, V): always a different token
        logits = torch.full((self.vocab_size,), float("-inf"), device=device)
        logits[token] = 0.0
        return logits

    def crop(self, length: int) -> None:
        if self.inner is not None:
            self.inner.crop(length)
