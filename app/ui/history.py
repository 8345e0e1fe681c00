"""The window's link to the encrypted history: which conversation is open, and every save.

Every read and write runs on the store writer thread and answers with a
signal or a callback on the GUI thread. Message and conversation ids are
`Ref`s: a request fills one in on the writer thread and requests queued after
it read it there, so the window never waits for an id before its next save.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.docs.doc_store import DocumentStore, fuse, nearest
from app.core.docs.embedder import EmbedderSlot
from app.core.docs.grounding import Grounding, fits_whole, ground
from app.core.store import backup, key_change
from app.core.store.conversation_store import ConversationStore, OpenedConversation
from app.core.store.database import set_aside
from app.core.store.errors import StoreError
from app.workers.store_writer import StoreWriter

log = logging.getLogger("tern.history")


class Ref:
    """An id that a queued store request fills in."""

    __slots__ = ("value",)

    def __init__(self, value: int | None = None) -> None:
        self.value = value


class History(QObject):
    """Opens, locks and saves the history; the main window drives it."""

    ready = Signal()  # open and usable
    unavailable = Signal(object)  # the StoreError that keeps it closed (no keychain, wrong key, …)
    closing = Signal()  # about to close (lock, restore, delete all): save what is in progress, forget what is shown
    locked = Signal()
    conversations = Signal(list)  # [ConversationSummary]
    conversation_opened = Signal(object, object)  # OpenedConversation, message id to show (or None)
    branch_switched = Signal(int, object)  # first row that changed, OpenedConversation
    search_results = Signal(str, list)  # text, [SearchHit]
    message_saved = Signal(object, tuple)  # Ref, ids of the message's versions
    error = Signal(str)  # a store failure, written for the user
    finished = Signal(str, str)  # an operation that reports back (backup, export, …), its message

    def __init__(self, db_path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db_path = db_path
        self.conversation = Ref()
        self.is_open = False
        self.is_opening = False  # between asking the writer to open and hearing back
        self._key: bytes | None = None  # set on the writer thread while open
        self.embedder: EmbedderSlot | None = None  # for hybrid document search, when a model is chosen
        self._seq = 0
        self._callbacks: dict[str, tuple[Callable[[Any], None] | None, Callable[[str], None] | None, bool]] = {}
        self.writer = StoreWriter(self)
        self.writer.opened.connect(self._on_opened)
        self.writer.open_failed.connect(self._on_open_failed)
        self.writer.done.connect(self._on_done)
        self.writer.failed.connect(self._on_failed)

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

    def _open(self, key_source: Callable[[], bytes]) -> None:
        def fetch() -> bytes:
            self._key = key_source()
            return self._key

        self.is_opening = True
        self.writer.open(self.db_path, fetch)

    def _on_opened(self) -> None:
        self.is_opening = False
        self.is_open = True
        self._request(lambda s: s.purge_deleted())  # deletions left from last time are final
        self.ready.emit()

    def _on_open_failed(self, exc: StoreError) -> None:
        self.is_opening = False
        self.is_open = False
        self._key = None
        log.warning("History not opened: %s", exc)
        self.unavailable.emit(exc)

    def _close(self) -> None:
        """Let the window save and forget what it shows, then stop answering earlier requests."""
        self.closing.emit()  # saves queued now still run: they are ahead of the close
        self.is_open = False
        self.conversation = Ref()
        self._callbacks.clear()  # answers to earlier requests are about a history no longer shown

    def lock(self) -> None:
        """Close the database; it opens again only with the passphrase."""
        self._close()
        self.writer.close()
        self._key = None
        self.locked.emit()

    def start_new_history(self) -> None:
        """Move an unopenable history aside (kept, never deleted) and open a new one."""
        try:
            old = set_aside(self.db_path)
        except OSError as exc:
            self.error.emit(f"The old history file could not be moved aside: {exc.strerror or exc}.")
            return
        self.finished.emit("set-aside", f"Your previous history file was kept as {old}.")
        self.start()

    # Requests
    def _request(
        self,
        job: Callable[[ConversationStore], Any],
        on_done: Callable[[Any], None] | None = None,
        on_fail: Callable[[str], None] | None = None,
        closed: bool = False,
        quiet: bool = False,
    ) -> None:
        self._seq += 1
        tag = f"r{self._seq}"
        self._callbacks[tag] = (on_done, on_fail, quiet)
        if closed:
            self.writer.submit_closed(tag, job)  # type: ignore[arg-type]
        elif self.is_open:
            self.writer.submit(tag, job)
        else:
            self._callbacks.pop(tag)
            if on_fail is not None:
                on_fail("")

    def _on_done(self, tag: str, result: object) -> None:
        on_done, _, _ = self._callbacks.pop(tag, (None, None, False))
        if on_done is not None:
            on_done(result)

    def _on_failed(self, tag: str, message: str) -> None:
        _, on_fail, quiet = self._callbacks.pop(tag, (None, None, False))
        if not quiet:
            self.error.emit(message)
        if on_fail is not None:
            on_fail(message)

    def query(self, job: Callable[[ConversationStore], Any], then: Callable[[Any], None]) -> None:
        """Run `job(store)` on the writer thread and hand its result to `then` here (a failure is reported)."""
        self._request(job, then)

    # Conversations
    def ensure_conversation(self, system_prompt: str, then: Callable[[int], None]) -> None:
        """The open conversation's id, creating it first for a new chat (e.g. when files are attached)."""
        conversation = self.conversation

        def job(store: ConversationStore) -> int:
            if conversation.value is None:
                conversation.value = store.create_conversation(system_prompt=system_prompt)
            return conversation.value

        self._request(job, then)

    def refresh(self) -> None:
        """Ask for the sidebar's list."""
        self._request(lambda s: s.conversations(), self.conversations.emit)

    def new_conversation(self) -> None:
        """The next message starts a new conversation."""
        self.conversation = Ref()

    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        """Load a conversation (at `message_id`'s branch when given)."""
        self.conversation = conversation = Ref(conversation_id)

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
                self.conversation_opened.emit(opened, None)

        self._request(job, done)

    def switch_branch(self, row: int, message_id: int) -> None:
        """Show another version of the message at `row`."""
        conversation = self.conversation
        if conversation.value is None:
            return

        def done(opened: OpenedConversation) -> None:
            if self.conversation is conversation:
                self.branch_switched.emit(row, opened)

        self._request(lambda s: s.open(conversation.value or 0, message_id), done)

    def rename(self, conversation_id: int, title: str) -> None:
        """Retitle a conversation."""
        self._request(lambda s: s.rename(conversation_id, title), lambda _: self.refresh())

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        """Pin or unpin a conversation."""
        self._request(lambda s: s.set_pinned(conversation_id, pinned), lambda _: self.refresh())

    def delete(self, conversation_id: int) -> None:
        """Hide a conversation; `restore` undoes it until `purge`."""
        self._request(lambda s: s.delete(conversation_id), lambda _: self.refresh())

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

    # Messages
    def save_message(
        self,
        above: list[Ref],
        role: str,
        text: str = "",
        model: str | None = None,
        system_prompt: str = "",
        then: Callable[[], None] | None = None,
    ) -> Ref:
        """Add a message after the messages `above` it (a new conversation when none is open).

        It hangs under the nearest one that was saved, so one failed save (a
        moment of full disk) does not orphan the rest. `then` runs after, saved or not.
        """
        ref, conversation = Ref(), self.conversation

        def job(store: ConversationStore) -> tuple[int, ...]:
            if conversation.value is None:
                conversation.value = store.create_conversation(system_prompt=system_prompt)
            parent = next((r.value for r in reversed(above) if r.value is not None), None)
            ref.value = store.add_message(
                conversation.value,
                parent,
                role,
                text,
                model=model,
                complete=role == "user",
            )
            return tuple(store.siblings(ref.value))

        def done(versions: tuple[int, ...]) -> None:
            self.message_saved.emit(ref, versions)
            if then is not None:
                then()

        self._request(job, done, lambda _msg: then() if then is not None else None)
        return ref

    def ground(self, question: str, budget_tokens: int, then: Callable[[Grounding | None], None]) -> None:
        """The open conversation's document context for `question` (None without documents); `then` gets it."""
        conversation = self.conversation

        def job(store: ConversationStore) -> Grounding | None:
            if conversation.value is None:
                return None
            docs = DocumentStore(store.connection)
            documents = docs.documents(conversation.value)
            if not documents:
                return None
            if fits_whole(documents, budget_tokens):  # read every passage, search nothing
                whole = {d.id: docs.chunks(d.id) for d in documents if d.state == "ready"}
                return ground(documents, whole, [], budget_tokens)
            ranked = docs.search(conversation.value, question, 40)
            embedder = self.embedder.get() if self.embedder is not None else None
            if embedder is not None:  # words and meaning, fused by rank
                by_meaning = nearest(docs, conversation.value, embedder.embed([question])[0], 40)
                ranked = fuse(ranked, by_meaning, limit=40)
            return ground(documents, {}, ranked, budget_tokens)

        self._request(job, then, lambda _msg: then(None))

    def checkpoint(self, ref: Ref, text: str) -> None:
        """Save a streaming answer so far."""
        self._request(lambda s: s.update_message(ref.value, text, complete=False) if ref.value else None)

    def finish_answer(self, ref: Ref, text: str, stats: dict[str, Any] | None, after: Callable[[], None]) -> None:
        """Save the final answer, then refresh the sidebar through `after`."""
        self._request(lambda s: s.update_message(ref.value, text, stats) if ref.value else None, lambda _: after())

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
        """Replace the history with a backup; the current file is kept beside it."""
        key = self._key
        self._close()

        def job(_store: object) -> str:
            if key is None:
                raise StoreError("Your history is locked; unlock it before restoring.")
            kept = backup.restore_backup(src, passphrase, self.db_path, key)
            return f"Restored your history from {src}." + (f" The previous one was kept as {kept}." if kept else "")

        def reopen(message: str | None = None) -> None:
            if key is not None:
                self._open(lambda: key)
            if message is not None:
                self.finished.emit("restore", message)

        self._request(job, reopen, lambda _msg: reopen(), closed=True)

    def change_passphrase(self, passphrase: str | None) -> None:
        """Protect the history with `passphrase`, or (None) go back to a key in the keychain (crash-safe)."""

        def job(store: ConversationStore) -> str:
            connection, self._key = key_change.change_secret(store.connection, self.db_path, passphrase)
            store.use(connection)
            if passphrase:
                return "Your history now needs your passphrase to open."
            return "Your history's key is back in the system keychain; no passphrase is needed."

        self._request(job, lambda msg: self.finished.emit("passphrase", msg))

    def delete_everything(self) -> None:
        """Erase every conversation and the key, then start an empty history."""

        def job(_store: object) -> None:
            key_change.delete_history_and_keys(self.db_path)

        def reopen(_result: object) -> None:
            self.finished.emit("delete-all", "All history was deleted.")
            self.start()

        self._close()
        self._request(job, reopen, lambda _msg: self.start(), closed=True)
