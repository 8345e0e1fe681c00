"""The local API service: Tern's OpenAI-compatible endpoint for IDEs, off until the user turns it on.

The server (`app.core.api.server`) answers each connection on a thread of its
own; generation goes to the turn service's inference thread, one API job at a
time, through `ApiQueue`, so the chat window's questions wait for at most the
job that is running. The key is read from the keychain on this service's own
thread ("local-api"), which also binds and closes the sockets: the GUI thread
never waits on the keychain or a socket.

The model the API serves is the one the window has loaded; its id is the
file's name without ".gguf". Embeddings come from the embedding model chosen
for documents, on the embeddings thread.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.core.api import DEFAULT_PORT, api_key
from app.core.api.answers import answer_chat, answer_completion, no_model
from app.core.api.jobs import ApiQueue, Job
from app.core.api.protocol import ApiError, ChatCall, CompletionCall, EmbeddingCall
from app.core.api.server import ApiConfig, ApiServer, RequestRecord
from app.core.chat.message import ChatMessage
from app.core.engine.generation import SamplingParams
from app.core.engine.options import LoadedModel
from app.services.worker_host import WorkerHost

if TYPE_CHECKING:
    from app.services.documents import DocumentService
    from app.services.history import HistoryService
    from app.services.turns import TurnService

log = logging.getLogger("tern.api")
LOG_LIMIT = 500


@dataclass(frozen=True)
class ApiSettings:
    """What the user chose in Settings → Local API."""

    enabled: bool = False
    port: int = DEFAULT_PORT
    require_key: bool = True
    origins: frozenset[str] = frozenset()
    keep_history: bool = False  # API conversations go into the encrypted history too


@dataclass(frozen=True)
class ApiState:
    """Where the endpoint stands, for the settings and the status bar."""

    running: bool = False
    address: str = ""
    key: str = ""
    key_remembered: bool = True
    require_key: bool = True
    error: str = ""  # why it is not running although it was turned on


def model_id(loaded: LoadedModel) -> str:
    """The id a client asks for: the model file's name without ".gguf"."""
    name = loaded.info.path.name
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


