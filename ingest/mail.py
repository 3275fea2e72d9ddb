"""E-mail: .eml (one message) and .mbox (many), with Python's own email parser.

Each message is a section headed "Subject (From, Date)"; its text body (HTML through the
HTML loader when there is no plain part). Attachments of a supported type are parsed in
the same worker as their own sections, headed "Subject > attachment NAME" (keeping their
pages); unsupported or unreadable ones are noted.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import tempfile
from pathlib import Path

from ingest.documents import ParsedDocument, Section, UnreadableFile

MAX_ATTACHMENT_DEPTH = 2  # a mail attached to a mail attached to a mail is not read further


def parse_eml(path: Path, options: dict | None = None) -> ParsedDocument:
    from ingest.loaders import stem_title

    depth = int((options or {}).get("mail_depth", 0))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    if not message.keys():
        raise UnreadableFile("not an e-mail message (no headers)")
    notes: list[str] = []
    sections = _message_sections(message, options, depth, notes)
    return ParsedDocument(str(message.get("subject") or "") or stem_title(path.name), sections, notes)


def parse_mbox(path: Path, options: dict | None = None) -> ParsedDocument:
    from ingest.loaders import stem_title

    box = mailbox.mbox(str(path), factory=lambda f: email.message_from_binary_file(f, policy=email.policy.default),
                       create=False)
    notes: list[str] = []
    sections = []
    try:
        for message in box:
            if message is not None and message.keys():
                sections += _message_sections(message, options, 0, notes)
    finally:
        box.close()
    if not sections:
        raise UnreadableFile("no messages found (not an mbox mailbox?)")
    return ParsedDocument(stem_title(path.name), sections, notes)


def _message_sections(message, options, depth: int, notes: list[str]) -> list[Section]:
    from ingest.loaders import parse_html

    subject = " ".join(str(message.get("subject") or "(no subject)").split())
    heading = f"{subject} ({message.get('from', 'unknown sender')}, {message.get('date', 'no date')})"
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        content = _content(body)
        if body.get_content_subtype() == "html":
            text = "\n".join(s.text for s in parse_html(content.encode("utf-8"), "mail.html").sections)
        else:
            text = content
    header = f"Subject: {subject}\nFrom: {message.get('from', '')}\nTo: {message.get('to', '')}\nDate: {message.get('date', '')}"
    sections = [Section(header + "\n\n" + text.strip(), heading)]
    for part in message.iter_attachments():
        sections += _attachment(part, heading, options, depth, notes)
    return sections


def _content(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError):  # an unknown or lying charset
        return (part.get_payload(decode=True) or b"").decode("utf-8", "replace")


def _attachment(part, heading: str, options, depth: int, notes: list[str]) -> list[Section]:
    from ingest.loaders import format_of, parse_file

    name = Path(part.get_filename() or "attachment").name
    if part.get_content_type() == "message/rfc822" and depth < MAX_ATTACHMENT_DEPTH:
        inner = part.get_payload()[0] if isinstance(part.get_payload(), list) else None
        return _message_sections(inner, options, depth + 1, notes) if inner is not None else []
    kind = format_of(Path(name))
    if kind == "eml" and depth >= MAX_ATTACHMENT_DEPTH:
        notes.append(f"attachment {name} not read: mail nested more than {MAX_ATTACHMENT_DEPTH} deep")
        return []
    if kind is None or kind == "mbox":
        notes.append(f"attachment {name} not read: unsupported file type {Path(name).suffix or '(no extension)'}")
        return []
    data = part.get_payload(decode=True) or b""
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / ("attachment" + Path(name).suffix.lower())
        file.write_bytes(data)
        try:
            document = parse_file(kind, file, {**(options or {}), "mail_depth": depth + 1})
        except UnreadableFile as exc:
            notes.append(f"attachment {name} not read: {exc}")
            return []
    notes += [f"attachment {name}: {note}" for note in document.notes]
    for section in document.sections:
        where = f"{heading} > attachment {name}"
        section.heading = f"{where} > {section.heading}" if section.heading else where
    return document.sections
