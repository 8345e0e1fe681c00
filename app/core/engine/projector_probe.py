"""The child-process half of vetting an image projector: load it in libmtmd and encode one image.

`ModelChecks.vet_projector` (probe.py) runs `probe_projector` in its `Sandbox`,
so an abort inside libmtmd ends the child, not the app. The text model is read
with `vocab_only`: libmtmd needs its rope type and its vocabulary (to tokenize
the text around an image), not its weights. Such a model reports a width of 0,
so libmtmd skips its own width check; `ProjectorInfo.check_pairing` makes the
same comparison (the projection's output width against `embedding_length`)
before the child starts.
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import Any

PROBE_IMAGE = (64, 48)  # small: a Gemma 4 projector makes its fewest tokens (70) of it


def _said(lines: list[str]) -> str:
    """libmtmd's own words for why it failed, if it logged any."""
    errors = [ln.strip() for ln in lines if "error" in ln.lower() or "fail" in ln.lower() or "mismatch" in ln]
    return errors[-1][:300] if errors else "no reason given"


def probe_projector(model_path: str, projector_path: str, n_threads: int, n_embd: int) -> str | None:
    """In the child: load the projector for the model and encode a small image; None if it worked, else why not.

    `n_embd` is the width of the embeddings it should produce (the model's width).
    """
    os.environ["GGML_NO_BACKTRACE"] = "1"  # on an abort, ggml would otherwise attach gdb to print one
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    from app.core.engine import backends, llama_log

    backends.ensure_loaded()
    llama_log.install()
    llama_log.install_mtmd()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with llama_log.capture() as lines:
        model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        return f"llama.cpp could not read the model ({_said(lines)})"
    try:
        return _load_and_encode(mtmd, model, projector_path, n_threads, n_embd)
    finally:
        llama_cpp.llama_model_free(model)


def _load_and_encode(m: Any, model: Any, projector_path: str, n_threads: int, n_embd: int) -> str | None:
    from app.core.engine import llama_log

    ctx_params = m.mtmd_context_params_default()
    ctx_params.use_gpu = False  # the file is on trial, not the GPU driver
    ctx_params.n_threads = n_threads
    ctx_params.print_timings = False
    ctx_params.warmup = True  # as the app loads it: the warm-up graph is where shape errors surface
    with llama_log.capture() as lines:
        ctx = m.mtmd_init_from_file(projector_path.encode(), model, ctx_params)
    if not ctx:
        return f"libmtmd could not load it ({_said(lines)})"
    chunks = bitmap = None
    try:
        if not m.mtmd_support_vision(ctx):
            return "it has no image encoder"
        width, height = PROBE_IMAGE
        pixels = bytes((x * 7 + y * 13 + c * 61) % 256 for y in range(height) for x in range(width) for c in range(3))
        bitmap = m.mtmd_bitmap_init(width, height, (ctypes.c_uint8 * len(pixels)).from_buffer_copy(pixels))
        marker = m.mtmd_get_marker(ctx) or m.mtmd_default_marker()
        text = m.mtmd_input_text()
        text.text, text.text_len, text.add_special, text.parse_special = marker, len(marker), False, True
        chunks = m.mtmd_input_chunks_init()
        bitmaps = (m.mtmd_bitmap_p_ctypes * 1)(bitmap)
        with llama_log.capture() as lines:
            if m.mtmd_tokenize(ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                return f"it could not take an image ({_said(lines)})"
        images = [
            chunk
            for i in range(m.mtmd_input_chunks_size(chunks))
            if m.mtmd_input_chunk_get_type(chunk := m.mtmd_input_chunks_get(chunks, i)) != 0
        ]
        if len(images) != 1:
            return "it did not turn an image into image tokens"
        n_tokens = m.mtmd_input_chunk_get_n_tokens(images[0])
        with llama_log.capture() as lines:
            if m.mtmd_encode_chunk(ctx, images[0]) != 0:
                return f"encoding an image failed ({_said(lines)})"
        out = m.mtmd_get_output_embd(ctx)
        # NaN and infinity, or what Gemma 4's clamps make of them (±FLT_MAX): no real embedding is that large
        if not out or not all(math.isfinite(out[i]) and abs(out[i]) < 1e30 for i in range(n_tokens * n_embd)):
            return "its image encoder computes invalid numbers (its weights are damaged)"
        return None
    finally:
        if chunks is not None:
            m.mtmd_input_chunks_free(chunks)
        if bitmap is not None:
            m.mtmd_bitmap_free(bitmap)
        m.mtmd_free(ctx)
