"""Citations for answers whose model wrote none.

Small local models (the packaged SmolLM2) answer from the numbered documents but seldom
write ``[n]``. Rather than leave such an answer untraceable, each sentence without a marker
is attributed to the document it shares most of its content words with, when that share is
high, and gets that document's ``[n]``. A sentence that matches no document well stays
uncited: attribution never invents a source. The answer record says how its citations were
made (``citations``: ``"model"``, ``"overlap"`` or ``"none"``).
"""

from __future__ import annotations

import re

from app.engine.answer import Source, cited_numbers

# A sentence needs this many content words to be judged, and this share of them in one
# document to be attributed to it. Tuned so that a copied or lightly reworded sentence
# counts and a generic one ("It depends on the setting.") does not.
MIN_WORDS = 3
MIN_SHARE = 0.6

_SPLIT = re.compile(r"((?<=[.!?])\s+|\n+)")
_WORD = re.compile(r"[a-z0-9_]+")
CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
STOPWORDS = frozenset(
    "a an and are as at be been but by can could do does for from had has have how i if in into "
    "is it its may might must no not of on or our should so such than that the their them then "
    "there these they this to was we were what when where which who why will with would you your".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1}


def best_source(sentence: str, sources: list[Source], vocab: dict[int, set[str]]) -> int | None:
    """The number of the source that holds most of the sentence's words, if one holds enough."""
    words = content_words(sentence)
    if len(words) < MIN_WORDS:
        return None
    share, n = max(((len(words & vocab[s.n]) / len(words), s.n) for s in sources), default=(0.0, None))
    return n if share >= MIN_SHARE else None


def _with_marker(sentence: str, n: int) -> str:
    """``sentence`` with `` [n]`` placed before its closing punctuation."""
    stripped = sentence.rstrip()
    end = len(stripped)
    while end and stripped[end - 1] in ".!?":
        end -= 1
    return f"{stripped[:end]} [{n}]{stripped[end:]}{sentence[len(stripped):]}"


def attribute(text: str, sources: list[Source]) -> tuple[str, list[int]]:
    """``text`` with ``[n]`` added to each sentence drawn from a source, and the numbers cited."""
    if not sources:
        return text, []
    vocab = {s.n: content_words(s.text) for s in sources}
    parts = _SPLIT.split(text)
    for i in range(0, len(parts), 2):  # even indices are sentences, odd ones separators
        sentence = parts[i]
        if not sentence.strip() or CITATION.search(sentence):
            continue
        n = best_source(sentence, sources, vocab)
        if n is not None:
            parts[i] = _with_marker(sentence, n)
    cited_text = "".join(parts)
    return cited_text, cited_numbers(cited_text, sources)


def cite(text: str, sources: list[Source]) -> tuple[str, list[int], str]:
    """The answer text, the source numbers it cites and how: the model's own ``[n]`` when it
    wrote any, else word-overlap attribution."""
    own = cited_numbers(text, sources)
    if own:
        return text, own, "model"
    attributed, numbers = attribute(text, sources)
    return (attributed, numbers, "overlap") if numbers else (text, [], "none")
