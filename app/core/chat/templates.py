"""Chat templates: the GGUF's own Jinja template, or Gemma's turn format.

A GGUF usually carries its template in `tokenizer.chat_template`; that is the
source of truth. Files without one (the starter model among them) use Gemma's
documented turn format when the architecture is Gemma.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core import units
from app.core.chat.gemma4 import Gemma4Template, is_gemma4_template
from app.core.chat.message import ChatMessage, fold_context
from app.core.errors import UserError
from app.core.sandbox import Sandbox, SandboxError

log = logging.getLogger("tern.chat")

MAX_TEMPLATE_CHARS = 200_000  # Gemma 4's own is about 10 kB
RENDER_TIMEOUT_S = 5.0  # a real template renders a long conversation in milliseconds
OUTPUT_LIMIT_BASE = 64_000  # characters, plus ...
OUTPUT_LIMIT_FACTOR = 8  # ... this many per character of the messages
TEMPLATE_MEMORY = 1024**3  # address space of the child


class ChatTemplate(Protocol):
    """Turns a message list into prompt text (without the leading BOS token)."""

    name: str
    note: str  # for the user, when the model's own template had to be set aside

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Prompt text ending where the model's answer begins."""
        ...


class GemmaTurnTemplate:
    """Gemma's turn format. Gemma has no system role: the system prompt leads the first user turn."""

    name = "gemma-turns"

    def __init__(self, note: str = "") -> None:
        self.note = note  # why the file's own template is not used, when it has one

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Render `<start_of_turn>role\\n…<end_of_turn>\\n` turns and open the model's turn."""
        messages = fold_context(messages)
        system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
        parts: list[str] = []
        for m in messages:
            if m.role == "system":
                continue
            content = m.content.strip()
            if system and m.role == "user":
                content = f"{system}\n\n{content}"
                system = ""
            role = "model" if m.role == "assistant" else "user"
            parts.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
        parts.append("<start_of_turn>model\n")
        return "".join(parts)


class JinjaChatTemplate:
    """A template from the GGUF metadata, compiled and rendered in a sandboxed child process.

    The template is the file's, so it is untrusted: besides Jinja's own sandbox
    it runs in a `Sandbox` child with a time limit, an output limit and a memory
    cap. When it breaks one of them, or fails to compile or render, it is set
    aside for the rest of the session and Gemma's turn format takes over, with
    a `note` saying so. A `raise_exception` in the template (the template
    refusing the conversation, as some do when roles do not alternate) is the
    one error passed on, as a `TemplateError` for the user.
    """

    name = "gguf-jinja"

    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        self._source = source
        self._bos = bos_token
        self._eos = eos_token
        self._fallback = GemmaTurnTemplate()
        self.note = ""
        if len(source) > MAX_TEMPLATE_CHARS:
            self.set_aside(f"it is {units.size(len(source.encode()))} long, more than a chat template needs")

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Render with `add_generation_prompt`; the BOS text is removed since the tokenizer adds BOS."""
        if self.note:
            return self._fallback.render(messages)
        payload = [{"role": m.role, "content": m.content} for m in fold_context(messages)]
        limit = OUTPUT_LIMIT_BASE + OUTPUT_LIMIT_FACTOR * sum(len(m.content) for m in messages)
        try:
            refused, text = _sandbox().call(
                _render_untrusted, self._source, payload, self._bos, self._eos, limit, timeout=RENDER_TIMEOUT_S
            )
        except SandboxError as exc:
            self.set_aside(_failure(exc))
            return self._fallback.render(messages)
        if refused:
            raise TemplateError(text)
        if self._bos and text.startswith(self._bos):
            text = text[len(self._bos) :]
        return text

    def set_aside(self, reason: str) -> None:
        """Use Gemma's turn format from now on, and say why in `note`."""
        self.name = self._fallback.name
        self.note = f"The model's own chat template was not used ({reason}); Gemma's turn format is used instead."
        log.warning("The GGUF's chat template was set aside: %s", reason)  # never user text: see _failure


class TemplateError(UserError, ValueError):
    """A template refused the conversation (e.g. roles that do not alternate)."""


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def select_template(source: str | None, bos_token: str, eos_token: str) -> ChatTemplate:
    """The model file's own template `source` when it is usable, else Gemma's turn format (with a note why).

    Gemma 4's template is rendered in Python (gemma4.py): the same text, with tools and thinking.
    """
    if is_gemma4_template(source):
        return Gemma4Template()
    if source:
        template = JinjaChatTemplate(source, bos_token, eos_token)
        try:
            template.render([ChatMessage("user", "ping")])
        except TemplateError:
            template.set_aside("it refuses a plain one-message conversation")
        return template if not template.note else GemmaTurnTemplate(template.note)
    return GemmaTurnTemplate()


# --- in the sandbox's child process -------------------------------------------------------------


def _failure(exc: SandboxError) -> str:
    """Why a render failed, in words that never quote the conversation."""
    if exc.kind == "timeout":
        return f"it ran longer than {RENDER_TIMEOUT_S:.0f} s"
    if exc.kind == "memory":
        return "it needed too much memory"
    if exc.kind == "crashed":
        return "rendering it crashed"
    kind = exc.detail.split(":", 1)[0]  # the exception's type; its message may quote the messages
    return f"it failed to render ({kind})"


_SANDBOX: Sandbox | None = None


def _sandbox() -> Sandbox:
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = Sandbox("templates", memory_limit=TEMPLATE_MEMORY)
    return _SANDBOX


class _OutputTooLongError(Exception):
    """The template produced far more text than the conversation holds."""


@functools.lru_cache(maxsize=4)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader(), extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = _raise_template_error
    return env.from_string(source)


def _render_untrusted(source: str, messages: list[dict[str, Any]], bos: str, eos: str, limit: int) -> tuple[bool, str]:
    """(refused, text): the text, or the template's own refusal message. Runs in the child."""
    pieces: list[str] = []
    size = 0
    try:
        for piece in _compile(source).generate(
            messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=True
        ):
            size += len(piece)
            if size > limit:
                raise _OutputTooLongError(f"more than {limit} characters")
            pieces.append(piece)
    except TemplateError as exc:
        return True, str(exc)
    return False, "".join(pieces)
