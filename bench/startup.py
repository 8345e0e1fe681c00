"""Start-up and decode speed of the frozen bundle against the developer venv, in one run.

    .venv/bin/python bench/startup.py [--bundle build/bundle/dist/Tern] [--runs 5]

Each run execs `Tern --self-test` (the bundle) or `.venv/bin/tern --self-test`
from a clean environment, and takes the times from exec to the window's first
paint and to the starter model loaded, and the decode speed of the self-test's
answer. Both keep a profile of their own across runs (the first, warm-up run
assembles the starter model and is not counted), so the page cache is warm.
Runs alternate between the two. Prints one JSON object with medians and the
bundle/venv ratios. The bundle's llama.cpp is the portable build (CPU variant
chosen at run time); the venv's is compiled for this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(command: list[str], home: Path) -> dict[str, float]:
    """One self-test; times are seconds from exec."""
    env = ["env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "QT_QPA_PLATFORM=offscreen"]
    started = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux, so the child's readings compare
    result = subprocess.run([*env, *command, "--self-test"], capture_output=True, text=True, timeout=600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{command[0]} printed no report: {result.stderr[-2000:]}")
    report = json.loads(lines[-1])
    if not report.get("ok"):
        raise RuntimeError(f"{command[0]} self-test failed: {report.get('error')}")
    return {
        "window_shown_s": report["window_shown_at"] - started,
        "model_loaded_s": report["model_loaded_at"] - started,
        "decode_tok_s": report["decode_tok_s"],
        "cpu_backend": report["cpu_backend"],
    }


def main() -> None:
    """Measure both, alternating, and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle" / "dist" / "Tern")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commands = {"bundle": [str(args.bundle.resolve() / "Tern")], "venv": [str(ROOT / ".venv" / "bin" / "tern")]}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="tern-bench-") as scratch:
        homes = {name: Path(scratch) / name for name in commands}
        for name, command in commands.items():
            homes[name].mkdir()
            run_once(command, homes[name])  # warm-up: assembles the starter model, fills the page cache
        for _ in range(args.runs):
            for name, command in commands.items():
                samples[name].append(run_once(command, homes[name]))

    def median(name: str, key: str) -> float:
        return round(statistics.median(s[key] for s in samples[name]), 3)

    result: dict[str, object] = {"runs": args.runs}
    for name in commands:
        for key in ("window_shown_s", "model_loaded_s", "decode_tok_s"):
            result[f"{name}_{key}"] = median(name, key)
        result[f"{name}_cpu_backend"] = samples[name][0]["cpu_backend"]
    result["window_shown_ratio_bundle_vs_venv"] = round(
        median("bundle", "window_shown_s") / median("venv", "window_shown_s"), 3
    )
    result["model_loaded_ratio_bundle_vs_venv"] = round(
        median("bundle", "model_loaded_s") / median("venv", "model_loaded_s"), 3
    )
    result["decode_ratio_portable_vs_native"] = round(
        median("bundle", "decode_tok_s") / median("venv", "decode_tok_s"), 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
