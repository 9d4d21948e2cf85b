"""Model and hardware presets: starting values for the What-if sliders (the user can move every one).

No results live here, only inputs, each with where it comes from (../shared/SPEC.md and
../shared/data/published_spd.json). A hardware preset turns a model's per-layer weight size into a
per-layer time: ``layer_ms = max(launch_floor_ms, layer_bytes / effective bandwidth)``. Batch-1
decoding reads every weight once per token, so a layer is memory-bound unless the software stack
is launch-bound (HF eager: ~0.9 ms per layer whatever its size, SPEC.md 1.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelPreset:
    name: str
    layers: int
    hidden_size: int
    layer_params_m: float  # parameters of one decoder layer, millions (q,k,v,o + gated MLP; GQA)
    # Default per-draft conditional acceptance; None = no published number (the generic 0.8 is used).
    alpha_spd: float | None = None
    alpha_eagle3: float | None = None
    alpha_ppsd: float | None = None
    note: str = ""


@dataclass(frozen=True)
class HardwarePreset:
    name: str
    launch_floor_ms: float  # a layer never runs faster than this (kernel launches, Python)
    effective_tb_s: float  # achieved weight-read bandwidth, TB/s
    hop_ms: float  # one hidden-state transfer between ranks
    stage_overhead_ms: float  # fixed cost added to each stage forward (start after control message)
    verify_ms: float  # final norm + LM head + accept/reject decision
    cycle_overhead_ms: float  # serial controller work per cycle: control message, bookkeeping, sync
    draft_layer_factor: float  # one draft-tower layer relative to one target layer (same width; extra FC rows)
    note: str = ""

    def layer_ms(self, model: ModelPreset) -> float:
        layer_bytes = model.layer_params_m * 1e6 * 2  # bf16
        return max(self.launch_floor_ms, layer_bytes / (self.effective_tb_s * 1e12) * 1e3)


# Layer sizes from the published architectures (d, FFN, heads): e.g. Qwen3-4B d=2560, 32 q / 8 kv heads
# of 128, FFN 9728 -> ~101 M parameters (~200 MB bf16, SPEC.md 3).
# Published acceptance (Qwen3.5, T=0, default training mix) converted to per-draft alpha with the
# closed-form inverses: SPD n=8/L_s=3 L_acc 3.39 -> 0.81; EAGLE-3 m=7 speedup 2.72 -> tau 3.32 -> 0.72;
# PPSD n=8 speedup 1.68 -> L_acc 2.10 -> 0.60 (4B; 9B: 3.61, 3.17, 1.96). tests/test_app_presets.py
# checks these against sim.closed_form and the published file.
MODELS: dict[str, ModelPreset] = {p.name: p for p in (
    ModelPreset("Qwen3.5-4B (published target)", 32, 2560, 101.0, 0.81, 0.72, 0.60,
                "the SPD paper's main target; acceptance from its T=0 table"),
    ModelPreset("Qwen3.5-9B (published target)", 32, 4096, 193.0, 0.83, 0.77, 0.68,
                "the SPD paper's larger target; acceptance from its T=0 table"),
    ModelPreset("SmolLM2-135M (embedded default model)", 30, 576, 3.5, note="the offline model the executor runs"),
    ModelPreset("Qwen3-0.6B", 28, 1024, 15.7),
    ModelPreset("Llama-3.2-1B", 16, 2048, 60.8),
    ModelPreset("Qwen3-4B", 36, 2560, 101.0),
    ModelPreset("Llama-3.1-8B", 32, 4096, 218.0),
)}

HARDWARE: dict[str, HardwarePreset] = {p.name: p for p in (
    # The authors' implementation: 35.26 tok/s AR on Qwen3.5-4B = 28.4 ms / 32 layers = 0.886 ms per layer;
    # per-cycle costs from the n=8 breakdown: ctrl prepare+broadcast+post-recv+bookkeeping+sync ~0.9 ms,
    # verify 0.43 ms, hidden-state send ~0.15 ms, worker start after control ~0.2 ms; PDM 3.5 ms / 3 layers.
    HardwarePreset("H100, HF eager (published implementation)", 0.886, 2.3, 0.15, 0.20, 0.43, 0.90, 1.2,
                   "launch-bound: ~0.9 ms per layer whatever the model size"),
    # CUDA graphs: one d=2560 layer replays in 86 us (~2.3 TB/s); NCCL send of a hidden state between two
    # NVLink H100s ~35-39 us one way (SPEC.md 3). Controller costs assumed small once graphed.
    HardwarePreset("H100, CUDA graphs + NVLink", 0.02, 2.3, 0.037, 0.01, 0.10, 0.15, 1.0,
                   "memory-bound: layer time = layer weights / 2.3 TB/s"),
    # Same stack with stages spread over nodes: a hop over InfiniBand is ~10x an NVLink hop (assumed).
    HardwarePreset("H100, CUDA graphs, across nodes", 0.02, 2.3, 0.35, 0.01, 0.10, 0.15, 1.0,
                   "every hop crosses the network (assumed 0.35 ms)"),
)}

# Calibrated profiles (`spd calibrate`, docs/calibration.md) offered as hardware presets: label -> file.
# The published implementation's profile is reconciled to its wall clock (compute x0.899, fixed x0.821),
# so at n=8 / L_s=3 it reproduces the published 2.53x where the hand-made preset above gives ~2.33x.
PROFILE_PRESETS: dict[str, Path] = {
    "Calibrated profile: published implementation, H100 HF eager (profiles/published_qwen35_4b.json)":
        ROOT / "profiles" / "published_qwen35_4b.json",
    # Our executor (fused kernels, CUDA graphs, one process per GPU), measured in sessions 4-5 at n = 2-4.
    "Calibrated profile: this executor, 4x H200 NVLink (profiles/h200x4_full_traces.json)":
        ROOT / "profiles" / "h200x4_full_traces.json",
}
PROFILE_NOTE = ("from a calibrated profile (sim.calibration.profile_to_scenario): stage forwards, hop, draft path, "
                "verify and controller costs as the profile models them at the current stages n and draft layers L_s; "
                "the draft path has a constant, so 'draft layer time' is the draft path at this L_s divided by L_s, "
                "and verify / controller costs grow with n. Re-select the preset after changing n or L_s to refresh them.")

DEFAULT_MODEL = "Qwen3.5-4B (published target)"
DEFAULT_HARDWARE = "H100, HF eager (published implementation)"
GENERIC_ALPHA = 0.8
GENERIC_EAGLE3_ALPHA = 0.7
GENERIC_PPSD_ALPHA = 0.6


def hardware_names() -> list[str]:
    return list(HARDWARE) + list(PROFILE_PRESETS)


def hardware_note(hardware_name: str) -> str:
    if hardware_name in HARDWARE:
        return HARDWARE[hardware_name].note
    check = _profile(str(PROFILE_PRESETS[hardware_name])).source.get("self_check")
    if not check:
        return PROFILE_NOTE
    from sim.calibration.validate import self_check_line

    return PROFILE_NOTE + f" How far off this profile was on its own runs ({self_check_line(check)})."


@lru_cache(maxsize=8)
def _profile(path: str):
    from sim.calibration.profile import load_profile

    return load_profile(path)


@lru_cache(maxsize=256)
def profile_timings(path: str, model_name: str, stages: int, draft_layers: int) -> dict[str, float]:
    """The What-if timing knobs of a calibrated profile for one model preset at (n, L_s), through the
    package's profile -> scenario mapping (`calibrated_method`, constant spread = the means)."""
    from sim.calibration.profile_to_scenario import calibrated_method, resolve_shape

    prof, m = _profile(path), MODELS[model_name]
    short = model_name.split(" (")[0]
    shape, _ = resolve_shape(prof, m.layers, short, m.hidden_size)
    src = f"pdm@{short}" if f"pdm@{short}" in prof.draft else None  # per-model draft fit where the profile has one
    n = max(2, min(int(stages), m.layers))
    cal = calibrated_method(prof, shape, "spd", stages=n, draft_layers=int(draft_layers), draft_source=src,
                            spread="constant")
    t, spec = cal.scenario.timing, cal.scenario.methods[0]
    layer = t.mean_ms("layer")
    fwd0 = spec.stage_forward_ms[0].mean_ms  # k x layer + per-forward constant (+ send on non-last stages)
    return {"layer_ms": layer, "draft_layer_ms": t.mean_ms("draft_layer"), "hop_ms": t.mean_ms("hop"),
            "stage_overhead_ms": max(fwd0 - spec.split[0] * layer, 0.0), "verify_ms": t.mean_ms("verify"),
            "cycle_overhead_ms": t.mean_ms("cycle_overhead")}


