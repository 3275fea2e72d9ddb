"""Sync behaves like LangChain's indexing API in incremental mode, per folder, and the index
survives kill -9 and a second writer.

Real files, the packaged embedding model (counted through a wrapper around its
SentenceTransformer), real FAISS and SQLite; crash tests kill real ingest subprocesses at named
points of the write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.config import with_overrides
from app.errors import StoreError
from ingest import sync as sync_module
from ingest.sync import reindex_document, remove_document, sync
from vectorstore import Store, layout


class CountingEmbedder:
    """The real embedding backend, counting how many texts it is asked to embed."""

    def __init__(self, backend):
        self.backend = backend
        self.texts = 0
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return self.backend.embed(texts)


@pytest.fixture
def counting(embeddings):
    return CountingEmbedder(embeddings)


def paragraph(topic: str, n: int = 1) -> str:
    return " ".join(f"This paragraph {i} explains {topic} in plain words for the reader." for i in range(n))


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def contents(settings) -> dict[str, list[str]]:
    """What a user can observe: each document's chunk texts in order."""
    store = Store.open(settings)
    return {(d.root, d.source): [h.text for h in store.chunks_of(d.source, d.root)] for d in store.documents()}


@pytest.fixture
def docs(tmp_path):
    return write_docs(tmp_path / "docs", {
        "alpha.md": "# Alpha\n\n" + paragraph("alpine lakes", 3),
        "beta.md": "# Beta\n\n" + paragraph("beekeeping", 3),
        "sub/gamma.txt": paragraph("gamma rays", 2),
    })


def test_reindexing_one_document_parses_it_again_and_leaves_the_others(settings, docs, counting):
    sync(settings, [docs], embedder=counting)
    before = contents(settings)
    smaller = with_overrides(settings, chunk_size=120, chunk_overlap=0)  # a chunking setting changed
    summary = reindex_document(smaller, "sub/gamma.txt", str(docs), embedder=counting)
    after = contents(settings)
    assert summary.updated == ["sub/gamma.txt"] and not summary.added and not summary.deleted
    gamma = (str(docs), "sub/gamma.txt")
    assert len(after[gamma]) > len(before[gamma])  # split again at the new size
    assert {k: v for k, v in after.items() if k != gamma} == {k: v for k, v in before.items() if k != gamma}
    with pytest.raises(Exception, match="no longer in"):
        reindex_document(settings, "nope.md", str(docs), embedder=counting)


def test_first_sync_adds_everything_and_a_second_embeds_nothing(settings, docs, counting):
    first = sync(settings, [docs], embedder=counting)
    assert sorted(first.added) == ["alpha.md", "beta.md", "sub/gamma.txt"]
    assert counting.texts == first.chunks_added == len(Store.open(settings)) > 0
    second = sync(settings, [docs], embedder=counting)
    assert sorted(second.unchanged) == sorted(first.added)
    assert counting.texts == first.chunks_added and second.generation is None  # nothing embedded, nothing written


def test_unchanged_corpus_over_three_batches_is_neither_read_nor_embedded(settings, tmp_path, counting, monkeypatch):
    settings = with_overrides(settings, embed_batch_size=4)
    docs = write_docs(tmp_path / "many", {f"doc{i:02d}.md": f"# Doc {i}\n\n{paragraph(f'topic {i}', 2)}" for i in range(14)})
    first = sync(settings, [docs], embedder=counting)
    assert first.chunks_added > 3 * 4
    assert counting.calls >= 1
    calls_before, texts_before = counting.calls, counting.texts

    reads = []
    monkeypatch.setattr(sync_module, "file_sha256", lambda path: reads.append(path))
    monkeypatch.setattr(sync_module, "_parse_file", lambda parser, change: reads.append(change))
    again = sync(settings, [docs], embedder=counting)
    assert len(again.unchanged) == 14 and reads == []
    assert (counting.calls, counting.texts) == (calls_before, texts_before)


