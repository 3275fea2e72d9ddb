"""Which files a sync looks at: the folders given, minus hidden files, filtered by globs."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from app.errors import DocchatError


@dataclass
class Scope:
    """One ingested root folder, and optionally the single file in it that this run covers."""

    root: Path
    only: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return str(self.root)

    def covers(self, source: str) -> bool:
        """Whether a source path is this run's business (files outside are left as they are)."""
        if self.only is not None:
            return source == self.only
        name = source.rsplit("/", 1)[-1]
        if self.include and not any(fnmatch.fnmatch(source, g) or fnmatch.fnmatch(name, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatch(source, g) or fnmatch.fnmatch(name, g) for g in self.exclude)


@dataclass
class DiskFile:
    source: str  # relative to the root, with '/' separators
    path: Path
    size: int
    mtime_ns: int


def scopes_for(paths: list[Path], include=None, exclude=None) -> list[Scope]:
    """A scope per path: a folder is a root; a file is its folder's root, limited to that file."""
    scopes = []
    for given in paths:
        path = Path(given).expanduser().resolve()
        if path.is_dir():
            scopes.append(Scope(path, None, tuple(include or ()), tuple(exclude or ())))
        elif path.is_file():
            scopes.append(Scope(path.parent, path.name))
        else:
            raise DocchatError(f"{given} does not exist.", fix="Give a folder (or file) of documents to ingest.")
    return scopes


def walk(scope: Scope) -> list[DiskFile]:
    """The non-hidden files under the scope's root that it covers, sorted by source path."""
    if scope.only is not None:
        candidates = [scope.root / scope.only]
    else:
        candidates = []
        for folder, dirs, files in os.walk(scope.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            candidates.extend(Path(folder, f) for f in files if not f.startswith("."))
    found = []
    for path in candidates:
        source = path.relative_to(scope.root).as_posix()
        if not scope.covers(source):
            continue
        try:
            stat = path.stat()
        except OSError:
            continue  # vanished or a dangling link
        if path.is_file():
            found.append(DiskFile(source, path, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.source)
