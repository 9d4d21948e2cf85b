"""Streamlit plumbing shared by the pages: the scenario knobs in the sidebar (kept across pages),
presets, cached calls into the package, and in-page error messages.

Only widget layout and caching live here; numbers come from `app.whatif_model` -> `sim`.
"""
from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import streamlit as st

from sim.errors import InputError

from . import acceptance_view, presets, whatif_model

# (key, label, min, max, step, format) for the float timing sliders; all per token at batch 1.
TIMING_SLIDERS = (
    ("layer_ms", "Target layer time (ms per layer)", 0.001, 3.0, 0.001, "%.3f ms"),
    ("draft_layer_ms", "Draft layer time (ms per draft layer)", 0.001, 3.0, 0.001, "%.3f ms"),
    ("hop_ms", "Hop latency (ms per hidden-state send)", 0.0, 2.0, 0.001, "%.3f ms"),
    ("stage_overhead_ms", "Per-stage overhead (ms per stage forward)", 0.0, 1.0, 0.01, "%.2f ms"),
    ("verify_ms", "Verify: norm + LM head + decision (ms per cycle)", 0.0, 2.0, 0.01, "%.2f ms"),
    ("cycle_overhead_ms", "Controller overhead: control, bookkeeping, sync (ms per cycle)", 0.0, 5.0, 0.01, "%.2f ms"),
)
KNOB_KEYS = tuple(f.name for f in whatif_model.Knobs.__dataclass_fields__.values()) + (
    "model", "hardware", "acc_source", "acc_dataset", "acc_temperature")
ACC_SLIDERS = "Sliders (no acceptance file)"
ACC_UPLOAD = "Upload an acceptance result file"
ACC_SOURCES = (ACC_SLIDERS, *acceptance_view.COMMITTED, ACC_UPLOAD)


# Denser than Streamlit's defaults: a research dashboard shows the chart above the fold at 1280x800.
_CSS = """<style>
[data-testid="stMainBlockContainer"] {padding-top: 2.2rem; padding-left: 2.5rem; padding-right: 2.5rem; max-width: 1500px;}
h1 {font-size: 1.75rem !important; padding-top: 0 !important;}
h2, h3 {font-size: 1.2rem !important;}
[data-testid="stMetricValue"] {font-size: 1.6rem;}
[data-testid="stSidebarUserContent"] {padding-top: 0.5rem;}
</style>"""


def page_style() -> None:
    st.html(_CSS)


def init_state() -> None:
    """Defaults on first load, and keep the knobs alive across pages.

    Streamlit drops a widget's state when a run does not draw it (e.g. on the Published page); writing
    each value back to itself marks it as user state, so it survives the page switch.
    """
    ss = st.session_state
    if "model" not in ss:
        ss["model"] = presets.DEFAULT_MODEL
        ss["hardware"] = presets.DEFAULT_HARDWARE
        for k, v in whatif_model.Knobs().as_dict().items():
            ss[k] = v
        ss.update(presets.knob_defaults(ss["model"], ss["hardware"]))
    for k in KNOB_KEYS:
        if k in ss:
            ss[k] = ss[k]


def _apply_presets() -> None:
    ss = st.session_state
    ss.update(presets.knob_defaults(ss["model"], ss["hardware"], ss.get("stages", 8), ss.get("draft_layers", 3)))


def sidebar_knobs() -> None:
    """The scenario controls (sidebar, shared by What-if and Timeline)."""
    sb = st.sidebar
    sb.header("Scenario")
    sb.selectbox("Model preset", list(presets.MODELS), key="model", on_change=_apply_presets,
                 help="Sets the layer count, layer times and (for the published targets) the acceptance.")
    sb.selectbox("Hardware preset", presets.hardware_names(), key="hardware", on_change=_apply_presets,
                 help=presets.hardware_note(st.session_state["hardware"]))
    if st.session_state["hardware"] in presets.PROFILE_PRESETS:
        sb.caption("Timings from a calibrated profile, evaluated at the n and L_s they were selected with "
                   "(re-select the preset to refresh after changing n or L_s).")
    sb.number_input("Target layers", min_value=1, max_value=256, step=1, key="layers")
    sb.slider("Pipeline stages n", 2, 32, key="stages", help="SPD needs n >= 2 and at most one stage per layer.")
    sb.slider("Draft layers L_s (PDM tower)", 1, 8, key="draft_layers")
    over = acceptance_controls(sb)
    sb.slider("SPD acceptance alpha (per draft)", 0.0, 1.0, step=0.01, key="alpha_spd",
              disabled="alpha_spd" in over,
              help="Per-draft conditional acceptance of SPD's one-token draft"
                   + (" (set by the acceptance file while it has this n)." if "alpha_spd" in over else "."))
    sb.toggle("Also SPD with speculative control", key="speculative_control",
              help="The controller sends the next GO before it verifies (spd run --speculative-control): a cycle "
                   "no longer waits for rank 0's head and verify, and a reject costs n cycles. Same alpha and "
                   "draft as SPD. Measured on 2 H100s at n=2: 1.77x at alpha 1.0, 1.29x at 0.8 (docs/executor.md).")
    with sb.expander("Baselines: EAGLE-3, PPSD, vanilla SD"):
        st.slider("EAGLE-3 acceptance alpha (per position)", 0.0, 1.0, step=0.01, key="alpha_eagle3")
        st.slider("EAGLE-3 draft steps m", 1, 16, key="eagle3_steps")
        st.slider("PPSD acceptance alpha", 0.0, 1.0, step=0.01, key="alpha_ppsd")
        st.slider("PPSD draft layers", 1, 8, key="ppsd_draft_layers")
        st.slider("Vanilla SD acceptance alpha", 0.0, 1.0, step=0.01, key="alpha_sd")
        st.slider("Vanilla SD drafts per round gamma", 1, 16, key="sd_gamma")
        st.slider("Vanilla SD draft/target cost ratio c", 0.0, 1.0, step=0.01, key="sd_cost_ratio")
    with sb.expander("Timings (ms)", expanded=True):
        for key, label, lo, hi, step, fmt in TIMING_SLIDERS:
            st.slider(label, lo, hi, step=step, format=fmt, key=key)


