"""Small GGUF files for tests, written with the `gguf` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter


def write_tiny_gguf(path: Path, arch: str, n_floats: int = 64, template: str | None = None) -> Path:
    """A minimal, well-formed GGUF with one F32 tensor."""
    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny test model")
    writer.add_context_length(128)
    writer.add_block_count(1)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((n_floats // 16, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
