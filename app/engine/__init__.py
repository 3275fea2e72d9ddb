"""The chat engine: retrieval, memory, tools and grounded, cited, streamed answers.

    from app.engine import Engine, Answer, Source
    engine = Engine(settings)
    for event in engine.stream("How do I ...?", thread_id):
        ...  # Token(text) ... ToolCallEvent(tool_call) ... Done(answer)

Importing this package is cheap; models and the index load on first use.
"""

from app.engine.answer import Answer, Done, Event, Source, Timings, Token, ToolCall, ToolCallEvent
from app.engine.threads import Message, Thread, ThreadNotFound, ThreadStore


def __getattr__(name):
    # Engine pulls in LangChain; import it only when asked for.
    if name == "Engine":
        from app.engine.chat import Engine

        return Engine
    raise AttributeError(name)


__all__ = [
    "Answer",
    "Done",
    "Engine",
    "Event",
    "Message",
    "Source",
    "Thread",
    "ThreadNotFound",
    "ThreadStore",
    "Timings",
    "Token",
    "ToolCall",
    "ToolCallEvent",
]
