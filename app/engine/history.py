"""The part of a thread's history that fits the model's window, newest turns kept first."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from app.engine.threads import Message
from app.engine.tokens import TokenCounter, truncate_to_tokens

# An old answer longer than this is shortened in the history: its gist is enough to
# resolve a follow-up, and the room is better spent on retrieved context.
MAX_TURN_TOKENS = 200


def recent_history(messages: list[Message], budget: int, count: TokenCounter) -> list[BaseMessage]:
    """The newest question/answer pairs that fit in ``budget`` tokens, oldest first.

    Older turns are dropped whole (never half a pair), so the model never sees an answer
    without its question.
    """
    kept: list[BaseMessage] = []
    used = 0
    pairs = _pairs(messages)
    for question, answer in reversed(pairs):
        answer = without_quotes(answer)
        q = truncate_to_tokens(question, MAX_TURN_TOKENS, count)
        a = truncate_to_tokens(answer, MAX_TURN_TOKENS, count)
        cost = count(q) + count(a) + 8  # role markers of the chat template
        if used + cost > budget:
            break
        kept[:0] = [HumanMessage(q), AIMessage(a)]
        used += cost
    return kept


def without_quotes(answer: str) -> str:
    """An earlier answer as the model re-reads it: docchat's quoted sentences as plain sentences,
    without the "> " marks and the label above them, which a small model would otherwise
    imitate with invented quotes."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    has_quotes = any(line.lstrip().startswith(">") for line in lines)
    if has_quotes and lines[0].rstrip().endswith(":") and not lines[0].lstrip().startswith(">"):
        lines = lines[1:]  # "Quoted from your documents:"
    return "\n".join(line.lstrip().removeprefix(">").strip() for line in lines)


def history_text(history: list[BaseMessage]) -> str:
    """The history as plain lines for the rewrite prompt."""
    names = {"human": "User", "ai": "Assistant"}
    return "\n".join(f"{names.get(m.type, m.type)}: {m.content}" for m in history)


def _pairs(messages: list[Message]) -> list[tuple[str, str]]:
    pairs = []
    pending: str | None = None
    for message in messages:
        if message.role == "user":
            pending = message.content
        elif pending is not None:
            pairs.append((pending, message.content))
            pending = None
    return pairs
