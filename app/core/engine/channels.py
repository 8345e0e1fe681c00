"""A Gemma 4 answer's tokens, split into its thought, its tool calls and the answer itself.

Gemma 4 writes a thought as `<|channel>thought\\n…<channel|>` and a call as
`<|tool_call>call:NAME{…}<tool_call|>`. Those four markers are single tokens of
its vocabulary: they are found there when the model loads (`find_markers` in llama_engine.py) and
recognised as token ids while the answer streams, so a model that spells a
marker out in plain text, or a user who pastes one, changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.chat.gemma4 import Markers

THOUGHT_LABEL = "thought\n"  # what follows <|channel> in a thought channel


class Channels:
    """Routes an answer's tokens: thought text to `on_thought`, each whole call's text to `on_call`.

    `feed` returns the text that belongs to the answer itself ("" for a marker, a thought or a call).
    A thought's "thought" label is left out; a call is passed on as `call:NAME{…}`, without its markers.
    """

    def __init__(self, markers: Markers, on_thought: Callable[[str], None], on_call: Callable[[str], None]) -> None:
        self._markers = markers
        self._on_thought = on_thought
        self._on_call = on_call
        self._in: str | None = None  # "thought" or "call" while inside one
        self._label: str | None = ""  # the start of a thought until its label is known; then None
        self._call: list[str] = []
        self.thought_tokens = 0

    def feed(self, token: int, text: str) -> str:
        m = self._markers
        if token == m.thought_open:
            self._in, self._label = "thought", ""
            return ""
        if token == m.thought_close:
            self._end_thought()
            return ""
        if token == m.call_open:
            self._in, self._call = "call", []
            return ""
        if token == m.call_close:
            if self._in == "call":
                self._on_call("".join(self._call))
            self._in = None
            return ""
        if self._in == "call":
            self._call.append(text)
            return ""
        if self._in == "thought":
            self.thought_tokens += 1
            self._thought(text)
            return ""
        return text

    def finish(self) -> None:
        """The answer ended: a call left open is dropped (it was cut off), a thought's start is passed on."""
        if self._in == "thought":
            self._end_thought()
        self._in = None

    def _thought(self, text: str) -> None:
        if self._label is None:
            self._on_thought(text)
            return
        self._label += text
        if self._label.startswith(THOUGHT_LABEL) or not THOUGHT_LABEL.startswith(self._label):
            rest = self._label.removeprefix(THOUGHT_LABEL)
            self._label = None
            if rest:
                self._on_thought(rest)

    def _end_thought(self) -> None:
        if self._label:  # a thought shorter than its label
            self._on_thought(self._label)
        self._in, self._label = None, ""
