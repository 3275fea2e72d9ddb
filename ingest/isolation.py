"""Parse untrusted files in a child process, under a time limit and a memory cap.

A crafted file can send pypdf, python-docx or a regular expression into minutes of work or
gigabytes of memory; one such file must cost its own time limit, never the whole ingest. The
child (forked from a small, thread-free fork server) caps its address space with RLIMIT_AS;
the parent stops waiting after ``DOCCHAT_PARSE_TIMEOUT_S`` and kills it. The result comes back
as JSON, never pickle, so a compromised child cannot run code in the parent.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import resource
from pathlib import Path

from ingest.documents import ParsedDocument, UnreadableFile

MEMORY_LIMIT_BYTES = 2 << 30
PRELOAD = ["ingest.loaders", "pypdf", "docx", "lxml.html", "charset_normalizer", "csv"]


def _child(conn, kind: str, path: str, memory_limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    # pypdf logs a warning per oddity of a broken file; the summary reports the file once.
    logging.disable(logging.WARNING)
    from ingest.loaders import parse_file

    try:
        result = {"document": parse_file(kind, Path(path)).to_json()}
    except UnreadableFile as exc:
        result = {"error": str(exc)}
    except MemoryError:
        result = {"error": f"parsing needed more than {memory_limit >> 20} MiB of memory"}
    except OSError as exc:
        result = {"error": f"unreadable ({exc.strerror or exc})"}
    except Exception as exc:  # any parser failure is this file's problem only
        result = {"error": f"parser failed ({type(exc).__name__}: {exc})"}
    conn.send_bytes(json.dumps(result).encode())
    conn.close()


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def parse_in_child(kind: str, path: Path, timeout_s: float, memory_limit: int = MEMORY_LIMIT_BYTES) -> ParsedDocument:
    """Parse one file in a fresh child; raises ``UnreadableFile`` with the reason on any failure."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, kind, str(path), memory_limit), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise UnreadableFile(f"parsing took longer than DOCCHAT_PARSE_TIMEOUT_S={timeout_s:g} s; stopped")
        result = json.loads(receiver.recv_bytes())
    except EOFError:
        child.join()
        raise UnreadableFile(f"the parser crashed (exit status {child.exitcode})") from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()
    if "error" in result:
        raise UnreadableFile(result["error"])
    return ParsedDocument.from_json(result["document"])
