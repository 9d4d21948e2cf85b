"""AR on one device, in one process: the denominator of every speedup.

It uses the same one-token step as the stages (``OneTokenStep``: embed + all layers + head captured in one
CUDA graph on GPU, eager on CPU), so SPD and AR are compared with the same kernels.
"""
from __future__ import annotations

import time

import torch

from ..model import OneTokenStep, Transformer
from ..verify import SamplingConfig, Verifier
from .controller import PromptResult
from .launch import Watchdog
from .tracing import Recorder


class SingleDeviceAR:
    def __init__(self, model: Transformer, rec: Recorder, watchdog: Watchdog, sampling: SamplingConfig,
                 use_graph: bool, compile_step: bool = False) -> None:
        self.model, self.rec, self.wd, self.sampling = model, rec, watchdog, sampling
        L = model.config.num_layers
        self.full = model.stage(0, L)
        self.cache = self.full.new_cache(1)
        self.step = OneTokenStep(self.full, self.cache, embed=True, head=True, use_graph=use_graph,
                                 compile=compile_step)
        self._tok = torch.zeros(1, 1, dtype=torch.long, device=model.device)

    @torch.inference_mode()
    def run(self, prompt: int, ids: list[int], max_new_tokens: int, eos: tuple[int, ...]) -> PromptResult:
        rec = self.rec
        rec.prompt, rec.cycle = prompt, 0
        verifier = Verifier(self.sampling)
        t_start = time.perf_counter_ns()
        self.cache.reset()
        t0 = rec.now()
        h, _ = self.full(self.model.embed(torch.tensor([ids], device=self.model.device)), torch.arange(len(ids)),
                         self.cache)
        rec.add("prefill_forward", t0, rec.now(), tokens=len(ids))
        tok = verifier.first_token(self.model.final_logits(h[:, -1:])[0, 0])
        tokens = [tok]
        t_first = time.perf_counter_ns()
        eos_set, pos, step = set(eos), len(ids), 0
        while len(tokens) < max_new_tokens and tok not in eos_set:
            step += 1
            rec.cycle = step
            c0 = time.perf_counter_ns()
            self._tok.fill_(tok)
            logits, _ = self.step.step(self._tok, pos)
            t0 = rec.now()
            rec.add("forward", c0, t0, position=pos)
            tok = verifier.first_token(logits[0, -1])
            c1 = time.perf_counter_ns()
            rec.add("verify", t0, c1, event="ar")
            rec.cycles.append({"prompt": prompt, "cycle": step, "control": "AR_STEP", "in_flight": 1, "event": "ar",
                               "committed": [tok], "new_token": tok, "t0_ns": c0, "t1_ns": c1})
            tokens.append(tok)
            pos += 1
            self.wd.tick()
        stop = "eos" if tok in eos_set else "max_new_tokens"
        return PromptResult(prompt, tokens, step, stop_reason=stop, t_start_ns=t_start, t_first_ns=t_first,
                            t_end_ns=time.perf_counter_ns())
