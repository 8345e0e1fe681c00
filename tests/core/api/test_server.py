"""The endpoint over real sockets, answered by the real starter model: its locks, its limits, its manners.

The backend here is the one the app uses minus Qt: `ApiQueue` feeding one
thread that owns the engine, and the same `answer_chat`/`answer_completion`.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.core.api.answers import answer_chat, answer_completion
from app.core.api.jobs import ApiQueue, Job
from app.core.api.protocol import ApiError, ChatCall, CompletionCall, EmbeddingCall
from app.core.api.server import MAX_BODY_BYTES, ApiConfig, ApiServer, RequestRecord
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine
from app.core.images import ImageReader

KEY = "tern-test-key"
MODEL = "starter"


class EngineBackend:
    """One thread owns the engine and runs API jobs, one at a time, as the inference thread does."""

    def __init__(self, engine: LlamaEngine, capacity: int = 8, images: ImageReader | None = None) -> None:
        self.engine = engine
        self.images = images  # prepares a request's images, as the turn service's reader does
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.queue = ApiQueue(self._work.put, capacity)
        self.busy = threading.Event()  # set while a job runs
        self.finished = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (run := self._work.get()) is not None:
            self.busy.set()
            try:
                run()
            except Exception:
                pass  # the job was failed with a 500; the thread goes on, as the app's does
            finally:
                self.busy.clear()
                self.finished += 1

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(30)

    def sampling_defaults(self) -> SamplingParams:
        return SamplingParams(temperature=0.0)

    def model_ids(self) -> list[str]:
        return [MODEL]

    def start_chat(self, call: ChatCall, client: str) -> tuple[Job, str]:
        reader = (lambda: self.images) if self.images is not None else None
        job = Job(lambda j: answer_chat(self.engine, call, j, MODEL, 0, reader), client)
        self.queue.enqueue(job)
        return job, MODEL

    def start_completion(self, call: CompletionCall, client: str) -> tuple[Job, str]:
        job = Job(lambda j: answer_completion(self.engine, call, j), client)
        self.queue.enqueue(job)
        return job, MODEL

    def embed(self, call: EmbeddingCall) -> tuple[list[Any], int, str]:
        raise ApiError(400, "No embedding model is chosen.")


class Served:
    def __init__(self, server: ApiServer, backend: EngineBackend, records: list[RequestRecord]) -> None:
        self.server, self.backend, self.records = server, backend, records
        self.port = server.port

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: str | None = KEY,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        sent.update(headers or {})
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        content = response.read()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, content

    def raw(self, data: bytes, wait_s: float = 10.0) -> bytes:
        """Send bytes as they are; return everything the server answers before it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait_s) as s:
            s.sendall(data)
            return _read_all(s)


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def served(engine: LlamaEngine) -> Iterator[Served]:
    backend = EngineBackend(engine)
    records: list[RequestRecord] = []
    server = ApiServer(ApiConfig(0, KEY, frozenset({"http://localhost:3000"})), backend, records.append)
    server.start()
    try:
        yield Served(server, backend, records)
    finally:
        server.stop()
        backend.close()


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 24}


def test_a_chat_answer_comes_from_the_model_with_usage(served: Served) -> None:
    status, headers, body = served.request("POST", "/v1/chat/completions", CHAT)
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["object"] == "chat.completion" and answer["model"] == MODEL
    assert answer["choices"][0]["message"]["content"].strip()
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] > 0 and answer["usage"]["prompt_tokens"] > 10
    assert served.records[-1].status == 200 and served.records[-1].completion_tokens > 0


def test_a_plain_completion_continues_the_text(served: Served) -> None:
    status, _, body = served.request("POST", "/v1/completions", {"prompt": "One, two, three,", "max_tokens": 6})
    answer = json.loads(body)
    assert status == 200 and answer["object"] == "text_completion"
    assert answer["usage"]["completion_tokens"] == 6 and answer["choices"][0]["finish_reason"] == "length"


