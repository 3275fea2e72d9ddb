"""The bundled samples ingest cleanly, and each holds facts that retrieval finds in the right file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import REPO_ROOT, Settings

SAMPLES = REPO_ROOT / "samples"


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory, embeddings):
    from ingest.sync import sync
    from vectorstore import Store

    root = tmp_path_factory.mktemp("samples")
    docs = root / "documents"
    shutil.copytree(SAMPLES, docs, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    settings = Settings(_env_file=None, data_dir=root / "data", model_cache_dir=root / "models")
    summary = sync(settings, [docs], embeddings=embeddings)
    store = Store.open(settings)
    yield summary, store
    store.close()


def test_every_sample_ingests(sample_index):
    summary, store = sample_index
    assert summary.failed == []
    assert sorted(d.source for d in store.documents()) == [
        "backend-cheat-sheet.docx", "docchat-guide.md", "faq.html", "privacy-and-data.pdf",
    ]


@pytest.mark.parametrize("question, source, page", [
    ("Who last reviewed the FAQ page?", "faq.html", None),
    ("Which file holds the key that signs the index manifest?", "privacy-and-data.pdf", 2),
    ("What URL should OPENAI_BASE_URL have for transformers serve on port 8000?", "backend-cheat-sheet.docx", None),
    ("How long does the first start take to convert the chat model?", "docchat-guide.md", None),
])
def test_each_sample_answers_its_own_question(sample_index, embeddings, question, source, page):
    _, store = sample_index
    [best] = store.search(embeddings.embed_query(question), k=1)
    assert best.source == source, best.text
    if page is not None:
        assert best.page == page


def test_make_samples_regenerates_the_binary_samples(tmp_path):
    script = tmp_path / "make_samples.py"
    shutil.copy(SAMPLES / "make_samples.py", script)
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    assert (tmp_path / "privacy-and-data.pdf").read_bytes() == (SAMPLES / "privacy-and-data.pdf").read_bytes()
    assert (tmp_path / "backend-cheat-sheet.docx").stat().st_size > 20_000