def test_touched_file_with_same_content_is_not_embedded_and_not_hashed_again(settings, docs, counting, monkeypatch):
    sync(settings, [docs], embedder=counting)
    before = counting.texts
    os.utime(docs / "alpha.md", ns=(1_000_000_000, 1_000_000_000))
    touched = sync(settings, [docs], embedder=counting)
    assert "alpha.md" in touched.unchanged and counting.texts == before
    hashed = []
    monkeypatch.setattr(sync_module, "file_sha256", lambda path: hashed.append(path))
    sync(settings, [docs], embedder=counting)
    assert hashed == []


def test_new_file_is_added_alone(settings, docs, counting):
    sync(settings, [docs], embedder=counting)
    before = counting.texts
    write_docs(docs, {"delta.md": "# Delta\n\n" + paragraph("river deltas")})
    summary = sync(settings, [docs], embedder=counting)
    assert summary.added == ["delta.md"] and summary.chunks_added == counting.texts - before == 1


def test_changed_file_replaces_its_chunks_and_reuses_unchanged_ones(settings, tmp_path, counting):
    settings = with_overrides(settings, chunk_size=200, chunk_overlap=0)
    docs = write_docs(tmp_path / "docs", {"long.md": "# Long\n\n## One\n\nOld first section about parrots.\n\n"
                                                     "## Two\n\n" + paragraph("owls") + "\n\n## Three\n\n" + paragraph("eagles")})
    sync(settings, [docs], embedder=counting)
    before = counting.texts
    (docs / "long.md").write_text((docs / "long.md").read_text().replace("Old first section about parrots",
                                                                          "New first section about penguins"))
    summary = sync(settings, [docs], embedder=counting)
    assert summary.updated == ["long.md"]
    assert counting.texts - before == 1  # only the changed chunk is embedded again
    store = Store.open(settings)
    texts = [h.text for h in store.chunks_of("long.md")]
    assert any("penguins" in t for t in texts) and not any("parrots" in t for t in texts)
    assert store.keyword_search("parrots", 5) == []
    assert len(store) == len(texts) == summary.chunks_added == summary.chunks_deleted


def test_deleted_file_leaves_the_index(settings, docs, counting, embeddings):
    sync(settings, [docs], embedder=counting)
    (docs / "beta.md").unlink()
    summary = sync(settings, [docs], embedder=counting)
    assert summary.deleted == ["beta.md"] and summary.chunks_deleted > 0
    store = Store.open(settings)
    assert "beta.md" not in {d.source for d in store.documents()}
    assert all(h.source != "beta.md" for h in store.search(embeddings.embed_query("beekeeping"), 10))
    assert store.keyword_search("beekeeping", 5) == []


def test_renamed_file_keeps_its_vectors(settings, docs, counting, embeddings):
    sync(settings, [docs], embedder=counting)
    before_texts, before_store = counting.texts, Store.open(settings)
    old_vectors = before_store.vectors([h.chunk_id for h in before_store.chunks_of("beta.md")])
    (docs / "archive").mkdir()
    (docs / "beta.md").rename(docs / "archive" / "bees.md")
    summary = sync(settings, [docs], embedder=counting)
    assert summary.renamed == [("beta.md", "archive/bees.md")] and not summary.added and not summary.deleted
    assert counting.texts == before_texts  # zero re-embedded
    store = Store.open(settings)
    moved = store.chunks_of("archive/bees.md")
    # The same vectors, under the new path (rows of an older segment move into the new one).
    assert np.array_equal(store.vectors([h.chunk_id for h in moved]), old_vectors) and store.chunks_of("beta.md") == []
    assert store.search(embeddings.embed_query("beekeeping"), 1)[0].source == "archive/bees.md"
    assert store.keyword_search("beekeeping", 1)[0].metadata["source"] == "archive/bees.md"


def test_syncing_one_folder_never_touches_another(settings, docs, tmp_path, counting):
    other = write_docs(tmp_path / "other", {"alpha.md": "# Other alpha\n\n" + paragraph("other things")})
    sync(settings, [docs], embedder=counting)
    sync(settings, [other], embedder=counting)
    (docs / "alpha.md").unlink()
    summary = sync(settings, [docs], embedder=counting)
    assert summary.deleted == ["alpha.md"]
    roots = {(d.root, d.source) for d in Store.open(settings).documents()}
    assert (str(other), "alpha.md") in roots and (str(docs), "alpha.md") not in roots


