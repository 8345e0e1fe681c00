"""The one background-work API: operations in order off the GUI thread, one failure route, bounded shutdown.

The store tests moved here from tests/workers/test_store_writer.py; they now
run through the history service's store thread over a real SQLCipher file.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.errors import UserError
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.errors import WrongKeyError
from app.services.history import HistoryService
from app.services.messages import MessageBridge
from app.services.worker_host import UNEXPECTED, WorkerHost


def opened_history(qtbot: QtBot, path: Path, key: bytes) -> HistoryService:
    history = HistoryService(path)
    history.start_thread()
    with qtbot.waitSignal(history.ready, timeout=10_000):
        history.open_with_key(key)
    return history


def test_requests_run_in_order_off_the_gui_thread(qtbot: QtBot, tmp_path: Path) -> None:
    history = opened_history(qtbot, tmp_path / "h.db", secrets.token_bytes(48))
    results: list[tuple[str, object]] = []
    threads: list[int] = []
    try:

        def create(store: ConversationStore) -> int:
            threads.append(threading.get_ident())
            return store.create_conversation("Trip")

        history.query(create, lambda r: results.append(("create", r)))
        history.query(lambda store: [c.title for c in store.conversations()], lambda r: results.append(("list", r)))
        qtbot.waitUntil(lambda: len(results) == 2, timeout=10_000)
    finally:
        assert history.shutdown()
    assert [tag for tag, _ in results] == ["create", "list"]
    assert results[1][1] == ["Trip"]
    assert threads and threads[0] != threading.main_thread().ident


def test_wrong_key_is_reported(qtbot: QtBot, tmp_path: Path) -> None:
    open_database(tmp_path / "h.db", secrets.token_bytes(48)).close()
    history = HistoryService(tmp_path / "h.db")
    history.start_thread()
    try:
        with qtbot.waitSignal(history.unavailable, timeout=10_000) as failed:
            history.open_with_key(secrets.token_bytes(48))
        assert isinstance(failed.args[0], WrongKeyError) and "does not open" in str(failed.args[0])
        assert not history.is_open
    finally:
        assert history.shutdown()


def test_shutdown_writes_everything_queued(qtbot: QtBot, tmp_path: Path) -> None:
    key = secrets.token_bytes(48)
    history = opened_history(qtbot, tmp_path / "h.db", key)
    history.query(lambda store: store.create_conversation("Queue"), lambda _r: None)
    for i in range(200):
        history.query(lambda store, i=i: store.add_message(1, None, "user", f"message {i}"), lambda _r: None)
    assert history.shutdown()  # right away: nothing queued may be lost
    store = ConversationStore(open_database(tmp_path / "h.db", key))
    count = store.connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert count == 200


def test_a_bug_in_a_request_is_answered_not_swallowed(qtbot: QtBot, tmp_path: Path) -> None:
    history = opened_history(qtbot, tmp_path / "h.db", secrets.token_bytes(48))
    try:

        def broken(store: ConversationStore) -> None:
            raise RuntimeError("a bug")

        with qtbot.waitSignal(history.error, timeout=10_000) as failed:
            history.query(broken, lambda _r: None)
        assert failed.args[0] == UNEXPECTED
        done: list[object] = []
        history.query(lambda store: store.create_conversation("after"), done.append)  # the thread carries on
        qtbot.waitUntil(lambda: bool(done), timeout=10_000)
    finally:
        assert history.shutdown()


def test_outcomes_reach_their_own_operation_on_the_gui_thread(qtbot: QtBot) -> None:
    host = WorkerHost("test-host")
    host.start()
    seen: list[tuple[str, object, bool]] = []
    gui = threading.get_ident()
    try:
        host.submit(lambda: 1, lambda r: seen.append(("first", r, threading.get_ident() == gui)))
        host.submit(lambda: 2, lambda r: seen.append(("second", r, threading.get_ident() == gui)))

        def refuse() -> None:
            raise UserError("That file is damaged.")

        host.submit(refuse, failed=lambda e: seen.append(("refused", str(e), threading.get_ident() == gui)))
        qtbot.waitUntil(lambda: len(seen) == 3, timeout=5000)
    finally:
        assert host.shutdown()
    assert seen == [("first", 1, True), ("second", 2, True), ("refused", "That file is damaged.", True)]


def test_an_unhandled_failure_goes_to_the_message_bridge(qtbot: QtBot) -> None:
    host = WorkerHost("test-host")
    bridge = MessageBridge()
    host.failure.connect(bridge.report)
    host.start()
    try:

        def full() -> None:
            raise UserError("The disk is full.")

        with qtbot.waitSignal(bridge.message, timeout=5000) as shown:
            host.submit(full)
        assert shown.args == ["The disk is full.", True]
    finally:
        assert host.shutdown()


def test_call_waits_from_another_thread_and_raises_the_user_error(qtbot: QtBot) -> None:
    host = WorkerHost("test-host")
    host.start()
    answers: list[object] = []

    def refuse() -> None:
        raise UserError("No.")

    def worker() -> None:
        answers.append(host.call(lambda: threading.current_thread().name))
        try:
            host.call(refuse)
        except UserError as exc:
            answers.append(str(exc))

    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join(5)
    finally:
        assert host.shutdown()
    assert answers == ["test-host", "No."]


def test_shutdown_is_bounded_and_abandons_a_stuck_thread(qtbot: QtBot, caplog: object) -> None:
    host = WorkerHost("stuck")
    release = threading.Event()
    host.start()
    host.submit(lambda: release.wait(30))
    time.sleep(0.1)
    started = time.monotonic()
    try:
        assert host.shutdown(timeout_s=0.5) is False  # abandoned, with a log line
        assert time.monotonic() - started < 2
    finally:
        release.set()
