"""`docchat` command line: a thin caller of the same functions the UI uses.

The commands that only call the engine (ask, search, threads) live beside this file; the others
in their owner's `cli` module (ingest, serve, mcp, eval). Each exposes
`add_arguments(parser)` and `run(settings, args) -> int`. Those modules import only the
standard library at the top, so `docchat --help` answers at once; the heavy work is
imported inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help). Order is the order `--help` lists them.
COMMANDS = {
    "ingest": ("ingest.cli", "sync folders of documents into the index"),
    "ask": ("app.cli.ask", "ask a question; streams the answer, then its sources"),
    "search": ("app.cli.search", "show the chunks a query retrieves, without the LLM"),
    "threads": ("app.cli.threads", "list, rename or delete conversation threads"),
    "chat": ("app.ui.launch", "start the chat page in the browser (http://localhost:8501)"),
    "serve": ("app.api.cli", "serve an HTTP API: OpenAI-compatible chat, search, documents (loopback)"),
    "mcp": ("app.mcp.cli", "serve the documents to MCP clients (stdio; --http for streamable HTTP)"),
    "eval": ("app.evaluation.cli", "measure retrieval and answers on a question set"),
    "doctor": ("app.doctor", "check the configuration, models, backend and index"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docchat",
        description="Chat with your documents, locally. Settings come from the environment "
        "and .env (see .env.example).",
    )
    parser.add_argument("--env-file", default=".env", help="settings file to read (default: .env)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Libraries that print progress bars and hub chatter by default.
    for noisy in ("transformers", "sentence_transformers", "httpx", "urllib3", "faiss"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0

    from app.config import load_settings
    from app.errors import DocchatError

    configure_logging("DEBUG" if args.debug else "WARNING")
    try:
        settings = load_settings(env_file=args.env_file)
        if not args.debug:
            logging.getLogger().setLevel(settings.log_level)
        return int(args._module.run(settings, args) or 0)
    except DocchatError as exc:
        print(f"docchat: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("docchat: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if args.debug:
            raise
        print(
            f"docchat: unexpected error: {type(exc).__name__}: {exc}\n"
            "  Run again with --debug for the full traceback, and report it if it persists.",
            file=sys.stderr,
        )
        return 1
