"""`docchat migrate --to postgres|local`: copy the index between the local folder and the
PostgreSQL database of DOCCHAT_DATABASE_URL, vectors included (nothing is re-embedded), and the
conversation threads with it."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, choices=["postgres", "local"],
                        help="postgres: local index (DOCCHAT_INDEX_DIR) -> DOCCHAT_DATABASE_URL; local: the reverse")
    parser.add_argument("--replace", action="store_true", help="overwrite a target index that already has documents")


def run(settings, args) -> int:
    from app.errors import ConfigError
    from vectorstore.transfer import copy_index, copy_threads

    if not settings.database_dsn:
        raise ConfigError("`docchat migrate` needs DOCCHAT_DATABASE_URL: it copies between the local index and "
                          "that PostgreSQL database.", fix="Set DOCCHAT_DATABASE_URL=postgresql://USER:PASSWORD@HOST/DB.")
    source = "local" if args.to == "postgres" else "postgres"

    def progress(n: int, total: int, name: str) -> None:
        print(f"\r  {n}/{total} {name[:60]:<60}", end="", file=sys.stderr, flush=True)

    done = copy_index(settings, source=source, target=args.to, replace=args.replace, progress=progress)
    print(file=sys.stderr)
    print(f"Copied {done['files']} documents ({done['chunks']} chunks, {done['model']}) from the {source} index "
          f"to the {args.to} one; nothing was re-embedded.")
    threads = copy_threads(settings, source=source, target=args.to)
    kept = f" ({threads['kept']} were there already and were kept as they are)" if threads["kept"] else ""
    print(f"Copied {threads['threads']} conversation threads{kept}.")
    return 0
