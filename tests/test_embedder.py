"""The embedding runtimes: ONNX (exported once into the model cache) against torch, and the index
refusing vectors of another runtime or precision.

Real packaged model, real ONNX export and onnxruntime, real index written by a sync.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.config import load_settings, with_overrides
from app.errors import StoreError
from app.backends.huggingface import Embedding
from ingest.splitter import _with_context
from ingest.sync import sync
from vectorstore import Store

TEXTS = [
    "How do I create an index without locking writes to the table?",
    "VACUUM reclaims storage occupied by dead tuples. " * 30,  # longer than the model's 256 tokens
    "short",
    "git rebase -i lets you reorder, squash and reword commits.",
]


@pytest.fixture(scope="module")
def runtimes(model_cache_dir):
    """The three runtimes over the same model, sharing the test session's model cache."""
    base = load_settings(env_file=None, model_cache_dir=model_cache_dir)
    return {name: Embedding(with_overrides(base, **changes)) for name, changes in {
        "torch": {"embedding_runtime": "torch"},
        "fp32": {"embedding_runtime": "onnx", "embedding_precision": "fp32"},
        "int8": {"embedding_runtime": "onnx", "embedding_precision": "int8"},
        "int8-documents": {"embedding_runtime": "onnx", "embedding_precision": "int8-documents"},
    }.items()}


