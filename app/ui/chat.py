"""The conversation: past messages, the streamed answer, and what sits under each answer.

Every piece of model or document text goes through ``app.ui.sanitize`` before it is shown.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from app.errors import DocchatError
from app.ui import controls, viewer
from app.ui.formatting import duration
from app.ui.sanitize import escape_markdown, only_links, safe_markdown, safe_markdown_piece

# What the answer check found, in the user's words (Answer.problems).
PROBLEM_WORDS = {
    "markup": "it copied the prompt's markup",
    "prompt_echo": "it recited its instructions",
    "repetition": "it repeated itself",
    "unsupported_link": "it gave a link that is in none of your documents",
    "unsupported_number": "it gave a figure that is in none of your documents",
    "unsupported_name": "it named something that is in none of your documents",
    "misplaced_path": "it gave a path your documents give for something else",
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
    store: object | None = None  # the live index, for the source viewer's whole passages
    threads: object | None = None  # the ThreadStore (feedback, regenerate, edit)


def show_error(error: Exception) -> None:
    """A failure as a message with its fix; the page goes on working."""
    if isinstance(error, DocchatError):
        st.error(safe_markdown(error.message), icon=":material/error:")
        if error.fix:
            st.info(safe_markdown(f"**Fix:** {error.fix}"), icon=":material/build:")
    else:  # not ours: name it, never a traceback
        st.error(safe_markdown(f"Unexpected error: {type(error).__name__}: {error}"), icon=":material/error:")


def render_history(messages, options: ChatOptions) -> None:
    """The saved messages of a thread, each answer with its sources and its controls (copy,
    feedback, regenerate on the last one; edit on questions), as when it was asked."""
    from app.engine.answer import Answer

    last_answer = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    for i, message in enumerate(messages):
        with st.chat_message(message.role):
            if message.role == "user":
                st.markdown(safe_markdown(message.content))
                controls.question_controls(options, message)
                continue
            answer = Answer.from_dict(json.loads(message.answer_json)) if message.answer_json else None
            if answer is None or message.stopped:
                st.markdown(safe_markdown(message.content) or "*(nothing had arrived yet)*")
            if message.stopped:
                st.caption(":material/stop_circle: Stopped: the answer above is the part that had arrived.")
            elif answer is not None:
                render_answer(answer, options, key=f"m{message.id}")
            question = messages[i - 1] if i and messages[i - 1].role == "user" else None
            controls.answer_controls(options, message, answer, question, last=i == last_answer)


IN_FLIGHT = "answer_in_flight"  # the answer being streamed: {thread, question, parts, lock}
STOP_WAIT_S = 3.0  # how long the next run waits for a stopped answer to be saved


def stream_answer(engine, threads, question: str, options: ChatOptions):
    """Ask the engine, writing the answer as its tokens arrive; returns the Answer (or None).

    A stop (the Stop button, or anything else that reruns the page meanwhile) keeps the part
    that had arrived in the thread, marked stopped. Streamlit starts the next run before this
    one has unwound (it stops at its next token, and a loaded machine can take seconds to
    reach it), so what has arrived is also kept in the session: the next run saves it itself
    if this run has not by then (``wait_for_stopped_answer``). Whichever saves first saves;
    the engine too asks before it saves the whole answer, so a stopped turn is saved once.
    """
    from app.engine.answer import Done, Token

    done: list = []  # the Answer, once the stream ends (tool calls arrive in it too)
    flight = {"thread": options.thread_id, "question": question, "parts": [], "lock": threading.Lock()}
    st.session_state[IN_FLIGHT] = flight

    def pieces():
        for event in engine.stream(
            question,
            options.thread_id,
            sources=options.sources or None,
            k=options.k,
            temperature=options.temperature,
            score_threshold=options.score_threshold,
            claim_save=lambda: _claim_save(flight),
        ):
            if isinstance(event, Token):
                flight["parts"].append(event.text)
                yield safe_markdown_piece(event.text)
            elif isinstance(event, Done):
                done.append(event.answer)

    st.button("Stop", key="stop-answer", icon=":material/stop_circle:", type="tertiary",
              help="Stop the answer; what has arrived is kept in the conversation.")  # fmt: skip
    text_slot = st.empty()
    try:
        with text_slot.container():
            st.write_stream(pieces())
    except ScriptControlException:  # stopped, or the page rerun for another click
        # No Streamlit call from here on: this run is being stopped, and the session state
        # is the next run's. The flight is marked in place; the next run clears it.
        if not done and _claim_save(flight):
            keep_stopped(threads, options.thread_id, question, "".join(flight["parts"]))
        flight["landed"] = True
        raise
    except Exception as exc:  # a backend or index failure: say so, keep the page alive
        _land(flight)
        text_slot.empty()
        show_error(exc)
        return None
    _land(flight)
    if not done:
        return None
    answer = done[0]
    # The streamed pieces were made safe one by one; show the whole answer properly now (the
    # check may have repaired it, or replaced it with quoted evidence).
    text_slot.markdown(answer_markdown(answer, key="new"))
    render_answer(answer, options, key="new", with_text=False)
    return answer


def _land(flight: dict) -> None:
    flight["landed"] = True
    if st.session_state.get(IN_FLIGHT) is flight:
        del st.session_state[IN_FLIGHT]


def wait_for_stopped_answer(threads, limit_s: float = STOP_WAIT_S) -> None:
    """Give a stopped answer's run the moment it needs to save it (it stops at its next
    token); if it has not by then, save what had arrived here. Either way this run shows,
    lists and exports the stopped answer from the thread."""
    flight = st.session_state.get(IN_FLIGHT)
    deadline = time.monotonic() + limit_s
    while flight and not flight.get("landed") and time.monotonic() < deadline:
        time.sleep(0.05)
    if not flight:
        return
    if not flight.get("landed") and _claim_save(flight):  # its run is still waiting on the model
        keep_stopped(threads, flight["thread"], flight["question"], "".join(flight["parts"]))
    del st.session_state[IN_FLIGHT]


def _claim_save(flight: dict) -> bool:
    """True for the first caller only: the one that saves this turn (the stopped run, the
    run after it, or the engine with the whole answer)."""
    with flight["lock"]:
        first = not flight.get("saved")
        flight["saved"] = True
    return first


def keep_stopped(threads, thread_id: str, question: str, partial: str) -> None:
    """Save a stopped answer: the question and what had arrived, marked stopped."""
    from app.engine.answer import Answer

    record = Answer(text=partial, sources=[], cited=[], thread_id=thread_id, rewritten_query="",
                    citations="none", grounded=False)  # fmt: skip
    data = {**record.to_dict(), "stopped": True}
    threads.add_exchange(thread_id, question, partial, json.dumps(data), stopped=True)


_CITATION_GROUP = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\](?!\()")


def answer_markdown(answer, *, key: str) -> str:
    """The answer text as safe Markdown, links clickable only when a cited source has them,
    and each [n] a link to its source below the answer."""
    text = safe_markdown(only_links(answer.text, answer.links))
    known = {s.n for s in answer.sources}

    def link(match: re.Match) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if not set(numbers) <= known:
            return match.group(0)
        return "\\[" + ", ".join(f"[{n}](#{source_anchor(key, n)})" for n in numbers) + "\\]"

    return _CITATION_GROUP.sub(link, text)


def source_anchor(key: str, n: int) -> str:
    """The id of source ``n``'s heading under the answer ``key`` (see ``render_source``)."""
    return f"source-{n}-{key}".lower()


