"""docchat as an HTTP service: `docchat serve`.

An OpenAI-compatible chat endpoint (`/v1/chat/completions`, `/v1/models`) and docchat's own
endpoints (search, documents, threads), all thin callers of the same ``Engine`` the page and
the CLI use. ``create_app(settings)`` builds the ASGI app; ``app.api.cli`` runs it with uvicorn.

Importing this package is cheap: FastAPI and the engine load inside ``create_app``.
"""
