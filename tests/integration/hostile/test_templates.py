"""Hostile chat templates: sandbox escapes, endless loops, giant numbers and outputs, deep recursion.

Each is set aside with a note (Gemma's turn format takes over) and never goes
down the bug path; the process that asked stays responsive throughout, because
the template only ever runs in a child process that can be killed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.core.chat import templates
from app.core.chat.message import ChatMessage
from app.core.chat.templates import GemmaTurnTemplate, JinjaChatTemplate, TemplateError, select_template
from app.core.engine.gguf_info import read_gguf_info
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.options import LoadOptions
from tests.fixtures.gguf_files import write_tiny_gguf
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma

LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
HOSTILE = {
    # CVE-2024-34359 (llama-cpp-python's template RCE) and the classic SSTI walks to os.system.
    "cve-2024-34359": "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
    "{{ x()._module.__builtins__['__import__']('os').popen('touch /tmp/tern-pwned').read() }}"
    "{% endif %}{% endfor %}",
    "globals-walk": "{{ self.__init__.__globals__.__builtins__.__import__('os').system('id') }}",
    "cycler-walk": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "nested-loops": LOOP,
    "huge-power": "{{ 10 ** (10 ** 8) }}",  # folded while compiling: a GIL-holding computation
    "huge-output": "{{ 'x' * 300000000 }}",
    "deep-recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "syntax-error": "{% if %}",
    "unknown-filter": "{{ messages | no_such_filter }}",
    "too-long": "{# " + "x" * 300_000 + " #}",
}


@pytest.fixture(autouse=True)
def quick_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2 s budget instead of 5 s: the same mechanism, a faster suite."""
    monkeypatch.setattr(templates, "RENDER_TIMEOUT_S", 2.0)


class Heartbeat:
    """Measures the longest pause of this process's other threads while something runs."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.01):
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_is_set_aside_with_a_note(name: str, tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_gguf(tmp_path / "t.gguf", "gemma3", template=HOSTILE[name]))
    started = time.monotonic()
    with Heartbeat() as heart:
        template = select_template(info.chat_template, "<bos>", "<eos>")
    assert isinstance(template, GemmaTurnTemplate) and template.note.startswith("The model's own chat template")
    assert time.monotonic() - started < 10  # the time limit, plus starting the child
    assert heart.longest < 0.5  # this process was never frozen
    assert template.render([ChatMessage("user", "Hi")]).startswith("<start_of_turn>user\nHi")
    assert not Path("/tmp/tern-pwned").exists()


def test_a_template_that_breaks_in_a_later_turn_falls_back_for_the_rest_of_the_session() -> None:
    source = (  # fine for one message; loops for ever once the conversation has three
        "{% if messages | length > 2 %}" + LOOP + "{% endif %}"
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
    )
    template = JinjaChatTemplate(source, "<bos>", "<eos>")
    assert template.render([ChatMessage("user", "Hi")]) == "[user]Hi[assistant]"
    conversation = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "secret words")]
    assert template.render(conversation).endswith("<start_of_turn>model\n")
    assert "ran longer than 2 s" in template.note and "secret words" not in template.note
    assert template.name == "gemma-turns"


def test_the_templates_own_refusal_reaches_the_user() -> None:
    source = "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('Roles must alternate') }}{% endif %}ok"
    template = JinjaChatTemplate(source, "<bos>", "<eos>")
    with pytest.raises(TemplateError, match="Roles must alternate"):
        template.render([ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello")])
    assert template.note == ""  # a refusal is the template working, not failing


def test_a_model_whose_template_hangs_loads_with_gemma_turns(tmp_path: Path, starter_model: Path) -> None:
    # llama-cpp-python's Llama() compiles the file's templates itself; Tern's load must not let it.
    model = write_gemma(tmp_path / "hostile.gguf", TINY_GEMMA4, starter_model, chat_template=HOSTILE["huge-power"])
    engine = LlamaEngine()
    started = time.monotonic()
    with Heartbeat() as heart:
        loaded = engine.load(model, LoadOptions(n_ctx=256))
    try:
        assert time.monotonic() - started < 30 and heart.longest < 0.5
        assert loaded.template_name == "gemma-turns" and "ran longer" in loaded.template_note
    finally:
        engine.unload()
