"""Chunk texts to normalised vectors, with the embedding model loaded only when first needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.backends import EmbeddingBackend
    from app.config import Settings

# Texts per call: sentence-transformers sorts each call's texts by length before batching, so
# large calls waste as little padding as one call over everything.
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
        vectors = self.backend.embed(texts)
        self.texts_embedded += len(texts)
        return vectors
