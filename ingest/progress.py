"""Turn sync's progress events into a tqdm bar on a terminal, or plain lines otherwise."""

from __future__ import annotations

import contextlib
from typing import IO


@contextlib.contextmanager
def progress_printer(stream: IO[str]):
    """Yields a ``progress(event)`` callable; bars on a TTY, one line per stage elsewhere."""
    if stream.isatty():
        bars = _Bars(stream)
        try:
            yield bars
        finally:
            bars.close()
    else:
        yield _Lines(stream)


class _Bars:
    """One bar for files (parsing), one for chunks (embedding), with rate and ETA."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.bars = {}

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        stage = event["stage"]
        if stage in ("parse", "embed"):
            unit = "file" if stage == "parse" else "chunk"
            bar = self.bars.get(stage)
            if bar is None:
                self.close()  # the previous stage is over: its rate and time stay as they ended
                bar = self.bars[stage] = tqdm(total=event["total"], unit=unit, file=self.stream,
                                              desc="parsing" if stage == "parse" else "embedding", dynamic_ncols=True)
            bar.update(event["done"] - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            if not bar.disable:
                bar.close()


class _Lines:
    """Plain lines for logs: a line per stage and every 10 % of the work."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.last = {}

    def __call__(self, event: dict) -> None:
        stage = event["stage"]
        if stage not in ("parse", "embed"):
            return
        done, total = event["done"], event["total"]
        step = max(total // 10, 1)
        if total and (done == total or done // step != self.last.get(stage, -1) // step):
            noun = "files parsed" if stage == "parse" else "chunks embedded"
            print(f"ingest: {done}/{total} {noun}", file=self.stream, flush=True)
        self.last[stage] = done