def test_include_and_exclude_limit_what_a_run_looks_at(settings, docs, counting):
    summary = sync(settings, [docs], include=["*.md"], exclude=["beta*"], embedder=counting)
    assert summary.added == ["alpha.md"]
    everything = sync(settings, [docs], embedder=counting)
    assert sorted(everything.added) == ["beta.md", "sub/gamma.txt"]
    (docs / "alpha.md").unlink()
    narrow = sync(settings, [docs], include=["*.txt"], embedder=counting)
    assert narrow.deleted == []  # alpha.md is outside this run's scope: left as it is
    assert "alpha.md" in {d.source for d in Store.open(settings).documents()}


def test_full_rebuilds_from_scratch(settings, docs, counting):
    first = sync(settings, [docs], embedder=counting)
    old_ids = {h.chunk_id for d in Store.open(settings).documents() for h in Store.open(settings).chunks_of(d.source)}
    full = sync(settings, [docs], full=True, embedder=counting)
    assert sorted(full.added) == sorted(first.added) and counting.texts == 2 * first.chunks_added
    new_ids = {h.chunk_id for h in Store.open(settings).chunks_of("alpha.md")}
    assert new_ids.isdisjoint(old_ids)  # ids are allocated afresh, never reused


def test_full_with_another_model_re_embeds_and_records_it(settings, docs, counting):
    from app.backends.huggingface import embedding_model_path

    sync(settings, [docs], embedder=counting)
    other = with_overrides(settings, embedding_model=embedding_model_path(settings.embedding_model_name))
    with pytest.raises(StoreError, match="--full"):
        Store.open(other)
    sync(other, [docs], full=True)  # loads the model named by the settings
    assert Store.open(other).model_name == other.embedding_model_name


def test_dry_run_lists_changes_and_writes_nothing(settings, docs, counting):
    sync(settings, [docs], embedder=counting)
    generation = Store.open(settings).generation
    (docs / "alpha.md").write_text("# Alpha\n\nrewritten " + paragraph("new"))
    (docs / "sub/gamma.txt").unlink()
    write_docs(docs, {"new.md": "# New\n\n" + paragraph("novelty")})
    before = counting.texts
    summary = sync(settings, [docs], dry_run=True, embedder=counting)
    assert (summary.added, summary.updated, summary.deleted) == (["new.md"], ["alpha.md"], ["sub/gamma.txt"])
    assert counting.texts == before and Store.open(settings).generation == generation


def test_remove_document_for_the_ui(settings, docs, counting):
    sync(settings, [docs], embedder=counting)
    assert remove_document(settings, "beta.md") > 0
    assert "beta.md" not in {d.source for d in Store.open(settings).documents()}
    with pytest.raises(Exception, match="not in the index"):
        remove_document(settings, "beta.md")
    # The file is still in the folder, so the next sync of the folder brings it back.
    assert sync(settings, [docs], embedder=counting).added == ["beta.md"]


# -- the CLI ----------------------------------------------------------------------------------
@pytest.fixture
def shared_model(monkeypatch, embeddings):
    """The CLI builds its own embeddings; hand it the session's already-loaded real model."""
    import app.backends

    monkeypatch.setattr(app.backends, "embedding_backend", lambda settings: embeddings)


