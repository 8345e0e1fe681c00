"""The encrypted history store on real SQLCipher."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import stat
from pathlib import Path

import pytest

from app.core.docs.doc_store import DocumentStore
from app.core.store.conversation_store import HIGHLIGHT_END, HIGHLIGHT_START, ConversationStore, auto_title, fts_query
from app.core.store.database import apply_key, connect, open_database
from app.core.store.errors import StoreError, WrongKeyError
from app.core.store.schema import SCHEMA_VERSION, migrate

SECRET_SENTENCES = [
    "The quarterly merger with Halvorsen Shipping closes on the ninth of March.",
    "My allergy medication is cetirizine, ten milligrams each morning.",
]


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def store(tmp_path: Path, key: bytes) -> ConversationStore:
    return ConversationStore(open_database(tmp_path / "history.db", key))


def file_digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.glob(path.name + "*"))}


def test_nothing_is_stored_in_plaintext(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "history.db"
    conn = open_database(db, key)
    s = ConversationStore(conn)
    cid = s.create_conversation()
    parent = None
    for sentence in SECRET_SENTENCES:
        parent = s.add_message(cid, parent, "user", sentence)
    assert s.search("Halvorsen")  # the full-text index has it
    # Scan while the WAL is live, then again after closing.
    for _ in range(2):
        files = list(tmp_path.glob("history.db*"))
        assert db in files
        raw = b"".join(p.read_bytes() for p in files)
        for sentence in SECRET_SENTENCES:
            for word in ("Halvorsen", "cetirizine", sentence):
                assert word.encode() not in raw
        conn.close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(db).execute("SELECT * FROM sqlite_master").fetchall()
    reopened = ConversationStore(open_database(db, key))
    assert [m.content for m in reopened.current_path(cid)] == SECRET_SENTENCES


def test_wrong_key_leaves_the_file_byte_identical(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "history.db"
    conn = open_database(db, key)
    ConversationStore(conn).create_conversation("kept")
    conn.close()
    before = file_digest(db)
    with pytest.raises(WrongKeyError, match="does not open"):
        open_database(db, secrets.token_bytes(32))
    assert file_digest(db) == before


def test_migrates_from_every_earlier_version(tmp_path: Path, key: bytes) -> None:
    for version in range(SCHEMA_VERSION):
        db = tmp_path / f"v{version}.db"
        db.touch(mode=0o600)  # version 0: a file that was created but never initialised
        if version:
            old = connect(str(db), isolation_level=None)  # with the SQL functions the triggers call
            apply_key(old, key)
            migrate(old, target=version)  # exactly the schema that version shipped
            old.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('kept', 1, 1)")
            old.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'still here', 1)"
            )
            if version >= 2:  # documents: their chunks are indexed again, with the words inside code's names
                old.execute(
                    "INSERT INTO documents (conversation_id, path, name, kind, size, mtime, added_at) "
                    "VALUES (1, '/w.cc', 'w.cc', 'code', 1, 1, 1)"
                )
                old.execute(
                    "INSERT INTO chunks (document_id, ord, text, token_count) VALUES (1, 0, 'unparseObject();', 4)"
                )
            old.close()
        latest = open_database(db, key)
        assert latest.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        store = ConversationStore(latest)
        if version:
            assert [c.title for c in store.conversations()] == ["kept"]
            assert store.search("still")[0].message_id == 1  # the index came along
        if version >= 2:
            assert DocumentStore(latest).search(1, "unparse")[0].text == "unparseObject();"
        cid = store.create_conversation("after migration")
        latest.execute(
            "INSERT INTO documents (conversation_id, path, name, kind, size, mtime, added_at) "
            "VALUES (?, '/a.pdf', 'a.pdf', 'pdf', 1, 1, 1)",
            (cid,),
        )
        latest.close()


def test_a_newer_schema_is_refused(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "history.db"
    conn = open_database(db, key)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer version"):
        open_database(db, key)


def test_conversations_titles_and_order(store: ConversationStore) -> None:
    a = store.create_conversation()
    store.add_message(a, None, "user", "How do lighthouses work at night?\nMore detail here.")
    b = store.create_conversation()
    store.add_message(b, None, "user", "x" * 100 + " tail")
    assert store.conversation(a)["title"] == "How do lighthouses work at night?"
    assert store.conversation(b)["title"].endswith("…")
    assert [c.id for c in store.conversations()] == [b, a]  # newest first
    store.set_pinned(a, True)
    assert [c.id for c in store.conversations()] == [a, b]
    store.rename(b, "Renamed")
    assert store.conversation(b)["title"] == "Renamed"
    store.delete(b)
    assert [c.id for c in store.conversations()] == [a]
    store.restore(b)
    assert {c.id for c in store.conversations()} == {a, b}
    store.delete(b)
    assert store.purge_deleted() == 1


def test_branches_keep_every_version(store: ConversationStore) -> None:
    cid = store.create_conversation()
    q = store.add_message(cid, None, "user", "Question")
    a1 = store.add_message(cid, q, "assistant", "First answer")
    a2 = store.add_message(cid, q, "assistant", "Second answer")  # regenerate
    assert store.siblings(a2) == [a1, a2]
    assert [m.content for m in store.current_path(cid)] == ["Question", "Second answer"]
    follow = store.add_message(cid, a1, "user", "Follow-up on the first")
    shown = store.open(cid, a1).branch
    assert [e.message.content for e in shown] == ["Question", "First answer", "Follow-up on the first"]
    assert [e.versions for e in shown] == [(q,), (a1, a2), (follow,)]
    assert store.conversation(cid)["current_leaf"] == follow
    assert [e.message.content for e in store.open(cid, a2).branch] == ["Question", "Second answer"]
    assert [e.message.content for e in store.open(cid).branch] == ["Question", "Second answer"]


def test_streaming_checkpoints_update_the_answer(store: ConversationStore) -> None:
    cid = store.create_conversation()
    q = store.add_message(cid, None, "user", "Tell me a story")
    a = store.add_message(cid, q, "assistant", "", model="gemma", complete=False)
    store.update_message(a, "Once upon", complete=False)
    store.update_message(a, "Once upon a time.", stats={"completion_tokens": 5})
    msg = store.message(a)
    assert (msg.content, msg.complete, msg.stats, msg.model) == (
        "Once upon a time.",
        True,
        {"completion_tokens": 5},
        "gemma",
    )
    assert store.search("upon")[0].message_id == a  # the index follows updates


def test_search_highlights_titles_and_messages(store: ConversationStore) -> None:
    a = store.create_conversation("Sailing trip plans")
    store.add_message(a, None, "user", "We leave from the harbour at dawn with the new spinnaker.")
    b = store.create_conversation("Recipes")
    store.add_message(b, None, "user", "Bake the bread at 220 degrees.")
    hits = store.search("spinn")
    assert [(h.conversation_id, h.message_id is not None) for h in hits] == [(a, True)]
    assert f"{HIGHLIGHT_START}spinnaker{HIGHLIGHT_END}" in hits[0].snippet
    titles = store.search("sailing")
    assert titles[0].message_id is None and HIGHLIGHT_START in titles[0].snippet
    assert store.search("bread degrees")[0].conversation_id == b
    assert store.search("  ") == [] and store.search('"; DROP TABLE') == []
    store.delete(a)
    assert store.search("spinnaker") == []


def test_fts_query_is_safe() -> None:
    assert fts_query('a "b" c*') == '"a" "b" "c"*'
    assert fts_query("***") == ""


def test_export_round_trip(store: ConversationStore) -> None:
    cid = store.create_conversation("Trip", system_prompt="Be brief.")
    q = store.add_message(cid, None, "user", "Where?")
    store.add_message(cid, q, "assistant", "To the **coast**.", model="gemma-3", stats={"decode_tok_s": 20.0})
    data = json.loads(json.dumps(store.export_json(cid)))
    copy = store.import_json(data)
    assert store.export_json(copy) | {"messages": None} == data | {"messages": None}
    assert [(m["role"], m["content"], m["model"]) for m in store.export_json(copy)["messages"]] == [
        (m["role"], m["content"], m["model"]) for m in data["messages"]
    ]
    md = store.export_markdown(cid)
    assert md.startswith("# Trip") and "## You\n\nWhere?" in md and "## gemma-3\n\nTo the **coast**." in md


def test_auto_title_of_blank_text() -> None:
    assert auto_title("\n\n  \n") == "New chat"
