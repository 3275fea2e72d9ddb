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
    parser.add_argument("--watch", action="store_true",
                        help="keep syncing as files are added, changed, renamed or deleted (Ctrl-C stops)")


def run(settings, args) -> int:
    from pathlib import Path

    if args.watch:
        return run_watch(settings, args)
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


def run_watch(settings, args) -> int:
    """Sync now, then after each batch of changes; a summary per sync that changed something."""
    from pathlib import Path

    from app.errors import DocchatError
    from ingest.watch import watch

    if args.dry_run or args.full:
        raise DocchatError("--watch cannot be combined with --dry-run or --full.",
                           fix="Run `docchat ingest --full` (or --dry-run) once, then `docchat ingest --watch`.")
    if not args.paths:
        settings.docs_path.mkdir(parents=True, exist_ok=True)  # as a plain ingest does
    folders = [Path(p) for p in args.paths] or [settings.docs_path]

    def show(report) -> None:
        if report.error:
            print(f"docchat: sync failed, trying again after the next change: {report.error}", file=sys.stderr, flush=True)
        elif args.json:
            print(json.dumps(report.summary.to_dict()), flush=True)
        elif report.events == 0 or report.summary.generation is not None or report.summary.failed:
            print(format_summary(report.summary), flush=True)
            if report.events == 0:
                print(f"Watching {', '.join(report.summary.roots)} (Ctrl-C stops)", file=sys.stderr, flush=True)

    try:
        watch(settings, folders, on_sync=show, include=args.include, exclude=args.exclude)
    except KeyboardInterrupt:
        pass
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
