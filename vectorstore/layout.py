"""Where a generation's files live on disk, and the signed manifest that vouches for them.

    index_dir/CURRENT            name of the live generation ("gen-000007"), switched atomically
    index_dir/.lock              held by the one writer
    index_dir/gen-000007/        vectors.faiss, store.sqlite, manifest.json
    data_dir/.index_key          per-install HMAC key (0600): only files this app wrote are loaded
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from app.errors import StoreError

VECTORS = "vectors.faiss"
DATABASE = "store.sqlite"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
LOCK = ".lock"
GEN_PREFIX = "gen-"
KEY_FILE = ".index_key"
DATA_FILES = (VECTORS, DATABASE)
REBUILD = "Run `docchat ingest --full` to rebuild the index from your documents."


def gen_name(generation: int) -> str:
    return f"{GEN_PREFIX}{generation:06d}"


def gen_number(name: str) -> int | None:
    if not name.startswith(GEN_PREFIX):
        return None
    digits = name[len(GEN_PREFIX):]
    return int(digits) if digits.isdigit() else None


def current_generation(index_dir: Path) -> Path | None:
    """The live generation's folder, or None when no index has been written yet."""
    try:
        name = (index_dir / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if gen_number(name) is None:
        raise StoreError(f"The index pointer {index_dir / CURRENT} is damaged ({name[:40]!r}).", fix=REBUILD)
    return index_dir / name


def index_key(data_dir: Path) -> bytes:
    """This install's secret for signing manifests; created on first use, readable only by the user."""
    path = data_dir / KEY_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise StoreError(f"The index key {path} is damaged.", fix=f"Delete {path}, then: {REBUILD}") from None
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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(body: dict, key: bytes) -> str:
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def write_manifest(gen_dir: Path, body: dict, key: bytes) -> None:
    """Record each data file's sha256 and sign the whole with the install key."""
    body = {**body, "files": {name: file_sha256(gen_dir / name) for name in DATA_FILES}}
    signed = {"body": body, "hmac": _signature(body, key)}
    write_durably(gen_dir / MANIFEST, json.dumps(signed, indent=1).encode())


def read_verified_manifest(gen_dir: Path, key: bytes) -> dict:
    """The manifest body, after checking its signature and every file's checksum."""
    path = gen_dir / MANIFEST
    try:
        signed = json.loads(path.read_text(encoding="utf-8"))
        body, signature = signed["body"], signed["hmac"]
    except FileNotFoundError:
        raise StoreError(f"The index manifest {path} is missing.", fix=REBUILD) from None
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"The index manifest {path} is damaged.", fix=REBUILD) from None
    if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(body, key)):
        raise StoreError(
            f"The index manifest {path} was not written by this docchat install (bad signature): "
            "the index is not loaded.",
            fix=REBUILD,
        )
    for name, expected in body.get("files", {}).items():
        file = gen_dir / name
        if not file.is_file() or file_sha256(file) != expected:
            raise StoreError(
                f"The index file {file} does not match its checksum (changed or damaged since "
                "docchat wrote it): the index is not loaded.",
                fix=REBUILD,
            )
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
