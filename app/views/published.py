"""Published: the paper's theoretical table regenerated through the predict path, and the forecast
of held-out rows from the others (sim.reproduce)."""
import streamlit as st

from app import published_view, ui
from sim import reproduce


@st.cache_data(show_spinner=False)
def _load(tokens: int | None):
    data, path = reproduce.load_published()
    return (str(path), published_view.round_trip_frame(data, tokens), published_view.forecast_frame(data, tokens),
            published_view.summary_frame(data, tokens), reproduce.verdict(reproduce.forecast(data, tokens)))


st.title("Published: the SPD paper's tables, reproduced")
steady = st.toggle("Steady-state accounting (ignore the n-1 fill cycles of a 512-token generation)", value=False,
                   key="published_steady")
with ui.input_errors():
    path, rt, fc, summary, verdict = _load(None if steady else reproduce.DEFAULT_TOKENS)
st.caption(f"Source: `{path}`. Each published theoretical number is converted to a per-draft acceptance alpha and "
           "pushed back through the scenario parser and the closed form (a check of the accounting, not evidence).")

c = st.columns(3)
c[0].metric("published numbers regenerated", f"{len(rt)}")
c[1].metric("max |regenerated - published|", f"{rt['error'].abs().max():.1e}x")
c[2].metric("rows forecast out of sample", f"{len(fc)}")

tab_table, tab_forecast = st.tabs(["Theoretical table", "Out-of-sample forecast"])
with tab_table:
    f = st.columns(3)
    model = f[0].selectbox("Model", sorted(rt["model"].unique()), key="pub_model")
    temp = f[1].selectbox("Temperature", sorted(rt["temperature"].unique()), key="pub_temperature")
    mix = f[2].selectbox("Training mix", sorted(rt["training_mix"].unique()), key="pub_mix")
    view = published_view.table_view(rt, model, temp, mix)
    if view.empty:
        st.warning("No published rows for this combination.")
    else:
        st.dataframe(view, hide_index=True, width="stretch",
                     column_config={d: st.column_config.NumberColumn(d, format="%.2fx") for d in reproduce.DATASETS})
    with st.expander("Every entry with the alpha behind it"):
        st.dataframe(rt, hide_index=True, width="stretch")
with tab_forecast:
    st.markdown("Acceptance-vs-depth models fitted on some rows predict the held-out ones: EAGLE-3 m=15 from m=3 and "
                "m=7 (geometric decay of per-position acceptance), SPD and PPSD n=16 from n=4 and n=8 (alpha linear "
                "in log2 n). *Constant acceptance* is the baseline that assumes acceptance does not change with depth.")
    st.plotly_chart(published_view.forecast_figure(fc), width="stretch", key="forecast_chart", config={"displaylogo": False})
    st.dataframe(summary, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(k, format="%.3f") for k in summary.columns if k not in ("method", "count")})
    for line in verdict:
        st.markdown(f"- {line}")
    with st.expander("Every forecast"):
        st.dataframe(fc, hide_index=True, width="stretch")
