"""E-mail: .eml (one message) and .mbox (many), with Python's own email parser.

Each message is a section headed "Subject (From, Date)"; its text body (HTML through the
HTML loader when there is no plain part); forwarded messages (message/rfc822) as sections of
their own. Each attached file of a supported type is parsed here, in the same worker under the
same limits, by its own format's parser, and returned as a document of its own
(``ParsedDocument.attachments``): sync indexes it as "mail.eml › report.pdf" with its own
title and locations (see ``ingest.attachments``). Inside an attached mail file, attachments
stay sections of that document. Unsupported or unreadable attachments are reported; the mail
and its other attachments are still read. At most ``MAX_ATTACHMENTS`` per mail file; each is
no larger than the mail, which ``DOCCHAT_MAX_FILE_MB`` bounds.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import tempfile
from pathlib import Path

from ingest.attachments import MAX_ATTACHMENTS, safe_name, unique_name
from ingest.documents import Attachment, ParsedDocument, Section, UnreadableFile

MAX_ATTACHMENT_DEPTH = 2  # a mail attached to a mail attached to a mail is not read further


def parse_eml(path: Path, options: dict | None = None) -> ParsedDocument:
    from ingest.loaders import stem_title

    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    if not message.keys():
        raise UnreadableFile("not an e-mail message (no headers)")
    mail = _Mail(options)
    sections = mail.sections(message, int((options or {}).get("mail_depth", 0)))
    return ParsedDocument(str(message.get("subject") or "") or stem_title(path.name), sections, mail.notes,
                          mail.attachments)


def parse_mbox(path: Path, options: dict | None = None) -> ParsedDocument:
    from ingest.loaders import stem_title

    box = mailbox.mbox(str(path), factory=lambda f: email.message_from_binary_file(f, policy=email.policy.default),
                       create=False)
    mail = _Mail(options)
    sections = []
    try:
        for message in box:
            if message is not None and message.keys():
                sections += mail.sections(message, 0)
    finally:
        box.close()
    if not sections:
        raise UnreadableFile("no messages found (not an mbox mailbox?)")
    return ParsedDocument(stem_title(path.name), sections, mail.notes, mail.attachments)


class _Mail:
    """Reads the messages of one mail file, collecting its attachments and notes."""

    def __init__(self, options: dict | None):
        self.options = options or {}
        # Inside an attached mail file, its own attachments are sections of it (one level of documents).
        self.inline = bool(self.options.get("inline_attachments"))
        self.notes: list[str] = []
        self.attachments: list[Attachment] = []
        self.names: set[str] = set()
        self.seen = 0

    def sections(self, message, depth: int) -> list[Section]:
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
            sections += self._attachment(part, heading, subject, depth)
        return sections

    def _attachment(self, part, heading: str, subject: str, depth: int) -> list[Section]:
        from ingest.loaders import format_of

        if part.get_content_type() == "message/rfc822":  # a forwarded message: part of this mail's text
            if depth >= MAX_ATTACHMENT_DEPTH:
                self.notes.append(f"forwarded message not read: mail nested more than {MAX_ATTACHMENT_DEPTH} deep")
                return []
            inner = part.get_payload()[0] if isinstance(part.get_payload(), list) else None
            return self.sections(inner, depth + 1) if inner is not None else []
        self.seen += 1
        name = safe_name(part.get_filename(), self.seen)
        kind = format_of(Path(name))
        if kind is None or kind == "mbox":
            self.notes.append(f"attachment {name} not read: unsupported file type {Path(name).suffix or '(no extension)'}")
            return []
        if kind == "eml" and depth + 1 > MAX_ATTACHMENT_DEPTH:
            self.notes.append(f"attachment {name} not read: mail nested more than {MAX_ATTACHMENT_DEPTH} deep")
            return []
        if self.seen > MAX_ATTACHMENTS:
            if self.seen == MAX_ATTACHMENTS + 1:
                self.notes.append(f"attachments after the first {MAX_ATTACHMENTS} not read (a bound against "
                                  "mail bombs): save them as files to ingest them")
            return []
        data = part.get_payload(decode=True) or b""
        try:
            document = _parse_attachment(kind, name, data, {**self.options, "mail_depth": depth + 1,
                                                            "inline_attachments": True})
        except (MemoryError, RecursionError):
            raise  # the worker's state is in doubt: the whole file fails and the worker is replaced
        except UnreadableFile as exc:
            document, error = None, str(exc)
        except Exception as exc:  # one attachment's parser failing is that attachment's problem only
            document, error = None, f"parser failed ({type(exc).__name__}: {exc})"
        else:  # as sync says it of a file (e.g. a scanned PDF without Tesseract: "needs OCR ... install ...")
            error = None if not document.is_empty else "no text found: " + ("; ".join(document.notes) or "empty")
        if self.inline:
            if error:
                self.notes.append(f"attachment {name} not read: {error}")
                return []
            self.notes += [f"attachment {name}: {note}" for note in document.notes]
            for section in document.sections:
                where = f"{heading} > attachment {name}"
                section.heading = f"{where} > {section.heading}" if section.heading else where
            return document.sections
        if document is not None and error is None:
            document.title = f"{document.title} (attached to: {subject[:80]})"
        self.attachments.append(Attachment(unique_name(name, self.names), hashlib.sha256(data).hexdigest(), len(data),
                                           None if error else document, error))
        return []


def _parse_attachment(kind: str, name: str, data: bytes, options: dict) -> ParsedDocument:
    """Parse an attachment's bytes with its format's parser (files are what the parsers read)."""
    from ingest.loaders import parse_file

    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / ("attachment" + Path(name).suffix.lower())
        file.write_bytes(data)
        return parse_file(kind, file, options)


def _content(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError):  # an unknown or lying charset
        return (part.get_payload(decode=True) or b"").decode("utf-8", "replace")


