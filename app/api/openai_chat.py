"""OpenAI's chat-completions dialect: messages in, a docchat answer out (one JSON or SSE chunks).

OpenAI clients send the whole conversation each time; docchat keeps conversations as threads.
The last user message is the question and the user/assistant pairs before it are the history
(system messages are not used: docchat's own grounded prompt decides how to answer).

Sources travel twice: as Markdown footnotes in the text (``[1]`` becomes ``[^1]``, and
``[^1]: guide.md > Install`` lines follow the answer) for chat clients that only show text,
and structured, as ``Answer.to_dict()`` under ``"docchat"``, for programs.
"""

from __future__ import annotations

import re
import time
import uuid

from app.errors import DocchatError

MODEL_ID = "docchat"

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# A "[" near the end of a streamed piece that may still become a citation marker.
_OPEN_MARKER = re.compile(r"\[[\d,\s]*$")
LONGEST_MARKER = 24


def message_text(content) -> str:
    """The text of a message: a string, or the text parts of OpenAI's content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def conversation(messages) -> tuple[str, list[tuple[str, str]]]:
    """The question (last user message) and the (question, answer) pairs said before it."""
    texts = [(m.role, message_text(m.content)) for m in messages]
    last_user = max((i for i, (role, _) in enumerate(texts) if role == "user"), default=None)
    if last_user is None:
        raise DocchatError("The request has no user message to answer.",
                           fix='Send the question as {"role": "user", "content": "..."}, last in `messages`.')
    pairs, pending = [], None
    for role, text in texts[:last_user]:
        if role == "user":
            pending = text
        elif role == "assistant" and pending is not None:
            pairs.append((pending, text))
            pending = None
    return texts[last_user][1], pairs


def footnote_refs(text: str) -> str:
    """``[1]`` and ``[1, 2]`` citation markers as Markdown footnote references ``[^1][^2]``."""
    return _MARKER.sub(lambda m: "".join(f"[^{n.strip()}]" for n in m.group(1).split(",")), text)


class FootnoteStream:
    """``footnote_refs`` for streamed pieces: a marker split across pieces is held back until whole."""

    def __init__(self):
        self._held = ""
        self._streamed = ""  # the model's text as it came, before conversion
        self._referenced: set[int] = set()

    def feed(self, piece: str) -> str:
        self._streamed += piece
        text = self._held + piece
        match = _OPEN_MARKER.search(text)
        cut = match.start() if match and len(text) - match.start() <= LONGEST_MARKER else len(text)
        self._held = text[cut:]
        return self._refs(text[:cut])

    def close(self, answer) -> str:
        """The end of the streamed text: what was held back, then the footnotes.

        Citations the engine attributed after the answer was complete (``citations: overlap``,
        for models that do not cite) were never streamed: they are referenced once, here, so
        that every footnote has its reference. When the engine's final text is not the streamed
        one (its answer check replaced the model's words), a stream cannot take text back: the
        final answer follows the streamed one, after a rule.
        """
        text = self._refs(self._held)
        self._held = ""
        if _plain(answer.text) != _plain(self._streamed):
            return text + "\n\n---\n\n" + self._refs(answer.text) + footnotes(answer)
        late = [n for n in answer.cited if n not in self._referenced]
        if late:
            text += " " + "".join(f"[^{n}]" for n in late)
        return text + footnotes(answer)

    def _refs(self, text: str) -> str:
        converted = footnote_refs(text)
        self._referenced.update(int(n) for n in re.findall(r"\[\^(\d+)\]", converted))
        return converted


def _plain(text: str) -> str:
    """Text without citation markers and spacing: what stays when only citations were added."""
    return " ".join(_MARKER.sub(" ", text).split()).replace(" .", ".").replace(" ,", ",")


def footnotes(answer) -> str:
    """The footnote definitions of the sources the answer cites, as a block to append."""
    cited = [s for s in answer.sources if s.n in set(answer.cited)]
    if not cited:
        return ""
    return "\n\n" + "\n".join(f"[^{s.n}]: {s.label()}" for s in cited)


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion(answer, *, request_id: str, model: str, usage: dict) -> dict:
    """The whole answer as a ``chat.completion`` object."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": footnote_refs(answer.text) + footnotes(answer)},
            "finish_reason": "stop",
        }],
        "usage": usage,
        "docchat": answer.to_dict(),
    }


def chunk(*, request_id: str, model: str, delta: dict, finish_reason: str | None = None, **extra) -> dict:
    """One ``chat.completion.chunk`` of a streamed answer."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


def usage(answer, count_tokens) -> dict:
    prompt = answer.prompt_tokens or 0
    completion_tokens = count_tokens(answer.text) if answer.text else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}
