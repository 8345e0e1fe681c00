"""Tern's OpenAI-compatible HTTP endpoint, on this machine only, with nothing open by default.

Every request passes, in this order, before anything else reads it:
1. its `Host` must be a loopback name or address with this port (a web page that
   rebinds its own domain name to 127.0.0.1 sends its own name: refused, 403);
2. a request with an `Origin` (a web page's) is refused unless the user allowed
   that origin; only then are CORS headers sent;
3. `Authorization: Bearer <key>` must match, compared in constant time (401),
   unless the user turned the key off.
Bodies need a Content-Length within `MAX_BODY_BYTES` (413); headers are capped
in number and length by `http.client` (431); a request line, its headers and
its body must arrive within `REQUEST_DEADLINE_S` (a slow client is cut off);
at most `MAX_CONNECTIONS` connections are served at once (503 for more).

Each connection gets its own thread, which only reads and writes its socket:
generation happens on the inference thread through a `Backend`, one job at a
time (see jobs.py). The request's thread watches its client while it waits,
and a client that goes away cancels its job before the next token.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import numpy as np

from app.core.api import protocol
from app.core.api.jobs import Failed, Finished, Job, Piece
from app.core.api.protocol import ApiError, ChatCall, CompletionCall, EmbeddingCall
from app.core.engine.generation import GenerationStats, SamplingParams

log = logging.getLogger("tern.api")

MAX_BODY_BYTES = 8 << 20
MAX_CONNECTIONS = 64
REQUEST_DEADLINE_S = 20.0  # request line, headers and body; also how long an idle kept-alive connection stays
POLL_S = 0.05  # how often a waiting request looks at its client
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class ApiConfig:
    """How the endpoint answers: its port, its key (None: no key asked), and origins allowed to call it."""

    port: int
    key: str | None
    origins: frozenset[str] = frozenset()


@dataclass
class RequestRecord:
    """One request, as the request log shows it."""

    when: float
    client: str
    method: str
    path: str
    status: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: float = 0.0
    note: str = ""  # why it was refused, or how it ended


class Backend(Protocol):
    """What the endpoint serves; called on request threads."""

    def sampling_defaults(self) -> SamplingParams:
        """How answers are sampled where a request does not say (the user's settings)."""
        ...

    def model_ids(self) -> list[str]:
        """The loaded model's id first, then the embedding model's, if any."""
        ...

    def start_chat(self, call: ChatCall, client: str) -> tuple[Job, str]:
        """Queue a chat answer; returns its job and the model id (raises ApiError)."""
        ...

    def start_completion(self, call: CompletionCall, client: str) -> tuple[Job, str]:
        """Queue a plain completion; returns its job and the model id (raises ApiError)."""
        ...

    def embed(self, call: EmbeddingCall) -> tuple[list[np.ndarray[Any, Any]], int, str]:
        """Vectors, the tokens they read, and the model id (raises ApiError)."""
        ...


def host_allowed(host: str | None, port: int) -> bool:
    """True for a loopback name or address with exactly this port."""
    if not host:
        return False
    name, sep, given = host.strip().lower().rpartition(":")
    return bool(sep) and given == str(port) and name.rstrip(".") in LOOPBACK_HOSTS


def key_matches(header: str | None, key: str) -> bool:
    """True when the Authorization header carries the key (compared in constant time)."""
    return hmac.compare_digest((header or "").strip().encode(), f"Bearer {key}".encode())


def client_name(user_agent: str | None) -> str:
    """A short name for the client: the first product of its User-Agent."""
    first = (user_agent or "").strip().split(" ")[0]
    return first.split("/")[0][:40] or "unknown client"


class _Gone(Exception):  # noqa: N818 (an event, not an error)
    """The client closed its connection."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: ApiServer, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.api = api
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.api.slots.acquire(blocking=False):  # refuse at once rather than queue without bound
            body = json.dumps(ApiError(503, "Too many connections.", kind="server_error").body()).encode()
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                    b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.api.slots.release()


class ApiServer:
    """The endpoint on 127.0.0.1 and ::1; `start` binds (raising OSError when the port is taken), `stop` closes."""

    def __init__(
        self, config: ApiConfig, backend: Backend, on_record: Callable[[RequestRecord], None] = lambda _r: None
    ) -> None:
        self.config = config
        self.backend = backend
        self.on_record = on_record
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one chosen for port 0)."""
        return self._servers[0].server_address[1] if self._servers else self.config.port

    @property
    def address(self) -> str:
        """The base URL clients use."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Listen on 127.0.0.1, and on ::1 with the same port where this machine has IPv6."""
        first = _Server(("127.0.0.1", self.config.port), self, socket.AF_INET)
        self._servers = [first]
        port = first.server_address[1]
        self.config = ApiConfig(port, self.config.key, self.config.origins)
        try:
            self._servers.append(_Server(("::1", port), self, socket.AF_INET6))
        except OSError as exc:  # no IPv6 here, or the port is taken there: 127.0.0.1 still serves
            log.info("Not listening on [::1]:%d: %s", port, exc)
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="local-api", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("Local API listening on %s", self.address)

    def stop(self) -> None:
        """Stop listening and close the sockets (requests being answered end with their jobs)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(2.0)
        self._servers, self._threads = [], []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Tern"
    sys_version = ""
    timeout = REQUEST_DEADLINE_S  # no single read waits longer
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # One request
    def handle_one_request(self) -> None:
        """Read and answer one request; a client too slow to send it is cut off at the deadline."""
        self._deadline = threading.Timer(REQUEST_DEADLINE_S, self._cut)
        self._deadline.daemon = True
        self._deadline.start()
        self._record: RequestRecord | None = None
        self._cors = ""
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _cut(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while parsing (malformed request line, too many headers) in OpenAI's format too."""
        self.close_connection = True
        self.request_version = self.protocol_version  # no HTTP/0.9 here: even a garbled request gets a status line
        self._send_json(code, ApiError(code, message or self.responses.get(code, ("Error",))[0]).body())

    def _serve(self) -> None:
        api = self.server.api
        config = api.config
        path = self.path.split("?", 1)[0]
        record = self._record = RequestRecord(
            time.time(), client_name(self.headers.get("User-Agent")), self.command, path[:200]
        )
        # Refused before its body is read, a request's body would be read as the next request: close instead.
        self._keep_alive = not self.close_connection
        if self.headers.get("Content-Length", "0").strip("0 ") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        try:
            self._admit(config)
            if self.command == "OPTIONS":
                self._deadline.cancel()
                self._preflight()
                return
            body = self._body() if self.command == "POST" else b""
            self._deadline.cancel()  # the request is in; answering may take minutes
            self._route(path, body, record.client)
        except ApiError as exc:
            record.note = exc.message
            self._send_json(exc.status, exc.body(), exc.retry_after_s)
        except _Gone:
            record.status = record.status or 499
            record.note = "The client went away; its answer was stopped."
            self.close_connection = True
        except OSError:  # the client went away while its answer was written
            record.status = record.status or 499
            self.close_connection = True
        finally:
            api.on_record(record)

    def _admit(self, config: ApiConfig) -> None:
        if not host_allowed(self.headers.get("Host"), config.port):
            raise ApiError(403, "Requests must be addressed to 127.0.0.1, localhost or [::1] with this port.")
        origin = self.headers.get("Origin")
        if origin is not None:
            if origin.rstrip("/") not in config.origins:
                raise ApiError(
                    403, f"Requests from {origin[:100]} are not allowed; allow it in Tern's Local API settings."
                )
            self._cors = origin.rstrip("/")
        if self.command == "OPTIONS":
            return
        if config.key is not None and not key_matches(self.headers.get("Authorization"), config.key):
            raise ApiError(
                401,
                "A valid API key is needed: send 'Authorization: Bearer <key>' with the key from Tern's Local API.",
                code="invalid_api_key",
            )

    def _preflight(self) -> None:
        if not self._cors:
            raise ApiError(405, "OPTIONS is only for allowed web origins.")
        self._start(204, {"Content-Length": "0"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length (chunked bodies are not accepted).")
        raw = self.headers.get("Content-Length")
        if raw is None or not raw.strip().isdigit():
            self.close_connection = True
            raise ApiError(411, "A Content-Length header is needed.")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # its body is not read
            raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES >> 20} MB.")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise _Gone
        self.close_connection = not self._keep_alive  # read whole: the connection may serve another request
        return body

    def _route(self, path: str, body: bytes, client: str) -> None:
        backend = self.server.api.backend
        if path.rstrip("/") == "/v1/models" and self.command == "GET":
            created = int(time.time())
            data = [protocol.model_entry(m, created) for m in backend.model_ids()]
            self._send_json(200, {"object": "list", "data": data})
        elif path.startswith("/v1/models/") and self.command == "GET":
            wanted = path.removeprefix("/v1/models/")
            if wanted not in backend.model_ids():
                raise ApiError(404, f"The model '{wanted[:200]}' is not available.", code="model_not_found")
            self._send_json(200, protocol.model_entry(wanted, int(time.time())))
        elif path == "/v1/chat/completions" and self.command == "POST":
            call = protocol.parse_chat(protocol.read_json(body), backend.sampling_defaults())
            job, model = backend.start_chat(call, client)
            self._answer(job, model, call.stream, call.include_usage, chat=True)
        elif path == "/v1/completions" and self.command == "POST":
            plain = protocol.parse_completion(protocol.read_json(body), backend.sampling_defaults())
            job, model = backend.start_completion(plain, client)
            self._answer(job, model, plain.stream, plain.include_usage, chat=False)
        elif path == "/v1/embeddings" and self.command == "POST":
            self._embeddings(protocol.parse_embedding(protocol.read_json(body)))
        elif path in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            raise ApiError(405, f"{self.command} is not allowed on {path}.")
        else:
            raise ApiError(404, f"There is no {path[:200]} here.", code="not_found")

    def _embeddings(self, call: EmbeddingCall) -> None:
        vectors, tokens, model = self.server.api.backend.embed(call)
        data = []
        for i, v in enumerate(vectors):
            value: Any = (
                base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode() if call.base64 else v.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        if self._record:
            self._record.prompt_tokens = tokens
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # Answers
    def _answer(self, job: Job, model: str, stream: bool, include_usage: bool, chat: bool) -> None:
        rid = protocol.new_id("chatcmpl" if chat else "cmpl")
        if not stream:
            pieces: list[str] = []
            end = self._wait(job, pieces.append)
            text, stats = "".join(pieces), end.stats
            answer = protocol.chat_answer(rid, model, text, stats, end.calls) if chat else None
            self._send_json(200, answer or protocol.completion_answer(rid, model, text, stats))
            self._note(stats)
            return
        started = False

        def send(text: str) -> None:
            nonlocal started
            if not started:
                started = True
                self._start(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
                self.close_connection = True  # the stream ends with the connection
                if chat:
                    self._event(protocol.chat_chunk(rid, model, {"role": "assistant", "content": ""}))
            if text:
                delta = protocol.chat_chunk(rid, model, {"content": text}) if chat else None
                self._event(delta or protocol.completion_chunk(rid, model, text))

        try:
            ended = self._wait(job, send)
        except ApiError as exc:
            if not started:  # a failure before the first piece is a plain error answer with its own status
                raise
            self._event(exc.body())  # after it, the stream carries the error, then ends
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            if self._record is not None:
                self._record.note = exc.message
            return
        send("")
        stats = ended.stats
        if ended.calls:  # known once each call is written whole: sent together, before the end
            self._event(protocol.chat_chunk(rid, model, {"tool_calls": protocol.tool_calls(ended.calls, True)}))
        finish = protocol.finish_reason(stats, ended.calls)
        self._event(
            protocol.chat_chunk(rid, model, {}, finish) if chat else protocol.completion_chunk(rid, model, "", finish)
        )
        if include_usage:
            self._event(protocol.usage_chunk(rid, model, stats, chat))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self._note(stats)

    def _wait(self, job: Job, on_piece: Callable[[str], None]) -> Finished:
        """Pass the job's pieces on until it ends, cancelling it when the client goes away."""
        try:
            while True:
                event = job.next_event(POLL_S)
                if event is None or isinstance(event, Piece):
                    if self._client_gone():
                        raise _Gone
                    if isinstance(event, Piece):
                        on_piece(event.text)
                    continue
                if isinstance(event, Finished):
                    return event
                assert isinstance(event, Failed)
                raise event.error
        except (_Gone, OSError):  # closed, reset, or not reading for REQUEST_DEADLINE_S
            job.cancel.stop("The client went away.")
            raise _Gone from None

    def _client_gone(self) -> bool:
        """True once the client has closed its side (a read that does not wait sees the end of the stream)."""
        sock = self.connection
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0)  # portable and without select()'s limit on descriptor numbers
            return bool(sock.recv(1, socket.MSG_PEEK) == b"")
        except (BlockingIOError, InterruptedError):
            return False  # nothing to read: still there
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)

    def _note(self, stats: GenerationStats) -> None:
        if self._record is not None:
            self._record.prompt_tokens = stats.prompt_tokens
            self._record.cached_tokens = stats.prompt_tokens - stats.prompt_evaluated
            self._record.completion_tokens = stats.completion_tokens
            self._record.duration_ms = stats.total_ms

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n")
        self.wfile.flush()

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self._cors:
            self.send_header("Access-Control-Allow-Origin", self._cors)
            self.send_header("Vary", "Origin")
            if self.command == "OPTIONS":
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
                self.send_header("Access-Control-Max-Age", "600")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self._record is not None:
            self._record.status = status

    def _send_json(self, status: int, data: dict[str, Any], retry_after_s: int | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="Tern"'
        if retry_after_s is not None:
            headers["Retry-After"] = str(retry_after_s)
        try:
            self._start(status, headers)
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
