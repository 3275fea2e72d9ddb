"""The PostgreSQL schema, as numbered migrations applied in order, each once.

``docchat_schema`` records the applied version. Migrations run in one transaction under an
advisory lock, so two replicas starting together apply each exactly once. The embedding
column gets its dimension (and its HNSW index) when the first vectors are written, since
HNSW needs a fixed dimension and the model is not known before (``stamp_model``).
"""

from __future__ import annotations

MIGRATION_LOCK = 0x646F6363_0001  # pg_advisory_xact_lock keys: one per purpose ("docc" + n)
INDEX_LOCK = 0x646F6363_0002  # shared by per-file syncs, exclusive for a full rebuild and the stamp
TERMS_LOCK = 0x646F6363_0003  # one folding of term changes into docchat_terms at a time
MIN_PGVECTOR = (0, 8, 0)  # iterative index scans (filtered HNSW search that fills the top-k)
# A text as FTS5's unicode61 + porter tokenizer reads it, for the ``docchat_porter`` configuration:
# runs of letters and digits; a word of one or two letters is not stemmed (FTS5 stems from three
# letters: "ts", "us" stay), so it gets a suffix no stemming rule touches. For chunks and queries alike.
FTS_TEXT = ("regexp_replace(regexp_replace({}, '[^[:alnum:]]+', ' ', 'g'), "
            "'\\m([[:alpha:]]{{1,2}})\\M', '\\100', 'g')")

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE docchat_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE docchat_files (
    root text NOT NULL, source text NOT NULL, size bigint NOT NULL, mtime_ns bigint NOT NULL,
    sha256 text NOT NULL, title text NOT NULL, ingested_at text NOT NULL,
    PRIMARY KEY (root, source)
);
CREATE TABLE docchat_chunks (
    id bigserial PRIMARY KEY,
    root text NOT NULL, source text NOT NULL, position integer NOT NULL,
    text text NOT NULL, content_hash text NOT NULL, metadata jsonb NOT NULL,
    embedding vector NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX docchat_chunks_by_file ON docchat_chunks (root, source, position);
CREATE INDEX docchat_chunks_by_source ON docchat_chunks (source text_pattern_ops);
CREATE INDEX docchat_chunks_fts ON docchat_chunks USING gin (tsv);
CREATE SEQUENCE docchat_changes;
"""),
    # BM25 for the keyword side, as the local store's FTS5 index ranks (vectorstore.postgres.keywords):
    # - words as FTS5's unicode61 tokenizer splits them (runs of letters and digits; "work_mem" and
    #   "postgresql.conf" are two words each), Porter's stemmer, no stop words dropped: the
    #   ``docchat_porter`` configuration over ``FTS_TEXT``;
    # - each chunk's length in words, and per-lexeme chunk counts. A file's sync appends its +/-
    #   counts to docchat_term_changes in its own transaction (no row another writer updates, so
    #   syncs of different files never wait on each other); writers fold the changes into
    #   docchat_terms now and then. The '' lexeme holds the number of chunks and their total words.
    (2, """
CREATE TEXT SEARCH DICTIONARY docchat_porter (TEMPLATE = snowball, Language = porter);
CREATE TEXT SEARCH CONFIGURATION docchat_porter (PARSER = default);
ALTER TEXT SEARCH CONFIGURATION docchat_porter
    ADD MAPPING FOR asciiword, word, numword, int, uint, float, sfloat, version WITH docchat_porter;
ALTER TABLE docchat_chunks DROP COLUMN tsv;
ALTER TABLE docchat_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS
    (to_tsvector('docchat_porter', """ + FTS_TEXT.format("text") + """)) STORED;
CREATE INDEX docchat_chunks_fts ON docchat_chunks USING gin (tsv);
ALTER TABLE docchat_chunks ADD COLUMN words integer NOT NULL DEFAULT 0;
UPDATE docchat_chunks SET words = coalesce(array_length(
    regexp_split_to_array(btrim(regexp_replace(text, '[^[:alnum:]]+', ' ', 'g')), ' '), 1), 0);
CREATE TABLE docchat_terms (lexeme text PRIMARY KEY, chunks bigint NOT NULL, words bigint NOT NULL DEFAULT 0);
CREATE TABLE docchat_term_changes (lexeme text NOT NULL, chunks bigint NOT NULL, words bigint NOT NULL DEFAULT 0);
CREATE INDEX docchat_term_changes_by_lexeme ON docchat_term_changes (lexeme);
INSERT INTO docchat_terms (lexeme, chunks)
    SELECT lexeme, count(*) FROM docchat_chunks, unnest(tsvector_to_array(tsv)) AS lexeme GROUP BY lexeme;
INSERT INTO docchat_terms (lexeme, chunks, words) SELECT '', count(*), coalesce(sum(words), 0) FROM docchat_chunks;
"""),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(conn) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE IF NOT EXISTS docchat_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM docchat_schema").fetchone()
        found = row[0] or 0
        for version, sql in MIGRATIONS:
            if version > found:
                conn.execute(sql)
                conn.execute("INSERT INTO docchat_schema (version) VALUES (%s)", [version])
    return found


def stamp_sql(dim: int, graph: dict[str, int]) -> list[str]:
    """Give the embedding column its dimension and build the HNSW index (inner product on
    normalised vectors = cosine) with ``graph``'s parameters (``hnsw_graph``)."""
    return [f"ALTER TABLE docchat_chunks ALTER COLUMN embedding TYPE vector({int(dim)})", hnsw_sql(graph)]


def hnsw_graph(settings) -> dict[str, int]:
    """The HNSW build parameters the settings ask for."""
    return {"m": int(settings.hnsw_m), "ef_construction": int(settings.hnsw_ef_construction)}


def hnsw_sql(graph: dict[str, int]) -> str:
    options = ", ".join(f"{name} = {value}" for name, value in graph.items())
    return f"CREATE INDEX IF NOT EXISTS docchat_chunks_hnsw ON docchat_chunks USING hnsw (embedding vector_ip_ops) WITH ({options})"


def built_graph(conn) -> dict[str, int] | None:
    """The parameters the HNSW index was built with (pgvector's defaults where none were given),
    or None when there is no index."""
    found = conn.execute("SELECT reloptions FROM pg_class WHERE oid = to_regclass('docchat_chunks_hnsw')").fetchone()
    if found is None:
        return None
    graph = {"m": 16, "ef_construction": 64}  # pgvector's defaults
    graph.update((name, int(value)) for name, value in (option.split("=", 1) for option in found[0] or []))
    return graph


def unstamp_sql() -> list[str]:
    """Before a full rebuild with another model: no dimension, no HNSW index."""
    return [
        "DROP INDEX IF EXISTS docchat_chunks_hnsw",
        "ALTER TABLE docchat_chunks ALTER COLUMN embedding TYPE vector",
        "DELETE FROM docchat_meta WHERE key IN ('model', 'dim', 'embedding')",
    ]

