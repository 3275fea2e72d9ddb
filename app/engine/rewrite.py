"""Follow-up questions made standalone, so that retrieval knows what "it" refers to.

"And how do I undo that?" searches badly; "How do I undo a commit?" searches well. The
model rewrites the follow-up from the conversation; small models often answer instead of
rewriting, so an unusable rewrite falls back to the previous question joined to this one,
which names the topic well enough for retrieval.
"""

from __future__ import annotations

import logging
import re

from langchain_core.messages import BaseMessage, HumanMessage

from app.backends.contract import Options
from app.engine.history import history_text

log = logging.getLogger(__name__)

# A rewrite longer than this is the model rambling, not a question.
MAX_REWRITE_CHARS = 300
REWRITE_OPTIONS = Options(temperature=0.0, max_tokens=48)
# Words by which a question refers back to the conversation.
FOLLOW_UP_WORDS = frozenset(
    "it its it's that this these those they them their he she him her his above previous former latter".split()
)
FOLLOW_UP_OPENERS = ("and ", "but ", "also ", "so ", "then ", "or ", "what about ", "how about ")


def standalone_question(question: str, history: list[BaseMessage], prompt: str, chat) -> str:
    """The search query for ``question``: itself, or rewritten when it leans on ``history``.

    ``prompt`` is the rewrite template; ``chat`` the ChatBackend (errors reach the caller as
    they are, for it to explain).
    """
    if not history or not is_follow_up(question):
        return question
    reply = chat.with_options(REWRITE_OPTIONS).invoke(
        [HumanMessage(prompt.format(history=history_text(history), question=question))]
    )
    rewritten = first_line(message_text(reply))
    if usable_rewrite(rewritten, question):
        return rewritten
    log.info("unusable rewrite %r; searching with the question and the last one", rewritten)
    last_question = next(m.content for m in reversed(history) if m.type == "human")
    return f"{last_question} {question}"


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the conversation ("and how do I undo that?")."""
    words = re.findall(r"[a-z']+", question.lower())
    if len(words) <= 4 or question.lower().lstrip().startswith(FOLLOW_UP_OPENERS):
        return True
    return any(word in FOLLOW_UP_WORDS for word in words)


def usable_rewrite(rewritten: str, question: str) -> bool:
    """A rewrite is a single question, not an answer and not a ramble."""
    return (
        bool(rewritten)
        and rewritten.endswith("?")
        and len(rewritten) <= MAX_REWRITE_CHARS
        and rewritten.lower() != question.lower()
    )


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip('"').strip()
        for prefix in ("Standalone question:", "Question:"):
            if line.lower().startswith(prefix.lower()):
                line = line[len(prefix):].strip()
        if line:
            return line
    return ""


def message_text(message) -> str:
    """The text of a message or chunk, whatever shape its content has."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in content or []
    )
