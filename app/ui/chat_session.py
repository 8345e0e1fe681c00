"""The open conversation on screen: its message rows, the answer streaming into them, and Send/Stop.

A turn is one call: `send` adds the two rows and hands the turn service one
`TurnRequest`; saving, grounding, prompting, streaming and checkpointing all
happen on the inference thread (`app.core.turn`), and come back as signals
that update the rows. Regenerating and editing add versions instead of
overwriting. A message sent while the history is still opening waits for it,
so it is saved before it is answered.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app import settings as opts
from app.core.chat.image import StoredImage
from app.core.docs.grounding import Source
from app.core.engine.generation import GenerationStats
from app.core.store.conversation_store import OpenedConversation
from app.core.store.ref import Ref
from app.core.tools.base import ToolCard
from app.core.turn import INTERRUPTED, STOPPED_EARLY, TurnRequest, TurnResult, TurnSaving
from app.services.history import HistoryService
from app.services.turns import TurnService
from app.settings import Settings
from app.ui.answer_options import AnswerOptions
from app.ui.chat_model import ChatItem, MessageListModel, StreamBuffer
from app.ui.message_footer import stats_line


class ChatSession(QObject):
    """Owns the message model and the turn in progress; the window shows them."""

    answer_finished = Signal(object)  # TurnResult, after the view has updated
    busy_changed = Signal(bool)
    status = Signal(str)  # a short line for the status bar
    conversation_shown = Signal(object)  # conversation id, or None for a new chat
    message_shown = Signal(int)  # a row to scroll to (a search hit)
    options_changed = Signal()  # the open chat's Think / Tools choices, or whether the model has them
    permission_requested = Signal(object)  # ToolCard: a call that asks first; answer with answer_permission()
    file_requested = Signal(str)  # why the model wants a file; answer with answer_file()

    def __init__(self, settings: Settings, turns: TurnService, history: HistoryService, parent: QObject) -> None:
        super().__init__(parent)
        self._settings = settings
        self._turns = turns
        self.history = history
        self.model = MessageListModel(self)
        self.stream_buffer = StreamBuffer(self.model, self)
        self.model_name = ""  # recorded with each answer
        self.system_prompt = settings.get(opts.SYSTEM_PROMPT)  # the open conversation's own
        self.n_ctx = 0
        self._turn_id = 0
        self._request: TurnRequest | None = None
        self.reading_tok_s: float | None = None  # prompt tokens read per second, as the last long prompt went
        self._question: Ref | None = None  # the question of the turn in progress (None when regenerating)
        self._answer_row: int | None = None
        self._dropped = 0  # messages the last turn left out, to keep the cached prefix
        self._stream_started = 0.0
        self._stream_pieces = 0
        self._waiting = False  # a message sent while the history was still opening
        self.options = AnswerOptions(settings)
        self.thought_buffer = StreamBuffer(self.model, self, self.model.append_thought)
        self._thought_started: float | None = None  # when the turn's thought began (it ends at the first text)

        turns.chunk.connect(self._on_chunk)
        turns.thought.connect(self._on_thought)
        turns.tool.connect(self._on_tool)
        turns.permission_asked.connect(self._on_permission_asked)
        turns.file_asked.connect(self._on_file_asked)
        turns.saved.connect(self._on_saved)
        turns.sources.connect(self._on_sources)
        turns.reading.connect(self._on_reading)
        turns.turn_finished.connect(self._on_turn_finished)
        turns.turn_failed.connect(self._on_turn_failed)
        history.conversation_opened.connect(self._show_conversation)
        history.branch_switched.connect(self._show_branch)
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

    @property
    def waiting(self) -> bool:
        """True while a sent message waits for the history to open."""
        return self._waiting

    @property
    def settings(self) -> Settings:
        """The preferences (the chat pane keeps its own display choices there)."""
        return self._settings

    # Turns
    def send(self, text: str, replacing: int | None = None, images: tuple[StoredImage, ...] = ()) -> bool:
        """Add the user's message and ask for an answer; False while one is being generated.

        With `replacing`, the message is a new version of the question at that
        row: the rows from there on leave the view only now, and stay in the
        history as the earlier version.
        """
        text = text.strip()
        if not text and not images:
            return False
        if self.busy:
            self.status.emit("Wait for the answer to finish, or press Stop")
            return False
        if replacing is not None:
            if not 0 <= replacing < self.model.rowCount() or self.model.item(replacing).role != "user":
                self.status.emit("That message is no longer shown; your text is still in the box")
                return False
            images = images or self.model.item(replacing).images  # a new version keeps the question's images
            self.model.truncate(replacing)
            self._dropped = 0
        user = ChatItem("user", text, images=images)
        answer = ChatItem("assistant", streaming=True, model=self.model_name)
        row = self.model.extend([user, answer])
        self._prepare_turn(row, user.store)
        if self.history.is_opening:  # saved first, answered after: a message is never answered but lost
            self._waiting = True
            self.status.emit("Opening your history; your message is sent once it is saved")
        else:
            self._submit()
        return True

    def _send_waiting(self) -> None:
        if self._waiting and self.busy:
            self._waiting = False
            self._submit()

    def send_unsaved(self) -> None:
        """The history will not open (the user chose to go on without it): answer a waiting message anyway."""
        self._send_waiting()

    def regenerate(self) -> None:
        """A new version of the last answer (the old one is kept)."""
        last = self.model.rowCount() - 1
        if self.busy or last < 1 or self.model.item(last).role != "assistant":
            return
        self.model.reset_message(last, Ref(), self.model_name)
        self._prepare_turn(last, None)
        self._submit()

    def edit(self, row: int) -> str:
        """The text of the user message at `row`, to edit ("" for any other row); nothing leaves the view.

        Sending the edited text with `send(text, replacing=row)` makes it a new version.
        """
        if not 0 <= row < self.model.rowCount() or self.model.item(row).role != "user":
            return ""
        return self.model.item(row).text

    def stop(self) -> None:
        """Stop the answer before its next token; the text so far stays."""
        if self._request is not None and self.busy:
            self._request.cancel.stop()
            if self._waiting:  # never handed over: end it here
                self._waiting = False
                self._end_turn(None, STOPPED_EARLY)

    def clear(self) -> None:
        """Show an empty conversation, abandoning an answer in progress (it is saved as it stands)."""
        self._abandon()
        self.model.clear()
        self._dropped = 0
        self.busy_changed.emit(False)

    def clear_cut(self) -> None:
        """Forget the last turn's history cut (a new model has an empty cache)."""
        self._dropped = 0

    def close(self) -> None:
        """Stop generating; the turn service saves the answer so far, marked as interrupted."""
        self._abandon()
        self.stream_buffer.discard()
        self.thought_buffer.discard()

    def new_conversation(self) -> None:
        """Start a new, empty conversation."""
        self.clear()
        self.system_prompt = self._settings.get(opts.SYSTEM_PROMPT)
        self.history.new_conversation()
        self.options.show(None)
        self.options_changed.emit()
        self.conversation_shown.emit(None)

    def switch_version(self, row: int, step: int) -> None:
        """Show the previous (-1) or next (+1) version of the message at `row`."""
        item = self.model.item(row)
        position = item.version_position
        if self.busy or not position or not 0 < position + step <= len(item.versions):
            return
        self.history.switch_branch(row, item.versions[position - 1 + step])

    def _abandon(self) -> None:
        self._waiting = False
        if self.busy and self._request is not None:
            self._request.cancel.stop(INTERRUPTED)
            self.stream_buffer.flush()
            row = self._answer_row
            assert row is not None
            self.model.finish(row, None, INTERRUPTED)
            item = self.model.item(row)
            if self.history.is_open:  # what is on screen, saved before a lock or restore closes the history
                self.history.save_interrupted(item.store, item.text, INTERRUPTED, item.sources)
            self._answer_row = None
            self._request = None
            self._turn_id += 1  # late chunks and results of the old turn are ignored

    def _prepare_turn(self, answer_row: int, question: Ref | None) -> None:
        self._turn_id += 1
        self._answer_row = answer_row
        self._question = question
        self._stream_started = time.perf_counter()
        self._stream_pieces = 0
        self._request = TurnRequest(
            turn_id=self._turn_id,
            history=self.model.history(upto=answer_row),
            system_prompt=self.system_prompt,
            sampling=self._settings.sampling(),
            previous_dropped=self._dropped,
            model_name=self.model_name,
            source_wait_s=self._settings.get(opts.SOURCE_WAIT_S),
            toolbox=self.options.toolbox(),
            thinking=self.options.thinking,
            images=self.model.images_at_hand(answer_row),
        )
        self._thought_started = None
        self.busy_changed.emit(True)

    def _submit(self) -> None:
        request, row = self._request, self._answer_row
        if request is None or row is None:
            return
        if request.cancel.is_set():  # stopped while waiting for the history
            self._end_turn(None, STOPPED_EARLY)
            return
        if self.history.is_open:
            first = row - 1 if self._question is not None else row  # the rows above the question (or answer)
            saving = TurnSaving(
                self.history.conversation,
                tuple(self.model.refs(first)),
                self.model.item(row).store,
                self._question,
                self.history.conversation_id,
                self.model.item(row - 1).images if self._question is not None else (),
            )
            request = self._request = replace(request, saving=saving)
        self._turns.submit(request)

    # Signals from the turn service
    def _current(self, turn_id: int) -> bool:
        return turn_id == self._turn_id and self._answer_row is not None

    def _on_saved(self, turn_id: int, ref: Ref, saved_id: int, versions: tuple[int, ...]) -> None:
        self.history.adopt(ref, saved_id)
        row = self.model.row_of(ref)
        if row < 0:
            return
        self.model.set_saved(row, saved_id, versions)
        if self.model.item(row).role == "user":  # the conversation exists now, or was just updated
            if self.history.conversation_id is not None:
                self.options.adopt(self.history.conversation_id)
            self.conversation_shown.emit(self.history.conversation_id)
            self.history.refresh()

    def _on_sources(self, turn_id: int, sources: tuple[Source, ...], note: str, mode: str) -> None:
        if self._current(turn_id):
            assert self._answer_row is not None
            self.model.set_sources(self._answer_row, sources, note, mode)

    def _on_reading(self, turn_id: int, done: int, total: int, left: float) -> None:
        if self._current(turn_id):
            assert self._answer_row is not None
            item = self.model.item(self._answer_row)
            self.model.set_progress(self._answer_row, reading_progress(done, total, left, bool(item.sources)))

    def _on_thought(self, turn_id: int, text: str) -> None:
        if self._current(turn_id):
            assert self._answer_row is not None
            if self._thought_started is None:
                self._thought_started = time.perf_counter()
            self.thought_buffer.add(self._answer_row, text)

    def _end_thought(self) -> None:
        """The answer's first text (or its end): the thought took until now."""
        if self._thought_started is not None and self._answer_row is not None:
            self.thought_buffer.flush()
            self.model.set_thinking_time(self._answer_row, (time.perf_counter() - self._thought_started) * 1000)
            self._thought_started = None

    def _on_tool(self, turn_id: int, card: ToolCard) -> None:
        if self._current(turn_id):
            assert self._answer_row is not None
            self._end_thought()
            self.model.set_tool(self._answer_row, card)

    def _on_permission_asked(self, turn_id: int, card: ToolCard) -> None:
        if self._current(turn_id):
            self.permission_requested.emit(card)
        else:
            self._turns.answer_permission(turn_id, False)

    def answer_permission(self, allowed: bool) -> None:
        """The user's answer to `permission_requested`."""
        self._turns.answer_permission(self._turn_id, allowed)

    def _on_file_asked(self, turn_id: int, purpose: str) -> None:
        if self._current(turn_id):
            self.file_requested.emit(purpose)
        else:
            self._turns.answer_file(turn_id, None)

    def answer_file(self, path: Path | None) -> None:
        """The file the user chose after `file_requested` (None: none)."""
        self._turns.answer_file(self._turn_id, path)

    def set_model_features(self, thinks_and_calls_tools: bool) -> None:
        """Whether the loaded model can think and call tools (its prompt format has them)."""
        self.options.supported = thinks_and_calls_tools
        self.options_changed.emit()

    def _on_chunk(self, turn_id: int, text: str) -> None:
        if not self._current(turn_id):
            return
        assert self._answer_row is not None
        self._end_thought()
        self.stream_buffer.add(self._answer_row, text)
        self._stream_pieces += 1
        if self._stream_pieces % 8 == 0:
            self.status.emit(f"Generating… {time.perf_counter() - self._stream_started:.0f} s")

    def _on_turn_finished(self, result: TurnResult) -> None:
        if not self._current(result.turn_id):
            return
        self.stream_buffer.flush()
        self._dropped = result.dropped_messages
        assert self._answer_row is not None
        cited = tuple(getattr(result, "cited", ()))  # the source numbers the answer cites, when known
        if cited:
            self.model.set_cited(self._answer_row, cited)
        self._end_thought()
        if result.thinking_ms:  # measured where the thought was written (the first text came later)
            self.model.set_thinking_time(self._answer_row, result.thinking_ms)
        self._end_turn(result.stats, result.notice)
        s = result.stats
        self.status.emit(stats_line(s))
        self.answer_finished.emit(result)

    def _on_turn_failed(self, turn_id: int, message: str) -> None:
        if not self._current(turn_id):
            return
        self.stream_buffer.flush()
        earlier = self.model.item(self._answer_row or 0).notice  # e.g. documents not read yet
        self._end_turn(None, " ".join(n for n in (earlier, message or STOPPED_EARLY) if n))
        if message:
            self.status.emit("The answer failed (see the note under it)")

    def _end_turn(self, stats: GenerationStats | None, notice: str) -> None:
        if stats is not None and stats.prompt_evaluated >= 256 and stats.ttft_ms > 0:  # long enough to time
            self.reading_tok_s = stats.prompt_evaluated / (stats.ttft_ms / 1000)
        self._end_thought()
        row = self._answer_row
        assert row is not None
        self.model.finish(row, stats, notice)
        self._answer_row = None
        self._request = None
        self.busy_changed.emit(False)
        if self.history.is_open:
            self.history.refresh()

    # Showing stored conversations
    def _show_conversation(self, opened: OpenedConversation, focus: int | None) -> None:
        self.clear()
        self.system_prompt = opened.system_prompt
        self.model.extend(chat_items(opened, 0))
        self.options.show(opened.id)
        self.options_changed.emit()
        self.conversation_shown.emit(opened.id)
        focus_row = next((i for i, e in enumerate(opened.branch) if e.message.id == focus), -1)
        self.message_shown.emit(focus_row if focus_row >= 0 else self.model.rowCount() - 1)

    def _show_branch(self, row: int, opened: OpenedConversation) -> None:
        if self.busy or opened.id != self.history.conversation_id:
            return
        self.model.truncate(row)
        self.model.extend(chat_items(opened, row))
        self._dropped = 0
        self.busy_changed.emit(False)


