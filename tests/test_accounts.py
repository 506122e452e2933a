"""docs/protocol.md §10: names and passwords: the rules alone, then across the NFKC fold through the
app (new names fold, accounts made before the fold still sign in as they are, names
that show nothing are refused)."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path

import pytest
from quart import Quart

from quartchat.accounts import (
    InvalidName,
    InvalidPassword,
    Passwords,
    check_password,
    clean_name,
    name_key,
    stored_name,
)
from quartchat.web_errors import status_of

from .test_app import PASSWORD, app  # noqa: F401 (the fixture)


@pytest.mark.parametrize("name", ["张伟", "Mary Ann", "a.b_c-d", "Zoë", "x" * 32, "हिन्दी"])
def test_valid_names(name: str) -> None:
    assert clean_name(f"  {name} ") == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name", ["", "  ", "x" * 33, "a/b", "<b>", "tab\tname", "nul\x00", 5, None, "a\u202eb"])
def test_invalid_names_are_422(name: object) -> None:
    with pytest.raises(InvalidName) as refused:
        clean_name(name)
    assert status_of(refused.value) == 422


def test_names_compare_case_insensitively_after_nfc() -> None:
    assert name_key("Zoë") == name_key(unicodedata.normalize("NFD", "ZOË")) == name_key("zoë")
    assert name_key("Straße") == name_key("STRASSE")


@pytest.mark.parametrize("password, ok", [("p" * 7, False), ("p" * 8, True), ("p" * 128, True), ("p" * 129, False)])
def test_password_length_bounds(password: str, ok: bool) -> None:
    if ok:
        assert check_password(password) == password
    else:
        with pytest.raises(InvalidPassword) as refused:
            check_password(password)
        assert status_of(refused.value) == 422


async def test_passwords_are_salted_argon2id_hashes() -> None:
    passwords = Passwords()
    first, second = await passwords.hash("correct horse"), await passwords.hash("correct horse")
    assert first.startswith("$argon2id$") and first != second
    assert await passwords.verify(first, "correct horse")
    assert not await passwords.verify(first, "wrong horse")
    assert not await passwords.verify("not a hash", "correct horse")


FULLWIDTH_FULL = "\uff46\uff55\uff4c\uff4c"


@pytest.mark.parametrize(
    "typed, stored",
    [(FULLWIDTH_FULL, "full"), ("ﬁsh", "fish"), ("Ⅻ", "XII"), ("①bob", "1bob"), ("ｶﾀｶﾅ", "カタカナ"), ("Zoë", "Zoë")],
)
def test_new_names_are_folded_with_nfkc(typed: str, stored: str) -> None:
    assert clean_name(typed) == unicodedata.normalize("NFC", stored)
    assert name_key(clean_name(typed)) == name_key(clean_name(stored))


@pytest.mark.parametrize(
    "name", ["\u3164", "\u115f", "\u1160", "\uffa0", "a\u3164", "bob\u3164", "x\u034fy", "b\ufe0fo"]
)
def test_names_holding_characters_that_show_nothing_are_422(name: str) -> None:
    with pytest.raises(InvalidName) as refused:
        clean_name(name)
    assert status_of(refused.value) == 422


def test_names_made_before_the_fold_are_still_valid_as_stored() -> None:
    assert stored_name(FULLWIDTH_FULL) == FULLWIDTH_FULL
    assert stored_name("\u3164") == "\u3164"


FULLWIDTH_BOB = "\uff42\uff4f\uff42"


async def sign_in(application: Quart, name: str) -> tuple[int, dict[str, str]]:
    response = await application.test_client().post("/api/session", json={"name": name, "password": PASSWORD})
    body = await response.get_json()
    return response.status_code, body.get("user") or body


async def test_a_new_name_is_folded_and_its_compatibility_forms_are_the_same_account(app: Quart) -> None:  # noqa: F811
    status, made = await sign_in(app, FULLWIDTH_BOB)
    assert status == 200 and made["name"] == "bob"
    assert await sign_in(app, "BOB") == (200, made)
    assert await sign_in(app, "\uff22\uff2f\uff22") == (200, made)


async def test_an_account_made_before_the_fold_still_signs_in_under_its_name(app: Quart, tmp_path: Path) -> None:  # noqa: F811
    status, made = await sign_in(app, "carol")
    assert status == 200
    # Before the fold a fullwidth name was an account of its own, as was a Hangul
    # filler: make them so, as those versions did (NFC name, NFC case-folded key).
    for legacy in ("\uff43\uff41\uff52\uff4f\uff4c", "dan\u3164"):
        legacy_id = f"legacy-{len(legacy)}"
        database = sqlite3.connect(tmp_path / "h.db")
        with database:  # one committed transaction
            database.execute(
                "UPDATE users SET id = ?, name = ?, name_key = ? WHERE id = ?", (legacy_id, legacy, legacy, made["id"])
            )
        database.close()
        assert await sign_in(app, legacy) == (200, {"id": legacy_id, "name": legacy}), legacy
        made["id"] = legacy_id


async def test_names_that_show_nothing_are_422_and_make_no_account(app: Quart) -> None:  # noqa: F811
    for name in ("\u3164", "\u115f\u1160", "eve\u3164", "\u2800"):
        status, body = await sign_in(app, name)
        assert status == 422 and isinstance(body["error"], str), name


async def test_a_new_name_that_looks_like_a_taken_one_is_refused(app: Quart) -> None:  # noqa: F811
    status, alice = await sign_in(app, "alice")
    assert status == 200
    for look_alike in ("\u0430lice", "\u0251lice", "a1ice", "alic\u0435"):
        status, body = await sign_in(app, look_alike)
        assert status == 422 and "looks like" in body["error"], look_alike
    assert (await sign_in(app, "barn"))[0] == 200
    assert (await sign_in(app, "bam"))[0] == 422, "rn looks like m"
    assert await sign_in(app, "Alice") == (200, alice), "the owner still signs in"
    assert (await sign_in(app, "alicia"))[0] == 200, "a different name is fine"


def test_the_command_line_refuses_a_look_alike_new_user_too(tmp_path: Path) -> None:
    from .support import quartchat_env, run_cli, sqlite_url

    env = quartchat_env(sqlite_url(tmp_path / "c.db"))
    assert run_cli(env, tmp_path, "db", "upgrade").returncode == 0
    assert run_cli(env, tmp_path, "user", "password", "paypal", stdin=PASSWORD + "\n").returncode == 0
    refused = run_cli(env, tmp_path, "user", "password", "p\u0430yp\u0430l", stdin=PASSWORD + "\n")
    assert refused.returncode == 2 and "looks like one that is taken" in refused.stderr, refused.stderr
    assert run_cli(env, tmp_path, "user", "password", "PayPal", stdin=PASSWORD + "\n").returncode == 0


async def test_a_new_name_mixing_latin_with_cyrillic_or_greek_is_refused(app: Quart) -> None:  # noqa: F811
    """A name mixing Latin with Cyrillic is how a look-alike gets past the skeleton;
    `ueoa7` in Cyrillic letters reads `yeoa7` (its skeleton), not `ueoa7`, and is fine."""
    assert (await sign_in(app, "ueoa7"))[0] == 200
    for mixed in ("\u0443\u0435\u043e\u0430x7", "u\u0435o\u0430x", "\u03a9mega", "\u0418\u0432\u0430\u043d Smith"):
        status, body = await sign_in(app, mixed)
        assert status == 422 and "mix scripts" in body["error"], mixed
    for one_script in (
        "\u0443\u0435\u043e\u04307",
        "\u0418\u0432\u0430\u043d",
        "\u03b5\u03bb\u03bb\u03ac\u03b4\u03b1",
        "\u7530\u4e2d Tanaka",
    ):
        assert (await sign_in(app, one_script))[0] == 200, one_script


def test_a_fullwidth_name_has_the_skeleton_of_its_plain_letters() -> None:
    """Accounts made before the NFKC fold, or imported, may hold fullwidth letters: they
    look like the plain name, so they share its skeleton (ICU's alone does not fold them)."""
    from quartchat.accounts import name_skeleton

    assert name_skeleton("\uff55\uff45\uff4f\uff41\uff11") == name_skeleton("ueoa1") == name_skeleton("UEOA1")
