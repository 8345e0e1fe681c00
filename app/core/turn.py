"""One chat turn, every step in order, on the thread that owns the model.

save the question (and an empty answer under it) → ground it in the
conversation's documents → build the prompt within the context → stream the
answer, checkpointing it twice a second → save it with its stats and notes.

This is the one place that knows that order. A widget, a local HTTP request
or a tool loop makes a `TurnRequest` and receives `TurnEvents`; where the
turn is saved and how passages are found come in as a `TurnStore` (None when
the history is off). The prompt builder takes passages as plain text and
never retrieves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.core.chat.completion import MAX_ANSWER_TOKENS, CompletionFrame, PageSources
from app.core.chat.gemma4 import Gemma4Template
from app.core.chat.image import StoredImage
from app.core.chat.message import ChatMessage, Given, GivenMode, ToolCall, place_images
from app.core.chat.prompt_builder import BuiltPrompt, answer_reserve, build_prompt
from app.core.chat.templates import ChatTemplate
from app.core.chat.tool_grammar import call_grammar
from app.core.docs.grounding import ChatSources, Grounding, Source, cited_sources
from app.core.docs.page_images import earlier_pages, for_model, page_keys
from app.core.docs.placement import SourceStyle, place
from app.core.docs.retrieval import MIN_BUDGET_TOKENS, file_notes, notes, source_budget
from app.core.engine.channels import Channels
from app.core.engine.generation import GenerationStats, SamplingParams, base_model_sampling, common_prefix
from app.core.engine.options import EngineError
from app.core.engine.vision import ImagePixels
from app.core.store.conversation_store import SearchHit
from app.core.store.ref import Ref
from app.core.store.state_cache import SavedState
from app.core.tool_loop import LoopHooks, LoopResult, run_loop
from app.core.tools.base import Toolbox, ToolCard, ToolContext

if TYPE_CHECKING:
    from app.core.engine.llama_engine import LlamaEngine

log = logging.getLogger("tern.turn")

SAVE_STATE_MIN_READ = 256  # a turn that read this many tokens keeps its state; restoring must spare as many
# A turn whose conversation holds this many tokens more than its saved state keeps its state too: after a
# restart the next question then reads little more than itself (on an E2B-class CPU model, each token read
# over a long document costs about 0.1 s). Not for states over SAVE_STATE_STEP_MAX_BYTES (a big model's
# long context): writing those after every turn would cost more than reading a few turns again.
SAVE_STATE_STEP = 32
SAVE_STATE_STEP_MAX_BYTES = 256 << 20
CHECKPOINT_S = 0.5  # a kill loses at most this much streamed text, plus the write itself
INTERRUPTED = "This answer was interrupted before it finished."
STOPPED_EARLY = "Stopped before the first token."


class TurnStopped(Exception):  # noqa: N818 (a request, not an error)
    """The turn was stopped before its prompt was built."""


class TurnCancel(threading.Event):
    """Stops a turn before its next token; `note` says why when it is not the user's Stop (e.g. the app closing)."""

    def __init__(self) -> None:
        super().__init__()
        self.note = ""

    def stop(self, note: str = "") -> None:
        """Stop the turn, keeping the first reason given."""
        if not self.is_set():
            self.note = note
            self.set()


@dataclass(frozen=True)
class TurnSaving:
    """Where a turn goes in the history; the refs are filled in on the history's thread."""

    conversation: Ref  # empty for a new chat: the question's save creates it
    above: tuple[Ref, ...]  # the messages above the question (or above the answer when regenerating)
    answer: Ref
    question: Ref | None = None  # None when regenerating: the question is saved already
    conversation_id: int | None = None  # as the caller knows it, to search its documents (None: a new chat)
    images: tuple[StoredImage, ...] = ()  # the question's images, saved with it


