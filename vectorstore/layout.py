"""Where a generation's files live on disk, and the signed manifest that vouches for them.

    index_dir/CURRENT            name of the live generation ("gen-000007"), switched atomically
    index_dir/NEWEST             signed number of the newest generation ever published: only
                                 moves forward, so an older signed generation put back is refused
    index_dir/.lock              held by the one writer, only while it publishes
    index_dir/VOUCHED            signed record of the live generation's files as the writer left
                                 them (inode, size, mtime, ctime): a file still so is not hashed
                                 again on open (a cache; missing or stale means "hash it")
    index_dir/gen-000007/        store.sqlite (catalog), manifest.json, and hard links to the
                                 immutable segments it uses: seg-*.faiss + seg-*.sqlite (segments.py)
    data_dir/.index_key          per-install HMAC key (0600): only files this app wrote are loaded

Every small file here is read with a size bound, without following a symlink and without
blocking (a FIFO in place of CURRENT must not hang search): any damage becomes one
``StoreError`` naming the file and the rebuild command.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from app.errors import StoreError

VECTORS = "vectors.faiss"
DATABASE = "store.sqlite"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
NEWEST = "NEWEST"
VOUCHED = "VOUCHED"
LOCK = ".lock"
GEN_PREFIX = "gen-"
KEY_FILE = ".index_key"
DATA_FILES = (VECTORS, DATABASE)  # a generation before segments; now: DATABASE + segment files
REBUILD = "Run `docchat ingest --full` to rebuild the index from your documents."
# Bounds on what is read before it is trusted: a pointer is ~10 bytes, a manifest ~1 KB.
MAX_POINTER_BYTES = 64
MAX_KEY_BYTES = 256
MAX_MANIFEST_BYTES = 1 << 20


def damaged(path: Path, problem: str, fix: str = REBUILD) -> StoreError:
    """The one message for every kind of index damage: which file, what is wrong, how to fix it."""
    return StoreError(f"The index is damaged: {path} {problem}; it is not loaded.", fix=fix)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


class NotRegularFile(OSError):
    """A path that names a folder, FIFO, socket, device or symlink where a file belongs."""


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading: never follows a final symlink, never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise NotRegularFile(errno.ELOOP, "is a symbolic link", str(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, f"is {_kind(mode)}, not a file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int) -> bytes:
    """A small regular file's bytes; ``NotRegularFile`` or ``ValueError`` (too large) otherwise.

    ``FileNotFoundError`` passes through: a missing file often means "not created yet".
    """
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit:,} bytes")
    return data


def _read_or_damaged(path: Path, limit: int, fix: str = REBUILD) -> bytes:
    try:
        return read_bounded(path, limit)
    except FileNotFoundError:
        raise
    except NotRegularFile as exc:
        raise damaged(path, exc.strerror, fix) from None
    except ValueError as exc:
        raise damaged(path, str(exc), fix) from None
    except OSError as exc:
        raise damaged(path, f"cannot be read ({exc.strerror or exc})", fix) from None


def gen_name(generation: int) -> str:
    return f"{GEN_PREFIX}{generation:06d}"


def gen_number(name: str) -> int | None:
    if not name.startswith(GEN_PREFIX):
        return None
    digits = name[len(GEN_PREFIX):]
    return int(digits) if digits.isdigit() else None


def current_generation(index_dir: Path) -> Path | None:
    """The live generation's folder, or None when no index has been written yet."""
    path = index_dir / CURRENT
    try:
        raw = _read_or_damaged(path, MAX_POINTER_BYTES)
    except FileNotFoundError:
        return None
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        name = ""
    if gen_number(name) is None or len(name) != len(gen_name(0)):
        raise damaged(path, f"does not name a generation ({raw[:40]!r})")
    return index_dir / name


def index_key(data_dir: Path) -> bytes:
    """This install's secret for signing manifests; created on first use, readable only by the user."""
    path = data_dir / KEY_FILE
    fix = f"Delete {path}, then: {REBUILD}"
    try:
        key = bytes.fromhex(_read_or_damaged(path, MAX_KEY_BYTES, fix).decode("ascii").strip())
        if len(key) < 16:
            raise ValueError("too short")
        return key
    except FileNotFoundError:
        pass
    except ValueError:  # UnicodeDecodeError included
        raise damaged(path, "is not a docchat index key", fix) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it a moment ago
        return index_key(data_dir)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(32))
        out.flush()
        os.fsync(out.fileno())
    return index_key(data_dir)


