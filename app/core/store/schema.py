"""The history schema and its forward migrations (`PRAGMA user_version`).

Migration N takes a database from version N-1 to N. Never edit a released
step; add a new one.
"""

from __future__ import annotations

from typing import Any

from app.core.store.transaction import transaction

MIGRATIONS: list[str] = [
    # 1: conversations, a tree of messages, full-text indexes over both.
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        system_prompt TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        current_leaf INTEGER,
        deleted_at REAL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
        content TEXT NOT NULL DEFAULT '',
        model TEXT,
        stats TEXT,
        complete INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    CREATE INDEX messages_by_parent ON messages(parent_id);
    CREATE INDEX conversations_by_update ON conversations(deleted_at, pinned, updated_at);
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE VIRTUAL TABLE conversations_fts USING fts5(
        title, content='conversations', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER conversations_ai AFTER INSERT ON conversations BEGIN
        INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
    END;
    CREATE TRIGGER conversations_ad AFTER DELETE ON conversations BEGIN
        INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.id, old.title);
    END;
    CREATE TRIGGER conversations_au AFTER UPDATE OF title ON conversations BEGIN
        INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.id, old.title);
        INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
    END;
    """,
    # 2: documents attached to a conversation, their chunks with page/section references, and a
    # stemmed full-text index over the chunks (BM25 retrieval); vectors are optional blobs.
    """
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        error TEXT NOT NULL DEFAULT '',
        pages INTEGER,
        chunk_count INTEGER NOT NULL DEFAULT 0,
        token_count INTEGER NOT NULL DEFAULT 0,
        added_at REAL NOT NULL,
        UNIQUE (conversation_id, path)
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        text TEXT NOT NULL,
        page INTEGER,
        heading TEXT,
        line_start INTEGER,
        line_end INTEGER,
        token_count INTEGER NOT NULL,
        vector BLOB
    );
    CREATE INDEX chunks_by_document ON chunks(document_id, ord);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END;
    """,
    # Preferences that are user text (the system prompt): kept encrypted, never in the settings file.
    """
    CREATE TABLE preferences (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # The chunk index reads the words inside code's compound names too (`app.core.store.index_words`);
    # the chunks already indexed are indexed again.
    """
    DROP TRIGGER chunks_ai;
    DROP TRIGGER chunks_ad;
    DROP TRIGGER chunks_au;
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, tern_index_words(new.text));
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, tern_index_words(old.text));
    END;
    CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, tern_index_words(old.text));
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, tern_index_words(new.text));
    END;
    INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all');
    INSERT INTO chunks_fts(rowid, text) SELECT id, tern_index_words(text) FROM chunks;
    """,
    # 5: images sent with questions, kept once each by their SHA-256 (already stripped of metadata),
    # with a thumbnail for display; an image goes when the last message holding it does.
    """
    CREATE TABLE images (
        key TEXT PRIMARY KEY,
        mime TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        data BLOB NOT NULL,
        thumbnail BLOB NOT NULL,
        added_at REAL NOT NULL
    );
    CREATE TABLE message_images (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        key TEXT NOT NULL REFERENCES images(key),
        PRIMARY KEY (message_id, ord)
    );
    CREATE INDEX message_images_by_key ON message_images(key);
    CREATE TRIGGER message_images_ad AFTER DELETE ON message_images BEGIN
        DELETE FROM images WHERE key = old.key AND NOT EXISTS (SELECT 1 FROM message_images WHERE key = old.key);
    END;
    """,
    # 6: a scanned PDF page is kept as an image, held by a chunk of its document (with empty text); an image
    # goes when neither a message nor a chunk holds it any more.
    """
    ALTER TABLE chunks ADD COLUMN image_key TEXT REFERENCES images(key);
    CREATE INDEX chunks_by_image ON chunks(image_key) WHERE image_key IS NOT NULL;
    DROP TRIGGER message_images_ad;
    CREATE TRIGGER message_images_ad AFTER DELETE ON message_images BEGIN
        DELETE FROM images WHERE key = old.key
            AND NOT EXISTS (SELECT 1 FROM message_images WHERE key = old.key)
            AND NOT EXISTS (SELECT 1 FROM chunks WHERE image_key = old.key);
    END;
    CREATE TRIGGER chunks_image_ad AFTER DELETE ON chunks WHEN old.image_key IS NOT NULL BEGIN
        DELETE FROM images WHERE key = old.image_key
            AND NOT EXISTS (SELECT 1 FROM message_images WHERE key = old.image_key)
            AND NOT EXISTS (SELECT 1 FROM chunks WHERE image_key = old.image_key);
    END;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Any, target: int = SCHEMA_VERSION) -> int:
    """Apply the missing steps up to `target`, each in its own transaction; returns the new version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        from app.core.store.errors import StoreError

        raise StoreError("Your history was written by a newer version of Tern; update Tern to open it.")
    for step in range(version, target):
        with transaction(conn):
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
    return max(version, target)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (trigger bodies keep their inner semicolons)."""
    from sqlcipher3 import dbapi2

    out: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current).strip()
        if dbapi2.complete_statement(joined):
            out.append(joined)
            current = []
    return out
