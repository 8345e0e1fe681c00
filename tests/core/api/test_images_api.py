"""Images through the local API: OpenAI `image_url` parts with data: URLs reach a model that sees; a web URL is
refused without any fetch, and so is an image for a model that cannot see."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.api.server import ApiConfig, ApiServer, RequestRecord
from app.core.engine.llama_engine import LlamaEngine, LoadOptions
from app.core.images import ImageReader
from tests.core.api.test_server import KEY, MODEL, EngineBackend, Served
from tests.fixtures.images import encode, quadrants


def ask(url: str) -> dict[str, object]:
    parts = [{"type": "text", "text": "What is in it?"}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0}


def data_url() -> str:
    return "data:image/png;base64," + base64.b64encode(encode(quadrants(), "PNG")).decode()


def serve(engine: LlamaEngine, reader: ImageReader) -> Served:
    backend = EngineBackend(engine, images=reader)
    records: list[RequestRecord] = []
    server = ApiServer(ApiConfig(0, KEY, frozenset()), backend, records.append)
    server.start()
    return Served(server, backend, records)


@pytest.fixture
def seeing(tiny_gemma4_real: Path, gemma4_projector: Path, reader: ImageReader) -> Iterator[Served]:
    engine = LlamaEngine()
    engine.load(tiny_gemma4_real, LoadOptions(n_ctx=2048, n_threads=2, projector=str(gemma4_projector)))
    served = serve(engine, reader)
    try:
        yield served
    finally:
        served.server.stop()
        served.backend.close()
        engine.unload()


def test_a_data_url_image_is_read_by_the_model(seeing: Served) -> None:
    status, _headers, body = seeing.request("POST", "/v1/chat/completions", ask(data_url()))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["usage"]["prompt_tokens"] > 64  # the image's tokens are in the prompt
    vision = seeing.backend.engine.vision
    assert vision is not None and vision.encoded >= 1


@pytest.mark.parametrize(
    "url", ["https://example.com/cat.png", "http://127.0.0.1:9/cat.png", "file:///etc/passwd", "ftp://x/y.png"]
)
def test_an_image_by_address_is_refused_without_a_fetch(seeing: Served, url: str) -> None:
    status, _headers, body = seeing.request("POST", "/v1/chat/completions", ask(url))
    assert status == 400
    error = json.loads(body)["error"]
    assert "does not fetch" in error["message"] and error["code"] == "unsupported_content"


def test_a_damaged_image_is_a_clear_400(seeing: Served) -> None:
    broken = "data:image/png;base64," + base64.b64encode(encode(quadrants(), "PNG")[:60]).decode()
    status, _headers, body = seeing.request("POST", "/v1/chat/completions", ask(broken))
    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_image"
    status, _headers, body = seeing.request("POST", "/v1/chat/completions", ask(data_url()))
    assert status == 200, body  # the model is still there


def test_a_model_that_cannot_see_says_so(engine: LlamaEngine, reader: ImageReader) -> None:
    served = serve(engine, reader)
    try:
        status, _headers, body = served.request("POST", "/v1/chat/completions", ask(data_url()))
    finally:
        served.server.stop()
        served.backend.close()
    assert status == 400
    assert "can't see images" in json.loads(body)["error"]["message"]
