"""Run a question set through the engine the UI uses and record what it did.

Two modes:

* answers (default): every turn goes to ``Engine.ask`` in one thread per item, so a
  follow-up is rewritten by the engine exactly as in the chat page; retrieval figures come
  from the sources the model was given (what fits DOCCHAT_MAX_CONTEXT_TOKENS, so possibly
  fewer than k), citations from ``Answer.cited`` (the ``[n]`` the model wrote, or, when it
  wrote none, the engine's word-overlap attribution: ``Answer.citations`` says which).
* retrieval only (``--no-llm``): ``Engine.search`` with the scored turn. A follow-up cannot
  be rewritten without the LLM, so its query is the previous user turn followed by the
  follow-up (the summary labels this figure as such). "Abstained" then means the search
  returned no chunk above the score threshold, which is when the engine answers "not found"
  without asking the model.

The threads an evaluation creates are deleted afterwards: they are not the user's.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from app.evaluation.dataset import QAItem
from app.evaluation.scoring import ItemResult, Retrieved


def followup_query(item: QAItem) -> str:
    """The --no-llm stand-in for the engine's rewrite: previous user turn + the follow-up."""
    return " ".join(item.turns[-2:])


def is_abstention(answer, not_found: str) -> bool:
    """The engine's own definition: it found nothing to ground an answer on (no sources,
    not grounded: it said so, or fell back to labelled general knowledge), or the model
    replied with the not-found message."""
    if not answer.grounded and not answer.sources:
        return True
    return bool(not_found) and not_found.lower() in answer.text.lower()


def search_item(engine, item: QAItem, *, k: int) -> ItemResult:
    """Retrieval only: one ``Engine.search`` for the scored turn."""
    query = followup_query(item) if len(item.turns) > 1 else item.question
    start = time.perf_counter()
    sources = engine.search(query, k=k)
    ms = (time.perf_counter() - start) * 1000
    retrieved = [Retrieved(rank=i, source=s.source, score=s.score) for i, s in enumerate(sources, 1)]
    return ItemResult(item, query, retrieved, abstained=not sources, retrieve_ms=[ms], total_ms=[ms])


def answer_item(engine, item: QAItem, *, k: int, not_found: str) -> ItemResult:
    """Every turn through ``Engine.ask`` in one thread; the last answer is scored."""
    result = ItemResult(item, "", [], abstained=False)
    thread_id = None
    try:
        for turn in item.turns:
            answer = engine.ask(turn, thread_id, k=k)
            thread_id = answer.thread_id
            result.retrieve_ms.append(answer.timings.retrieve_ms)
            result.first_token_ms.append(answer.timings.first_token_ms)
            result.total_ms.append(answer.timings.total_ms)
    finally:
        if thread_id:
            engine.threads.delete(thread_id)
    cited = set(answer.cited)
    result.query = answer.rewritten_query or item.question
    result.retrieved = [
        Retrieved(rank=i, source=s.source, score=s.score, cited=s.n in cited)
        for i, s in enumerate(answer.sources, 1)
    ]
    result.answer = answer.text
    result.abstained = is_abstention(answer, not_found)
    result.kind, result.problems = answer.kind, list(answer.problems)
    result.shown_problems = shown_problems(engine, answer, asked=f"{item.question}\n{answer.rewritten_query}")
    return result


def shown_problems(engine, answer, asked: str = "") -> list[str]:
    """The answer check run again on what the user was shown (must find nothing); ``asked``:
    the question, whose figures the answer may use."""
    from app.engine.guard import EMPTY, check_answer

    sources_text = "\n".join(s.text for s in answer.sources)
    # (our own quoted-answer label is fine here: no quote_label)
    problems = check_answer(answer.text, engine.prompt_lines, sources_text, asked=asked).problems
    return [p for p in problems if p != EMPTY or answer.text.strip() == ""]


def evaluate(
    engine,
    items: Iterable[QAItem],
    *,
    k: int,
    use_llm: bool,
    not_found: str = "",
    on_result: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Run every item; ``on_result`` is called after each (progress output)."""
    results = []
    for item in items:
        if use_llm:
            result = answer_item(engine, item, k=k, not_found=not_found)
        else:
            result = search_item(engine, item, k=k)
        results.append(result)
        if on_result:
            on_result(result)
    return results
