"""One write transaction over a database connection opened in autocommit mode.

Kept apart from `database`, which imports `schema` at load time: the schema's
migrations use this too, so living there would make the two import each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class _Executes(Protocol):
    """What a transaction needs of a connection opened with `isolation_level=None` (autocommit)."""

    def execute(self, sql: str, /) -> object: ...


@contextmanager
def transaction(conn: _Executes) -> Iterator[None]:
    """Run the block in BEGIN IMMEDIATE … COMMIT; roll back and re-raise on any exception."""
    # IMMEDIATE takes the write lock up front, so a busy database fails here rather than halfway through.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:  # Ctrl-C or a worker's exit too: never leave the write lock held
        conn.execute("ROLLBACK")
        raise
