"""A question with an image, through the whole turn: prepared in the reader's child, saved encrypted, read by the
model once, found in the cache by the next question; and refused clearly where the model cannot see."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from app.core.chat.image import StoredImage
from app.core.chat.message import ChatMessage
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.options import EngineError
from app.core.engine.vision import PIXELS_SIDE
from app.core.images import ImageReader
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.ref import Ref
from app.core.turn import TurnEvents, TurnRequest, TurnSaving, run_turn
from tests.core.test_turn import GREEDY, StoreHere


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreHere]:
    conn = open_database(tmp_path / "h.db", secrets.token_bytes(32))
    yield StoreHere(ConversationStore(conn))
    conn.close()


def pixels_from(store: StoreHere, reader: ImageReader, at_hand: dict[str, StoredImage], key: str) -> object:
    image = at_hand.get(key) or store.image(key)
    assert image is not None
    return reader.pixels(image.data, PIXELS_SIDE)


def test_an_image_question_is_saved_with_its_image_and_the_follow_up_does_not_encode_it_again(
    seeing: LlamaEngine, store: StoreHere, reader: ImageReader
) -> None:
    picture = StoredImage.of(reader.prepare(png(96, 64, (200, 30, 30)), "red.png"))
    seeing.forget_cache()
    vision = seeing.vision
    assert vision is not None
    encoded = vision.encoded
    question = ChatMessage("user", "What colour is this?", images=(picture.key,))
    saving = TurnSaving(Ref(), (), Ref(), question=Ref(), images=(picture,))
    pixels = partial(pixels_from, store, reader, {picture.key: picture})
    request = TurnRequest(1, (question,), sampling=GREEDY, saving=saving, images=(picture,), pixels=pixels)
    first = run_turn(seeing, request, TurnEvents(), store)
    assert vision.encoded == encoded + 1
    assert first.stats.prompt_evaluated >= 64  # the image's tokens and the words around them
    stored = store.store.current_path(saving.conversation.value or 0)
    assert stored[0].images == (picture.key,) and store.store.images.image(picture.key) == picture

    # The next question: the image comes from the history this time (nothing at hand), and from the cache.
    history = (question, ChatMessage("assistant", stored[1].content), ChatMessage("user", "Is it bright?"))
    second = run_turn(
        seeing,
        TurnRequest(2, history, sampling=GREEDY, pixels=partial(pixels_from, store, reader, {})),
        TurnEvents(),
        store,
    )
    assert vision.encoded == encoded + 1
    assert second.stats.prompt_evaluated < first.stats.prompt_evaluated / 2


def test_a_model_that_cannot_see_refuses_the_image_and_keeps_answering(engine: LlamaEngine) -> None:
    question = ChatMessage("user", "What is this?", images=("a" * 64,))
    with pytest.raises(EngineError, match="can't see images"):
        run_turn(engine, TurnRequest(1, (question,), sampling=GREEDY), TurnEvents())
    # An earlier image in the conversation is named, not sent; the model answers the new question.
    history = (question, ChatMessage("assistant", "I cannot see it."), ChatMessage("user", "Say hello."))
    result = run_turn(engine, TurnRequest(2, history, sampling=GREEDY), TurnEvents())
    assert result.stats.completion_tokens > 0
