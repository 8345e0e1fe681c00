"""The history as a turn sees it (`TurnStore`), from the thread that runs turns.

It queues the question's and the answer's saves on the store thread without
waiting, searches the conversation's documents over a read-only connection of
its own (the key is handed over under a lock), and reads the conversation's
saved model state the same way; a state is written on the store thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlcipher3 import dbapi2 as sqlite

from app.core.chat.image import StoredImage
from app.core.docs.doc_store import DocumentStore
from app.core.docs.grounding import Grounding
from app.core.docs.retrieval import EmbedQuestion, retrieve
from app.core.errors import UserError
from app.core.store.conversation_store import ConversationStore, SearchHit
from app.core.store.database import open_reader, translate
from app.core.store.errors import StoreError
from app.core.store.image_store import ImageStore
from app.core.store.ref import Ref
from app.core.store.state_cache import SavedState, StateCache, use_states
from app.core.turn import TurnSaving
from app.services.history import NOT_OPEN

if TYPE_CHECKING:
    from app.services.history import HistoryService

log = logging.getLogger("tern.history")
T = TypeVar("T")


class SavedTurns:
    """`TurnStore` over the history: used from the turn's thread, never from the GUI thread."""

    def __init__(self, history: HistoryService, embed: EmbedQuestion | None) -> None:
        self._history = history
        self._host = history.host
        self._embed = embed
        self._epochs: dict[int, int] = {}  # the store thread's: id(answer ref) → the store's epoch at its save

    def save_start(
        self,
        saving: TurnSaving,
        question: str,
        system_prompt: str,
        model: str,
        saved: Callable[[Ref, int, tuple[int, ...]], None],
    ) -> None:
        """Queue the question (unless regenerating) and an empty answer under it; `saved` hears each id."""
        host = self._host

        def job() -> None:
            store = host.require()
            conversation = saving.conversation
            if conversation.value is None:
                conversation.value = store.create_conversation(system_prompt=system_prompt)
            saved(conversation, conversation.value, ())
            parent = next((r.value for r in reversed(saving.above) if r.value is not None), None)
            if saving.question is not None:
                saving.question.value = parent = store.add_message(
                    conversation.value, parent, "user", question, images=saving.images
                )
                saved(saving.question, parent, tuple(store.siblings(parent)))
            saving.answer.value = store.add_message(conversation.value, parent, "assistant", "", model, complete=False)
            self._epochs = {id(saving.answer): host.epoch}  # only the latest turn's answer is still written
            saved(saving.answer, saving.answer.value, tuple(store.siblings(saving.answer.value)))

        # A failure (a moment of full disk) is reported; the answer still comes, unsaved.
        host.submit(job, failed=lambda exc: self._history.error.emit(str(exc)), label="save a question")

    def ground(self, conversation_id: int, question: str, budget_tokens: int) -> Grounding | None:
        """Search the conversation's documents over a read-only connection of this thread's own."""
        embed = self._embed
        return self._reading(lambda db: retrieve(DocumentStore(db), conversation_id, question, budget_tokens, embed))

    def search_history(self, text: str, limit: int) -> list[SearchHit]:
        """Earlier conversations matching `text`, over a read-only connection of this thread's own."""
        found = self._reading(lambda connection: ConversationStore(connection).search(text, limit))
        return found or []

    def image(self, key: str) -> StoredImage | None:
        """An image of the history, with its data, over a read-only connection of this thread's own."""
        return self._reading(lambda connection: ImageStore(connection).image(key))

    def _reading(self, use: Callable[[sqlite.Connection], T]) -> T | None:
        with self._host.handoff.reading() as key:
            if key is None:
                return None
            try:
                connection = open_reader(self._history.db_path, key)
            except StoreError as exc:
                log.warning("No read-only connection to the history: %s", exc)
                return None
            try:
                return use(connection)
            except sqlite.Error as exc:
                log.warning("Reading the history failed: %s", translate(exc) or type(exc).__name__)
                return None
            finally:
                connection.close()

    def checkpoint(self, answer: Ref, text: str) -> None:
        """Queue a save of the answer so far."""
        self._update(answer, text, None, complete=False)

    def save_answer(self, answer: Ref, text: str, stats: dict[str, Any] | None) -> None:
        """Queue the final save of the answer."""
        self._update(answer, text, stats, complete=True)

    def _update(self, answer: Ref, text: str, stats: dict[str, Any] | None, complete: bool) -> None:
        host = self._host

        def job() -> None:
            # The history may have been locked, restored or replaced since: its ids then name other messages.
            if answer.value is not None and host.epoch == self._epochs.get(id(answer)):
                host.require().update_message(answer.value, text, stats, complete=complete)

        self._submit(job)

    def state_tokens(self, conversation_id: int, model: str) -> tuple[int, ...] | None:
        """The tokens the conversation's saved model state covers (read on the turn's thread)."""
        return self._with_states(lambda cache: cache.tokens(conversation_id, model))

    def load_state(self, conversation_id: int, model: str) -> SavedState | None:
        """The conversation's saved model state (read on the turn's thread)."""
        return self._with_states(lambda cache: cache.get(conversation_id, model))

    def save_state(self, conversation_id: int, state: SavedState) -> None:
        """Queue writing the state on the store thread; a failure costs only time later."""
        host = self._host

        def job() -> None:
            if host.key is not None:
                use_states(self._history.db_path, host.key, lambda cache: cache.put(conversation_id, state))

        host.submit(job, failed=lambda exc: log.warning("A model state was not saved: %s", exc), label="save a state")

    def _with_states(self, use: Callable[[StateCache], T]) -> T | None:
        with self._host.handoff.reading() as key:
            return use_states(self._history.db_path, key, use) if key is not None else None

    def _submit(self, job: Callable[[], None]) -> None:
        def failed(exc: UserError) -> None:
            if str(exc) != NOT_OPEN:  # closed (locked) while the answer ended: its last checkpoint stays
                self._history.error.emit(str(exc))

        self._host.submit(job, failed=failed, label="save the answer")
