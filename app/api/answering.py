"""Running engine turns for the servers (HTTP API and MCP): off the event loop, in order.

* A request brings its own conversation (OpenAI style) or names a stored thread. The engine
  reads history from threads, so a request's conversation is written into a new thread first;
  unless the caller asks to keep it, that thread is deleted once answered, so API traffic does
  not flood the conversation list of the page.
* The embedded model answers one question at a time: two generations on the same CPU model
  only slow each other down, so turns on the huggingface backend take a lock.
* The index may be changed by an upload or by another process (`docchat ingest`); each
  request checks the live generation and reopens the index when it moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator

from app.engine import Done, Event

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Answering:
    """The engine as the servers use it."""

    def __init__(self, engine):
        self.engine = engine
        local = engine.settings.llm_backend == "huggingface"
        self._one_at_a_time = threading.Lock() if local else contextlib.nullcontext()
        self._reopen = threading.Lock()

    def fresh(self):
        """The engine, over the live index: after an ingest wrote a new generation, a new
        engine (sharing the loaded models) opens it; requests under way keep the old one."""
        from vectorstore.backend import live_version, version_of

        live = live_version(self.engine.settings)
        if live:
            with self._reopen:
                old = self.engine
                if version_of(old.store) != live:
                    self.engine = type(old)(old.settings, chat=old.chat, embedder=old.embedder)
                    self.engine.read_ahead()
        return self.engine

    def turn(self, question: str, *, history: list[tuple[str, str]] = (), thread_id: str | None = None,
             keep: bool = False, **options) -> Iterator[Event]:
        """The engine's events for ``question``: in ``thread_id``, else in a thread holding ``history``."""
        engine = self.fresh()
        temporary = None
        if thread_id is None:
            temporary = engine.threads.create(title=history[0][0] if history else question)
            for asked, answered in history:
                engine.threads.add_exchange(temporary.id, asked, answered, json.dumps({"answer": answered}))
            thread_id = temporary.id
        try:
            with self._one_at_a_time:
                yield from engine.stream(question, thread_id, **options)
        finally:
            if temporary is not None and not keep:
                engine.threads.delete(temporary.id)

    def ask(self, question: str, **kw):
        """The finished ``Answer`` (blocking)."""
        for event in self.turn(question, **kw):
            if isinstance(event, Done):
                return event.answer
        raise AssertionError("stream ended without Done")  # pragma: no cover

    async def events(self, question: str, **kw) -> AsyncIterator[Event]:
        """``turn`` for async code: the engine runs on its own thread, events arrive in order.

        When the consumer stops early (a client hung up), the thread stops at the next event.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def put(item) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                for event in self.turn(question, **kw):
                    if stop.is_set():
                        break
                    put(event)
            except BaseException as error:  # noqa: BLE001 -- handed to the consumer, raised there
                put(_Failed(error))
            finally:
                put(_END)

        threading.Thread(target=work, name="docchat-answer", daemon=True).start()
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
