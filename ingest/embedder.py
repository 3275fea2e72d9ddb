"""Chunk texts to normalised vectors, with the embedding model loaded only when first needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.config import Settings

# Texts per call: sentence-transformers sorts each call's texts by length before batching, so
# large calls waste as little padding as one call over everything.
GROUP_SIZE = 1024


class Embedder:
    """``embedder(texts) -> float32 array`` (rows L2-normalised); counts what it embedded."""

    def __init__(self, settings: "Settings", embeddings=None):
        self.settings = settings
        self._embeddings = embeddings
        self.texts_embedded = 0

    @property
    def embeddings(self):
        if self._embeddings is None:
            from app.backends import make_embeddings

            self._embeddings = make_embeddings(self.settings)
        return self._embeddings

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        client = getattr(self.embeddings, "_client", None)
        if client is not None and hasattr(client, "encode"):  # sentence-transformers: skip LangChain's list round trip
            vectors = client.encode(
                texts, batch_size=self.settings.embed_batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        else:
            vectors = np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.texts_embedded += len(texts)
        return np.asarray(vectors, dtype=np.float32)