@st.cache_data(show_spinner=False, max_entries=4)
def acceptance_table(path: str) -> acceptance_view.AcceptanceTable:
    return acceptance_view.load_table(path)


@st.cache_data(show_spinner=False, max_entries=8)
def acceptance_upload(name: str, data: bytes) -> acceptance_view.AcceptanceTable:
    return acceptance_view.load_uploaded(name, data)


def acceptance_controls(sb) -> dict:
    """Acceptance from an `spd eval-acceptance` result file: per dataset and temperature, SPD's alpha at the
    chosen n (PPSD / EAGLE-3 where the file has them). Returns the knob overrides (also kept in session
    state for `current_knobs`); a bad file is one st.error line and the sliders stay in charge."""
    ss = st.session_state
    ss["_acc_overrides"], ss["_acc_desc"] = {}, None
    src = sb.selectbox("Acceptance source", ACC_SOURCES, key="acc_source",
                       help="Per-dataset measured acceptance (docs/acceptance-format.md) instead of the alpha sliders.")
    if src == ACC_SLIDERS:
        return {}
    table = None
    try:
        if src == ACC_UPLOAD:
            up = sb.file_uploader("Acceptance result file (spd eval-acceptance --out)", type=None, key="acc_upload")
            if up is None:
                sb.info("Upload a result file of `spd eval-acceptance`; until then the sliders are used.")
                return {}
            table = acceptance_upload(up.name, up.getvalue())
        else:
            table = acceptance_table(str(acceptance_view.COMMITTED[src]))
    except InputError as exc:
        sb.error(f"{exc}", icon=":material/error:")
        return {}
    if ss.get("acc_dataset") not in table.datasets:
        ss["acc_dataset"] = "overall" if "overall" in table.datasets else table.datasets[0]
    if ss.get("acc_temperature") not in table.temperatures:
        ss["acc_temperature"] = table.temperatures[0]
    ds = sb.selectbox("Dataset", table.datasets, key="acc_dataset")
    temp = sb.selectbox("Temperature", table.temperatures, key="acc_temperature", format_func=lambda t: f"T = {t:g}")
    choice = acceptance_view.choose(table, ds, temp, int(ss["stages"]), int(ss.get("eagle3_steps", 7)))
    for m in choice.messages:
        sb.warning(m, icon=":material/info:")
    if choice.overrides:
        used = ", ".join(f"{k.removeprefix('alpha_').upper()} {v:.3f}" for k, v in choice.overrides.items())
        ss["_acc_desc"] = f"alpha from {table.name} ({table.target}; {ds}, T = {temp:g}, n = {ss['stages']}): {used}"
        sb.caption(ss["_acc_desc"])
    ss["_acc_overrides"] = dict(choice.overrides)
    return choice.overrides


def current_knobs() -> whatif_model.Knobs:
    values = dict(st.session_state)
    values.update(st.session_state.get("_acc_overrides") or {})
    return whatif_model.Knobs.from_mapping(values)


@contextmanager
def input_errors():
    """Show bad input as one st.error line and stop the page (never a traceback)."""
    try:
        yield
    except InputError as exc:
        st.error(f"{exc}", icon=":material/error:")
        st.stop()


# --- cached calls (keyed by plain dicts so Streamlit can hash them) --------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def curves(knobs: dict) -> pd.DataFrame:
    return whatif_model.curves(whatif_model.Knobs(**knobs))


@st.cache_data(show_spinner=False, max_entries=256)
def point_table(knobs: dict) -> pd.DataFrame:
    return whatif_model.point_table(whatif_model.Knobs(**knobs))
