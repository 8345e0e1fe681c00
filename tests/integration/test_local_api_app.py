"""The local API in the running app: the real `openai` client, the settings, the status item and the request log.

The app is started as a user starts it (history, keychain, starter model); the
endpoint is turned on as the Local API dialog does. The client runs on a
thread of its own while the GUI thread keeps its event loop, and a timer
measures how long that loop ever waits. Between start-up and shutdown the
GUI-thread guard (tests/gui_io.py) is on: no socket is bound or connected, and
no file opened, on the GUI thread.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.bootstrap import Session, parse_args, shutdown, start
from app.core.api import api_key
from app.services.local_api import ApiState
from tests.gui_io import GUARD

LONG = 120_000


@pytest.fixture
def app(qtbot: QtBot) -> Iterator[Session]:
    session = start(parse_args(["--no-err-windows"]))
    try:
        qtbot.waitSignal(session.window.model_ready, timeout=LONG).wait()
        GUARD.events.clear()
        GUARD.active = True
        try:
            yield session
        finally:
            GUARD.active = False
        found, GUARD.events[:] = list(GUARD.events), []
        assert not found, "blocking work on the GUI thread:\n" + "\n".join(str(e) for e in found)
    finally:
        shutdown(session)


def turn_on(qtbot: QtBot, session: Session, port: int = 0, require_key: bool = True) -> ApiState:
    """Tick the box and press Apply, as a user does; returns the state once it is listening."""
    dialog = session.window.open_local_api()
    dialog.enabled.setChecked(True)
    dialog.require_key.setChecked(require_key)
    api = session.services.api
    with qtbot.waitSignal(api.state_changed, timeout=30_000, check_params_cb=lambda s: s.running or s.error):
        if port:
            dialog.port.setValue(port)
            dialog.apply()
        else:  # a free port chosen by the system (the dialog's box starts at 1024)
            from app.services.local_api import ApiSettings

            session.window.settings.set(opts.API_ENABLED, True)
            api.configure(ApiSettings(True, 0, require_key), session.window.settings.sampling())
    qtbot.waitUntil(lambda: dialog.key.text() != "", timeout=10_000)
    dialog.close()
    return api.state


def in_thread(qtbot: QtBot, work: Callable[[], Any], timeout_ms: int = LONG) -> Any:
    """Run `work` on a client thread while the GUI thread's event loop runs; return what it returned."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=timeout_ms)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_the_openai_client_chats_with_the_loaded_model(qtbot: QtBot, app: Session) -> None:
    state = turn_on(qtbot, app)
    assert state.running and state.address.startswith("http://127.0.0.1:") and state.key.startswith("tern-")
    assert state.key == api_key.load_or_create().value  # the key lives in the keychain
    client = openai.OpenAI(base_url=state.address, api_key=state.key, max_retries=0)
    models = in_thread(qtbot, lambda: [m.id for m in client.models.list()])
    assert models == ["gemma-3-270m-q4_k_m"]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = in_thread(qtbot, lambda: client.chat.completions.create(model=models[0], messages=messages, max_tokens=40))
    assert answer.choices[0].message.content.strip() and answer.usage.completion_tokens > 0
    assert answer.choices[0].finish_reason in ("stop", "length")

    def stream() -> tuple[str, Any]:
        pieces, usage = [], None
        for chunk in client.chat.completions.create(
            model=models[0], messages=messages, max_tokens=40, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        return "".join(pieces), usage

    text, usage = in_thread(qtbot, stream)
    assert text.strip() and usage.completion_tokens > 0
    # The same conversation again: read from the cache, as the window's turns are.
    assert usage.prompt_tokens_details.cached_tokens >= usage.prompt_tokens - 2

    with pytest.raises(openai.NotFoundError) as wrong:
        in_thread(qtbot, lambda: client.chat.completions.create(model="gpt-4o", messages=messages))
    assert "gemma-3-270m-q4_k_m" in str(wrong.value)  # which model is loaded
    with pytest.raises(openai.AuthenticationError):
        bad = openai.OpenAI(base_url=state.address, api_key="tern-wrong", max_retries=0)
        in_thread(qtbot, lambda: bad.models.list())
    # None of it went into the history.
    assert app.services.history.is_open
    qtbot.wait(300)
    assert app.window.sidebar.model.rowCount() == 0


def test_the_window_stays_responsive_and_shows_whom_it_serves(qtbot: QtBot, app: Session) -> None:
    state = turn_on(qtbot, app)
    window = app.window
    assert window.api.status.isVisible() or window.api.status.text().startswith("Local API")
    client = openai.OpenAI(base_url=state.address, api_key=state.key, max_retries=0)
    served: list[str] = []
    app.services.api.serving_changed.connect(served.append)
    stalls: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        stalls.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()

    def stream() -> str:
        out = []
        for chunk in client.chat.completions.create(
            model="gemma-3-270m-q4_k_m",
            messages=[{"role": "user", "content": "Tell me about the sea."}],
            max_tokens=120,
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(chunk.choices[0].delta.content)
        return "".join(out)

    last[0] = clock.elapsed()
    text = in_thread(qtbot, stream)
    timer.stop()
    assert text.strip()
    assert max(stalls) - 10 <= 50, f"the GUI thread stalled {max(stalls) - 10:.0f} ms"
    qtbot.waitUntil(lambda: served and served[-1] == "", timeout=10_000)
    assert any(c.startswith("OpenAI") for c in served)  # "Local API: answering OpenAI" while it ran

    manager = window.open_models()
    manager.tabs.setCurrentWidget(manager.network)
    inbound = manager.network.inbound
    assert inbound is not None
    qtbot.waitUntil(lambda: inbound.table.rowCount() >= 1, timeout=5_000)
    row = [inbound.table.item(0, c).text() for c in range(5)]
    assert row[1] == "OpenAI" and row[2] == "POST /v1/chat/completions" and row[4].startswith("200 OK")
    assert " out" in row[3]
    manager.close()


def test_a_users_question_waits_for_one_api_answer_at_most(qtbot: QtBot, app: Session) -> None:
    state = turn_on(qtbot, app)
    client = openai.OpenAI(base_url=state.address, api_key=state.key, max_retries=0)
    finished: list[str] = []
    lock = threading.Lock()
    started = threading.Event()

    def ide(i: int) -> None:
        stream = client.chat.completions.create(
            model="gemma-3-270m-q4_k_m",
            messages=[{"role": "user", "content": f"Write a long story number {i}."}],
            max_tokens=60,
            temperature=0,
            stream=True,
        )
        for _ in stream:
            started.set()
        with lock:
            finished.append(f"ide {i}")

    threads = [threading.Thread(target=ide, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    qtbot.waitUntil(started.is_set, timeout=LONG)
    with qtbot.waitSignal(app.window.answer_finished, timeout=LONG):
        app.window.send_message("Hello from the window")
    with lock:
        finished.append("user")
    qtbot.waitUntil(lambda: all(not t.is_alive() for t in threads), timeout=LONG)
    # The user's answer came after the IDE's first, running answer, before the rest of the queued ones.
    assert finished.index("user") <= 1, finished


def test_turning_it_off_closes_the_port_and_the_key_can_be_replaced(qtbot: QtBot, app: Session) -> None:
    state = turn_on(qtbot, app)
    port = int(state.address.rsplit(":", 1)[1].split("/")[0])
    old_key = state.key
    api = app.services.api
    kept_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def models_with_old_key() -> int:
        kept_alive.request("GET", "/v1/models", headers={"Authorization": f"Bearer {old_key}"})
        response = kept_alive.getresponse()
        response.read()
        return response.status

    assert in_thread(qtbot, models_with_old_key) == 200
    with qtbot.waitSignal(api.state_changed, timeout=30_000, check_params_cb=lambda s: s.key != old_key):
        api.regenerate_key()
    assert api.state.running and api.state.key != old_key
    assert in_thread(qtbot, models_with_old_key) == 401  # on a connection opened before, too
    kept_alive.close()
    old = openai.OpenAI(base_url=api.state.address, api_key=old_key, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        in_thread(qtbot, lambda: old.models.list())
    dialog = app.window.open_local_api()
    dialog.enabled.setChecked(False)
    with qtbot.waitSignal(api.state_changed, timeout=30_000, check_params_cb=lambda s: not s.running):
        dialog.apply()
    assert not app.window.settings.get(opts.API_ENABLED)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    dialog.copy_address.click()
    assert QGuiApplication.clipboard().text() == api.state.address
    dialog.close()
    qtbot.waitUntil(lambda: not app.window.api.status.isVisible(), timeout=5_000)


def test_a_taken_port_is_said_plainly(qtbot: QtBot, app: Session) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if port < 1024:
            pytest.skip("the system chose a port below the dialog's range")
        state = turn_on(qtbot, app, port=port)
    assert not state.running and f"Port {port} is not free" in state.error
    assert "port not free" in app.window.api.status.text()


def test_the_api_makes_no_outbound_connection(qtbot: QtBot, app: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[tuple[str, Any]] = []
    real_connect = socket.socket.connect
    client_threads: set[int] = set()

    def watched(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and threading.get_ident() not in client_threads:
            attempts.append((threading.current_thread().name, address))
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", watched)
    state = turn_on(qtbot, app)
    client = openai.OpenAI(base_url=state.address, api_key=state.key, max_retries=0)

    def talk() -> str:
        client_threads.add(threading.get_ident())
        answer = client.chat.completions.create(
            model="gemma-3-270m-q4_k_m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        return answer.choices[0].message.content or ""

    in_thread(qtbot, talk)
    time.sleep(0.2)
    assert attempts == []


def test_embeddings_come_from_the_embedding_model_chosen_for_documents(qtbot: QtBot, app: Session) -> None:
    state = turn_on(qtbot, app)
    client = openai.OpenAI(base_url=state.address, api_key=state.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as none_chosen:
        in_thread(qtbot, lambda: client.embeddings.create(model="any", input="hello"))
    assert "No embedding model is chosen" in str(none_chosen.value)
    starter = app.window.models.loaded.info.path  # the starter serves as an embedding model here (mean-pooled)
    app.services.documents.set_embedding_model(starter)
    qtbot.waitUntil(lambda: app.services.documents.embedder.path is not None, timeout=10_000)
    texts = ["The lamp is lit at dusk.", "Ferries leave from the north pier."]
    # The openai client asks for base64 and decodes it; a plain float list is checked too.
    result = in_thread(qtbot, lambda: client.embeddings.create(model=starter.stem, input=texts))
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 2 and len(vectors[0]) == 640 and result.usage.prompt_tokens > 8
    assert abs(sum(v * v for v in vectors[0]) - 1.0) < 1e-3  # unit length, as OpenAI's
    floats = in_thread(
        qtbot, lambda: client.embeddings.create(model=starter.stem, input=texts[0], encoding_format="float")
    )
    assert max(abs(a - b) for a, b in zip(floats.data[0].embedding, vectors[0], strict=True)) < 1e-5


def test_api_conversations_are_kept_only_when_asked(qtbot: QtBot, app: Session) -> None:
    from app.services.local_api import ApiSettings

    api = app.services.api
    with qtbot.waitSignal(api.state_changed, timeout=30_000, check_params_cb=lambda s: s.running):
        api.configure(ApiSettings(True, 0, True, keep_history=True), app.window.settings.sampling())
    client = openai.OpenAI(base_url=api.state.address, api_key=api.state.key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Name a colour."}]

    def ask() -> Any:
        return client.chat.completions.create(model="gemma-3-270m-q4_k_m", messages=messages, max_tokens=12)

    for follow_up in ("Name another.", "And one more."):
        answer = in_thread(qtbot, ask)
        messages += [{"role": "assistant", "content": answer.choices[0].message.content}]
        messages += [{"role": "user", "content": follow_up}]
    in_thread(qtbot, ask)
    sidebar = app.window.sidebar.model
    titles = lambda: [sidebar.index(i, 0).data() for i in range(sidebar.rowCount())]  # noqa: E731
    qtbot.waitUntil(lambda: len(titles()) == 2, timeout=10_000)  # three requests, one conversation
    assert titles() == ["Today", "OpenAI: Name a colour."]
    kept: list[Any] = []
    app.services.history.query(lambda store: store.conversations(), kept.append)
    qtbot.waitUntil(lambda: bool(kept), timeout=5_000)
    assert len(kept[0]) == 1  # each request continued the one kept before it
    cid = kept[0][0].id
    rows: list[Any] = []
    app.services.history.query(
        lambda store: store.connection.execute(
            "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)
        ).fetchall(),
        rows.append,
    )
    qtbot.waitUntil(lambda: bool(rows), timeout=5_000)
    assert [r[0] for r in rows[0]] == ["user", "assistant"] * 3
    assert rows[0][4][1] == "And one more."
