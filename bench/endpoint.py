"""Tern's local API against the app's own engine and against llama_cpp.server: decode speed, and TTFT as a chat grows.

    .venv/bin/python bench/endpoint.py [--model PATH | --e2b] [--runs 5] [--tokens 128] [--threads N]

Prints one JSON object (its last line of output). In one process, Tern's turn service loads
the model and `LocalApiService` serves it on a free loopback port, with a key. Then, run by
run, in an order that rotates so machine noise hits every path alike, figures are medians:

1. Decode tok/s of a plain completion (`/v1/completions`, streamed, greedy, `--tokens` at most),
   timed at the client from the first streamed text to the last, over the tokens the usage chunk
   counts; against the same prompt tokens and sampling (parsed from the same request body)
   through `LlamaEngine.generate` on the inference thread, as `GenerationStats.decode_tok_s`.
   Both Tern paths read the whole prompt (the KV cache is dropped before each).
2. TTFT (request sent to first streamed text, at the client) of turns 1 and 5 of an IDE-style
   chat (`/v1/chat/completions`) that resends the whole conversation each turn, the answers
   received included. A run-unique system message opens it, so turn 1 starts cold.
3. Both again for `python -m llama_cpp.server` on the same GGUF, context size, thread count and
   flash attention, as a child process on another free port. Its dependencies are not Tern's: they
   are installed once, for this benchmark only, into ~/.cache/tern-bench/llama-server-deps
   (`pip install --target`) and reach the child through PYTHONPATH. The server stays loaded but
   idle while Tern's paths run, and the other way round: two models never compute at once.

The HTTP client (http.client, one connection per request) runs in a child process of its own,
as an IDE would: in this process it would share the interpreter lock with Tern's endpoint and
inference thread, which an IDE never does. For a base model (the starter) Tern answers chat on a
question-and-answer page with worked examples, and llama_cpp.server uses its fallback chat format,
so their prompts differ in length, turn 1's most: each server's turn-5/turn-1 ratio and turn 5's
TTFT say more than their turn-1 figures side by side.

The E2B-shaped random-weight model (`--e2b`) is built first with
`.venv/bin/python -m tools.synthetic_gemma e2b --quant Q4_K_M` (several minutes, a few GB).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QTimer

from app.core.api import protocol
from app.core.engine.generation import SamplingParams
from app.core.engine.options import LoadedModel, LoadOptions, default_threads
from app.core.models.starter import ensure_starter_model
from app.core.paths import AppPaths
from app.services.documents import DocumentService
from app.services.history import HistoryService
from app.services.local_api import ApiSettings, LocalApiService
from app.services.turns import LoadRequest, TurnService

N_CTX = 4096
TURNS = 5
CHAT_TOKENS = 32
SERVER_DEPS = Path.home() / ".cache" / "tern-bench" / "llama-server-deps"
SERVER_PACKAGES = ("uvicorn", "fastapi", "sse-starlette", "starlette-context", "pydantic-settings")
SERVER_MODULES = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
E2B = AppPaths.default().cache / "synthetic" / "gemma4-e2b-shaped-Q4_K_M.gguf"

# An encyclopedia-style opening: a base model continues it as prose, well past 128 tokens.
PROMPT = (
    "Lighthouses\n\n"
    "A lighthouse is a tower, building, or other type of physical structure designed to emit light from a "
    "system of lamps and lenses and to serve as a beacon for navigational aid for maritime pilots at sea or "
    "on inland waterways. Lighthouses mark dangerous coastlines, hazardous shoals, reefs, rocks, and safe "
    "entries to harbors; they also assist in aerial navigation.\n\n"
    "History\n\n"
    "Before the development of clearly defined ports, mariners were guided by fires built on hilltops. "
    "The ancient Greeks and Romans"
)
# What a programmer asks an assistant in an IDE, one question a turn.
QUESTIONS = (
    "What does the Python function len() return for a list?",
    "How do I reverse a list in Python?",
    "What is the difference between a tuple and a list?",
    "How do I read a text file line by line in Python?",
    "What does the return statement do in a function?",
)


# The client (a child process)
def stream(base: str, path: str, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to `base + path` and read its server-sent events; times are seconds after the request was sent."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
    headers = {"Content-Type": "application/json", "User-Agent": "tern-bench/1"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    payload = json.dumps(body).encode()
    times: list[float] = []  # arrival of each chunk that carries text
    pieces: list[str] = []
    usage: dict[str, Any] | None = None
    conn.connect()  # TTFT runs from the request being sent (a loopback connect takes well under 1 ms)
    sent = time.perf_counter()
    try:
        conn.request("POST", url.path + path, payload, headers)
        response = conn.getresponse()
        if response.status != 200:
            return {"error": f"HTTP {response.status}: {response.read()[:500].decode('utf-8', 'replace')}"}
        while line := response.readline():
            now = time.perf_counter() - sent
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                return {"error": str(event["error"])[:500]}
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                piece = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                if piece:
                    times.append(now)
                    pieces.append(piece)
        ended = time.perf_counter() - sent
    finally:
        conn.close()
    return {
        "ttft_s": times[0] if times else None,
        "first_s": times[0] if times else None,
        "last_s": times[-1] if times else None,
        "end_s": ended,
        "chunks": len(times),
        "text": "".join(pieces),
        "usage": usage,
    }


def client_loop() -> None:
    """One request per line of stdin, one result per line of stdout."""
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = stream(request["base"], request["path"], request["key"], request["body"])
        except (OSError, http.client.HTTPException, ValueError) as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


class Client:
    """The client process, as seen from the benchmark."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def stream(self, base: str, path: str, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"base": base, "path": path, "key": key, "body": body}) + "\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self.proc.stdout.readline())
        if "error" in result:
            raise RuntimeError(f"{base}{path}: {result['error']}")
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


