"""Offline by default: starting Tern, chatting and opening the model manager opens no network connection."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import OfflineModeIsEnabled
from pytestqt.qtbot import QtBot

from app.bootstrap import parse_args, shutdown, start
from app.core.paths import AppPaths

LONG = 120_000


def test_start_chat_and_model_manager_make_no_connection(
    qtbot: QtBot, app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[tuple[str, Any]] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def watched(real: Callable[..., Any], name: str) -> Callable[..., Any]:
        def call(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):  # local D-Bus (the keychain) is not network
                attempts.append((name, address))
            return real(sock, address)

        return call

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        attempts.append(("getaddrinfo", args[:2]))
        return real_getaddrinfo(*args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", watched(real_connect, "connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", watched(real_connect_ex, "connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    session = start(parse_args(["--no-err-windows"]))  # the real start-up: history, starter model, downloads
    window = session.window
    try:
        qtbot.waitSignal(window.model_ready, timeout=LONG).wait()
        with qtbot.waitSignal(window.answer_finished, timeout=LONG):
            window.send_message("Hello there")
        manager = window.open_models()
        for tab in range(manager.tabs.count()):
            manager.tabs.setCurrentIndex(tab)
            qtbot.wait(50)
        # Even a direct hub call is refused without a user action, before any socket is opened.
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
        with pytest.raises(OfflineModeIsEnabled):
            HfApi().model_info("google/gemma-4-E2B-it")
    finally:
        shutdown(session)
    assert attempts == []
