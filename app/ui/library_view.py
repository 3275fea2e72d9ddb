"""The Library page's script. A file rather than a function so that a link or a test
(AppTest.switch_page) can open it; the settings are the ones the entry page loaded."""

from app.ui import library_page
from app.ui.page_state import SETTINGS

import streamlit as st

if __name__ == "__main__":  # not in a spawned worker (see page.py)
    library_page.show(st.session_state[SETTINGS])