def test_cli_prints_a_summary_and_json(docs, capsys, shared_model):
    write_docs(docs, {"bad.txt": ""})
    assert main(["ingest", str(docs)]) == 0
    out = capsys.readouterr().out
    assert "3 added" in out and "failed: bad.txt: empty" in out and "chunks:" in out
    assert main(["ingest", str(docs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["unchanged"] == 3 and data["failed"] == [["bad.txt", "empty: no text found"]]
    assert data["generation"] is None and data["chunks_embedded"] == 0


def test_cli_dry_run_and_default_folder(settings, capsys, shared_model):
    assert main(["ingest", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "it is empty" in captured.out and settings.docs_path.is_dir()
    write_docs(settings.docs_path, {"a.md": "# A\n\n" + paragraph("apples")})
    assert main(["ingest", "--dry-run"]) == 0
    assert "Would change" in capsys.readouterr().out and not settings.index_path.joinpath(layout.CURRENT).exists()
    assert main(["ingest"]) == 0
    assert "1 added" in capsys.readouterr().out and len(Store.open(settings)) == 1


def test_cli_exits_non_zero_only_when_nothing_could_be_ingested(tmp_path, capsys, shared_model):
    bad = write_docs(tmp_path / "bad", {"empty.md": "", "also-empty.txt": "  \n"})
    assert main(["ingest", str(bad)]) == 1
    assert "nothing could be ingested" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- crashes and a second writer --------------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from vectorstore import writer

    def checkpoint(name):
        if name == sys.argv[1]:
            print("AT " + name, flush=True)
            sys.stdin.readline()  # hold here until the test says go, or kills us

    writer.checkpoint = checkpoint

    if __name__ == "__main__":  # files are parsed in child processes, which import this module
        from app.config import load_settings
        from ingest.sync import sync

        summary = sync(load_settings(env_file=None), [Path(sys.argv[2])], full=sys.argv[3:] == ["full"])
        print("DONE", summary.generation, flush=True)
""")


def start_paused_ingest(tmp_path: Path, docs: Path, point: str, *, full: bool = False) -> subprocess.Popen:
    script = tmp_path / "child_ingest.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), point, str(docs)] + (["full"] if full else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if line.strip() != f"AT {point}":
        child.kill()
        pytest.fail(f"child ingest never reached {point}: {line!r} {child.stderr.read()[-2000:]}")
    return child


def before_and_after(settings, docs, embeddings, tmp_path, *, new_text: bool = False):
    """An index of `docs` (before), then changes on disk, and what a clean ingest of them gives (after).

    Without `new_text` the changes (a delete, a rename, a touch) need no embedding, so the child
    ingest that is killed does not have to load the model: the write path is the same.
    """
    sync(settings, [docs], embedder=embeddings)
    before = contents(settings)
    (docs / "beta.md").unlink()
    (docs / "sub" / "gamma.txt").rename(docs / "sub" / "gamma-2.txt")
    os.utime(docs / "alpha.md", ns=(1_000_000_000, 1_000_000_000))
    if new_text:
        write_docs(docs, {"epsilon.md": "# Epsilon\n\n" + paragraph("small numbers")})
    clean = with_overrides(settings, index_dir=tmp_path / "clean-index")
    sync(clean, [docs], embedder=embeddings)
    return before, contents(clean)


def kill_at(point: str, settings, docs, tmp_path, embeddings, *, new_text: bool = False, survivor: str) -> None:
    before, after = before_and_after(settings, docs, embeddings, tmp_path, new_text=new_text)
    child = start_paused_ingest(tmp_path, docs, point)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert contents(settings) == (before if survivor == "before" else after)
    sync(settings, [docs], embedder=embeddings)  # the next ingest finishes the job and cleans up
    assert contents(settings) == after
    generations = sorted(p.name for p in settings.index_path.glob("gen-*"))  # killed writes' folders removed:
    assert generations[-1] == layout.current_generation(settings.index_path).name  # the live one, and
    assert len(generations) <= 2  # the one before it, kept for readers that opened it just before the switch


@pytest.mark.parametrize("point, survivor", [("copied", "before"), ("segment-written", "before"),
                                             ("vectors-written", "before"),
                                             ("manifest-written", "before"), ("switched", "after")])
def test_kill_9_at_any_point_leaves_the_old_or_the_new_index(settings, docs, tmp_path, embeddings, point, survivor):
    kill_at(point, settings, docs, tmp_path, embeddings, survivor=survivor)


def test_kill_9_after_embedding_new_text_leaves_the_old_index(settings, docs, tmp_path, embeddings):
    kill_at("vectors-written", settings, docs, tmp_path, embeddings, new_text=True, survivor="before")


def test_a_second_ingest_waits_then_says_another_is_running(settings, docs, tmp_path, embeddings, capsys,
                                                            shared_model, monkeypatch):
    before, after = before_and_after(settings, docs, embeddings, tmp_path)
    child = start_paused_ingest(tmp_path, docs, "locked")  # holds the lock
    monkeypatch.setenv("DOCCHAT_INGEST_LOCK_TIMEOUT_S", "0.2")
    assert main(["ingest", str(docs)]) == 2
    assert "Another `docchat ingest` is writing the index" in capsys.readouterr().err
    assert contents(settings) == before  # readers need no lock and see a finished generation
    out, err = child.communicate("go\n")
    assert out.startswith("DONE"), err[-2000:]
    assert contents(settings) == after
    assert main(["ingest", str(docs)]) == 0  # the lock is free again


# -- a mail's attachments: documents of their own, tied to their mail ---------------------------
def mail_with(attachments: dict[str, bytes], subject: str = "Harbour board") -> bytes:
    import email.message

    message = email.message.EmailMessage()
    message["Subject"], message["From"], message["Date"] = subject, "Ada <ada@example.org>", "Mon, 02 Mar 2026 09:15:00 +0000"
    message.set_content("The board met and approved the attached report.")
    for name, data in attachments.items():
        kind = ("application", "pdf") if name.endswith(".pdf") else ("text", "markdown")
        message.add_attachment(data, maintype=kind[0], subtype=kind[1], filename=name)
    return message.as_bytes()


def two_page_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Pier report")
    for text in ("The crane on the north quay was repainted in May.",
                 "The pier budget for next year is forty thousand euros."):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def test_mail_attachments_are_documents_of_their_own_that_follow_their_mail(settings, tmp_path, counting):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "board.eml").write_bytes(mail_with({
        "report.pdf": two_page_pdf(), "broken.pdf": b"%PDF-1.4 cut short",
        "../../etc/\u202eevil<b>.md": b"# Ferry\n\nThe ferry to the island leaves at nine from the north quay.",
    }))
    first = sync(settings, [docs], embedder=counting)
    report, notes = "board.eml \u203a report.pdf", "board.eml \u203a evil_b_.md"
    assert sorted(first.added) == ["board.eml", notes, report]  # the name: no folders, no bidi override, no markup
    assert dict(first.failed) == {"board.eml \u203a broken.pdf": "corrupt or unsupported PDF (PdfStreamError: "
                                                                  "Stream has ended unexpectedly)"}
    store = Store.open(settings)
    titles = {d.source: d.title for d in store.documents()}
    assert titles[report] == "Pier report (attached to: Harbour board)"
    hit = store.keyword_search("pier budget euros", 1)[0]
    assert (hit.source, hit.page) == (report, 2)  # cited as its own document, at its own page

    (docs / "board.eml").write_bytes(mail_with({"report.pdf": two_page_pdf()}))  # the mail changed
    changed = sync(settings, [docs], embedder=counting)
    assert changed.updated == ["board.eml", report] and changed.deleted == [notes]
    (docs / "board.eml").rename(docs / "minutes.eml")
    renamed = sync(settings, [docs], embedder=counting)
    assert sorted(renamed.renamed) == [("board.eml", "minutes.eml"), (report, "minutes.eml \u203a report.pdf")]
    fresh = with_overrides(settings, index_dir=tmp_path / "fresh")
    sync(fresh, [docs], embedder=counting)
    assert contents(settings) == contents(fresh)  # the same index as a fresh ingest of the folder
    with pytest.raises(Exception, match="is an attachment of 'minutes.eml'"):
        remove_document(settings, "minutes.eml \u203a report.pdf", str(docs))
    assert reindex_document(settings, "minutes.eml \u203a report.pdf", str(docs), embedder=counting).updated == \
        ["minutes.eml", "minutes.eml \u203a report.pdf"]  # read again with its mail
    (docs / "minutes.eml").unlink()
    gone = sync(settings, [docs], embedder=counting)
    assert gone.deleted == ["minutes.eml", "minutes.eml \u203a report.pdf"] and not Store.open(settings).documents()
