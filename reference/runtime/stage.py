"""The loop of a stage rank (rank s+1 runs stage s, decoder layers [start, end)).

Per control message: PREFILL runs the prompt through the stage; CYCLE (SPD) forwards the token at
``msg.inflight[s]`` if the stage is active; AR_STEP forwards the one token every stage handles in turn; END
and SHUTDOWN close a generation / the run. Stage 0 embeds the entering token itself from the id in the
control message (it keeps a copy of the embedding table): the token needs no hidden-state hop from rank 0.

Hidden states in transit: with SPD, stage s-1 sends its output during cycle c and stage s receives it at
the start of cycle c+1. A DISCARD or END drops that message (``_drain``): it belongs to a discarded token.
"""
from __future__ import annotations

import torch

from ..model import KVCache, OneTokenStep, StageModel
from ..spd_controller import ControlKind, PipelinePlan
from .comm import Comm, Op, PeerError
from .launch import Watchdog
from .tracing import Recorder


class StageRank:
    def __init__(self, comm: Comm, plan: PipelinePlan, stage: StageModel, s: int, rec: Recorder,
                 watchdog: Watchdog, use_graph: bool, compile_step: bool = False) -> None:
        self.comm, self.plan, self.stage, self.s, self.rec, self.wd = comm, plan, stage, s, rec, watchdog
        self.n = plan.n
        self.last = s == self.n - 1
        self.collect = plan.stage_collect(s)
        self.cache: KVCache = stage.new_cache(1)
        model = stage.model
        self.d = model.config.hidden_size
        self.dtype, self.device = model.dtype, model.device
        self.step = OneTokenStep(stage, self.cache, embed=(s == 0), head=False, collect=self.collect,
                                 use_graph=use_graph, compile=compile_step)
        self.cache.reset()
        self._tok = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        self._h1 = torch.empty(1, 1, self.d, dtype=self.dtype, device=self.device)
        self.pending = False  # a hidden state from stage s-1 is in transit to us
        # stage 1, eager, in rank 0's process: tell rank 0 each AR-pipeline step is launched (ControllerRank)
        self.step_launch_signal = s == 0 and step_needs_launch_signal(comm, plan, use_graph)

    # -- transport with trace records ---------------------------------------------------------------
    def _recv_up(self, out: torch.Tensor) -> torch.Tensor:
        link = f"{self.s}->{self.s + 1}"  # rank numbers: stage s-1 is rank s
        t0 = self.rec.now()
        self.comm.recv(out, self.s)
        self.rec.add("recv", t0, self.rec.now(), peer=self.s, link=link, seq=self.rec.next_seq(link),
                     bytes=out.numel() * out.element_size())
        return out

    def _send(self, t: torch.Tensor, dst: int, what: str) -> None:
        link = f"{self.comm.rank}->{dst}"
        t0 = self.rec.now()
        self.comm.send(t, dst)
        self.rec.add("send", t0, self.rec.now(), peer=dst, link=link, seq=self.rec.next_seq(link), what=what,
                     bytes=t.numel() * t.element_size())

    def _emit(self, out: torch.Tensor, hidden: dict[int, torch.Tensor], downstream_first: bool = True) -> None:
        """Output to the next stage, collected hidden states (anchors; L on the last stage) to rank 0.
        In an SPD cycle rank 0 goes first (``downstream_first=False``): it needs the anchors to end this cycle,
        while the next stage only reads our output at the start of the next one. In an AR step the next
        stage is waiting for it."""
        to_next = None if self.last else (out, self.comm.rank + 1, "hidden")
        to_rank0 = None
        if self.collect:
            rows = torch.stack([hidden[i] for i in self.collect], dim=0)  # [k, ..., d]
            to_rank0 = (rows, 0, "final" if self.last and len(self.collect) == 1 else "collect")
        for send in ((to_next, to_rank0) if downstream_first else (to_rank0, to_next)):
            if send is not None:
                self._send(*send)

    def _drain(self) -> None:
        if self.pending:
            self._recv_up(self._h1)
            self.pending = False

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            t0 = self.rec.now()
            wire = self.comm.recv_wire(self.n)
            self.wd.tick("decode")
            self.rec.prompt, self.rec.cycle = wire.prompt, wire.msg.cycle
            self.rec.add("ctrl_recv", t0, self.rec.now(), op=wire.op.name)
            if wire.op is Op.SHUTDOWN:
                self.comm.flush()
                return
            if wire.op is Op.PREFILL:
                self._prefill(wire.msg.position)
            elif wire.op is Op.CYCLE:
                self._cycle(wire.msg)
            elif wire.op is Op.AR_STEP:
                self._forward_one(wire.msg.token, wire.msg.position)
                if self.step_launch_signal:
                    self.comm.send_ints(torch.ones(1, dtype=torch.int64), 0)
            elif wire.op is Op.END:
                self._drain()
                self.cache.reset()
                self.comm.flush()

    def _prefill(self, P: int) -> None:
        if self.pending:
            raise PeerError(f"protocol: stage {self.s} got PREFILL with a hidden state in transit")
        if self.s == 0:
            ids = self.comm.recv_ints(P, 0, "prompt ids").to(self.device).view(1, P)
            with torch.inference_mode():
                h = self.stage.model.embed(ids)
        else:
            h = self._recv_up(torch.empty(1, P, self.d, dtype=self.dtype, device=self.device))
        t0 = self.rec.now()
        self.cache.reset()
        with torch.inference_mode():
            out, hidden = self.stage(h, torch.arange(P), self.cache, self.collect)
        self.rec.add("prefill_forward", t0, self.rec.now(), tokens=P)
        self._emit(out, hidden)
        if self.s == 0 and prefill_needs_launch_signal(self.comm, self.plan):
            self.comm.send_ints(torch.ones(1, dtype=torch.int64), 0)

    def _cycle(self, msg) -> None:
        if msg.kind is ControlKind.DISCARD:
            self._drain()
            self.cache.crop(msg.crop_length)
        elif self.pending and self.s >= len(msg.inflight):
            raise PeerError(f"protocol: stage {self.s} idle in cycle {msg.cycle} with a hidden state in transit")
        if self.s < len(msg.inflight):
            self._forward_one(msg.token, msg.inflight[self.s], downstream_first=False)
        # Stage s-1 worked this cycle: its output reaches us at the start of the next one.
        self.pending = self.s > 0 and self.s - 1 < len(msg.inflight)

    def _forward_one(self, token: int, position: int, downstream_first: bool = True) -> None:
        if self.s == 0:
            self._tok.fill_(token)
            x = self._tok
        else:
            x = self._recv_up(self._h1)
            self.pending = False
        t0 = self.rec.now()
        out, hidden = self.step.step(x, position)
        self.rec.add("forward", t0, self.rec.now(), position=position)
        self._emit(out, hidden, downstream_first)


