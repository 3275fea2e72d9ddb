"""`docchat serve [--host H] [--port N]`: the HTTP API (OpenAI-compatible chat, search, documents)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100  # not 8000: that is where `transformers serve` (a docchat backend) usually runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                        "anything else needs DOCCHAT_API_KEY)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def run(settings, args) -> int:
    from app.api.security import check_bind

    check_bind(settings, args.host, "serve")  # before loading anything: refuse fast
    import uvicorn

    from app.api.app import create_app
    from app.engine import Engine

    engine = Engine(settings)
    print("docchat: loading the models ...", file=sys.stderr, flush=True)
    engine.load_models()  # the first request should not wait ~20 s for the models
    engine.read_ahead()
    app = create_app(settings, engine)
    auth = "API key required" if settings.api_key is not None else "no API key: DOCCHAT_API_KEY is unset"
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"docchat: API on http://{shown_host}:{args.port}/v1 ({auth}); "
          f"OpenAPI at http://{shown_host}:{args.port}/docs", file=sys.stderr, flush=True)
    # The access log names method, path and status: never headers, so never the key.
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(),
                server_header=False, timeout_graceful_shutdown=5)
    return 0
