"""docs/protocol.md §10: names, passwords and redirects, without a server."""

from __future__ import annotations

import unicodedata

import pytest

from quartchat.accounts import CredentialsError, Passwords, check_password, clean_name, name_key, stored_name
from quartchat.auth import safe_next


@pytest.mark.parametrize("name", ["张伟", "Mary Ann", "a.b_c-d", "Zoë", "x" * 32, "हिन्दी"])
def test_valid_names(name: str) -> None:
    assert clean_name(f"  {name} ") == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name", ["", "  ", "x" * 33, "a/b", "<b>", "tab\tname", "nul\x00", 5, None, "a\u202eb"])
def test_invalid_names_are_422(name: object) -> None:
    with pytest.raises(CredentialsError) as refused:
        clean_name(name)
    assert refused.value.status == 422


def test_names_compare_case_insensitively_after_nfc() -> None:
    assert name_key("Zoë") == name_key(unicodedata.normalize("NFD", "ZOË")) == name_key("zoë")
    assert name_key("Straße") == name_key("STRASSE")


@pytest.mark.parametrize("password, ok", [("p" * 7, False), ("p" * 8, True), ("p" * 128, True), ("p" * 129, False)])
def test_password_length_bounds(password: str, ok: bool) -> None:
    if ok:
        assert check_password(password) == password
    else:
        with pytest.raises(CredentialsError):
            check_password(password)


async def test_passwords_are_salted_argon2id_hashes() -> None:
    passwords = Passwords()
    first, second = await passwords.hash("correct horse"), await passwords.hash("correct horse")
    assert first.startswith("$argon2id$") and first != second
    assert await passwords.verify(first, "correct horse")
    assert not await passwords.verify(first, "wrong horse")
    assert not await passwords.verify("not a hash", "correct horse")


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/r/lobby", "/r/lobby"),
        ("/r/x?a=1", "/r/x?a=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("///evil.example", "/"),
        ("/ /evil", "/"),
        ("javascript:alert(1)", "/"),
        (None, "/"),
    ],
)
def test_next_only_points_inside_the_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


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
    with pytest.raises(CredentialsError) as refused:
        clean_name(name)
    assert refused.value.status == 422


def test_names_made_before_the_fold_are_still_valid_as_stored() -> None:
    assert stored_name(FULLWIDTH_FULL) == FULLWIDTH_FULL
    assert stored_name("\u3164") == "\u3164"
