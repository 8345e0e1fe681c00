"""Memory and speed of a Gemma PLE model: llama.cpp's default load (as `Llama()` does it) vs Tern's engine.

    .venv/bin/python bench/ple.py [--quant Q8_0|Q4_K_M] [--model PATH] [--reps 3]

Without --model it uses a random-weight Gemma 4 E2B-shaped GGUF (generated once
into the cache folder). Each mode runs in its own process, after the page
cache is dropped (`/proc/sys/vm/drop_caches` as root; otherwise the file's
pages are evicted with posix_fadvise, and the JSON says which). The prompt is
1,000 tokens of real text, then 128 tokens are generated; prefill and decode
speeds are medians over --reps rounds, each on a fresh prompt prefix so no KV
cache is reused. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT_TOKENS = 1000
GEN_TOKENS = 128
N_CTX = 4096


def drop_page_cache(path: Path) -> str:
    """Make the next load cold; returns how."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        from app.core.engine.residency import evict_from_page_cache

        evict_from_page_cache(path, 0, path.stat().st_size)
        return "posix_fadvise"


def real_text() -> str:
    """Prose and code from this repository: real text, the same on every machine."""
    parts = [(ROOT / "README.md").read_text()]
    parts += [p.read_text() for p in sorted((ROOT / "app").rglob("*.py"))]
    return "\n\n".join(parts)


def run_mode(mode: str, model: Path, reps: int) -> dict[str, float]:
    """One process, one mode: load, then `reps` rounds of prompt + generation."""
    from app.core.engine import llama_log
    from app.core.engine.gguf_info import read_gguf_info
    from app.core.engine.residency import process_memory, resident_bytes

    llama_log.install()
    info = read_gguf_info(model)
    ple = info.ple_tensor

    def ple_resident() -> float:
        if ple is None:
            return 0.0
        value = resident_bytes(model, ple.offset, ple.n_bytes)
        return -1.0 if value is None else value / 1e6

    started = time.perf_counter()
    if mode == "default":
        import llama_cpp

        llm = llama_cpp.Llama(str(model), n_ctx=N_CTX, n_threads=os.cpu_count(), verbose=False)
        tokenize = llm.tokenize

        def generate(tokens: list[int]) -> tuple[float, float]:
            llm.reset()
            t0 = time.perf_counter()
            first = last = t0
            n = 0
            for _token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
                last = time.perf_counter()
                if n == 0:
                    first = last
                n += 1
                if n == GEN_TOKENS:
                    break
            return len(tokens) / (first - t0), (n - 1) / (last - first)

    else:
        from app.core.engine.generation import SamplingParams
        from app.core.engine.llama_engine import LlamaEngine, LoadOptions

        engine = LlamaEngine()
        engine.load(model, LoadOptions(n_ctx=N_CTX, n_threads=os.cpu_count() or 2))

        def tokenize(data: bytes) -> list[int]:
            return engine.tokenize(data.decode())

        def generate(tokens: list[int]) -> tuple[float, float]:
            params = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=GEN_TOKENS)
            stats = engine.generate(tokens, params, threading.Event(), lambda _t: None)
            return stats.prompt_tokens / (stats.ttft_ms / 1000), stats.decode_tok_s

    load_s = time.perf_counter() - started
    after_load = ple_resident()
    text = real_text().encode()
    prefill, decode = [], []
    after_chat = 0.0
    for rep in range(reps):
        tokens = tokenize(f"Round {rep}.\n".encode() + text)[:PROMPT_TOKENS]
        p, d = generate(tokens)
        prefill.append(p)
        decode.append(d)
        if rep == 0:
            after_chat = ple_resident()
    mem = process_memory()
    return {
        "load_s": round(load_s, 2),
        "ple_mb": round(info.ple_bytes / 1e6, 1),
        "ple_resident_after_load_mb": round(after_load, 1),
        "ple_resident_after_chat_mb": round(after_chat, 1),
        "peak_rss_mb": round(mem.peak_rss / 1e6, 1) if mem else -1,
        "rss_file_mb": round(mem.rss_file / 1e6, 1) if mem else -1,
        "rss_anon_mb": round(mem.rss_anon / 1e6, 1) if mem else -1,
        "prefill_tok_s": round(statistics.median(prefill), 2),
        "decode_tok_s": round(statistics.median(decode), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--quant", default="Q8_0", choices=["Q8_0", "Q4_K_M"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mode", choices=["default", "engine"], help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.model, args.reps)))
        return

    from app.core.models.starter import ensure_starter_model
    from app.core.paths import AppPaths
    from tools.synthetic_gemma import GEMMA4_E2B, ensure_model

    paths = AppPaths.default()
    model = args.model or ensure_model(
        GEMMA4_E2B, args.quant, paths.cache / "synthetic", ensure_starter_model(paths.models)
    )
    rows, cache = {}, ""
    for mode in ("default", "engine"):
        cache = drop_page_cache(model)
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--model", str(model), "--reps", str(args.reps)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b = rows["default"], rows["engine"]
    print(
        json.dumps(
            {
                "model": model.name,
                "cold_cache": cache,
                "threads": os.cpu_count(),
                "prompt_tokens": PROMPT_TOKENS,
                "generated_tokens": GEN_TOKENS,
                "reps": args.reps,
                "default": a,
                "engine": b,
                "ratios": {
                    "peak_rss": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
                    "decode": round(b["decode_tok_s"] / a["decode_tok_s"], 3),
                    "prefill": round(b["prefill_tok_s"] / a["prefill_tok_s"], 3),
                    "load": round(b["load_s"] / a["load_s"], 3),
                    "ple_resident_after_chat_share": round(b["ple_resident_after_chat_mb"] / b["ple_mb"], 4)
                    if b["ple_mb"]
                    else 0.0,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
