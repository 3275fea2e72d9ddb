"""Figures as people read them: durations, sizes, dates."""

from __future__ import annotations

from datetime import datetime, timezone


def duration(ms: float | None) -> str:
    """``340 ms``, ``1.2 s``, ``2 min 5 s``."""
    if ms is None:
        return "n/a"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def size(n_bytes: int | None) -> str:
    """``812 B``, ``4.2 KB``, ``1.3 MB`` (1024-based, as file managers show)."""
    if n_bytes is None:
        return ""
    value = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # pragma: no cover


def local_time(iso: str) -> datetime | None:
    """A stored ISO 8601 stamp in this machine's time zone (None if unreadable)."""
    try:
        stamp = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone()


def when(iso: str, now: datetime | None = None) -> str:
    """``14:05`` today, ``yesterday 14:05``, ``Mon 14:05`` this week, else ``3 Mar 2025``."""
    stamp = local_time(iso)
    if stamp is None:
        return ""
    now = now or datetime.now().astimezone()
    days = (now.date() - stamp.date()).days
    if days == 0:
        return stamp.strftime("%H:%M")
    if days == 1:
        return "yesterday " + stamp.strftime("%H:%M")
    if 1 < days < 7:
        return stamp.strftime("%a %H:%M")
    return f"{stamp.day} {stamp.strftime('%b %Y')}"


def age_group(iso: str, now: datetime | None = None) -> str:
    """Today, Yesterday, Previous 7 days, Older: how conversation lists group threads."""
    stamp = local_time(iso)
    if stamp is None:
        return "Older"
    now = now or datetime.now().astimezone()
    days = (now.date() - stamp.date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    return "Previous 7 days" if days < 7 else "Older"
