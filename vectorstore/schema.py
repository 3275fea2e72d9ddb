"""The SQLite half of the index: a generation's catalog, and each segment's chunk rows and full-text index."""

from __future__ import annotations

# A generation's own small catalog: the files, metadata, and ids of older segments' chunks it dropped.
CATALOG_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    root TEXT NOT NULL, source TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL, title TEXT NOT NULL, ingested_at TEXT NOT NULL,
    PRIMARY KEY (root, source)
);
CREATE INDEX files_by_sha ON files (sha256);
CREATE TABLE deleted (id INTEGER PRIMARY KEY);
"""

# How FTS5 splits and stems words, here and where a question's words are looked up (postings.py).
FTS_TOKENIZER = "porter unicode61"

# One segment's chunk rows (immutable once published; see segments.py).
SEGMENT_SCHEMA = f"""
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, root TEXT NOT NULL, source TEXT NOT NULL, position INTEGER NOT NULL,
    text TEXT NOT NULL, content_hash TEXT NOT NULL, metadata TEXT NOT NULL
);
CREATE INDEX chunks_by_file ON chunks (root, source, position);
-- External-content FTS5 over chunks.text for BM25 keyword search, kept in step by triggers.
CREATE VIRTUAL TABLE chunks_fts USING fts5 (text, content='chunks', content_rowid='id',
                                            tokenize='{FTS_TOKENIZER}');
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
"""


def source_filter(sources: list[str] | None, column: str = "source", mark: str = "?") -> tuple[str, list[str]]:
    """SQL condition restricting to source paths, or folder prefixes when they end with '/'.

    ``mark`` is the driver's placeholder (SQLite ``?``, psycopg ``%s``); the SQL suits both.
    """
    if not sources:
        return "1 = 1", []
    clauses, params = [], []
    for source in sources:
        if source.endswith("/"):
            escaped = source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"{column} LIKE {mark} ESCAPE '\\'")
            params.append(escaped + "%")
        else:
            clauses.append(f"{column} = {mark}")
            params.append(source)
    return "(" + " OR ".join(clauses) + ")", params