def test_a_stream_is_server_sent_events_ending_with_done(served: Served) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, content = served.request("POST", "/v1/chat/completions", body)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = [line.removeprefix(b"data: ") for line in content.split(b"\n\n") if line]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_models_lists_the_loaded_model(served: Served) -> None:
    status, _, body = served.request("GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == [MODEL]
    assert served.request("GET", f"/v1/models/{MODEL}")[0] == 200
    assert served.request("GET", "/v1/models/other")[0] == 404


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("wrong-key", 401), (KEY + "x", 401), (KEY, 200)],
)
def test_the_key_is_required(served: Served, key: str | None, status: int) -> None:
    got, headers, body = served.request("GET", "/v1/models", key=key)
    assert got == status
    if status == 401:
        assert "API key" in json.loads(body)["error"]["message"] and headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:{port}", "127.0.0.1", "127.0.0.1:1", "localhost.evil:{port}"]
)
def test_a_foreign_host_is_refused_whatever_the_key(served: Served, host: str) -> None:
    raw = (
        f"GET /v1/models HTTP/1.1\r\nHost: {host.format(port=served.port)}\r\n"
        f"Authorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = served.raw(raw)
    assert answer.startswith(b"HTTP/1.1 403") and b"127.0.0.1, localhost or [::1]" in answer


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_loopback_names_are_let_in(served: Served, host: str) -> None:
    raw = (
        f"GET /v1/models HTTP/1.1\r\nHost: {host.format(port=served.port)}\r\n"
        f"Authorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
    ).encode()
    assert served.raw(raw).startswith(b"HTTP/1.1 200")


def test_a_refused_body_is_never_read_as_the_next_request(served: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "GET /v1/models HTTP/1.1"}]})
    conn.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer wrong", "Content-Type": "x"})
    refused = conn.getresponse()
    refused.read()
    assert refused.status == 401 and refused.getheader("Connection") == "close"
    conn.close()
    kept = http.client.HTTPConnection("127.0.0.1", served.port, timeout=120)
    for _ in range(2):  # a request read whole keeps the connection for the next
        kept.request(
            "POST", "/v1/completions", json.dumps({"prompt": "A", "max_tokens": 1}), {"Authorization": f"Bearer {KEY}"}
        )
        answer = kept.getresponse()
        answer.read()
        assert answer.status == 200 and answer.getheader("Connection") != "close"
    kept.close()


def test_a_web_page_is_refused_unless_its_origin_is_allowed(served: Served) -> None:
    status, headers, _ = served.request("GET", "/v1/models", headers={"Origin": "https://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = served.request("GET", "/v1/models")
    assert status == 200 and "access-control-allow-origin" not in headers  # no CORS without an origin
    status, headers, _ = served.request("GET", "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:3000"
    status, headers, _ = served.request(
        "OPTIONS", "/v1/chat/completions", headers={"Origin": "http://localhost:3000"}, key=None
    )
    assert status == 204 and "Authorization" in headers["access-control-allow-headers"]


def test_an_oversized_body_is_refused_unread(served: Served) -> None:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    answer = served.raw(head + b"{")
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than 8 MB" in answer


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"HELLO\r\n\r\n", b"400"),
        (b"GET /v1/models HTTP/9.9\r\n\r\n", b"505"),
        (b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", b"431"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"414"),
    ],
)
def test_malformed_http_gets_a_clean_refusal(served: Served, data: bytes, status: bytes) -> None:
    answer = served.raw(data)
    assert answer.startswith(b"HTTP/1.1 " + status) or answer.startswith(b"HTTP/1.0 " + status)
    assert b'"error"' in answer  # OpenAI's error shape, even here


def test_a_bad_request_body_says_what_is_wrong(served: Served) -> None:
    status, _, body = served.request("POST", "/v1/chat/completions", b"{broken")
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]["message"]
    status, _, body = served.request("POST", "/v1/chat/completions", {**CHAT, "messages": [{"role": "x"}]})
    assert status == 400 and "role" in json.loads(body)["error"]["message"]
    status, _, body = served.request("POST", "/v1/chat/completions", {**CHAT, "n": 3})
    assert status == 400 and json.loads(body)["error"]["code"] == "unsupported_parameter"
    status, _, body = served.request("POST", "/v1/embeddings", {"input": "x"})
    assert status == 400 and "No embedding model" in json.loads(body)["error"]["message"]
    assert served.request("GET", "/v2/anything")[0] == 404
    assert served.request("GET", "/v1/chat/completions")[0] == 405


def test_a_prompt_longer_than_the_context_is_refused_with_the_numbers(served: Served) -> None:
    long = "word " * 5000  # the engine fixture's context holds 2,048 tokens
    status, _, body = served.request("POST", "/v1/completions", {"prompt": long, "max_tokens": 4})
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "context_length_exceeded" and "2,048" in error["message"]


