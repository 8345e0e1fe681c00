"""A loopback Hugging Face Hub serving the starter model, a gated synthetic Gemma and a split GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http as hf_http

from tests.hub.hub_server import HubServer
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma

PUBLIC_REPO = "ggml-org/tiny-gemma-GGUF"
STARTER_NAME = "gemma-3-270m-Q4_K_M.gguf"
GATED_REPO = "google/gated-gemma-GGUF"
GATED_NAME = "tiny-gemma4-Q8_0.gguf"
SPLIT_REPO = "bartowski/split-GGUF"
SPLIT_NAMES = ("model-00001-of-00002.gguf", "model-00002-of-00002.gguf")
README = "# Tiny Gemma GGUF\n\nA test repository served by the loopback hub.\n"


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Path:
    """A small synthetic Gemma 4 GGUF (about 14 MB)."""
    return write_gemma(tmp_path_factory.mktemp("hub-g4") / GATED_NAME, TINY_GEMMA4, starter_model)


@pytest.fixture(scope="session")
def hub_repos(
    tmp_path_factory: pytest.TempPathFactory, starter_model: Path, tiny_gemma: Path
) -> dict[str, dict[str, Path]]:
    """Repo id → {file name in the repo: local file} for the hub fixture."""
    folder = tmp_path_factory.mktemp("hub-repos")
    readme = folder / "README.md"
    readme.write_text(README)
    data = tiny_gemma.read_bytes()
    half = len(data) // 2
    parts = [folder / SPLIT_NAMES[0], folder / SPLIT_NAMES[1]]
    parts[0].write_bytes(data[:half])
    parts[1].write_bytes(data[half:])
    return {
        PUBLIC_REPO: {STARTER_NAME: starter_model, "README.md": readme},
        GATED_REPO: {GATED_NAME: tiny_gemma},
        SPLIT_REPO: dict(zip(SPLIT_NAMES, parts, strict=True)),
    }


@pytest.fixture
def hub_server(hub_repos: dict[str, dict[str, Path]]) -> Iterator[HubServer]:
    """A started loopback hub (fresh faults and request log per test)."""
    with HubServer(hub_repos, gated={GATED_REPO}) as server:
        yield server


@pytest.fixture
def plain_hf_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """huggingface_hub as shipped: its own HTTP client, online, and no token from the environment or disk."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-stored-tokens"))
    previous = hf_http._GLOBAL_CLIENT_FACTORY
    hf_http.set_client_factory(hf_http.default_client_factory)
    yield
    hf_http.set_client_factory(previous)  # also closes the client this test used
