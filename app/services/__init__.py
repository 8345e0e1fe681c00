"""Long-lived app services between the widgets and `app.core`.

Each service owns its thread(s) through `WorkerHost`, takes calls that return
at once, and answers with signals on the GUI thread. `Services.build` makes
them in one order and `shutdown` stops them in the reverse one:

    start:    message bridge → models (files thread) → history (store
              thread) → documents (documents, embeddings threads) → turns
              (inference thread) → downloads (downloads, hub-lookups,
              download-queue threads; queued downloads resume) → local API
              (its thread; the endpoint listens only once turned on) → memory meter
    shutdown: memory meter → local API (the endpoint closes, the running API
              answer stops, waiting ones are refused) → downloads (the running one stops before its
              next chunk and resumes at the next start) → turns (the answer
              so far is queued for saving) → documents (a read in progress is
              killed) → history (queued saves finish, then the database
              closes) → models (queued changes finish)

Every shutdown step is bounded; a thread that does not stop in time is
abandoned with a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QObject

from app.core.engine.probe import ModelChecks
from app.core.models.hub import load_token
from app.core.paths import AppPaths
from app.services.documents import DocumentService
from app.services.downloads import DownloadManager
from app.services.history import HistoryService
from app.services.images import ImageService
from app.services.local_api import LocalApiService
from app.services.memory import MemoryMonitor
from app.services.messages import MessageBridge
from app.services.models import ModelService
from app.services.turns import TurnService

log = logging.getLogger("tern.services")


@dataclass
class Services:
    """The app's services, built and started together."""

    bridge: MessageBridge
    models: ModelService
    history: HistoryService
    documents: DocumentService
    turns: TurnService
    downloads: DownloadManager
    memory: MemoryMonitor
    api: LocalApiService
    images: ImageService
    stopped: bool | None = None  # set by `shutdown`: whether every thread stopped in time

    @classmethod
    def build(cls, paths: AppPaths, parent: QObject | None = None) -> Services:
        """Make every service (threads not started yet)."""
        bridge = MessageBridge(parent)
        models = ModelService(paths.data / "models.json", parent, models_dir=paths.models)
        history = HistoryService(paths.history_db, parent)
        checks = ModelChecks(paths.data / "model-checks.json")
        documents = DocumentService(history, checks, parent)
        turns = TurnService(paths.models, parent)
        turns.store = history.saved_turns(documents.embed_question)
        history.closing.connect(turns.forget_conversations)  # locked or deleted: the model forgets it too
        downloads = DownloadManager(paths.data / "downloads.json", load_token, paths.models, parent=parent)
        memory = MemoryMonitor(parent=parent)
        api = LocalApiService(turns, documents, history, parent)
        images = ImageService(history, parent)
        for host in (models.host, history.host, *documents.hosts, turns.host, *downloads.hosts, memory, api.host):
            host.failure.connect(bridge.report)
        for host in (images.host,):
            host.failure.connect(bridge.report)
        return cls(bridge, models, history, documents, turns, downloads, memory, api, images)

    def start(self) -> None:
        """Start every thread, in order."""
        self.models.start()
        self.history.start_thread()
        self.documents.start()
        self.images.start()
        self.turns.start()
        self.downloads.start()  # downloads the user queued before the last quit carry on
        self.api.start()
        self.memory.start()

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Stop every thread, in reverse order; False if any had to be abandoned (asked again: the same answer)."""
        if self.stopped is not None:
            return self.stopped
        stopped = {
            "memory": self.memory.shutdown(timeout_s),
            "local API": self.api.shutdown(timeout_s),
            "downloads": self.downloads.shutdown(timeout_s),
            "turns": self.turns.shutdown(timeout_s),
            "images": self.images.shutdown(timeout_s),
            "documents": self.documents.shutdown(timeout_s),
            "history": self.history.shutdown(timeout_s),
            "models": self.models.shutdown(timeout_s),
        }
        if not all(stopped.values()):
            log.error("Not every service stopped in time: %s", stopped)
        self.stopped = all(stopped.values())
        return self.stopped
