"""Each refusal of the domain has its HTTP status, given in one place."""

from __future__ import annotations

from quartchat import accounts
from quartchat.accounts import CredentialsError, TooManyAttempts, WrongPassword
from quartchat.web_errors import headers_of, status_of


def test_every_kind_of_refused_credentials_has_a_status() -> None:
    kinds = [k for k in vars(accounts).values() if isinstance(k, type) and issubclass(k, CredentialsError)]
    assert len(kinds) > 1
    for kind in kinds:
        if kind is not CredentialsError:
            assert status_of(kind("x") if kind is not TooManyAttempts else kind("x", 1.0)) in (401, 403, 404, 422, 429)


def test_too_many_attempts_is_429_with_retry_after_in_whole_seconds() -> None:
    refused = TooManyAttempts("wait", 0.2)
    assert (status_of(refused), headers_of(refused)) == (429, {"Retry-After": "1"})
    assert headers_of(TooManyAttempts("wait", 41.6)) == {"Retry-After": "42"}
    assert (status_of(WrongPassword("no")), headers_of(WrongPassword("no"))) == (401, {})
