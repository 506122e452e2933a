"""Search (docs/protocol.md §16): what a query means, and its SQL on each database.

A query is terms separated by spaces and `"quoted phrases"`; every one must appear in
a message's text as a substring, case-insensitively, in any script (`你好` finds
`大家你好啊`). Accents count as written: `café` does not find `cafe`.

The index (migration 0006) finds substrings of 3 or more characters: on SQLite an FTS5
table with the trigram tokenizer, kept in step with `messages` by triggers inside
whichever transaction changes a message (the writer's batch, an import, `db copy`, an
edit, a delete or a retention purge: each of those is a plain UPDATE or DELETE
of `messages`, and the triggers take the old text out of the index in that same
transaction); on PostgreSQL pg_trgm's GIN index on lower(text). A term of 1 or 2
characters has no trigram: on SQLite it is checked with instr() on the rows the longer
terms found, or, alone, on the rooms' rows newest first; PostgreSQL's LIKE needs no
other path (the index is used when the pattern has a trigram, the table otherwise).

"Delete means gone" (§12) needs one more step than the triggers: FTS5's 'delete' hides
a row's trigrams at once, but their bytes stay in older index segments until FTS5
merges them. A delete or retention purge should end with
`INSERT INTO messages_fts(messages_fts) VALUES ('optimize')` (or, on SQLite 3.42+, run
with the table's `secure-delete` option set); on PostgreSQL, VACUUM of messages.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Collection, Iterable

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    column,
    func,
    literal,
    literal_column,
    or_,
    table,
)

from .models import Message, User
from .protocol import CHAT
from .store import AnySelect, message_select

MAX_QUERY_CHARS = 200
TRIGRAM = 3  # the shortest term the index can find
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
# Terms of 1-2 characters have no trigram: each is checked with instr() per case
# spelling on every candidate row, so a query may hold only a few (docs/security.md).
MAX_SHORT_TERMS = 3
SEARCH_SLOTS = 2  # searches at once in a process
TOO_BROAD = "the search is too broad: add a longer word or a room"

# The FTS5 table of migration 0006; its hidden column of the table's own name takes MATCH.
MESSAGES_FTS = table("messages_fts", column("rowid", Integer), column("messages_fts"))
# Objects the migrations make that the models do not describe (autogenerate skips them).
SEARCH_INDEX_NAMES = frozenset({"messages_fts", "ix_messages_text_trgm"})


class BadQuery(ValueError):
    """A query that cannot be run: HTTP 422 with its message."""


def in_the_models(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's include_name: False for the search index's own tables and index
    (FTS5 makes shadow tables messages_fts_data, _idx, _docsize, _config)."""
    return name is None or not (name in SEARCH_INDEX_NAMES or name.startswith("messages_fts_"))


def parse(q: str) -> tuple[str, ...]:
    """The terms of `q`: its quoted phrases as written and its other words, each once.
    An unclosed quote runs to the end of `q`."""
    if len(q) > MAX_QUERY_CHARS:
        raise BadQuery(f"q is at most {MAX_QUERY_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") and not c.isspace() for c in q):
        raise BadQuery("q may not hold control characters")
    terms: list[str] = []
    for index, part in enumerate(q.split('"')):
        inside_quotes = index % 2 == 1
        for term in [part.strip()] if inside_quotes else part.split():
            if term and term not in terms:
                terms.append(term)
    if not terms:
        raise BadQuery('q needs something to find: words, or "a phrase"')
    return tuple(terms)


def check_breadth(terms: tuple[str, ...]) -> None:
    """BadQuery for more than MAX_SHORT_TERMS terms of 1-2 characters."""
    if sum(len(term) < TRIGRAM for term in terms) > MAX_SHORT_TERMS:
        raise BadQuery(f"q may hold at most {MAX_SHORT_TERMS} terms of 1 or 2 characters: {TOO_BROAD}")


def fts_match(terms: Iterable[str]) -> str:
    """An FTS5 query: every term as a string (a substring to the trigram tokenizer), all of them."""
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)


def case_variants(term: str) -> list[str]:
    """The spellings of a short term in every case of each character (at most 9 for
    2 characters): SQLite's own lower() and LIKE fold ASCII only."""
    choices = [sorted({c, *(v for v in (c.lower(), c.upper(), c.title()) if len(v) == 1)}) for c in term]
    return ["".join(spelling) for spelling in itertools.product(*choices)]


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_query(
    terms: tuple[str, ...],
    readable: Callable[[ColumnElement[str]], ColumnElement[bool]],
    *,
    sqlite: bool,
    room: str | None = None,
    user_name_keys: Collection[str] | None = None,
    before: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> AnySelect:
    """The newest `limit + 1` messages that hold every term, in the rooms where
    `readable(room column)` is true, newest first."""
    query = message_select()
    key: ColumnElement[int] = Message.id.expression
    room_column: ColumnElement[str] = Message.room.expression
    if sqlite:
        long = [t for t in terms if len(t) >= TRIGRAM]
        if long:
            # The FTS table drives: its rowids, newest first, are the candidates.
            query = query.join(MESSAGES_FTS, MESSAGES_FTS.c.rowid == Message.id).where(
                MESSAGES_FTS.c.messages_fts.op("MATCH")(fts_match(long))
            )
            key = MESSAGES_FTS.c.rowid
        else:
            # Short terms alone: walk the messages newest first and stop at the limit.
            # `+room` keeps SQLite from gathering every readable room's rows by its
            # room index and sorting them all first.
            room_column = literal_column("+messages.room", String)
        for term in terms:
            if len(term) < TRIGRAM:
                query = query.where(or_(*(func.instr(Message.text, v) > 0 for v in case_variants(term))))
    else:
        for term in terms:
            pattern = literal("%" + escape_like(term) + "%")
            query = query.where(func.lower(Message.text).like(func.lower(pattern), escape="\\"))
    # Current chat texts only (docs/protocol.md §17): never an edit event's text (SQLite's
    # index holds none, but the short-term path reads rows), never a deleted message.
    query = query.where(Message.kind == CHAT, Message.deleted.is_(False), readable(room_column))
    if room is not None:
        query = query.where(Message.room == room)
    if user_name_keys is not None:
        query = query.where(User.name_key.in_(sorted(user_name_keys)))
    if before is not None:
        query = query.where(key < before)
    return query.order_by(key.desc()).limit(limit + 1)
