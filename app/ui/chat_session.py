"""The open conversation: its messages, the answer being generated, and what gets saved.

The flow of one turn: the user's message goes into the view and to the store
writer; generation starts once the store has committed it (or failed to); the
answer is checkpointed every half second while it streams and saved whole at
the end. Regenerating and editing add versions instead of overwriting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app import settings as opts
from app.core.docs.grounding import Grounding, Source
from app.core.engine.generation import GenerationStats
from app.core.store.conversation_store import OpenedConversation
from app.core.turn import TurnRequest, TurnResult
from app.settings import Settings
from app.ui.chat_model import ChatItem, MessageListModel, StreamBuffer
from app.ui.conversation_view import stats_line
from app.ui.history import History, Ref
from app.workers.inference_worker import InferenceThread

CHECKPOINT_MS = 500  # a kill loses at most this much streamed text, plus the write itself
INTERRUPTED = "This answer was interrupted before it finished."


class ChatSession(QObject):
    """Owns the message model and the turn in progress; the window shows them."""

    answer_finished = Signal(object)  # TurnResult, after the view has updated
    busy_changed = Signal(bool)
    status = Signal(str)  # a short line for the status bar
    conversation_shown = Signal(object)  # conversation id, or None for a new chat
    message_shown = Signal(int)  # a row to scroll to (a search hit)

    def __init__(self, settings: Settings, inference: InferenceThread, history: History, parent: QObject) -> None:
        super().__init__(parent)
        self._settings = settings
        self._inference = inference
        self.history = history
        self.model = MessageListModel(self)
        self.stream_buffer = StreamBuffer(self.model, self)
        self.model_name = ""  # recorded with each answer
        self.system_prompt = settings.get(opts.SYSTEM_PROMPT)  # the open conversation's own
        self.n_ctx = 0
        self._turn_id = 0
        self._request: TurnRequest | None = None
        self._answer_row: int | None = None
        self._dropped = 0  # messages the last turn left out, to keep the cached prefix
        self._stream_started = 0.0
        self._stream_pieces = 0
        self._saved_length = 0
        self._waiting: Callable[[], None] | None = None  # a message sent while the history was still opening
        self._checkpoint_timer = QTimer(self)
        self._checkpoint_timer.setInterval(CHECKPOINT_MS)
        self._checkpoint_timer.timeout.connect(self._checkpoint)

        worker = inference.worker
        worker.chunk.connect(self._on_chunk)
        worker.turn_finished.connect(self._on_turn_finished)
        worker.turn_failed.connect(self._on_turn_failed)
        history.conversation_opened.connect(self._show_conversation)
        history.branch_switched.connect(self._show_branch)
        history.message_saved.connect(self._on_saved)
        history.ready.connect(self._on_history_ready)
        settings.keep_private = history.keep_preference

    def _on_history_ready(self) -> None:
        """Take the private preferences (the system prompt) from the history, then send what waited for it."""

        def loaded(preferences: dict[str, str] | None) -> None:
            if preferences is not None:
                self._settings.use_private(preferences)
            self.system_prompt = self._settings.get(opts.SYSTEM_PROMPT)  # an opened conversation brings its own
            self._send_waiting()

        self.history.load_preferences(self._settings.unsaved_private(), loaded)

    @property
    def busy(self) -> bool:
        """True while an answer is being generated."""
        return self._answer_row is not None

    # Turns
    def send(self, text: str) -> bool:
        """Add the user's message and ask for an answer; False while one is being generated."""
        text = text.strip()
        if not text:
            return False
        if self.busy:
            self.status.emit("Wait for the answer to finish, or press Stop")
            return False
        above = self.model.refs(self.model.rowCount())
        user = ChatItem("user", text)
        answer = ChatItem("assistant", streaming=True, model=self.model_name)
        row = self.model.extend([user, answer])
        request = self._prepare_turn(row)

        def save_then_answer() -> None:
            user.store = self.history.save_message(
                above, "user", text, system_prompt=self.system_prompt, then=lambda: self._ground(request, text)
            )
            answer.store = self.history.save_message([*above, user.store], "assistant", model=self.model_name)

        if self.history.is_open:
            save_then_answer()
        elif self.history.is_opening:  # saved first, answered after: a message is never answered but lost
            self._waiting = save_then_answer
            self.status.emit("Opening your history; your message is sent once it is saved")
        else:
            self._submit(request)
        return True

    @property
    def waiting(self) -> bool:
        """True while a sent message waits for the history to open."""
        return self._waiting is not None

    def _send_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and self.busy:
            waiting()

    def send_unsaved(self) -> None:
        """The history will not open (the user chose to go on without it): answer a waiting message anyway."""
        self._waiting = None
        if self._request is not None and self.busy:
            self._submit(self._request)

    def regenerate(self) -> None:
        """A new version of the last answer (the old one is kept)."""
        last = self.model.rowCount() - 1
        if self.busy or last < 1 or self.model.item(last).role != "assistant":
            return
        above = self.model.refs(last)
        store = self.history.save_message(above, "assistant", model=self.model_name) if self.history.is_open else Ref()
        self.model.reset_message(last, store, self.model_name)
        request = self._prepare_turn(last)
        if self.history.is_open:
            self._ground(request, self.model.item(last - 1).text)
        else:
            self._submit(request)

    def edit(self, row: int) -> str:
        """Drop a user message and what followed from the view and return its text; sending makes a new version."""
        if self.busy or self.model.item(row).role != "user":
            return ""
        text = self.model.item(row).text
        self.model.truncate(row)
        self._dropped = 0
        self.busy_changed.emit(False)
        return text

    def stop(self) -> None:
        """Stop the answer before its next token; the text so far stays."""
        if self._request is not None and self.busy:
            self._request.cancel.set()  # also covers a turn still waiting for its message to be saved

    def clear(self) -> None:
        """Show an empty conversation, abandoning an answer in progress."""
        self._waiting = None
        self._abandon()
        self.model.clear()
        self._dropped = 0
        self.busy_changed.emit(False)

    def clear_cut(self) -> None:
        """Forget the last turn's history cut (a new model has an empty cache)."""
        self._dropped = 0

    def close(self) -> None:
        """Stop generating and save the answer so far, marked as interrupted."""
        if self.busy:
            self.stop()
            self.stream_buffer.flush()
            row = self._answer_row
            assert row is not None
            self.model.finish(row, None, INTERRUPTED)
            self._finish_saving(row)
            self._answer_row = None
            self._request = None
        self.stream_buffer.discard()

    def new_conversation(self) -> None:
        """Start a new, empty conversation."""
        self.clear()
        self.system_prompt = self._settings.get(opts.SYSTEM_PROMPT)
        self.history.new_conversation()
        self.conversation_shown.emit(None)

    def switch_version(self, row: int, step: int) -> None:
        """Show the previous (-1) or next (+1) version of the message at `row`."""
        item = self.model.item(row)
        position = item.version_position
        if self.busy or not position or not 0 < position + step <= len(item.versions):
            return
        self.history.switch_branch(row, item.versions[position - 1 + step])

    def _abandon(self) -> None:
        if self.busy:
            self.close()
            self._turn_id += 1  # late chunks and results of the old turn are ignored

    def _prepare_turn(self, answer_row: int) -> TurnRequest:
        self._turn_id += 1
        self._answer_row = answer_row
        self._stream_started = time.perf_counter()
        self._stream_pieces = 0
        self._saved_length = 0
        self._request = TurnRequest(
            turn_id=self._turn_id,
            history=self.model.history(upto=answer_row),
            system_prompt=self.system_prompt,
            sampling=self._settings.sampling(),
            previous_dropped=self._dropped,
        )
        self._checkpoint_timer.start()
        self.busy_changed.emit(True)
        return self._request

    def _ground(self, request: TurnRequest, question: str) -> None:
        """Look up the conversation's documents for `question`, then start the turn with what they offer."""
        budget = max(512, self.n_ctx // 2)  # half the context for sources; the rest is the conversation and answer
        self.history.ground(question, budget, lambda grounding: self._grounded(request, grounding))

    def _grounded(self, request: TurnRequest, grounding: Grounding | None) -> None:
        if request.turn_id != self._turn_id or self._answer_row is None:
            return
        if grounding is not None and grounding.prompt:
            notes = []
            if not grounding.sources:
                notes.append("No passage in the attached documents matches this question.")
            if grounding.not_ready:
                notes.append(f"Not read yet: {', '.join(grounding.not_ready)}.")
            self.model.set_sources(self._answer_row, tuple(grounding.sources), " ".join(notes))
            request = replace(request, context=grounding.prompt)  # the same cancel event: Stop still works
            self._request = request
        self._submit(request)

    def _submit(self, request: TurnRequest) -> None:
        if request.turn_id == self._turn_id and self.busy:
            self._inference.submit(request)

    def _on_chunk(self, turn_id: int, text: str) -> None:
        if turn_id != self._turn_id or self._answer_row is None:
            return
        self.stream_buffer.add(self._answer_row, text)
        self._stream_pieces += 1
        if self._stream_pieces % 8 == 0:
            self.status.emit(f"Generating… {time.perf_counter() - self._stream_started:.0f} s")

    def _checkpoint(self) -> None:
        if self._answer_row is None:
            return
        item = self.model.item(self._answer_row)
        if len(item.text) != self._saved_length:
            self._saved_length = len(item.text)
            self.history.checkpoint(item.store, item.text)

    def _finish_saving(self, row: int) -> None:
        self._checkpoint_timer.stop()
        item = self.model.item(row)
        stats: dict[str, Any] = item.stats.as_dict() if item.stats else {}
        if item.notice:
            stats["notice"] = item.notice
        if item.sources:
            stats["sources"] = [asdict(s) for s in item.sources]
        self.history.finish_answer(item.store, item.text, stats or None, self.history.refresh)

    def _on_turn_finished(self, result: TurnResult) -> None:
        if result.turn_id != self._turn_id or self._answer_row is None:
            return
        self.stream_buffer.flush()
        notice = ""
        if result.dropped_messages:
            notice = (
                f"{result.dropped_messages} earlier messages were left out to fit the "
                f"{self.n_ctx}-token context window."
            )
        self._dropped = result.dropped_messages
        notice = " ".join((notice, *result.notes)).strip()
        self._end_turn(result.stats, notice)
        s = result.stats
        self.status.emit(f"{stats_line(s)} · prompt {s.prompt_tokens} tokens ({s.prompt_evaluated} new)")
        self.answer_finished.emit(result)

    def _on_turn_failed(self, turn_id: int, message: str) -> None:
        if turn_id != self._turn_id or self._answer_row is None:
            return
        self.stream_buffer.flush()
        self._end_turn(None, message or "Stopped before the first token.")
        if message:
            self.status.emit("The answer failed (see the note under it)")

    def _end_turn(self, stats: GenerationStats | None, notice: str) -> None:
        row = self._answer_row
        assert row is not None
        earlier = self.model.item(row).notice  # e.g. documents not read yet
        self.model.finish(row, stats, " ".join(n for n in (earlier, notice) if n))
        self._finish_saving(row)
        self._answer_row = None
        self._request = None
        self.busy_changed.emit(False)

    # Showing stored conversations
    def _on_saved(self, ref: Ref, versions: tuple[int, ...]) -> None:
        row = self.model.row_of(ref)
        if row < 0:
            return
        self.model.set_versions(row, versions)
        if self.model.item(row).role == "user":  # the conversation exists now, or was just updated
            self.conversation_shown.emit(self.history.conversation.value)
            self.history.refresh()

    def _show_conversation(self, opened: OpenedConversation, focus: int | None) -> None:
        self.clear()
        self.system_prompt = opened.system_prompt
        self.model.extend(chat_items(opened, 0))
        self.conversation_shown.emit(opened.id)
        focus_row = next((i for i, e in enumerate(opened.branch) if e.message.id == focus), -1)
        self.message_shown.emit(focus_row if focus_row >= 0 else self.model.rowCount() - 1)

    def _show_branch(self, row: int, opened: OpenedConversation) -> None:
        if self.busy or opened.id != self.history.conversation.value:
            return
        self.model.truncate(row)
        self.model.extend(chat_items(opened, row))
        self._dropped = 0
        self.busy_changed.emit(False)


def chat_items(opened: OpenedConversation, start: int) -> list[ChatItem]:
    """View rows for a stored branch, from `start` on."""
    items = []
    for entry in opened.branch[start:]:
        m = entry.message
        stats = dict(m.stats or {})
        notice = str(stats.pop("notice", ""))
        sources = tuple(Source(**s) for s in stats.pop("sources", []))
        if not m.complete and m.role == "assistant":
            notice = notice or INTERRUPTED
        items.append(
            ChatItem(
                m.role,  # type: ignore[arg-type]
                m.content,
                stats=GenerationStats.from_dict(stats),
                notice=notice,
                model=m.model or "",
                sources=sources,
                store=Ref(m.id),
                versions=entry.versions,
            )
        )
    return items
