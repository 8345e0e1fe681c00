"""The store writer thread over a real SQLCipher database."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.errors import WrongKeyError
from app.workers.store_writer import StoreWriter


def test_requests_run_in_order_off_the_gui_thread(qtbot: QtBot, tmp_path: Path) -> None:
    writer = StoreWriter()
    key = secrets.token_bytes(32)
    results: list[tuple[str, object]] = []
    writer.done.connect(lambda tag, result: results.append((tag, result)))
    try:
        with qtbot.waitSignal(writer.opened, timeout=10_000):
            writer.open(tmp_path / "h.db", key)
        threads: list[int] = []

        def create(store: ConversationStore) -> int:
            threads.append(threading.get_ident())
            return store.create_conversation("Trip")

        writer.submit("create", create)
        writer.submit("list", lambda store: [c.title for c in store.conversations()])
        qtbot.waitUntil(lambda: len(results) == 2, timeout=10_000)
    finally:
        writer.shutdown()
    assert [tag for tag, _ in results] == ["create", "list"]
    assert results[1][1] == ["Trip"]
    assert threads and threads[0] != threading.main_thread().ident


def test_wrong_key_is_reported(qtbot: QtBot, tmp_path: Path) -> None:
    open_database(tmp_path / "h.db", secrets.token_bytes(32)).close()
    writer = StoreWriter()
    try:
        with qtbot.waitSignal(writer.open_failed, timeout=10_000) as failed:
            writer.open(tmp_path / "h.db", secrets.token_bytes(32))
        assert isinstance(failed.args[0], WrongKeyError) and "does not open" in str(failed.args[0])
    finally:
        writer.shutdown()


def test_shutdown_writes_everything_queued(qtbot: QtBot, tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    writer = StoreWriter()
    with qtbot.waitSignal(writer.opened, timeout=10_000):
        writer.open(tmp_path / "h.db", key)
    writer.submit("create", lambda store: store.create_conversation("Queue"))
    for i in range(200):
        writer.submit("add", lambda store, i=i: store.add_message(1, None, "user", f"message {i}"))
    writer.shutdown()  # right away: nothing queued may be lost
    store = ConversationStore(open_database(tmp_path / "h.db", key))
    count = store._db.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert count == 200


def test_a_bug_in_a_request_is_answered_not_swallowed(qtbot: QtBot, tmp_path: Path) -> None:
    writer = StoreWriter()
    try:
        with qtbot.waitSignal(writer.opened, timeout=10_000):
            writer.open(tmp_path / "h.db", secrets.token_bytes(32))

        def broken(store: ConversationStore) -> None:
            raise RuntimeError("a bug")

        with qtbot.waitSignal(writer.failed, timeout=10_000) as failed:
            writer.submit("broken", broken)
        assert failed.args[0] == "broken" and "unexpected error" in failed.args[1]
        with qtbot.waitSignal(writer.done, timeout=10_000) as done:  # the writer carries on
            writer.submit("next", lambda store: store.create_conversation("after"))
        assert done.args[0] == "next"
    finally:
        writer.shutdown()
