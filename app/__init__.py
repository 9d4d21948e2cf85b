"""Streamlit what-if dashboard (`spd dashboard`). Pages call the `sim` package; no formulas live here."""
