"""The conversation: past messages, the streamed answer, and what sits under each answer.

Every piece of model or document text goes through ``app.ui.sanitize`` before it is shown.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass, field

import streamlit as st

from app.errors import DocchatError
from app.ui.sanitize import (
    downloadable_file, escape_markdown, highlighted, only_links, safe_markdown, safe_markdown_piece,
)

# What the answer check found, in the user's words (Answer.problems).
PROBLEM_WORDS = {
    "markup": "it copied the prompt's markup",
    "prompt_echo": "it recited its instructions",
    "repetition": "it repeated itself",
    "unsupported_link": "it gave a link that is in none of your documents",
    "unsupported_number": "it gave a figure that is in none of your documents",
    "unsupported_name": "it named something that is in none of your documents",
    "fake_quote": "it made up a quotation",
    "empty": "nothing usable was left",
}


@dataclass
class ChatOptions:
    """What the sidebar decided for the next question."""

    thread_id: str | None = None
    sources: list[str] = field(default_factory=list)  # restrict retrieval to these files
    k: int | None = None
    temperature: float | None = None
    score_threshold: float | None = None
    indexed_files: set[tuple[str, str]] = field(default_factory=set)  # (root, source): only these download


def show_error(error: Exception) -> None:
    """A failure as a message with its fix; the page goes on working."""
    if isinstance(error, DocchatError):
        st.error(safe_markdown(error.message), icon=":material/error:")
        if error.fix:
            st.info(safe_markdown(f"**Fix:** {error.fix}"), icon=":material/build:")
    else:  # not ours: name it, never a traceback
        st.error(safe_markdown(f"Unexpected error: {type(error).__name__}: {error}"), icon=":material/error:")


def render_history(messages, options: ChatOptions) -> None:
    """The saved messages of a thread, each answer with its sources, as when it was asked."""
    from app.engine.answer import Answer

    for i, message in enumerate(messages):
        with st.chat_message(message.role):
            if message.role == "assistant" and message.answer_json:
                answer = Answer.from_dict(json.loads(message.answer_json))
                render_answer(answer, options, key=f"h{i}")
            else:
                st.markdown(safe_markdown(message.content))


def stream_answer(engine, question: str, options: ChatOptions):
    """Ask the engine, writing the answer as its tokens arrive; returns the Answer (or None)."""
    from app.engine.answer import Done, Token

    done: list = []  # the Answer, once the stream ends (tool calls arrive in it too)

    def pieces():
        for event in engine.stream(
            question,
            options.thread_id,
            sources=options.sources or None,
            k=options.k,
            temperature=options.temperature,
            score_threshold=options.score_threshold,
        ):
            if isinstance(event, Token):
                yield safe_markdown_piece(event.text)
            elif isinstance(event, Done):
                done.append(event.answer)

    text_slot = st.empty()
    try:
        with text_slot.container():
            st.write_stream(pieces())
    except Exception as exc:  # a backend or index failure: say so, keep the page alive
        text_slot.empty()
        show_error(exc)
        return None
    if not done:
        return None
    answer = done[0]
    # The streamed pieces were made safe one by one; show the whole answer properly now (the
    # check may have repaired it, or replaced it with quoted evidence).
    text_slot.markdown(answer_markdown(answer))
    render_answer(answer, options, key="new", with_text=False)
    return answer


def answer_markdown(answer) -> str:
    """The answer text as safe Markdown, links clickable only when a cited source has them."""
    return safe_markdown(only_links(answer.text, answer.links))


def render_answer(answer, options: ChatOptions, *, key: str, with_text: bool = True) -> None:
    """An answer, then its evidence and sources, the tools it used and how it was answered."""
    if with_text:
        st.markdown(answer_markdown(answer))
    if answer.kind == "extractive":
        why = "; ".join(PROBLEM_WORDS.get(p, p) for p in answer.problems) or "it did not match your documents"
        st.caption(f"Quoted from your documents: the model's own answer was not shown ({why}).")
    elif answer.kind == "not_found":
        render_not_found(answer, options, key=key)
    elif not answer.grounded:
        st.caption("Not found in your documents: this is not an answer from them.")
    elif answer.problems:
        st.caption("Repaired: " + "; ".join(PROBLEM_WORDS.get(p, p) for p in answer.problems) + " (removed).")
    if answer.sources:
        st.caption("Sources, with the sentences that support the answer highlighted")
        if answer.citations == "overlap":
            st.caption("The model wrote no citations: each [n] marks a sentence that matches that source's wording.")
        for source in sorted(answer.sources, key=lambda s: -s.score):
            render_source(source, answer, options, key=f"{key}-{source.n}")
    if answer.tool_calls:
        with st.expander(f"Tools used ({len(answer.tool_calls)})", icon=":material/handyman:"):
            for call in answer.tool_calls:
                st.code(f"{call.name}({json.dumps(call.args, ensure_ascii=False)})", language=None)
                st.text(call.result)
    render_how(answer)


def render_not_found(answer, options: ChatOptions, *, key: str) -> None:
    """Never a dead end: the closest passages that were found, with scores, and how to widen."""
    if answer.closest:
        st.caption("Nothing was relevant enough to answer from. The closest passages found:")
        for source in answer.closest:
            render_source(source, answer, options, key=f"{key}-near-{source.n}", cited_mark=False)
    if answer.hint:
        st.info(escape_markdown(answer.hint), icon=":material/travel_explore:")


def render_source(source, answer, options: ChatOptions, *, key: str, cited_mark: bool = True) -> None:
    """One numbered source: its supporting sentences highlighted in the passage, path, page or
    heading, score, and the file to download."""
    mark = " ✓ cited" if cited_mark and source.n in answer.cited else ""
    label = f"[{source.n}] {escape_markdown(source.label())} · score {source.score:.2f}{mark}"
    evidence = answer.evidence_for(source.n) if cited_mark else []
    with st.expander(label, expanded=bool(evidence) and source.n in answer.cited):
        text = source.text or source.snippet
        inside = [(e.start, e.end) for e in evidence if text[e.start:e.end] == e.text]
        if inside:
            st.markdown(highlighted(text, inside))
        else:  # a stored answer keeps only the snippet: quote the sentences themselves
            for e in evidence:
                st.markdown(":orange-background[" + escape_markdown(" ".join(e.text.split())) + "]")
            st.text(text)
        where = [f"File: {source.source}", f"Folder: {source.root}"]
        if source.page is not None:
            where.append(f"Page {source.page}")
        if source.heading:
            where.append(f"Section: {source.heading}")
        where.append(f"Score: {source.score:.3f}")
        st.caption(escape_markdown(" · ".join(where)))
        path = downloadable_file(source.root, source.source, options.indexed_files)
        if path is not None:
            st.download_button(
                "Download the file",
                data=path.read_bytes,  # read only when clicked
                file_name=path.name,
                mime=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                key=f"dl-{key}",
                on_click="ignore",
                icon=":material/download:",
            )


def render_how(answer) -> None:
    """The "how this was answered" panel: the query searched, the chunks found, the timings."""
    with st.expander("How this was answered", icon=":material/manage_search:"):
        st.markdown("**Searched for:**")
        st.text(answer.rewritten_query or "(the question as asked)")
        if answer.sources:
            st.markdown("**Retrieved chunks:**")
            st.dataframe(
                [
                    {"n": s.n, "file": s.source, "page": s.page, "section": s.heading or "", "score": s.score}
                    for s in answer.sources
                ],
                hide_index=True,
            )
        t = answer.timings
        first = f"{t.first_token_ms:.0f} ms" if t.first_token_ms is not None else "n/a"
        waited = f" (of which {t.wait_ms / 1000:.1f} s preparing the models)" if t.wait_ms >= 100 else ""
        st.caption(f"Retrieval {t.retrieve_ms:.0f} ms · first token {first} · total {t.total_ms:.0f} ms{waited}"
                   f" · answer check {t.check_ms:.0f} ms")