def render_answer(answer, options: ChatOptions, *, key: str, with_text: bool = True) -> None:
    """An answer, then its evidence and sources, the tools it used and how it was answered."""
    if with_text:
        st.markdown(answer_markdown(answer, key=key))
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
        st.caption("Sources, best match first; the sentences that support the answer are highlighted")
        if answer.citations == "overlap":
            st.caption("The model wrote no citations: each [n] marks a sentence that matches that source's wording.")
        for source in sorted(answer.sources, key=lambda s: -s.score):
            render_source(source, answer, options, key=key)
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
            render_source(source, answer, options, key=f"{key}-near", cited_mark=False)
    if answer.hint:
        st.info(escape_markdown(answer.hint), icon=":material/travel_explore:")


def render_source(source, answer, options: ChatOptions, *, key: str, cited_mark: bool = True) -> None:
    """One numbered source: where it is, its score, its supporting sentences highlighted, and
    a button that opens it whole in the viewer (with the PDF page, for a PDF)."""
    cited = cited_mark and source.n in answer.cited
    evidence = answer.evidence_for(source.n) if cited_mark else []
    with st.container(border=True, gap="xsmall"):
        # A heading, so that the [n] in the answer can link here (its id is the anchor).
        st.markdown(f"###### [{source.n}] {escape_markdown(source.label())}", anchors=False)
        # The id Streamlit gives a heading comes from its text; this one is ours.
        st.html(f'<span id="{source_anchor(key, source.n)}"></span>')
        facts = [f"score {source.score:.2f}"] + ([":green[:material/check: cited]"] if cited else [])
        if source.page is not None:
            facts.append(f"page {source.page}")
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.caption(" · ".join(facts))
        if right.button("Open", key=f"open-{key}-{source.n}", icon=":material/open_in_new:", type="tertiary"):
            viewer.source_dialog(source, evidence, options.store, options.indexed_files, f"{key}-{source.n}")
        spans = viewer.evidence_spans(source.text or source.snippet, evidence)
        if spans:
            st.markdown(viewer.highlighted(source.text or source.snippet, spans))
        elif evidence:  # a stored answer keeps only the snippet: quote the sentences themselves
            for e in evidence:
                st.markdown(":orange-background[" + escape_markdown(" ".join(e.text.split())) + "]")
        else:
            st.caption(escape_markdown(source.snippet))


def render_how(answer) -> None:
    """The "how this was answered" panel: the query searched, the chunks found, the timings."""
    with st.expander("How this was answered", icon=":material/manage_search:"):
        st.markdown("**Searched for:**")
        st.text(answer.rewritten_query or "(the question as asked)")
        if answer.sources:
            st.markdown("**Retrieved passages, best first:**")
            st.dataframe(
                [
                    {"n": s.n, "file": s.source, "page": "" if s.page is None else str(s.page),
                     "section": s.heading or "", "score": round(s.score, 2)}
                    for s in sorted(answer.sources, key=lambda s: -s.score)
                ],
                hide_index=True,
            )  # fmt: skip
        st.caption(timings_line(answer.timings))


def timings_line(t) -> str:
    """The timings in words a person reads at a glance."""
    parts = [f"Found in {duration(t.retrieve_ms)}"]
    if t.first_token_ms is not None:
        parts.append(f"first words after {duration(t.first_token_ms)}")
    parts.append(f"complete in {duration(t.total_ms)}")
    if t.wait_ms >= 100:
        parts.append(f"of which {duration(t.wait_ms)} preparing the models")
    parts.append(f"answer check {duration(t.check_ms)}")
    return " · ".join(parts)