def knob_defaults(model_name: str, hardware_name: str, stages: int = 8, draft_layers: int = 3) -> dict[str, float | int]:
    """Slider values a (model, hardware) pair starts from; keys are the What-if knob names. A profile
    preset's timings depend on (stages, draft_layers): the knobs' current values."""
    m = MODELS[model_name]
    alphas = {
        "alpha_spd": m.alpha_spd if m.alpha_spd is not None else GENERIC_ALPHA,
        "alpha_eagle3": m.alpha_eagle3 if m.alpha_eagle3 is not None else GENERIC_EAGLE3_ALPHA,
        "alpha_ppsd": m.alpha_ppsd if m.alpha_ppsd is not None else GENERIC_PPSD_ALPHA,
    }
    if hardware_name in PROFILE_PRESETS:
        t = profile_timings(str(PROFILE_PRESETS[hardware_name]), model_name, int(stages), int(draft_layers))
        return {"layers": m.layers, **{k: round(v, 3) for k, v in t.items()}, **alphas}
    h = HARDWARE[hardware_name]
    layer_ms = h.layer_ms(m)
    return {
        "layers": m.layers,
        "layer_ms": round(layer_ms, 3),
        "draft_layer_ms": round(layer_ms * h.draft_layer_factor, 3),
        "hop_ms": h.hop_ms,
        "stage_overhead_ms": h.stage_overhead_ms,
        "verify_ms": h.verify_ms,
        "cycle_overhead_ms": h.cycle_overhead_ms,
        "alpha_spd": m.alpha_spd if m.alpha_spd is not None else GENERIC_ALPHA,
        "alpha_eagle3": m.alpha_eagle3 if m.alpha_eagle3 is not None else GENERIC_EAGLE3_ALPHA,
        "alpha_ppsd": m.alpha_ppsd if m.alpha_ppsd is not None else GENERIC_PPSD_ALPHA,
    }
