"""What an API job does on the inference thread: a chat turn through the turn pipeline, or a plain completion.

A chat request runs `run_turn` like a question from the window, with the
same prompt format, trimming and KV-cache reuse: an IDE that resends its
whole conversation has every earlier token read already, as long as nothing
else used the model in between. Nothing is saved here (the service decides
whether API conversations are kept). A completion continues the given text
as it is, with no chat format.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from app.core.api.jobs import Job
from app.core.api.protocol import ApiError, ChatCall, CompletionCall
from app.core.chat.gemma4 import Gemma4Template
from app.core.chat.image import StoredImage
from app.core.chat.message import ChatMessage
from app.core.chat.prompt_builder import PromptTooLongError
from app.core.engine.vision import PIXELS_SIDE, ImagePixels
from app.core.errors import UserError
from app.core.images import ImageError, ImageReader
from app.core.turn import TurnEvents, TurnRequest, TurnResult, TurnStopped, run_turn

if TYPE_CHECKING:
    from app.core.engine.llama_engine import LlamaEngine

COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
_turn_ids = itertools.count(-1, -1)  # negative: never a window's turn


def no_model() -> ApiError:
    """The answer while no model is loaded."""
    return ApiError(503, "No model is loaded in Tern. Open Tern and load a model, then retry.", code="model_not_loaded")


def answer_chat(
    engine: LlamaEngine,
    call: ChatCall,
    job: Job,
    model_name: str,
    previous_dropped: int,
    reader: Callable[[], ImageReader] | None = None,
) -> TurnResult:
    """Run the chat turn, streaming into `job`; raises ApiError (the job is then failed by the queue).

    `reader` gives the image reader that prepares the request's images (in its child process).
    """
    if engine.loaded is None:
        raise no_model()
    uses_tools = (bool(call.tools) and call.tool_choice != "none") or any(m.role == "tool" for m in call.messages)
    if uses_tools and not isinstance(engine.template, Gemma4Template):
        raise ApiError(
            400,
            "The loaded model's prompt format has no tool calling; load a Gemma 4 model to use 'tools'.",
            param="tools",
            code="unsupported_parameter",
        )
    messages, images, pixels = _images(engine, call, reader)
    request = TurnRequest(
        turn_id=next(_turn_ids),
        history=messages,
        system_prompt=call.system,
        sampling=call.sampling,
        previous_dropped=previous_dropped,
        model_name=model_name,
        cancel=job.cancel,
        tools=call.tools,
        tool_choice=call.tool_choice,
        images=images,
        pixels=pixels,
    )
    try:
        result = run_turn(engine, request, TurnEvents(text=job.piece))
    except TurnStopped:
        raise ApiError(499, "The request was cancelled.", code="cancelled") from None
    except PromptTooLongError as exc:
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
    except UserError as exc:
        raise ApiError(500, str(exc), kind="server_error") from None
    job.finish(result.stats, result.pending)
    return result


def _images(
    engine: LlamaEngine, call: ChatCall, reader: Callable[[], ImageReader] | None
) -> tuple[tuple[ChatMessage, ...], tuple[StoredImage, ...], Callable[[str], ImagePixels] | None]:
    """The request's messages with their images prepared (metadata stripped, checked in the reader's child)."""
    if not call.images:
        return call.messages, (), None
    if engine.vision is None or reader is None:
        raise ApiError(
            400,
            "The loaded model can't see images; load a model with its image projector (mmproj file) in Tern.",
            param="messages",
            code="unsupported_content",
        )
    prepared: dict[int, list[StoredImage]] = {}
    for index, data, name in call.images:
        try:
            prepared.setdefault(index, []).append(StoredImage.of(reader().prepare(data, name)))
        except ImageError as exc:
            raise ApiError(400, f"{name}: {exc}", param="messages", code="invalid_image") from None
    messages = tuple(
        replace(m, images=tuple(image.key for image in prepared[i])) if i in prepared else m
        for i, m in enumerate(call.messages)
    )
    at_hand = {image.key: image for images in prepared.values() for image in images}

    def pixels(key: str) -> ImagePixels:
        return reader().pixels(at_hand[key].data, PIXELS_SIDE)

    return messages, tuple(at_hand.values()), pixels


def answer_completion(engine: LlamaEngine, call: CompletionCall, job: Job) -> None:
    """Continue the prompt text, streaming into `job`; raises ApiError."""
    loaded = engine.loaded
    if loaded is None:
        raise no_model()
    sampling = call.sampling
    if not call.max_tokens_given:
        sampling = replace(sampling, max_tokens=COMPLETION_DEFAULT_MAX_TOKENS)
    tokens = engine.tokenize(call.prompt)
    if len(tokens) >= loaded.n_ctx:
        raise ApiError(
            400,
            f"The prompt is {len(tokens):,} tokens, but the context window holds {loaded.n_ctx:,}.",
            param="prompt",
            code="context_length_exceeded",
        )
    try:
        stats = engine.generate(tokens, sampling, job.cancel, job.piece)
    except UserError as exc:
        raise ApiError(500, str(exc), kind="server_error") from None
    job.finish(stats)
