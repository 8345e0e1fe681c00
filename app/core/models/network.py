"""The only door to the network: Hugging Face Hub requests, allowed one user action at a time.

The process runs with `HF_HUB_OFFLINE=1` and `HF_HUB_DISABLE_TELEMETRY=1`.
huggingface_hub's HTTP client is replaced by one whose request hook refuses
every request unless the calling thread is inside `online(...)`, which only an
explicit user action (browse, download) enters, and which records every
request and its answer in `ACTIVITY` for the model manager's network log.

The same hook is the one place that decides where the access token may go: a
request that carries it (a look-up, a header read, a download, or any redirect
of those) is refused unless it is encrypted or stays on this machine.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

import httpx2
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import _http as hf_http  # the client factory hook is public; its module is not

_LOG_LIMIT = 500


@dataclass
class Activity:
    """One request the app made."""

    when: float
    reason: str  # the user action that allowed it
    method: str
    url: str
    status: int | None = None  # None until answered (or when it failed before an answer)
    failure: str = ""  # why there was no answer ("address not found (DNS)", "timed out", …)

    def answer(self) -> str:
        """What the network log shows: the status code, why there was none, or that it is still waiting."""
        if self.status is not None:
            return str(self.status)
        return f"No answer: {self.failure}" if self.failure else "Waiting…"


class ActivityLog:
    """Every request, newest last; listeners hear about each change (from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[Activity] = []
        self.listeners: list[Callable[[Activity], None]] = []

    def add(self, entry: Activity) -> None:
        """Record a request."""
        with self._lock:
            self.entries.append(entry)
            del self.entries[:-_LOG_LIMIT]
        self._notify(entry)

    def _notify(self, entry: Activity) -> None:
        for listener in list(self.listeners):
            listener(entry)

    def snapshot(self) -> list[Activity]:
        """A copy of the entries."""
        with self._lock:
            return list(self.entries)


class NoAnswer(Enum):
    """Why a request got no answer, as far as the operating system tells."""

    DNS = "address not found (DNS)"
    REFUSED = "connection refused"
    OFFLINE = "no network connection"
    TIMED_OUT = "timed out"
    FAILED = "the connection failed"


_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def why_no_answer(exc: BaseException) -> NoAnswer:
    """Classify a failed request by the OS error under httpx's (a DNS failure, a refusal, no network, a timeout)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return NoAnswer.DNS
        if isinstance(seen, ConnectionRefusedError):
            return NoAnswer.REFUSED
        if isinstance(seen, OSError) and seen.errno in _OFFLINE_ERRNOS:
            return NoAnswer.OFFLINE
        if isinstance(seen, (httpx2.TimeoutException, TimeoutError)):
            return NoAnswer.TIMED_OUT
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()  # no OS error attached: the message is all there is
    if any(s in text for s in ("name or service", "nodename", "getaddrinfo", "name resolution")):
        return NoAnswer.DNS
    if "refused" in text:
        return NoAnswer.REFUSED
    if "unreachable" in text:
        return NoAnswer.OFFLINE
    return NoAnswer.FAILED


class InsecureTokenError(OfflineModeIsEnabled):
    """A request would have sent the access token unencrypted to another machine; it was not sent."""


def is_loopback(host: str) -> bool:
    """True for this machine's own addresses (where plain http stays on the machine)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def may_carry_token(url: str | httpx2.URL) -> bool:
    """True when a request to `url` may carry the access token: https, or plain http on loopback."""
    try:
        parsed = httpx2.URL(str(url))
    except httpx2.InvalidURL:
        return False
    return parsed.scheme == "https" or (parsed.scheme == "http" and is_loopback(parsed.host))


ACTIVITY = ActivityLog()
_allowed = threading.local()


@contextlib.contextmanager
def online(reason: str) -> Iterator[None]:
    """Let this thread reach the Hub for `reason` (a user action, shown in the network log)."""
    previous = getattr(_allowed, "reason", None)
    _allowed.reason = reason
    try:
        yield
    finally:
        _allowed.reason = previous


def _on_request(request: httpx2.Request) -> None:
    reason = getattr(_allowed, "reason", None)
    if reason is None:
        raise OfflineModeIsEnabled(f"Tern is offline; nothing asked to reach {request.url.host}.")
    if "authorization" in request.headers and not may_carry_token(request.url):
        raise InsecureTokenError(
            f"Your access token was not sent to {request.url.host}: the hub address uses plain http, which "
            "would show it to anyone on the network. Use an https:// address (or one on this computer)."
        )
    shown = request.url.copy_with(query=None, userinfo=b"")  # never a credential in the log
    entry = Activity(time.time(), reason, request.method, str(shown))
    request.extensions["tern_activity"] = entry
    ACTIVITY.add(entry)


def _on_response(response: httpx2.Response) -> None:
    entry = response.request.extensions.get("tern_activity")
    if isinstance(entry, Activity):
        entry.status = response.status_code
        ACTIVITY._notify(entry)


class _ExplainingTransport(httpx2.HTTPTransport):
    """The default transport, which also notes in the network log why a request got no answer."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request`; a failure is recorded on its log entry, then raised as before."""
        try:
            return super().handle_request(request)
        except Exception as exc:
            entry = request.extensions.get("tern_activity")
            if isinstance(entry, Activity):
                entry.failure = why_no_answer(exc).value
                ACTIVITY._notify(entry)
            raise


def _client() -> httpx2.Client:
    return httpx2.Client(
        event_hooks={"request": [_on_request], "response": [_on_response]},
        follow_redirects=True,
        timeout=None,
        transport=_ExplainingTransport(),
    )


def install() -> None:
    """Route all of huggingface_hub's requests through the gate (idempotent)."""
    if hf_http._GLOBAL_CLIENT_FACTORY is not _client:
        hf_http.set_client_factory(_client)
