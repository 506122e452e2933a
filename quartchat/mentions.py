"""Mentions (docs/protocol.md §18): `@name` in a chat or edit text, for an existing user.

A mention is `@` followed by a user's name, compared as names are (NFC, case-folded:
quartchat/names.py). Names may hold spaces, `.` and `-`, so `@Mary Ann` may mean `Mary
Ann` or `Mary`: the longest name that exists wins. A name ends where the text does or
before a character that cannot continue a word (anything but a letter, digit, mark or
`_`), so `@bob.` and `@bob-` mention bob (or a user named `bob.`, the longer name) but
`@bobby` does not. An `@` right after a
letter, digit, mark, `_`, `.` or `-` starts nothing: `bob@example.com` mentions nobody.

Finding them takes two steps. `candidates` reads the text alone (no database): for each
`@`, the keys of every place a name could end, longest first. The message writer runs it
before the batch's transaction (quartchat/writes.py `Writes.commit_batch`), so no text,
however hostile, lengthens the time the write lock is held; its work per text is capped
(MAX_ATS, MAX_CANDIDATES, MAX_NORMALIZATIONS). `find_mentions` then looks all of a batch's
candidates up in one indexed query (`users.name_key` is unique) on the connection of the
transaction that stores the messages, so an account made a moment ago by any process is
found, with no cache to keep fresh. A text without `@` costs one substring test and no
query. Chat messages and edits go the same way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from sqlalchemy import Connection, select

from .models import User
from .names import name_key

NAME_MAX_CHARS = 32  # quartchat/accounts.py allows no longer name
# A name's run of text after `@` is read this far (a decomposed name is longer than its NFC form).
_RUN_MAX_CHARS = 4 * NAME_MAX_CHARS
# Distinct keys looked up per text: a text of thousands of `@` costs a bounded query.
MAX_CANDIDATES = 256
# `@`s looked at per text, whether or not a name follows them.
MAX_ATS = 512
# Prefixes normalised (NFC) per text: each costs a normalisation whether or not it
# becomes a key, so a text of long runs that hold no name still costs a bounded amount.
MAX_NORMALIZATIONS = 1024
_KEYS_PER_QUERY = 500  # far below SQLite's 32,766 parameters
_SEPARATORS = frozenset(" .-")
# A quick first look, in C: an `@` not right after a word character, `.` or `-`, and
# followed by neither a space nor ASCII punctuation other than `.`, `-` and `_`. What it
# lets through is checked exactly in Python (marks, which `\w` leaves out, among others).
_MAYBE_MENTION = re.compile(r"(?<![\w.\-])@(?=[^\s!-,/:-@\[-^`{-~])")


def _continues_word(char: str) -> bool:
    """A letter, digit, mark or `_`: a name cannot end just before it."""
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd" or char == "_"


def _joins_before(char: str) -> bool:
    """A character that makes an `@` after it part of a word (an email address), not a mention."""
    return _continues_word(char) or char in ".-"


def _in_name(char: str) -> bool:
    return _continues_word(char) or char in _SEPARATORS


def candidates(text: str) -> list[list[str]]:
    """For each `@` that may start a mention, in text order: the keys (quartchat/names.py)
    of the names it may stand for, longest first. At most MAX_CANDIDATES keys in all,
    from the first MAX_ATS `@`s that may start one."""
    found: list[list[str]] = []
    total = 0
    budget = [MAX_NORMALIZATIONS]
    for number, match in enumerate(_MAYBE_MENTION.finditer(text)):
        at = match.start()
        if number == MAX_ATS or total == MAX_CANDIDATES or budget[0] <= 0:
            break
        if at > 0 and _joins_before(text[at - 1]):  # a mark, which the pattern lets through
            continue
        start = end = at + 1
        limit = min(len(text), start + _RUN_MAX_CHARS)
        while end < limit and _in_name(text[end]):
            end += 1
        keys = _keys_of_run(text[start:end], end == len(text) or not _in_name(text[end]), budget)
        if keys:
            keys = keys[: MAX_CANDIDATES - total]
            found.append(keys)
            total += len(keys)
    return found


def _keys_of_run(run: str, at_text_end: bool, budget: list[int]) -> list[str]:
    """The keys of the prefixes of `run` (letters, digits, marks, `_`, ` `, `.`, `-`) that
    end where a name may: before a separator, or at the run's end when the run ends there
    (`at_text_end`: the text or a character no name holds follows). Longest first.
    `budget`: the normalisations the text may still spend, decreased here."""
    if not run or run[0] == " ":
        return []
    ends = [index for index in range(1, len(run)) if run[index] in _SEPARATORS]
    if at_text_end:
        ends.append(len(run))
    keys: list[str] = []
    for end in reversed(ends):
        prefix = run[:end]
        if prefix[-1] == " ":
            continue  # names are trimmed
        # NFC never changes an ASCII text's length: no need to normalise it to measure it.
        if not prefix.isascii():
            if budget[0] <= 0:
                break
            budget[0] -= 1
            if len(unicodedata.normalize("NFC", prefix)) > NAME_MAX_CHARS:
                continue  # 32 characters at most
        elif len(prefix) > NAME_MAX_CHARS:
            continue
        if budget[0] <= 0:
            break
        budget[0] -= 1
        key = name_key(prefix)
        if key not in keys:
            keys.append(key)
    return keys


def mention_keys(text: str) -> tuple[tuple[str, ...], ...]:
    """`candidates` of a text, as a Draft keeps them; () for a text without `@`."""
    if "@" not in text:
        return ()
    return tuple(tuple(keys) for keys in candidates(text))


def find_mentions(connection: Connection, per_text: Sequence[Sequence[Sequence[str]]]) -> list[tuple[str, ...]]:
    """The user ids each text mentions, given each text's `candidates`, in the order of
    their first mention, without repeats; () for a text that mentions nobody. One query
    for all the texts' names, on `connection` (the storing transaction's: chat messages
    and edits in quartchat/writes.py)."""
    wanted = sorted({key for runs in per_text for keys in runs for key in keys})
    if not wanted:
        return [() for _ in per_text]
    ids: dict[str, str] = {}
    for start in range(0, len(wanted), _KEYS_PER_QUERY):
        chunk = wanted[start : start + _KEYS_PER_QUERY]
        query = select(User.name_key, User.id).where(User.name_key.in_(chunk))
        ids.update((key, user_id) for key, user_id in connection.execute(query))
    mentions: list[tuple[str, ...]] = []
    for runs in per_text:
        users: dict[str, None] = {}  # ordered, without repeats
        for keys in runs:
            for key in keys:  # longest first: the first that exists
                if key in ids:
                    users[ids[key]] = None
                    break
        mentions.append(tuple(users))
    return mentions
