"""What-if: speedup versus pipeline stages for SPD and its baselines on the sidebar's hardware."""
import json

import streamlit as st

from app import charts, ui, whatif_model

st.title("What-if: does SPD pay off on this hardware?")
st.caption("Closed-form model (sim.closed_form via the method registry). Speedup = decode tokens/s over "
           "single-device AR tokens/s; theoretical counts layer forwards only (the paper's accounting).")

knobs = ui.current_knobs()
if st.session_state.get("_acc_desc"):
    st.info(f"Measured acceptance: {st.session_state['_acc_desc']}.", icon=":material/dataset:")
with ui.input_errors():
    df = ui.curves(knobs.as_dict())
    table = ui.point_table(knobs.as_dict())
best = whatif_model.best_configuration(df)
exposed_from = whatif_model.draft_exposed_from(df)
spd = df[(df["method"] == "spd") & (df["stages"] == knobs.stages)].iloc[0]

c = st.columns(5)
c[0].metric("SPD predicted speedup", f"{spd['wallclock_speedup']:.2f}x",
            help="Wall-clock: tokens/s over single-device AR at the chosen stages and draft layers.")
c[1].metric("SPD tokens/s", f"{spd['tokens_per_s']:.1f} tok/s")
c[2].metric("SPD cycle", f"{spd['cycle_ms']:.2f} ms")
c[3].metric("SPD accept length L_acc", f"{spd['accept_length']:.2f}", help="n / (1 + (n-1)(1-alpha)), steady state")
c[4].metric("Draft module", "hidden" if bool(spd["draft_hidden"]) else "exposed",
            help="Hidden: the PDM (draft layers x draft layer time) finishes before the slowest stage + hop.")

show_theory = st.toggle("Show theoretical (layer-unit) curves, dotted", value=True, key="show_theoretical",
                        help="Solid: predicted wall-clock speedup. Dotted: the paper's layer-unit accounting. Click a legend entry to hide a method.")
st.plotly_chart(charts.speedup_figure(df, knobs.stages, best, exposed_from, show_theory),
                width="stretch", key="speedup_chart", config={"displaylogo": False})

where = f"n = {best.stages}" if best.stages else "one device"
st.success(f"Best on this hardware: **{best.label}** ({where}) at **{best.wallclock_speedup:.2f}x**, "
           f"{best.tokens_per_s:.1f} tok/s.", icon=":material/star:")
if exposed_from is not None:
    st.info(f"With {knobs.draft_layers} draft layers the draft module stops being hidden from n = {exposed_from} "
            "stages on (shaded): a stage is then faster than the draft, and the draft sets the cycle.",
            icon=":material/visibility:")
else:
    st.info("The draft module stays hidden behind the stage forward at every stage count shown.",
            icon=":material/visibility_off:")


st.subheader(f"All methods at n = {knobs.stages}, L_s = {knobs.draft_layers}")
st.dataframe(
    table, hide_index=True, width="stretch",
    column_config={
        "name": "method",
        "theoretical_speedup": st.column_config.NumberColumn("theoretical (x)", format="%.2f"),
        "wallclock_speedup": st.column_config.NumberColumn("predicted wall-clock (x)", format="%.2f"),
        "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.1f"),
        "cycle_ms": st.column_config.NumberColumn("cycle / round (ms)", format="%.2f"),
        "accept_length": st.column_config.NumberColumn("tokens per cycle-equivalent", format="%.2f"),
        "alpha": st.column_config.NumberColumn("alpha", format="%.2f"),
    },
)
st.download_button("Download this scenario (JSON for `spd predict` / `spd simulate`)",
                   json.dumps(whatif_model.scenario_dict(knobs), indent=1), file_name="whatif_scenario.json",
                   mime="application/json")
