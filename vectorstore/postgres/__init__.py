"""The index in PostgreSQL + pgvector (server mode, ``DOCCHAT_DATABASE_URL``)."""
