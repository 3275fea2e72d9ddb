"""`docchat --help` stays instant: building the CLI imports none of the heavy libraries."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "sentence_transformers", "faiss", "langchain_core", "streamlit", "pydantic_settings")


def test_building_the_cli_imports_no_heavy_library():
    code = (
        "import sys; from app.cli import build_parser; build_parser(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
