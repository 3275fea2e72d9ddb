"""What sits under each message: copy, thumbs up/down with a note, regenerate (the last
answer), and edit-and-resend (questions).

Buttons act in callbacks, before the page is drawn again: regenerate and resend cut the
thread back to before the question (``ThreadStore.truncate``) and leave the question in
``st.session_state[PENDING]``, which the page asks as if it had been typed.
"""

from __future__ import annotations

import streamlit as st

from app.ui.sanitize import escape_markdown

PENDING = "pending_question"  # a question to ask on this run (regenerate, resend, examples)
FEEDBACK = {1: "up", 0: "down"}


def answer_controls(options, message, answer, question, *, last: bool) -> None:
    """Copy, feedback (with a note) and, on the last answer, regenerate."""
    if message.id is None:
        return
    threads = options.threads
    with st.container(horizontal=True, gap="small", vertical_alignment="center"):
        with st.popover("Copy", icon=":material/content_copy:", type="tertiary",
                        help="The answer as Markdown, with its sources"):  # fmt: skip
            st.caption("The copy button is at the top right of the box.")
            st.code(copy_text(message, answer), language="markdown", wrap_lines=True)
        st.feedback("thumbs", key=f"fb-{message.id}", default=message.feedback,
                    on_change=_save_feedback, args=(threads, message.id))  # fmt: skip
        with st.popover("Note", icon=":material/edit_note:", type="tertiary",
                        help="A note with your rating (kept with the conversation, in its export)"):  # fmt: skip
            with st.form(f"note-form-{message.id}", border=False):
                st.text_area("What was right or wrong?", value=message.note, key=f"note-{message.id}")
                st.form_submit_button("Save the note", key=f"save-note-{message.id}", on_click=_save_feedback,
                                      args=(threads, message.id))  # fmt: skip
        if last and question is not None:
            st.button("Regenerate", key=f"regen-{message.id}", icon=":material/refresh:", type="tertiary",
                      on_click=resend, args=(threads, options.thread_id, question.id, question.content))  # fmt: skip
        if message.note:
            st.caption(escape_markdown(f"Note: {message.note}"))


def question_controls(options, message) -> None:
    """Edit the question and send it again (what followed it is replaced)."""
    if message.id is None:
        return
    with st.popover("Edit", icon=":material/edit:", type="tertiary", help="Edit and resend this question"):
        # A form: the edited text and the click arrive together (a text area alone commits on blur).
        with st.form(f"edit-form-{message.id}", border=False):
            st.text_area("Question", value=message.content, key=f"edit-{message.id}")
            st.caption("Sending it again replaces this question's answer and everything after it.")
            st.form_submit_button("Send", key=f"resend-{message.id}", icon=":material/send:", type="primary",
                                  on_click=_resend_edited, args=(options.threads, options.thread_id, message))  # fmt: skip


def copy_text(message, answer) -> str:
    """The answer as Markdown with its numbered sources below it."""
    text = message.content.strip()
    if answer is None or not answer.sources:
        return text
    lines = [text, "", "Sources:"]
    for source in sorted(answer.sources, key=lambda s: s.n):
        lines.append(f"[{source.n}] {source.label()}")
    return "\n".join(lines)


def resend(threads, thread_id: str, message_id: int, question: str) -> None:
    """Cut the thread back to before ``message_id`` and ask ``question`` on this run."""
    threads.truncate(thread_id, message_id)
    st.session_state[PENDING] = question


def _resend_edited(threads, thread_id: str, message) -> None:
    edited = st.session_state.get(f"edit-{message.id}", "").strip()
    if edited:
        resend(threads, thread_id, message.id, edited)


def _save_feedback(threads, message_id: int) -> None:
    value = st.session_state.get(f"fb-{message_id}")
    note = st.session_state.get(f"note-{message_id}", "")
    threads.set_feedback(message_id, value, note or "")
