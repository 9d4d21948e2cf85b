"""Static-shape replay of the PDM's per-cycle forward (opt-in: ``PipelineDraftModule.use_graphs``).

The eager draft forward is host/launch bound on a GPU (a few hundred small kernels for ~2 tower layers, the
aggregation and the head) and sits on the critical path of every SPD cycle. Its shapes depend only on the
*layout*: how many rows completed since the last call and the staircase level of each row, in order. Per
layout this module keeps static input buffers (each row's anchor hidden states, batched per level exactly as
the eager path batches them) and a static device position tensor; ``PipelineDraftModule.cached_forward``, the
very code the eager path runs, computes from them. On CUDA that body is captured once per layout into a CUDA
graph and replayed; on CPU it runs eagerly (the tests compare it bit for bit with the eager path).

What a captured graph bakes in (and ``DraftGraphs.run`` re-checks before every replay): the PDM's KV-cache
tensors and its head weight (a tied draft-vocabulary head is a gathered copy the PDM may rebuild). Weights
must be updated in place, if at all, once graphs exist.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from .spd_controller import TokenFeatures

if TYPE_CHECKING:
    from .draft import PipelineDraftModule

LayoutKey = tuple[int, tuple[int, ...]]  # (rows completed since the last call, staircase level of every row)


class StaticLayout:
    """One layout's static inputs (and, on CUDA, its graph and output buffer)."""

    def __init__(self, pdm: "PipelineDraftModule", key: LayoutKey) -> None:
        from .draft import level_groups

        _, self.levels = key
        d, dtype, device = pdm.config.hidden_size, pdm.target.dtype, pdm.device
        anchors = pdm.config.anchors
        # groups[i][a]: anchor a's hidden states [rows, d] of the i-th level group, as rows_from_groups takes them
        self.groups = [[torch.zeros(len(idx), d, dtype=dtype, device=device) for _ in anchors[:j + 1]]
                       for j, idx in level_groups(self.levels)]
        # (destination row view, token index, anchor): one copy_ per row and anchor, views made once
        self._copies = [(buf[r], k, b)
                        for (j, idx), bufs in zip(level_groups(self.levels), self.groups)
                        for b, buf in zip(anchors, bufs)
                        for r, k in enumerate(idx)]
        self.positions = torch.zeros(len(self.levels), dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None

    def load(self, tokens: Sequence[TokenFeatures], start: int) -> None:
        """Copy this call's inputs into the static buffers (same stream as the replay that reads them)."""
        for dst, k, b in self._copies:
            dst.copy_(tokens[k].hidden[b].reshape(-1))
        torch.arange(start, start + len(self.levels), out=self.positions)  # on the device: no host copy

    def compute(self, pdm: "PipelineDraftModule") -> torch.Tensor:
        return pdm.cached_forward(self.levels, self.groups, self.positions)


class DraftGraphs:
    """The static forwards of one PDM, one per layout seen, at most ``max_layouts`` (then ``run`` returns None
    and the caller runs eagerly). On a CUDA device each is a CUDA graph captured lazily on first use."""

    def __init__(self, device: torch.device, max_layouts: int = 64, warmup_steps: int = 2) -> None:
        if max_layouts < 0:
            raise ValueError(f"max_layouts must be >= 0, got {max_layouts}")
        self.device, self.max_layouts, self.warmup_steps = torch.device(device), max_layouts, warmup_steps
        self.capture = self.device.type == "cuda"
        self.layouts: dict[LayoutKey, StaticLayout] = {}
        self._bound: tuple[torch.Tensor, ...] | None = None  # tensors the captured graphs read or write
        self._pool = None  # one memory pool for all graphs of this PDM: they never run concurrently
        self._stream: torch.cuda.Stream | None = None

    def reset(self) -> None:
        self.layouts.clear()
        self._bound, self._pool = None, None

    @torch.no_grad()
    def run(self, pdm: "PipelineDraftModule", completed: int, tokens: Sequence[TokenFeatures],
            start: int) -> torch.Tensor | None:
        """Logits ``[V_draft]`` for ``tokens`` (the first ``completed`` of them completed rows) at positions
        ``start..``, K/V written into ``pdm.cache``; None past the layout cap."""
        assert pdm.cache is not None
        if self.capture:
            bound = (pdm.cache.k, pdm.cache.v, pdm.head_weight())
            if self._bound is not None and any(a is not b for a, b in zip(bound, self._bound)):
                self.reset()  # a new cache or a regathered head: the graphs point at freed memory
            self._bound = bound
        key: LayoutKey = (completed, pdm.row_levels(tokens))
        lay = self.layouts.get(key)
        if lay is None:
            if len(self.layouts) >= self.max_layouts:
                return None
            lay = self.layouts[key] = StaticLayout(pdm, key)
        lay.load(tokens, start)
        if not self.capture:
            return lay.compute(pdm)
        if lay.graph is None:
            self._capture(pdm, lay)
        lay.graph.replay()
        # The output lives in the shared graph pool, where another layout's replay may scribble: hand out a copy
        # (a DraftSource returns a fresh tensor per call; [V_draft] floats, one small copy kernel).
        return lay.out.clone()

    def _capture(self, pdm: "PipelineDraftModule", lay: StaticLayout) -> None:
        # Capture on the PDM's device whatever the current device is (torch.cuda.graph captures the current
        # device's stream). Warm-up runs first, on a side stream, so one-time work (rotary tables, cuBLAS
        # handles, lazily built constants) stays out of the graph; it computes this call's real result, so the
        # K/V it writes are the ones the replay writes again.
        with torch.cuda.device(self.device):
            if self._stream is None:
                self._stream = torch.cuda.Stream(self.device)
            side, current = self._stream, torch.cuda.current_stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                for _ in range(self.warmup_steps):
                    lay.compute(pdm)
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: in the runtime a stage runs in another thread of this process on its own stream and
            # keeps launching (and syncing) while the draft captures; the default "global" mode would turn
            # those calls into capture errors. capture_begin/end rather than torch.cuda.graph(): that context
            # synchronises the whole device and empties the cache on entry, and mid-run a device-wide sync
            # waits for the stage thread's NCCL send (docs/executor.md, "Ranks and processes"). Our own capture
            # stream: torch.cuda.graph's default one is shared by every capture in the process.
            side.wait_stream(current)  # the inputs this call loaded on the current stream
            with torch.cuda.stream(side):
                graph.capture_begin(pool=self._pool, capture_error_mode="thread_local")
                try:
                    lay.out = lay.compute(pdm)
                finally:
                    graph.capture_end()
            current.wait_stream(side)
            if self._pool is None:
                self._pool = graph.pool()
            lay.graph = graph
