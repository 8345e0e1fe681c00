"""The built-in tools and the toolbox: arithmetic without eval, time limits, result caps, thoughts kept apart."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.chat.gemma4 import Markers
from app.core.engine.channels import Channels
from app.core.tools.base import MAX_RESULT_CHARS, Toolbox, ToolCard, ToolContext, ToolSpec, cap
from app.core.tools.builtin import CALCULATOR, CLOCK, READ_FILE, SEARCH_HISTORY
from app.core.tools.calculator import CalculatorError, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [("6*7", 42), ("2 * (3 + 4) ** 2 / sqrt(16)", 24.5), ("17.5 * 12 / 100", 2.1), ("2^10", 1024),
     ("-3 // 2", -2), ("max(1, 5, 3) % 4", 1), ("round(pi, 3)", 3.142), ("1e3 + 1", 1001)],
)  # fmt: skip
def test_the_calculator_computes(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "open('/etc/passwd')", "(1).__class__", "'a' * 3", "x + 1", "9 ** 9 ** 9",
     "10 ** 200", "1 / 0", "sqrt(-1)", "lambda: 1", "[1, 2]", "", "1 +", "a" * 600, "round(1, ndigits=2)"],
)  # fmt: skip
def test_the_calculator_refuses_everything_else_with_a_reason(expression: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(expression)


def _card(spec: ToolSpec) -> ToolCard:
    return ToolCard("c1", spec.name, spec.label, "", "running")


def test_a_tool_that_runs_too_long_is_cut_off_and_the_turn_goes_on() -> None:
    release = threading.Event()
    slow = ToolSpec("slow", "Slow", "Waits.", {"type": "object"}, lambda _a, _c: (release.wait(30), "late")[1])
    box = replace(Toolbox.of([slow]), timeout_s=0.3)
    started = time.monotonic()
    card = box.run(slow, {}, ToolContext(), _card(slow))
    release.set()
    assert card.status == "timed out" and "did not finish within" in card.result
    assert time.monotonic() - started < 5


def test_stop_ends_a_running_tool_and_failures_reach_the_model_as_text() -> None:
    cancel = threading.Event()
    cancel.set()
    hang = ToolSpec("hang", "Hang", "Hangs.", {"type": "object"}, lambda _a, _c: (time.sleep(5), "never")[1])
    assert Toolbox.of([hang]).run(hang, {}, ToolContext(cancel=cancel), _card(hang)).status == "failed"

    def broken(_a: dict, _c: ToolContext) -> str:
        raise KeyError("bug")

    spec = ToolSpec("broken", "Broken", "Fails.", {"type": "object"}, broken)
    card = Toolbox.of([spec]).run(spec, {}, ToolContext(), _card(spec))
    assert (card.status, card.result) == ("failed", "The tool failed (KeyError).")


def test_results_are_capped_before_the_model_reads_them() -> None:
    big = ToolSpec("big", "Big", "Big.", {"type": "object"}, lambda _a, _c: "x" * (MAX_RESULT_CHARS * 3))
    card = Toolbox.of([big]).run(big, {}, ToolContext(), _card(big))
    assert len(card.result) < MAX_RESULT_CHARS + 100 and card.result.endswith("more characters left out]")
    assert cap("short") == "short"


def test_each_tool_asks_first_as_set_and_reading_files_asks_by_default() -> None:
    default = Toolbox.of([CALCULATOR, READ_FILE])
    assert default.asks_first == frozenset({"read_file"})
    assert Toolbox.of([CALCULATOR, READ_FILE], ask={"calculate": True, "read_file": False}).asks_first == {"calculate"}
    assert [d["function"]["name"] for d in default.declarations()] == ["calculate", "read_file"]


def test_the_clock_and_a_file_the_user_does_not_pick(tmp_path: Path) -> None:
    assert "time zone" in CLOCK.run({}, ToolContext())
    assert READ_FILE.run({"purpose": "x"}, ToolContext(pick_file=lambda _why: None)) == "The user chose no file."
    note = tmp_path / "note.md"
    note.write_text("# Title\n\nThe lighthouse was built in 1887.\n")
    read = READ_FILE.run({"purpose": "x"}, ToolContext(pick_file=lambda _why: note))  # the sandboxed reader
    assert read.startswith("note.md:") and "1887" in read
    assert SEARCH_HISTORY.run({"query": "x"}, ToolContext()) == "The history is off."


def test_thoughts_and_calls_are_routed_by_token_not_by_text() -> None:
    markers = Markers(thought_open=100, thought_close=101, call_open=48, call_close=49, quote=52)
    thought: list[str] = []
    calls: list[str] = []
    channels = Channels(markers, thought.append, calls.append)
    pieces = [(100, ""), (7, "thou"), (8, "ght\n"), (9, "Plan"), (10, " it."), (101, ""), (11, "Hi"), (48, ""),
              (12, "call:f{"), (13, "}"), (49, ""), (14, " <|channel>not a marker")]  # fmt: skip
    answer = "".join(channels.feed(token, text) for token, text in pieces)
    assert "".join(thought) == "Plan it."
    assert calls == ["call:f{}"]
    assert answer == "Hi <|channel>not a marker"
