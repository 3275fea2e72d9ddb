"""`docchat ingest [PATH ...]`: sync folders into the index, with progress and a summary."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="folders (or files) to sync; default: DOCCHAT_DOCS_DIR")
    parser.add_argument("--full", action="store_true", help="rebuild the index from scratch (re-embeds everything)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change; embed and write nothing")
    parser.add_argument("--include", action="append", metavar="GLOB",
                        help="only files matching GLOB (path or name; repeatable); others are left as they are")
    parser.add_argument("--exclude", action="append", metavar="GLOB",
                        help="leave files matching GLOB alone (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def run(settings, args) -> int:
    from pathlib import Path

    from ingest.progress import progress_printer
    from ingest.sync import sync

    with progress_printer(sys.stderr) as progress:
        summary = sync(settings, [Path(p) for p in args.paths] or None, full=args.full, dry_run=args.dry_run,
                       include=args.include, exclude=args.exclude, progress=progress)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    if summary.ingested_nothing:
        print(f"docchat: nothing could be ingested: all {len(summary.failed)} candidate files failed (reasons above).",
              file=sys.stderr)
        return 1
    return 0


def format_summary(summary) -> str:
    """The human summary: counts, then every file that changed, failed or was skipped."""
    verb = "Would change" if summary.dry_run else "Synced"
    lines = [f"{verb} {', '.join(summary.roots)}"]
    counts = summary.to_dict()["counts"]
    lines.append("  files: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    if not summary.dry_run:
        lines.append(f"  chunks: {summary.chunks_added} added ({summary.chunks_embedded} embedded), "
                     f"{summary.chunks_deleted} deleted; {summary.seconds:.1f} s")
        if summary.generation is None:
            lines.append("  index unchanged (nothing to write)")
    for label, items in (("added", summary.added), ("updated", summary.updated), ("deleted", summary.deleted)):
        lines += [f"  {label}: {source}" for source in items]
    lines += [f"  renamed: {old} -> {new}" for old, new in summary.renamed]
    lines += [f"  failed: {source}: {reason}" for source, reason in summary.failed]
    lines += [f"  skipped: {source}: {reason}" for source, reason in summary.skipped]
    lines += [f"  note: {note}" for note in summary.notes]
    return "\n".join(lines)
