"""Context packing: numbered, fenced chunks that fit a token budget.

Documents are untrusted. Each chunk starts with its number and label (``[2] guide.md >
Install``, prompts/chunk.txt): a plain header that small models do not copy into their
answers, as they did copy ``<document n="2" source=...>`` fences (compared on the
PostgreSQL questions: bench/RESULTS-answers.md). Anything in a document that looks like a
passage header or an old fence is defused first, so a document cannot start a passage of
its own and speak with another number; the system prompt says that passages are data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.engine.answer import Source
from app.engine.prompts import Prompts
from app.engine.tokens import TokenCounter, truncate_to_tokens

# A chunk is cut to fit the room left only if that room is worth it; below this the
# budget is left unused rather than filled with a fragment.
MIN_PARTIAL_TOKENS = 80

_FENCE_LOOKALIKE = re.compile(r"<\s*(/?)\s*(document)", re.IGNORECASE)
_HEADER_LOOKALIKE = re.compile(r"^(\s*)\[(\d+)\]", re.MULTILINE)


def defuse(text: str) -> str:
    """``text`` with anything resembling a passage header or fence made harmless (and visibly so)."""
    text = _FENCE_LOOKALIKE.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", text)
    return _HEADER_LOOKALIKE.sub(lambda m: f"{m.group(1)}({m.group(2)})", text)


@dataclass
class Context:
    """The chunks the model will see, numbered from 1, and their rendered text."""

    sources: list[Source] = field(default_factory=list)
    text: str = ""
    tokens: int = 0


def render_chunk(prompts: Prompts, source: Source, text: str | None = None) -> str:
    """One numbered passage as the model sees it (``text``: a focused cut of the source's text)."""
    label = " ".join(defuse(source.label()).split())  # one line: a file name cannot start a passage
    return prompts.chunk.format(n=source.n, label=label, text=defuse(source.text if text is None else text))


def pack(hits: list, budget: int, prompts: Prompts, count: TokenCounter) -> Context:
    """The best ``hits`` (already ranked and de-duplicated) that fit ``budget`` tokens.

    A chunk that does not fit is skipped for a smaller one further down; the first chunk
    that does not fit whole is cut to the room left when that room is large enough.
    """
    context = Context()
    blocks: list[str] = []
    for hit in hits:
        room = budget - context.tokens
        if room < MIN_PARTIAL_TOKENS // 2:
            break
        source = Source.from_hit(1 + len(context.sources), hit)
        block = render_chunk(prompts, source)
        cost = count(block)
        if cost > room:
            if room < MIN_PARTIAL_TOKENS:
                continue
            overhead = cost - count(source.text)
            source.text = truncate_to_tokens(source.text, room - overhead - 2, count)
            block = render_chunk(prompts, source)
            cost = count(block)
            if cost > room:
                continue
        context.sources.append(source)
        blocks.append(block)
        context.tokens += cost + 1
    context.text = "\n\n".join(blocks)
    return context


def context_budget(settings, window: int, *, fixed_tokens: int) -> int:
    """Tokens the documents may use: the setting, capped by what the model's ``window`` leaves.

    ``fixed_tokens`` is what the prompt needs besides the documents (system prompt,
    history, question); the answer's room (max_new_tokens) is kept free.
    """
    window_room = window - settings.max_new_tokens - fixed_tokens - 16
    return max(0, min(settings.max_context_tokens, window_room))
