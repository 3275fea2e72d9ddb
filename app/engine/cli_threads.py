"""`docchat threads`: not built yet (see the issue tracker)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(settings, args) -> int:
    from app.errors import DocchatError

    raise DocchatError("`docchat threads` is not available yet in this version.")
