"""`docchat doctor` through the real CLI: what it shows and its exit status, good and broken."""

from __future__ import annotations

import json
import shutil

import pytest

from app.cli import main
from tests.servers import OllamaStandIn, ServedModel, closed_port_url, refusing_openai  # noqa: F401

SECRET = "sk-test-DO-NOT-LEAK-0987654321"


@pytest.fixture
def ollama_with_llama():
    """An Ollama stand-in that lists llama3.2 (names only: the doctor asks, it does not chat)."""
    server = OllamaStandIn([ServedModel("llama3.2:latest", ["completion", "tools"])]).start()
    yield server
    server.stop()


def doctor(capsys, *args) -> tuple[int, str]:
    code = main(["doctor", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.slow
def test_default_configuration_passes_and_says_to_ingest(capsys, isolated_env):
    code, out = doctor(capsys)
    assert code == 0, out
    assert "huggingface · SmolLM2-135M-Instruct" in out
    assert "ok   LLM answers" in out
    assert "sentence-transformers/all-MiniLM-L6-v2 · 384 dimensions" in out and "onnx fp32 (onnxruntime" in out
    assert "no index yet" in out and "docchat ingest" in out
    assert str(isolated_env / "data") in out
    assert "torch 2.13.0" in out and "transformers" in out and "python 3.11" in out
    assert "warn Answers by" in out and "SmolLM2-135M-Instruct (embedded" in out
    assert "a larger model answers better" in out and "DOCCHAT_LLM_BACKEND=ollama" in out


def test_the_embedded_model_advice_shows_the_line_that_switches_to_a_local_ollama(settings, monkeypatch):
    from app.backends.advice import model_advice
    from app.config import load_settings

    server = OllamaStandIn([ServedModel("nomic-embed-text:latest", ["embedding"]),
                            ServedModel("llama3.2:latest", ["completion", "tools"])]).start()
    try:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        advice = model_advice(load_settings(env_file=None))
    finally:
        server.stop()
    assert advice.small and advice.switch == "DOCCHAT_LLM_BACKEND=ollama DOCCHAT_LLM_MODEL=llama3.2:latest"
    assert server.url in advice.advice and "nomic-embed-text" not in advice.advice  # embedding models cannot chat


def test_no_ollama_server_gives_the_settings_for_a_larger_model(settings, monkeypatch):
    from app.backends.advice import model_advice
    from app.config import load_settings

    monkeypatch.setenv("OLLAMA_HOST", closed_port_url())
    advice = model_advice(load_settings(env_file=None))
    assert advice.small and advice.switch is None
    assert "DOCCHAT_LLM_BACKEND=ollama" in advice.advice and "OPENAI_BASE_URL" in advice.advice
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    assert not model_advice(load_settings(env_file=None)).small  # a chosen server model: no advice


def test_ollama_configuration_passes_when_the_model_is_pulled(capsys, monkeypatch, ollama_with_llama):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", ollama_with_llama.url)
    code, out = doctor(capsys)
    assert code == 0, out
    assert f"LLM on the Ollama server at {ollama_with_llama.url}" in out
    assert "llama3.2 is pulled" in out


def test_ollama_model_not_pulled_fails_with_the_pull_command(capsys, monkeypatch, ollama_with_llama):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("DOCCHAT_LLM_MODEL", "mistral")
    monkeypatch.setenv("OLLAMA_HOST", ollama_with_llama.url)
    code, out = doctor(capsys)
    assert code == 1
    assert "FAIL LLM model" in out and "ollama pull mistral" in out


def test_unreachable_openai_server_fails_and_never_prints_the_key(capsys, monkeypatch):
    url = closed_port_url() + "/v1"
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code, out = doctor(capsys)
    assert code == 1
    assert "FAIL OpenAI server" in out and url in out and "OPENAI_BASE_URL" in out
    assert "Some checks failed" in out
    assert SECRET not in out


def test_rejected_key_fails_as_json_without_the_key(capsys, monkeypatch, refusing_openai):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", refusing_openai.url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code, out = doctor(capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    failed = {c["name"]: c for c in report["checks"] if c["status"] == "fail"}
    assert "401" in failed["OpenAI server"]["detail"]
    assert "OPENAI_API_KEY" in failed["OpenAI server"]["fix"]
    assert SECRET not in out


def test_missing_openai_key_fails_with_the_variable_to_set(capsys, monkeypatch):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "openai")
    code, out = doctor(capsys)
    assert code == 1
    assert "FAIL OpenAI key" in out and "OPENAI_API_KEY" in out


def test_unloadable_embedding_model_fails(capsys, monkeypatch, ollama_with_llama):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", ollama_with_llama.url)
    monkeypatch.setenv("DOCCHAT_EMBEDDING_MODEL", "/no/such/model/folder")
    code, out = doctor(capsys)
    assert code == 1
    assert "FAIL Embeddings" in out and "DOCCHAT_EMBEDDING_MODEL" in out


def test_invalid_setting_stops_before_any_check(capsys, monkeypatch):
    monkeypatch.setenv("DOCCHAT_K", "many")
    code, out = doctor(capsys)
    assert code == 2
    assert "DOCCHAT_K='many' is not valid" in out
    assert "LLM" not in out


def test_index_size_is_reported(capsys, monkeypatch, isolated_env, ollama_with_llama, embeddings):
    from app.config import load_settings
    from ingest.sync import sync

    folder = isolated_env / "notes"
    folder.mkdir()
    (folder / "heron.md").write_text("# Mascot\n\nThe docchat mascot is a purple heron named Ada.\n")
    (folder / "tea.md").write_text("# Tea\n\nThe team drinks jasmine tea on Fridays.\n")
    sync(load_settings(env_file=None), [folder], embedder=embeddings)

    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", ollama_with_llama.url)
    code, out = doctor(capsys)
    assert code == 0, out
    assert "2 chunks from 2 documents" in out


def test_ocr_shows_tesseract_and_its_languages_and_the_install_line_when_absent(capsys, monkeypatch, tmp_path,
                                                                              ollama_with_llama):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", ollama_with_llama.url)
    monkeypatch.setenv("DOCCHAT_OCR_LANGUAGES", "eng+deu")
    if shutil.which("tesseract"):  # Debian's tesseract-ocr and tesseract-ocr-eng (.ci/run installs them)
        code, out = doctor(capsys, "--json")
        report = json.loads(out)
        ocr, [line] = report["ocr"], [c for c in report["checks"] if c["name"] == "OCR"]
        assert code == 0 and ocr["tesseract"].startswith("5.") and "eng" in ocr["languages"]
        assert (ocr["wanted"], ocr["missing"]) == (["eng", "deu"], ["deu"])
        assert line["status"] == "warn" and "deu not installed" in line["detail"]
        assert line["fix"] == "apt-get install tesseract-ocr-deu"
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on it: OCR is optional, a warning only
    code, out = doctor(capsys)
    assert code == 0, out
    assert "warn OCR" in out and "tesseract not found" in out
    assert "fix: install Tesseract (Debian: apt-get install tesseract-ocr tesseract-ocr-eng)" in out
