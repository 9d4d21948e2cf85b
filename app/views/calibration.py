"""Calibration: executor traces, measured against what the package predicts. Pick a trace set (a folder of
run directories) or upload trace.jsonl files."""
import os
from pathlib import Path

import streamlit as st

from app import calibration_view, ui

# Where committed trace sets are looked for: $SPD_TRACE_SETS, else data/traces and tests/data beside the app.
ROOT = Path(__file__).resolve().parents[2]
SEARCH = [Path(os.environ["SPD_TRACE_SETS"])] if os.environ.get("SPD_TRACE_SETS") else [ROOT / "data" / "traces", ROOT / "tests" / "data"]


@st.cache_data(show_spinner=False)
def _folder_frame(folder: str):
    return calibration_view.measured_frame(calibration_view.load_folder(folder))


@st.cache_data(show_spinner=False, max_entries=32)
def _upload_frame(files: tuple[tuple[str, bytes], ...]):
    return calibration_view.measured_frame([calibration_view.load_uploaded(n, b) for n, b in files])


st.title("Calibration: measured runs against the model")
st.caption("Traces written by `spd run` (format spd-trace v1, docs/traces.md), read with sim.traces and "
           "sim.calibration.extract. Per SPD run the executor's cycle count gives the measured accept length "
           "n·N/K; the closed form at the run's measured acceptance predicts it.")

sets = {}
for base in SEARCH:
    sets.update({f"{base.name}/{k}": v for k, v in calibration_view.trace_sets(base).items()})
source = st.radio("Traces", ["Committed trace set", "Upload trace files"], horizontal=True, key="cal_source",
                  index=0 if sets else 1)
df = None
with ui.input_errors():
    if source == "Committed trace set":
        if not sets:
            st.warning(f"No trace sets found under {', '.join(str(s) for s in SEARCH)}; upload trace files instead.")
        else:
            name = st.selectbox("Trace set", list(sets), key="cal_set")
            df = _folder_frame(str(sets[name]))
    else:
        files = st.file_uploader("trace.jsonl files (one per run; include an AR run for speedups)",
                                 accept_multiple_files=True, key="cal_upload")
        if files:
            df = _upload_frame(tuple((f.name, f.getvalue()) for f in files))
        else:
            st.info("Upload one or more trace.jsonl files from `spd run --out DIR` (DIR/trace.jsonl).")

if df is not None:
    spd = df.dropna(subset=["accept_length_measured"])
    c = st.columns(4)
    c[0].metric("runs", f"{len(df)}")
    c[1].metric("SPD runs compared", f"{len(spd)}")
    if len(spd):
        err = spd["accept_length_error_pct"].abs()
        c[2].metric("median |error|, accept length", f"{err.median():.2f} %")
        c[3].metric("worst |error|, accept length", f"{err.max():.2f} %")
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(df.drop(columns=["label"]), hide_index=True, width="stretch", column_config={
            "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.1f"),
            "speedup_vs_ar": st.column_config.NumberColumn("measured speedup vs AR (x)", format="%.3f"),
            "alpha_measured": st.column_config.NumberColumn("alpha (measured)", format="%.3f"),
            "accept_length_measured": st.column_config.NumberColumn("L_acc measured", format="%.3f"),
            "accept_length_predicted": st.column_config.NumberColumn("L_acc predicted", format="%.3f"),
            "accept_length_error_pct": st.column_config.NumberColumn("error (%)", format="%+.2f"),
        })
    with right:
        if len(spd):
            st.plotly_chart(calibration_view.scatter_figure(df), width="stretch", key="calibration_chart",
                            config={"displaylogo": False})
        else:
            st.info("No SPD run in this set: nothing to compare with the closed form.")
    st.caption("Wall-clock validation (a profile fitted on the other runs predicting each run's tokens/s, "
               "`spd validate`) will appear here once the calibration commands exist.")
