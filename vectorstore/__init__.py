"""The on-disk FAISS index: the one place that writes it (``writer``), and the reader (``Store``).

No pickle anywhere: vectors are FAISS's native format, everything else is SQLite, and both
are only loaded when a manifest signed with this install's key vouches for them.
"""

from vectorstore.records import DocumentInfo, FileRecord, Hit, NewChunk
from vectorstore.store import Store

__all__ = ["DocumentInfo", "FileRecord", "Hit", "NewChunk", "Store"]
