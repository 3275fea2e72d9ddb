"""`docchat threads [list | show ID | rename ID TITLE | delete ID]`: manage conversations."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list threads, most recent first (the default)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="print a thread's messages")
    show.add_argument("id")
    rename = actions.add_parser("rename", help="give a thread a new title")
    rename.add_argument("id")
    rename.add_argument("title")
    delete = actions.add_parser("delete", help="delete a thread and its messages")
    delete.add_argument("id")
    parser.set_defaults(action="list", json=False)


def run(settings, args) -> int:
    from app.engine.threads import ThreadStore

    store = ThreadStore(settings.threads_db_path)
    if args.action == "rename":
        thread = store.rename(args.id, args.title)
        print(f"Renamed {thread.id}: {thread.title}")
    elif args.action == "delete":
        store.delete(args.id)
        print(f"Deleted {args.id}")
    elif args.action == "show":
        for message in store.messages(args.id):
            print(f"{message.role}: {message.content}\n")
    elif args.json:
        print(json.dumps([t.__dict__ for t in store.list()], indent=2))
    else:
        threads = store.list()
        if not threads:
            print("No conversations yet. `docchat ask \"...\"` starts one.")
        for thread in threads:
            print(f"{thread.id}  {thread.updated[:16].replace('T', ' ')}  {thread.title or '(untitled)'}")
    return 0
