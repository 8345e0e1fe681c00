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
from dataclasses import replace
from typing import TYPE_CHECKING

from app.core.api.jobs import Job
from app.core.api.protocol import ApiError, ChatCall, CompletionCall
from app.core.chat.gemma4 import Gemma4Template
from app.core.chat.prompt_builder import PromptTooLongError
from app.core.errors import UserError
from app.core.turn import TurnEvents, TurnRequest, TurnResult, TurnStopped, run_turn

if TYPE_CHECKING:
    from app.core.engine.llama_engine import LlamaEngine

COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
_turn_ids = itertools.count(-1, -1)  # negative: never a window's turn


def no_model() -> ApiError:
    """The answer while no model is loaded."""
    return ApiError(503, "No model is loaded in Tern. Open Tern and load a model, then retry.", code="model_not_loaded")


def answer_chat(engine: LlamaEngine, call: ChatCall, job: Job, model_name: str, previous_dropped: int) -> TurnResult:
    """Run the chat turn, streaming into `job`; raises ApiError (the job is then failed by the queue)."""
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
    request = TurnRequest(
        turn_id=next(_turn_ids),
        history=call.messages,
        system_prompt=call.system,
        sampling=call.sampling,
        previous_dropped=previous_dropped,
        model_name=model_name,
        cancel=job.cancel,
        tools=call.tools,
        tool_choice=call.tool_choice,
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
