"""Conversations and their message trees, stored in the encrypted database.

Messages form a tree through `parent_id`: editing a message or regenerating
an answer adds a sibling instead of overwriting, and `current_leaf` records
which branch the conversation shows. Not thread-safe: one store writer owns it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.chat.image import StoredImage
from app.core.store.database import Connection
from app.core.store.image_store import ImageStore
from app.core.store.transaction import transaction

HIGHLIGHT_START, HIGHLIGHT_END = "\x02", "\x03"  # snippet markers; the UI turns them into bold
_TITLE_CHARS = 60


@dataclass(frozen=True)
class ConversationSummary:
    """A row of the sidebar."""

    id: int
    title: str
    created_at: float
    updated_at: float
    pinned: bool


@dataclass(frozen=True)
class StoredMessage:
    """One message as stored."""

    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    content: str
    model: str | None
    stats: dict[str, Any] | None
    complete: bool
    created_at: float
    images: tuple[str, ...] = ()  # keys of the images sent with it (image_store.py), in order


@dataclass(frozen=True)
class BranchEntry:
    """A message on the shown branch, with the ids of its versions (itself included, oldest first)."""

    message: StoredMessage
    versions: tuple[int, ...]


@dataclass(frozen=True)
class OpenedConversation:
    """What the window needs to show a conversation."""

    id: int
    title: str
    system_prompt: str
    branch: list[BranchEntry]
    images: dict[str, StoredImage] = field(default_factory=dict)  # the branch's images, thumbnails only


@dataclass(frozen=True)
class SearchHit:
    """A search result: a message (or a title, when `message_id` is None) with a highlighted snippet."""

    conversation_id: int
    message_id: int | None
    title: str
    snippet: str


def auto_title(text: str) -> str:
    """A title from the first message: its first line, cut at a word boundary."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "New chat")
    if len(line) <= _TITLE_CHARS:
        return line
    cut = line[:_TITLE_CHARS].rsplit(" ", 1)[0]
    return (cut or line[:_TITLE_CHARS]) + "…"


