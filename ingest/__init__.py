"""Ingest: files -> loader -> splitter -> embedder -> index."""