def reading_progress(done: int, total: int, left: float, documents: bool) -> str:
    """ "Reading your documents… 1,024 / 3,400 tokens, about 40 s left"."""
    what = "Reading your documents…" if documents else "Reading the conversation…"
    eta = ""
    if left >= 0 and done < total:
        eta = f", about {round(left)} s left" if left < 90 else f", about {round(left / 60)} min left"
    return f"{what} {done:,} / {total:,} tokens{eta}"


def chat_items(opened: OpenedConversation, start: int) -> list[ChatItem]:
    """View rows for a stored branch, from `start` on."""
    items = []
    for entry in opened.branch[start:]:
        m = entry.message
        stats = dict(m.stats or {})
        notice = str(stats.pop("notice", ""))
        sources = tuple(Source(**s) for s in stats.pop("sources", []))
        sources_mode = str(stats.pop("sources_mode", ""))
        cited = tuple(int(n) for n in stats.pop("cited", []))
        thinking, thinking_ms = str(stats.pop("thinking", "")), float(stats.pop("thinking_ms", 0) or 0)
        tools = tuple(ToolCard.from_dict(card) for card in stats.pop("tools", []) if isinstance(card, dict))
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
                sources_mode=sources_mode,
                cited=cited,
                store=Ref(m.id),
                saved_id=m.id,
                versions=entry.versions,
                thinking=thinking,
                thinking_ms=thinking_ms,
                tools=tools,
                images=tuple(opened.images[key] for key in m.images if key in opened.images),
            )
        )
    return items
