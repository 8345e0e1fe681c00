"""The text the full-text index reads for a chunk: its own words, and the words inside code's compound names.

FTS5's tokenizer splits on anything that is not a letter or digit, which leaves
two things of source code unfindable: a name written in camelCase is one token
("unparseObject", "QPDFWriter"), and an escape glued to a word hides it
("\\nendobj" is the token "nendobj"). Each such token is kept and followed by
its parts ("unparseObject unparse Object"), so a question that says "objects" or
"endobj" finds it. The chunk's stored text is not changed.

Registered on every connection as the SQL function `tern_index_words`, which
the chunk index's triggers call (`app.core.store.schema`).
"""

from __future__ import annotations

import re

SQL_NAME = "tern_index_words"

_UPPER = re.compile(r"[A-Z]")  # a plain scan, several times faster than matching the case change itself
_LOWER_OR_DIGIT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# An escape sequence glued to the word after it, as in C strings: "\nendobj", "\tname".
_ESCAPED = re.compile(r"\\[nrtfv]([A-Za-z][A-Za-z0-9]*)")


def index_words(text: str | None) -> str:
    """`text` with the parts of compound names and of escaped words added after them."""
    if not text:
        return text or ""
    if "\\" in text:
        text = _ESCAPED.sub(lambda m: f"{m.group(0)} {m.group(1)}", text)
    pieces: list[str] = []
    done = 0  # text[:done] is in `pieces`
    for upper in _UPPER.finditer(text):  # prose has few capitals, and they start words
        at = upper.start()
        if at < done or at == 0:
            continue  # in a word already taken apart, or the first letter
        before, after = text[at - 1], text[at + 1 : at + 2]
        # The case changes inside a word: parseAsync, utf8Decode; QPDFWriter (not Title or ALLCAPS).
        if not (before in _LOWER_OR_DIGIT or (before.isupper() and after.islower() and before in _WORD_CHARS)):
            continue
        start, end = at, at + 1
        while start > 0 and text[start - 1] in _WORD_CHARS:
            start -= 1
        while end < len(text) and text[end] in _WORD_CHARS:
            end += 1
        word = text[start:end]
        if not word[0].isalpha():
            continue
        pieces += [text[done:end], " ", " ".join(_PART.findall(word))]
        done = end
    return "".join(pieces) + text[done:] if pieces else text
