"""Write a damaged model file for the frozen smoke test: its header is sound, but llama.cpp aborts on loading it.

    python packaging/damaged_model.py OUT.gguf

A tiny Gemma 4 (the starter's vocabulary cut to 512 tokens) whose shared-KV
layers have no earlier full-attention layer to share with: it passes every
check a header allows, then llama.cpp's GGML_ASSERT aborts the process that
loads it. The frozen app must load it first in its child process and say it
is damaged, without going down.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.models.starter import ensure_starter_model
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma

ABORTS = replace(TINY_GEMMA4, name="damaged", vocab=512, n_layer=5, shared_kv_layers=2)


def main() -> None:
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as scratch:
        write_gemma(out, ABORTS, ensure_starter_model(Path(scratch)))
    print(out)


if __name__ == "__main__":
    main()
