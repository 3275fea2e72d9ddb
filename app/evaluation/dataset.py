"""Question sets for `docchat eval`: one JSON object a line.

The format is the one of `shared/eval/postgres-qa.jsonl`: ``id``; either ``question`` (one
turn) or ``turns`` (user messages sent in order in one conversation; ``gold`` and ``answer``
refer to the last); ``gold`` (page paths relative to the ingested folder, first = main page,
empty when unanswerable); ``answer`` (a short phrase from the main page, or null);
``answerable``; optional ``difficulty``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from app.errors import DocchatError

FORMAT_FIX = (
    "Each line must be a JSON object with id, question (or turns: a list of messages), "
    "gold (a list of file names), answer (a phrase or null) and answerable (true/false)."
)


@dataclass(frozen=True)
class QAItem:
    """One question (or conversation) with the pages that answer it."""

    id: str
    turns: tuple[str, ...]
    gold: tuple[str, ...]
    answer: str | None
    answerable: bool
    difficulty: str | None = None

    @property
    def question(self) -> str:
        """The scored message: the last turn."""
        return self.turns[-1]

    @property
    def kind(self) -> str:
        """``single``, ``followup`` (the last turn of a conversation) or ``unanswerable``."""
        if not self.answerable:
            return "unanswerable"
        return "followup" if len(self.turns) > 1 else "single"


def load_items(path: str | Path) -> list[QAItem]:
    """Read and check a question set; raises ``DocchatError`` naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DocchatError(
            f"Cannot read the question set {path}: {exc}.", fix="Give the path of a .jsonl file."
        ) from None
    items: list[QAItem] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        item = _parse(line, where)
        if item.id in seen:
            raise DocchatError(f"{where}: the id {item.id!r} appears twice.", fix="Make each id unique.")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise DocchatError(f"The question set {path} holds no questions.", fix=FORMAT_FIX)
    return items


def _parse(line: str, where: str) -> QAItem:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DocchatError(f"{where}: not valid JSON ({exc.msg}).", fix=FORMAT_FIX) from None
    if not isinstance(raw, dict):
        raise DocchatError(f"{where}: expected a JSON object.", fix=FORMAT_FIX)
    turns = raw.get("turns") if "turns" in raw else [raw.get("question")]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise DocchatError(f"{where}: needs a non-empty `question` or a list of `turns`.", fix=FORMAT_FIX)
    gold = raw.get("gold", [])
    if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
        raise DocchatError(f"{where}: `gold` must be a list of file names.", fix=FORMAT_FIX)
    answerable = raw.get("answerable", bool(gold))
    if not isinstance(answerable, bool):
        raise DocchatError(f"{where}: `answerable` must be true or false.", fix=FORMAT_FIX)
    if answerable and not gold:
        raise DocchatError(f"{where}: an answerable item needs at least one gold page.", fix=FORMAT_FIX)
    answer = raw.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise DocchatError(f"{where}: `answer` must be a phrase or null.", fix=FORMAT_FIX)
    return QAItem(
        id=str(raw.get("id") or where),
        turns=tuple(t.strip() for t in turns),
        gold=tuple(gold),
        answer=answer,
        answerable=answerable,
        difficulty=raw.get("difficulty"),
    )
