"""Timeline: the discrete-event simulator's pipeline timeline (one row per rank) for a short run of the
sidebar's scenario, SPD beside a baseline."""
import streamlit as st

from app import timeline_view, ui, whatif_model

BASELINES = {"Pipelined AR": "ar_pipeline", "PPSD": "ppsd", "AR (1 device)": "ar", "EAGLE-3": "eagle3", "Vanilla SD": "sd"}


@st.cache_data(show_spinner=False, max_entries=64)
def _run(knobs: dict, method: str, tokens: int, seed: int) -> timeline_view.TimelineRun:
    return timeline_view.run_timeline(whatif_model.Knobs(**knobs), method, tokens, seed)


st.title("Timeline: what the pipeline does, cycle by cycle")
st.caption("SimPy discrete-event simulation (sim.des, dataflow model) of a short run with the sidebar's scenario. "
           "Look for the fill (first n-1 cycles), the steady state with the draft module (orange, rank 0) running "
           "while the stages forward, and a reject (red x) followed by its n-1 refill cycles.")
c = st.columns([2, 1, 1])
baseline = c[0].selectbox("Baseline beside SPD", list(BASELINES), key="tl_baseline")
tokens = c[1].number_input("Committed tokens", min_value=4, max_value=200, value=24, step=4, key="tl_tokens",
                           help="Short runs keep the timeline readable.")
seed = c[2].number_input("Seed", min_value=0, max_value=10_000, value=3, step=1, key="tl_seed",
                         help="Acceptance draws; the same seed gives the same timeline.")

knobs = ui.current_knobs()
with ui.input_errors():
    runs = [_run(knobs.as_dict(), m, int(tokens), int(seed)) for m in ("spd", BASELINES[baseline])]
x_max = max(r.summary["time_ms"] for r in runs)

for run in runs:
    s = run.summary
    st.subheader(f"{run.label}" + (f" · n = {knobs.stages}" if run.method in whatif_model.PIPELINED else ""))
    m = st.columns(5)
    m[0].metric("time for the run", f"{s['time_ms']:.1f} ms")
    m[1].metric("tokens/s", f"{s['tokens_per_s']:.1f} tok/s")
    m[2].metric("speedup vs AR", f"{s['speedup_vs_ar']:.2f}x")
    m[3].metric("cycles / rounds", f"{s['cycles']}")
    m[4].metric("rejects", f"{s['rejects']}")
    phases = timeline_view.phase_counts(run.events)
    if phases:
        st.caption(" · ".join(f"{k}: {v} cycles" for k, v in phases.items()) + f" · simulator model: {s['model']}")
    st.plotly_chart(timeline_view.timeline_figure(run.events, x_max), width="stretch", key=f"timeline_{run.method}",
                    config={"displaylogo": False})
st.caption("Same time axis for both runs: the one that ends further left decodes the same tokens faster. "
           "`spd simulate SCENARIO.json --trace out.json` writes the full trace for https://ui.perfetto.dev.")
