"""Calibration: executor traces, measured against what the package predicts. Pick a trace set (a folder of
run directories) or upload trace.jsonl files."""
import os
from pathlib import Path

import streamlit as st

from app import calibration_view, ui

# Where committed trace sets are looked for: $SPD_TRACE_SETS, else traces/ (the committed CPU, H100 and
# 4x H200 sets), data/traces and tests/data beside the app.
ROOT = Path(__file__).resolve().parents[2]
SEARCH = [Path(os.environ["SPD_TRACE_SETS"])] if os.environ.get("SPD_TRACE_SETS") else [
    ROOT / "traces", ROOT / "data" / "traces", ROOT / "tests" / "data"]
DEFAULT_SET = "traces/h100x4_2gpu_s8"


LOO = "each run from the other configurations (leave one out)"


@st.cache_data(show_spinner="Fitting and predicting...")
def _folder_frames(folder: str, profile: str | None):
    runs = calibration_view.load_folder(folder)
    return (*calibration_view.validation_frame(runs, profile=profile), calibration_view.measured_frame(runs))


@st.cache_data(show_spinner="Fitting and predicting (leave one configuration out)...", max_entries=16)
def _upload_frames(files: tuple[tuple[str, bytes], ...]):
    runs = [calibration_view.load_uploaded(n, b) for n, b in files]
    return (*calibration_view.validation_frame(runs), calibration_view.measured_frame(runs))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


st.title("Calibration: measured runs against the model")
st.caption("Traces written by `spd run` (format spd-trace v1, docs/traces.md). Each run is predicted by a profile "
           "fitted on the runs of every other configuration (`sim.calibration.validate.validate_runs`, as "
           "`spd validate`), or by a committed profile (`spd validate --profile`): its own accept/reject sequence "
           "replayed through the simulator. `--trace cycle` runs "
           "cannot be fitted: they are only predicted (from the fittable runs of the other configurations); a "
           "configuration run at both trace levels gives the profile the cost of full tracing, which the "
           "prediction of an uninstrumented run takes off.")

sets = {}
for base in SEARCH:
    sets.update({f"{base.name}/{k}": v for k, v in calibration_view.trace_sets(base).items()})
source = st.radio("Traces", ["Committed trace set", "Upload trace files"], horizontal=True, key="cal_source",
                  index=0 if sets else 1)
frames = None
with ui.input_errors():
    if source == "Committed trace set":
        if not sets:
            st.warning(f"No trace sets found under {', '.join(str(s) for s in SEARCH)}; upload trace files instead.")
        else:
            names = list(sets)
            name = st.selectbox("Trace set", names, key="cal_set",
                                index=names.index(DEFAULT_SET) if DEFAULT_SET in names else 0)
            profiles = {p.relative_to(ROOT).as_posix(): p for p in sorted((ROOT / "profiles").glob("*.json"))}
            how = st.selectbox("Predict", [LOO] + [f"every run from {k}" for k in profiles], key="cal_profile",
                               help="A profile fitted elsewhere (other GPUs, another host) forecasts runs it never "
                                    "saw, as `spd validate --profile`; leave-one-out fits on the set itself.")
            chosen = None if how == LOO else str(profiles[how.removeprefix("every run from ")])
            frames = _folder_frames(str(sets[name]), chosen)
    else:
        files = st.file_uploader("trace.jsonl files, plain, .xz or .gz (one per run; include an AR run for speedups)",
                                 accept_multiple_files=True, key="cal_upload")
        if files:
            frames = _upload_frames(tuple((f.name, f.getvalue()) for f in files))
        else:
            st.info("Upload trace files from `spd run --out DIR` (DIR/trace.jsonl, or compressed with xz or gzip).")

