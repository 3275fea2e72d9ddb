"""Folders in the model cache that are built once (a converted chat model, an ONNX export).

A file lock keeps two processes (the page and a CLI command) from building the same folder at
once, and the folder appears by an atomic rename, so it is either absent or complete, never
half written; what a killed build left behind is cleared by the next one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_once(target: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build(work_folder)`` unless ``target/marker`` already exists."""
    from filelock import FileLock

    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / marker).is_file():  # another process built it while this one waited
            return target
        for stale in target.parent.glob(f".{target.name}.*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(work)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
