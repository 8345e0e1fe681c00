"""Images for the model: a projector loaded in libmtmd, and each image read into the text model's own context.

libmtmd turns an image into a run of embeddings (an "image chunk") that the
text model reads at consecutive positions, between the wrapper tokens the
model was trained with (Gemma 4's `<|image>` … `<image|>`). Tern keeps the
whole conversation in one KV cache, so an image is read into that same cache
at its place in the prompt: a follow-up question finds it there, and only the
new text is read.

In a prompt's token list an image's positions hold a *sentinel*: one negative
id, the same at each of its positions, derived from the image's key, the
detail it was read at and the projector. A real token id is never negative,
so the usual prefix match against the cache tells whether an image is already
in it: same sentinel at the same place after the same tokens means the same
image read the same way. The engine reads the images of a prompt here
(`read_images`), then hands the token list to the usual generation, which
finds everything up to the last image cached and reads the text after it.

Images are decoded and resized in a child process (app/core/images.py); this
module only sees their RGB pixels, fetched through a loader the turn offers
for each image key, and only when the image is not already prepared here.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.core.chat.message import IMAGE_PLACEHOLDER
from app.core.engine.options import EngineError
from app.core.engine.projector_info import ProjectorInfo

log = logging.getLogger("tern.vision")
PIXELS_SIDE = 2048  # longest side of an image handed over (Gemma 4 at 1,120 tokens needs ~1,900); libmtmd resizes it
MAX_PREPARED = 8  # images kept ready to read (their preprocessed pixels); more are prepared again when needed


@dataclass(frozen=True)
class ImageTiming:
    """How the last image read went: its tokens, the projector's encoding, and the text model reading them."""

    tokens: int
    encode_ms: float
    decode_ms: float


