"""Session-state keys shared by the page scripts."""

SETTINGS = "docchat_settings"  # the Settings the entry page loaded on this run
