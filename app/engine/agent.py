"""The tool-calling turn: a LangChain agent over the engine's tools, streamed.

Used when the chat model can call tools (DOCCHAT_TOOLS=on, or auto with a backend that
says it can). The number of tool calls per turn is capped by LangChain's
``ToolCallLimitMiddleware``; a model that keeps asking anyway is stopped by a model-call
limit, so a turn always ends.
"""

from __future__ import annotations

from collections.abc import Iterator

from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage

from app.engine.answer import Event, Source, Token, ToolCall, ToolCallEvent
from app.engine.tools import SeenSources, make_tools, short


def run_agent(engine, llm, messages: list, sources: list[Source], turn) -> Iterator[Event]:
    """Run the agent on ``messages``; fills ``turn`` (text, sources, tool calls)."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware, ToolCallLimitMiddleware

    limit = engine.settings.max_tool_calls
    seen = SeenSources(sources)
    agent = create_agent(
        llm,
        make_tools(engine, seen),
        system_prompt=engine.prompts.agent_system_prompt(),
        middleware=[
            ToolCallLimitMiddleware(run_limit=limit, exit_behavior="continue"),
            # Every tool round is one model call; two more let it answer after a refusal.
            ModelCallLimitMiddleware(run_limit=limit + 2, exit_behavior="end"),
        ],
    )
    pending_args: dict[str, dict] = {}
    final = ""
    streamed = ""
    for mode, payload in agent.stream({"messages": messages}, stream_mode=["messages", "updates"]):
        if mode == "messages":
            chunk, _meta = payload
            if isinstance(chunk, AIMessageChunk) and not chunk.tool_call_chunks and chunk.text:
                streamed += chunk.text
                yield Token(chunk.text)
            continue
        for update in (payload or {}).values():
            for message in (update or {}).get("messages", []) if isinstance(update, dict) else []:
                if isinstance(message, AIMessage):
                    for call in message.tool_calls:
                        pending_args[call["id"]] = call["args"]
                    if not message.tool_calls:
                        final = message.text
                elif isinstance(message, ToolMessage):
                    call = ToolCall(
                        name=message.name or "",
                        args=pending_args.get(message.tool_call_id, {}),
                        result=short(message.text),
                    )
                    turn.tool_calls.append(call)
                    yield ToolCallEvent(call)
    if final and not streamed:  # a model that does not stream: show the answer at once
        yield Token(final)
    turn.text = (final or streamed).strip()
    turn.sources = seen.sources
