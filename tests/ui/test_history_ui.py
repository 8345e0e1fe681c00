"""The history in the window: persistence across restarts, versions, sidebar, search, lock, backup.

Real parts throughout: the starter model in the inference thread, SQLCipher on
the store writer thread, and the Secret Service that ./test.sh starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import keyring
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QFileDialog, QLineEdit
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.keys import forget_key, load_or_create_key
from app.services import Services
from app.settings import Settings
from app.ui.lock_page import LockMode
from app.ui.main_window import MainWindow
from app.ui.sidebar import MATCH_STYLE, Kind, SidebarRole
from tests.ui.windows import Windows, click_anchor, settings_with, settle

LONG = 60_000
pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@pytest.fixture
def settings(app_paths: AppPaths) -> Settings:
    return settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 24, opts.TEMPERATURE: 0.0})


OpenWindow = Callable[..., MainWindow]


@pytest.fixture
def open_window(windows: Windows, settings: Settings, starter_model: Path) -> OpenWindow:
    """Start a window like the app does; `load=True` also loads the starter model; `ready` waits for the history."""

    def start(load: bool = False, ready: bool = True) -> MainWindow:
        return windows.start(settings, ready=ready, load=starter_model if load else None)

    return start


def send(qtbot: QtBot, w: MainWindow, text: str) -> None:
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        assert w.send_message(text)
    settle(qtbot, w)


def rows(w: MainWindow) -> list[tuple[str, str]]:
    return [(w.model.item(r).role, w.model.item(r).text) for r in range(w.model.rowCount())]


def sidebar_rows(w: MainWindow) -> list[tuple[Kind, str]]:
    m = w.sidebar.model
    return [(m.rows[r].kind, m.rows[r].title) for r in range(m.rowCount())]


def test_conversations_survive_a_restart(qtbot: QtBot, open_window: OpenWindow) -> None:
    w = open_window(load=True)
    send(qtbot, w, "Name three rivers in Europe.")
    shown = rows(w)
    stats_before = w.model.item(1).stats
    assert sidebar_rows(w) == [(Kind.HEADER, "Today"), (Kind.CONVERSATION, "Name three rivers in Europe.")]
    w.close()

    again = open_window()  # no model needed to read the history
    qtbot.waitUntil(lambda: again.model.rowCount() == 2, timeout=LONG)
    assert rows(again) == shown
    assert again.model.item(1).stats == stats_before  # tokens, speed and stop reason persist
    assert sidebar_rows(again)[1] == (Kind.CONVERSATION, "Name three rivers in Europe.")
    assert again.sidebar.list.currentIndex().data(SidebarRole.CONVERSATION_ID) == again.history.conversation_id


def test_regenerate_keeps_the_old_answer_as_a_version(
    qtbot: QtBot, open_window: OpenWindow, settings: Settings
) -> None:
    w = open_window(load=True)
    send(qtbot, w, "Describe a forest.")
    first = w.model.item(1).text
    settings.set(opts.TEMPERATURE, 1.5)  # a different second answer
    settings.set(opts.MAX_TOKENS, 16)  # the shortest answer settings allow (below it, the default applies)
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        w.regenerate()
    settle(qtbot, w)
    second = w.model.item(1).text
    assert w.model.item(1).version_position == 2 and len(w.model.item(1).versions) == 2
    assert "2/2" in w.view.delegate.rendered(w.model.index(1)).doc.toPlainText()

    with qtbot.waitSignal(w.history.branch_switched, timeout=LONG):
        click_anchor(qtbot, w, 1, "‹")
    assert w.model.item(1).text == first and w.model.item(1).version_position == 1
    assert "1/2" in w.view.delegate.rendered(w.model.index(1)).doc.toPlainText()
    w.close()

    again = open_window()  # the chosen version is the one shown next time
    qtbot.waitUntil(lambda: again.model.rowCount() == 2, timeout=LONG)
    assert again.model.item(1).text == first
    with qtbot.waitSignal(again.history.branch_switched, timeout=LONG):
        click_anchor(qtbot, again, 1, "›")
    assert again.model.item(1).text == second


def test_editing_a_question_branches_the_conversation(qtbot: QtBot, open_window: OpenWindow) -> None:
    w = open_window(load=True)
    send(qtbot, w, "What is a comet?")
    original = rows(w)
    w.edit_message(0)
    assert w.composer.toPlainText() == "What is a comet?"
    send(qtbot, w, "What is an asteroid?")
    assert w.model.item(0).text == "What is an asteroid?" and w.model.item(0).version_position == 2
    with qtbot.waitSignal(w.history.branch_switched, timeout=LONG):
        click_anchor(qtbot, w, 0, "‹")
    assert rows(w) == original  # the first question with its own answer


def populate(paths: AppPaths, conversations: dict[str, list[str]]) -> dict[str, int]:
    """Write conversations straight into the history (the key from the keychain, as the app gets it)."""
    db = paths.history_db
    conn = open_database(db, load_or_create_key(db))
    store = ConversationStore(conn)
    ids = {}
    for title, messages in conversations.items():
        cid = store.create_conversation(title)
        parent = None
        for i, text in enumerate(messages):
            parent = store.add_message(cid, parent, "user" if i % 2 == 0 else "assistant", text)
        ids[title] = cid
    conn.close()
    return ids


def test_search_highlights_and_opens_the_conversation_at_the_hit(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths
) -> None:
    filler = [f"Filler message number {i} about nothing in particular." for i in range(60)]
    ids = populate(
        app_paths,
        {
            "Garden plans": ["When should I plant tulips?", "Plant tulip bulbs in autumn."],
            "Long chat": [*filler, "The spinnaker is the big sail for downwind runs.", "Noted."],
        },
    )
    w = open_window()
    qtbot.keyClicks(w.sidebar.search, "spinn")
    qtbot.waitUntil(lambda: any(r.kind == Kind.HIT for r in w.sidebar.model.rows), timeout=5000)
    hit = w.sidebar.model.rows[0]
    assert (hit.conversation_id, hit.title) == (ids["Long chat"], "Long chat")
    assert f'<span style="{MATCH_STYLE}">spinnaker</span>' in hit.snippet

    with qtbot.waitSignal(w.session.message_shown, timeout=LONG) as shown:
        qtbot.mouseClick(
            w.sidebar.list.viewport(),
            Qt.MouseButton.LeftButton,
            pos=w.sidebar.list.visualRect(w.sidebar.model.index(0)).center(),
        )
    row = shown.args[0]
    assert w.model.item(row).text.startswith("The spinnaker")
    assert w.history.conversation_id == ids["Long chat"]
    qtbot.waitUntil(lambda: w.view.viewport().rect().intersects(w.view.visualRect(w.model.index(row))), timeout=5000)

    w.sidebar.search.clear()  # back to the grouped list
    assert [t for k, t in sidebar_rows(w) if k == Kind.CONVERSATION] == ["Long chat", "Garden plans"]
    qtbot.keyClicks(w.sidebar.search, "zzzz")
    qtbot.waitUntil(lambda: w.sidebar.empty_label.isVisible(), timeout=5000)
    assert "Nothing matches" in w.sidebar.empty_label.text()


def test_rename_pin_delete_and_undo(qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths) -> None:
    ids = populate(app_paths, {"First": ["a", "b"], "Second": ["c", "d"]})
    w = open_window()
    qtbot.waitUntil(lambda: len(sidebar_rows(w)) == 3, timeout=5000)
    sidebar = w.sidebar
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        sidebar.model.setData(sidebar.model.index(sidebar.model.row_of(ids["First"])), "Renamed")
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        sidebar.pin_requested.emit(ids["First"], True)
    assert sidebar_rows(w)[:2] == [(Kind.HEADER, "Pinned"), (Kind.CONVERSATION, "Renamed")]

    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        sidebar.delete(ids["Second"])
    assert "Second" not in [t for _, t in sidebar_rows(w)]
    assert sidebar.undo_bar.isVisible() and "Second" in sidebar.undo_label.text()
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        qtbot.mouseClick(sidebar.undo_button, Qt.MouseButton.LeftButton)
    assert "Second" in [t for _, t in sidebar_rows(w)]

    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        sidebar.delete(ids["Second"])
    sidebar.finish_deletions()  # the undo time ran out
    w.close()
    conn = open_database(app_paths.history_db, load_or_create_key(app_paths.history_db))
    titles = [c.title for c in ConversationStore(conn).conversations()]
    assert titles == ["Renamed"]
    assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1  # erased, not just hidden
    conn.close()


def test_keyboard_search_delete_and_rename(qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths) -> None:
    ids = populate(app_paths, {"Apples": ["a", "b"], "Pears": ["c", "d"]})
    w = open_window()
    sidebar = w.sidebar
    qtbot.waitUntil(lambda: len(sidebar_rows(w)) == 3, timeout=5000)
    w.activateWindow()
    qtbot.waitUntil(lambda: w.isActiveWindow(), timeout=5000)

    # Esc in the search box clears it and brings the whole list back (it does not stop an answer).
    qtbot.keyClicks(sidebar.search, "pears")
    qtbot.waitUntil(lambda: [(r.kind, r.title) for r in sidebar.model.rows] == [(Kind.HIT, "Pears")], timeout=5000)
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Escape)
    assert sidebar.search.text() == ""
    assert [t for _, t in sidebar_rows(w)][1:] and "Apples" in [t for _, t in sidebar_rows(w)]

    # F2 renames the selected conversation in place.
    sidebar.list.setFocus()
    sidebar.list.setCurrentIndex(sidebar.model.index(sidebar.model.row_of(ids["Pears"])))
    qtbot.keyClick(sidebar.list, Qt.Key.Key_F2)
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit) and editor.text() == "Pears"
    editor.selectAll()
    qtbot.keyClicks(editor, "Quinces")
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert "Quinces" in [t for _, t in sidebar_rows(w)]

    # Delete deletes it, with the same Undo bar as the menu's Delete.
    sidebar.list.setFocus()
    sidebar.list.setCurrentIndex(sidebar.model.index(sidebar.model.row_of(ids["Pears"])))
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        qtbot.keyClick(sidebar.list, Qt.Key.Key_Delete)
    assert "Quinces" not in [t for _, t in sidebar_rows(w)]
    assert sidebar.undo_bar.isVisible() and "Quinces" in sidebar.undo_label.text()
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        qtbot.mouseClick(sidebar.undo_button, Qt.MouseButton.LeftButton)
    assert "Quinces" in [t for _, t in sidebar_rows(w)]

    # On a heading, neither key does anything.
    sidebar.list.setFocus()
    sidebar.list.setCurrentIndex(sidebar.model.index(0))
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Delete)
    qtbot.keyClick(sidebar.list, Qt.Key.Key_F2)
    assert not sidebar.undo_bar.isVisible()
    assert sidebar.list.state() != QAbstractItemView.State.EditingState


def test_export_round_trip_from_the_menu(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(app_paths, {"Trip": ["Where to?", "To the **coast**, with `code`."]})
    w = open_window()
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=5000)
    for fmt, name in (("json", "trip.json"), ("markdown", "trip.md")):
        # The platform's file dialog cannot be driven headless; it only supplies the path.
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, n=name, **k: (str(tmp_path / n), ""))
        with qtbot.waitSignal(w.history.finished, timeout=5000):
            w.export_conversation(None, fmt)
    data = json.loads((tmp_path / "trip.json").read_text(encoding="utf-8"))
    assert data["title"] == "Trip"
    assert [(m["role"], m["content"]) for m in data["messages"]] == rows(w)
    markdown = (tmp_path / "trip.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Trip") and "To the **coast**, with `code`." in markdown

    conn = open_database(app_paths.history_db, load_or_create_key(app_paths.history_db))
    copy = ConversationStore(conn).import_json(data)
    assert ConversationStore(conn).export_json(copy)["messages"] == data["messages"]
    conn.close()


def test_without_a_keychain_a_passphrase_protects_the_history(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, no_keyring: None
) -> None:
    w = open_window(ready=False)
    qtbot.waitUntil(lambda: w.pages.currentWidget() is w.lock_page, timeout=LONG)
    assert w.lock_page.mode == LockMode.CREATE and not app_paths.history_db.exists()  # never unencrypted
    qtbot.keyClicks(w.lock_page.passphrase, "short")
    qtbot.keyClicks(w.lock_page.confirm, "short")
    qtbot.mouseClick(w.lock_page.submit_button, Qt.MouseButton.LeftButton)
    assert "at least" in w.lock_page.error.text()
    w.lock_page.show_mode(LockMode.CREATE)
    qtbot.keyClicks(w.lock_page.passphrase, "correct horse battery")
    qtbot.keyClicks(w.lock_page.confirm, "correct horse battery")
    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        qtbot.keyClick(w.lock_page.confirm, Qt.Key.Key_Return)
    assert w.pages.currentWidget() is w.splitter
    with qtbot.waitSignal(w.session.conversation_shown, timeout=LONG):
        w.send_message("A private note about the garden.")  # no model: the answer fails, the question is kept
    settle(qtbot, w)
    w.close()

    again = open_window(ready=False)
    qtbot.waitUntil(lambda: again.lock_page.mode == LockMode.UNLOCK and again.lock_page.isVisible(), timeout=LONG)
    digest = hashlib.sha256(app_paths.history_db.read_bytes()).hexdigest()
    with qtbot.waitSignal(again.history.unavailable, timeout=LONG):
        qtbot.keyClicks(again.lock_page.passphrase, "wrong passphrase")
        qtbot.keyClick(again.lock_page.passphrase, Qt.Key.Key_Return)
    assert "does not open" in again.lock_page.error.text()
    assert hashlib.sha256(app_paths.history_db.read_bytes()).hexdigest() == digest
    again.lock_page.passphrase.clear()
    qtbot.keyClicks(again.lock_page.passphrase, "correct horse battery")
    with qtbot.waitSignal(again.history.ready, timeout=LONG):
        qtbot.keyClick(again.lock_page.passphrase, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: again.model.rowCount() >= 1, timeout=LONG)
    assert again.model.item(0).text == "A private note about the garden."

    with qtbot.waitSignal(again.history.finished, timeout=LONG):  # no keychain to clean up: still fine
        again.history.change_passphrase("another long passphrase")
    with qtbot.waitSignal(again.history.unavailable, timeout=LONG):
        again.history.delete_everything()
    assert again.lock_page.mode == LockMode.CREATE and not app_paths.history_db.exists()


def test_a_vanished_key_offers_a_new_history_and_keeps_the_old_file(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths
) -> None:
    populate(app_paths, {"Old": ["kept", "safe"]})
    forget_key(app_paths.history_db)
    w = open_window(ready=False)
    qtbot.waitUntil(lambda: w.lock_page.isVisible(), timeout=LONG)
    assert w.lock_page.mode == LockMode.PROBLEM
    assert "the system keychain has no key for this file" in w.lock_page.message.text()
    old_bytes = app_paths.history_db.read_bytes()
    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        qtbot.mouseClick(w.lock_page.new_button, Qt.MouseButton.LeftButton)
    kept = [p for p in app_paths.history_db.parent.glob("history-unopened-*.db")]
    assert len(kept) == 1 and kept[0].read_bytes() == old_bytes
    assert "kept as" in w.notice.label.text()
    assert w.sidebar.model.rowCount() == 0


def test_lock_and_auto_lock_with_a_passphrase(qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths) -> None:
    populate(app_paths, {"Secret plans": ["the plan", "noted"]})
    w = open_window()
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=5000)
    w.lock_action.trigger()  # the keychain would reopen it at once: Lock explains what it needs instead
    assert w.history.is_open and w.locking.explanation is not None and w.locking.explanation.isVisible()
    w.locking.explanation.close()
    with qtbot.waitSignal(w.history.finished, timeout=LONG):
        w.history.change_passphrase("a long passphrase")
    assert w.history.uses_passphrase and keyring.get_password("Tern", f"history:{app_paths.history_db}") is None
    assert w.lock_action.isEnabled()
    w.lock_action.trigger()
    assert w.lock_page.isVisible() and w.lock_page.mode == LockMode.UNLOCK
    assert w.model.rowCount() == 0 and w.sidebar.model.rowCount() == 0  # nothing readable stays on screen
    qtbot.keyClicks(w.lock_page.passphrase, "a long passphrase")
    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        qtbot.keyClick(w.lock_page.passphrase, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=5000)

    w.locking.idle.set_minutes(0.002)  # ~0.1 s without input
    with qtbot.waitSignal(w.history.locked, timeout=5000):
        pass
    assert w.lock_page.isVisible()

    qtbot.keyClicks(w.lock_page.passphrase, "a long passphrase")
    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        qtbot.keyClick(w.lock_page.passphrase, Qt.Key.Key_Return)
    with qtbot.waitSignal(w.history.finished, timeout=LONG):
        w.history.change_passphrase(None)  # back to the keychain
    assert not w.history.uses_passphrase
    w.close()
    conn = open_database(app_paths.history_db, load_or_create_key(app_paths.history_db))
    assert [c.title for c in ConversationStore(conn).conversations()] == ["Secret plans"]
    conn.close()


def test_backup_restore_and_delete_everything(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, tmp_path: Path
) -> None:
    populate(app_paths, {"Before backup": ["one", "two"]})
    w = open_window()
    qtbot.waitUntil(lambda: len(sidebar_rows(w)) == 2, timeout=5000)
    backup = tmp_path / "history.backup"
    with qtbot.waitSignal(w.history.finished, timeout=LONG) as done:
        w.history.write_backup(backup, "backup passphrase")
    assert "Backed up" in done.args[1] and b"Before backup" not in backup.read_bytes()

    with qtbot.waitSignal(w.history.conversations, timeout=LONG):
        w.history.rename(w.history.conversation_id or 0, "Changed after backup")
    digest = hashlib.sha256(backup.read_bytes()).hexdigest()
    with qtbot.waitSignal(w.history.ready, timeout=LONG):  # refused, and the history reopened unchanged
        w.history.restore_backup(backup, "wrong passphrase")
    assert "does not open the backup" in w.notice.label.text()
    assert hashlib.sha256(backup.read_bytes()).hexdigest() == digest
    settle(qtbot, w)
    assert [t for k, t in sidebar_rows(w) if k == Kind.CONVERSATION] == ["Changed after backup"]

    with qtbot.waitSignal(w.history.finished, timeout=LONG) as done:
        w.history.restore_backup(backup, "backup passphrase")
    assert "Restored" in done.args[1]
    qtbot.waitUntil(lambda: w.history.is_open, timeout=LONG)
    settle(qtbot, w)
    assert [t for k, t in sidebar_rows(w) if k == Kind.CONVERSATION] == ["Before backup"]

    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        w.history.delete_everything()
    settle(qtbot, w)
    assert w.sidebar.model.rowCount() == 0
    left = {p.name for p in app_paths.history_db.parent.iterdir()}
    assert left <= {"history.db", "history.db-wal", "history.db-shm", "models"}  # the new, empty history


def test_a_full_disk_is_a_message_and_the_chat_goes_on(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths
) -> None:
    populate(app_paths, {"Notes": ["first", "second"]})
    w = open_window()
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=5000)
    # Cap the file at its current size: SQLite then fails exactly as on a full disk (SQLITE_FULL).
    with qtbot.waitSignal(w.history.conversations, timeout=5000):
        w.history.query(lambda s: s.connection.execute("PRAGMA max_page_count = 1"), lambda _r: None)
        w.history.refresh()
    with qtbot.waitSignal(w.history.error, timeout=LONG) as failed:
        w.send_message("x" * 200_000)  # needs new pages
    assert "disk is full" in failed.args[0]
    assert "not updated" in w.notice.label.text()
    assert w.model.item(2).text == "x" * 200_000  # still on screen; nothing else was lost
    w.close()
    conn = open_database(app_paths.history_db, load_or_create_key(app_paths.history_db))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    texts = [r[0] for r in conn.execute("SELECT content FROM messages ORDER BY id")]
    assert texts[:2] == ["first", "second"] and "x" * 200_000 not in texts  # what did not fit is the only loss
    conn.close()


def test_a_damaged_history_file_is_kept_and_a_new_one_offered(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths
) -> None:
    populate(app_paths, {"Notes": ["first", "second"]})
    damaged = os.urandom(8192)
    app_paths.history_db.write_bytes(damaged)
    w = open_window(ready=False)
    qtbot.waitUntil(lambda: w.lock_page.isVisible(), timeout=LONG)
    assert w.lock_page.mode == LockMode.PROBLEM and "damaged" in w.lock_page.message.text()
    assert app_paths.history_db.read_bytes() == damaged  # untouched
    qtbot.mouseClick(w.lock_page.continue_button, Qt.MouseButton.LeftButton)  # chat without history
    assert w.pages.currentWidget() is w.splitter and not w.sidebar.isEnabled()
    assert "History is off" in w.notice.label.text()


def test_each_conversation_keeps_its_system_prompt(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, settings: Settings
) -> None:
    db = app_paths.history_db
    conn = open_database(db, load_or_create_key(db))
    store = ConversationStore(conn)
    pirate = store.create_conversation("Pirate", system_prompt="Talk like a pirate.")
    store.add_message(pirate, None, "user", "Ahoy")
    conn.close()
    settings.set(opts.SYSTEM_PROMPT, "Be brief.")
    w = open_window()
    qtbot.waitUntil(lambda: w.model.rowCount() == 1, timeout=5000)
    assert w.session.system_prompt == "Talk like a pirate."
    w.new_chat()
    assert w.session.system_prompt == "Be brief."
    # The default system prompt lives in the encrypted history, not in the settings file.
    qtbot.waitUntil(lambda: not settings.unsaved_private(), timeout=5000)
    assert b"Be brief" not in app_paths.settings_file.read_bytes()
    conn = open_database(db, load_or_create_key(db))
    assert ConversationStore(conn).preferences() == {opts.SYSTEM_PROMPT.key: "Be brief."}
    conn.close()


def test_privacy_settings_show_where_and_how_the_history_is_kept(qtbot: QtBot, open_window: OpenWindow) -> None:
    from app.ui.privacy_dialog import PrivacyDialog

    w = open_window()
    dialog = PrivacyDialog(w.history, w.settings, w)
    qtbot.addWidget(dialog)
    assert dialog.location.text() == str(w.history.db_path)
    assert "SQLCipher (AES-256)" in dialog.encryption.text() and "system keychain" in dialog.encryption.text()
    assert not dialog.auto_lock.isEnabled() and dialog.passphrase_button.text() == "Require a passphrase…"


def stream_a_while(qtbot: QtBot, w: MainWindow, settings: Settings, text: str) -> None:
    settings.set(opts.MAX_TOKENS, 2000)
    assert w.send_message(text)
    qtbot.waitUntil(lambda: len(w.model.item(w.model.rowCount() - 1).text) > 20, timeout=LONG)


def test_a_late_load_never_replaces_a_new_chat(qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths) -> None:
    ids = populate(app_paths, {"Old": ["old question", "old answer"]})
    w = open_window()
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=5000)
    w.open_conversation(ids["Old"])
    w.new_chat()  # before the load above has answered
    settle(qtbot, w)
    assert w.model.rowCount() == 0 and w.history.conversation_id is None
    with qtbot.waitSignal(w.session.conversation_shown, timeout=LONG):
        w.send_message("A fresh start")
    settle(qtbot, w)
    assert w.history.conversation_id not in (None, ids["Old"])
    assert [t for k, t in sidebar_rows(w) if k == Kind.CONVERSATION] == ["A fresh start", "Old"]


def test_locking_mid_answer_saves_it(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, settings: Settings
) -> None:
    w = open_window(load=True)
    with qtbot.waitSignal(w.history.finished, timeout=LONG):
        w.history.change_passphrase("a long passphrase")
    stream_a_while(qtbot, w, settings, "Write a long story about a dragon.")
    w.lock()
    on_screen = w.lock_page.isVisible()
    qtbot.keyClicks(w.lock_page.passphrase, "a long passphrase")
    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        qtbot.keyClick(w.lock_page.passphrase, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=5000)
    assert on_screen and not w.busy
    answer = w.model.item(1)
    assert len(answer.text) > 20 and answer.notice  # saved up to the lock, marked as interrupted


def test_restoring_mid_answer_keeps_the_answer_out_of_the_restored_history(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, settings: Settings, tmp_path: Path
) -> None:
    populate(app_paths, {"In the backup": ["backup question", "backup answer"]})
    w = open_window(load=True)
    backup = tmp_path / "h.backup"
    with qtbot.waitSignal(w.history.finished, timeout=LONG):
        w.history.write_backup(backup, "backup passphrase")
    w.new_chat()
    stream_a_while(qtbot, w, settings, "Write a long story about a dragon.")
    with qtbot.waitSignal(w.history.ready, timeout=LONG):
        w.history.restore_backup(backup, "backup passphrase")
    assert not w.busy and w.model.rowCount() == 0
    qtbot.wait(1200)  # past two checkpoint intervals: nothing may write into the restored file
    w.close()
    key = load_or_create_key(app_paths.history_db)
    conn = open_database(app_paths.history_db, key)
    assert [r[0] for r in conn.execute("SELECT content FROM messages ORDER BY id")] == [
        "backup question",
        "backup answer",
    ]
    conn.close()
    kept = open_database(app_paths.history_db.with_name("history.db.before-restore"), key)
    texts = [r[0] for r in kept.execute("SELECT content FROM messages ORDER BY id")]
    assert texts[-2] == "Write a long story about a dragon." and len(texts[-1]) > 20  # saved in the old file
    kept.close()


def test_a_message_sent_before_the_history_opens_is_saved(
    qtbot: QtBot, open_window: OpenWindow, app_paths: AppPaths, settings: Settings, starter_model: Path
) -> None:
    services = Services.build(app_paths)
    services.start()
    w = MainWindow(settings, services, app_paths, show_dialogs=False, open_history=False)
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.model_ready, timeout=LONG):
        w.load_model(starter_model)
    w.history.start()  # as at launch, when the keychain may take seconds to answer
    assert w.history.is_opening and not w.history.is_open
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        assert w.send_message("Sent before the history opened")
    settle(qtbot, w)
    assert rows(w)[0] == ("user", "Sent before the history opened")
    w.close()
    again = open_window()
    qtbot.waitUntil(lambda: again.model.rowCount() == 2, timeout=LONG)  # the last conversation reopens at start
    assert [t for k, t in sidebar_rows(again) if k == Kind.CONVERSATION] == ["Sent before the history opened"]
    assert rows(again)[0] == ("user", "Sent before the history opened") and rows(again)[1][1]
