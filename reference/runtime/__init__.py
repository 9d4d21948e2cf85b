"""The distributed SPD runtime: n+1 ranks on torch.distributed (rank 0 controller, ranks 1..n stages).

- ``config``: the run configuration (typed, validated before any process starts) and rank placement.
- ``launch``: spawns the n+1 local processes (or acts as one rank under torchrun) and cleans up on faults.
- ``comm``: point-to-point hidden-state transport (NCCL between GPUs, host-staged gloo otherwise), the control
  message codec, receive timeouts.
- ``clock``: ping-exchange clock alignment across ranks.
- ``tracing``: per-rank event recorder and the trace writer (format in docs/traces.md).
- ``stage``: the loop of a stage rank; ``controller``: the loop of rank 0; ``single``: AR on one device.
- ``worker``: one rank's main (init, load its part of the model, run the prompts, gather traces, write outputs).
"""
