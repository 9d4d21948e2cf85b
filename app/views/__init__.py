"""Dashboard pages, run by st.navigation from app/main.py (not a `pages/` folder: Streamlit would also auto-discover that one as a legacy multipage app)."""