# Tern
def wait_for(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the Qt event loop until `done()` (queued signals are delivered meanwhile)."""
    loop = QEventLoop()
    timer = QTimer()
    deadline = time.monotonic() + timeout_s
    late = False

    def check() -> None:
        nonlocal late
        if done():
            loop.quit()
        elif time.monotonic() > deadline:
            late = True
            loop.quit()

    timer.timeout.connect(check)
    timer.start(5)
    loop.exec()
    timer.stop()
    if late:
        raise RuntimeError(f"Timed out after {timeout_s:.0f} s waiting for {what}")


class Tern(QObject):
    """The turn service with the model loaded, and the local API serving it."""

    def __init__(self, model: Path, threads: int, scratch: Path) -> None:
        super().__init__()
        import keyring
        from keyring.backends import fail

        # An in-memory key: nothing is written to the user's keychain.
        keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
        self.loaded: LoadedModel | None = None
        self.failure = ""
        self.turns = TurnService(scratch / "models")
        self.turns.model_loaded.connect(self._on_loaded)
        self.turns.load_failed.connect(self._on_failed)
        self.turns.start()
        self.documents = DocumentService(HistoryService(scratch / "history.db"))  # never started: no embeddings
        self.api = LocalApiService(self.turns, self.documents)
        self.api.start()
        self.turns.load(LoadRequest(model, LoadOptions(n_ctx=N_CTX, n_threads=threads)))
        self.api.configure(ApiSettings(enabled=True, port=0, require_key=True), SamplingParams())
        # The API learns the model from the same queued signal: wait until it has.
        try:
            wait_for(lambda: bool(self.failure) or (self.api.state.running and bool(self.api.model_ids())), 900, "Tern")
            if self.failure:
                raise RuntimeError(f"Tern could not load {model}: {self.failure}")
        except BaseException:
            self.close()
            raise
        assert self.loaded is not None

    def _on_loaded(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def _on_failed(self, message: str, _previous: object) -> None:
        self.failure = message or "load failed"

    @property
    def base(self) -> str:
        return self.api.state.address

    @property
    def key(self) -> str:
        return self.api.state.key

    def forget_cache(self) -> None:
        """Drop the KV cache, on the inference thread, so the next prompt is read whole."""
        self.turns.host.call(lambda: self.turns.engine_on_thread().forget_cache())

    def prompt_tokens(self, text: str) -> int:
        return len(self.turns.host.call(lambda: self.turns.engine_on_thread().tokenize(text)))

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completion `body` asks for, straight through the engine on the inference thread."""
        call = protocol.parse_completion(body, self.api.sampling_defaults())  # the sampling the endpoint would use

        def job() -> dict[str, Any]:
            engine = self.turns.engine_on_thread()
            engine.forget_cache()
            tokens = engine.tokenize(call.prompt)
            times: list[float] = []
            pieces: list[str] = []

            def on_text(piece: str) -> None:
                times.append(time.perf_counter())
                pieces.append(piece)

            stats = engine.generate(tokens, call.sampling, threading.Event(), on_text)
            return {
                "decode_tok_s": stats.decode_tok_s,
                "tokens": stats.completion_tokens,
                # As the endpoint's client times it: first text passed on to the last, over the same tokens.
                "callback_tok_s": rate(stats.completion_tokens, times[0], times[-1]) if times else 0.0,
                "text": "".join(pieces),
            }

        result: dict[str, Any] = self.turns.host.call(job)
        return result

    def close(self) -> None:
        self.api.shutdown()
        self.turns.shutdown()


# llama_cpp.server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_server_deps() -> None:
    """llama_cpp.server's own dependencies, in a folder of the benchmark's (not in Tern's environment)."""
    probe = [sys.executable, "-c", "import " + ", ".join(SERVER_MODULES)]
    env = {**os.environ, "PYTHONPATH": str(SERVER_DEPS)}
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(SERVER_DEPS), *SERVER_PACKAGES]
    subprocess.run(install, check=True, stdout=subprocess.DEVNULL)


