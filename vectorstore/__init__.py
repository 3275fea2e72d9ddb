"""The on-disk FAISS index: the one place that writes it, and the reader."""
