"""Memory estimates (app/core/models/fit.py) against the peak RSS of real runs.

    .venv/bin/python bench/fit.py                # E2B-shaped Q4_K_M (and E4B if cached) at 4096 and 8192 tokens
    .venv/bin/python bench/fit.py --calibrate    # the overhead constants, from the starter and tiny models

Each run is a fresh process that loads the model with Tern's engine (PLE on
disk), sends a 1,000-token prompt of real text and takes a 32-token answer;
it reports its peak RSS (VmHWM) and its RSS after the chat. `--calibrate`
also runs `tern --self-test` on the starter to measure the Qt window's share.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT_TOKENS = 1000
ANSWER_TOKENS = 32
CONTEXTS = (4096, 8192)
MIB = 1 << 20


def real_text() -> str:
    """Prose and code from this repository: real text, the same on every machine."""
    parts = [(ROOT / "README.md").read_text()]
    parts += [p.read_text() for p in sorted((ROOT / "app").rglob("*.py"))]
    return "\n\n".join(parts)


def child(model: Path, n_ctx: int, prompt_tokens: int, answer_tokens: int) -> dict[str, Any]:
    """In this process: load, chat once, report memory."""
    from app.core.engine.generation import SamplingParams
    from app.core.engine.llama_engine import LlamaEngine, LoadOptions
    from app.core.engine.residency import process_memory, resident_bytes

    engine = LlamaEngine()
    loaded = engine.load(model, LoadOptions(n_ctx=n_ctx))
    after_load = process_memory()
    tokens = engine.tokenize(real_text())[:prompt_tokens]
    params = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=answer_tokens)
    stats = engine.generate(tokens, params, threading.Event(), lambda _text: None)
    mem = process_memory()
    assert mem is not None and after_load is not None, "needs /proc (Linux)"
    ple = loaded.info.ple_tensor
    ple_resident = resident_bytes(model, ple.offset, ple.n_bytes) if ple else 0
    return {
        "n_ctx": loaded.n_ctx,
        "tokens_used": stats.prompt_tokens + stats.completion_tokens,
        "peak_rss": mem.peak_rss,
        "load_peak_rss": after_load.peak_rss,
        "rss_after_chat": mem.rss_file + mem.rss_anon,
        "ple_resident": ple_resident or 0,
        "buffers": loaded.buffers,
    }


def measure(model: Path, n_ctx: int, prompt_tokens: int = PROMPT_TOKENS, answer_tokens: int = ANSWER_TOKENS) -> Any:
    """`child` in a fresh process, so nothing of this one counts."""
    args = [sys.executable, __file__, "--child", str(model), str(n_ctx), str(prompt_tokens), str(answer_tokens)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def app_peak_rss(model: Path) -> tuple[int, dict[str, Any]]:
    """Peak RSS of `tern --self-test --model MODEL` (the real window, headless) and its report."""
    from tests.conftest import user_env

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **user_env(Path(home)), "QT_QPA_PLATFORM": "offscreen"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run(
            [sys.executable, "-m", "app", "--self-test", "--model", str(model)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: run this before any larger child.
    assert peak > before, "a larger child ran earlier; run the app first"
    return peak * 1024, json.loads(out.stdout.strip().splitlines()[-1])


def compare(model: Path, n_ctx: int) -> dict[str, Any]:
    """Estimate (engine only, for the tokens the chat used) vs a measured run."""
    from app.core.engine.gguf_info import read_gguf_info
    from app.core.models.fit import estimate_memory

    run = measure(model, n_ctx)
    info = read_gguf_info(model)
    est = estimate_memory(info, n_ctx, tokens=run["tokens_used"], include_ui=False)
    full = estimate_memory(info, n_ctx, include_ui=False)
    return {
        "n_ctx": n_ctx,
        "tokens_used": run["tokens_used"],
        "estimate_mb": round(est.total_ram / 1e6, 1),
        "estimate_full_context_mb": round(full.total_ram / 1e6, 1),
        "peak_rss_mb": round(run["peak_rss"] / 1e6, 1),
        "rss_after_chat_mb": round(run["rss_after_chat"] / 1e6, 1),
        "ratio_to_peak": round(est.total_ram / run["peak_rss"], 3),
        "ratio_to_after_chat": round(est.total_ram / run["rss_after_chat"], 3),
        "peak_estimate_mb": round(est.peak_ram / 1e6, 1),  # load included
        "ratio_peak_estimate_to_peak": round(est.peak_ram / run["peak_rss"], 3),
        "parts_mb": {label: round(n / 1e6, 1) for label, n in est.breakdown()},
        "ple_paged_measured_mb": round(run["ple_resident"] / 1e6, 1),
        "buffers_mib": run["buffers"],
    }


def calibrate() -> dict[str, Any]:
    """Overhead = peak RSS less the estimated model parts, on models other than E2B/E4B."""
    from app.core.engine.gguf_info import read_gguf_info
    from app.core.models.fit import ModelShape, estimate_memory
    from app.core.models.starter import ensure_starter_model
    from tools.synthetic_gemma import TINY_GEMMA3N, TINY_GEMMA4, write_gemma

    work = Path(tempfile.mkdtemp(prefix="tern-fit-"))
    starter = ensure_starter_model(work)
    app_peak, app_report = app_peak_rss(starter)
    models = {"starter": starter}
    for shape in (TINY_GEMMA4, TINY_GEMMA3N):
        models[shape.name] = write_gemma(work / f"{shape.name}.gguf", shape, starter)
    rows = []
    for name, path in models.items():
        info = read_gguf_info(path)
        vocab = ModelShape.from_info(info).n_vocab
        for n_ctx in CONTEXTS:
            run = measure(path, n_ctx)
            est = estimate_memory(info, n_ctx, tokens=run["tokens_used"], include_ui=False)
            parts = est.total_ram - est.overhead
            rows.append({"model": name, "n_ctx": n_ctx, "vocab": vocab, "residual": run["peak_rss"] - parts})
    # Least squares: residual = base + per_token * vocab.
    n = len(rows)
    mx = sum(r["vocab"] for r in rows) / n
    my = sum(r["residual"] for r in rows) / n
    slope = sum((r["vocab"] - mx) * (r["residual"] - my) for r in rows) / sum((r["vocab"] - mx) ** 2 for r in rows)
    base = my - slope * mx
    tokens = int(app_report.get("prompt_tokens", 0)) + int(app_report.get("tokens", 0))
    engine_only = measure(starter, 8192, int(app_report.get("prompt_tokens", 25)), int(app_report.get("tokens", 0)))
    return {
        "rows": [{**r, "residual_mib": round(r.pop("residual") / MIB, 1)} for r in rows],
        "runtime_overhead_mib": round(base / MIB, 1),
        "overhead_per_vocab_token": round(slope, 1),
        "app_self_test": {"peak_rss_mib": round(app_peak / MIB, 1), "tokens": tokens, **app_report},
        "engine_only_same_chat_peak_mib": round(engine_only["peak_rss"] / MIB, 1),
        "ui_overhead_mib": round((app_peak - engine_only["peak_rss"]) / MIB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "N_CTX", "PROMPT", "ANSWER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, n_ctx, prompt, answer = args.child
        print(json.dumps(child(Path(model), int(n_ctx), int(prompt), int(answer))))
        return
    if args.calibrate:
        print(json.dumps(calibrate()))
        return

    from app.core.models.starter import ensure_starter_model
    from app.core.paths import AppPaths
    from tools.synthetic_gemma import GEMMA4_E2B, GEMMA4_E4B, ensure_model

    paths = AppPaths.default()
    cache = paths.cache / "synthetic"
    models = [ensure_model(GEMMA4_E2B, "Q4_K_M", cache, ensure_starter_model(paths.models))]
    e4b = cache / f"{GEMMA4_E4B.name}-Q4_K_M.gguf"
    if e4b.exists():
        models.append(e4b)
    report = {m.name: [compare(m, n_ctx) for n_ctx in CONTEXTS] for m in models}
    print(json.dumps({"prompt_tokens": PROMPT_TOKENS, "answer_tokens": ANSWER_TOKENS, "models": report}))


if __name__ == "__main__":
    main()
