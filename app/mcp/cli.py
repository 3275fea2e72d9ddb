"""`docchat mcp [--http [--host H] [--port N]]`: the MCP server, on stdio or streamable HTTP."""

from __future__ import annotations

import argparse
import contextlib
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8101
MCP_PATH = "/mcp"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http", action="store_true",
                        help=f"serve streamable HTTP at http://HOST:PORT{MCP_PATH} instead of stdio")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"with --http: address (default {DEFAULT_HOST}; anything else needs DOCCHAT_API_KEY)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"with --http: port (default {DEFAULT_PORT})")


def run(settings, args) -> int:
    if args.http:
        from app.api.security import check_bind

        check_bind(settings, args.host, "mcp --http")
    from app.engine import Engine
    from app.mcp.server import build_server

    # stdout belongs to the protocol on stdio: everything for people goes to stderr, and so
    # does anything a library might print while the models load.
    print("docchat mcp: loading the models ...", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(sys.stderr):
        engine = Engine(settings)
        engine.load_models()  # the models load before the client's first call, not during it
        engine.read_ahead()
    server = build_server(engine)
    if not args.http:
        server.run("stdio")
        return 0
    serve_http(server, settings, args.host, args.port)
    return 0


def serve_http(server, settings, host: str, port: int) -> None:
    import uvicorn

    auth = "API key required" if settings.api_key is not None else "no API key: DOCCHAT_API_KEY is unset"
    print(f"docchat mcp: streamable HTTP on http://{host}:{port}{MCP_PATH} ({auth})", file=sys.stderr, flush=True)
    uvicorn.run(http_app(server, settings, host), host=host, port=port, log_level=settings.log_level.lower(),
                server_header=False)


def http_app(server, settings, host: str):
    """Streamable HTTP at MCP_PATH, behind the same key and size checks as `docchat serve`."""
    from app.api.security import RequestGuard

    return RequestGuard(server.streamable_http_app(streamable_http_path=MCP_PATH, host=host), settings)
