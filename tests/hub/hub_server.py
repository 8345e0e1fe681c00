"""A loopback Hugging Face Hub: the part of the protocol huggingface_hub 2.4.0 speaks, with injectable faults.

Served routes (model repos only, repo ids are "org/name"):

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: model info; `?blobs=true`
  (what `model_info(files_metadata=True)` sends) adds size, blob id and LFS data to the siblings,
  `?expand=...` keeps only the named properties.
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the tree listing, honouring `recursive` and `expand`.
- `HEAD`/`GET /{repo}/resolve/{rev}/{filename}`: the file, with the hub's metadata headers and
  `Range` support. The file is served directly (the real hub redirects LFS files to a CDN), and no
  `X-Xet-*` header is ever sent, so the client always falls back to plain HTTP.

As on the real hub, a gated repo's info and tree are public; only its files need a token.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hub.hub_data import Blob, Repo, describe, fake_commit, is_lfs, model_info, parse_range, tree

CHUNK = 64 * 1024
GATED_MESSAGE = (
    "Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in."
)


@dataclass
class Fault:
    """A misbehaviour for the next `times` GET-with-body requests of a file."""

    times: int = 1
    drop_at: float | None = None  # send this fraction of the requested body, then close
    reset: bool = False  # with drop_at: close with a TCP reset instead of a clean FIN
    corrupt_at: int | None = None  # flip the byte at this absolute offset
    stall_after: int | None = None  # send this many body bytes, then go silent ...
    stall_s: float = 30.0  # ... for this long, then close
    rate: float | None = None  # bytes per second
    status: int | None = None  # answer with this status instead of the file


@dataclass(frozen=True)
class Request:
    """One request the server answered."""

    method: str
    path: str  # without the query
    range_header: str | None
    status: int
    time: float  # time.monotonic() when the request arrived
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Faults:
    """Thread-safe table of filename → Fault; each GET of a faulted file uses up one of its `times`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def __setitem__(self, filename: str, fault: Fault) -> None:
        with self._lock:
            self._faults[filename] = fault

    def __getitem__(self, filename: str) -> Fault:
        with self._lock:
            return self._faults[filename]

    def __delitem__(self, filename: str) -> None:
        with self._lock:
            del self._faults[filename]

    def __contains__(self, filename: object) -> bool:
        with self._lock:
            return filename in self._faults

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def take(self, filename: str) -> Fault | None:
        """The fault for this request of `filename` (a copy), counting it against `times`."""
        with self._lock:
            fault = self._faults.get(filename)
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                del self._faults[filename]
            return replace(fault)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: HubServer) -> None:
        self.hub = hub
        super().__init__((hub.host, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer are routine here; anything else is still reported."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _CutShortError(Exception):
    """The answer was cut short on purpose (a fault, or the server stopping)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    # --- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the hub keeps its own request log."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Answer with `code`, and log the request."""
        super().send_response(code, message)
        url = urlsplit(getattr(self, "path", ""))
        headers = dict(self.headers.items()) if getattr(self, "headers", None) else {}
        method = self.command or ""
        request = Request(method, unquote(url.path), headers.get("Range"), code, self._arrived, url.query, headers)
        self.server.hub._log(request)

    def handle_one_request(self) -> None:
        self._arrived = time.monotonic()
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, headers: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        self._send(200, headers, json.dumps(data).encode())

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _abort(self, reset: bool = False) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        raise _CutShortError

    # --- routing --------------------------------------------------------------------------

    def _dispatch(self, body: bool) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        expand = parse_qs(url.query).get("expand", [])
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api(hub, f"{parts[2]}/{parts[3]}", parts[4:], query, expand)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(hub, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), body)
            else:
                self._error(404, None, "Sorry, we can't find the page you are looking for.")
        except _CutShortError:
            pass
        except OSError:  # the client went away mid-answer
            self.close_connection = True

    def _repo(self, hub: HubServer, repo_id: str, revision: str) -> Repo | None:
        repo = hub._repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if revision not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    def _api(self, hub: HubServer, repo_id: str, rest: list[str], query: dict[str, str], expand: list[str]) -> None:
        if not rest or (rest[0] == "revision" and len(rest) == 2):
            repo = self._repo(hub, repo_id, rest[1] if rest else "main")
            if repo is not None:
                self._json(model_info(repo, query.get("blobs", "").lower() == "true", expand))
        elif rest[0] == "tree" and len(rest) >= 2:
            repo = self._repo(hub, repo_id, rest[1])
            if repo is None:
                return
            path = "/".join(rest[2:]).strip("/")
            recursive = query.get("recursive", "").lower() == "true"
            entries = tree(repo, path, recursive, query.get("expand", "").lower() == "true")
            if entries is None:
                self._error(404, "EntryNotFound", f'{path} does not exist on "{rest[1]}"', repo.sha)
            else:
                self._json(entries)
        else:
            self._error(404, None, "Sorry, we can't find the page you are looking for.")

    def _resolve(self, hub: HubServer, repo_id: str, revision: str, filename: str, body: bool) -> None:
        if hub.redirect_to is not None:
            self._send(302, {"Location": hub.redirect_to + self.path})
            return
        repo = self._repo(hub, repo_id, revision)
        if repo is None:
            return
        if repo.gated:
            auth = self.headers.get("Authorization")
            if auth != f"Bearer {hub.valid_token}":
                message = GATED_MESSAGE.format(repo=repo_id)
                self._error(401 if auth is None else 403, "GatedRepo", message, repo.sha)
                return
        blob = repo.blobs.get(filename)
        if blob is None:
            self._error(404, "EntryNotFound", "Entry not found", repo.sha)
            return
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{filename.rsplit("/", 1)[-1]}"',
        }
        if blob.sha256 is not None:
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(blob.size)
        fault = hub.faults.take(filename) if body else None
        if fault is not None and fault.status is not None:
            self._error(fault.status, None, f"Injected failure ({fault.status})", repo.sha)
            return
        try:
            span = parse_range(self.headers.get("Range") if body else None, blob.size)
        except ValueError:
            self._error(416, None, "Requested Range Not Satisfiable", repo.sha)
            return
        first, last = span if span is not None else (0, blob.size - 1)
        self.send_response(206 if span is not None else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        if span is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{blob.size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        if body:
            self._stream(hub, repo.files[filename], first, last - first + 1, fault or Fault(times=0))

    def _stream(self, hub: HubServer, path: Path, start: int, length: int, fault: Fault) -> None:
        drop_after = int(length * fault.drop_at) if fault.drop_at is not None else None
        chunk = CHUNK if fault.rate is None else max(1, min(CHUNK, int(fault.rate / 20)))
        began = time.monotonic()
        sent = 0
        with path.open("rb") as f:
            f.seek(start)
            while sent < length:
                if hub._stopping.is_set():
                    self._abort()
                if fault.stall_after is not None and sent >= fault.stall_after:
                    hub._stopping.wait(fault.stall_s)
                    self._abort()
                if drop_after is not None and sent >= drop_after:
                    self._abort(fault.reset)
                n = min(chunk, length - sent)
                for limit in (fault.stall_after, drop_after):
                    if limit is not None:
                        n = min(n, limit - sent)
                data = f.read(n)
                if fault.corrupt_at is not None and start + sent <= fault.corrupt_at < start + sent + len(data):
                    i = fault.corrupt_at - start - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                self.wfile.write(data)
                sent += len(data)
                if fault.rate is not None:
                    delay = began + sent / fault.rate - time.monotonic()
                    if delay > 0 and hub._stopping.wait(delay):
                        self._abort()


class HubServer:
    """A Hugging Face Hub on 127.0.0.1 (or `host`), serving local files as repos, with injectable faults."""

    def __init__(
        self,
        repos: dict[str, dict[str, Path]],
        *,
        gated: Iterable[str] = (),
        commits: dict[str, str] | None = None,
        info: dict[str, dict[str, Any]] | None = None,
        valid_token: str = "hf_test_token",
        host: str = "127.0.0.1",
    ) -> None:
        gated = set(gated)
        self.host = host  # another of this machine's addresses makes a "remote" plain-http mirror
        self.redirect_to: str | None = None  # answer every file request with a redirect to this base URL
        for repo_id in {*repos, *gated}:
            if repo_id.count("/") != 1:
                raise ValueError(f"repo ids are 'org/name': {repo_id!r}")
        self.valid_token = valid_token
        self.faults = Faults()
        self.requests: list[Request] = []
        self._repos = {
            repo_id: Repo(
                repo_id,
                dict(files),
                {name: describe(path, is_lfs(name, path.stat().st_size)) for name, path in files.items()},
                (commits or {}).get(repo_id) or fake_commit(repo_id),
                repo_id in gated,
                (info or {}).get(repo_id, {}),
            )
            for repo_id, files in repos.items()
        }
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Listen on a free loopback port and serve from a daemon thread."""
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection, even mid-stall (returns promptly)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests look at ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:PORT`."""
        if self._httpd is None:
            raise RuntimeError("the hub server is not running")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def commit(self, repo_id: str) -> str:
        """The commit sha the repo is at."""
        return self._repos[repo_id].sha

    def blob(self, repo_id: str, filename: str) -> Blob:
        """Size and hashes of a served file."""
        return self._repos[repo_id].blobs[filename]

    def path(self, repo_id: str, filename: str) -> Path:
        """The local file behind a served file."""
        return self._repos[repo_id].files[filename]

    def requests_for(self, filename: str, method: str = "GET") -> list[Request]:
        """Logged `method` requests of a file's resolve URL, oldest first."""
        with self._lock:
            logged = list(self.requests)
        return [r for r in logged if r.method == method and "/resolve/" in r.path and r.path.endswith(f"/{filename}")]

    def clear_requests(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self.requests.clear()

    # --- used by the handler --------------------------------------------------------------

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
