"""The agent's tool loop against the real index, driven by a scripted chat model.

The scripted model is a stand-in for a tool-calling LLM (OpenAI, a tools-capable Ollama
model), which cannot run on this machine: it emits fixed tool calls, and everything else
-- LangChain's agent, the tools, retrieval over the real FAISS index, the call limit, the
answer record -- runs for real.
"""

from __future__ import annotations

import json
import re

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from app.config import with_overrides
from app.engine import Done, Engine, Token, ToolCallEvent
from tests.scripted import ScriptedBackend
from tests.test_engine_e2e import corpus_settings  # noqa: F401  (module fixture: the synced corpus)


class ScriptedToolModel(GenericFakeChatModel):
    """A scripted stand-in for a tool-calling chat model: replies with the next scripted message,
    streaming text word by word and tool calls as one chunk, as real providers do."""

    def bind_tools(self, tools, **kwargs):
        return self

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        message = next(self.messages)
        if message.tool_calls:
            chunks = [AIMessageChunk(content="", tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i, "type": "tool_call_chunk"}
                for i, c in enumerate(message.tool_calls)])]
        else:
            chunks = [AIMessageChunk(content=word) for word in re.split(r"(?<= )", message.content)]
        for chunk in chunks:
            yield ChatGenerationChunk(message=chunk)


def call(name, args, n):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call-{n}", "type": "tool_call"}])


def run(settings, embeddings, script, question="How often is the coffee machine descaled?"):
    settings = with_overrides(settings, tools="on")
    engine = Engine(settings, chat=ScriptedBackend(settings, ScriptedToolModel(messages=iter(script)), tools=True),
                    embedder=embeddings)
    events = list(engine.stream(question))
    assert isinstance(events[-1], Done)
    return engine, events, events[-1].answer


def test_tools_run_against_the_real_index(corpus_settings, embeddings):
    script = [
        call("search_documents", {"query": "database backup retention", "k": 2}, 1),
        call("list_documents", {}, 2),
        call("read_document", {"source": "git-branches.md", "section": "undoing"}, 3),
        call("calculator", {"expression": "6 * 7"}, 4),
        AIMessage("Descale it every 6 weeks [1]; backups are kept 35 days [2]."),
    ]
    engine, events, answer = run(corpus_settings, embeddings, script)

    streamed = [e.tool_call for e in events if isinstance(e, ToolCallEvent)]
    assert [c.name for c in answer.tool_calls] == [c.name for c in streamed] == [
        "search_documents", "list_documents", "read_document", "calculator"]
    search, listing, read, calc = answer.tool_calls
    assert search.args == {"query": "database backup retention", "k": 2}
    assert "35 days" in search.result and re.search(r"\[\d+\] ", search.result)  # numbered passages
    assert "coffee.md" in listing.result and "ops/backups.txt" in listing.result
    assert "git branch -d feature" in read.result
    assert calc.result == "42"
    assert answer.text == "Descale it every 6 weeks [1]; backups are kept 35 days [2]."
    assert "".join(e.text for e in events if isinstance(e, Token)) == answer.text  # streamed

    # The sources are what the model saw: the first-turn context, then what the tools returned.
    assert answer.sources[0].source == "coffee.md"
    seen = [s.source for s in answer.sources]
    assert "ops/backups.txt" in seen and "git-branches.md" in seen
    assert [s.n for s in answer.sources] == list(range(1, len(seen) + 1))
    assert answer.cited == [1, 2] and answer.grounded
    assert engine.threads.messages(answer.thread_id)[1].answer["tool_calls"][3]["result"] == "42"


def test_tool_calls_are_capped_per_turn(corpus_settings, embeddings):
    settings = with_overrides(corpus_settings, max_tool_calls=1)
    script = [
        call("calculator", {"expression": "1 + 1"}, 1),
        call("calculator", {"expression": "2 + 2"}, 2),
        AIMessage("Done."),
    ]
    _, _, answer = run(settings, embeddings, script)
    assert [c.result for c in answer.tool_calls] == ["2", answer.tool_calls[1].result]
    assert "limit" in answer.tool_calls[1].result.lower()  # the second call was refused, not run
    assert answer.kind == "extractive"  # "Done." answers nothing: the sources are quoted instead


def test_calculator_refuses_code_through_the_agent(corpus_settings, embeddings):
    script = [call("calculator", {"expression": "__import__('os').system('echo PWNED')"}, 1), AIMessage("No.")]
    _, _, answer = run(corpus_settings, embeddings, script)
    assert answer.tool_calls[0].result.startswith("Calculator error:")
