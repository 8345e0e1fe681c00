"""Text to vectors with an embedding model (EmbeddingGemma) through llama-cpp-python, for hybrid search.

The model is validated by our GGUF reader before llama.cpp opens it. Vectors
are mean-pooled and L2-normalised, so a dot product is the cosine similarity;
they are stored as float32 blobs inside the encrypted database. One lock
guards the llama.cpp context: the indexer and a question's look-up may both
ask for vectors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.core.engine.backends import ensure_loaded
from app.core.engine.gguf_info import GgufError, read_gguf_info
from app.core.engine.probe import ModelChecks
from app.core.redact import log_failure

Vectors = npt.NDArray[np.float32]
log = logging.getLogger("tern.docs")


class Embedder:
    """An embedding model, loaded once."""

    def __init__(self, path: Path, n_threads: int = 0, n_ctx: int = 512) -> None:
        self.info = read_gguf_info(path)  # raises GgufError with a reason, before llama.cpp sees the file
        self._lock = threading.Lock()
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama  # loaded with the first embedding model

        from app.core.engine.model_params import untrusted_load  # which imports llama.cpp too

        ensure_loaded()  # raises BackendError, a RuntimeError like llama.cpp's own load failures
        with untrusted_load():
            self._llama = Llama(
                model_path=str(path),
                embedding=True,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                pooling_type=LLAMA_POOLING_TYPE_MEAN,
                n_threads=n_threads or None,
                verbose=False,
            )

    @property
    def name(self) -> str:
        """The model's name, stored with the vectors it made."""
        return self.info.name

    def embed(self, texts: list[str]) -> Vectors:
        """Unit vectors, one row per text (long texts are cut at the model's context)."""
        with self._lock:
            raw = self._llama.embed(texts, truncate=True)
        vectors = np.asarray(raw, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: Vectors = vectors / np.maximum(norms, 1e-12)
        return unit

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for `texts` (each cut at its context, as `embed` does)."""
        limit = self._llama.n_ctx()
        with self._lock:
            return sum(min(limit, len(self._llama.tokenize(t.encode("utf-8")))) for t in texts)

    def close(self) -> None:
        """Free the model."""
        with self._lock:
            self._llama.close()


def to_blob(vector: Vectors) -> bytes:
    """A vector as stored."""
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_blobs(blobs: list[bytes]) -> Vectors:
    """Stored vectors as one matrix."""
    return np.vstack([np.frombuffer(b, dtype=np.float32) for b in blobs]) if blobs else np.zeros((0, 0), np.float32)


class EmbedderSlot:
    """The embedding model chosen in the settings, loaded on first use by whichever thread needs it."""

    def __init__(self, checks: ModelChecks | None = None) -> None:
        self._lock = threading.Lock()
        self._checks = checks  # a first load in a child process, so a bad file cannot take the app down
        self._path: Path | None = None
        self._embedder: Embedder | None = None
        self.error = ""  # why the chosen model could not be loaded

    def set_path(self, path: Path | None) -> None:
        """Choose (or, with None, drop) the embedding model."""
        with self._lock:
            if path == self._path:
                return
            if self._embedder is not None:
                self._embedder.close()
            self._path, self._embedder, self.error = path, None, ""

    @property
    def path(self) -> Path | None:
        """The chosen model file (None: none chosen, or it could not be loaded)."""
        return self._path

    def get(self) -> Embedder | None:
        """The loaded model, or None when none is chosen or it cannot be loaded (see `error`)."""
        with self._lock:
            if self._embedder is None and self._path is not None:
                try:
                    if self._checks is not None:
                        read_gguf_info(self._path)  # the quick checks first, then a load in a child process
                        self._checks.vet(self._path, lazy_ple=False, embedding=True)
                    self._embedder = Embedder(self._path)
                except (GgufError, ValueError, RuntimeError, OSError) as exc:
                    self.error = str(exc)
                    self._path = None
                except Exception as exc:  # never a traceback on every question: one plain message
                    log_failure(log, logging.ERROR, "Loading the embedding model", exc)
                    self.error = f"{self._path.name} could not be loaded as an embedding model ({type(exc).__name__})."
                    self._path = None
            return self._embedder

    def embed_chunks(self, texts: list[str], batch: int = 16) -> list[bytes] | None:
        """Blobs for `texts` with the chosen model, or None without one."""
        embedder = self.get()
        if embedder is None or not texts:
            return None
        blobs: list[bytes] = []
        for start in range(0, len(texts), batch):
            blobs += [to_blob(v) for v in embedder.embed(texts[start : start + batch])]
        return blobs
