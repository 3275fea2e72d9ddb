"""Which model answers, and whether a better one is at hand.

The embedded default (SmolLM2-135M-Instruct) is what ships offline, and it is small: the
answer check and quoted evidence keep its failures from the user, but a larger model answers
better. `docchat doctor`, `docchat chat` at start and the chat page say so, with the exact
setting; when an Ollama server answers at OLLAMA_HOST with a chat model pulled, they show the
one line that switches to it.

Only the standard library is used, so the launcher can ask before Streamlit starts.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

# The Ollama probe must never hold up a start: a server on loopback answers in milliseconds.
OLLAMA_PROBE_TIMEOUT_S = 0.5
# Ollama model names of embedding models (they cannot chat).
_EMBEDDING_HINTS = ("embed", "bge", "minilm", "e5-")


@dataclass(frozen=True)
class ModelAdvice:
    answering: str  # "SmolLM2-135M-Instruct (embedded, runs in docchat)"
    small: bool  # the embedded default: fine to try docchat, not the one to rely on
    advice: str | None = None  # how to get better answers
    switch: str | None = None  # the one line that switches to a better model found here


def ollama_chat_models(host: str, timeout: float = OLLAMA_PROBE_TIMEOUT_S) -> list[str]:
    """The chat models an Ollama server at ``host`` has pulled ([] when none answers)."""
    try:
        with urllib.request.urlopen(host.rstrip("/") + "/api/tags", timeout=timeout) as reply:
            tags = json.loads(reply.read(1_000_000))
    except (OSError, ValueError):
        return []
    names = [str(m.get("name") or m.get("model") or "") for m in tags.get("models", []) if isinstance(m, dict)]
    return [n for n in names if n and not any(hint in n.lower() for hint in _EMBEDDING_HINTS)]


def model_advice(settings, *, probe_ollama: bool = True) -> ModelAdvice:
    """What answers with these settings and, for the embedded default, how to do better."""
    name, backend = settings.llm_model_name, settings.llm_backend
    if backend != "huggingface":
        where = {"ollama": f"Ollama at {settings.ollama_host}", "openai": "an OpenAI-compatible server"}
        return ModelAdvice(f"{name} ({where.get(backend, backend)})", small=False)
    if not settings.uses_embedded_model:
        return ModelAdvice(f"{name} (transformers, runs in docchat)", small=False)
    answering = f"{name} (embedded: 135M parameters, runs offline in docchat)"
    found = ollama_chat_models(settings.ollama_host) if probe_ollama else []
    if found:
        switch = f"DOCCHAT_LLM_BACKEND=ollama DOCCHAT_LLM_MODEL={found[0]}"
        advice = (f"An Ollama server at {settings.ollama_host} has {', '.join(found[:3])}: a larger model "
                  f"answers better. Switch with `{switch}` (in .env or the environment).")
        return ModelAdvice(answering, small=True, advice=advice, switch=switch)
    advice = (
        "It is small: answers are checked and fall back to quoting your documents, but a larger "
        "model answers better. Set DOCCHAT_LLM_BACKEND=ollama DOCCHAT_LLM_MODEL=llama3.2 (after "
        "`ollama pull llama3.2`), or DOCCHAT_LLM_BACKEND=openai with OPENAI_BASE_URL for any "
        "OpenAI-compatible server, or DOCCHAT_LLM_MODEL=<a bigger transformers model folder>."
    )
    return ModelAdvice(answering, small=True, advice=advice)
