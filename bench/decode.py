"""Decode speed of Tern's engine + worker path against a raw llama.cpp loop, and TTFT as a chat grows.

    .venv/bin/python bench/decode.py [--model PATH] [--runs 5] [--tokens 128]

Prints one JSON object. Both paths run the same GGUF, prompt, context size,
thread count and greedy sampling, alternating run by run so machine noise
hits both alike; figures are medians.

For a base model such as the starter, the app asks for an answer on a question-and-answer
page, with stop sequences and DRY plus a presence penalty in the sampler chain. The raw loop
then gets the same page, the same sampler chain (llama.cpp's penalties, DRY fed the same
text, greedy) and stops at the same stop sequences, so both decode the same tokens. A Gemma 4
model gets Gemma 4's own turns on both paths.

For a Gemma 4 model, "tool_loop" also measures what the answer reads again after a tool
call: a turn whose first step must call the calculator (the grammar a required call uses;
a random-weight model would never call it by itself), then goes on after the result. The
tokens read after the call are compared with the tokens of the result in Gemma 4's format.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import llama_cpp.llama_cpp as L  # noqa: N812  (the C API, named as in llama.h)
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QTimer, Slot

from app.core.chat.completion import MAX_ANSWER_TOKENS, CompletionFrame
from app.core.chat.gemma4 import Gemma4Template, is_gemma4_template, tool_response
from app.core.chat.message import ChatMessage
from app.core.chat.prompt_builder import build_prompt
from app.core.engine import llama_log
from app.core.engine.generation import SamplingParams, base_model_sampling
from app.core.engine.gguf_info import read_gguf_info
from app.core.engine.llama_engine import LoadOptions, default_threads, is_base_model
from app.core.engine.sampler_chain import DRY_BREAKERS, DRY_LAST_N
from app.core.models.starter import ensure_starter_model
from app.core.tools.base import Toolbox
from app.core.tools.builtin import CALCULATOR
from app.core.turn import TurnRequest, TurnResult
from app.services.turns import LoadRequest, TurnService

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
N_CTX = 4096


def gemma_prompt(text: str) -> str:
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


def greedy(n_tokens: int) -> SamplingParams:
    """What both paths are asked for: greedy decoding, no penalties, `n_tokens` at most."""
    return SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=n_tokens)


class RawLoop:
    """llama.cpp through llama-cpp-python's C bindings only: decode, sample, repeat.

    For a chat model: Gemma turns and a greedy sampler. For a base model: the app's
    question-and-answer page, its sampler chain and its stop sequences.
    """

    def __init__(self, path: Path, threads: int, base_model: bool, gemma4: bool = False) -> None:
        self.gemma4 = gemma4
        L.llama_backend_init()
        mparams = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise RuntimeError("raw load failed")
        self.vocab = L.llama_model_get_vocab(self.model)
        cparams = L.llama_context_default_params()
        cparams.n_ctx = N_CTX
        cparams.n_batch = 512
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.swa_full = True
        self.ctx = L.llama_init_from_model(self.model, cparams)
        self.base_model = base_model
        self.stop: tuple[str, ...] = ()
        self.sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if base_model:  # the chain the engine builds for a base model at temperature 0
            frame = CompletionFrame()
            sampling = base_model_sampling(greedy(1), frame.stop, MAX_ANSWER_TOKENS, frame.not_to_copy())
            self.stop = sampling.stop
            n_vocab = L.llama_vocab_n_tokens(self.vocab)
            penalties = L.llama_sampler_init_penalties(n_vocab, 64, 1.0, 0.0, sampling.presence_penalty)
            L.llama_sampler_chain_add(self.sampler, penalties)
            breakers = (ctypes.c_char_p * len(DRY_BREAKERS))(*(b.encode() for b in DRY_BREAKERS))
            dry = L.llama_sampler_init_dry(
                self.vocab,
                sampling.dry_multiplier,
                sampling.dry_base,
                sampling.dry_allowed_length,
                DRY_LAST_N,
                breakers,
                len(DRY_BREAKERS),
            )
            self.dry, self.dry_history = dry, self.tokenize(sampling.dry_history, special=False)
            L.llama_sampler_chain_add(self.sampler, dry)
        L.llama_sampler_chain_add(self.sampler, L.llama_sampler_init_greedy())

    def tokenize(self, text: str, special: bool = True, bos: bool | None = None) -> list[int]:
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), special if bos is None else bos, special)
        return list(buf[:n])

    def prompt(self, text: str, n_tokens: int) -> list[int]:
        if self.gemma4:
            return self.tokenize(Gemma4Template().render([ChatMessage("user", text)]))
        if not self.base_model:
            return self.tokenize(gemma_prompt(text))
        return build_prompt([ChatMessage("user", text)], "", CompletionFrame(), self.tokenize, N_CTX, n_tokens).tokens

    def piece(self, token: int) -> str:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def run(self, text: str, n_tokens: int) -> tuple[float, int]:
        """Decode tok/s over tokens 2..n (the first includes the prompt), and tokens produced."""
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        L.llama_sampler_reset(self.sampler)
        if self.base_model:  # what the answer should not copy counts as already said, as in the engine
            for token in self.dry_history:
                L.llama_sampler_accept(self.dry, token)
        tokens = self.prompt(text, n_tokens)
        answer = ""
        arr = (L.llama_token * len(tokens))(*tokens)
        if L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(tokens))) != 0:
            raise RuntimeError("decode failed")
        produced, first, last = 0, 0.0, 0.0
        one = (L.llama_token * 1)()
        while produced < n_tokens:
            token = L.llama_sampler_sample(self.sampler, self.ctx, -1)
            if L.llama_vocab_is_eog(self.vocab, token):
                break
            answer += self.piece(token)
            if any(stop in answer for stop in self.stop):
                break  # where the engine stops (it also leaves out the token or two before, which spell the stop)
            last = time.perf_counter()
            if produced == 0:
                first = last
            produced += 1
            if produced == n_tokens:
                break
            one[0] = token
            if L.llama_decode(self.ctx, L.llama_batch_get_one(one, 1)) != 0:
                raise RuntimeError("decode failed")
        return ((produced - 1) / (last - first) if produced > 1 else 0.0), produced

    def close(self) -> None:
        L.llama_sampler_free(self.sampler)
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)


class AppPath(QObject):
    """The app's own path: a TurnRequest through the turn service's thread, results by queued signal."""

    def __init__(self, path: Path, threads: int, models_dir: Path) -> None:
        super().__init__()
        self.inference = TurnService(models_dir)
        self.results: list[TurnResult] = []
        self.loaded = False
        self.inference.model_loaded.connect(self._on_loaded)
        self.inference.turn_finished.connect(self._on_finished)
        self.inference.start()
        self.inference.load(LoadRequest(path, LoadOptions(n_ctx=N_CTX, n_threads=threads)))
        self._wait(lambda: self.loaded)
        self._turn = 0

    @Slot(object)
    def _on_loaded(self, _loaded: object) -> None:
        self.loaded = True

    @Slot(object)
    def _on_finished(self, result: TurnResult) -> None:
        self.results.append(result)

    def _wait(self, done: object) -> None:
        loop = QEventLoop()
        timer = QTimer()
        timer.timeout.connect(lambda: loop.quit() if done() else None)  # type: ignore[operator]
        timer.start(2)
        loop.exec()

    def turn(self, history: list[ChatMessage], n_tokens: int, **more: Any) -> TurnResult:
        self._turn += 1
        before = len(self.results)
        self.inference.submit(TurnRequest(self._turn, tuple(history), sampling=greedy(n_tokens), **more))
        self._wait(lambda: len(self.results) > before)
        return self.results[-1]

    def close(self) -> None:
        self.inference.shutdown()


def ttft_series(app_path: AppPath, run: int) -> tuple[list[float], TurnResult]:
    """TTFT of turns 1..5 of one conversation; every user message has the same length."""
    history: list[ChatMessage] = []
    ttfts = []
    result = None
    for turn in range(1, 6):
        # Same token count each turn; the run number changes the first tokens so no cache carries over.
        history.append(ChatMessage("user", f"Conversation {run} turn {turn}. Tell me one fact about the sea."))
        result = app_path.turn(history, 32)
        ttfts.append(result.stats.ttft_ms)
        history.append(ChatMessage("assistant", f"Fact number {turn} about the sea."))
    assert result is not None
    return ttfts, result


def tool_loop(app_path: AppPath, raw: RawLoop) -> dict[str, Any]:
    """Tokens read after a tool call, against the tokens of its result (Gemma 4 only)."""
    toolbox = Toolbox.of([CALCULATOR])
    history = [ChatMessage("user", "What is 6 times 7? Use the calculator.")]
    app_path.inference.forget_conversations()  # the first step reads its whole prompt (queued before the turn)
    result = app_path.turn(history, 64, toolbox=toolbox, tool_choice="calculate")
    first = len(raw.tokenize(Gemma4Template(toolbox.declarations()).render(history)))
    (card,) = result.cards
    response = len(raw.tokenize(tool_response(card.name, card.result), bos=False))
    return {
        "call": card.arguments,
        "result": card.result[:80],
        "first_prompt_tokens": first,
        "read_after_the_call": result.stats.prompt_evaluated - first,
        "result_tokens": response,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF to measure (default: the starter model)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    app = QCoreApplication.instance() or QCoreApplication([])  # noqa: F841 - needed for signals
    scratch = Path(tempfile.mkdtemp(prefix="tern-bench-"))
    model = args.model or ensure_starter_model(scratch / "models")

    llama_log.install()  # llama.cpp's chatter goes to logging, not the JSON output
    info = read_gguf_info(model)
    base_model = is_base_model(info)
    gemma4 = is_gemma4_template(info.chat_template)
    raw = RawLoop(model, args.threads, base_model, gemma4)
    app_path = AppPath(model, args.threads, scratch / "models")
    engine_runs, raw_runs, produced = [], [], []
    ttft1, ttft5 = [], []
    last5: TurnResult | None = None
    for run in range(args.runs):
        prompt = f"{PROMPT} ({run})"
        if run % 2:  # alternate which path goes first
            speed, n = raw.run(prompt, args.tokens)
            result = app_path.turn([ChatMessage("user", prompt)], args.tokens)
        else:
            result = app_path.turn([ChatMessage("user", prompt)], args.tokens)
            speed, n = raw.run(prompt, args.tokens)
        engine_runs.append(result.stats.decode_tok_s)
        raw_runs.append(speed)
        produced.append((result.stats.completion_tokens, n))
        series, last5 = ttft_series(app_path, run)
        ttft1.append(series[0])
        ttft5.append(series[4])
    looped = tool_loop(app_path, raw) if gemma4 else None
    app_path.close()
    raw.close()

    engine_tok_s = statistics.median(engine_runs)
    raw_tok_s = statistics.median(raw_runs)
    t1, t5 = statistics.median(ttft1), statistics.median(ttft5)
    print(
        json.dumps(
            {
                "model": model.name,
                "prompting": "question-and-answer page (base model)"
                if base_model
                else "Gemma 4 turns"
                if gemma4
                else "chat turns",
                "threads": args.threads,
                "runs": args.runs,
                "tokens_per_run": args.tokens,
                "tokens_produced_engine_raw": produced,
                "engine_tok_s": round(engine_tok_s, 2),
                "raw_tok_s": round(raw_tok_s, 2),
                "ratio": round(engine_tok_s / raw_tok_s, 3),
                "engine_runs": [round(x, 2) for x in engine_runs],
                "raw_runs": [round(x, 2) for x in raw_runs],
                "ttft_turn1_ms": round(t1, 1),
                "ttft_turn5_ms": round(t5, 1),
                "ttft_turn5_over_turn1": round(t5 / t1, 3),
                "turn5_prompt_tokens": last5.stats.prompt_tokens if last5 else None,
                "turn5_prompt_evaluated": last5.stats.prompt_evaluated if last5 else None,
                "tool_loop": looped,
            }
        )
    )


if __name__ == "__main__":
    main()