def prefill_needs_launch_signal(comm: Comm, plan: PipelinePlan) -> bool:
    """True when rank 0 must wait for stage 1 to have *launched* its prefill before it posts a receive.

    Rank 0 and stage 1 share a process (one process per GPU, or the CPU layout) and stage 1 sends rank 0
    nothing at prefill (AR pipeline: only the last stage reports). Otherwise rank 0 would post its NCCL
    receive from the last stage at once, and that kernel spins on the GPU until the prompt has gone through
    every stage. Stage 1's prefill meanwhile launches kernels of a shape it may not have run yet (each prompt
    length is new), and with CUDA's lazy module loading (the default) loading a kernel waits for the GPU's
    queue to drain: a deadlock (seen on 4x H200, session 4: AR pipeline n=4, prompts of different lengths).
    With anchors to collect, rank 0 receives stage 1's rows first, which orders the two the same way."""
    return comm.procs[0] == comm.procs[1] and not plan.stage_collect(0)


def step_needs_launch_signal(comm: Comm, plan: PipelinePlan, step_graphed: bool) -> bool:
    """The same rule for each AR-pipeline decode step when stage 1 runs it eagerly (no CUDA graph): an eager
    step can block in a launch too (seen on 4x H200, session 5: AR pipeline n=4 with ``--no-cuda-graphs``,
    stage 1 stuck in a Linear while rank 0's receive spun, with CUDA_MODULE_LOADING=EAGER as well). A replayed
    graph allocates and loads nothing, so graphed steps skip the round trip (SPD collects anchors from stage 1
    every cycle, which already orders it)."""
    return not step_graphed and prefill_needs_launch_signal(comm, plan)
