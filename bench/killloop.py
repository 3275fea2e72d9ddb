"""kill -9 an ingest inside its commit window and during `--full`; check the index after each.

    python bench/killloop.py [--trials 200] [--seed 1]

Each trial switches the documents folder between two versions (a file changed, one deleted,
one renamed, one added), starts a child process that syncs it (incremental or `--full`, half
each) and kills it with SIGKILL, either paused at a named point of the write (lock taken,
generation started, segment written, segments merged, vectors written, manifest written,
pointer switched) or after a random delay while it works ("merged" is reached only by writes
that merge segments; a child that never reaches it finishes, counted as "finished"). Then,
in this process:
  - the index must open and search  -> else counted as "no searchable index"
  - its documents must be exactly the version before or the version after -> else "inconsistent"
  - a clean sync must then finish the job, give the "after" version and leave at most two
    generation folders (the live one and the one before it) -> else "not repaired"
Embedding uses a deterministic hashed bag-of-words stand-in for the model, in the children
and the checks alike: the write path is under test, and a model load per child would make
200 trials take an hour. Prints one line per 20 trials and a summary table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POINTS = ["locked", "copied", "segment-written", "merged", "vectors-written", "manifest-written", "switched"]
DIM = 384
PARAGRAPH = "This paragraph {i} explains {topic} in plain words for the reader. "
VERSIONS = [
    {"a.md": ("alpine lakes", 6), "b.md": ("beekeeping", 6), "c.md": ("cartography", 12)},
    {"a.md": ("alpine rivers", 6), "c2.md": ("cartography", 12), "d.md": ("dune ecology", 8)},
]


class HashedEmbeddings:
    """Deterministic unit vectors from word hashes: a stand-in for the embedding backend in this
    bench (only ``embed`` is used by an ingest)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([self._vector(text) for text in texts], dtype=np.float32).reshape(len(texts), DIM)

    @staticmethod
    def _vector(text: str) -> np.ndarray:
        vector = np.zeros(DIM, dtype=np.float32)
        for word in text.lower().split():
            vector[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % DIM] += 1
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def write_version(docs: Path, version: int) -> None:
    for old in docs.iterdir():
        old.unlink()
    for name, (topic, n) in VERSIONS[version].items():
        text = f"# {topic.title()}\n\n" + "".join(PARAGRAPH.format(i=i, topic=topic) for i in range(n))
        (docs / name).write_text(text)


def contents(settings) -> dict:
    from vectorstore import Store

    store = Store.open(settings)
    try:
        return {d.source: [h.text for h in store.chunks_of(d.source, d.root)] for d in store.documents()}
    finally:
        store.close()


# -- the child: one sync, paused at a point or running free ------------------------------------
def child(point: str, docs: str, full: bool) -> None:
    from app.config import load_settings
    from ingest.sync import sync
    from vectorstore import writer

    def checkpoint(name: str) -> None:
        if name == point:
            print("AT " + name, flush=True)
            sys.stdin.readline()

    writer.checkpoint = checkpoint
    print("START", flush=True)
    sync(load_settings(env_file=None), [Path(docs)], full=full, embedder=HashedEmbeddings())
    print("DONE", flush=True)


def start_child(point: str, docs: Path, full: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", point, str(docs)] + (["--full"] if full else []),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_during(point: str, docs: Path, full: bool, delay: float) -> str:
    """Run a child and kill it; returns where it was: the point, 'random', or 'finished'."""
    process = start_child(point, docs, full)
    line = process.stdout.readline().strip()  # START
    if point == "random":
        time.sleep(delay)  # a bench, not a test: the randomness of the moment is the point
    else:
        line = process.stdout.readline().strip()
        if line == "DONE" and point == "merged":  # this write had nothing to merge
            process.communicate()
            return "finished"
        if line != f"AT {point}":
            process.kill()
            raise RuntimeError(f"child never reached {point}: {line!r} {process.stderr.read()[-2000:]}")
    process.send_signal(signal.SIGKILL)
    out, _ = process.communicate()
    return "finished" if "DONE" in out else point


def time_child_sync(docs: Path) -> float:
    """Seconds from a child's START to its DONE (a sync that runs to the end)."""
    process = start_child("nowhere", docs, full=True)
    process.stdout.readline()
    started = time.perf_counter()
    out, err = process.communicate()
    if "DONE" not in out:
        raise RuntimeError(f"the child sync failed: {err[-2000:]}")
    return time.perf_counter() - started


# -- the loop ----------------------------------------------------------------------------------
def run(trials: int, seed: int, work: Path, quiet: bool = False) -> dict:
    os.environ["DOCCHAT_DATA_DIR"] = str(work / "data")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from app.config import load_settings, with_overrides
    from ingest.sync import sync
    from vectorstore import layout

    settings = load_settings(env_file=None)
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    expected = []
    for version in (0, 1):  # each version's contents, from a clean index of its own
        write_version(docs, version)
        clean = with_overrides(settings, index_dir=work / f"clean-{version}")
        sync(clean, [docs], embedder=HashedEmbeddings())
        expected.append(contents(clean))
    write_version(docs, 0)
    sync(settings, [docs], embedder=HashedEmbeddings())
    write_version(docs, 1)
    child_sync_s = time_child_sync(docs)  # random kills land within a child's sync
    write_version(docs, 0)
    sync(settings, [docs], embedder=HashedEmbeddings())
    rng = random.Random(seed)
    figures = {"trials": 0, "inconsistent": 0, "no_index": 0, "not_repaired": 0, "killed_at": {}, "full": 0}
    version, started = 0, time.perf_counter()
    for trial in range(1, trials + 1):
        full = trial % 2 == 0
        point = POINTS[trial % len(POINTS)] if trial % 3 else "random"
        before, version = expected[version], 1 - version
        write_version(docs, version)
        where = kill_during(point, docs, full, rng.uniform(0.0, child_sync_s))
        figures["trials"] += 1
        figures["full"] += full
        figures["killed_at"][where] = figures["killed_at"].get(where, 0) + 1
        try:
            found = contents(settings)
            if found not in (before, expected[version]):
                figures["inconsistent"] += 1
        except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
            figures["no_index"] += 1
            print(f"trial {trial} ({point}, full={full}): no searchable index: {exc}", file=sys.stderr)
        sync(settings, [docs], embedder=HashedEmbeddings())  # the next ingest repairs and cleans up
        generations = list(settings.index_path.glob(layout.GEN_PREFIX + "*"))
        if contents(settings) != expected[version] or len(generations) > 2:
            figures["not_repaired"] += 1
        if not quiet and trial % 20 == 0:
            print(f"{trial} trials, {time.perf_counter() - started:.0f} s: {figures}", flush=True)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("POINT", "DOCS"), help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.full)
        return
    with tempfile.TemporaryDirectory(prefix="killloop-") as work:
        figures = run(args.trials, args.seed, Path(work))
    print("\n| trials | of them --full | inconsistent states | no searchable index | not repaired | seconds |")
    print("|---|---|---|---|---|---|")
    print(f"| {figures['trials']} | {figures['full']} | {figures['inconsistent']} | {figures['no_index']} | "
          f"{figures['not_repaired']} | {figures['seconds']} |")
    print("killed at:", ", ".join(f"{k} {v}" for k, v in sorted(figures["killed_at"].items())),
          "('random': at a random moment of the sync; 'finished': the random moment came after its end)")


if __name__ == "__main__":
    main()