class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port, its output in `log_path`."""

    def __init__(self, model: Path, n_ctx: int, threads: int, flash_attn: bool, log_path: Path) -> None:
        ensure_server_deps()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        args = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            *("--model", str(model), "--n_ctx", str(n_ctx), "--n_batch", "512"),
            *("--n_threads", str(threads), "--n_threads_batch", str(threads)),
            *("--flash_attn", str(flash_attn).lower(), "--host", "127.0.0.1", "--port", str(self.port)),
        ]
        env = {**os.environ, "PYTHONPATH": str(SERVER_DEPS)}
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 900
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited ({self.proc.returncode}); see {log_path}")
            try:
                with urllib.request.urlopen(self.base + "/models", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"llama_cpp.server did not answer /v1/models; see {log_path}")
            time.sleep(0.5)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def chat_format(self) -> str:
        for line in self.log_lines():
            for marker in ("Using fallback chat format: ", "Guessed chat format: "):
                if marker in line:
                    return line.split(marker, 1)[1].strip() + (" (fallback)" if "fallback" in marker else "")
            if "Using gguf chat template" in line:
                return "the GGUF's chat template"
        return "unknown"

    def context(self) -> dict[str, Any]:
        """What its log says of the context: flash attention, the SWA cache, and prefix reuse.

        `prefix_hits`: requests that kept a cached prefix; `prefix_found_not_reused`: requests
        that found one but read the whole prompt again.
        """
        lines = self.log_lines()
        return {
            "flash_attn": any("flash_attn" in line and "= enabled" in line for line in lines),
            "full_size_swa_cache": any("using full-size SWA cache" in line for line in lines),
            "prefix_hits": sum("prefix-match hit" in line for line in lines),
            "prefix_found_not_reused": sum("prefix-match found" in line for line in lines),
        }

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# Measurements
def rate(tokens: int, first: float, last: float) -> float:
    """Tokens after the first, per second."""
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def completion_body(tokens: int) -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "max_tokens": tokens,
        "temperature": 0,
        "repeat_penalty": 1.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def decode_over_http(client: Client, base: str, key: str | None, tokens: int) -> dict[str, Any]:
    """Client-side decode rate of a streamed completion (usage's token count when given, else one per chunk)."""
    r = client.stream(base, "/completions", key, completion_body(tokens))
    usage = r["usage"] or {}
    n = int(usage.get("completion_tokens", r["chunks"]))
    return {
        "decode_tok_s": rate(n, r["first_s"], r["last_s"]) if r["chunks"] else 0.0,
        "tokens": n,
        "chunks": r["chunks"],
        "tokens_from": "usage" if "completion_tokens" in usage else "chunks",
        "text": r["text"],
    }


def conversation(client: Client, base: str, key: str | None) -> list[dict[str, Any]]:
    """TURNS turns of one chat, each resending the conversation so far; a fresh nonce makes turn 1 cold."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": f"Session {secrets.token_hex(6)}. Answer questions about Python code briefly."}
    ]
    turns = []
    for question in QUESTIONS[:TURNS]:
        messages.append({"role": "user", "content": question})
        body = {
            "messages": messages,
            "max_tokens": CHAT_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        r = client.stream(base, "/chat/completions", key, body)
        usage = r["usage"] or {}
        turns.append(
            {
                # With no text at all, the answer's end stands in for its first text.
                "ttft_ms": 1000 * (r["ttft_s"] if r["ttft_s"] is not None else r["end_s"]),
                "empty": not r["chunks"],
                "prompt_tokens": usage.get("prompt_tokens"),
                "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            }
        )
        messages.append({"role": "assistant", "content": r["text"]})
    return turns


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


class Series:
    """One path's figures, run by run."""

    def __init__(self) -> None:
        self.decode: list[float] = []
        self.tokens: list[int] = []
        self.tokens_from: set[str] = set()  # "usage" (the usage chunk's count), "chunks" (one per chunk), "engine"
        self.texts: list[str] = []  # the greedy text of each run
        self.ttft: list[list[float]] = []  # per run, turns 1..TURNS
        self.empty_answers = 0
        self.cached5: list[Any] = []
        self.prompt5: list[Any] = []

    def add_turns(self, turns: list[dict[str, Any]]) -> None:
        self.ttft.append([t["ttft_ms"] for t in turns])
        self.empty_answers += sum(t["empty"] for t in turns)
        self.cached5.append(turns[-1]["cached_tokens"])
        self.prompt5.append(turns[-1]["prompt_tokens"])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decode_tok_s": median(self.decode),
            "decode_tok_s_runs": [round(x, 2) for x in self.decode],
            "tokens_decoded_runs": self.tokens,
            "tokens_counted_from": sorted(self.tokens_from),
        }
        if self.ttft:
            t1 = [run[0] for run in self.ttft]
            t5 = [run[-1] for run in self.ttft]
            out |= {
                "ttft_turn1_ms": median(t1),
                "ttft_turn5_ms": median(t5),
                "ttft_turn5_over_turn1": ratio(median(t5), median(t1)),
                "ttft_turn1_ms_runs": [round(x, 1) for x in t1],
                "ttft_turn5_ms_runs": [round(x, 1) for x in t5],
                "ttft_by_turn_ms": [median([run[i] for run in self.ttft]) for i in range(TURNS)],
                "turn5_prompt_tokens_runs": self.prompt5,
                "turn5_cached_tokens_runs": self.cached5,
                "chat_answers_without_text": self.empty_answers,
            }
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="GGUF to measure (default: the starter model)")
    parser.add_argument("--e2b", action="store_true", help=f"the E2B-shaped synthetic model, {E2B}")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens of the decode measurement")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # the HTTP client's process
    args = parser.parse_args()
    if args.client:
        client_loop()
        return
    app = QCoreApplication.instance() or QCoreApplication([])  # noqa: F841 - needed for signals
    scratch = Path(tempfile.mkdtemp(prefix="tern-bench-endpoint-"))
    model: Path = E2B if args.e2b else args.model or ensure_starter_model(scratch / "models")
    if not model.exists():
        sys.exit(f"{model} is missing (for --e2b: .venv/bin/python -m tools.synthetic_gemma e2b --quant Q4_K_M)")

    endpoint, in_process, other = Series(), Series(), Series()
    callback_rates: list[float] = []
    with contextlib.ExitStack() as started:  # whatever started is closed, last first, even after a failure
        tern = Tern(model, args.threads, scratch)
        started.callback(tern.close)
        loaded = tern.loaded
        assert loaded is not None
        server_log = scratch / "llama_cpp_server.log"
        server = LlamaServer(model, loaded.n_ctx, loaded.n_threads, loaded.flash_attn, server_log)
        started.callback(server.close)
        client = Client()
        started.callback(client.close)
        prompt_tokens = tern.prompt_tokens(PROMPT)
        for run in range(args.runs):
            paths = [endpoint, in_process, other]
            for series in paths[run % 3 :] + paths[: run % 3]:  # each path goes first in turn
                if series is endpoint:
                    tern.forget_cache()
                    d = decode_over_http(client, tern.base, tern.key, args.tokens)
                elif series is in_process:
                    d = tern.generate(completion_body(args.tokens)) | {"tokens_from": "engine"}
                    callback_rates.append(d["callback_tok_s"])
                else:
                    d = decode_over_http(client, server.base, None, args.tokens)
                series.decode.append(d["decode_tok_s"])
                series.tokens.append(d["tokens"])
                series.tokens_from.add(d["tokens_from"])
                series.texts.append(d["text"])
            if run % 2 == 0:
                endpoint.add_turns(conversation(client, tern.base, tern.key))
                other.add_turns(conversation(client, server.base, None))
            else:
                other.add_turns(conversation(client, server.base, None))
                endpoint.add_turns(conversation(client, tern.base, tern.key))
        server_format = server.chat_format()
        server_context = server.context()
    shutil.rmtree(scratch, ignore_errors=True)  # kept after a failure: the server's log is there
    same_text = {
        "endpoint": endpoint.texts == in_process.texts,
        "llama_cpp_server": other.texts == in_process.texts,
    }

    e, i, s = endpoint.summary(), in_process.summary(), other.summary()
    i["callback_tok_s"] = median(callback_rates)
    i["callback_tok_s_runs"] = [round(x, 2) for x in callback_rates]
    e["chat_format"] = f"Tern's '{loaded.template_name}' prompt"
    s |= {"chat_format": server_format, **server_context}
    ratios = {
        "endpoint_decode_vs_in_process": ratio(e["decode_tok_s"], i["decode_tok_s"]),
        "endpoint_turn5_vs_turn1": e["ttft_turn5_over_turn1"],
        "server_turn5_vs_turn1": s["ttft_turn5_over_turn1"],
        "endpoint_decode_vs_server": ratio(e["decode_tok_s"], s["decode_tok_s"]),
        "endpoint_turn5_ttft_vs_server": ratio(e["ttft_turn5_ms"], s["ttft_turn5_ms"]),
    }
    goals = {
        "endpoint_decode_at_least_0.95x_in_process": (ratios["endpoint_decode_vs_in_process"] or 0) >= 0.95,
        "endpoint_turn5_ttft_at_most_1.3x_turn1": (ratios["endpoint_turn5_vs_turn1"] or 99) <= 1.3,
        "endpoint_decode_at_least_server": e["decode_tok_s"] >= s["decode_tok_s"],
        "endpoint_turn5_ttft_at_most_server": e["ttft_turn5_ms"] <= s["ttft_turn5_ms"],
    }
    print(
        json.dumps(
            {
                "model": model.name,
                "n_ctx": loaded.n_ctx,
                "threads": loaded.n_threads,
                "flash_attn": loaded.flash_attn,
                "runs": args.runs,
                "max_tokens": args.tokens,
                "decode_prompt_tokens": prompt_tokens,
                "chat_max_tokens": CHAT_TOKENS,
                "same_greedy_text_as_in_process": same_text,
                "endpoint": e,
                "in_process": i,
                "llama_cpp_server": s,
                "ratios": ratios,
                "goals": goals,
            }
        )
    )


if __name__ == "__main__":
    main()
