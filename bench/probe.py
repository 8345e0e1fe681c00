"""What crash-isolated model loading costs: a first load vetted in a child process, against an unchecked load.

    .venv/bin/python bench/probe.py [--model PATH] [--runs 3]

Without --model it uses the random-weight Gemma 4 E2B-shaped Q4_K_M GGUF that
`python -m tools.synthetic_gemma e2b --quant Q4_K_M` writes. Three
ways to load the same file with Tern's engine (PLE on disk), each in a process
of its own, alternating, with the file in the page cache:

- `unchecked`: the engine without model checks (what a trusted file gets);
- `first`: a file never seen before: validator, probe load in a child process, then the real load;
- `cached`: the same file again: the verdict comes from `model-checks.json`.

For each: load time, the PLE bytes resident after load (the PLE meter), RSS
(anonymous and file-backed) after load, decode speed on 64 tokens, and for
`first` the probe child's peak RSS. Prints one JSON object with medians and
the ratios against `unchecked`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GEN_TOKENS = 64
MODES = ("unchecked", "first", "cached")


def run_mode(mode: str, model: Path, cache: Path) -> dict[str, float]:
    """One load, then a short generation; measured in this process."""
    from app.core.engine import llama_log
    from app.core.engine.generation import SamplingParams
    from app.core.engine.gguf_info import read_gguf_info
    from app.core.engine.llama_engine import LlamaEngine
    from app.core.engine.options import LoadOptions
    from app.core.engine.probe import ModelChecks
    from app.core.engine.residency import process_memory, resident_bytes

    llama_log.install()
    info = read_gguf_info(model)
    engine = LlamaEngine(None if mode == "unchecked" else ModelChecks(cache))
    started = time.perf_counter()
    engine.load(model, LoadOptions(n_ctx=1024, n_threads=os.cpu_count() or 2))
    load_s = time.perf_counter() - started
    ple = info.ple_tensor
    ple_resident = resident_bytes(model, ple.offset, ple.n_bytes) if ple else 0
    mem = process_memory()
    tokens = engine.tokenize("<start_of_turn>user\nTell me about lighthouses.<end_of_turn>\n<start_of_turn>model\n")
    params = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=GEN_TOKENS)
    stats = engine.generate(tokens, params, threading.Event(), lambda _t: None)
    engine.unload()
    return {
        "load_s": load_s,
        "ple_resident_mb": (ple_resident or 0) / 1e6,
        "rss_anon_mb": mem.rss_anon / 1e6 if mem else -1.0,
        "rss_file_mb": mem.rss_file / 1e6 if mem else -1.0,
        "decode_tok_s": stats.decode_tok_s,
        "probe_child_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3,
    }


def default_model() -> Path:
    from app.core.paths import AppPaths

    return AppPaths.default().cache / "synthetic" / "gemma4-e2b-shaped-Q4_K_M.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.model, args.cache)))
        return
    model = args.model or default_model()
    if not model.exists():
        sys.exit(f"{model} is missing: python -m tools.synthetic_gemma e2b --quant Q4_K_M")
    with model.open("rb") as f:  # warm the page cache, so every mode reads the file from memory
        while f.read(1 << 24):
            pass
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(args.runs):
            cache = Path(scratch) / f"checks-{run}.json"  # a file never vetted, then vetted once
            for mode in MODES:
                out = subprocess.run(
                    [sys.executable, __file__, "--mode", mode, "--model", str(model), "--cache", str(cache)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = {
        mode: {key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0]}
        for mode, rows in results.items()
    }
    base = median["unchecked"]
    report: dict[str, object] = {"model": model.name, "runs": args.runs, **median}
    for mode in ("first", "cached"):
        report[f"{mode}_load_ratio"] = round(median[mode]["load_s"] / base["load_s"], 3)
        report[f"{mode}_decode_ratio"] = round(median[mode]["decode_tok_s"] / base["decode_tok_s"], 3)
        report[f"{mode}_ple_resident_ratio"] = (
            round(median[mode]["ple_resident_mb"] / base["ple_resident_mb"], 3) if base["ple_resident_mb"] else None
        )
        report[f"{mode}_rss_anon_ratio"] = round(median[mode]["rss_anon_mb"] / base["rss_anon_mb"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
