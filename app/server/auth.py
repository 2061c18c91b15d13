"""Header authentication for the listener, and keeping secrets out of what is stored or said."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

#: Headers whose values are never stored, logged or shown, whatever the configured auth header is.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                            "x-auth-token", "x-access-token"})


def header_bytes(value: str) -> bytes:
    """The bytes a client sent for a header value. aiohttp decodes header bytes as UTF-8 with
    ``surrogateescape``, so a non-UTF-8 byte must not make a plain ``.encode()`` fail."""
    return value.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class HeaderAuth:
    """One required header: requests must carry ``name: value`` exactly.

    flespi streams send whatever headers they are configured with; the usual one is
    ``Authorization: Bearer <token>``.
    """

    name: str
    value: str

    @classmethod
    def bearer(cls, token: str) -> HeaderAuth:
        """The common case: ``Authorization: Bearer <token>``."""
        return cls("Authorization", f"Bearer {token}")

    @classmethod
    def parse(cls, spec: str) -> HeaderAuth:
        """Read ``"Name: value"`` as given on the command line; raises ValueError if malformed."""
        name, sep, value = spec.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected 'Name: value', got {spec!r}")
        return cls(name.strip(), value.strip())

    @property
    def expected(self) -> str:
        """How the expected header looks, for anyone who is refused: the header's name, and the
        scheme only for a standard bearer token. Any other fixed part of a value (``X-Key: a b``)
        would be half of the secret."""
        scheme, _, token = self.value.partition(" ")
        if self.name.lower() == "authorization" and scheme.lower() == "bearer" and token:
            return f"{self.name}: Bearer <token>"
        return f"{self.name}: <secret>"

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when the request is authorised, else a reason that reveals no secret."""
        given = headers.get(self.name)
        if given is None:
            return f"missing header {self.name} (expected '{self.expected}')"
        if not hmac.compare_digest(header_bytes(given), self.value.encode()):
            return f"header {self.name} does not match the configured token (expected '{self.expected}')"
        return None

    def secret_names(self) -> frozenset[str]:
        """Lower-case names of every header whose value must not be kept."""
        return SECRET_HEADERS | {self.name.lower()}


def is_secret_header(name: str, auth: HeaderAuth | None) -> bool:
    """Whether a header's value must never be stored or shown."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or (auth is not None and lowered == auth.name.lower())
