"""Chat templates: the GGUF's own Jinja template, or Gemma's turn format.

A GGUF usually carries its template in `tokenizer.chat_template`; that is the
source of truth. Files without one (the starter model among them) use Gemma's
documented turn format when the architecture is Gemma.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.chat.message import ChatMessage
from app.core.engine.gguf_info import GgufInfo

log = logging.getLogger("tern.chat")


class ChatTemplate(Protocol):
    """Turns a message list into prompt text (without the leading BOS token)."""

    name: str

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Prompt text ending where the model's answer begins."""
        ...


class GemmaTurnTemplate:
    """Gemma's turn format. Gemma has no system role: the system prompt leads the first user turn."""

    name = "gemma-turns"

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Render `<start_of_turn>role\\n…<end_of_turn>\\n` turns and open the model's turn."""
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
    """A template from the GGUF metadata, rendered in a sandbox as transformers does."""

    name = "gguf-jinja"

    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader())
        env.globals["raise_exception"] = _raise_template_error
        self._template = env.from_string(source)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Render with `add_generation_prompt`; the BOS text is removed since the tokenizer adds BOS."""
        payload: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in messages]
        text = self._template.render(
            messages=payload, bos_token=self._bos, eos_token=self._eos, add_generation_prompt=True
        )
        if self._bos and text.startswith(self._bos):
            text = text[len(self._bos) :]
        return text


class TemplateError(ValueError):
    """A template refused the conversation (e.g. roles that do not alternate)."""


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def select_template(info: GgufInfo, bos_token: str, eos_token: str) -> ChatTemplate:
    """The file's own template when it has a usable one, else Gemma's turn format."""
    if info.chat_template:
        try:
            template = JinjaChatTemplate(info.chat_template, bos_token, eos_token)
            template.render([ChatMessage("user", "ping")])
            return template
        except (jinja2.TemplateError, TemplateError) as exc:
            log.warning("The chat template in %s does not render (%s); using Gemma turns", info.path.name, exc)
    elif not info.is_gemma:
        log.warning("%s (%s) has no chat template; using Gemma turns", info.path.name, info.architecture)
    return GemmaTurnTemplate()
