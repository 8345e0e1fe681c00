"""Random-weight Gemma 4 / Gemma 3n GGUFs with the real tensor names and shapes.

For tests (tiny models, a few MB) and benchmarks (full E2B/E4B shapes). Shapes
with `real_vocab` (tiny-gemma4-real, e2b, e4b) carry Gemma 4's own tokenizer and
chat template, taken from the vocabulary GGUF in llama.cpp's sources
(tools/fetch_gemma4_reference.py). The others copy the starter Gemma 3 model's
tokenizer, so real text tokenizes; a tiny model keeps only the first `vocab`
entries, which still include every special token and the byte-fallback pieces. Weights come from one pool of
N(0, 0.02) values sliced at random offsets: random enough for llama.cpp to
compute on, and fast to write at full size.

    python -m tools.synthetic_gemma e2b --quant Q8_0 Q4_K_M --out ~/.cache/tern/synthetic
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType

from app.core.engine.gguf_info import read_array, read_gguf_info, read_metadata
from tools import fetch_gemma4_reference

_POOL_SIZE = 1 << 24
_CHUNK = 1 << 23  # values per write


@dataclass(frozen=True)
class GemmaShape:
    """Hyper-parameters of a Gemma 4 or Gemma 3n text model."""

    arch: str  # "gemma4" or "gemma3n"
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int  # full-attention layers
    head_dim_swa: int  # sliding-window layers
    n_ff: int
    n_ple: int  # per-layer embedding width (0: no PLE, as in Gemma 4 26B/31B)
    vocab: int
    shared_kv_layers: int = 0  # the last N layers reuse earlier layers' KV cache
    double_wide_shared_ffn: bool = False  # Gemma 4 E-models: KV-shared layers get 2·n_ff
    sliding_window: int = 512
    full_attention_every: int = 5  # every 5th layer is full attention, the rest sliding-window
    context_length: int = 32768
    rope_partial: float = 1.0  # Gemma 4 E-models rotate a quarter of a full layer's head ("proportional")
    real_vocab: bool = False  # Gemma 4's own tokenizer and chat template (tools/fetch_gemma4_reference.py)

    def is_swa(self, layer: int) -> bool:
        """Sliding-window layer?"""
        return layer % self.full_attention_every != self.full_attention_every - 1

    def layer_head_dim(self, layer: int) -> int:
        """Head size of a layer."""
        return self.head_dim_swa if self.is_swa(layer) else self.head_dim

    def has_kv(self, layer: int) -> bool:
        """Whether the layer computes its own K/V (False for KV-shared layers)."""
        return layer < self.n_layer - self.shared_kv_layers

    def layer_ff(self, layer: int) -> int:
        """Feed-forward width of a layer."""
        return 2 * self.n_ff if self.double_wide_shared_ffn and not self.has_kv(layer) else self.n_ff


# Tiny shapes for tests. Gemma 3n hard-codes 20 KV layers and a PLE width of
# 256, so 22 layers are needed for KV sharing.
TINY_GEMMA4 = GemmaShape(
    "gemma4",
    "tiny-gemma4",
    64,
    10,
    2,
    1,
    32,
    32,
    128,
    32,
    16384,
    shared_kv_layers=5,
    sliding_window=128,
    context_length=4096,
)
TINY_GEMMA4_NO_PLE = replace(TINY_GEMMA4, name="tiny-gemma4-no-ple", n_ple=0)
# Speaks real Gemma 4: its tokenizer needs all 262,144 rows, so the PLE is narrow to keep the file small (~60 MB).
TINY_GEMMA4_REAL = replace(TINY_GEMMA4, name="tiny-gemma4-real", n_ple=4, vocab=262144, real_vocab=True)
TINY_GEMMA3N = GemmaShape(
    "gemma3n",
    "tiny-gemma3n",
    64,
    22,
    2,
    1,
    32,
    32,
    128,
    256,
    1024,
    shared_kv_layers=2,
    sliding_window=128,
    context_length=4096,
)
# Full-size shapes, from the published conversion configs (transformers'
# convert_gemma4_weights.py variants): E2B 35 layers with every 5th full-attention,
# 20 KV-shared layers with double-wide MLPs; E4B 42 layers, every 6th full, 18 shared.
GEMMA4_E2B = GemmaShape(
    "gemma4",
    "gemma4-e2b-shaped",
    1536,
    35,
    8,
    1,
    512,
    256,
    6144,
    256,
    262144,
    shared_kv_layers=20,
    double_wide_shared_ffn=True,
    context_length=131072,
    rope_partial=0.25,
    real_vocab=True,
)
GEMMA4_E4B = GemmaShape(
    "gemma4",
    "gemma4-e4b-shaped",
    2560,
    42,
    8,
    2,
    512,
    256,
    10240,
    256,
    262144,
    shared_kv_layers=18,
    full_attention_every=6,
    context_length=131072,
    rope_partial=0.25,
    real_vocab=True,
)
PRESETS = {
    "tiny-gemma4": TINY_GEMMA4,
    "tiny-gemma4-no-ple": TINY_GEMMA4_NO_PLE,
    "tiny-gemma4-real": TINY_GEMMA4_REAL,
    "tiny-gemma3n": TINY_GEMMA3N,
    "e2b": GEMMA4_E2B,
    "e4b": GEMMA4_E4B,
}


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order (slowest dimension first)
    fill: str = "random"  # "random" (f16), "ones" (f32), or "rope:N" (f32: N ones, then 1e30 = not rotated)

    @property
    def dtype(self) -> type[np.generic]:
        return np.float16 if self.fill == "random" else np.float32

    @property
    def n_values(self) -> int:
        return math.prod(self.shape)


def _gemma4_tensors(s: GemmaShape) -> list[_Tensor]:
    e, ple = s.n_embd, s.n_ple * s.n_layer
    out = [_Tensor("token_embd.weight", (s.vocab, e))]
    if s.n_ple:
        out += [
            _Tensor("per_layer_token_embd.weight", (s.vocab, ple)),
            _Tensor("per_layer_model_proj.weight", (ple, e)),
            _Tensor("per_layer_proj_norm.weight", (s.n_ple,), "ones"),
        ]
    rotated = int(s.head_dim // 2 * s.rope_partial)
    out += [
        _Tensor("output_norm.weight", (e,), "ones"),
        _Tensor("rope_freqs.weight", (s.head_dim // 2,), f"rope:{rotated}"),
    ]
    for i in range(s.n_layer):
        d, ff, b = s.layer_head_dim(i), s.layer_ff(i), f"blk.{i}."
        out += [_Tensor(b + "attn_norm.weight", (e,), "ones"), _Tensor(b + "attn_q.weight", (d * s.n_head, e))]
        if s.has_kv(i):
            out += [
                _Tensor(b + "attn_k.weight", (d * s.n_head_kv, e)),
                _Tensor(b + "attn_v.weight", (d * s.n_head_kv, e)),
                _Tensor(b + "attn_k_norm.weight", (d,), "ones"),
            ]
        out += [
            _Tensor(b + "attn_output.weight", (e, d * s.n_head)),
            _Tensor(b + "attn_q_norm.weight", (d,), "ones"),
            _Tensor(b + "post_attention_norm.weight", (e,), "ones"),
            _Tensor(b + "ffn_norm.weight", (e,), "ones"),
            _Tensor(b + "ffn_gate.weight", (ff, e)),
            _Tensor(b + "ffn_up.weight", (ff, e)),
            _Tensor(b + "ffn_down.weight", (e, ff)),
            _Tensor(b + "post_ffw_norm.weight", (e,), "ones"),
        ]
        if s.n_ple:
            out += [
                _Tensor(b + "inp_gate.weight", (s.n_ple, e)),
                _Tensor(b + "proj.weight", (e, s.n_ple)),
                _Tensor(b + "post_norm.weight", (e,), "ones"),
            ]
        out.append(_Tensor(b + "layer_output_scale.weight", (1,), "ones"))
    return out


def _gemma3n_tensors(s: GemmaShape) -> list[_Tensor]:
    e, p, a, r = s.n_embd, 256, 4, 64  # PLE width, altup inputs, laurel rank: fixed by llama.cpp
    ple = p * s.n_layer
    out = [
        _Tensor("token_embd.weight", (s.vocab, e)),
        _Tensor("per_layer_token_embd.weight", (s.vocab, ple)),
        _Tensor("per_layer_model_proj.weight", (ple, e)),
        _Tensor("per_layer_proj_norm.weight", (p,), "ones"),
        _Tensor("altup_proj.weight", (a - 1, e, e)),
        _Tensor("altup_unembd_proj.weight", (a - 1, e, e)),
        _Tensor("output_norm.weight", (e,), "ones"),
    ]
    for i in range(s.n_layer):
        d, b = s.head_dim, f"blk.{i}."
        out += [
            _Tensor(b + "attn_norm.weight", (e,), "ones"),
            _Tensor(b + "attn_q.weight", (d * s.n_head, e)),
            _Tensor(b + "attn_k.weight", (d * s.n_head_kv, e)),
            _Tensor(b + "attn_v.weight", (d * s.n_head_kv, e)),
            _Tensor(b + "attn_output.weight", (e, d * s.n_head)),
            _Tensor(b + "attn_q_norm.weight", (d,), "ones"),
            _Tensor(b + "attn_k_norm.weight", (d,), "ones"),
            _Tensor(b + "post_attention_norm.weight", (e,), "ones"),
            _Tensor(b + "ffn_norm.weight", (e,), "ones"),
            _Tensor(b + "ffn_gate.weight", (s.n_ff, e)),
            _Tensor(b + "ffn_up.weight", (s.n_ff, e)),
            _Tensor(b + "ffn_down.weight", (e, s.n_ff)),
            _Tensor(b + "post_ffw_norm.weight", (e,), "ones"),
            _Tensor(b + "inp_gate.weight", (p, e)),
            _Tensor(b + "proj.weight", (e, p)),
            _Tensor(b + "post_norm.weight", (e,), "ones"),
            _Tensor(b + "altup_correct_coef.weight", (a, a)),
            _Tensor(b + "altup_correct_scale.weight", (e,), "ones"),
            _Tensor(b + "altup_predict_coef.weight", (a * a, a)),
            _Tensor(b + "altup_router.weight", (a, e)),
            _Tensor(b + "altup_router_norm.weight", (e,), "ones"),
            _Tensor(b + "laurel_l.weight", (r, e)),
            _Tensor(b + "laurel_r.weight", (e, r)),
            _Tensor(b + "laurel_post_norm.weight", (e,), "ones"),
        ]
    return out


def tensors_of(shape: GemmaShape) -> list[_Tensor]:
    """Every tensor llama.cpp expects for the shape, in file order."""
    return _gemma4_tensors(shape) if shape.arch == "gemma4" else _gemma3n_tensors(shape)


def _add_metadata(w: GGUFWriter, s: GemmaShape) -> None:
    w.add_name(s.name)
    w.add_context_length(s.context_length)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length([s.layer_ff(i) for i in range(s.n_layer)])
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_key_length(s.head_dim)
    w.add_value_length(s.head_dim)
    w.add_rope_freq_base(1_000_000.0)
    w.add_rope_freq_base_swa(10_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(s.sliding_window)
    w.add_sliding_window_pattern([s.is_swa(i) for i in range(s.n_layer)])
    w.add_shared_kv_layers(s.shared_kv_layers)
    w.add_final_logit_softcapping(30.0)
    if s.arch == "gemma4":
        w.add_key_length_swa(s.head_dim_swa)
        w.add_value_length_swa(s.head_dim_swa)
        w.add_rope_dimension_count(s.head_dim)
        w.add_rope_dimension_count_swa(s.head_dim_swa)
        w.add_embedding_length_per_layer_input(s.n_ple)
    else:
        w.add_embedding_length_per_layer_input(256)
        w.add_altup_active_idx(0)
        w.add_altup_num_inputs(4)


def _add_tokenizer(w: GGUFWriter, starter: Path, vocab: int, added: Mapping[int, str]) -> None:
    info = read_gguf_info(starter)
    meta = info.metadata
    tokens = read_array(starter, meta["tokenizer.ggml.tokens"])[:vocab]
    types = read_array(starter, meta["tokenizer.ggml.token_type"])[:vocab]
    for index, text in added.items():
        tokens[index], types[index] = text, TokenType.USER_DEFINED
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(read_array(starter, meta["tokenizer.ggml.scores"])[:vocab])
    w.add_token_types(types)
    w.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(meta["tokenizer.ggml.unknown_token_id"])
    w.add_pad_token_id(meta["tokenizer.ggml.padding_token_id"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)


def _copy_tokenizer(w: GGUFWriter, vocab_file: Path, vocab: int) -> None:
    """The tokenizer (and chat template) of a vocabulary-only GGUF such as llama.cpp's ggml-vocab-gemma-4.gguf."""
    meta = read_metadata(vocab_file)
    if len(meta["tokenizer.ggml.tokens"]) != vocab:
        raise ValueError(f"{vocab_file.name} has another vocabulary size than {vocab}")
    w.add_tokenizer_model(meta["tokenizer.ggml.model"])
    w.add_token_list(read_array(vocab_file, meta["tokenizer.ggml.tokens"]))
    w.add_token_scores(read_array(vocab_file, meta["tokenizer.ggml.scores"]))
    w.add_token_types(read_array(vocab_file, meta["tokenizer.ggml.token_type"]))
    w.add_token_merges(read_array(vocab_file, meta["tokenizer.ggml.merges"]))
    w.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(meta["tokenizer.ggml.unknown_token_id"])
    w.add_pad_token_id(meta["tokenizer.ggml.padding_token_id"])
    w.add_mask_token_id(meta["tokenizer.ggml.mask_token_id"])
    w.add_add_bos_token(meta["tokenizer.ggml.add_bos_token"])
    w.add_add_space_prefix(meta["tokenizer.ggml.add_space_prefix"])
    w.add_chat_template(meta["tokenizer.chat_template"])


