"""Entry point of the dashboard (`spd dashboard` runs `streamlit run app/main.py`).

Multipage via st.navigation: the scenario knobs live in the sidebar, drawn here for the pages that
use them (What-if, Timeline) and kept in session state across all pages.
"""
import streamlit as st

from app import ui

st.set_page_config(page_title="SPD lab: what-if dashboard", page_icon=":material/fast_forward:", layout="wide")

PAGES = [
    st.Page("views/whatif.py", title="What-if", icon=":material/tune:", default=True),
    st.Page("views/timeline.py", title="Timeline", icon=":material/view_timeline:"),
    st.Page("views/calibration.py", title="Calibration", icon=":material/fact_check:"),
    st.Page("views/published.py", title="Published", icon=":material/table_chart:"),
]
SCENARIO_PAGES = {"What-if", "Timeline"}

page = st.navigation(PAGES)
ui.page_style()
ui.init_state()
if page.title in SCENARIO_PAGES:
    ui.sidebar_knobs()
page.run()
