"""Per-file upload progress: the rows the page draws follow a real ingest (real parser
workers, real embedding model, real index), each file on its own row from queued through
parsing and embedding to indexed, or to failed / not added with the reason.

The page itself (AppTest) is in test_ui_page.py, the browser in test_ui_browser.py.
"""

from __future__ import annotations

import pytest

from app.ui import library
from app.ui.upload_progress import FileRows
from app.ui.uploads import Upload

GUIDE = b"# Widgets\n\nA sprocket widget turns at 40 rpm and needs oiling every week.\n"
FAQ = b"<html><body><h1>FAQ</h1><p>The warranty lasts <b>three years</b>.</p></body></html>"
BROKEN_PDF = b"%PDF-1.7 this is not really a PDF"


@pytest.mark.slow
def test_each_uploaded_file_moves_along_its_own_row(settings, embeddings):
    uploads = [Upload("guide.md", GUIDE), Upload("faq.html", FAQ), Upload("guide.md", GUIDE),
               Upload("broken.pdf", BROKEN_PDF), Upload("tool.exe", b"MZ")]  # fmt: skip
    rows = FileRows([u.name for u in uploads])
    seen: dict[int, list[str]] = {i: [row.state] for i, row in enumerate(rows.rows)}
    texts: list[str] = []

    def record(changed) -> None:
        for row in changed:
            states = seen[rows.rows.index(row)]
            if states[-1] != row.state:
                states.append(row.state)
            texts.append(row.text)

    saved, summary = library.add_uploads(
        settings, uploads, embedder=embeddings, on_saved=lambda saved: record(rows.saved(saved, settings.docs_path)),
        progress=lambda event: record(rows(event)),
    )  # fmt: skip

    journey = ["queued", "parsing", "parsed", "embedding", "writing", "indexed"]
    assert seen[0] == journey and seen[1] == journey
    assert seen[2] == journey and rows.rows[2].source == "guide-2.md"  # the same name twice: two rows
    assert seen[3] == ["queued", "parsing", "failed"] and "broken.pdf · failed: " in rows.rows[3].text
    assert seen[4] == ["queued", "not added"] and "cannot read .exe" in rows.rows[4].text
    assert rows.rows[0].text == "guide.md · indexed, 1 passage"
    assert any(t.startswith("faq.html · embedding 0/") for t in texts)  # counted per file while embedding
    assert sorted(summary.added) == ["faq.html", "guide-2.md", "guide.md"]
    assert [state for state, _ in rows.report()] == ["indexed", "indexed", "indexed", "failed", "not added"]
