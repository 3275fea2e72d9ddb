"""Fuzz the per-file ingest path with mutated Markdown, HTML, CSV, text, PDF and DOCX files.

    python bench/fuzz_ingest.py [--inputs 2000] [--seed 1] [--timeout 10]

Each input is a real seed file (written here: Markdown, HTML, CSV, reStructuredText, text,
a PDF from fpdf2, a DOCX from python-docx) put through up to eight mutations that hypothesis
draws: flipped bytes, inserted bytes, deleted spans, a span repeated up to 3,000 times (long
lines, deep nesting), splices from another format. It then goes through what ``sync`` does
with one file: a ``Parser`` worker under the time limit, then ``split_document``. Counted:
  - hangs: the parent waited more than the time limit + 5 s for one file
  - crashes: anything but a document or an ``UnreadableFile`` reason reached the parent
  - refused: files reported unreadable with a reason (corrupt, binary, timeout, ...)
Finally one real ``sync`` (real embedding model) ingests a folder of fuzzed files and must
finish, each file added or reported. Prints the figures as a table.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SUFFIX = {"markdown": ".md", "html": ".html", "csv": ".csv", "rst": ".rst", "text": ".txt", "pdf": ".pdf", "docx": ".docx"}


def seed_files() -> dict[str, bytes]:
    """One small, valid file per format."""
    seeds = {
        "markdown": b"# Title\n\nIntro text.\n\n## Part ##\n\n```\n# not a heading\n```\n\n- item\n- item two\n",
        "html": b"<html><head><title>T</title></head><body><nav>menu</nav><h1>Head</h1><p>Para <b>bold</b></p>"
                b"<h2>Sub</h2><pre>code\n  more</pre><table><tr><td>a</td><td>b</td></tr></table></body></html>",
        "csv": b"name,notes,count\nalpha,\"quoted, with comma\",3\nbeta,plain,4\n",
        "rst": b"=====\nTitle\n=====\n\nSection\n-------\n\nBody text here.\n",
        "text": "Plain text, caf\u00e9, na\u00efve, \u65e5\u672c\u8a9e.\n".encode(),
    }
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "A page of text for the fuzzer. " * 20)
    seeds["pdf"] = bytes(pdf.output())
    import docx

    document = docx.Document()
    document.add_heading("Fuzz heading", level=1)
    document.add_paragraph("A paragraph of text for the fuzzer.")
    document.add_table(rows=2, cols=2).cell(0, 0).text = "cell"
    buffer = io.BytesIO()
    document.save(buffer)
    seeds["docx"] = buffer.getvalue()
    return seeds


def mutate(data: bytes, mutations: list[tuple[str, float, float, bytes]], other: bytes) -> bytes:
    """Apply (operation, where, how much, bytes) mutations; positions are fractions of the length."""
    for operation, where, amount, payload in mutations:
        at = int(where * len(data))
        span = max(1, int(amount * 64))
        if operation == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (payload[:1] or b"\xff")[0]]) + data[at + 1:]
        elif operation == "insert":
            data = data[:at] + payload + data[at:]
        elif operation == "delete":
            data = data[:at] + data[at + span:]
        elif operation == "repeat":
            data = data[:at] + data[at:at + span] * int(1 + amount * 3000) + data[at + span:]
        elif operation == "splice":
            data = data[:at] + other[int(amount * len(other)):]
    return data


def fuzz(inputs: int, seed: int, timeout_s: float, keep: Path | None = None) -> dict:
    """Run ``inputs`` mutated files through parse + split; returns the figures."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from hypothesis import seed as fixed_seed

    from ingest.documents import UnreadableFile
    from ingest.isolation import Parser
    from ingest.splitter import make_splitter, split_document

    seeds = seed_files()
    kinds = sorted(seeds)
    splitter = make_splitter(1000, 150)
    figures = Counter({name: 0 for name in ("inputs", "bytes", "parsed", "refused", "crashes", "hangs", "max_ms")})
    reasons = Counter()
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "repeat", "splice"]),
                         st.floats(0, 1), st.floats(0, 1), st.binary(max_size=64))

    @fixed_seed(seed)
    @settings(max_examples=inputs, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(kinds), other=st.sampled_from(kinds), mutations=st.lists(mutation, max_size=8))
    def one(kind, other, mutations):
        data = mutate(seeds[kind], mutations, seeds[other])
        n = figures["inputs"]
        path = work / f"f{n:05d}{SUFFIX[kind]}"
        path.write_bytes(data)
        figures["inputs"] += 1
        figures["bytes"] += len(data)
        started = time.perf_counter()
        try:
            document = parser.parse(kind, path)
            split_document(document, root=str(work), source=path.name, splitter=splitter, embed_headings=True)
            figures["parsed"] += 1
        except UnreadableFile as exc:
            figures["refused"] += 1
            reasons[str(exc).split("(")[0].strip()[:60]] += 1
        except Exception as exc:  # noqa: BLE001 - the finding: the ingest process would have failed
            figures["crashes"] += 1
            print(f"CRASH on {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        elapsed = time.perf_counter() - started
        figures["hangs"] += elapsed > timeout_s + 5
        figures["max_ms"] = max(figures["max_ms"], int(elapsed * 1000))
        if keep is not None and n % max(inputs // 40, 1) == 0:
            (keep / path.name).write_bytes(data)
        path.unlink()

    started = time.perf_counter()
    with Parser(timeout_s, workers=1) as parser:  # one worker, replaced after a timeout or crash, as in sync
        one()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    work.rmdir()
    return {**figures, "reasons": dict(reasons.most_common(8))}


def ingest_folder(folder: Path) -> dict:
    """One real sync over a folder of fuzzed files: it must finish, every file added or reported."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from app.config import load_settings, with_overrides
    from ingest.sync import sync

    settings = with_overrides(load_settings(env_file=None), data_dir=folder.parent / "fuzz-data")
    started = time.perf_counter()
    summary = sync(settings, [folder])
    files = len(list(folder.iterdir()))
    return {"files": files, "added": len(summary.added), "failed": len(summary.failed),
            "accounted": len(summary.added) + len(summary.failed) + len(summary.skipped) == files,
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0, help="per-file parse limit, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-keep-") as keep:
        folder = Path(keep) / "docs"
        folder.mkdir()
        figures = fuzz(args.inputs, args.seed, args.timeout, keep=folder)
        ingest = ingest_folder(folder)
    print("| inputs | MB | parsed | refused with a reason | hangs | crashes | slowest file ms | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {figures['inputs']} | {figures['bytes'] / 1e6:.1f} | {figures['parsed']} | {figures['refused']} | "
          f"{figures['hangs']} | {figures['crashes']} | {figures['max_ms']} | {figures['seconds']} |")
    print("refusal reasons:", figures["reasons"])
    print(f"real sync over {ingest['files']} kept fuzzed files: {ingest['added']} added, {ingest['failed']} failed "
          f"with a reason, all accounted for: {ingest['accounted']}, {ingest['seconds']} s")


if __name__ == "__main__":
    main()
