"""Parse untrusted files in worker processes, each file under a time limit, each worker under a memory cap.

A crafted file can send pypdf, python-docx or a regular expression into minutes of work or
gigabytes of memory; one such file must cost its own time limit, never the whole ingest. A
worker (forked from a small, thread-free fork server) caps its address space with RLIMIT_AS
and parses file after file, so no process is started per file (that cost ~25 ms a file, a
tenth of a large ingest). The parent stops waiting for a file after
``DOCCHAT_PARSE_TIMEOUT_S`` and kills that worker; a worker that crashed, ran out of memory
or was killed is replaced before the next file. OCR is the one step allowed more time: the
worker announces each page it starts to OCR and the parent adds that page's limit
(``DOCCHAT_OCR_PAGE_TIMEOUT_S``), for at most ``DOCCHAT_OCR_MAX_PAGES`` pages. Requests and
results are JSON, never pickle, so a compromised worker cannot run code in the parent.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import resource
import time
from dataclasses import asdict
from pathlib import Path

from ingest import ocr
from ingest.documents import ParsedDocument, UnreadableFile
from ingest.ocr import OcrOptions

OCR_RENDER_S = 5.0  # rendering a page to an image, on top of DOCCHAT_OCR_PAGE_TIMEOUT_S

MEMORY_LIMIT_BYTES = 2 << 30
PRELOAD = ["ingest.loaders", "pypdf", "docx", "lxml.html", "charset_normalizer", "csv"]


def _serve(conn, memory_limit: int) -> None:
    """The worker's loop: one [kind, path] request in, one JSON result out, until the pipe closes."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    # pypdf logs a warning per oddity of a broken file; the summary reports the file once.
    logging.disable(logging.WARNING)
    while True:
        try:
            kind, path, options = json.loads(conn.recv_bytes())
        except EOFError:
            return
        # Each page OCR starts asks the parent for that page's time (it grants at most max_pages).
        ocr.before_page = lambda: conn.send_bytes(b'{"ocr_page": true}')
        result = _parse_to_json(kind, Path(path), options, memory_limit)
        conn.send_bytes(json.dumps(result).encode())
        if result.get("fatal"):
            return  # after a MemoryError the heap may be in any state: the next file gets a fresh worker


def _parse_to_json(kind: str, path: Path, options: dict, memory_limit: int) -> dict:
    from ingest.loaders import parse_file

    try:
        return {"document": parse_file(kind, path, options).to_json()}
    except UnreadableFile as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {"error": f"parsing needed more than {memory_limit >> 20} MiB of memory", "fatal": True}
    except OSError as exc:
        return {"error": f"unreadable ({exc.strerror or exc})"}
    except RecursionError:
        return {"error": "parser failed (structure nested too deep)", "fatal": True}
    except Exception as exc:  # any parser failure is this file's problem only
        return {"error": f"parser failed ({type(exc).__name__}: {exc})"}


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, memory_limit: int):
        context = _context()
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child_end, memory_limit), daemon=True)
        self.process.start()
        child_end.close()

    def parse(self, kind: str, path: Path, timeout_s: float, ocr_options: OcrOptions, chunk_size: int) -> dict:
        """The worker's JSON result; stops the worker and raises ``UnreadableFile`` on a timeout or crash.

        The file gets ``timeout_s``, plus ``page_timeout_s`` (and rendering time) for each page
        the worker says it starts to OCR, up to ``max_pages`` pages.
        """
        deadline, pages = time.monotonic() + timeout_s, 0
        try:
            options = {"ocr": asdict(ocr_options), "chunk_size": chunk_size}
            self.conn.send_bytes(json.dumps([kind, str(path), options]).encode())
            while True:
                if not self.conn.poll(max(deadline - time.monotonic(), 0)):
                    self.stop()
                    extra = f" + {pages} OCR pages x DOCCHAT_OCR_PAGE_TIMEOUT_S" if pages else ""
                    raise UnreadableFile(f"parsing took longer than DOCCHAT_PARSE_TIMEOUT_S={timeout_s:g} s{extra}; stopped")
                result = json.loads(self.conn.recv_bytes())
                if not result.get("ocr_page"):
                    break
                if pages < ocr_options.max_pages:
                    pages += 1
                    deadline = max(deadline, time.monotonic()) + ocr_options.page_timeout_s + OCR_RENDER_S
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join(5)
            code = self.process.exitcode
            self.stop()
            raise UnreadableFile(f"the parser crashed (exit status {code})") from None
        if result.get("fatal"):
            self.stop()
        return result

    @property
    def alive(self) -> bool:
        return not self.conn.closed and self.process.is_alive()

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


class Parser:
    """Parses files of any format in up to ``workers`` worker processes, from any thread.

    Use as a context manager; leaving it stops the workers.
    """

    def __init__(self, timeout_s: float, memory_limit: int = MEMORY_LIMIT_BYTES, workers: int = 2,
                 ocr: OcrOptions | None = None, chunk_size: int = 1000):
        self.timeout_s = timeout_s
        self.chunk_size = chunk_size  # code is split on syntax boundaries in the worker
        self.memory_limit = memory_limit
        self.ocr = ocr or OcrOptions()
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(workers):
            self._idle.put(None)  # a slot: its worker starts on first use
        self._started: list[_Worker] = []

    def __enter__(self) -> "Parser":
        return self

    def __exit__(self, *exc) -> None:
        for worker in self._started:
            worker.stop()

    def parse(self, kind: str, path: Path) -> ParsedDocument:
        """Parse one file; raises ``UnreadableFile`` with the reason on any failure."""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive:
                worker = _Worker(self.memory_limit)
                self._started.append(worker)
            result = worker.parse(kind, path, self.timeout_s, self.ocr, self.chunk_size)
        finally:
            self._idle.put(worker)
        if "error" in result:
            raise UnreadableFile(str(result["error"]))
        try:
            return ParsedDocument.from_json(result["document"])
        except (KeyError, TypeError, ValueError):  # only a broken worker answers like this
            raise UnreadableFile("the parser returned a malformed result") from None


def parse_in_child(kind: str, path: Path, timeout_s: float, memory_limit: int = MEMORY_LIMIT_BYTES,
                   ocr: OcrOptions | None = None) -> ParsedDocument:
    """Parse one file in a fresh worker; raises ``UnreadableFile`` with the reason on any failure."""
    with Parser(timeout_s, memory_limit, workers=1, ocr=ocr) as parser:
        return parser.parse(kind, path)
