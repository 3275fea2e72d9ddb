"""User-facing errors.

Every failure a user can cause or fix (a bad setting, a missing index, an unreachable
server, an unreadable file) is raised as a ``DocchatError`` carrying the fix. The CLI and
the UI print ``str(error)`` and never a traceback.
"""

from __future__ import annotations


class DocchatError(Exception):
    """An error with a message for the user and, where one exists, how to fix it."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  Fix: {self.fix}" if self.fix else self.message


class ConfigError(DocchatError):
    """A setting has a value that cannot work."""


class BackendError(DocchatError):
    """An LLM or embedding backend cannot be built or does not answer."""


class StoreError(DocchatError):
    """The index on disk is missing, foreign, tampered with, locked or inconsistent."""
