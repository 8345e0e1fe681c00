"""`llama_cpp.Llama` with Tern's sampler chain: penalties, DRY, then the usual truncation and pick."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp
import llama_cpp._internals as llama_internals
import llama_cpp.llama_cpp as llama_lib

from app.core.engine.generation import SamplingParams
from app.core.engine.options import EngineError

# llama.cpp's default DRY sequence breakers: a repeat is not followed across a line, a colon or a quote.
DRY_BREAKERS = ("\n", ":", '"', "*")
DRY_LAST_N = 2048  # tokens of history DRY compares against (0 would turn it off)


class TernLlama(llama_cpp.Llama):
    """`llama_cpp.Llama` with Tern's sampler chain: penalties, DRY, then the usual truncation and pick.

    `Llama.generate` builds its chain through `_init_sampler` and has no parameter for DRY,
    so the chain is built here from `sampling`, which the engine sets before each generation.
    """

    sampling = SamplingParams()
    on_read: Callable[[int, int], None] | None = None  # prompt tokens read so far, of how many

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._dry_made: dict[tuple[float, float, int], Any] = {}  # DRY samplers to clone, by their settings
        super().__init__(*args, **kwargs)

    def dry_sampler(self, sampling: SamplingParams) -> Any:
        """A new DRY sampler for `sampling`, with no history.

        Making one scans the whole vocabulary for the sequence breakers (~50 ms for Gemma's 262k tokens,
        on every turn of a base model); it is made once per model and setting, and cloned after that.
        """
        key = (sampling.dry_multiplier, sampling.dry_base, sampling.dry_allowed_length)
        made = self._dry_made.get(key)
        if made is None:
            breakers = (ctypes.c_char_p * len(DRY_BREAKERS))(*(b.encode() for b in DRY_BREAKERS))
            made = self._dry_made[key] = llama_lib.llama_sampler_init_dry(
                self._model.vocab, *key, DRY_LAST_N, breakers, len(DRY_BREAKERS)
            )
        return llama_lib.llama_sampler_clone(made)

    def close_dry_samplers(self) -> None:
        """Free the DRY samplers kept for cloning."""
        for made in self._dry_made.values():
            llama_lib.llama_sampler_free(made)
        self._dry_made.clear()

    def close(self) -> None:
        """Free the DRY samplers kept for cloning, then the model."""
        self.close_dry_samplers()
        super().close()

    def _init_sampler(self, **_generate_args: Any) -> llama_internals.LlamaSampler:  # type: ignore[override]
        return build_sampler(self, self.sampling)

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate `tokens` batch by batch, reporting progress through `on_read` when there is more than one."""
        report = self.on_read
        if report is None or len(tokens) <= self.n_batch:
            super().eval(tokens)
            return
        report(0, len(tokens))
        for start in range(0, len(tokens), self.n_batch):
            batch = tokens[start : start + self.n_batch]
            super().eval(batch)
            report(start + len(batch), len(tokens))


def build_sampler(llm: TernLlama, sampling: SamplingParams) -> llama_internals.LlamaSampler:
    """The sampler chain for `sampling`, in llama-server's order: penalties, DRY, top-k, top-p, min-p, temperature."""
    chain = llama_internals.LlamaSampler()  # type: ignore[no-untyped-call]
    if sampling.grammar:
        grammar = llama_lib.llama_sampler_init_grammar(llm._model.vocab, sampling.grammar.encode(), b"root")
        if not grammar:
            raise EngineError("The answer's grammar could not be read by llama.cpp.")
        llama_lib.llama_sampler_chain_add(chain.sampler, grammar)
    chain.add_penalties(
        n_vocab=llm.n_vocab(),
        penalty_last_n=llm.last_n_tokens_size,
        penalty_repeat=sampling.repeat_penalty,
        penalty_freq=sampling.frequency_penalty,
        penalty_present=sampling.presence_penalty,
    )
    if sampling.dry_multiplier > 0:
        dry = llm.dry_sampler(sampling)
        # Text the answer should not copy counts as already said. Only DRY reads it: fed to the
        # whole chain, the repeat penalty would also punish every word of the question.
        if sampling.dry_history:
            for token in llm.tokenize(sampling.dry_history.encode("utf-8"), add_bos=False, special=False):
                llama_lib.llama_sampler_accept(dry, token)
        llama_lib.llama_sampler_chain_add(chain.sampler, dry)
    if sampling.temperature <= 0:
        chain.add_greedy()  # type: ignore[no-untyped-call]
    else:
        chain.add_top_k(sampling.top_k)
        chain.add_top_p(sampling.top_p, 1)
        chain.add_min_p(sampling.min_p, 1)
        chain.add_temp(sampling.temperature)
        chain.add_dist(llm._seed)
    return chain