@dataclass(frozen=True)
class TurnRequest:
    """Everything a turn needs: the conversation so far, ending with the user's question."""

    turn_id: int
    history: tuple[ChatMessage, ...]
    system_prompt: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    previous_dropped: int = 0  # the cut the last turn made, to keep the cached prefix
    saving: TurnSaving | None = None  # None: nothing is saved (the history is off)
    model_name: str = ""  # recorded with the answer
    cancel: TurnCancel = field(default_factory=TurnCancel, compare=False, repr=False)
    source_wait_s: float = 60.0  # the longest the user will wait for sources to be read before the answer
    toolbox: Toolbox | None = None  # tools the model may call, run here (Gemma 4)
    tools: tuple[dict[str, Any], ...] = ()  # without a toolbox: tools the caller runs (the API's clients)
    thinking: bool = False  # think before answering, where the model's format has the switch
    tool_choice: str = "auto"  # "auto", "none" (no tools offered), "required" or a tool's name (a call first)
    pick_file: Callable[[str], Path | None] | None = None  # the read-file tool's way to ask for a file
    images: tuple[StoredImage, ...] = ()  # images of the conversation the caller has in memory (new ones)
    pixels: Callable[[str], ImagePixels] | None = None  # an image's pixels by key, for a model that sees images


@dataclass(frozen=True)
class TurnResult:
    """How the turn went."""

    turn_id: int
    stats: GenerationStats
    dropped_messages: int  # older messages left out to fit the context window
    notes: tuple[str, ...] = ()  # for the user, e.g. the model's template was set aside during this turn
    notice: str = ""  # everything the user should read under the answer, in one line
    cited: tuple[int, ...] = ()  # the source numbers the answer cites ([n]), in order of first appearance
    pending: tuple[ToolCall, ...] = ()  # calls the model made for the caller to run (no toolbox)
    thinking: str = ""  # the model's thought, apart from the answer
    cards: tuple[ToolCard, ...] = ()  # the tool calls it made and what came of them
    thinking_ms: float = 0.0  # how long the thought took, from its first piece to its last


def _ignore(*_args: object) -> None:
    return None


def _refuse(_card: ToolCard) -> bool:
    return False


@dataclass(frozen=True)
class TurnEvents:
    """What a turn reports while it runs, on the turn's thread (a service turns them into signals)."""

    text: Callable[[str], None] = _ignore  # a streamed piece of the answer
    saved: Callable[[Ref, int, tuple[int, ...]], None] = _ignore  # a ref, its id, its versions' ids (for messages)
    # the numbered sources, a note about them, and how they were given ("whole" or "retrieval")
    sources: Callable[[tuple[Source, ...], str, GivenMode], None] = _ignore
    # a long prompt being read: tokens done, of how many, and about how many seconds are left (None: not known yet)
    reading: Callable[[int, int, float | None], None] = _ignore
    thought: Callable[[str], None] = _ignore  # a streamed piece of the model's thought
    tool: Callable[[ToolCard], None] = _ignore  # a tool call's card, each time it changes
    allow: Callable[[ToolCard], bool] = _refuse  # ask the user whether a call may run (blocks until answered)


class TurnStore(Protocol):
    """The history as a turn sees it, called from the turn's thread."""

    def save_start(
        self,
        saving: TurnSaving,
        question: str,
        system_prompt: str,
        model: str,
        saved: Callable[[Ref, int, tuple[int, ...]], None],
    ) -> None:
        """Queue the save of the question (unless regenerating) and an empty answer under it; does not wait.

        `saved(ref, id, versions)` is called for the conversation and each message once they are stored.
        """
        ...

    def ground(self, conversation_id: int, question: str, budget_tokens: int) -> Grounding | None:
        """The conversation's document context for `question`, or None without documents."""
        ...

    def search_history(self, text: str, limit: int) -> list[SearchHit]:
        """Earlier conversations matching `text` (for the history-search tool)."""
        ...

    def image(self, key: str) -> StoredImage | None:
        """An image sent earlier in a conversation, with its data (None when it is not kept)."""
        ...

    def checkpoint(self, answer: Ref, text: str) -> None:
        """Queue a save of the answer so far (marked incomplete); does not wait."""
        ...

    def save_answer(self, answer: Ref, text: str, stats: dict[str, Any] | None) -> None:
        """Queue the final save of the answer; does not wait."""
        ...

    def state_tokens(self, conversation_id: int, model: str) -> tuple[int, ...] | None:
        """The tokens the conversation's saved model state covers, if one was saved with `model`."""
        ...

    def load_state(self, conversation_id: int, model: str) -> SavedState | None:
        """The conversation's saved model state, if one was saved with `model`."""
        ...

    def save_state(self, conversation_id: int, state: SavedState) -> None:
        """Queue keeping `state` as the conversation's; does not wait."""
        ...


