"""Follow-up questions on an attached document: what each turn evaluates, and its time to first token.

    .venv/bin/python bench/doc_turns.py [--model PATH ...] [--tokens 3500] [--threads 2] [--repeat 5] [--starter-only]

Prints one JSON object. For each model (default: the starter, and the E2B-shaped
synthetic Gemma 4 when `python -m tools.synthetic_gemma e2b` has built it), a
conversation of four questions runs through the app's turn pipeline (`run_turn`,
the real encrypted store, the real retrieval) three ways, each from an empty cache:

- whole: a document of about `--tokens` tokens fits half the context (8,192), so it
  goes in whole, ahead of the conversation;
- retrieval: the same document with a 4,096-token context, where it does not fit, so
  passages are chosen for each question;
- baseline: the same four questions with no document, at each context size.

For every turn: tokens in the prompt, tokens evaluated (the rest came from the KV
cache) and TTFT. The ratio that matters is the follow-ups' median TTFT over the
baseline's, measured in the same run; the whole-document conversation and its
baseline run `--repeat` times, and the median of the runs' ratios is reported.
Every answer goes back into the history as the same short text (KEPT_ANSWER), in
every conversation, so a follow-up evaluates the same tokens with the document and
without it. (Left as generated, answers differ between the two conversations, and
a random-weights model's answers re-tokenise unevenly: the E2B-shaped model's
follow-ups evaluated 18 and 13 tokens with the document, 39 and 47 without.)
"after_restart" asks the fifth question of the whole-document conversation with
the cache emptied, as after a restart or a switch between conversations: with the
model state saved after the turn that read the document (restored from the
encrypted states file), and without it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp.llama_cpp as llama_lib

from app.core.chat.message import ChatMessage, Given
from app.core.docs.chunking import SectionText, chunk_sections
from app.core.docs.doc_store import DocumentStore
from app.core.engine import llama_log
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine, LoadOptions
from app.core.models.starter import ensure_starter_model
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.ref import Ref
from app.core.store.state_cache import StateCache
from app.core.turn import TurnEvents, TurnRequest, TurnResult, TurnSaving, run_turn
from tests.core.docs.planted_facts import FACTS, build_pages
from tests.core.test_turn import StoreHere

SYNTHETIC_E2B = Path.home() / ".cache" / "tern" / "synthetic" / "gemma4-e2b-shaped-Q4_K_M.gguf"
SAMPLING = SamplingParams(temperature=0.0, max_tokens=32)
KEPT_ANSWER = "Noted."
FLOOR_TEXT = "\nQ: How far is the old lighthouse from the harbour, and who built it?"
WHOLE_CTX, RETRIEVAL_CTX = 8192, 4096


def document(engine: LlamaEngine, tokens: int) -> tuple[list[str], list[str], int]:
    """Pages of the planted-facts corpus adding up to about `tokens`, five questions they answer, their tokens."""
    pages, where = build_pages()
    kept: list[str] = []
    counted = 0
    while counted + len(engine.tokenize(pages[len(kept)])) <= tokens:  # whole pages, up to `tokens`
        kept.append(pages[len(kept)])
        counted += len(engine.tokenize(kept[-1]))
    questions = [q for i, (_fact, q) in enumerate(FACTS) if where[i] <= len(kept)]
    return kept, (questions * 5)[:5], counted


class Conversation:
    """One conversation in the encrypted store, asked question by question as the chat asks."""

    def __init__(self, store: StoreHere, pages: list[str] | None) -> None:
        self.store = store
        self.id = store.store.create_conversation("bench")
        if pages:
            docs = DocumentStore(store.store.connection)
            doc = docs.add(self.id, "/bench/almanac.pdf", "almanac.pdf", "pdf", 1, 0.0)
            docs.replace_chunks(doc, chunk_sections([SectionText(t, page=n) for n, t in enumerate(pages, 1)]))
        self.history: list[ChatMessage] = []
        self.above: tuple[Ref, ...] = ()
        self.last: TurnResult | None = None

    def ask(self, engine: LlamaEngine, question: str) -> dict[str, Any]:
        saving = TurnSaving(Ref(self.id), self.above, Ref(), question=Ref(), conversation_id=self.id)
        self.history.append(ChatMessage("user", question))
        given: list[Given] = []
        first: list[float] = []  # when the first text came

        def text(_piece: str) -> None:
            first.append(first[0] if first else time.perf_counter())

        events = TurnEvents(text=text, sources=lambda found, _note, mode: given.append(Given(mode, found)))
        dropped = self.last.dropped_messages if self.last else 0
        # No wait limit: the document goes in whole wherever it fits half the context, on a slow model too.
        request = TurnRequest(len(self.history), tuple(self.history), sampling=SAMPLING, saving=saving,
                              previous_dropped=dropped, source_wait_s=1e9)  # fmt: skip
        asked = time.perf_counter()
        self.last = run_turn(engine, request, events, self.store)
        ended = time.perf_counter()
        self.history.append(ChatMessage("assistant", KEPT_ANSWER, given=given[0] if given else None))
        self.above = (*self.above, saving.question or Ref(), saving.answer)
        stats = self.last.stats
        return {
            "mode": given[0].mode if given else None,
            "prompt_tokens": stats.prompt_tokens,
            "evaluated": stats.prompt_evaluated,
            # As the user waits: from asking (finding sources, building the prompt, restoring a saved state) to
            # the first text; an answer that ends at its first token (a random-weights model's may) streams
            # nothing, and then it is the whole turn.
            "ttft_ms": round(((first[0] if first else ended) - asked) * 1000, 1),
            "engine_ttft_ms": round(stats.ttft_ms, 1),  # from the engine's start: reading the prompt, first token
        }


def conversation(engine: LlamaEngine, store: StoreHere, pages: list[str] | None, questions: list[str]) -> list[dict]:
    engine.forget_cache()
    chat = Conversation(store, pages)
    return [chat.ask(engine, q) for q in questions]


def llama_cpp_reads(engine: LlamaEngine, runs: int = 3) -> float:
    """Median ms for llama.cpp alone to read FLOOR_TEXT on top of what the cache holds (which is kept).

    What attention over the cached tokens costs, with nothing of the turn pipeline around it.
    """
    llm = engine._require()  # the llama.cpp context under the engine
    memory = llama_lib.llama_get_memory(llm._ctx.ctx)
    held = llm.n_tokens
    tokens = llm.tokenize(FLOOR_TEXT.encode(), add_bos=False)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        llm.eval(tokens)
        llama_lib.llama_synchronize(llm._ctx.ctx)  # done, and counted now (not in the next turn's figures)
        times.append((time.perf_counter() - started) * 1000)
        llama_lib.llama_memory_seq_rm(memory, 0, held, -1)
        llm.n_tokens = held
    return statistics.median(times)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ratio(with_doc: list[dict], baseline: list[dict]) -> float:
    """Median follow-up TTFT with the document over the same follow-ups without it."""
    return round(statistics.median(t["ttft_ms"] for t in with_doc[1:]) /
                 statistics.median(t["ttft_ms"] for t in baseline[1:]), 3)  # fmt: skip


def measure(model: Path, tokens: int, threads: int, store: StoreHere, repeat: int) -> dict[str, Any]:
    engine = LlamaEngine()
    engine.load(model, LoadOptions(n_ctx=WHOLE_CTX, n_threads=threads))
    pages, questions, counted = document(engine, tokens)
    ask, fifth = questions[:4], questions[4]
    ratios, floors = [], []
    for _ in range(repeat):  # the pair again, for the median of the ratios (this machine is noisy)
        whole = conversation(engine, store, pages, ask)
        read_after_document = llama_cpp_reads(engine)
        baseline = conversation(engine, store, None, ask)
        ratios.append(ratio(whole, baseline))
        floors.append(round(read_after_document / llama_cpp_reads(engine), 3))
        progress(f"{model.name}: whole document and baseline, ratio {ratios[-1]}, llama.cpp alone {floors[-1]}")
    # After a restart: the fifth question of a four-turn conversation, with nothing in the cache; the
    # state saved after the turn that read the document is put back, or (dropped) is not there.
    restart = {}
    for kept in (True, False):
        chat = Conversation(store, pages)
        engine.forget_cache()
        for q in ask:
            chat.ask(engine, q)
        if not kept and store.states is not None:
            store.states.drop([chat.id])
        engine.forget_cache()
        restart[kept] = chat.ask(engine, fifth)
        progress(f"after a restart, state {'kept' if kept else 'dropped'}")
    bare = Conversation(store, None)
    for q in ask:
        bare.ask(engine, q)
    engine.forget_cache()
    restart_baseline = bare.ask(engine, fifth)
    engine.unload()
    engine.load(model, LoadOptions(n_ctx=RETRIEVAL_CTX, n_threads=threads))
    retrieval = conversation(engine, store, pages, ask)
    retrieval_baseline = conversation(engine, store, None, ask)
    progress(f"{model.name}: passages and baseline")
    engine.unload()
    return {
        "document_tokens": counted,
        "whole": whole,
        "baseline": baseline,
        "follow_up_ttft_over_baseline": statistics.median(ratios),  # the median over --repeat runs
        "follow_up_ratios": ratios,
        # llama.cpp alone, same run: the same 18 tokens read on top of each conversation's cache
        "llama_cpp_same_tokens_over_baseline": statistics.median(floors),
        "llama_cpp_ratios": floors,
        "retrieval": retrieval,
        "retrieval_baseline": retrieval_baseline,
        "retrieval_follow_up_ttft_over_baseline": ratio(retrieval, retrieval_baseline),
        "after_restart_with_saved_state": restart[True],
        "after_restart_without_saved_state": restart[False],
        "after_restart_baseline": restart_baseline,
        "after_restart_ttft_over_baseline": round(restart[True]["ttft_ms"] / restart_baseline["ttft_ms"], 3),
        "after_restart_without_state_over_baseline": round(restart[False]["ttft_ms"] / restart_baseline["ttft_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", help="GGUF to measure (repeatable)")
    parser.add_argument("--tokens", type=int, default=3500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the whole-document pair (E2B-shaped: one)")
    parser.add_argument("--starter-only", action="store_true", help="leave out the E2B-shaped model (minutes a turn)")
    args = parser.parse_args()
    llama_log.install()
    scratch = Path(tempfile.mkdtemp(prefix="tern-bench-"))
    models = args.model or [
        ensure_starter_model(scratch / "models"),
        *([SYNTHETIC_E2B] if SYNTHETIC_E2B.exists() and not args.starter_only else []),
    ]
    key = secrets.token_bytes(32)
    conn = open_database(scratch / "history.db", key)
    store = StoreHere(ConversationStore(conn), StateCache(scratch / "states.db", key))
    report: dict[str, Any] = {"threads": args.threads, "models": {}}
    for model in models:
        repeat = args.repeat if model != SYNTHETIC_E2B else 1  # four minutes of reading a run
        report["models"][model.name] = measure(model, args.tokens, args.threads, store, repeat)
        progress(json.dumps({model.name: report["models"][model.name]}))  # kept if a later model runs out of time
    conn.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