def file_sha256(path: Path) -> str:
    """The sha256 of a regular file (``NotRegularFile`` for anything else: a FIFO would block)."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(body: dict, key: bytes) -> str:
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def write_manifest(gen_dir: Path, body: dict, key: bytes, known: dict[str, str] | None = None) -> dict[str, str]:
    """Record each data file's sha256 (the catalog and ``body["segments"]``) and sign the whole;
    returns the checksums by file name.

    ``known`` gives the checksums of files linked unchanged from the previous generation: they
    are not read again.
    """
    from vectorstore.segments import files_of

    names = [DATABASE, *(f for name in body["segments"] for f in files_of(name))]
    known = known or {}
    body = {**body, "files": {name: known.get(name) or file_sha256(gen_dir / name) for name in names}}
    signed = {"body": body, "hmac": _signature(body, key)}
    write_durably(gen_dir / MANIFEST, json.dumps(signed, indent=1).encode())
    return body["files"]


def read_verified_manifest(gen_dir: Path, key: bytes, vouched: set[str] | None = None) -> dict:
    """The manifest body, after checking its signature, its shape and every file's checksum.

    A file the writer vouched for (``VOUCHED``) and unchanged since is not hashed again; its name
    is added to ``vouched`` so the caller can also skip reading it until it is needed."""
    path = gen_dir / MANIFEST
    try:
        signed = json.loads(_read_or_damaged(path, MAX_MANIFEST_BYTES))
        body, signature = signed["body"], signed["hmac"]
    except FileNotFoundError:
        raise damaged(path, "is missing") from None
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested 200k deep
        raise damaged(path, "is not a valid manifest") from None
    if not isinstance(signature, str) or not isinstance(body, dict) or \
            not hmac.compare_digest(signature, _signature(body, key)):
        raise damaged(path, "was not written by this docchat install (bad signature)")
    if _older_layout(body):  # signed by this install, so written by an earlier docchat: not damage
        raise StoreError(
            f"The index in {gen_dir.parent} was written by an earlier version of docchat (one FAISS file "
            "per generation); this version keeps segments and cannot read it.",
            fix="Rebuild it once with `docchat ingest --full` (your documents are not touched).",
        )
    if not _well_formed(body):
        raise damaged(path, "is signed but not a manifest this version understands")
    from vectorstore.segments import verify_file

    trusted = read_vouched(gen_dir.parent, key)
    for name, expected in body["files"].items():
        file = gen_dir / name
        if still_vouched(trusted.get(name), file, expected):
            if vouched is not None:
                vouched.add(name)
            continue
        if not verify_file(file, expected):  # a file this process already checked is not read again
            raise damaged(file, "does not match its checksum (changed or damaged since docchat wrote it)")
    return body


# -- files vouched for: checked once, not hashed again while they stay as the writer left them --
def _stat_identity(path: Path) -> list[int]:
    st = os.stat(path, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(errno.EINVAL, f"is {_kind(st.st_mode)}, not a file", str(path))
    # ctime: any write to the file moves it, and no user call can set it back (unlike mtime)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _vouch_signature(files: dict, key: bytes) -> str:
    payload = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, b"vouched:" + payload, hashlib.sha256).hexdigest()


def read_vouched(index_dir: Path, key: bytes) -> dict[str, list]:
    """File name -> [sha256, dev, inode, size, mtime_ns, ctime_ns] that the writer vouched for;
    empty when the record is missing, unreadable or not signed by this install (then every file is
    hashed, as before the record existed)."""
    try:
        record = json.loads(read_bounded(index_dir / VOUCHED, MAX_MANIFEST_BYTES))
        files, signature = record["files"], record["hmac"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return {}
    if not isinstance(files, dict) or not isinstance(signature, str) or \
            not hmac.compare_digest(signature, _vouch_signature(files, key)):
        return {}
    return files


def still_vouched(entry, path: Path, expected: str) -> bool:
    """Whether ``path`` is the very file vouched for with checksum ``expected``, unchanged since."""
    if not isinstance(entry, list) or len(entry) != 6 or entry[0] != expected:
        return False
    try:
        return _stat_identity(path) == entry[1:]
    except OSError:
        return False


def vouch(gen_dir: Path, files: dict[str, str], key: bytes) -> None:
    """Record the live generation's files (name -> sha256, all checked or written by this writer)
    as they are now. Called after the last link or unlink that touches them (a link moves a
    file's ctime). Not fsynced: a lost or torn record only means the next open hashes again."""
    try:
        entries = {name: [sha, *_stat_identity(gen_dir / name)] for name, sha in files.items()}
        record = {"generation": gen_dir.name, "files": entries, "hmac": _vouch_signature(entries, key)}
        temporary = gen_dir.parent / (VOUCHED + ".tmp")
        temporary.write_bytes(json.dumps(record).encode())
        replace_file(temporary, gen_dir.parent / VOUCHED)
    except OSError:
        pass  # a read-only or full disk: opens hash every file, as they did before the record


def _older_layout(body: dict) -> bool:
    """A manifest of the layout before segments: one vectors.faiss beside the database."""
    files = body.get("files")
    return "segments" not in body and isinstance(files, dict) and "vectors.faiss" in files


def _well_formed(body: dict) -> bool:
    from vectorstore.segments import files_of

    files, names = body.get("files"), body.get("segments")
    if not isinstance(names, list) or not all(isinstance(n, str) and n.startswith("seg-") and "/" not in n
                                              for n in names):
        return False
    expected = {DATABASE, *(f for name in names for f in files_of(name))}
    counts = body.get("counts", {})  # vectors per segment (written since segments open lazily)
    if not isinstance(counts, dict) or not all(n in names and type(c) is int and c >= 0 for n, c in counts.items()):
        return False
    return (isinstance(files, dict) and set(files) == expected and all(isinstance(v, str) for v in files.values())
            and isinstance(body.get("generation"), int) and isinstance(body.get("dim"), int)
            and isinstance(body.get("model"), str))


# -- the newest generation number: only moves forward ----------------------------------------
def _newest_signature(generation: int, key: bytes) -> str:
    return hmac.new(key, f"newest-generation:{generation}".encode(), hashlib.sha256).hexdigest()


def read_newest(index_dir: Path, key: bytes) -> int:
    """The newest generation this install published here (0 for an index older than this check)."""
    path = index_dir / NEWEST
    try:
        record = json.loads(_read_or_damaged(path, MAX_POINTER_BYTES * 4))
        generation, signature = record["generation"], record["hmac"]
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError, RecursionError):
        raise damaged(path, "is not a valid generation record") from None
    if not isinstance(generation, int) or not isinstance(signature, str) or \
            not hmac.compare_digest(signature, _newest_signature(generation, key)):
        raise damaged(path, "was not written by this docchat install (bad signature)")
    return generation


