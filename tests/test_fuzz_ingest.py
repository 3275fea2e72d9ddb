"""Small versions of the two hardening benches, as slow tests: the figures must stay at zero.

``bench/fuzz_ingest.py`` (mutated files of every format through the per-file ingest path) and
``bench/killloop.py`` (kill -9 inside the commit window and during ``--full``) run here with a
few inputs each; run the scripts themselves for the full figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import fuzz_ingest  # noqa: E402
import killloop  # noqa: E402


@pytest.mark.slow
def test_fuzzed_files_never_hang_or_crash_the_ingest():
    figures = fuzz_ingest.fuzz(inputs=120, seed=3, timeout_s=10)
    assert figures["inputs"] == 120
    assert (figures["hangs"], figures["crashes"]) == (0, 0), figures
    assert figures["parsed"] > 0 and figures["refused"] > 0  # the mutations reach both outcomes


@pytest.mark.slow
def test_kill_9_in_the_commit_window_and_during_full_never_loses_the_index(tmp_path):
    figures = killloop.run(trials=12, seed=5, work=tmp_path, quiet=True)
    assert figures["trials"] == 12 and figures["full"] == 6
    assert (figures["inconsistent"], figures["no_index"], figures["not_repaired"]) == (0, 0, 0), figures
