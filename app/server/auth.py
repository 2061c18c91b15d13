"""Header authentication for the listener, and keeping secrets out of stored requests."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

#: Headers whose values are never stored or shown, whatever the configured auth header is.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


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
        """How the expected header looks, with the secret left out (for error messages)."""
        scheme, _, secret = self.value.partition(" ")
        shape = f"{scheme} <token>" if secret else "<secret>"
        return f"{self.name}: {shape}"

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when the request is authorised, else a reason that reveals no secret."""
        given = headers.get(self.name)
        if given is None:
            return f"missing header {self.name} (expected '{self.expected}')"
        if not hmac.compare_digest(given.encode(), self.value.encode()):
            return f"header {self.name} does not match the configured token (expected '{self.expected}')"
        return None


def redact_headers(headers: Mapping[str, str], auth: HeaderAuth | None) -> dict[str, str]:
    """A copy of the request headers safe to store and display: secrets replaced by their length."""
    secret = set(SECRET_HEADERS)
    if auth is not None:
        secret.add(auth.name.lower())
    return {str(name): (f"<redacted, {len(value)} chars>" if name.lower() in secret else value)
            for name, value in headers.items()}
