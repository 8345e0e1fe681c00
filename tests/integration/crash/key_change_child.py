"""Runs one change of the history's secret, for tests/integration/crash/test_kill_during_key_change.py to kill.

Usage: python -m tests.integration.crash.key_change_child JOB_JSON

JOB_JSON: {"kind": set|change|remove|restore|reset, "db": path, "old": passphrase or null,
"new": passphrase or null, "backup": path, "backup_passphrase": str, "kill_at_op": int or null}.
Prints "ready" once the history is open and the change is about to begin, then "done ops N"
(one line, one write) when it has finished: N file and keychain operations (unlink, rename, keychain
write or delete). With "kill_at_op": k, the process kills itself (SIGKILL) just before its
k-th operation, so a change that takes milliseconds can still be cut at every step.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keyring

from app.core.store import backup, key_change
from app.core.store.database import open_database


def count_operations(kill_at: int | None) -> list[int]:
    """Count file renames and deletions and keychain writes from here on; die before number `kill_at`."""
    done = [0]

    def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if done[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            done[0] += 1
            return fn(*args, **kwargs)

        return call

    for name in ("unlink", "remove", "replace", "rename"):
        setattr(os, name, counted(getattr(os, name)))  # pathlib calls these too
    for name in ("set_password", "delete_password"):
        setattr(keyring, name, counted(getattr(keyring, name)))
    return done


def main() -> None:
    job = json.loads(sys.argv[1])
    db = Path(job["db"])
    key = key_change.resolve_key(db, job["old"])
    conn = open_database(db, key)
    print("ready", flush=True)
    operations = count_operations(job.get("kill_at_op"))
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
    print(f"done ops {operations[0]}", flush=True)  # one write: a kill cannot fall between the two


if __name__ == "__main__":
    main()