def test_onnx_vectors_match_torch_in_order_and_are_unit_length(runtimes):
    torch, fp32, int8 = (runtimes[n].embed(TEXTS) for n in ("torch", "fp32", "int8"))
    assert fp32.dtype == np.float32 and fp32.shape == (4, 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", fp32, torch).min() > 0.9999  # same model, same maths
    assert np.einsum("ij,ij->i", int8, torch).min() > 0.99  # int8 weights: close, not equal
    # Each text is still nearest its own torch vector (the batch was sorted by length inside).
    assert (np.argmax(int8 @ torch.T, axis=1) == np.arange(4)).all()
    assert runtimes["int8"].embed([]).shape == (0, 0)
    assert runtimes["int8"].embed_query(TEXTS[0]).shape == (384,)
    assert len(runtimes["int8"].embeddings.embed_query(TEXTS[0])) == 384  # LangChain callers get the same


def test_an_int8_vector_does_not_depend_on_the_texts_beside_it(runtimes):
    """Int8 quantizes each call's activations with one scale: by default it embeds one text per
    call, so a chunk re-synced alone gets the vector it got in a full ingest."""
    alone = np.vstack([runtimes["int8"].embed([text]) for text in TEXTS])
    assert np.allclose(runtimes["int8"].embed(TEXTS), alone, atol=1e-5)
    assert np.allclose(runtimes["int8-documents"].embed_documents(TEXTS), alone, atol=1e-5)


def test_texts_spread_over_worker_threads_come_back_in_order(runtimes):
    """ONNX runs one call per text on a thread per core; a batch setting groups texts (sorted by
    length, padded) and still returns each text's own row in its place."""
    from ingest.onnx_encoder import OnnxEncoder

    texts = TEXTS * 5
    encoder = runtimes["fp32"].embeddings._onnx("fp32")
    one_by_one = np.vstack([encoder.encode([text]) for text in texts])
    for batch_size, workers in [(1, 2), (1, 3), (3, 2), (32, 2)]:
        spread = OnnxEncoder(encoder.folder, "fp32", batch_size, workers=workers).encode(texts)
        assert np.allclose(spread, one_by_one, atol=1e-5), (batch_size, workers)


def test_the_export_is_made_once_and_reused(runtimes, model_cache_dir):
    from app.backends.huggingface import embedding_model_path
    from ingest.onnx_encoder import export_dir

    runtimes["int8"].prepare()
    folders = [export_dir(model_cache_dir, embedding_model_path(runtimes["int8"].settings.embedding_model_name))]
    assert {"model.onnx", "model-int8.onnx", "tokenizer.json"} <= {p.name for p in folders[0].iterdir()}
    import onnx

    graph = onnx.load(str(folders[0] / "model.onnx"), load_external_data=False).graph
    assert sum(node.op_type == "Attention" for node in graph.node) == 6  # each layer fused: the fast graph
    int8 = onnx.load(str(folders[0] / "model-int8.onnx"), load_external_data=False).graph
    shapes = {weight.name: tuple(weight.dims) for weight in int8.initializer}
    fp32_feed_forward = sorted(node.name.split("/")[3] for node in int8.node if node.op_type == "MatMul"
                               and 1536 in shapes.get(node.input[1], ()))  # fmt: skip
    assert fp32_feed_forward == ["layer.0", "layer.0", "layer.1", "layer.1", "layer.2", "layer.2"]  # earlier half
    assert sum(node.op_type == "Attention" for node in int8.node) == 0  # every attention quantized
    before = folders[0].stat().st_mtime_ns
    Embedding(load_settings(env_file=None, model_cache_dir=model_cache_dir, embedding_precision="fp32")).prepare()
    assert folders[0].stat().st_mtime_ns == before and not list(model_cache_dir.glob(".*-onnx-*"))


def test_an_index_embedded_as_int8_refuses_other_queries_until_rebuilt(settings, tmp_path, runtimes):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heron.md").write_text("# Mascot\n\nThe docchat mascot is a purple heron named Ada.\n")
    cache = runtimes["int8"].settings.model_cache_path
    as_int8 = with_overrides(settings, model_cache_dir=cache, embedding_precision="int8")
    sync(as_int8, [docs])  # no embeddings given: the settings' runtime embeds
    store = Store.open(as_int8)
    assert store.embedding == "onnx-int8"
    hit = store.search(runtimes["int8"].embed(["what animal is the mascot?"])[0], k=1)[0]
    assert hit.source == "heron.md" and hit.score > 0.4
    store.close()

    default = with_overrides(settings, model_cache_dir=cache)  # onnx fp32
    with pytest.raises(StoreError, match="onnx-int8.*onnx-fp32") as error:
        Store.open(default)
    assert "docchat ingest --full" in error.value.fix
    with pytest.raises(StoreError, match="onnx-int8"):
        sync(default, [docs])  # an incremental sync would mix them: refused too
    sync(default, [docs], full=True)
    assert Store.open(default).embedding == "onnx-fp32"


def test_int8_documents_stores_int8_rows_and_asks_in_fp32(settings, tmp_path, runtimes):
    """The index's vectors from the int8 weights (the fast ingest), questions from the fp32
    ones (a question is one short text: full precision costs little there); the index records
    the pair."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heron.md").write_text("# Mascot\n\nThe docchat mascot is a purple heron named Ada.\n")
    mixed = runtimes["int8-documents"]
    as_mixed = with_overrides(settings, model_cache_dir=mixed.settings.model_cache_path,
                              embedding_precision="int8-documents")  # fmt: skip
    sync(as_mixed, [docs])  # the settings' runtime embeds
    store = Store.open(as_mixed)
    assert store.embedding == "onnx-int8-documents"
    hit = store.search(mixed.embed_query("what animal is the mascot?"), k=1)[0]
    stored = store.vectors([hit.chunk_id])[0]
    embedded = _with_context(hit.metadata["title"], hit.metadata["heading"], hit.text)  # what the sync embedded
    store.close()
    assert hit.source == "heron.md" and hit.score > 0.4
    question = "what animal is the mascot?"
    assert np.allclose(mixed.embed_query(question), runtimes["fp32"].embed_query(question), atol=1e-6)
    assert not np.allclose(mixed.embed_query(question), runtimes["int8"].embed_query(question), atol=1e-3)
    assert np.allclose(mixed.embed_documents(TEXTS), runtimes["int8"].embed(TEXTS), atol=1e-6)
    assert np.allclose(mixed.embed(TEXTS), runtimes["fp32"].embed(TEXTS), atol=1e-6)  # evidence sentences
    assert np.allclose(stored, runtimes["int8"].embed([embedded])[0], atol=1e-5)
    with pytest.raises(StoreError, match="onnx-int8-documents.*onnx-int8\\b"):
        Store.open(with_overrides(as_mixed, embedding_precision="int8"))  # int8 questions: refused


def test_doctor_names_the_runtime_and_precision(capsys, isolated_env, model_cache_dir, monkeypatch):
    from app.cli import main

    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "openai")  # no LLM check needed here: it fails fast
    monkeypatch.setenv("DOCCHAT_EMBEDDING_PRECISION", "fp32")
    assert main(["doctor", "--json"]) == 1  # the OpenAI key is missing; the embedder is fine
    report = json.loads(capsys.readouterr().out)
    assert (report["embedding"]["runtime"], report["embedding"]["precision"]) == ("onnx", "fp32")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["Embeddings"]["status"] == "ok" and "384 dimensions" in checks["Embeddings"]["detail"]
    assert checks["Embedding runtime"]["detail"].startswith("onnx fp32")