def test_a_slow_client_is_cut_off_and_others_are_still_served(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.api import server as server_module

    monkeypatch.setattr(server_module, "REQUEST_DEADLINE_S", 1.5)
    s = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    began = time.monotonic()
    s.sendall(b"GET /v1/models HTTP/1.1\r\n")
    closed = False
    while time.monotonic() - began < 20:  # one header byte every half second: each read is quick, the whole is not
        try:
            s.sendall(b"X")
            time.sleep(0.5)
        except OSError:
            closed = True
            break
        if served.request("GET", "/v1/models")[0] != 200:
            break
    if not closed:  # the server shut the socket: the next read sees the end
        s.settimeout(5)
        try:
            closed = s.recv(100) == b""
        except OSError:
            closed = True
    s.close()
    assert closed and time.monotonic() - began < 10
    assert served.request("GET", "/v1/models")[0] == 200


def test_fifty_clients_at_once_are_each_answered_or_refused_cleanly(served: Served) -> None:
    results: list[int] = []
    retry_after: list[int] = []
    lock = threading.Lock()
    body = {**CHAT, "max_tokens": 4}

    def client(i: int) -> None:
        try:
            status, headers, content = served.request("POST", "/v1/chat/completions", body)
            json.loads(content)
            if status == 429:
                retry_after.append(int(headers["retry-after"]))
        except Exception as exc:  # a hang-up without an answer is not clean
            status = -1
            print(i, repr(exc))
        with lock:
            results.append(status)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(results) == 50 and set(results) <= {200, 429}
    assert results.count(200) >= 9  # the running job and a full line behind it
    assert results.count(429) >= 1
    retry = [r for r in served.records if r.status == 429]
    assert retry and "busy" in retry[0].note and retry_after and min(retry_after) >= 1
    assert served.request("GET", "/v1/models")[0] == 200  # still up


def test_a_client_that_hangs_up_mid_stream_frees_the_model(served: Served) -> None:
    body = {**CHAT, "max_tokens": 2000, "stream": True, "messages": [{"role": "user", "content": "Count to 900."}]}
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", served.port), timeout=60)
    s.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    seen = b""
    while seen.count(b"data: ") < 4:
        seen += s.recv(4096)
    s.close()
    hung_up = time.monotonic()
    while served.backend.busy.is_set() and time.monotonic() - hung_up < 30:
        time.sleep(0.01)
    assert not served.backend.busy.is_set()
    freed_s = time.monotonic() - hung_up
    assert freed_s < 5  # within a token or two (the starter decodes tens per second)
    record = next(r for r in reversed(served.records) if r.path == "/v1/chat/completions")
    assert record.status in (200, 499) and "went away" in record.note
    status, _, _ = served.request("POST", "/v1/chat/completions", {**CHAT, "max_tokens": 2})
    assert status == 200


def test_with_no_model_loaded_the_answer_says_so() -> None:
    backend = EngineBackend(LlamaEngine())  # nothing loaded
    server = ApiServer(ApiConfig(0, KEY), backend)
    server.start()
    try:
        status, _, body = Served(server, backend, []).request("POST", "/v1/chat/completions", CHAT)
        error = json.loads(body)["error"]
        assert status == 503 and error["code"] == "model_not_loaded" and "load a model" in error["message"]
    finally:
        server.stop()
        backend.close()


def test_without_a_key_the_host_and_origin_checks_still_hold(engine: LlamaEngine) -> None:
    backend = EngineBackend(engine)
    server = ApiServer(ApiConfig(0, None), backend)
    server.start()
    try:
        open_door = Served(server, backend, [])
        assert open_door.request("GET", "/v1/models", key=None)[0] == 200
        assert open_door.request("GET", "/v1/models", key=None, headers={"Origin": "https://a.example"})[0] == 403
        raw = f"GET /v1/models HTTP/1.1\r\nHost: rebind.example:{server.port}\r\nConnection: close\r\n\r\n"
        assert open_door.raw(raw.encode()).startswith(b"HTTP/1.1 403")
    finally:
        server.stop()
        backend.close()


def test_the_endpoint_listens_on_loopback_only(served: Served) -> None:
    bound = {s.server_address[0] for s in served.server._servers}
    assert bound <= {"127.0.0.1", "::1"} and "127.0.0.1" in bound
    outside = [a for a in _own_addresses() if not a.startswith(("127.", "::1"))]
    for address in outside:  # this machine's other addresses do not answer
        with pytest.raises(OSError):
            socket.create_connection((address, served.port), timeout=2).close()


def _own_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})