def write_newest(index_dir: Path, generation: int, key: bytes) -> None:
    """Record a published generation number (after the switch, so a crash leaves it behind, never ahead)."""
    record = {"generation": generation, "hmac": _newest_signature(generation, key)}
    temporary = index_dir / (NEWEST + ".tmp")
    write_durably(temporary, json.dumps(record).encode())
    replace_file(temporary, index_dir / NEWEST)


def replace_file(source: Path, target: Path) -> None:
    """``os.replace``, also over a folder left where the file belongs (damage a rebuild repairs)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(source, target)


def verify_live(gen_dir: Path, key: bytes, vouched: set[str] | None = None) -> dict:
    """``read_verified_manifest`` plus the roll-back checks: the manifest's generation is the
    folder's, and no older than the newest one ever published in this index folder."""
    body = read_verified_manifest(gen_dir, key, vouched)
    if body["generation"] != gen_number(gen_dir.name):
        raise damaged(gen_dir / MANIFEST, f"belongs to generation {body['generation']}, not {gen_dir.name}")
    newest = read_newest(gen_dir.parent, key)
    if body["generation"] < newest:
        raise damaged(gen_dir, f"is generation {body['generation']}, older than generation {newest} that docchat "
                      "published here: an older copy of the index was put back and would answer with stale data")
    return body


def write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_path(path: Path) -> None:
    """Flush a file or a folder entry to disk (a folder's fsync makes renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