if frames is not None:
    val, summary, acc = frames
    c = st.columns(4)
    c[0].metric("runs", f"{summary['runs']}")
    c[1].metric("predicted", f"{summary['predicted']}",
                help="Runs with a prediction; the notes column says why the others have none.")
    c[2].metric("median |error|", _pct(summary["median_abs_rel_error"]),
                help="Relative error of the predicted speedup over AR where the set has a measured AR run of the "
                     "same shape, else of tokens/s (as `spd validate`).")
    c[3].metric("max |error|", _pct(summary["max_abs_rel_error"]))
    if summary.get("repeats"):
        st.caption(f"Noise floor: {summary['repeats']}.")
    if summary.get("configurations"):
        st.caption(f"Per configuration: {summary['configurations']}.")
    if summary.get("profile_mismatch"):
        st.caption("The profile was measured on another machine/software stack: "
                   + "; ".join(summary["profile_mismatch"]) + ".")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(calibration_view.validation_scatter(val, "speedup"), width="stretch",
                        key="validation_speedup_chart", config={"displaylogo": False})
    with right:
        st.plotly_chart(calibration_view.validation_scatter(val, "tokens_per_s"), width="stretch",
                        key="validation_tokens_chart", config={"displaylogo": False})
    st.dataframe(val.drop(columns=["label"]), hide_index=True, width="stretch", key="validation_table", column_config={
        "measured_tokens_per_s": st.column_config.NumberColumn("measured tok/s", format="%.1f"),
        "predicted_tokens_per_s": st.column_config.NumberColumn("predicted tok/s (simulator)", format="%.1f"),
        "error_tokens_per_s_pct": st.column_config.NumberColumn("tok/s error (%)", format="%+.1f"),
        "measured_speedup": st.column_config.NumberColumn("measured speedup (x)", format="%.3f"),
        "predicted_speedup": st.column_config.NumberColumn("predicted speedup (x)", format="%.3f"),
        "error_speedup_pct": st.column_config.NumberColumn("speedup error (%)", format="%+.1f"),
        "closed_form_speedup": st.column_config.NumberColumn("closed form speedup (x)", format="%.3f"),
        "trained_on_runs": st.column_config.NumberColumn("fitted on (runs)"),
    })
    if summary.get("configuration_table") is not None:
        with st.expander("Each configuration's mean over its repeats (what `spd validate --per-configuration` bounds)"):
            st.dataframe(summary["configuration_table"], hide_index=True, width="stretch", key="configuration_table", column_config={
                "label": "configuration", "trace_level": "trace", "unit": "error of",
                "measured_mean": st.column_config.NumberColumn("measured mean", format="%.3f"),
                "predicted_mean": st.column_config.NumberColumn("predicted mean", format="%.3f"),
                "rel_error": st.column_config.NumberColumn("error (%)", format="%+.1f"),
                "spread": st.column_config.NumberColumn("repeat spread, tok/s (%)", format="%.1f"),
            })
    with st.expander("Acceptance accounting: the executor's cycle counts against the exact closed form"):
        spd = acc.dropna(subset=["accept_length_measured"])
        if len(spd):
            err = spd["accept_length_error_pct"].abs()
            st.caption(f"{len(spd)} SPD runs; accept length n·N/K measured vs closed form at the measured alpha: "
                       f"median |error| {err.median():.2f} %, worst {err.max():.2f} %.")
            st.dataframe(acc.drop(columns=["label"]), hide_index=True, width="stretch", key="accept_table",
                         column_config={
                "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.1f"),
                "speedup_vs_ar": st.column_config.NumberColumn("measured speedup vs AR (x)", format="%.3f"),
                "alpha_measured": st.column_config.NumberColumn("alpha (measured)", format="%.3f"),
                "accept_length_measured": st.column_config.NumberColumn("L_acc measured", format="%.3f"),
                "accept_length_predicted": st.column_config.NumberColumn("L_acc predicted", format="%.3f"),
                "accept_length_error_pct": st.column_config.NumberColumn("error (%)", format="%+.2f"),
            })
            st.plotly_chart(calibration_view.scatter_figure(acc), width="stretch", key="calibration_chart",
                            config={"displaylogo": False})
        else:
            st.info("No SPD run in this set: nothing to compare with the closed form.")
