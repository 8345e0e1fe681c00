"""Images read into the text model's own context through libmtmd, on real llama.cpp with synthetic projectors."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.core.chat.message import image_placeholder
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine, LoadOptions
from app.core.engine.options import EngineError
from app.core.engine.projector_info import read_projector_info

GREEDY = SamplingParams(temperature=0.0, max_tokens=6)
TURN = "<|turn>user\n{image}What is in this picture?<turn|>\n<|turn>model\n"
FOLLOW_UP = "<turn|>\n<|turn>user\nAnd what colour is it?<turn|>\n<|turn>model\n"


@dataclass(frozen=True)
class Pixels:
    width: int
    height: int
    rgb: bytes


def noise(width: int, height: int, seed: int = 0) -> Pixels:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Pixels(width, height, rgb.tobytes())


def offer(engine: LlamaEngine, pixels: Pixels) -> str:
    """Offer an image to the engine's projector under its key; returns the key."""
    key = hashlib.sha256(pixels.rgb).hexdigest()
    assert engine.vision is not None
    engine.vision.offer({key: lambda: pixels})
    return key


def test_the_image_is_read_once_and_a_follow_up_reads_only_its_own_words(
    seeing: LlamaEngine, gemma4_projector: Path
) -> None:
    loaded = seeing.loaded
    assert loaded is not None and loaded.projector == gemma4_projector.name and loaded.vision_note == ""
    vision = seeing.vision
    assert vision is not None
    seeing.forget_cache()
    pixels = noise(64, 48)
    key = offer(seeing, pixels)
    tokens = seeing.tokenize(TURN.format(image=image_placeholder(key)))
    expected = read_projector_info(gemma4_projector).tokens_for(64, 48, loaded.image_tokens)
    assert sum(1 for t in tokens if t < 0) == expected  # the image's positions, as libmtmd counts them
    encoded = vision.encoded
    streamed: list[str] = []
    first = seeing.generate(tokens, GREEDY, threading.Event(), streamed.append)
    assert vision.encoded == encoded + 1
    assert first.prompt_evaluated == len(tokens)  # the image's tokens were evaluated with the text
    assert first.completion_tokens > 0 and "".join(streamed)

    # The follow-up continues the cached conversation: its own words only, the image not encoded again.
    follow = seeing.context_tokens() + seeing.tokenize_more(FOLLOW_UP)
    second = seeing.generate(follow, GREEDY, threading.Event(), lambda _t: None)
    assert vision.encoded == encoded + 1
    assert second.prompt_evaluated < 40

    # Built again from the text (as each turn builds its prompt), the image is found in the cache.
    again = seeing.tokenize(TURN.format(image=image_placeholder(key)) + "A picture." + FOLLOW_UP)
    assert seeing.reused(again) > tokens.index(min(tokens)) + expected
    seeing.generate(again, GREEDY, threading.Event(), lambda _t: None)
    assert vision.encoded == encoded + 1


def test_another_image_in_the_same_place_is_read_again(seeing: LlamaEngine) -> None:
    vision = seeing.vision
    assert vision is not None
    seeing.forget_cache()
    first = seeing.tokenize(TURN.format(image=image_placeholder(offer(seeing, noise(64, 48, seed=1)))))
    seeing.generate(first, GREEDY, threading.Event(), lambda _t: None)
    encoded = vision.encoded
    other = seeing.tokenize(TURN.format(image=image_placeholder(offer(seeing, noise(64, 48, seed=2)))))
    stats = seeing.generate(other, GREEDY, threading.Event(), lambda _t: None)
    assert vision.encoded == encoded + 1
    assert stats.prompt_evaluated >= sum(1 for t in other if t < 0)


def test_an_image_nobody_offered_is_a_clear_error(seeing: LlamaEngine) -> None:
    with pytest.raises(EngineError, match="no longer available"):
        seeing.tokenize(TURN.format(image=image_placeholder("f" * 64)))


def test_a_projector_for_another_model_leaves_the_model_answering_without_images(
    tiny_gemma4_real: Path, gemma3_projector: Path
) -> None:
    engine = LlamaEngine()
    try:
        loaded = engine.load(tiny_gemma4_real, LoadOptions(n_ctx=512, n_threads=2, projector=str(gemma3_projector)))
        assert loaded.projector == "" and engine.vision is None
        assert "Gemma 3" in loaded.vision_note and "projector" in loaded.vision_note
        tokens = engine.tokenize(TURN.format(image=""))
        assert engine.generate(tokens, GREEDY, threading.Event(), lambda _t: None).prompt_evaluated == len(tokens)
    finally:
        engine.unload()


def test_a_gemma_3_siglip_projector_with_the_starter(starter_model: Path, gemma3_projector: Path) -> None:
    engine = LlamaEngine()
    try:
        loaded = engine.load(starter_model, LoadOptions(n_ctx=1024, n_threads=2, projector=str(gemma3_projector)))
        assert loaded.projector == gemma3_projector.name
        key = offer(engine, noise(50, 90))
        tokens = engine.tokenize("<start_of_turn>user\n" + image_placeholder(key) + "Describe it.<end_of_turn>\n")
        expected = read_projector_info(gemma3_projector).tokens_for(50, 90)
        assert sum(1 for t in tokens if t < 0) == expected  # a fixed count, whatever the image's size
        stats = engine.generate(tokens, GREEDY, threading.Event(), lambda _t: None)
        assert stats.prompt_evaluated == len(tokens)
    finally:
        engine.unload()
