"""History store speed: encrypted (SQLCipher) vs plain SQLite, on 10,000 conversations / 100,000 messages.

    .venv/bin/python bench/history.py [--conversations 10000] [--messages 100000]

Prints one JSON object with, for both databases: insert throughput, open time,
search latency p50/p95 over 50 queries, and the time to load a 1,000-message
conversation from the store and into the conversation view (read, rows built,
laid out and painted); plus the encryption overhead ratios. For the encrypted
database it also times search as the user sees it: from typing in the sidebar
to the hits on screen, through the store writer thread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.schema import migrate
from app.services.history import HistoryService
from app.ui.chat_model import MessageListModel
from app.ui.chat_session import chat_items
from app.ui.conversation_view import ConversationView
from app.ui.sidebar import Sidebar

ROOT = Path(__file__).resolve().parent.parent


def vocabulary() -> list[str]:
    """Real words from this repository's prose and code comments."""
    text = (ROOT / "README.md").read_text() + " ".join(p.read_text() for p in (ROOT / "app").rglob("*.py"))
    words = [w.strip(".,:;()[]`*'\"") for w in text.split()]
    return sorted({w.lower() for w in words if w.isalpha() and 2 < len(w) < 14})


def sentence(rng: random.Random, words: list[str]) -> str:
    n = rng.randint(12, 90)
    body = " ".join(rng.choice(words) for _ in range(n))
    return body[0].upper() + body[1:] + "."


def open_plain(path: Path) -> Any:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")  # the same settings as the encrypted store
    conn.execute("PRAGMA temp_store = MEMORY")
    migrate(conn)
    return conn


def fill(conn: Any, conversations: int, messages: int, words: list[str], seed: int) -> tuple[float, int]:
    """Insert the corpus; returns (messages per second, id of the 1,000-message conversation)."""
    rng = random.Random(seed)
    store = ConversationStore(conn)
    started = time.perf_counter()
    long_id = store.create_conversation("A very long conversation")
    parent = None
    for i in range(1000):
        parent = store.add_message(long_id, parent, "user" if i % 2 == 0 else "assistant", sentence(rng, words))
    per_conversation = max(1, (messages - 1000) // conversations)
    conn.execute("BEGIN")
    for c in range(conversations):
        cid = store.create_conversation()
        parent = None
        for i in range(per_conversation):
            role = "user" if i % 2 == 0 else "assistant"
            now = time.time()
            text = sentence(rng, words)
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, created_at) VALUES (?, ?, ?, ?, ?)",
                (cid, parent, role, text, now),
            )
            parent = cur.lastrowid
            if i == 0:
                conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (text[:60], cid))
        conn.execute("UPDATE conversations SET current_leaf = ?, updated_at = ? WHERE id = ?", (parent, now, cid))
        if c % 500 == 499:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    total = 1000 + conversations * per_conversation
    return total / (time.perf_counter() - started), long_id


def measure(conn_factory: Any, path: Path, args: argparse.Namespace, words: list[str]) -> dict[str, float]:
    conn = conn_factory(path)
    rate, long_id = fill(conn, args.conversations, args.messages, words, seed=1)
    conn.close()
    started = time.perf_counter()
    conn = conn_factory(path)
    store = ConversationStore(conn)
    store.conversations()
    open_ms = (time.perf_counter() - started) * 1000
    queries = queries_for(words)
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        store.search(q, limit=50)
        latencies.append((time.perf_counter() - t0) * 1000)
    loads = []
    for _ in range(5):
        t0 = time.perf_counter()
        path_messages = store.current_path(long_id)
        loads.append((time.perf_counter() - t0) * 1000)
    assert len(path_messages) == 1000
    view_loads = [load_into_view(store, long_id) for _ in range(5)]
    conn.close()
    latencies.sort()
    return {
        "insert_msgs_per_s": round(rate, 1),
        "open_ms": round(open_ms, 2),
        "search_p50_ms": round(statistics.median(latencies), 2),
        "search_p95_ms": round(latencies[int(0.95 * len(latencies)) - 1], 2),
        "load_1000_store_ms": round(statistics.median(loads), 2),
        "load_1000_view_ms": round(statistics.median(view_loads), 2),
        "db_mb": round(path.stat().st_size / 1e6, 1),
    }


def load_into_view(store: ConversationStore, conversation_id: int) -> float:
    """Milliseconds from reading the conversation to its newest messages painted in a fresh view."""
    view = ConversationView()
    model = MessageListModel(view)
    view.setModel(model)
    view.resize(900, 700)
    view.show()
    QApplication.processEvents()
    t0 = time.perf_counter()
    opened = store.open(conversation_id)
    model.extend(chat_items(opened, 0))
    view.scroll_to_end()
    view.doItemsLayout()
    view.viewport().repaint()
    elapsed = (time.perf_counter() - t0) * 1000
    assert model.rowCount() == 1000
    view.close()
    view.deleteLater()
    QApplication.processEvents()
    return elapsed


def search_in_sidebar(path: Path, key: bytes, queries: list[str]) -> list[float]:
    """Milliseconds from typing a query in the sidebar to its hits in the list, via the store writer thread."""
    history = HistoryService(path)
    history.start_thread()
    sidebar = Sidebar()
    history.search_results.connect(sidebar.set_search_results)
    sidebar.search_requested.connect(history.search)
    loop = QEventLoop()
    history.ready.connect(loop.quit)
    history.open_with_key(key)  # the bench has its own key, not one in the keychain
    loop.exec()
    latencies = []
    for q in queries:
        shown = QEventLoop()
        sidebar.model.modelReset.connect(shown.quit)
        QTimer.singleShot(10_000, shown.quit)
        t0 = time.perf_counter()
        sidebar.search.setText(q)
        shown.exec()
        latencies.append((time.perf_counter() - t0) * 1000)
        sidebar.model.modelReset.disconnect(shown.quit)
        sidebar.search.clear()
    history.shutdown()
    return sorted(latencies)


def queries_for(words: list[str]) -> list[str]:
    rng = random.Random(7)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 2)))[: rng.choice([3, 5, 40])] for _ in range(50)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    words = vocabulary()
    key = secrets.token_bytes(32)
    QApplication([])
    with tempfile.TemporaryDirectory(prefix="tern-history-") as tmp:
        encrypted = measure(lambda p: open_database(p, key), Path(tmp) / "encrypted.db", args, words)
        plain = measure(open_plain, Path(tmp) / "plain.db", args, words)
        ui = search_in_sidebar(Path(tmp) / "encrypted.db", key, queries_for(words))
    print(
        json.dumps(
            {
                "conversations": args.conversations,
                "messages": args.messages,
                "encrypted": encrypted,
                "plain": plain,
                "search_p95_ms": encrypted["search_p95_ms"],
                "search_in_sidebar_p50_ms": round(statistics.median(ui), 2),
                "search_in_sidebar_p95_ms": round(ui[int(0.95 * len(ui)) - 1], 2),
                "load_1000_ms": encrypted["load_1000_view_ms"],
                "encryption_overhead": {
                    "search_p95": round(encrypted["search_p95_ms"] / plain["search_p95_ms"], 3),
                    "load_1000": round(encrypted["load_1000_store_ms"] / plain["load_1000_store_ms"], 3),
                    "load_1000_view": round(encrypted["load_1000_view_ms"] / plain["load_1000_view_ms"], 3),
                    "insert": round(plain["insert_msgs_per_s"] / encrypted["insert_msgs_per_s"], 3),
                    "open": round(encrypted["open_ms"] / plain["open_ms"], 3),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
