"""Regression tests for the adversarial run (issue 10): hostile files, hostile index damage,
symlinks, concurrent writers and readers, hostile upload names and download records.

Files in, errors and index state out, with the real parsers (in their child processes), the
packaged embedding model, FAISS and SQLite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from app.cli import main
from app.config import with_overrides
from app.errors import StoreError
from app.ui import library
from app.ui.sanitize import downloadable_file, file_inside, safe_filename
from app.ui.uploads import Upload, save_uploads
from ingest.documents import UnreadableFile
from ingest.isolation import Parser
from ingest.loaders import parse_markdown
from ingest.sync import sync
from tests.test_ingest_sync import contents, paragraph, start_paused_ingest, write_docs
from vectorstore import Store, layout


@pytest.fixture
def docs(tmp_path):
    return write_docs(tmp_path / "docs", {
        "alpha.md": "# Alpha\n\n" + paragraph("alpine lakes", 3),
        "beta.md": "# Beta\n\n" + paragraph("beekeeping", 3),
    })


def sources(settings) -> set[str]:
    return {d.source for d in Store.open(settings).documents()}


# -- 1. one bad file never stops or hangs the ingest -------------------------------------------
def test_markdown_heading_followed_by_thousands_of_spaces_parses_at_once():
    started = time.perf_counter()
    document = parse_markdown("# a" + " " * 200_000 + "b\n\nbody text\n", "x.md")
    assert time.perf_counter() - started < 2  # the old pattern needed 150 s for 2,000 spaces
    assert document.title.startswith("a") and document.title.endswith("b")


@pytest.mark.parametrize("line, heading", [("## Setup ##", "Setup"), ("# C#", "C#"), ("### Q & A  #  ", "Q & A"),
                                           ("#hashtag", None), ("####### seven", None)])
def test_markdown_atx_headings(line, heading):
    document = parse_markdown(f"{line}\n\nSome body text under it.", "n.md")
    assert (document.sections[0].heading if heading else None) == heading


def test_a_parser_that_never_returns_is_stopped_and_the_next_file_parses(tmp_path):
    fifo = tmp_path / "never.md"
    os.mkfifo(fifo)  # the worker's read blocks forever: a stand-in for any parser that hangs
    (tmp_path / "fine.md").write_text("# Fine\n\nParsed by a fresh worker.")
    started = time.perf_counter()
    with Parser(timeout_s=0.5, workers=1) as parser:
        with pytest.raises(UnreadableFile, match="longer than DOCCHAT_PARSE_TIMEOUT_S=0.5 s"):
            parser.parse("markdown", fifo)
        assert parser.parse("markdown", tmp_path / "fine.md").title == "Fine"  # the stuck worker was replaced
    assert time.perf_counter() - started < 10


def test_hostile_files_are_each_reported_and_the_rest_ingests(settings, docs, embeddings, capsys):
    (docs / "heading.md").write_text("# a" + " " * 60_000 + "b\n\nThe text under the very long heading.\n")
    (docs / "wide.csv").write_text("name,notes\nlong," + "x" * 200_000 + "\nshort,a plain value in a plain row\n")
    (docs / os.fsdecode(b"bad\xffname.md")).write_text("# Bad name\n\nThe content is fine, the name is not.")
    (docs / "random.html").write_bytes(__import__("random").Random(7).randbytes(4096))
    (docs / "utf16.txt").write_bytes("Le café est ouvert le dimanche matin.".encode("utf-16"))
    summary = sync(settings, [docs], embedder=embeddings)
    failed = dict(summary.failed)
    assert failed["bad\\xffname.md"] == "the file name is not valid UTF-8: rename the file"
    assert "binary content" in failed["random.html"]
    assert sorted(summary.added) == ["alpha.md", "beta.md", "heading.md", "utf16.txt", "wide.csv"]
    store = Store.open(settings)
    assert "café est ouvert" in store.chunks_of("utf16.txt")[0].text
    assert any("x" * 500 in hit.text for hit in store.chunks_of("wide.csv"))
    assert main(["ingest", str(docs)]) == 0  # the CLI prints the undecodable name without failing
    assert "failed: bad\\xffname.md" in capsys.readouterr().out


def test_a_docx_inflating_150_fold_is_refused_at_once(settings, docs, embeddings):
    with zipfile.ZipFile(docs / "bomb.docx", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:p><w:r><w:t>x</w:t></w:r></w:p>" * 280_000)  # 9.5 MB
    assert (docs / "bomb.docx").stat().st_size < 200_000
    started = time.perf_counter()
    summary = sync(settings, [docs], embedder=embeddings)
    assert "zip bomb" in dict(summary.failed)["bomb.docx"]
    assert time.perf_counter() - started < 30  # was a 60 s parse timeout on every sync


# -- 1 and 5. the lock is held only to publish: concurrent ingests all land --------------------
def test_a_second_ingest_runs_while_the_first_embeds_and_both_land(settings, docs, tmp_path, embeddings, monkeypatch):
    other = write_docs(tmp_path / "other", {"gamma.md": "# Gamma\n\n" + paragraph("gamma rays", 2)})
    child = start_paused_ingest(tmp_path, docs, "embedded")  # parsed and embedded, lock not taken
    monkeypatch.setenv("DOCCHAT_INGEST_LOCK_TIMEOUT_S", "0.2")
    assert main(["ingest", str(other)]) == 0  # needs the lock only to publish: free
    saved, summary = library.add_uploads(settings, [Upload("up.md", b"# Up\n\n" + paragraph("uploads").encode())],
                                         embedder=embeddings)  # so does an upload from the page
    assert summary.added == ["up.md"]
    out, err = child.communicate("go\n")
    assert out.startswith("DONE"), err[-2000:]
    assert {root for root, _ in contents(settings)} == {str(docs), str(other), str(settings.docs_path)}


@pytest.mark.slow
def test_two_cli_ingests_started_together_both_end_in_the_index(settings, tmp_path):
    folders = [write_docs(tmp_path / name, {f"{name}.md": f"# {name}\n\n" + paragraph(name, 2)}) for name in ("a", "b")]
    env = {**os.environ, "DOCCHAT_DATA_DIR": str(settings.data_path)}
    runs = [subprocess.Popen([sys.executable, "-m", "app.cli", "ingest", str(f)], env=env, cwd=Path(__file__).parent.parent,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in folders]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
    assert {root for root, _ in contents(settings)} == {str(f) for f in folders}


# -- 2. --full is built beside the live index ---------------------------------------------------
@pytest.mark.parametrize("point", [pytest.param("copied", marks=pytest.mark.slow),
                                   pytest.param("vectors-written", marks=pytest.mark.slow), "manifest-written"])
def test_full_rebuild_keeps_the_old_index_searchable_until_it_switches(settings, docs, tmp_path, embeddings, point):
    sync(settings, [docs], embedder=embeddings)
    before = contents(settings)
    child = start_paused_ingest(tmp_path, docs, point, full=True)
    assert contents(settings) == before  # searchable during the rebuild
    child.kill()
    child.communicate()
    assert contents(settings) == before  # and after a kill -9 inside it


def test_full_rebuild_repairs_a_current_pointer_replaced_by_a_folder(settings, docs, embeddings):
    sync(settings, [docs], embedder=embeddings)
    current = settings.index_path / layout.CURRENT
    current.unlink()
    current.mkdir()
    with pytest.raises(StoreError, match="is a folder"):
        Store.open(settings)
    sync(settings, [docs], full=True, embedder=embeddings)
    assert sources(settings) == {"alpha.md", "beta.md"}


# -- 3. symlinks --------------------------------------------------------------------------------
def test_links_out_of_the_folder_are_not_followed_and_are_reported(settings, docs, tmp_path, embeddings):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (docs / "passwd.txt").symlink_to(secret)
    (docs / "alias.md").symlink_to(docs / "alpha.md")  # inside the folder: followed
    (docs / "loop.md").symlink_to(docs / "loop.md")
    (docs / "gone.md").symlink_to(tmp_path / "missing.md")
    (docs / "etc").symlink_to(tmp_path)
    os.mkfifo(docs / "pipe.md")
    summary = sync(settings, [docs], embedder=embeddings)
    skipped = dict(summary.skipped)
    assert "outside the ingested folder" in skipped["passwd.txt"] and "DOCCHAT_FOLLOW_EXTERNAL_SYMLINKS" in skipped["passwd.txt"]
    assert "loop" in skipped["loop.md"] and "broken" in skipped["gone.md"]
    assert "folder" in skipped["etc"] and "FIFO" in skipped["pipe.md"]
    assert sources(settings) == {"alpha.md", "alias.md", "beta.md"}
    allowed = with_overrides(settings, follow_external_symlinks=True)
    assert "passwd.txt" in sync(allowed, [docs], embedder=embeddings).added


def test_removing_a_linked_document_never_deletes_the_link_target(settings, tmp_path, embeddings):
    precious = tmp_path / "precious.md"
    precious.write_text("# Precious\n\n" + paragraph("a file that is not the app's", 2))
    settings.docs_path.mkdir(parents=True)
    (settings.docs_path / "own.md").write_text("# Own\n\n" + paragraph("uploaded things", 2))
    (settings.docs_path / "link.md").symlink_to(settings.docs_path / "own.md")
    library.sync_folder(settings, embedder=embeddings)
    assert sources(settings) == {"own.md", "link.md"}
    assert library.remove(settings, "link.md", str(settings.docs_path)) is True
    assert (settings.docs_path / "own.md").is_file() and not (settings.docs_path / "link.md").is_symlink()
    assert sources(settings) == {"own.md"}
    outside = tmp_path / "outside"
    outside.mkdir()
    (settings.docs_path / "sub").symlink_to(outside)  # a folder reached through a link is not the app's
    (outside / "precious.md").symlink_to(precious)
    assert library._delete_own_entry(settings.docs_path / "sub" / "precious.md", settings.docs_path) is False
    assert precious.is_file()


# -- 4. every kind of damage: one message, bounded reads, no hang --------------------------------
def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE = {
    "binary CURRENT": lambda index, gen, key: (index / "CURRENT").write_bytes(b"\xff\xfe\x00gen\x81"),
    "10 MB CURRENT": lambda index, gen, key: (index / "CURRENT").write_bytes(b"gen-000001" + b" " * 10_000_000),
    "CURRENT folder": lambda index, gen, key: _folder(index / "CURRENT"),
    "CURRENT FIFO": lambda index, gen, key: _fifo(index / "CURRENT"),
    "manifest folder": lambda index, gen, key: _folder(gen / "manifest.json"),
    "manifest FIFO": lambda index, gen, key: _fifo(gen / "manifest.json"),
    "manifest 200k deep": lambda index, gen, key: (gen / "manifest.json").write_text("[" * 200_000 + "]" * 200_000),
    "vectors FIFO": lambda index, gen, key: _fifo(next(gen.glob("seg-*.faiss"))),
    "segment rows folder": lambda index, gen, key: _folder(next(gen.glob("seg-*.sqlite"))),
    "key folder": lambda index, gen, key: _folder(key),
    "key FIFO": lambda index, gen, key: _fifo(key),
    "key binary": lambda index, gen, key: key.write_bytes(b"\x00\xff" * 40),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_kind_of_damage_is_refused_with_one_message_and_the_fix(settings, docs, embeddings, capsys, damage):
    sync(settings, [docs], embedder=embeddings)
    key = settings.data_path / layout.KEY_FILE
    DAMAGE[damage](settings.index_path, layout.current_generation(settings.index_path), key)
    with pytest.raises(StoreError) as error:
        Store.open(settings)
    assert str(error.value).startswith("The index is damaged: ") and "docchat ingest --full" in error.value.fix
    assert main(["search", "alpine lakes"]) == 2  # the CLI: the same message, no traceback, no hang
    err = capsys.readouterr().err
    assert "The index is damaged" in err and "Fix:" in err and "Traceback" not in err
    if damage.startswith("key"):
        assert f"Delete {key}" in error.value.fix
        shutil.rmtree(key) if key.is_dir() else key.unlink()
    sync(settings, [docs], full=True, embedder=embeddings)  # the fix works
    assert sources(settings) == {"alpha.md", "beta.md"}


def test_an_older_signed_generation_put_back_is_refused(settings, docs, tmp_path, embeddings):
    sync(settings, [docs], embedder=embeddings)
    old = layout.current_generation(settings.index_path)
    saved = tmp_path / "saved-generation"
    shutil.copytree(old, saved)
    (docs / "beta.md").unlink()
    sync(settings, [docs], embedder=embeddings)
    sync(settings, [write_docs(tmp_path / "more", {"c.md": paragraph("more", 2)})], embedder=embeddings)
    assert not old.exists()
    shutil.copytree(saved, old)  # the stale copy, signature intact, made current again
    (settings.index_path / layout.CURRENT).write_text(old.name)
    with pytest.raises(StoreError, match="older copy of the index was put back"):
        Store.open(settings)
    (settings.index_path / "gen-000099").mkdir()
    shutil.copytree(saved, settings.index_path / "gen-000099", dirs_exist_ok=True)  # renamed to look new
    (settings.index_path / layout.CURRENT).write_text("gen-000099")
    with pytest.raises(StoreError, match="belongs to generation 1, not gen-000099"):
        Store.open(settings)


# -- 5. readers keep what they opened ----------------------------------------------------------
def test_a_reader_overtaken_by_two_commits_opens_the_newest(settings, docs, embeddings, monkeypatch):
    sync(settings, [docs], embedder=embeddings)
    real = layout.current_generation
    calls = []

    def current_then_two_commits(index_dir):
        found = real(index_dir)
        if not calls:
            calls.append(found)  # the reader has looked CURRENT up; now two writers publish
            for n in (1, 2):
                (docs / f"beta-{n}.md").write_bytes((docs / ("beta.md" if n == 1 else "beta-1.md")).read_bytes())
                (docs / ("beta.md" if n == 1 else "beta-1.md")).unlink()
                sync(settings, [docs], embedder=embeddings)  # a rename: no embedding
        return found

    monkeypatch.setattr(layout, "current_generation", current_then_two_commits)
    store = Store.open(settings)
    assert not calls[0].exists()  # the generation it looked up is gone ...
    assert {d.source for d in store.documents()} == {"alpha.md", "beta-2.md"}  # ... it opened the newest


def test_readers_opening_while_a_writer_commits_never_see_damage(settings, docs, embeddings):
    sync(settings, [docs], embedder=embeddings)
    errors, done = [], threading.Event()

    def read():
        while not done.is_set():
            try:
                store = Store.open(settings)
                assert len(store) > 0
                store.close()
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for n in range(12):  # renames: a commit each, no embedding
            old, new = ("beta.md", "beta-x.md") if n % 2 == 0 else ("beta-x.md", "beta.md")
            (docs / old).rename(docs / new)
            assert sync(settings, [docs], embedder=embeddings).generation is not None
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert errors == []


# -- 6. uploads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [("报告.pdf", "报告.pdf"), ("отчёт 2024.docx", "отчёт 2024.docx"),
                                            ("तालिका.csv", "तालिका.csv"), ("تقرير.md", "تقرير.md"),
                                            ("a\u202egnp.md", "agnp.md"), ("📄.txt", "upload.txt"),
                                            ("字" * 200 + ".md", "字" * 65 + ".md")])
def test_upload_names_keep_their_extension_and_a_readable_stem_in_any_script(name, expected):
    assert safe_filename(name) == expected


def test_unsupported_and_skipped_uploads_are_listed_not_silently_kept(settings, embeddings):
    saved, summary = library.add_uploads(settings, [Upload("报告.md", b"# Report\n\n" + paragraph("reports").encode()),
                                                    Upload("photo.heic", b"\x00\x01")], embedder=embeddings)
    assert [p.name for p in saved.saved] == ["报告.md"] and summary.added == ["报告.md"]
    [(name, reason)] = saved.rejected
    assert name == "photo.heic" and "cannot read .heic files" in reason
    assert not (settings.docs_path / "photo.heic").exists()


# -- 7. downloads: records from threads.sqlite are not trusted -----------------------------------
def test_downloads_serve_only_indexed_files_and_never_raise(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("a")
    (root / ".env").write_text("SECRET=1")
    indexed = {(str(root), "a.md")}
    assert downloadable_file(str(root), "a.md", indexed) == (root / "a.md").resolve()
    assert downloadable_file(str(root), ".env", indexed) is None  # inside the root, but not indexed
    assert downloadable_file(str(root), "a\x00.md", indexed | {(str(root), "a\x00.md")}) is None
    assert file_inside(root, "a\x00b", {str(root)}) is None


@pytest.mark.slow
def test_search_piped_into_head_ends_quietly(settings, docs, embeddings):
    sync(settings, [docs], embedder=embeddings)
    env = {**os.environ, "DOCCHAT_DATA_DIR": str(settings.data_path)}
    run = subprocess.run(f"{sys.executable} -m app.cli search --all --k 20 lakes | head -c 1", shell=True, env=env,
                         cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=300)
    assert run.stdout == "[" and "BrokenPipe" not in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_save_uploads_refuses_unsupported_types_before_writing(tmp_path):
    result = save_uploads([Upload("notes", b"text"), Upload("x.exe", b"MZ")], tmp_path / "d", max_mb=1)
    assert result.saved == [] and [n for n, _ in result.rejected] == ["notes", "x.exe"]
    assert not any((tmp_path / "d").iterdir())


def test_ingest_refuses_a_damaged_pointer_with_a_printable_message(settings, docs, embeddings):
    sync(settings, [docs], embedder=embeddings)
    (settings.index_path / layout.CURRENT).write_bytes(b"\x00" * 10)
    with pytest.raises(StoreError) as error:
        sync(settings, [docs], embedder=embeddings)
    assert json.dumps(str(error.value))  # printable: no raw bytes in the message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["CURRENT FIFO", "manifest 200k deep"])
def test_the_page_shows_the_same_damage_message_and_fix_without_hanging(settings, docs, embeddings, damage):
    from tests.test_ui_page import page, texts

    sync(settings, [docs], embedder=embeddings)
    DAMAGE[damage](settings.index_path, layout.current_generation(settings.index_path), None)
    at = page()
    shown = texts(at)
    assert not at.exception
    assert "The index is damaged" in shown and "docchat ingest --full" in shown