def _dropped_note(dropped: int, n_ctx: int, passages: Sequence[int] = ()) -> str:
    """What the model no longer sees: the oldest messages, and passages given only with them."""
    if not dropped:
        return ""
    note = f"The {dropped} oldest messages were left out to fit the {n_ctx:,}-token context window"
    if not passages:
        return note + "."
    numbers = [f"[{n}]" for n in passages]
    listed = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
    return f"{note}, and with them {'passage' if len(numbers) == 1 else 'passages'} {listed}."


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _stored_stats(
    stats: GenerationStats | None,
    notice: str,
    sources: tuple[Source, ...],
    cited: tuple[int, ...],
    mode: GivenMode | None,
) -> dict[str, Any] | None:
    stored: dict[str, Any] = stats.as_dict() if stats else {}
    if notice:
        stored["notice"] = notice
    if sources:
        stored["sources"] = [asdict(s) for s in sources]
        stored["cited"] = list(cited)
    if mode is not None:  # how they were given: later turns put them back where they were
        stored["sources_mode"] = mode
    return stored or None


def run_turn(
    engine: LlamaEngine,
    request: TurnRequest,
    events: TurnEvents,
    store: TurnStore | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TurnResult:
    """Answer `request`: save, ground, prompt, stream, save; user-facing failures raise a UserError.

    Once the answer exists in the history, whatever happens, the text so far is saved with a note.
    """
    saving = request.saving if store is not None else None
    question = request.history[-1] if request.history else None
    if store is not None and saving is not None:  # queued: the store writes it while the prompt is built
        text = question.content if question else ""
        store.save_start(saving, text, request.system_prompt, request.model_name, events.saved)
    conversation_id = saving.conversation_id if saving is not None else None
    answer = _Answer(store, saving, events, clock)
    sources: tuple[Source, ...] = ()
    source_note = ""
    given: Given | None = None
    try:
        loaded, template = engine.loaded, engine.template
        if loaded is None or template is None:
            raise EngineError("No model is loaded.")
        if request.cancel.is_set():
            raise TurnStopped
        grounding: Grounding | None = None
        if store is not None and conversation_id is not None and question is not None:
            budget = reading_budget(loaded.n_ctx, engine.prefill_tok_s, request.source_wait_s)
            grounding = store.ground(conversation_id, question.content, budget)
            if grounding is not None and grounding.mode == "none":
                grounding = None
        history, grounding = _with_images(engine, request, grounding, store)
        request = replace(request, history=history)
        sampling = request.sampling
        if isinstance(template, CompletionFrame):
            not_to_copy = template.not_to_copy(request.system_prompt)
            sampling = base_model_sampling(sampling, template.stop, MAX_ANSWER_TOKENS, not_to_copy)
        template_note = template.note
        first_sampling = sampling
        if isinstance(template, Gemma4Template):  # the turn's tools and thinking switch go in its system turn
            declared = _declared(request)
            template = Gemma4Template(declared, request.thinking)
            first_sampling = _first_step_sampling(sampling, request, declared, engine)
        prompt, given, template, left_out = _prompt(engine, request, template, grounding, sampling.max_tokens)
        if grounding is not None and given is not None:
            sources, source_note = given.sources, notes(grounding)
            events.sources(sources, source_note, given.mode)
            if isinstance(template, CompletionFrame):  # with sources, a made-up "[n]" line ends the answer too
                sampling = replace(sampling, stop=tuple(dict.fromkeys((*sampling.stop, *template.stop))))
        kept = store if store is not None and conversation_id is not None and grounding is not None else None
        saved = 0  # tokens in the conversation's saved state
        if kept is not None and conversation_id is not None:  # documents: perhaps read before a restart
            saved = _restore_state(engine, kept, conversation_id, prompt.tokens)
        reading = _Reading(events.reading, clock)
        looped: LoopResult | None = None
        if isinstance(template, Gemma4Template):
            shown = template

            def build(continuation: Sequence[ChatMessage]) -> list[int]:
                built = _prompt(engine, request, shown, grounding, sampling.max_tokens, continuation)[0]
                return built.tokens

            def generate(tokens: Sequence[int], channels: Channels | None, step: int) -> GenerationStats:
                chosen = first_sampling if step == 0 else replace(sampling, grammar="")  # a grammar makes the call
                return engine.generate(tokens, chosen, request.cancel, answer.add, reading, channels)

            room = loaded.n_ctx - answer_reserve(loaded.n_ctx, sampling.max_tokens)
            hooks = LoopHooks(
                generate, build, engine.context_tokens, engine.tokenize_more, room,
                answer.text, answer.add, events.thought, events.tool, events.allow,
            )  # fmt: skip
            context = ToolContext(conversation_id, store, request.pick_file, request.cancel)
            looped = run_loop(prompt.tokens, hooks, _channels(engine), request.toolbox, context, clock)
            stats = looped.stats
        else:
            stats = engine.generate(prompt.tokens, sampling, request.cancel, answer.add, reading)
    except TurnStopped:
        answer.save(None, _join(source_note, STOPPED_EARLY), sources, given.mode if given is not None else None)
        raise
    except Exception as exc:
        failure = request.cancel.note or str(exc) or type(exc).__name__
        answer.save(None, _join(source_note, failure), sources, given.mode if given is not None else None)
        raise
    template_notes = (template.note,) if template.note != template_note else ()
    dropped_note = _dropped_note(prompt.dropped, loaded.n_ctx, left_out)
    loop_note = looped.notice if looped is not None else ""
    notice = _join(source_note, request.cancel.note, dropped_note, loop_note, *template_notes)
    extra = _loop_stats(looped)
    cited = answer.save(stats, notice, sources, given.mode if given is not None else None, extra)
    if kept is not None and conversation_id is not None and _worth_saving(engine, stats, saved):
        tokens, data = engine.save_state()  # what took long to read is kept for after a restart
        kept.save_state(conversation_id, SavedState(engine.identity, tokens, data))
    if looped is None:
        return TurnResult(request.turn_id, stats, prompt.dropped, template_notes, notice, cited)
    return TurnResult(
        request.turn_id, stats, prompt.dropped, template_notes, notice, cited,
        looped.pending, looped.thinking, tuple(looped.cards), looped.thinking_ms,
    )  # fmt: skip


def _with_images(
    engine: LlamaEngine, request: TurnRequest, grounding: Grounding | None, store: TurnStore | None
) -> tuple[tuple[ChatMessage, ...], Grounding | None]:
    """The history with its images placed in the questions' text, and the grounding as the model can take its
    scanned pages; each image (a question's, or a page's) offered to the model's projector.

    A model without one is told where images were, and its sources leave scanned pages out (the user is told
    which); the question being asked must then have no image.
    """
    vision = engine.vision
    if vision is None and request.history and request.history[-1].images:
        raise EngineError(
            "The loaded model can't see images. Load a model with an image projector "
            "(Gemma 4 E2B or E4B with its mmproj file), or send the question without the image."
        )
    loaded = engine.loaded
    assert loaded is not None
    if grounding is not None:
        budget = reading_budget(loaded.n_ctx, engine.prefill_tok_s, request.source_wait_s)
        grounding = for_model(grounding, loaded.image_tokens if vision is not None else None, budget)
    kept: dict[str, bool] = {}

    def shown(key: str) -> bool:  # a page an earlier answer was given goes with its document
        if key not in kept:
            kept[key] = vision is not None and (store is None or store.image(key) is not None)
        return kept[key]

    history = earlier_pages(request.history, shown)
    if vision is not None:
        pixels = request.pixels
        keys = {key for m in history for key in m.images}
        keys |= {key for m in history if m.given is not None for key in page_keys(m.given.sources)}
        keys |= set(page_keys(grounding.sources)) if grounding is not None else set()
        if keys and pixels is None:
            raise EngineError("This turn's images cannot be read.")
        vision.offer({key: partial(pixels, key) for key in keys} if pixels is not None else {})
    return tuple(place_images(history, seen=vision is not None)), grounding


def _declared(request: TurnRequest) -> tuple[dict[str, Any], ...]:
    """The tools the prompt declares: the toolbox's, or the caller's; none when tools are turned off."""
    if request.tool_choice == "none":
        return ()
    return request.toolbox.declarations() if request.toolbox is not None else request.tools


def _first_step_sampling(
    sampling: SamplingParams, request: TurnRequest, declared: Sequence[dict[str, Any]], engine: LlamaEngine
) -> SamplingParams:
    """With a call required, the first step follows a grammar that makes it call (one of) the tools.

    A grammar the request brings is kept as it is.
    """
    if sampling.grammar or request.tool_choice in ("auto", "none") or not declared or engine.markers is None:
        return sampling
    named = [t for t in declared if t.get("function", {}).get("name") == request.tool_choice]
    return replace(sampling, grammar=call_grammar(named or declared, engine.markers, request.thinking))


def _channels(engine: LlamaEngine) -> Callable[[Callable[[str], None], Callable[[str], None]], Channels | None]:
    """Makes each step's router of thoughts and calls (None for a model without Gemma 4's markers)."""
    markers = engine.markers

    def make(on_thought: Callable[[str], None], on_call: Callable[[str], None]) -> Channels | None:
        return Channels(markers, on_thought, on_call) if markers is not None else None

    return make


def _loop_stats(looped: LoopResult | None) -> dict[str, Any]:
    """What an answer keeps of its thought and tool calls, apart from its text."""
    if looped is None:
        return {}
    kept: dict[str, Any] = {}
    if looped.thinking:
        kept["thinking"] = looped.thinking
        kept["thinking_ms"] = round(looped.thinking_ms)
    if looped.cards:
        kept["tools"] = [card.as_dict() for card in looped.cards]
    return kept


def _worth_saving(engine: LlamaEngine, stats: GenerationStats, saved: int) -> bool:
    """Whether to keep the model's state after a documents turn, given the saved one holds `saved` tokens."""
    if stats.prompt_evaluated >= SAVE_STATE_MIN_READ:
        return True
    held = engine.cached_tokens
    grown = held >= SAVE_STATE_MIN_READ and held - saved >= SAVE_STATE_STEP
    return grown and engine.state_size() <= SAVE_STATE_STEP_MAX_BYTES


def _restore_state(engine: LlamaEngine, store: TurnStore, conversation_id: int, tokens: Sequence[int]) -> int:
    """Put back the conversation's saved model state when it spares reading much of `tokens`.

    Returns how many tokens the saved state holds (0: none for this model).
    """
    model = engine.identity
    saved = store.state_tokens(conversation_id, model)
    if saved is None:
        return 0
    if common_prefix(saved, tokens) >= engine.reused(tokens) + SAVE_STATE_MIN_READ:
        state = store.load_state(conversation_id, model)
        if state is not None and not engine.restore_state(state.tokens, state.data):
            log.warning("A saved model state was refused; the prompt is read again")
    return len(saved)


def reading_budget(n_ctx: int, prefill_tok_s: float | None, wait_s: float) -> int:
    """Tokens of sources for a question: half the context, or less when this machine would read them for
    longer than `wait_s` (at the reading speed measured on recent turns; unknown before the first long one)."""
    budget = source_budget(n_ctx)
    if prefill_tok_s is None:
        return budget
    return min(budget, max(MIN_BUDGET_TOKENS, int(prefill_tok_s * wait_s)))


class _Reading:
    """Passes on the reading of a long prompt, with the time left estimated from the pace so far."""

    def __init__(self, report: Callable[[int, int, float | None], None], clock: Callable[[], float]) -> None:
        self._report = report
        self._clock = clock
        self._started = clock()

    def __call__(self, done: int, total: int) -> None:
        if done == 0:
            self._started = self._clock()
        elapsed = self._clock() - self._started
        left = elapsed / done * (total - done) if done and elapsed > 0 else None
        self._report(done, total, left)


def _prompt(
    engine: LlamaEngine,
    request: TurnRequest,
    template: ChatTemplate,
    grounding: Grounding | None,
    max_tokens: int,
    continuation: Sequence[ChatMessage] = (),
) -> tuple[BuiltPrompt, Given | None, ChatTemplate, tuple[int, ...]]:
    """The prompt within the context window; with documents, their sources where earlier turns put them.

    `continuation`: what the answer has done since the question (tool calls and their results).

    Returns the prompt, what the answer is given, the template used (a base model's page
    changes with documents), and the numbers of passages left out with the oldest messages.
    """
    loaded = engine.loaded
    assert loaded is not None
    history, n_ctx, kept = request.history, loaded.n_ctx, request.previous_dropped
    if grounding is None:
        built = build_prompt(
            [*history, *continuation], request.system_prompt, template, engine.tokenize, n_ctx, max_tokens, kept
        )
        return built, None, template, ()
    page = template if isinstance(template, CompletionFrame) else None
    style: SourceStyle = PageSources() if page is not None else ChatSources()
    model_notes = "" if page is not None else file_notes(grounding)  # a base model would copy written notes
    for _ in range(3):  # which passages are still in the context depends on the cut, and the cut on the passages
        placed = place(history, grounding, style, kept, model_notes)
        if page is not None:
            shown: ChatTemplate = page.with_documents(placed.documents)
            system = request.system_prompt
        else:
            shown = template
            system = "\n\n".join(part for part in (request.system_prompt.strip(), placed.documents) if part)
        placed_history = [*placed.history, *continuation]
        built = build_prompt(placed_history, system, shown, engine.tokenize, n_ctx, max_tokens, kept)
        if built.dropped == kept:
            break
        kept = built.dropped
    return built, placed.given, shown, placed.left_out


class _Answer:
    """The streamed answer: passed on as it comes, checkpointed at most half a second after each piece, saved
    once at the end.

    A piece that comes within half a second of the last checkpoint is written by a timer when the half
    second is up, not by the next piece: on a busy machine the next one may be seconds away.
    """

    def __init__(
        self, store: TurnStore | None, saving: TurnSaving | None, events: TurnEvents, clock: Callable[[], float]
    ) -> None:
        self._store = store if saving is not None else None
        self._saving = saving
        self._events = events
        self._clock = clock
        self._pieces: list[str] = []
        self._last_checkpoint = clock()
        self._checkpointed = 0
        self._lock = threading.Lock()  # the turn's thread and the timer's
        self._timer: threading.Timer | None = None
        self._closed = False

    def add(self, piece: str) -> None:
        """One streamed piece (on the turn's thread, between tokens)."""
        with self._lock:
            self._pieces.append(piece)
        self._events.text(piece)
        if self._store is None:
            return
        wait = CHECKPOINT_S - (self._clock() - self._last_checkpoint)
        if wait <= 0:
            self._checkpoint()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self._checkpoint)
            self._timer.daemon = True
            self._timer.start()

    def _checkpoint(self) -> None:
        """Queue a save of the text so far, unless it is saved already (on the turn's or the timer's thread)."""
        with self._lock:  # held while queueing, so a checkpoint is never queued after the final save
            self._timer = None
            if self._closed or self._store is None or self._saving is None:
                return
            self._last_checkpoint = self._clock()
            if len(self._pieces) != self._checkpointed:
                self._checkpointed = len(self._pieces)
                self._store.checkpoint(self._saving.answer, "".join(self._pieces))

    def text(self) -> str:
        """The answer so far."""
        with self._lock:
            return "".join(self._pieces)

    def save(
        self,
        stats: GenerationStats | None,
        notice: str,
        sources: tuple[Source, ...],
        mode: GivenMode | None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[int, ...]:
        """The final save, with what the user should read under the answer; returns the sources it cites."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            text = "".join(self._pieces)
        cited = cited_sources(text, {s.number for s in sources}) if sources else ()
        if self._store is not None and self._saving is not None:
            stored = _stored_stats(stats, notice, sources, cited, mode)
            if extra:
                stored = {**(stored or {}), **extra}
            self._store.save_answer(self._saving.answer, text, stored)
        return cited
