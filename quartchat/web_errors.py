"""Refusals from the domain as the web answers them: the one place that gives each its
HTTP status (the API's JSON and the sign-in page both use it)."""

from __future__ import annotations

from .accounts import (
    AccountDisabled,
    CredentialsError,
    InvalidName,
    InvalidPassword,
    InvalidRole,
    NameLooksTaken,
    NameReserved,
    NoSuchAccount,
    TooManyAttempts,
    WrongPassword,
)

STATUSES: dict[type[CredentialsError], int] = {
    InvalidName: 422,
    NameLooksTaken: 422,
    InvalidPassword: 422,
    NameReserved: 401,
    WrongPassword: 401,
    AccountDisabled: 403,
    NoSuchAccount: 404,
    InvalidRole: 422,
    TooManyAttempts: 429,
}


def status_of(refused: CredentialsError) -> int:
    return next(STATUSES[kind] for kind in type(refused).__mro__ if kind in STATUSES)


def headers_of(refused: CredentialsError) -> dict[str, str]:
    """`Retry-After` (whole seconds, at least 1) when the client must wait."""
    if isinstance(refused, TooManyAttempts):
        return {"Retry-After": str(max(1, round(refused.retry_after)))}
    return {}
