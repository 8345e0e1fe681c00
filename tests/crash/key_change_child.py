"""Runs one change of the history's secret, for tests/crash/test_kill_during_key_change.py to kill.

Usage: python -m tests.crash.key_change_child JOB_JSON

JOB_JSON: {"kind": set|change|remove|restore|reset, "db": path, "old": passphrase or null,
"new": passphrase or null, "backup": path, "backup_passphrase": str}. Prints "ready" once
the history is open and the change is about to begin, and "done" when it has finished.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.core.store import backup, key_change
from app.core.store.database import open_database


def main() -> None:
    job = json.loads(sys.argv[1])
    db = Path(job["db"])
    key = key_change.resolve_key(db, job["old"])
    conn = open_database(db, key)
    print("ready", flush=True)
    if job["kind"] in ("set", "change", "remove"):
        conn, _ = key_change.change_secret(conn, db, job["new"])
        conn.close()
    elif job["kind"] == "restore":
        conn.close()
        backup.restore_backup(Path(job["backup"]), job["backup_passphrase"], db, key)
    elif job["kind"] == "reset":
        conn.close()
        key_change.delete_history_and_keys(db)
    else:
        raise SystemExit(f"unknown kind {job['kind']}")
    print("done", flush=True)


if __name__ == "__main__":
    main()
