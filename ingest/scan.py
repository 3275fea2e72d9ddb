"""Which files a sync looks at: the folders given, minus hidden files, filtered by globs.

Only regular files are read. A symbolic link is followed only when its target lies inside the
ingested folder (``DOCCHAT_FOLLOW_EXTERNAL_SYMLINKS`` allows others): a link to /etc/passwd
must not put that file in the index. Links elsewhere, broken links, link loops, FIFOs, devices
and names that are not valid UTF-8 are listed with the reason, never silently dropped.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import DocchatError


@dataclass
class Scope:
    """One ingested root folder, and optionally the single file in it that this run covers."""

    root: Path
    only: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    reparse: bool = False  # parse its files again even when unchanged (re-index a document)

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
    path: Path  # the regular file to read (a followed link's target)
    size: int
    mtime_ns: int


@dataclass
class Walk:
    """A scope's regular files, and (source, reason) for every entry that is not read."""

    files: list[DiskFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


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


def walk(scope: Scope, follow_external_links: bool = False) -> Walk:
    """The non-hidden regular files under the scope's root that it covers, sorted by source path."""
    if scope.only is not None:
        candidates = [scope.root / scope.only]
    else:
        candidates = []
        for folder, dirs, files in os.walk(scope.root):  # never descends into linked folders
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            candidates.extend(Path(folder, d) for d in dirs if Path(folder, d).is_symlink())
            candidates.extend(Path(folder, f) for f in files if not f.startswith("."))
    result = Walk()
    for path in candidates:
        source = path.relative_to(scope.root).as_posix()
        if not scope.covers(source):
            continue
        if not _valid_utf8(source):
            result.failed.append((printable_name(source), "the file name is not valid UTF-8: rename the file"))
            continue
        target, why = _regular_file(path, scope.root, follow_external_links)
        if why:
            result.skipped.append((source, why))
        elif target is not None:
            info = target.stat()
            result.files.append(DiskFile(source, target, info.st_size, info.st_mtime_ns))
    result.files.sort(key=lambda f: f.source)
    return result


def _regular_file(path: Path, root: Path, follow_external_links: bool) -> tuple[Path | None, str | None]:
    """(the regular file to read, None), or (None, why not); (None, None) if it vanished."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None, None
    if stat.S_ISLNK(mode):
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            return None, "broken symbolic link (its target does not exist)"
        except (RuntimeError, OSError):  # 3.11 raises RuntimeError on a loop, later versions OSError
            return None, "symbolic link loop: not followed"
        if target.is_dir():
            return None, "symbolic link to a folder: not followed"
        if not target.is_relative_to(root) and not follow_external_links:
            return None, (f"symbolic link to {target}, outside the ingested folder: not followed "
                          "(DOCCHAT_FOLLOW_EXTERNAL_SYMLINKS=true allows it)")
        path, mode = target, target.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"
        return None, f"{kind}, not a regular file"
    return path, None


def _valid_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return True


def printable_name(name: str) -> str:
    """A file name with undecodable bytes shown as ``\\xff``, safe to print, store and compare."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
