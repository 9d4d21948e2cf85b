import streamlit as st
st.title('calibration')
st.info('coming soon')
