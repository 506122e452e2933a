"""quartchat/access.py on a real migrated SQLite database: what each signed-in user,
cookie or bot token, may see of each kind of room."""

from __future__ import annotations

import pytest

from quartchat.access import NotAllowed, NotVisible, check_room, readable_rooms
from quartchat.database import Database
from quartchat.protocol import UserRef
from quartchat.rooms import dm_room_name
from quartchat.store import SignedIn, Store
from quartchat.writes import create_writes

from .support import ALICE, add_user

BOB = UserRef("u-bob", "bob")


def signed_in(user: UserRef, token_rooms: frozenset[str] | None = None, role: str = "member") -> SignedIn:
    return SignedIn(user, "s", 0, role=role, token_id="t" if token_rooms is not None else None, token_rooms=token_rooms)


@pytest.fixture
async def rooms(database: Database) -> Store:
    await add_user(database, BOB)
    writes = create_writes(database)
    await writes.create_room("team", "private", ALICE.id)
    await writes.create_room("hall", "public", BOB.id)
    await writes.open_dm(dm_room_name("k", ALICE.id, BOB.id), (ALICE.id, BOB.id))
    return Store(database)


async def test_members_see_their_rooms_and_outsiders_nothing(rooms: Store) -> None:
    team = await check_room(rooms, signed_in(ALICE), "team")
    assert (team.kind, team.is_member, team.role, team.restricted) == ("private", True, "owner", True)
    for who in (signed_in(BOB), signed_in(BOB, role="admin")):
        with pytest.raises(NotVisible):
            await check_room(rooms, who, "team")
    hall = await check_room(rooms, signed_in(ALICE), "hall")
    assert (hall.kind, hall.is_member, hall.exists) == ("public", False, True)
    dm = await check_room(rooms, signed_in(BOB), dm_room_name("k", BOB.id, ALICE.id))
    assert (dm.kind, dm.role) == ("dm", "member")


async def test_unknown_names_are_public_rooms_to_be_except_dm_names_and_invalid_ones(rooms: Store) -> None:
    future = await check_room(rooms, signed_in(ALICE), "not-yet")
    assert (future.kind, future.exists, future.is_member) == ("public", False, False)
    for name in ("dm-0000000000000000", "Bad Name", "", "x" * 65, "a\udc80"):
        with pytest.raises(NotVisible):
            await check_room(rooms, signed_in(ALICE), name)


async def test_a_token_limited_to_rooms_works_only_there(rooms: Store) -> None:
    limited = signed_in(ALICE, frozenset({"hall"}))
    assert (await check_room(rooms, limited, "hall")).kind == "public"
    for name in ("team", "not-yet"):
        with pytest.raises(NotAllowed):
            await check_room(rooms, limited, name)


async def test_readable_rooms_lists_public_rooms_and_ones_own_within_a_tokens_rooms(rooms: Store) -> None:
    dm = dm_room_name("k", ALICE.id, BOB.id)

    async def names(who: SignedIn) -> list[str]:
        return [r.name for r in await rooms.rooms_of(who.user.id, readable_rooms(who))]

    assert await names(signed_in(ALICE)) == sorted([dm, "hall", "team"])
    assert await names(signed_in(BOB, role="admin")) == sorted([dm, "hall"])
    assert await names(signed_in(ALICE, frozenset({"team"}))) == ["team"]
    assert await names(signed_in(ALICE, frozenset())) == []


def test_dm_names_are_the_same_for_both_users_and_depend_on_the_key() -> None:
    name = dm_room_name("key", "u-1", "u-2")
    assert name == dm_room_name("key", "u-2", "u-1") != dm_room_name("other key", "u-1", "u-2")
    assert len(name) == 19 and name.startswith("dm-") and int(name[3:], 16) >= 0
