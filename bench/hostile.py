"""Hostile model files: Tern's load path against llama.cpp's own, on the same mutated GGUFs.

    .venv/bin/python bench/hostile.py [--count 10000] [--seed 20261201] [--no-baseline]

Makes COUNT mutants of two small real Gemma models (header fields,
hyper-parameters at and beyond their limits, array lengths, tensor shapes,
types and offsets, truncation anywhere, flipped bytes; see
tests/integration/hostile/gguf_mutations.py) and loads each:

- through Tern (`LlamaEngine.load` with model checks, as the app does), in a
  process of its own; that process must survive every one of them;
- as a baseline, straight into llama-cpp-python's `Llama()` (what an app gets
  without the validator and the first-load child), each in a sandbox child so
  the benchmark itself survives, counting the loads that abort or hang.

Prints one JSON object: Tern's counts (0 app crashes, 0 hangs, 0 unexpected
tracebacks is the goal) and the baseline's, which say what was prevented.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.sandbox import Sandbox, SandboxError
from tests.integration.hostile.fuzz_models import sources
from tests.integration.hostile.gguf_mutations import mutations, parse

ROOT = Path(__file__).resolve().parent.parent


def raw_load(path: str) -> str:
    """In a child: llama-cpp-python's Llama() on the file, nothing checked first."""
    import os

    os.environ["GGML_NO_BACKTRACE"] = "1"
    from llama_cpp import Llama

    try:
        Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False).close()
    except Exception as exc:  # llama-cpp-python reports a refused file as ValueError
        return type(exc).__name__
    return "loaded"


def baseline(count: int, seed: int, work: Path, timeout_s: float) -> dict[str, object]:
    """What the mutants do to a process that loads them unchecked."""
    parsed = [parse(p) for p in sources(work)]
    box = Sandbox("raw-llama")
    outcomes: Counter[str] = Counter()
    target = work / "raw.gguf"
    started = time.monotonic()
    for _category, _name, data in mutations(parsed, count, seed):
        target.write_bytes(data)
        try:
            outcomes["loaded" if box.call(raw_load, str(target), timeout=timeout_s) == "loaded" else "error"] += 1
        except SandboxError as exc:
            outcomes["hang" if exc.kind == "timeout" else "process_killed"] += 1
    box.close()
    return {**{k: outcomes[k] for k in ("loaded", "error", "process_killed", "hang")},
            "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def main() -> None:
    """Run both and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a load counts as hung")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tern-hostile-") as scratch:
        work = Path(scratch)
        command = [
            sys.executable,
            "-m",
            "tests.integration.hostile.fuzz_models",
            str(args.count),
            str(args.seed),
            str(work / "t"),
        ]
        limit = 60 + args.count * 2.0
        try:
            run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
            crashed = run.returncode != 0
            tern = json.loads(run.stdout.strip().splitlines()[-1]) if not crashed else {"stderr": run.stderr[-2000:]}
            tern["app_crashes"] = int(crashed)  # the loading process died
            tern["hangs"] = 0  # it finished within the limit
        except subprocess.TimeoutExpired:
            tern = {"app_crashes": 0, "hangs": 1}
        result: dict[str, object] = {"tern": tern}
        if not args.no_baseline:
            result["unchecked_llama_cpp"] = baseline(args.count, args.seed, work / "b", args.timeout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