class LocalApiService(QObject):
    """Starts and stops the endpoint and answers its requests; signals arrive on the GUI thread."""

    state_changed = Signal(object)  # ApiState
    serving_changed = Signal(str)  # the client being answered now, "" when none
    request_logged = Signal(object)  # RequestRecord

    def __init__(
        self,
        turns: TurnService,
        documents: DocumentService,
        history: HistoryService | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._turns = turns
        self._documents = documents
        self._history = history
        self._kept: dict[str, tuple[int, int]] = {}  # the store thread's: a kept exchange → (conversation, answer)
        self.host = WorkerHost("local-api", self)
        self._server: ApiServer | None = None
        self._key: api_key.ApiKey | None = None
        self._settings = ApiSettings()
        self._model_id: str | None = None  # the loaded model's, read by request threads
        self._sampling = SamplingParams()
        self._dropped = 0  # the cut the last API chat made, so the next keeps its cached prefix
        self._lock = threading.Lock()
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=LOG_LIMIT)
        self.state = ApiState()
        self.queue = ApiQueue(lambda run: turns.host.submit(run, label="an API request"), on_busy=self._busy)
        turns.model_loaded.connect(self._on_model)

    # Lifecycle
    def start(self) -> None:
        """Start the service's thread (the endpoint itself starts only when turned on)."""
        self.host.start()

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Close the endpoint, stop the running API job and refuse the waiting ones."""
        self.queue.cancel_all("Tern is closing.")
        self.host.submit(self._close, label="close the local API")
        return self.host.shutdown(timeout_s)

    # Settings
    def configure(self, settings: ApiSettings, sampling: SamplingParams) -> None:
        """Apply the user's settings: start, restart or stop the endpoint as needed."""
        self._sampling = sampling
        self.host.submit(lambda: self._apply(settings), label="apply the local API settings")

    def set_sampling(self, sampling: SamplingParams) -> None:
        """The user's sampling settings, used where a request does not choose."""
        self._sampling = sampling

    def regenerate_key(self) -> None:
        """Replace the key (clients with the old one are refused from now on)."""

        def job() -> None:
            self._key = api_key.regenerate()
            self._apply(self._settings)

        self.host.submit(job, label="make a new local API key")

    def _apply(self, settings: ApiSettings) -> None:
        server = self._server
        if server is not None and settings.enabled and settings.port == self._settings.port:
            # The same port: the new key and origins hold from the next request on, on every open connection too.
            assert self._key is not None
            server.config = ApiConfig(server.port, self._key.value if settings.require_key else None, settings.origins)
            self._settings = settings
            self._publish("")
            return
        self._close()
        self._settings = settings
        if settings.enabled:
            self._listen(settings)
        else:
            self._publish("")

    def _listen(self, settings: ApiSettings) -> None:
        if self._key is None:
            self._key = api_key.load_or_create()
        config = ApiConfig(settings.port, self._key.value if settings.require_key else None, settings.origins)
        server = ApiServer(config, self, self._record)
        try:
            server.start()
        except OSError as exc:
            log.warning("The local API could not listen on port %d: %s", settings.port, exc)
            self._publish(f"Port {settings.port} is not free ({exc.strerror or exc}). Choose another port.")
            return
        self._server = server
        self._publish("")

    def _close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            log.info("Local API closed")

    def _publish(self, error: str) -> None:
        key = self._key
        server = self._server
        self.state = ApiState(
            running=server is not None,
            address=server.address if server is not None else f"http://127.0.0.1:{self._settings.port}/v1",
            key=key.value if key else "",
            key_remembered=key.remembered if key else True,
            require_key=self._settings.require_key,
            error=error,
        )
        self.state_changed.emit(self.state)

    # News from elsewhere
    def _on_model(self, loaded: LoadedModel) -> None:
        self._model_id = model_id(loaded)

    def _busy(self, client: str) -> None:
        self.serving_changed.emit(client)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)
        self.request_logged.emit(record)

    def recent_requests(self) -> list[RequestRecord]:
        """The request log, oldest first (a copy: requests are logged from other threads)."""
        with self._lock:
            return list(self.records)

    # The backend: called on request threads
    def sampling_defaults(self) -> SamplingParams:
        """The user's sampling settings."""
        return self._sampling

    def model_ids(self) -> list[str]:
        """The loaded model, then the embedding model when one is chosen."""
        ids = [self._model_id] if self._model_id is not None else []
        embedding = self._documents.embedder.path
        if embedding is not None:
            ids.append(embedding.stem)
        return list(dict.fromkeys(ids))  # one model may serve both

    def _chat_model(self, asked: str | None) -> str:
        loaded = self._model_id
        if loaded is None:
            raise no_model()
        if asked and asked not in (loaded, loaded + ".gguf"):
            raise ApiError(
                404,
                f"The model '{asked[:200]}' is not loaded. Tern has '{loaded}' loaded; use that id, "
                "or load the other model in Tern.",
                param="model",
                code="model_not_found",
            )
        return loaded

    def start_chat(self, call: ChatCall, client: str) -> tuple[Job, str]:
        """Queue a chat answer on the inference thread."""
        name = self._chat_model(call.model)

        def work(job: Job) -> None:
            pieces: list[str] = []
            job.on_piece = pieces.append
            result = answer_chat(
                self._turns.engine_on_thread(), call, job, name, self._dropped, self._turns.image_reader
            )
            self._dropped = result.dropped_messages
            if self._settings.keep_history:
                self._keep(call, "".join(pieces), result.stats.as_dict(), name, client)

        job = Job(work, client)
        self.queue.enqueue(job)
        return job, name

    def _keep(self, call: ChatCall, answer: str, stats: dict[str, Any], model: str, client: str) -> None:
        """Queue saving the exchange: a request that resends a kept conversation continues it."""
        history = self._history
        if history is None:
            return
        host = history.host
        messages = list(call.messages)

        def job() -> None:
            store = host.require()
            found = self._kept.get(_digest(call.system, messages[:-1]))
            if found is None:
                first = next((m.content for m in messages if m.role == "user"), "")
                title = f"{client or 'API'}: {' '.join(first.split())[:60]}"
                cid, parent = store.create_conversation(title, call.system), None
                for m in messages[:-1]:
                    parent = store.add_message(cid, parent, m.role, m.content)
            else:
                cid, parent = found
            question = store.add_message(cid, parent, "user", messages[-1].content)
            kept = store.add_message(cid, question, "assistant", answer, model, stats)
            self._kept[_digest(call.system, [*messages, ChatMessage("assistant", answer)])] = (cid, kept)

        host.submit(job, done=lambda _none: history.refresh(), failed=lambda e: log.warning("Not kept: %s", e))

    def start_completion(self, call: CompletionCall, client: str) -> tuple[Job, str]:
        """Queue a plain completion on the inference thread."""
        name = self._chat_model(call.model)
        job = Job(lambda j: answer_completion(self._turns.engine_on_thread(), call, j), client)
        self.queue.enqueue(job)
        return job, name

    def embed(self, call: EmbeddingCall) -> tuple[list[Any], int, str]:
        """Vectors from the embedding model, computed on the embeddings thread."""
        slot = self._documents.embedder
        path = slot.path
        if path is None:
            raise ApiError(
                400,
                "No embedding model is chosen. Choose one in Tern's Settings (Documents), then retry.",
                param="model",
                code="model_not_found",
            )
        if call.model and call.model not in (path.stem, path.name):
            raise ApiError(404, f"The embedding model is '{path.stem}', not '{call.model[:200]}'.", param="model")
        result = self._documents.run_embedding(lambda e: (e.embed(list(call.inputs)), e.count_tokens(call.inputs)))
        if result is None:
            raise ApiError(503, slot.error or "The embedding model could not be loaded.", kind="server_error")
        vectors, tokens = result
        return [np.asarray(v) for v in vectors], tokens, path.stem


def _digest(system: str, messages: list[ChatMessage]) -> str:
    """What identifies a conversation as a client resends it (whitespace at the ends of messages aside)."""
    text = json.dumps([system.strip(), *[(m.role, m.content.strip()) for m in messages]])
    return hashlib.sha256(text.encode()).hexdigest()


def parse_origins(text: str) -> frozenset[str]:
    """Origins typed in the settings (separated by spaces, commas or lines), without trailing slashes."""
    return frozenset(o.strip().rstrip("/") for o in text.replace(",", " ").split() if o.strip())
