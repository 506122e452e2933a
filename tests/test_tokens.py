"""quartchat/tokens.py and the account administration in quartchat/accounts.py, on a
real database without a server (the server's side: tests/integration/test_tokens.py)."""

from __future__ import annotations

import hashlib
import re

import pytest

from quartchat import tokens
from quartchat.accounts import (
    AccountDisabled,
    NoSuchAccount,
    Passwords,
    WrongPassword,
    authenticate,
    set_disabled,
    set_password,
    set_role,
)
from quartchat.database import Database
from quartchat.store import Store, token_session_id
from quartchat.writes import create_writes

from .support import ALICE

PASSWORD = "correct horse battery"


def test_a_token_is_256_random_bits_and_only_its_sha256_is_kept() -> None:
    made = {tokens.generate() for _ in range(100)}
    assert len(made) == 100
    for token in made:
        assert re.fullmatch(r"qct_[A-Za-z0-9_-]{43}", token)
        assert tokens.token_hash(token) == hashlib.sha256(token.encode()).hexdigest()


async def test_create_verify_and_revoke(database: Database) -> None:
    store, writes = Store(database), create_writes(database)
    limited = await tokens.create(store, writes, "ALICE", ["ci", "ci", "deploys"])
    everywhere = await tokens.create(store, writes, "alice", None)
    assert limited.user_name == "alice" and limited.rooms == ("ci", "deploys")

    who = await tokens.verify(store, limited.token)
    assert who is not None and who.user == ALICE and who.token_id == limited.id
    assert who.token_rooms == frozenset({"ci", "deploys"}) and who.session_id == token_session_id(limited.id)
    anywhere = await tokens.verify(store, everywhere.token)
    assert anywhere is not None and anywhere.token_rooms is None

    listed = await store.tokens()
    assert [(t.id, t.user, t.rooms) for t in listed] == [
        (limited.id, ALICE, ("ci", "deploys")),
        (everywhere.id, ALICE, None),
    ]

    await tokens.revoke(writes, limited.id)
    assert await tokens.verify(store, limited.token) is None
    with pytest.raises(tokens.TokenError, match="no token"):
        await tokens.revoke(writes, limited.id)


@pytest.mark.parametrize("presented", ["", "qct_", "qct_" + "A" * 42, "qct_" + "A" * 44, "Bearer x", "qct_" + "é" * 43])
async def test_malformed_tokens_are_refused_before_the_database(presented: str) -> None:
    class NoDatabase(Store):
        async def token_session(self, token_hash: str) -> None:
            raise AssertionError("the database was asked")

    assert await tokens.verify(NoDatabase.__new__(NoDatabase), presented) is None


async def test_create_refuses_unknown_users_bad_rooms_and_disabled_users(database: Database) -> None:
    store, writes = Store(database), create_writes(database)
    with pytest.raises(tokens.TokenError, match="no user is named"):
        await tokens.create(store, writes, "nobody", None)
    with pytest.raises(tokens.TokenError, match="not a room name"):
        await tokens.create(store, writes, "alice", ["Lobby!"])
    await set_disabled(store, writes, "alice", True)
    with pytest.raises(tokens.TokenError, match="disabled"):
        await tokens.create(store, writes, "alice", None)
    assert await store.tokens() == []


async def test_roles_and_disabled_accounts(database: Database) -> None:
    store, writes, passwords = Store(database), create_writes(database), Passwords()
    await set_password(store, writes, passwords, "alice", PASSWORD)
    assert (await set_role(store, writes, "Alice", "admin")).id == ALICE.id
    assert (await store.account_by_name_key("alice")).role == "admin"  # type: ignore[union-attr]
    with pytest.raises(NoSuchAccount):
        await set_role(store, writes, "nobody", "admin")

    await set_disabled(store, writes, "alice", True)
    with pytest.raises(AccountDisabled):
        await authenticate(store, writes, passwords, "alice", PASSWORD)
    with pytest.raises(WrongPassword):  # the wrong password says nothing of the account
        await authenticate(store, writes, passwords, "alice", "not the password")
    await set_disabled(store, writes, "alice", False)
    assert await authenticate(store, writes, passwords, "alice", PASSWORD) == ALICE
