"""Mutated GGUFs through the app's real load path, counted. Used by tests/integration/hostile and bench/hostile.py.

    python -m tests.integration.hostile.fuzz_models COUNT SEED WORK_DIR

Writes two small synthetic Gemma models (Gemma 4 with PLE, Gemma 3n), makes
COUNT mutants of them deterministically from SEED, and hands each to
`LlamaEngine.load` with model checks on, as the app does: the GGUF validator,
then a first load in a child process, then the load in this process. Each
mutant ends as "refused" (the validator said why), "isolated" (the child
process aborted, crashed, hung or ran out of memory, and the user got a
message), "refused_by_llama" (llama.cpp declined it with an error) or
"loaded". Anything else (an exception the app does not expect) is counted as
"unexpected" with its traceback, and this process dying or hanging is the
caller's failure. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path

from app.core.engine import probe
from app.core.engine.gguf_info import GgufError
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.options import EngineError, LoadOptions
from app.core.engine.probe import ModelChecks, ModelRejectedError
from app.core.models.starter import ensure_starter_model
from tests.integration.hostile.gguf_mutations import mutations, parse
from tools.synthetic_gemma import TINY_GEMMA3N, TINY_GEMMA4, write_gemma

# 512 tokens: Gemma's control tokens and its 256 byte tokens (ids 238-493), so any text tokenizes.
MICRO_GEMMA4 = replace(TINY_GEMMA4, name="micro-gemma4", vocab=512)
MICRO_GEMMA3N = replace(TINY_GEMMA3N, name="micro-gemma3n", vocab=512)
ISOLATED = ("aborted", "crashed", "died", "was killed", "did not finish", "more memory")


def sources(work: Path) -> list[Path]:
    """The models the mutants are made from."""
    starter = ensure_starter_model(work / "models")
    return [
        write_gemma(work / "micro-gemma4.gguf", MICRO_GEMMA4, starter),
        write_gemma(work / "micro-gemma3n.gguf", MICRO_GEMMA3N, starter),
    ]


def run(count: int, seed: int, work: Path, probe_timeout_s: float = 20.0) -> dict[str, object]:
    """Load `count` mutants; the counts and the first unexpected tracebacks."""
    probe.BASE_TIMEOUT_S = probe_timeout_s  # a small model loads in well under a second
    work.mkdir(parents=True, exist_ok=True)
    parsed = [parse(p) for p in sources(work)]
    checks = ModelChecks(None, keep_child=True)  # one child for the whole run; replaced whenever it dies
    engine = LlamaEngine(checks)
    outcomes: Counter[str] = Counter()
    by_category: dict[str, Counter[str]] = {}
    unexpected: list[str] = []
    started = time.monotonic()
    target = work / "mutant.gguf"
    for category, name, data in mutations(parsed, count, seed):
        target.write_bytes(data)
        try:
            engine.load(target, LoadOptions(n_ctx=256, n_threads=1))
            outcome = "loaded"
        except GgufError:
            outcome = "refused"
        except ModelRejectedError as exc:
            outcome = "isolated" if any(word in str(exc) for word in ISOLATED) else "refused_by_llama"
        except EngineError:
            outcome = "refused_by_llama"  # passed the child, then declined here with a message
        except Exception:
            outcome = "unexpected"
            unexpected.append(f"{category}: {name}\n{traceback.format_exc()}")
        finally:
            engine.unload()
        outcomes[outcome] += 1
        by_category.setdefault(category, Counter())[outcome] += 1
    checks.close()
    return {
        "mutants": count,
        "seed": seed,
        **{key: outcomes[key] for key in ("refused", "isolated", "refused_by_llama", "loaded", "unexpected")},
        "child_restarts": checks.restarts,
        "seconds": round(time.monotonic() - started, 1),
        "by_category": {k: dict(v) for k, v in sorted(by_category.items())},
        "unexpected_tracebacks": unexpected[:5],
    }


def main() -> None:
    """Command line: COUNT SEED WORK_DIR."""
    count, seed, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(run(count, seed, work)))


if __name__ == "__main__":
    main()
