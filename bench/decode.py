"""Decode speed of Tern's engine + worker path against a raw llama.cpp loop, and TTFT as a chat grows.

    .venv/bin/python bench/decode.py [--model PATH] [--runs 5] [--tokens 128]

Prints one JSON object. Both paths run the same GGUF, prompt, context size,
thread count and greedy sampling, alternating run by run so machine noise
hits both alike; figures are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import llama_cpp.llama_cpp as L  # noqa: N812  (the C API, named as in llama.h)
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QTimer, Slot

from app.core.chat.message import ChatMessage
from app.core.engine import llama_log
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LoadOptions, default_threads
from app.core.models.starter import ensure_starter_model
from app.core.turn import TurnRequest, TurnResult
from app.services.turns import LoadRequest, TurnService

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
N_CTX = 4096


def gemma_prompt(text: str) -> str:
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


class RawLoop:
    """llama.cpp through llama-cpp-python's C bindings only: decode, greedy-sample, repeat."""

    def __init__(self, path: Path, threads: int) -> None:
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
        self.sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(self.sampler, L.llama_sampler_init_greedy())

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, True)
        return list(buf[:n])

    def run(self, text: str, n_tokens: int) -> tuple[float, int]:
        """Decode tok/s over tokens 2..n (the first includes the prompt), and tokens produced."""
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        L.llama_sampler_reset(self.sampler)
        tokens = self.tokenize(gemma_prompt(text))
        arr = (L.llama_token * len(tokens))(*tokens)
        if L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(tokens))) != 0:
            raise RuntimeError("decode failed")
        produced, first, last = 0, 0.0, 0.0
        one = (L.llama_token * 1)()
        while produced < n_tokens:
            token = L.llama_sampler_sample(self.sampler, self.ctx, -1)
            if L.llama_vocab_is_eog(self.vocab, token):
                break
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

    def turn(self, history: list[ChatMessage], n_tokens: int) -> TurnResult:
        self._turn += 1
        before = len(self.results)
        sampling = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=n_tokens)
        self.inference.submit(TurnRequest(self._turn, tuple(history), sampling=sampling))
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
    raw = RawLoop(model, args.threads)
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
    app_path.close()
    raw.close()

    engine_tok_s = statistics.median(engine_runs)
    raw_tok_s = statistics.median(raw_runs)
    t1, t5 = statistics.median(ttft1), statistics.median(ttft5)
    print(
        json.dumps(
            {
                "model": model.name,
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
            }
        )
    )


if __name__ == "__main__":
    main()
