"""The history service: the encrypted history's one writer thread, the open conversation, and the key's life.

Every read and write runs on the "store" thread, which alone holds the
read-write connection and the key; callbacks come back on the GUI thread.
Message and conversation ids are `Ref`s that the store thread fills in, so a
caller never waits for an id before its next save. A turn reaches the history
through `SavedTurns`, from the thread that runs it: it waits for the
question's save, searches documents over a read-only connection of its own
(the key is handed over under a lock), and queues checkpoints without waiting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from sqlcipher3 import dbapi2 as sqlite

from app.core.docs.grounding import Source
from app.core.docs.retrieval import EmbedQuestion
from app.core.errors import UserError
from app.core.store import backup, key_change
from app.core.store.conversation_store import ConversationStore, OpenedConversation
from app.core.store.database import Connection, open_database, set_aside, translate
from app.core.store.errors import StoreError
from app.core.store.key_change import PassphraseNeededError
from app.core.store.ref import Ref
from app.core.store.state_cache import drop_all, states_path, use_states
from app.services.worker_host import WorkerHost

log = logging.getLogger("tern.history")
NOT_OPEN = "Your history is not open."
__all__ = ["HistoryService", "PassphraseNeededError"]


if TYPE_CHECKING:
    from app.services.saved_turns import SavedTurns


class _KeyHandoff:
    """The open history's key, lent to other threads for a read-only connection of their own.

    A reader holds the lock while its connection is open, and the store thread takes it to change or drop
    the key: a lock, restore or delete never runs beside a reader (whose open connection would keep the
    old file's WAL alive).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: bytes | None = None

    def set(self, key: bytes | None) -> None:
        with self._lock:
            self._key = key

    @contextlib.contextmanager
    def reading(self) -> Iterator[bytes | None]:
        """The key (None while the history is closed), held for the reader's whole use."""
        with self._lock:
            yield self._key


class StoreHost(WorkerHost):
    """The store thread: owns the read-write connection (`store`) and the key."""

    def __init__(self, db_path: Path, parent: QObject | None = None) -> None:
        super().__init__("store", parent)
        self.db_path = db_path
        self.store: ConversationStore | None = None  # this thread's only
        self.key: bytes | None = None  # this thread's only
        self.epoch = 0  # this thread's only: bumped on every open and close, so ids of a closed file go stale
        self.handoff = _KeyHandoff()

    def require(self) -> ConversationStore:
        """The open store (on the store thread), or StoreError."""
        if self.store is None:
            raise StoreError(NOT_OPEN)
        return self.store

    def open_with(self, key: bytes) -> None:
        """Open the history with `key` (on the store thread), closing one already open."""
        self.close()
        self.store = ConversationStore(open_database(self.db_path, key))
        self.epoch += 1
        self.key = key
        self.handoff.set(key)

    def use(self, connection: Connection, key: bytes) -> None:
        """Carry on with a re-keyed connection."""
        self.require().use(connection)
        self.key = key
        self.handoff.set(key)

    def close(self) -> None:
        """Forget the key (after any reader is done), then close the connection (on the store thread)."""
        self.handoff.set(None)
        self.key = None
        if self.store is not None:
            self.store.connection.close()
            self.store = None
            self.epoch += 1

    def translate(self, exc: BaseException) -> UserError | None:
        """SQLite failures the user can act on (full disk, busy, damaged)."""
        return translate(exc) if isinstance(exc, sqlite.Error) else None

    def thread_stopping(self) -> None:
        """Close the database as the thread ends."""
        self.close()


class HistoryService(QObject):
    """Opens, locks and saves the history; widgets and the turn pipeline use it."""

    ready = Signal()  # open and usable
    unavailable = Signal(object)  # the UserError that keeps it closed (no keychain, wrong key, …)
    closing = Signal()  # about to close (lock, restore, delete all): save what is in progress, forget what is shown
    locked = Signal()
    conversations = Signal(list)  # [ConversationSummary]
    conversation_opened = Signal(object, object)  # OpenedConversation, message id to show (or None)
    branch_switched = Signal(int, object)  # first row that changed, OpenedConversation
    search_results = Signal(str, list)  # text, [SearchHit]
    error = Signal(str)  # a store failure, written for the user
    finished = Signal(str, str)  # an operation that reports back (backup, export, …), its message

    def __init__(self, db_path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db_path = db_path
        self.conversation = Ref()  # the open conversation, as the store thread knows it
        self.conversation_id: int | None = None  # the same, as the GUI thread knows it
        self.is_open = False
        self.is_opening = False  # between asking the store thread to open and hearing back
        self._generation = 0  # bumped on every close: answers to earlier requests are dropped
        self.host = StoreHost(db_path, self)

    def start_thread(self) -> None:
        """Start the store thread (bootstrap does this once)."""
        self.host.start()

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Finish queued saves, close the database, join the thread."""
        return self.host.shutdown(timeout_s)

    # Opening, locking
    @property
    def uses_passphrase(self) -> bool:
        """True when the key comes from a passphrase rather than the keychain."""
        return key_change.needs_passphrase(self.db_path)

    @property
    def exists(self) -> bool:
        """True when there is a history file."""
        return self.db_path.exists() and self.db_path.stat().st_size > 0

    def start(self) -> None:
        """Open with the keychain's key; a passphrase history answers `unavailable` and waits for `unlock`."""
        self._open(lambda: key_change.resolve_key(self.db_path))

    def unlock(self, passphrase: str) -> None:
        """Open (or create) a passphrase-protected history."""
        self._open(lambda: key_change.resolve_key(self.db_path, passphrase))

    def open_with_key(self, key: bytes) -> None:
        """Open with a key held by the caller (a scratch history, as in the self-test)."""
        self._open(lambda: key)

    def _open(self, key_source: Callable[[], bytes]) -> None:
        host = self.host

        def job() -> None:
            host.close()
            host.open_with(key_source())  # a keychain call may block: here, not on the GUI thread
            host.require().purge_deleted()  # deletions left from last time are final

        self.is_opening = True
        host.submit(job, lambda _r: self._on_opened(), self._on_open_failed, label="open the history")

    def _on_opened(self) -> None:
        self.is_opening = False
        self.is_open = True
        self.ready.emit()

    def _on_open_failed(self, exc: UserError) -> None:
        self.is_opening = False
        self.is_open = False
        log.warning("History not opened: %s", exc)
        self.unavailable.emit(exc)

    def _close(self) -> None:
        """Let the window save and forget what it shows, then stop answering earlier requests."""
        self.closing.emit()  # saves queued now still run: they are ahead of the close
        self.is_open = False
        self.conversation = Ref()
        self.conversation_id = None
        self._generation += 1

    def lock(self) -> None:
        """Close the database; it opens again only with the passphrase."""
        self._close()
        self.host.submit(self.host.close, label="lock")
        self.locked.emit()

    def start_new_history(self) -> None:
        """Move an unopenable history aside (kept, never deleted) and open a new one."""

        def failed(exc: UserError) -> None:
            self.error.emit(f"The old history file could not be moved aside: {exc}")

        def moved(old: Path) -> None:
            self.finished.emit("set-aside", f"Your previous history file was kept as {old}.")
            self.start()

        def job() -> Path:
            try:
                kept = set_aside(self.db_path)
                drop_all(states_path(self.db_path))  # computed from the old history
                return kept
            except OSError as exc:
                raise StoreError(f"{exc.strerror or exc}.") from exc

        self.host.submit(job, moved, failed, label="set the history aside")

    # Requests
    def _request(
        self,
        job: Callable[[ConversationStore], Any],
        on_done: Callable[[Any], None] | None = None,
        on_fail: Callable[[str], None] | None = None,
        quiet: bool = False,
    ) -> None:
        if not self.is_open:
            if on_fail is not None:
                on_fail("")
            return
        generation, host = self._generation, self.host

        def done(result: object) -> None:
            if generation == self._generation and on_done is not None:
                on_done(result)

        def failed(exc: UserError) -> None:
            if generation != self._generation:
                return
            if not quiet:
                self.error.emit(str(exc))
            if on_fail is not None:
                on_fail(str(exc))

        host.submit(lambda: job(host.require()), done, failed, label=getattr(job, "__name__", "history request"))

    def query(self, job: Callable[[ConversationStore], Any], then: Callable[[Any], None]) -> None:
        """Run `job(store)` on the store thread and hand its result to `then` here (a failure is reported)."""
        self._request(job, then)

    # Conversations
    def ensure_conversation(self, system_prompt: str, then: Callable[[int], None]) -> None:
        """The open conversation's id, creating it first for a new chat (e.g. when files are attached)."""
        conversation = self.conversation

        def job(store: ConversationStore) -> int:
            if conversation.value is None:
                conversation.value = store.create_conversation(system_prompt=system_prompt)
            return conversation.value

        def done(cid: int) -> None:
            if self.conversation is conversation:
                self.conversation_id = cid
            then(cid)

        self._request(job, done)

    def adopt(self, ref: Ref, conversation_id: int) -> None:
        """A save created the conversation `ref` stands for: the GUI now knows its id."""
        if ref is self.conversation:
            self.conversation_id = conversation_id

    def refresh(self) -> None:
        """Ask for the sidebar's list."""
        self._request(lambda s: s.conversations(), self.conversations.emit)

    def new_conversation(self) -> None:
        """The next message starts a new conversation."""
        self.conversation = Ref()
        self.conversation_id = None

    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        """Load a conversation (at `message_id`'s branch when given)."""
        self.conversation = conversation = Ref(conversation_id)
        self.conversation_id = conversation_id

        def done(opened: OpenedConversation) -> None:
            if self.conversation is conversation:  # else the user moved on (new chat, another conversation)
                self.conversation_opened.emit(opened, message_id)

        self._request(lambda s: s.open(conversation_id, message_id), done)

    def open_latest(self, preferred: int | None, still_wanted: Callable[[], bool]) -> None:
        """Open `preferred` if it still exists, else the most recently used conversation, else nothing.

        `still_wanted` is asked when the answer arrives: the user may have started typing meanwhile.
        """

        def job(store: ConversationStore) -> OpenedConversation | None:
            live = {c.id: c for c in store.conversations()}
            if preferred in live:
                return store.open(preferred)
            latest = max(live.values(), key=lambda c: c.updated_at, default=None)
            return store.open(latest.id) if latest else None

        def done(opened: OpenedConversation | None) -> None:
            if opened is not None and still_wanted():
                self.conversation = Ref(opened.id)
                self.conversation_id = opened.id
                self.conversation_opened.emit(opened, None)

        self._request(job, done)

    def switch_branch(self, row: int, message_id: int) -> None:
        """Show another version of the message at `row`."""
        conversation, cid = self.conversation, self.conversation_id
        if cid is None:
            return

        def done(opened: OpenedConversation) -> None:
            if self.conversation is conversation:
                self.branch_switched.emit(row, opened)

        self._request(lambda s: s.open(cid, message_id), done)

    def rename(self, conversation_id: int, title: str) -> None:
        """Retitle a conversation."""
        self._request(lambda s: s.rename(conversation_id, title), lambda _: self.refresh())

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        """Pin or unpin a conversation."""
        self._request(lambda s: s.set_pinned(conversation_id, pinned), lambda _: self.refresh())

    def delete(self, conversation_id: int) -> None:
        """Hide a conversation (`restore` undoes it until `purge`), and forget its saved model state."""
        host = self.host

        def job(store: ConversationStore) -> None:
            store.delete(conversation_id)
            if host.key is not None:
                use_states(self.db_path, host.key, lambda cache: cache.drop([conversation_id]))

        self._request(job, lambda _: self.refresh())

    def restore(self, conversation_ids: list[int]) -> None:
        """Undo deletions."""

        def job(store: ConversationStore) -> None:
            for cid in conversation_ids:
                store.restore(cid)

        self._request(job, lambda _: self.refresh())

    def purge(self) -> None:
        """Erase deleted conversations for good."""
        self._request(lambda s: s.purge_deleted())

    def search(self, text: str) -> None:
        """Search titles and messages; the answer (empty on failure) comes as `search_results`."""
        self._request(
            lambda s: s.search(text),
            lambda hits: self.search_results.emit(text, hits),
            lambda _msg: self.search_results.emit(text, []),
            quiet=True,
        )

    def load_preferences(self, unsaved: dict[str, str], then: Callable[[dict[str, str] | None], None]) -> None:
        """The preferences kept in the history, after writing `unsaved` ones into it (None if that failed)."""

        def job(store: ConversationStore) -> dict[str, str]:
            for key, value in unsaved.items():
                store.set_preference(key, value)
            return store.preferences()

        self._request(job, then, lambda _message: then(None))

    def keep_preference(self, key: str, value: str) -> bool:
        """Save a private preference; False while the history is not open."""
        if not self.is_open:
            return False
        self._request(lambda s: s.set_preference(key, value))
        return True

    def set_system_prompt(self, text: str) -> None:
        """The open conversation's system prompt."""
        conversation = self.conversation
        self._request(lambda s: s.set_system_prompt(conversation.value, text) if conversation.value else None)

    def save_interrupted(self, answer: Ref, text: str, notice: str, sources: tuple[Source, ...]) -> None:
        """Save an answer as it stands on screen, marked with `notice` (queued ahead of a close)."""
        stats = {"notice": notice, **({"sources": [asdict(s) for s in sources]} if sources else {})}
        self._request(lambda s: s.update_message(answer.value, text, stats) if answer.value else None)

    # Whole-history operations
    def export(self, conversation_id: int, path: Path, fmt: str) -> None:
        """Write a conversation to `path` as "markdown" or "json"."""

        def job(store: ConversationStore) -> str:
            if fmt == "json":
                text = json.dumps(store.export_json(conversation_id), ensure_ascii=False, indent=2)
            else:
                text = store.export_markdown(conversation_id)
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise StoreError(f"The conversation could not be written to {path}: {exc.strerror}.") from exc
            return f"Saved the conversation to {path}."

        self._request(job, lambda msg: self.finished.emit("export", msg))

    def write_backup(self, dest: Path, passphrase: str) -> None:
        """An encrypted copy of the whole history, opened by `passphrase` alone."""
        self._request(
            lambda s: backup.write_backup(s.connection, dest, passphrase),
            lambda _: self.finished.emit("backup", f"Backed up your history to {dest}."),
        )

    def restore_backup(self, src: Path, passphrase: str) -> None:
        """Replace the history with a backup; the current file is kept beside it, and the history reopens."""
        host = self.host
        self._close()

        def job() -> tuple[bool, str]:
            key = host.key
            if key is None:
                raise StoreError("Your history is locked; unlock it before restoring.")
            host.close()
            try:
                kept = backup.restore_backup(src, passphrase, self.db_path, key)
            except UserError as exc:  # the current history is untouched: open it again
                host.open_with(key)
                return False, str(exc)
            drop_all(states_path(self.db_path))  # computed from the history that was replaced
            host.open_with(key)
            return True, f"Restored your history from {src}." + (
                f" The previous one was kept as {kept}." if kept else ""
            )

        def done(result: tuple[bool, str]) -> None:
            restored, message = result
            self._on_opened()
            if restored:
                self.finished.emit("restore", message)
            else:
                self.error.emit(message)

        def failed(exc: UserError) -> None:
            self.error.emit(str(exc))
            self.start()

        self.is_opening = True
        host.submit(job, done, failed, label="restore a backup")

    def change_passphrase(self, passphrase: str | None) -> None:
        """Protect the history with `passphrase`, or (None) go back to a key in the keychain (crash-safe)."""
        host = self.host

        def job(store: ConversationStore) -> str:
            host.handoff.set(None)  # no reader beside the re-encryption
            try:
                connection, key = key_change.change_secret(store.connection, self.db_path, passphrase)
            except BaseException:
                host.handoff.set(host.key)
                raise
            host.use(connection, key)
            drop_all(states_path(self.db_path))  # under the old key
            if passphrase:
                return "Your history now needs your passphrase to open."
            return "Your history's key is back in the system keychain; no passphrase is needed."

        self._request(job, lambda msg: self.finished.emit("passphrase", msg))

    def delete_everything(self) -> None:
        """Erase every conversation and the key, then start an empty history."""
        host = self.host

        def job() -> None:
            host.close()
            key_change.delete_history_and_keys(self.db_path)
            drop_all(states_path(self.db_path))

        def reopen(_result: object) -> None:
            self.finished.emit("delete-all", "All history was deleted.")
            self.start()

        def failed(exc: UserError) -> None:
            self.error.emit(str(exc))
            self.start()

        self._close()
        host.submit(job, reopen, failed, label="delete all history")

    def saved_turns(self, embed: EmbedQuestion | None = None) -> SavedTurns:
        """The history as a turn sees it, for the thread that runs turns."""
        from app.services.saved_turns import SavedTurns  # it needs this module's service: imported on use

        return SavedTurns(self, embed)