def _values(t: _Tensor, pool: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    remaining = t.n_values
    while remaining:
        n = min(remaining, _CHUNK)
        if t.fill == "ones":
            yield np.ones(n, dtype=np.float32)
        elif t.fill.startswith("rope:"):
            values = np.full(n, 1e30, dtype=np.float32)
            values[: int(t.fill[5:])] = 1.0
            yield values
        else:
            start = int(rng.integers(0, len(pool) - n)) if n < len(pool) else 0
            yield np.resize(pool[start:], n) if n >= len(pool) else pool[start : start + n]
        remaining -= n


def write_streamed(writer: GGUFWriter, tensors: Sequence[tuple[Iterable[np.ndarray], int]]) -> BinaryIO:
    """Write the header, the metadata and the tensor table, then each tensor's values (n_bytes of them) as
    they come, each padded: a multi-GB model is never all in memory. Returns the open file."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    out = writer.fout[0]
    writer.write_padding(out, out.tell())
    for values, n_bytes in tensors:
        for chunk in values:
            out.write(chunk.tobytes())
        writer.write_padding(out, n_bytes)
    return out


def write_gemma(
    path: Path,
    shape: GemmaShape,
    starter: Path,
    seed: int = 0,
    chat_template: str | None = None,
    added_tokens: Mapping[int, str] | None = None,
) -> Path:
    """Write a random-weight F16 GGUF of `shape` to `path` (atomically), with `chat_template` if given.

    `added_tokens` replaces vocabulary entries (by index) with tokens of that text, as a
    fine-tuned model's added tokens would.
    """
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(_POOL_SIZE, dtype=np.float32) * 0.02).astype(np.float16)
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(tmp), shape.arch)
    _add_metadata(writer, shape)
    if shape.real_vocab:
        _copy_tokenizer(writer, fetch_gemma4_reference.paths()[fetch_gemma4_reference.VOCAB], shape.vocab)
    else:
        _add_tokenizer(writer, starter, shape.vocab, added_tokens or {})
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_file_type(1)  # mostly F16
    tensors = tensors_of(shape)
    for t in tensors:
        raw = GGMLQuantizationType.F16 if t.fill == "random" else GGMLQuantizationType.F32
        writer.add_tensor_info(t.name, t.shape, np.dtype(t.dtype), t.n_values * np.dtype(t.dtype).itemsize, raw)
    out = write_streamed(writer, [(_values(t, pool, rng), t.n_values * np.dtype(t.dtype).itemsize) for t in tensors])
    out.flush()
    os.fsync(out.fileno())  # clean pages: the kernel may then drop them, as "PLE on disk" asks
    writer.close()
    os.replace(tmp, path)
    return path


QUANT_FTYPES = {"Q8_0": 7, "Q4_K_M": 15, "Q4_0": 2, "F16": 1}  # llama.h: enum llama_ftype


def quantize(src: Path, dst: Path, quant: str, threads: int = 0) -> Path:
    """Quantize with llama.cpp's own quantizer (`llama_model_quantize`)."""
    import llama_cpp.llama_cpp as llama_lib

    params = llama_lib.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    params.nthread = threads or (os.cpu_count() or 2)
    tmp = dst.with_name(dst.name + ".part")
    if llama_lib.llama_model_quantize(str(src).encode(), str(tmp).encode(), params) != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not quantize {src.name} to {quant}")
    os.replace(tmp, dst)
    return dst


def ensure_model(shape: GemmaShape, quant: str, out_dir: Path, starter: Path) -> Path:
    """The quantized synthetic model in `out_dir`, generated on first use."""
    target = out_dir / f"{shape.name}-{quant}.gguf"
    if target.exists():
        return target
    f16 = out_dir / f"{shape.name}-F16.gguf"
    if not f16.exists():
        write_gemma(f16, shape, starter)
    if quant == "F16":
        return f16
    quantize(f16, target, quant)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write presets, optionally quantized."""
    from app.core.models.starter import ensure_starter_model
    from app.core.paths import AppPaths

    parser = argparse.ArgumentParser(description="Write random-weight Gemma GGUFs with real shapes.")
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--quant", nargs="+", default=["F16"], choices=sorted(QUANT_FTYPES))
    parser.add_argument("--out", type=Path, default=AppPaths.default().cache / "synthetic")
    parser.add_argument("--keep-f16", action="store_true", help="keep the F16 intermediate file")
    args = parser.parse_args(argv)
    starter = ensure_starter_model(AppPaths.default().models)
    shape = PRESETS[args.preset]
    for quant in args.quant:
        print(ensure_model(shape, quant, args.out, starter))
    f16 = args.out / f"{shape.name}-F16.gguf"
    if not args.keep_f16 and "F16" not in args.quant and f16.exists():
        f16.unlink()


if __name__ == "__main__":
    main()
