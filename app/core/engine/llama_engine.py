"""The inference engine: one GGUF model in llama.cpp, through llama-cpp-python.

Not thread-safe by design: one owner (the inference worker) calls it. Only
`threading.Event` cancellation crosses threads.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence

import llama_cpp
import llama_cpp.llama_cpp as llama_lib

from app.core.chat.completion import CompletionFrame, is_base_model_file
from app.core.chat.gemma4 import MARKER_TEXTS, Gemma4Template, Markers
from app.core.chat.message import IMAGE_PLACEHOLDER
from app.core.chat.templates import ChatTemplate, select_template
from app.core.engine import backends, llama_log
from app.core.engine.backends import BackendError
from app.core.engine.channels import Channels
from app.core.engine.generation import (
    GenerationStats,
    SamplingParams,
    StopReason,
    StopSequenceFilter,
    common_prefix,
)
from app.core.engine.gguf_info import PLE_TENSOR, GgufError, GgufInfo, read_gguf_info
from app.core.engine.model_params import LAZY_OFF, LAZY_ON, extra_model_params
from app.core.engine.options import (
    EngineError,
    LoadCancelledError,
    LoadedModel,
    LoadOptions,
    PlePlacement,
    Residency,
    default_threads,
)
from app.core.engine.parked import PARK_MIN_TOKENS, ParkedStates
from app.core.engine.probe import ModelChecks
from app.core.engine.projector_info import ProjectorInfo, read_projector_info
from app.core.engine.prompt_tokens import PromptTokenizer
from app.core.engine.residency import drop_resident, drop_resident_ranges, evict_from_page_cache
from app.core.engine.sampler_chain import TernLlama
from app.core.engine.vision import Vision
from app.core.models.starter import is_starter

log = logging.getLogger("tern.engine")
_REPACKED = re.compile(r"repack tensor (\S+) with")
_NO_ABORT = llama_lib.ggml_abort_callback()  # a NULL callback
PREFILL_SAMPLE_TOKENS = 256  # prompts read at least this long measure the reading speed
PARK_MIN_GAIN = 32  # a parked cache goes back in when it spares reading at least this many more tokens


def find_markers(llm: llama_cpp.Llama) -> Markers | None:
    """Gemma 4's markers in this model's vocabulary, or None when one of them is not a special token there."""
    vocab = llm._model.vocab
    special = llama_lib.LLAMA_TOKEN_ATTR_CONTROL | llama_lib.LLAMA_TOKEN_ATTR_USER_DEFINED
    ids = []
    for text in MARKER_TEXTS:
        tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
        if len(tokens) != 1 or not llama_lib.llama_vocab_get_attr(vocab, tokens[0]) & special:
            return None
        ids.append(tokens[0])
    return Markers(*ids)


def is_base_model(info: GgufInfo) -> bool:
    """True for a model that continues text rather than chats: the starter, or a file with no chat
    template whose name, fine-tune label and file name do not say it was instruction-tuned."""
    names = [str(info.metadata.get(key) or "") for key in ("general.name", "general.finetune", "general.basename")]
    return is_starter(info.path) or is_base_model_file(info.chat_template, [*names, info.path.stem])


class LlamaEngine:
    """Loads one model and streams completions from it, reusing the KV cache across turns."""

    def __init__(self, checks: ModelChecks | None = None) -> None:
        llama_log.install()
        self._checks = checks  # when given, files not seen before first load in a child process
        self._llm: TernLlama | None = None
        self._tokenizer: PromptTokenizer | None = None
        self._loaded: LoadedModel | None = None
        self.template: ChatTemplate | None = None
        self.prefill_tok_s: float | None = None  # prompt tokens read per second, measured on recent turns
        self._cancel = threading.Event()  # the running generation's; never set outside one
        # llama.cpp asks this between graph nodes, so Stop also ends a long prompt evaluation.
        # It is installed only until the first token: per-node calls into Python would slow decoding.
        self._abort = llama_lib.ggml_abort_callback(lambda _data: 1 if self._cancel.is_set() else 0)
        self._piece = ctypes.create_string_buffer(64)
        self.parked = ParkedStates()  # caches of other conversations, put aside in RAM (see parked.py)
        self.markers: Markers | None = None  # Gemma 4's thought and tool-call tokens (see channels.py)
        self.vision: Vision | None = None  # the model's image projector, when one is loaded (see vision.py)

    @property
    def loaded(self) -> LoadedModel | None:
        """The current model, or None."""
        return self._loaded

    def load(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions = LoadOptions(),
        progress: Callable[[float], bool] | None = None,
        trusted: bool = False,
    ) -> LoadedModel:
        """Validate and load `path`, replacing any current model. Raises `GgufError` or `EngineError`.

        Unless `trusted` (the starter, whose hash is known), a file this engine's checks have not
        seen is first loaded in a child process; one that fails there never replaces the current model.
        """
        info = read_gguf_info(path)  # before llama.cpp ever sees the file
        try:
            backends.ensure_loaded()
        except (BackendError, OSError) as exc:
            raise EngineError(str(exc)) from exc
        if self._checks is not None and not trusted:
            self._checks.vet(
                info.path, lazy_ple=info.ple_tensor is not None and options.residency != Residency.PLE_IN_RAM
            )
        n_ctx = min(options.n_ctx, info.context_length) if info.context_length else options.n_ctx
        n_threads = options.n_threads or default_threads()
        projector, image_tokens, vision_note = self._check_projector(info, options)
        # An image is read in one batch (its tokens attend to each other): the batch must hold the largest.
        n_batch = max(options.n_batch, image_tokens)
        self.unload()
        ple = info.ple_tensor
        lazy_mode = None
        cpu_tensors: tuple[str, ...] = ()
        if ple is not None:
            # Gemma 4 marks its PLE for lazy reading, but llama.cpp's default (AUTO) only
            # applies it to tensors over 4 GiB, which E2B/E4B never reach: ask for it.
            lazy_mode = LAZY_OFF if options.residency == Residency.PLE_IN_RAM else LAZY_ON
            if options.n_gpu_layers > 0:
                # Keep the lookup table on the CPU whatever upstream's placement defaults become.
                cpu_tensors = (PLE_TENSOR.removesuffix(".weight"),)
            if options.residency != Residency.PLE_IN_RAM:
                # Start cold: rows cached by an earlier load would otherwise map in large folios.
                evict_from_page_cache(info.path, ple.offset, ple.n_bytes)
        started = time.perf_counter()
        aborted = False

        def on_progress(fraction: float) -> bool:
            nonlocal aborted
            keep_going = progress(fraction) if progress else True
            aborted = not keep_going
            return keep_going

        try:
            with (
                llama_log.capture() as load_log,
                extra_model_params(on_progress, lazy_mode, cpu_tensors, flash_attn_auto=True) as keep_alive,
            ):
                llm = TernLlama(
                    model_path=str(info.path),
                    n_ctx=n_ctx,
                    n_batch=n_batch,
                    n_ubatch=n_batch,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    n_gpu_layers=options.n_gpu_layers,
                    use_mlock=options.residency == Residency.LOCKED,
                    # A full-size sliding-window cache lets a turn drop its tail
                    # and reuse the rest (otherwise Gemma's SWA layers refuse it).
                    swa_full=True,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            if aborted:
                raise LoadCancelledError("Loading was cancelled.") from exc
            detail = "; ".join(llama_log.last_error_lines(3)) or str(exc)
            raise EngineError(f"llama.cpp could not load '{info.path.name}': {detail}") from exc
        llm._tern_keep_alive = keep_alive  # type: ignore[attr-defined]  # must live as long as the model
        self._llm = llm
        self._tokenizer = PromptTokenizer(llm)
        self.markers = None
        try:
            bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else ""
            eos = llm._model.token_get_text(llm.token_eos()) if llm.token_eos() >= 0 else ""
            if is_base_model(info):
                # A base model continues text: it is given a question-and-answer page to continue, not chat turns.
                self.template = CompletionFrame()
            else:
                if not info.chat_template and not info.is_gemma:
                    log.warning("%s (%s) has no chat template; using Gemma turns", info.path.name, info.architecture)
                self.template = select_template(info.chat_template, bos, eos)
                if isinstance(self.template, Gemma4Template):
                    self.markers = find_markers(llm)
            placement = self._place_ple(info, options.residency, load_log)
            self._release_repacked_sources(info, load_log)
            if projector is not None:
                try:
                    self.vision = Vision(llm, projector, n_threads, image_tokens, options.n_gpu_layers > 0)
                except EngineError as exc:  # the model itself is fine: it answers, without images
                    vision_note, image_tokens = str(exc), 0
        except OSError as exc:
            self.unload()
            raise EngineError(f"Setting up '{info.path.name}' failed: {exc}") from exc
        except EngineError:
            self.unload()
            raise
        self._loaded = LoadedModel(
            info,
            n_ctx,
            n_threads,
            (time.perf_counter() - started) * 1000,
            self.template.name,
            options.residency,
            placement,
            tuple(llama_log.buffer_sizes(load_log)),
            self.template.note,
            flash_attn=any("Flash Attention enabled" in line for line in load_log),
            projector=self.vision.path.name if self.vision is not None else "",
            image_tokens=image_tokens if self.vision is not None else 0,
            vision_note=vision_note,
        )
        log.info(
            "Loaded %s: n_ctx=%d threads=%d template=%s flash attention %s PLE %s buffers %s",
            info.path.name,
            n_ctx,
            n_threads,
            self.template.name,
            "on" if self._loaded.flash_attn else "off",
            placement.value,
            self._loaded.buffers,
        )
        return self._loaded

    def _check_projector(self, info: GgufInfo, options: LoadOptions) -> tuple[ProjectorInfo | None, int, str]:
        """The image projector to load with the model, the most tokens an image may take, and why there is
        none when one was asked for. A projector libmtmd might choke on is refused before it sees it."""
        if not options.projector:
            return None, 0, ""
        try:
            projector = read_projector_info(options.projector)
            projector.check_pairing(
                int(info.metadata.get(f"{info.architecture}.embedding_length") or 0), info.architecture
            )
            if self._checks is not None:  # even with the starter: the projector is the user's file
                self._checks.vet_projector(info.path, projector.path)
        except (GgufError, EngineError) as exc:
            log.warning("Image projector %s not loaded: %s", options.projector, exc)
            return None, 0, str(exc)
        wanted = options.image_tokens or projector.default_tokens
        return projector, min(max(wanted, projector.min_tokens), projector.max_tokens), ""

    def _token_bytes(self, vocab: object, token: int) -> bytes:
        """A token's text as bytes (llama-cpp-python's own helper truncates pieces over 32 bytes)."""
        n = llama_lib.llama_token_to_piece(vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_lib.llama_token_to_piece(vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    @staticmethod
    def _release_repacked_sources(info: GgufInfo, load_log: list[str]) -> None:
        """Drop the mapped file pages of tensors llama.cpp copied into CPU-optimised layouts.

        With mmap, llama.cpp reads e.g. Q4_K weights from the mapping and keeps a
        repacked copy in its own buffer, but leaves the source pages mapped: the
        same weights would count twice in RAM. Nothing reads them again.
        """
        names = {m.group(1) for line in load_log if (m := _REPACKED.search(line))}
        ranges = [(t.offset, t.n_bytes) for t in info.tensors if t.name in names]
        if ranges and drop_resident_ranges(info.path, ranges):
            log.info("Released the mapped copies of %d repacked tensors", len(ranges))

    @staticmethod
    def _place_ple(info: GgufInfo, residency: Residency, load_log: list[str]) -> PlePlacement:
        ple = info.ple_tensor
        if ple is None:
            return PlePlacement.NONE
        if residency == Residency.PLE_IN_RAM:
            return PlePlacement.IN_RAM
        # Page the table's range out of every mapping of the file. Gemma 3n's PLE is
        # not marked lazy, so llama.cpp read all of it at load (MAP_POPULATE); a locked
        # model's mlock covers the whole file mapping; and uploading layers to a GPU
        # faults in pages next to the table. Its rows are looked up one per token, so
        # from here on each is read from disk when a token needs it.
        dropped = drop_resident(info.path, ple.offset, ple.n_bytes)
        if any(PLE_TENSOR in line and "lazy read enabled" in line for line in load_log):
            return PlePlacement.LAZY
        if dropped:
            return PlePlacement.DROPPED
        log.warning("Could not page the PLE of %s out of memory; it stays resident", info.path.name)
        return PlePlacement.IN_RAM

    def unload(self) -> None:
        """Free the model and its context."""
        if self.vision is not None:
            self.vision.close()
            self.vision = None
        if self._llm is not None:
            self._llm.close()
        self._llm = None
        self._tokenizer = None
        self.markers = None
        self._loaded = None
        self.parked.clear()
        self.template = None
        self.prefill_tok_s = None  # another model reads at another speed

    def _require(self) -> TernLlama:
        if self._llm is None:
            raise EngineError("No model is loaded.")
        return self._llm

    def tokenize(self, text: str) -> list[int]:
        """Prompt text to tokens, with BOS and special tokens such as `<start_of_turn>` parsed.

        A long prompt's pieces are remembered, so a follow-up tokenizes only what is new (prompt_tokens.py).
        """
        self._require()
        assert self._tokenizer is not None
        if self.vision is not None and IMAGE_PLACEHOLDER.search(text):
            return self.vision.tokenize(text, self._tokenizer, self.tokenize_more)
        return self._tokenizer(text)

    def tokenize_more(self, text: str) -> list[int]:
        """Text that follows tokens already given (no BOS), special tokens parsed."""
        return self._require().tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def context_tokens(self) -> list[int]:
        """The tokens the KV cache holds: the last prompt and what was generated after it."""
        llm = self._require()
        return [int(t) for t in llm.input_ids[: llm.n_tokens]]

    def forget_cache(self) -> None:
        """Drop the KV cache and the parked ones: the next prompt is read whole (cold measurements, a lock)."""
        self._require().reset()  # type: ignore[no-untyped-call]  # no tokens held: the next generate evaluates the prompt from the start
        self.parked.clear()

    @property
    def cached_tokens(self) -> int:
        """Tokens currently held in the KV cache."""
        return self._llm.n_tokens if self._llm else 0

    def reused(self, tokens: Sequence[int]) -> int:
        """How many of `tokens`, from the start, the KV cache already holds."""
        llm = self._require()
        return common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)

    @property
    def identity(self) -> str:
        """What a saved state depends on besides its tokens: model file, context size, prompt format, KV layout."""
        loaded = self._loaded
        if loaded is None:
            raise EngineError("No model is loaded.")
        stat = loaded.info.path.stat()
        return (
            f"{loaded.info.path.name}|{stat.st_size}|{stat.st_mtime_ns}|ctx={loaded.n_ctx}|{loaded.template_name}"
            f"|fa={int(loaded.flash_attn)}"  # the KV cache's layout differs with flash attention
        )

    def state_size(self) -> int:
        """Bytes `save_state` would return (the KV cache of the tokens held), without copying them."""
        llm = self._require()
        return int(llama_lib.llama_state_seq_get_size(llm._ctx.ctx, 0))

    def save_state(self) -> tuple[tuple[int, ...], bytes]:
        """The KV cache as bytes, with the tokens it holds (for `restore_state` after a restart)."""
        llm = self._require()
        ctx = llm._ctx.ctx
        size = llama_lib.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_lib.llama_state_seq_get_data(ctx, buffer, size, 0)
        return tuple(llm.input_ids[: llm.n_tokens].tolist()), bytes(memoryview(buffer)[:written])

    def restore_state(self, tokens: Sequence[int], data: bytes) -> bool:
        """Put back a KV cache from `save_state`; False (and an empty cache) when llama.cpp refuses it.

        The cache it replaces is parked first when it is worth keeping.
        """
        self._park_unless_continued(tokens)
        return self._put_back(tokens, data)

    def _park_unless_continued(self, tokens: Sequence[int]) -> None:
        """Park the cache when reading `tokens` would throw away at least PARK_MIN_TOKENS of it."""
        llm = self._require()
        if llm.n_tokens - self.reused(tokens) >= PARK_MIN_TOKENS:
            self.parked.put(*self.save_state())

    def _switch_to(self, tokens: Sequence[int]) -> None:
        """Before reading `tokens`: park a cache they would throw away, and put back a parked one they continue."""
        entry, shared = self.parked.best(tokens)
        if entry is not None and shared >= self.reused(tokens) + PARK_MIN_GAIN:
            self.parked.take(entry)
            self._park_unless_continued(tokens)
            if not self._put_back(entry.tokens, entry.data):
                log.warning("A parked KV cache was refused; the prompt is read again")
        else:
            self._park_unless_continued(tokens)

    def _put_back(self, tokens: Sequence[int], data: bytes) -> bool:
        llm = self._require()
        memory = llama_lib.llama_get_memory(llm._ctx.ctx)
        llm.reset()  # type: ignore[no-untyped-call]
        llama_lib.llama_memory_clear(memory, True)
        if not tokens or len(tokens) >= llm.n_ctx():
            return False
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_lib.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(data), 0) != len(data):
            llama_lib.llama_memory_clear(memory, True)
            return False
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        return True

    def generate(
        self,
        tokens: Sequence[int],
        sampling: SamplingParams,
        cancel: threading.Event,
        on_text: Callable[[str], None],
        on_read: Callable[[int, int], None] | None = None,
        channels: Channels | None = None,
    ) -> GenerationStats:
        """Stream the continuation of `tokens` into `on_text`; `cancel` is checked before every token.

        With `sampling.stop`, text that might begin a stop sequence is held back until it cannot,
        and no part of a stop sequence that matched is streamed. `on_read(done, total)` follows
        the reading of a prompt longer than one batch (the part not in the cache). With `channels`
        (Gemma 4), thoughts and tool calls go there, and only the answer itself to `on_text`.
        """
        llm = self._require()
        n_ctx = llm.n_ctx()
        room = n_ctx - len(tokens)
        if room <= 0:
            raise EngineError(f"The prompt ({len(tokens)} tokens) fills the whole {n_ctx}-token context.")
        limit = min(sampling.max_tokens, room)
        self._switch_to(tokens)
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        llama_lib.llama_perf_context_reset(llm._ctx.ctx)
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        first = last = started
        produced = 0
        received = 0  # tokens the sampler gave us; all but the last were decoded
        reason = StopReason.CONTEXT_FULL if limit < sampling.max_tokens else StopReason.MAX_TOKENS
        # A completion prompt's stop sequences are held back until they can no longer match; there
        # a control token (e.g. <start_of_turn>, which prints as nothing) also begins the next turn.
        completion = bool(sampling.stop)
        gate = StopSequenceFilter(sampling.stop, on_text, strip=completion and sampling.strip)
        self._cancel = cancel
        llama_lib.llama_set_abort_callback(llm._ctx.ctx, self._abort, None)
        llm.sampling = sampling
        llm.on_read = on_read
        stream = llm.generate(tokens)  # the sampler chain comes from llm.sampling (see TernLlama)
        try:
            if self.vision is not None:
                self.vision.read_images(llm, tokens, self.reused(tokens), on_read)
            for token in stream:
                received += 1
                if cancel.is_set():
                    reason = StopReason.CANCELLED
                    break
                if llama_lib.llama_vocab_is_eog(vocab, token) or (
                    completion and llama_lib.llama_vocab_is_control(vocab, token)
                ):
                    reason = StopReason.END_OF_TURN
                    break
                last = time.perf_counter()
                if produced == 0:
                    first = last
                    llama_lib.llama_set_abort_callback(llm._ctx.ctx, _NO_ABORT, None)
                produced += 1
                piece = decoder.decode(self._token_bytes(vocab, token))
                if channels is not None:
                    piece = channels.feed(token, piece)
                if gate.feed(piece):
                    reason = StopReason.END_OF_TURN
                    break
                if produced >= limit:
                    break
        except RuntimeError:
            # llama_decode returns 2 when the abort callback stopped it (Stop during a prompt).
            if not cancel.is_set():
                raise
            reason = StopReason.CANCELLED
        finally:
            stream.close()
            llm.on_read = None
            llama_lib.llama_set_abort_callback(llm._ctx.ctx, _NO_ABORT, None)
            self._cancel = threading.Event()
        if channels is not None:
            channels.finish()
        gate.finish(decoder.decode(b"", final=True))
        perf = llama_lib.llama_perf_context(llm._ctx.ctx)
        # llama.cpp counts batches of one token as "eval", larger ones as "prompt eval".
        prompt_evaluated = int(perf.n_p_eval) + int(perf.n_eval) - max(0, received - 1)
        decode_s = last - first
        if prompt_evaluated >= PREFILL_SAMPLE_TOKENS and produced:  # a prompt long enough to time its reading
            rate = prompt_evaluated / max(first - started, 1e-3)
            self.prefill_tok_s = rate if self.prefill_tok_s is None else (self.prefill_tok_s + rate) / 2
        return GenerationStats(
            prompt_tokens=len(tokens),
            prompt_evaluated=prompt_evaluated,
            completion_tokens=gate.tokens if completion else produced,
            ttft_ms=(first - started) * 1000 if produced else 0.0,
            decode_tok_s=(produced - 1) / decode_s if produced > 1 and decode_s > 0 else 0.0,
            total_ms=(time.perf_counter() - started) * 1000,
            stop_reason=reason,
        )
