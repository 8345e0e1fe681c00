"""Images in the encrypted history: kept once, tied to questions and scanned pages, exported, gone with the last
message or document chunk that holds them."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest

from app.core.chat.image import StoredImage
from app.core.docs.chunking import PAGE_IMAGE_TOKENS, Chunk
from app.core.docs.doc_store import DocumentStore
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database

# A marker no SQLCipher page could hold by chance: were the image kept in plaintext, it would be found.
MARKER = b"TERN-IMAGE-PLAINTEXT-" + secrets.token_hex(16).encode()


def image(payload: bytes = b"", name: str = "photo.png") -> StoredImage:
    data = b"\x89PNG\r\n\x1a\n" + MARKER + payload
    return StoredImage(hashlib.sha256(data).hexdigest(), "image/png", 640, 480, data, b"thumb" + payload, name)


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def store(tmp_path: Path, key: bytes) -> ConversationStore:
    return ConversationStore(open_database(tmp_path / "history.db", key))


def test_a_question_keeps_its_images_in_order(store: ConversationStore) -> None:
    cid = store.create_conversation()
    first, second = image(b"1", "a.png"), image(b"2", "b.png")
    question = store.add_message(cid, None, "user", "What is on these?", images=[second, first])
    answer = store.add_message(cid, question, "assistant", "Two pictures.")
    path = store.path_to(answer)
    assert path[0].images == (second.key, first.key)
    assert path[1].images == ()
    assert store.images.image(first.key) == first
    opened = store.open(cid)
    assert [e.message.images for e in opened.branch] == [(second.key, first.key), ()]
    shown = opened.images[first.key]
    assert (shown.thumbnail, shown.width, shown.height, shown.name, shown.data) == (b"thumb1", 640, 480, "a.png", b"")


def test_an_image_is_kept_once_and_goes_with_its_last_message(store: ConversationStore) -> None:
    cid = store.create_conversation()
    picture = image()
    q1 = store.add_message(cid, None, "user", "Look", images=[picture])
    # A new version of the question keeps the image without its data: the history already has it.
    q2 = store.add_message(cid, None, "user", "Look again", images=[StoredImage(picture.key, "", 0, 0, b"", b"")])
    assert store.connection.execute("SELECT count(*) FROM images").fetchone()[0] == 1
    assert store.message(q2).id == q2
    assert store.path_to(q2)[0].images == (picture.key,)
    store.connection.execute("DELETE FROM messages WHERE id = ?", (q1,))
    assert store.images.image(picture.key) == picture  # still held by the other version
    store.delete(cid)
    store.purge_deleted()
    assert store.images.image(picture.key) is None
    assert store.connection.execute("SELECT count(*) FROM message_images").fetchone()[0] == 0


def test_images_are_never_in_the_files_in_plaintext(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "history.db"
    conn = open_database(db, key)
    s = ConversationStore(conn)
    cid = s.create_conversation()
    s.add_message(cid, None, "user", "Here", images=[image(b"x" * 5000)])
    for _ in range(2):  # while the WAL is live, then after closing
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("history.db*"))
        assert MARKER not in raw
        conn.close()
    everywhere = [p for p in tmp_path.rglob("*") if p.is_file()]  # no copy anywhere else either
    assert not [p for p in everywhere if MARKER in p.read_bytes()]


def test_export_and_import_carry_the_images(store: ConversationStore) -> None:
    cid = store.create_conversation(title="Pictures")
    picture = image(b"z")
    q = store.add_message(cid, None, "user", "What is it?", images=[picture])
    store.add_message(cid, q, "assistant", "A test pattern.")
    exported = store.export_json(cid)
    assert exported["messages"][0]["images"][0]["key"] == picture.key
    markdown = store.export_markdown(cid)
    assert "![photo.png](data:image/png;base64," in markdown
    copy = store.import_json(exported)
    path = store.current_path(copy)
    assert path[0].images == (picture.key,)
    assert store.images.image(picture.key) == picture


def test_an_export_whose_image_does_not_match_its_key_is_refused(store: ConversationStore) -> None:
    cid = store.create_conversation()
    store.add_message(cid, None, "user", "Hi", images=[image()])
    exported = store.export_json(cid)
    exported["messages"][0]["images"][0]["key"] = "0" * 64
    with pytest.raises(ValueError, match="does not match"):
        store.import_json(exported)


def page(picture: StoredImage, number: int = 1) -> Chunk:
    return Chunk("", number, None, None, None, PAGE_IMAGE_TOKENS, image_key=picture.key)


def test_an_image_held_by_a_chunk_and_a_message_goes_with_the_last_of_them(store: ConversationStore) -> None:
    cid = store.create_conversation()
    picture = image()
    message = store.add_message(cid, None, "user", "Look", images=[picture])
    docs = DocumentStore(store.connection)
    doc = docs.add(cid, "/scan.pdf", "scan.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(doc, [page(picture)], None, [picture])
    store.connection.execute("DELETE FROM messages WHERE id = ?", (message,))
    assert store.images.image(picture.key) == picture  # the document's page still holds it
    docs.replace_chunks(doc, [page(picture)], None, [picture])  # the document read again
    assert store.images.image(picture.key) == picture
    docs.remove(doc)
    assert store.images.image(picture.key) is None

    # The other way round: the message outlives the document.
    message = store.add_message(cid, None, "user", "Look", images=[picture])
    doc = docs.add(cid, "/scan.pdf", "scan.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(doc, [page(picture)], None, [picture])
    docs.remove(doc)
    assert store.images.image(picture.key) == picture
    store.connection.execute("DELETE FROM messages WHERE id = ?", (message,))
    assert store.images.image(picture.key) is None


def test_a_scanned_page_goes_when_its_document_is_read_again_without_it_or_its_chat_is_deleted(
    store: ConversationStore,
) -> None:
    cid = store.create_conversation()
    old, new = image(b"old"), image(b"new")
    docs = DocumentStore(store.connection)
    doc = docs.add(cid, "/scan.pdf", "scan.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(doc, [page(old)], None, [old])
    docs.replace_chunks(doc, [page(new, 2)], None, [new])  # the file changed on disk
    assert store.images.image(old.key) is None and store.images.image(new.key) == new
    assert docs.documents(cid)[0].scanned == (2,)
    store.delete(cid)
    assert store.purge_deleted() == 1
    assert store.connection.execute("SELECT count(*) FROM images").fetchone()[0] == 0
