"""A STAND-IN chat backend for fast tests: its replies come from a script, not from a model.

It implements the same contract as the real backends (app.backends.contract) and passes the
same conformance suite (tests/test_backend_contract.py), so the engine cannot tell it apart;
what a test then measures is everything around the model: retrieval, the prompt, the answer
check, citations, threads, the servers. The real models are tested through the same contract.

    engine = Engine(settings, chat=ScriptedBackend(settings, ScriptedChat("It is 6 weeks [1].")))
"""

from __future__ import annotations

import itertools

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from app.backends.contract import Capabilities, ChatBackend, Check, Options
from app.backends.huggingface import local_model_error
from app.errors import BackendError


class ScriptedChat(GenericFakeChatModel):
    """A LangChain chat model that streams one fixed reply, word by word, on every call."""

    def __init__(self, reply: str = "The answer is in the documents [1].", **kw):
        super().__init__(messages=itertools.repeat(AIMessage(reply)), **kw)


class _Limited(GenericFakeChatModel):
    """A scripted model at an answer length: at most ``max_words`` words of each reply."""

    source: GenericFakeChatModel
    max_words: int

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        words = 0
        for chunk in self.source._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            words += bool(chunk.message.content.strip())
            if words > self.max_words:
                return
            yield chunk

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        text = "".join(c.message.content for c in self._stream(messages, stop=stop, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


class ScriptedBackend(ChatBackend):
    """The contract around a scripted LangChain chat model (any ``GenericFakeChatModel``)."""

    provider = "scripted"
    FIELDS = ("llm_model_name", "temperature", "context_window")

    def __init__(self, settings, model=None, *, tools: bool = False):
        super().__init__(settings, model=model if model is not None else ScriptedChat())
        self._tools = tools
        self.options_seen: list[Options] = []

    def _build(self):  # pragma: no cover -- the model is always given
        raise AssertionError("a scripted backend is built with its model")

    def with_options(self, options: Options):
        self.options_seen.append(options)
        return _Limited(messages=iter(()), source=self.model, max_words=options.max_tokens)

    def _capabilities(self) -> Capabilities:
        return Capabilities(tools=self._tools, streaming=True, context_window=self.settings.context_window)

    def explain_error(self, exc: BaseException) -> BackendError:
        """As a local model's failure is explained (the stand-in plays one)."""
        return local_model_error(exc, self.name)

    def check(self) -> list[Check]:
        return [Check("LLM answers", True, "scripted replies")]
