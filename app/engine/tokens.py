"""Token counts and cuts. The chat backend counts exactly (``ChatBackend.count_tokens``: its
tokenizer when local); for remote models we estimate with four characters per token rather
than fetch a tokenizer from the network."""

from __future__ import annotations

from collections.abc import Callable

CHARS_PER_TOKEN = 4

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About one token per four characters: close enough for English prose and code."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def truncate_to_tokens(text: str, limit: int, count: TokenCounter) -> str:
    """The longest prefix of ``text`` (cut at a word) that fits in ``limit`` tokens."""
    if count(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # binary search on characters: counting is cheap, text is short
        mid = (low + high + 1) // 2
        if count(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    cut = text[:low]
    space = cut.rfind(" ")
    return (cut[:space] if space > len(cut) // 2 else cut).rstrip() + " …"
