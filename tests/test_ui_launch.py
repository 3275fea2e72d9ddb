"""`docchat chat`: its options, the Streamlit command it runs, and the first-run samples."""

from __future__ import annotations

import pytest

from app.cli import build_parser
from app.ui import launch


def chat_args(*argv):
    return build_parser().parse_args(["chat", *argv])


def test_the_streamlit_command_serves_the_page_headless_on_the_chosen_port(settings):
    command = launch.streamlit_command(settings, chat_args("--port", "8765", "--no-browser"))
    assert command[1:5] == ["-m", "streamlit", "run", str(launch.PAGE)]
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.port"] == "8765"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.address"] == "localhost"  # not reachable from other machines
    assert command[-3:] == ["--", "--env-file", ".env"]  # the page loads the same settings


def test_default_port_is_8501(settings):
    command = launch.streamlit_command(settings, chat_args())
    assert command[command.index("--server.port") + 1] == "8501"


def test_sample_files_are_documents_only():
    names = {p.name for p in launch.sample_files()}
    assert names, "the repository bundles sample documents"
    assert "make_samples.py" not in names
    assert {p.suffix for p in launch.sample_files()} >= {".md", ".pdf", ".html", ".docx"}


@pytest.mark.slow
def test_first_run_copies_and_ingests_the_samples_once(settings, capsys):
    from vectorstore import Store

    assert launch.needs_samples(settings)
    count = launch.seed_samples(settings)
    assert count == len(launch.sample_files())
    assert sorted(p.name for p in settings.docs_path.iterdir()) == sorted(p.name for p in launch.sample_files())
    documents = Store.open(settings).documents()
    assert len(documents) == count and all(d.chunks > 0 for d in documents)
    assert "First run" in capsys.readouterr().out
    assert not launch.needs_samples(settings)  # next start: the index is there, nothing is added


def test_no_samples_when_the_user_has_documents(settings):
    settings.docs_path.mkdir(parents=True)
    (settings.docs_path / "mine.md").write_text("# Mine")
    assert not launch.needs_samples(settings)


@pytest.mark.slow
def test_the_chat_model_is_prepared_before_the_page_starts(tmp_path, capsys, monkeypatch):
    """A first start converts the packaged chat model and exports the embedding model to ONNX in
    the launcher, saying so, so that the first upload or question does not wait; a second start
    has nothing to do."""
    from app.config import load_settings
    from tests.servers import closed_port_url

    monkeypatch.setenv("DOCCHAT_MODEL_CACHE_DIR", str(tmp_path / "fresh-models"))
    monkeypatch.setenv("OLLAMA_HOST", closed_port_url())
    settings = load_settings(env_file=None)
    launch.prepare_models(settings)
    first = capsys.readouterr().out
    assert "Preparing the chat model" in first and "Chat model ready" in first
    assert "Preparing the embedding model" in first and "Embedding model ready" in first
    assert "Answers by SmolLM2-135M-Instruct (embedded" in first and "a larger model answers better" in first
    assert list((tmp_path / "fresh-models").glob("*/config.json"))
    launch.prepare_models(settings)
    assert "Preparing" not in capsys.readouterr().out
