"""What the KV cache does when the chat window and an IDE take turns on the one model.

    .venv/bin/python bench/interleave.py [--model PATH | --e2b] [--runs 3] [--threads N]

Prints one JSON object (its last line of output). A chat in the window (turns run by the
turn pipeline on the inference thread, as the window's are) and an IDE conversation through
the local API (an HTTP client in a child process, resending the whole conversation with a
source file in its first message) alternate, five turns each: chat 1, IDE 1, chat 2, IDE 2, …
Each turn's prompt tokens, the tokens actually read and its TTFT are recorded, with parked
caches (the app as it is: the cache a turn would throw away is put aside in RAM and put back
when its conversation returns) and without them (llama.cpp's one cache, whoever used it last
owns it). Runs alternate the two settings; figures are medians over runs of turns 2–5 (turn 1
of each conversation is cold either way).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication

from app.core.chat.message import ChatMessage
from app.core.engine.generation import SamplingParams
from app.core.engine.options import default_threads
from app.core.engine.parked import PARK_MAX_BYTES
from app.core.models.starter import ensure_starter_model
from app.core.turn import TurnEvents, TurnRequest, run_turn
from bench.endpoint import E2B, Client, Tern

TURNS = 5
ANSWER_TOKENS = 24
CHAT = (
    "Tell me about lighthouses.",
    "Who kept them?",
    "How did the lamps work?",
    "What replaced the keepers?",
    "Which is the oldest one still standing?",
)
IDE = (
    "Explain what this module does.",
    "What does the `retry` function return?",
    "How would I add a timeout to it?",
    "Is `Backoff.next` thread-safe?",
    "Write a docstring for `fetch`.",
)
SOURCE = "\n".join(
    [
        "import random",
        "import time",
        "",
        "class Backoff:",
        '    """Delays between attempts: exponential, with jitter, capped."""',
        "",
        "    def __init__(self, base=0.5, cap=30.0):",
        "        self.base, self.cap, self.attempt = base, cap, 0",
        "",
        "    def next(self):",
        "        delay = min(self.cap, self.base * 2 ** self.attempt)",
        "        self.attempt += 1",
        "        return delay * random.uniform(0.5, 1.0)",
        "",
    ]
    + [
        f"def step_{i}(value, factor={i}):\n    # step {i} of the pipeline: scale, then clamp\n"
        f"    scaled = value * factor\n    return max(-{i * 10}, min({i * 10}, scaled))\n"
        for i in range(1, 25)
    ]
    + [
        "def retry(fn, attempts=5):",
        "    backoff = Backoff()",
        "    for _ in range(attempts):",
        "        try:",
        "            return fn()",
        "        except OSError:",
        "            time.sleep(backoff.next())",
        "    raise TimeoutError('gave up')",
        "",
        "def fetch(url):",
        "    return retry(lambda: open(url).read())",
    ]
)


def chat_turn(tern: Tern, history: list[ChatMessage]) -> dict[str, Any]:
    """One turn in the window's conversation, through the turn pipeline on the inference thread."""
    request = TurnRequest(
        turn_id=len(history), history=tuple(history), sampling=SamplingParams(temperature=0.0, max_tokens=ANSWER_TOKENS)
    )
    pieces: list[str] = []
    result = tern.turns.host.call(
        lambda: run_turn(tern.turns.engine_on_thread(), request, TurnEvents(text=pieces.append))
    )
    stats = result.stats
    history.append(ChatMessage("assistant", "".join(pieces)))
    return {"prompt": stats.prompt_tokens, "read": stats.prompt_evaluated, "ttft_ms": stats.ttft_ms}


def ide_turn(tern: Tern, client: Client, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One request of the IDE's conversation, resent whole."""
    body = {
        "messages": messages,
        "max_tokens": ANSWER_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = client.stream(tern.base, "/chat/completions", tern.key, body)
    usage = r["usage"] or {}
    messages.append({"role": "assistant", "content": r["text"]})
    prompt = int(usage.get("prompt_tokens", 0))
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
    return {"prompt": prompt, "read": prompt - cached, "ttft_ms": 1000 * (r["ttft_s"] or r["end_s"])}


def one_run(tern: Tern, client: Client, parked: bool) -> dict[str, list[dict[str, Any]]]:
    """Five turns each of the chat and the IDE, alternating, from a cold cache."""

    def setup() -> None:
        engine = tern.turns.engine_on_thread()
        engine.forget_cache()
        engine.parked.max_bytes = PARK_MAX_BYTES if parked else 0

    tern.turns.host.call(setup)
    nonce = secrets.token_hex(4)  # no run reuses another's cache
    history: list[ChatMessage] = []
    messages: list[dict[str, str]] = [{"role": "system", "content": f"Project {nonce}: answer about the code."}]
    turns: dict[str, list[dict[str, Any]]] = {"chat": [], "ide": []}
    for n in range(TURNS):
        history.append(ChatMessage("user", f"({nonce}) {CHAT[n]}" if n == 0 else CHAT[n]))
        turns["chat"].append(chat_turn(tern, history))
        messages.append({"role": "user", "content": f"{IDE[n]}\n\n```python\n{SOURCE}\n```" if n == 0 else IDE[n]})
        turns["ide"].append(ide_turn(tern, client, messages))
    return turns


def summary(runs: list[dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Medians over runs of turns 2–5, per conversation."""
    out: dict[str, Any] = {}
    for side in ("chat", "ide"):
        later = [t for run in runs for t in run[side][1:]]
        out[side] = {
            "prompt_tokens_median": statistics.median(t["prompt"] for t in later),
            "read_tokens_median": statistics.median(t["read"] for t in later),
            "ttft_ms_median": round(statistics.median(t["ttft_ms"] for t in later), 1),
            "turn1": runs[0][side][0],
            "by_turn_first_run": runs[0][side],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="GGUF to measure (default: the starter model)")
    parser.add_argument("--e2b", action="store_true", help=f"the E2B-shaped synthetic model, {E2B}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    app = QCoreApplication.instance() or QCoreApplication([])  # noqa: F841 - needed for signals
    scratch = Path(tempfile.mkdtemp(prefix="tern-bench-interleave-"))
    model: Path = E2B if args.e2b else args.model or ensure_starter_model(scratch / "models")
    if not model.exists():
        sys.exit(f"{model} is missing (for --e2b: .venv/bin/python -m tools.synthetic_gemma e2b --quant Q4_K_M)")
    with_parking: list[dict[str, list[dict[str, Any]]]] = []
    without: list[dict[str, list[dict[str, Any]]]] = []
    with contextlib.ExitStack() as started:
        tern = Tern(model, args.threads, scratch)
        started.callback(tern.close)
        client = Client()
        started.callback(client.close)
        for run in range(args.runs):
            for parked in (run % 2 == 0, run % 2 != 0):  # each setting goes first in turn
                (with_parking if parked else without).append(one_run(tern, client, parked))
    shutil.rmtree(scratch, ignore_errors=True)
    on, off = summary(with_parking), summary(without)
    ratios = {
        f"{side}_{what}_parked_vs_not": round(on[side][key] / off[side][key], 3) if off[side][key] else None
        for side in ("chat", "ide")
        for what, key in (("read", "read_tokens_median"), ("ttft", "ttft_ms_median"))
    }
    print(
        json.dumps(
            {
                "model": model.name,
                "threads": args.threads,
                "runs": args.runs,
                "answer_tokens": ANSWER_TOKENS,
                "parked": on,
                "not_parked": off,
                "ratios": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