class ImagePixels(Protocol):
    """8-bit RGB pixels, row by row (app.core.images.Pixels)."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def rgb(self) -> bytes: ...


PixelsLoader = Callable[[], ImagePixels]


@dataclass
class _Prepared:
    """One image as the model reads it: wrapper tokens around a chunk of `n_tokens` positions."""

    key: str
    sentinel: int
    before: list[int]
    chunk: Any  # an owned mtmd_input_chunk
    n_tokens: int
    after: list[int]

    @property
    def tokens(self) -> list[int]:
        return [*self.before, *([self.sentinel] * self.n_tokens), *self.after]


class Vision:
    """A projector loaded for the current model, and the images prepared for it. One owner, like the engine."""

    def __init__(self, llm: Any, info: ProjectorInfo, n_threads: int, max_tokens: int, use_gpu: bool) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        from app.core.engine import llama_log

        llama_log.install_mtmd()
        self._mtmd = mtmd
        self._llm = llm
        self.info = info
        self.path = projector = info.path
        self.max_tokens = max_tokens
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.warmup = True  # the compute buffer for the largest image is allocated now, not mid-turn
        if max_tokens > 0:
            params.image_max_tokens = max_tokens
        with llama_log.capture() as lines:
            ctx = mtmd.mtmd_init_from_file(str(projector).encode(), llm.model, params)
        if not ctx:
            said = [ln.strip() for ln in lines if "error" in ln.lower() or "mismatch" in ln.lower()]
            raise EngineError(
                f"llama.cpp could not load the image projector '{projector.name}'"
                + (f": {said[-1][:300]}" if said else ".")
            )
        self._ctx = ctx
        if not mtmd.mtmd_support_vision(ctx) or mtmd.mtmd_decode_use_mrope(ctx):
            self.close()
            raise EngineError(f"'{projector.name}' is not an image projector Tern can use with this model.")
        self.marker = (mtmd.mtmd_get_marker(ctx) or mtmd.mtmd_default_marker()).decode()
        stat = projector.stat()
        self._identity = f"{projector.name}|{stat.st_size}|{stat.st_mtime_ns}|{max_tokens}"
        self._prepared: OrderedDict[str, _Prepared] = OrderedDict()  # by image key, least recently used first
        self._by_sentinel: dict[int, _Prepared] = {}
        self._loaders: dict[str, PixelsLoader] = {}
        self.encoded = 0  # images encoded so far (a follow-up about the same image encodes none)
        self.last_read: ImageTiming | None = None
        self.buffers = llama_log.buffer_sizes(lines)  # ("CPU compute", MiB) as libmtmd logged them

    def close(self) -> None:
        """Free the prepared images and the projector."""
        for prepared in self._prepared.values():
            self._mtmd.mtmd_input_chunk_free(prepared.chunk)
        self._prepared.clear()
        self._by_sentinel.clear()
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None

    def offer(self, loaders: Mapping[str, PixelsLoader]) -> None:
        """Say how to get each image's pixels (by key), should this turn's prompt need them and they are not
        prepared here; the last turn's ways are forgotten (they may hold its images' data)."""
        self._loaders = dict(loaders)

    def sentinel(self, key: str) -> int:
        """The id that stands at each position of image `key` in a token list (always negative)."""
        digest = hashlib.sha256(f"{key}|{self._identity}".encode()).digest()
        return -1 - (int.from_bytes(digest[:4], "little") & 0x7FFFFFFE)

    def tokenize(self, text: str, first: Callable[[str], list[int]], more: Callable[[str], list[int]]) -> list[int]:
        """`text` to tokens, each image placeholder in it replaced by that image's tokens."""
        pieces = IMAGE_PLACEHOLDER.split(text)  # text, key, text, key, …, text
        tokens = first(pieces[0])
        for i in range(1, len(pieces), 2):
            tokens += self._prepare(pieces[i]).tokens
            if pieces[i + 1]:
                tokens += more(pieces[i + 1])
        return tokens

    def _prepare(self, key: str) -> _Prepared:
        prepared = self._prepared.get(key)
        if prepared is not None:
            self._prepared.move_to_end(key)
            return prepared
        loader = self._loaders.get(key)
        if loader is None:
            raise EngineError("An image of this conversation is no longer available to the model.")
        prepared = self._chunk(key, loader())
        self._prepared[key] = prepared
        self._by_sentinel[prepared.sentinel] = prepared
        while len(self._prepared) > MAX_PREPARED:
            _old_key, old = self._prepared.popitem(last=False)
            self._by_sentinel.pop(old.sentinel, None)
            self._mtmd.mtmd_input_chunk_free(old.chunk)
        return prepared

    def _chunk(self, key: str, pixels: ImagePixels) -> _Prepared:
        """Let libmtmd resize and slice the image (the marker alone as text): wrapper tokens and one image chunk."""
        mtmd = self._mtmd
        if pixels.width <= 0 or pixels.height <= 0 or len(pixels.rgb) != pixels.width * pixels.height * 3:
            raise EngineError("The image's pixels are not what the model expects.")
        if not self.info.fits(pixels.width, pixels.height, self.max_tokens or None):
            # libmtmd would run past the projector's position table (an abort): refused here instead.
            raise EngineError(
                f"This image is too long and thin for the model ({pixels.width} × {pixels.height} px); crop it."
            )
        data = (ctypes.c_uint8 * len(pixels.rgb)).from_buffer_copy(pixels.rgb)
        bitmap = mtmd.mtmd_bitmap_init(pixels.width, pixels.height, data)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text()
            encoded = self.marker.encode()
            text.text, text.text_len, text.add_special, text.parse_special = encoded, len(encoded), False, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            if mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                raise EngineError("The model's projector could not take this image.")
            before: list[int] = []
            after: list[int] = []
            image = None
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    (after if image is not None else before).extend(int(ids[j]) for j in range(n.value))
                elif image is None and mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    image = mtmd.mtmd_input_chunk_copy(chunk)
                else:
                    raise EngineError("The model's projector made something other than one image of this picture.")
            if image is None:
                raise EngineError("The model's projector made nothing of this image.")
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
        n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(image))
        if int(mtmd.mtmd_input_chunk_get_n_pos(image)) != n_tokens:
            mtmd.mtmd_input_chunk_free(image)
            raise EngineError("This projector places images in a way Tern does not support.")
        return _Prepared(key, self.sentinel(key), before, image, n_tokens, after)

    def spans(self, tokens: Sequence[int]) -> list[tuple[int, _Prepared]]:
        """Where images sit in `tokens`: (first position, image), in order."""
        found = []
        i, n = 0, len(tokens)
        while i < n:
            token = tokens[i]
            if token >= 0:
                i += 1
                continue
            prepared = self._by_sentinel.get(int(token))
            if prepared is None:
                raise EngineError("The prompt holds an image that is not prepared for this model.")
            end = i + prepared.n_tokens
            if end > n or any(t != token for t in tokens[i:end]):
                raise EngineError("The prompt holds part of an image.")
            found.append((i, prepared))
            i = end
        return found

    def read(self, llm: Any, prepared: _Prepared, n_past: int) -> None:
        """Encode the image and read its embeddings into `llm`'s context at `n_past` (sequence 0)."""
        if prepared.n_tokens > llm.n_batch or prepared.n_tokens > llm.context_params.n_ubatch:
            # An image is read in one batch (its tokens see each other); llama.cpp would abort on a smaller one.
            raise EngineError(
                f"This image takes {prepared.n_tokens} tokens, more than the model was loaded to read at once "
                f"({llm.context_params.n_ubatch}). Lower the image detail in Settings."
            )
        import llama_cpp.llama_cpp as llama_lib

        mtmd = self._mtmd
        started = time.perf_counter()
        if mtmd.mtmd_encode_chunk(self._ctx, prepared.chunk) != 0:
            raise EngineError("The projector could not encode the image.")
        encoded = time.perf_counter()
        new_n_past = llama_lib.llama_pos(n_past)
        embeddings = mtmd.mtmd_get_output_embd(self._ctx)
        status = mtmd.mtmd_helper_decode_image_chunk(
            self._ctx, llm._ctx.ctx, prepared.chunk, embeddings, n_past, 0, llm.n_batch, ctypes.byref(new_n_past),
            mtmd.mtmd_helper_post_decode_callback(), None,
        )  # fmt: skip
        if status != 0:
            raise EngineError(f"Reading the image failed in llama.cpp (status {status}).")
        self.encoded += 1
        self.last_read = ImageTiming(
            prepared.n_tokens, (encoded - started) * 1000, (time.perf_counter() - encoded) * 1000
        )
        llm.input_ids[n_past : n_past + prepared.n_tokens] = prepared.sentinel
        llm.n_tokens = n_past + prepared.n_tokens

    def read_images(
        self, llm: Any, tokens: Sequence[int], cached: int, report: Callable[[int, int], None] | None
    ) -> None:
        """Read into `llm`'s context every image of `tokens` not in it yet, with the text between them.

        `cached`: how many of `tokens` the context already holds. The text after the last image is
        left to the usual generation, which then finds everything before it cached.
        """
        spans = self.spans(tokens)
        if not spans:
            return
        for start, prepared in spans:
            if start < cached < start + prepared.n_tokens:
                cached = start  # an image is read whole or not at all
        last = spans[-1][0] + spans[-1][1].n_tokens
        if cached >= last:
            return
        import llama_cpp.llama_cpp as llama_lib

        llama_lib.llama_memory_seq_rm(llama_lib.llama_get_memory(llm._ctx.ctx), -1, cached, -1)
        llm.n_tokens = cached
        position = cached
        for start, prepared in spans:
            if start + prepared.n_tokens <= cached:
                continue
            if report is not None:
                report(position - cached, last - cached)
            if start > position:
                llm.eval(tokens[position:start])
            self.read(llm, prepared, start)
            position = start + prepared.n_tokens
        if report is not None:
            report(last - cached, last - cached)
        llm._requires_eval = True  # the last logits are an image's, not the prompt's
