"""The index. ``protocol`` says what callers may use; ``backend`` opens the configured store:
the on-disk FAISS index (the one place that writes it, ``writer``, and the reader, ``Store``;
the default) or PostgreSQL + pgvector (``postgres``, when DOCCHAT_DATABASE_URL is set).

No pickle anywhere: vectors are FAISS's native format, everything else is SQLite, and both
are only loaded when a manifest signed with this install's key vouches for them.
"""

from vectorstore.records import DocumentInfo, FileRecord, Hit, NewChunk
from vectorstore.store import Store

__all__ = ["DocumentInfo", "FileRecord", "Hit", "NewChunk", "Store"]