def fts_query(text: str) -> str:
    """User input as an FTS5 query: every word must match, the last one as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


_MESSAGE_COLUMNS = "id, conversation_id, parent_id, role, content, model, stats, complete, created_at"


def _row_id(cursor: Any) -> int:
    rowid = cursor.lastrowid
    if rowid is None:
        raise RuntimeError("INSERT returned no row id")
    return int(rowid)


def _message(row: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]) if row[6] else None, bool(row[7]), row[8]
    )


class ConversationStore:
    """Repository over an open database connection."""

    def __init__(self, conn: Connection) -> None:
        self._db = conn

    @property
    def connection(self) -> Connection:
        """The open database (for backup and re-keying)."""
        return self._db

    def use(self, conn: Connection) -> None:
        """Go on with another connection to the same history (after its key changed)."""
        self._db = conn

    @property
    def images(self) -> ImageStore:
        """The images sent with questions, over the same connection."""
        return ImageStore(self._db)

    # Conversations
    def create_conversation(
        self, title: str = "", system_prompt: str = "", settings: dict[str, Any] | None = None
    ) -> int:
        """A new, empty conversation."""
        now = time.time()
        cur = self._db.execute(
            "INSERT INTO conversations (title, created_at, updated_at, system_prompt, settings) VALUES (?, ?, ?, ?, ?)",
            (title, now, now, system_prompt, json.dumps(settings or {})),
        )
        return _row_id(cur)

    def conversations(self) -> list[ConversationSummary]:
        """Live conversations, pinned first, then most recently updated."""
        rows = self._db.execute(
            "SELECT id, title, created_at, updated_at, pinned FROM conversations WHERE deleted_at IS NULL "
            "ORDER BY pinned DESC, updated_at DESC, id DESC"
        ).fetchall()
        return [ConversationSummary(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        """Title, system prompt, settings and current branch of one conversation."""
        row = self._db.execute(
            "SELECT title, system_prompt, settings, current_leaf, pinned FROM conversations WHERE id = ?",
            (conversation_id,),
        ).fetchone()
        if row is None:
            raise KeyError(conversation_id)
        return {
            "title": row[0],
            "system_prompt": row[1],
            "settings": json.loads(row[2]),
            "current_leaf": row[3],
            "pinned": bool(row[4]),
        }

    def rename(self, conversation_id: int, title: str) -> None:
        """Set a conversation's title."""
        self._db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip(), conversation_id))

    def set_system_prompt(self, conversation_id: int, text: str) -> None:
        """The system prompt this conversation's turns use."""
        self._db.execute("UPDATE conversations SET system_prompt = ? WHERE id = ?", (text, conversation_id))

    def preferences(self) -> dict[str, str]:
        """The preferences kept in the history."""
        return {k: v for k, v in self._db.execute("SELECT key, value FROM preferences").fetchall()}

    def set_preference(self, key: str, value: str) -> None:
        """Keep one preference in the history."""
        self._db.execute("INSERT OR REPLACE INTO preferences (key, value) VALUES (?, ?)", (key, value))

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        """Pin or unpin."""
        self._db.execute("UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id))

    def delete(self, conversation_id: int) -> None:
        """Hide a conversation; `restore` undoes it until `purge_deleted` runs."""
        self._db.execute("UPDATE conversations SET deleted_at = ? WHERE id = ?", (time.time(), conversation_id))

    def restore(self, conversation_id: int) -> None:
        """Undo `delete`."""
        self._db.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conversation_id,))

    def purge_deleted(self) -> int:
        """Erase hidden conversations for good (secure_delete overwrites their pages)."""
        return int(self._db.execute("DELETE FROM conversations WHERE deleted_at IS NOT NULL").rowcount)

    # Messages
    def add_message(
        self,
        conversation_id: int,
        parent_id: int | None,
        role: str,
        content: str,
        model: str | None = None,
        stats: dict[str, Any] | None = None,
        complete: bool = True,
        created_at: float | None = None,
        images: Sequence[StoredImage] = (),
    ) -> int:
        """Append a message (with the images sent with it) under `parent_id`; it becomes the current leaf."""
        now = time.time() if created_at is None else created_at
        with transaction(self._db):
            cur = self._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, model, stats, complete, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    parent_id,
                    role,
                    content,
                    model,
                    json.dumps(stats) if stats else None,
                    int(complete),
                    now,
                ),
            )
            message_id = _row_id(cur)
            if images:
                self.images.attach(message_id, images)
            self._db.execute(
                "UPDATE conversations SET current_leaf = ?, updated_at = ?, "
                "title = CASE WHEN title = '' AND ? = 'user' THEN ? ELSE title END WHERE id = ?",
                (message_id, now, role, auto_title(content), conversation_id),
            )
        return message_id

    def update_message(
        self, message_id: int, content: str, stats: dict[str, Any] | None = None, complete: bool = True
    ) -> None:
        """Replace a message's text (a streaming checkpoint, or the final answer)."""
        self._db.execute(
            "UPDATE messages SET content = ?, stats = COALESCE(?, stats), complete = ? WHERE id = ?",
            (content, json.dumps(stats) if stats else None, int(complete), message_id),
        )

    def message(self, message_id: int) -> StoredMessage:
        """One message."""
        row = self._db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(message_id)
        return _message(row)

    def path_to(self, leaf_id: int) -> list[StoredMessage]:
        """The branch from the root down to `leaf_id`."""
        rows = self._db.execute(
            f"WITH RECURSIVE up(n, depth) AS (SELECT ?, 0 UNION ALL "
            f"SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.n WHERE m.parent_id IS NOT NULL) "
            f"SELECT {', '.join('m.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))} "
            f"FROM up JOIN messages m ON m.id = up.n ORDER BY up.depth DESC",
            (leaf_id,),
        ).fetchall()
        path = [_message(r) for r in rows]
        keys = self.images.keys_of(m.id for m in path)
        return [replace(m, images=keys[m.id]) if m.id in keys else m for m in path]

    def current_path(self, conversation_id: int) -> list[StoredMessage]:
        """The branch the conversation shows."""
        leaf = self.conversation(conversation_id)["current_leaf"]
        return self.path_to(leaf) if leaf else []

    def siblings(self, message_id: int) -> list[int]:
        """Ids of the versions of a message (same parent), oldest first, itself included."""
        msg = self.message(message_id)
        rows = self._db.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
            (msg.conversation_id, msg.parent_id),
        ).fetchall()
        return [r[0] for r in rows]

    def branch(self, leaf_id: int | None) -> list[BranchEntry]:
        """The path to `leaf_id`, each message with its versions (two queries, whatever the length)."""
        if leaf_id is None:
            return []
        path = self.path_to(leaf_id)
        if not path:
            return []
        versions: dict[int | None, list[int]] = {}
        rows = self._db.execute(
            "SELECT parent_id, id FROM messages WHERE conversation_id = ? AND "
            "(parent_id IS NULL OR parent_id IN (SELECT value FROM json_each(?))) ORDER BY id",
            (path[0].conversation_id, json.dumps([m.id for m in path])),
        ).fetchall()
        for parent, message_id in rows:
            versions.setdefault(parent, []).append(message_id)
        return [BranchEntry(m, tuple(versions.get(m.parent_id, [m.id]))) for m in path]

    def open(self, conversation_id: int, message_id: int | None = None) -> OpenedConversation:
        """A conversation with its shown branch, or the branch through `message_id` (which becomes shown)."""
        meta = self.conversation(conversation_id)
        if message_id is not None:
            leaf: int | None = self.newest_leaf(message_id)
            self._db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, conversation_id))
        else:
            leaf = meta["current_leaf"]
        branch = self.branch(leaf)
        images = self.images.thumbnails(key for entry in branch for key in entry.message.images)
        return OpenedConversation(conversation_id, meta["title"], meta["system_prompt"], branch, images)

    def newest_leaf(self, message_id: int) -> int:
        """Follow the newest child down from `message_id` to a leaf."""
        current = message_id
        while True:
            row = self._db.execute("SELECT max(id) FROM messages WHERE parent_id = ?", (current,)).fetchone()
            if row[0] is None:
                return current
            current = row[0]

    # Search and export
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Titles and messages matching every word of `text` (the last as a prefix), best first."""
        query = fts_query(text)
        if not query:
            return []
        # Each query ranks inside the full-text index first (a MATERIALIZED CTE) and joins
        # only the best rows. Left to itself the planner walks the conversations index and
        # probes the full-text index row by row: 100x slower, and it decrypts the whole file.
        titles = self._db.execute(
            "WITH best AS MATERIALIZED (SELECT rowid, rank, highlight(conversations_fts, 0, ?, ?) AS hl "
            "FROM conversations_fts WHERE conversations_fts MATCH ? ORDER BY rank LIMIT ?) "
            "SELECT c.id, c.title, best.hl FROM best JOIN conversations c ON c.id = best.rowid "
            "WHERE c.deleted_at IS NULL ORDER BY best.rank LIMIT ?",
            (HIGHLIGHT_START, HIGHLIGHT_END, query, 2 * limit, limit),
        ).fetchall()
        messages = self._db.execute(
            "WITH best AS MATERIALIZED (SELECT rowid, rank, snippet(messages_fts, 0, ?, ?, '…', 12) AS snip "
            "FROM messages_fts "
            "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?) "
            "SELECT m.conversation_id, m.id, c.title, best.snip FROM best JOIN messages m ON m.id = best.rowid "
            "JOIN conversations c ON c.id = m.conversation_id WHERE c.deleted_at IS NULL ORDER BY best.rank LIMIT ?",
            (HIGHLIGHT_START, HIGHLIGHT_END, query, 2 * limit, limit),
        ).fetchall()
        hits = [SearchHit(r[0], None, r[1], r[2]) for r in titles]
        hits += [SearchHit(r[0], r[1], r[2], r[3]) for r in messages]
        return hits[:limit]

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation's shown branch as plain data, images included (base64)."""
        meta = self.conversation(conversation_id)
        messages = []
        for m in self.current_path(conversation_id):
            item: dict[str, Any] = {
                "role": m.role, "content": m.content, "model": m.model, "stats": m.stats, "created_at": m.created_at,
            }  # fmt: skip
            stored = [self.images.image(key) for key in m.images]
            if m.images:
                item["images"] = [image.as_json() for image in stored if image is not None]
            messages.append(item)
        return {"title": meta["title"], "system_prompt": meta["system_prompt"], "messages": messages}

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation's shown branch as Markdown."""
        data = self.export_json(conversation_id)
        parts = [f"# {data['title'] or 'Conversation'}\n"]
        if data["system_prompt"]:
            parts.append(f"> System prompt: {data['system_prompt']}\n")
        for m in data["messages"]:
            who = "You" if m["role"] == "user" else (m["model"] or "Assistant")
            shown = "".join(
                f"![{image['name'] or 'image'}](data:{image['mime']};base64,{image['data']})\n\n"
                for image in m.get("images", ())
            )
            parts.append(f"## {who}\n\n{shown}{m['content']}\n")
        return "\n".join(parts)

    def import_json(self, data: dict[str, Any]) -> int:
        """Recreate a conversation exported with `export_json`; returns its id."""
        conversation_id = self.create_conversation(data.get("title", ""), data.get("system_prompt", ""))
        parent: int | None = None
        for m in data.get("messages", []):
            parent = self.add_message(
                conversation_id,
                parent,
                m["role"],
                m["content"],
                m.get("model"),
                m.get("stats"),
                created_at=m.get("created_at"),
                images=[StoredImage.from_json(image) for image in m.get("images", ())],
            )
        return conversation_id
