"""Keep folders in sync while they change: `docchat ingest FOLDER --watch`, and the chat page.

Events from the operating system (watchfiles: inotify on Linux) are collected until the
folders have been quiet for ``DOCCHAT_WATCH_DEBOUNCE_MS`` (at most ten times that while they
keep changing), then one ordinary ``sync`` of the folders runs: the same comparison, the same
parse worker and the same index lock as `docchat ingest`. A burst of thousands of events is one
or a few syncs; an editor's save through a temporary file and a rename is seen as what is on
disk afterwards; a file caught half-written is synced again when its writer's next event
arrives. Editor and version-control files (``*.swp``, ``*~``, ``.git``, ...) and hidden files
do not start a sync. A sync that fails (the index locked by a long ingest, a full disk) is
reported and tried again after the next quiet period rather than ending the watch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from app.errors import DocchatError

if TYPE_CHECKING:
    from app.config import Settings
    from ingest.sync import SyncSummary

log = logging.getLogger(__name__)

# With nothing happening the watcher still returns this often: the first sync runs at the first
# return (after the watcher is running, so nothing is missed), and a failed sync is retried.
IDLE_WAKE_MS = 250
RETRY_S = 5.0  # a failed sync is tried again after this long, or at the next change
MAX_DEBOUNCE_FACTOR = 10  # a folder that never goes quiet is still synced every 10 x debounce


@dataclass
class WatchReport:
    """One sync the watch ran: its summary, or the error that stopped it (tried again later)."""

    summary: "SyncSummary | None"
    error: str | None = None
    events: int = 0  # file events that led to this sync (0 for the first)


def watch(settings: "Settings", paths: list[Path], *, stop: threading.Event | None = None,
          on_sync: Callable[[WatchReport], None] | None = None, embedder=None,
          include: list[str] | None = None, exclude: list[str] | None = None) -> None:
    """Sync ``paths`` (folders) now, then after every batch of changes, until ``stop`` is set.

    The watch starts before the first sync, so nothing changed during it is missed.
    """
    import watchfiles

    folders = _folders(paths)
    stop = stop or threading.Event()
    report = on_sync or (lambda r: None)
    if embedder is None:
        from app.backends import embedding_backend

        embedder = embedding_backend(settings)  # loaded once, not per sync
    watch_filter = _Filter()
    pending, events, retry_at = True, 0, 0.0  # the first sync, as soon as the watcher runs
    for changes in watchfiles.watch(*folders, watch_filter=watch_filter, stop_event=stop,
                                    debounce=settings.watch_debounce_ms * MAX_DEBOUNCE_FACTOR,
                                    step=settings.watch_debounce_ms, rust_timeout=IDLE_WAKE_MS,
                                    yield_on_timeout=True, raise_interrupt=False):
        events += len(changes)
        pending = pending or bool(changes)
        if not pending or stop.is_set() or (not changes and time.monotonic() < retry_at):
            continue
        gone = [folder for folder in folders if not folder.is_dir()]
        if gone:  # its index entries stay: a folder unmounted for a moment must not empty the index
            raise DocchatError(f"{gone[0]} was removed or moved: the watch stops (the index keeps its documents).",
                               fix="Run `docchat ingest` on the folder's new place, with --watch to go on watching.")
        result = _sync_once(settings, folders, embedder, include, exclude, events)
        report(result)
        pending, events, retry_at = result.error is not None, 0, time.monotonic() + RETRY_S


def _sync_once(settings, folders, embedder, include, exclude, events: int) -> WatchReport:
    from ingest.sync import sync

    try:
        summary = sync(settings, folders, include=include, exclude=exclude, embedder=embedder)
    except DocchatError as exc:
        return WatchReport(None, str(exc), events)
    return WatchReport(summary, None, events)


def _folders(paths: list[Path]) -> list[Path]:
    folders = []
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.is_dir():
            raise DocchatError(f"{given} is not a folder: --watch keeps folders in sync.",
                               fix="Give the folder that holds the file, or drop --watch to ingest one file.")
        folders.append(path)
    return folders


class _Filter:
    """watchfiles' default filter (editor swap files, .git, caches) plus hidden files and folders."""

    def __init__(self) -> None:
        import watchfiles

        self.default = watchfiles.DefaultFilter()

    def __call__(self, change, path: str) -> bool:
        return self.default(change, path) and not any(part.startswith(".") for part in Path(path).parts[1:])


class BackgroundWatch:
    """A watch on its own thread (the chat page's documents folder); ``stop()`` ends it."""

    def __init__(self, settings: "Settings", folder: Path, embedder=None,
                 on_sync: Callable[[WatchReport], None] | None = None):
        self.stop_event = threading.Event()
        self.last: WatchReport | None = None
        self._on_sync = on_sync
        folder.mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self._run, args=(settings, folder, embedder),
                                       name=f"docchat-watch {folder}", daemon=True)
        self.thread.start()

    def _run(self, settings, folder, embedder) -> None:
        try:
            watch(settings, [folder], stop=self.stop_event, on_sync=self._record, embedder=embedder)
        except Exception:  # the page must keep working without its watch; the log says why
            log.exception("the documents folder watch stopped")

    def _record(self, report: WatchReport) -> None:
        self.last = report
        if report.error:
            log.warning("documents folder sync failed (tried again): %s", report.error)
        if self._on_sync:
            self._on_sync(report)

    def stop(self, timeout: float = 10) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


def page_watch(settings: "Settings", embedder=None,
               on_sync: Callable[[WatchReport], None] | None = None) -> BackgroundWatch | None:
    """The chat page's hook: a watch on its documents folder when ``DOCCHAT_WATCH_DOCS`` is on.

    The page calls it from a cached resource, so one watch runs per process and settings.
    """
    if not settings.watch_docs:
        return None
    return BackgroundWatch(settings, settings.docs_path, embedder, on_sync)
