"""What a refused request leaves behind in ``rejects``: enough to see what was sent and why it
failed, never a secret, and never more than a few kilobytes whatever the client sent.

Before these caps a request could carry 128 headers of 8 KiB each (aiohttp's own limits) and
every one was stored: 400 unauthenticated requests wrote 389 MB. See docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.server.auth import HeaderAuth, header_bytes, is_secret_header
from app.server.refusal import Refused
from app.store.recorder import Reject

#: Headers kept per reject (the rest are counted in one summary entry).
MAX_HEADERS = 24
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 256
#: Path and query string kept, after secret-looking query values are redacted.
MAX_PATH = 256
MAX_QUERY = 512
MAX_QUERY_PARAMS = 16
#: Body kept from an authenticated (or unauthenticated-by-configuration) request.
MAX_BODY_PREVIEW = 4096
MAX_REASON = 512
MAX_METHOD = 16
#: The largest integer SQLite stores; a declared Content-Length of 2^63 must still be recorded.
MAX_SQLITE_INT = 2**63 - 1
#: Query parameters whose values are never kept (matched as substrings of the lower-case name).
SECRET_QUERY_WORDS = ("token", "key", "secret", "pass", "auth", "sig", "session", "code", "jwt", "cred")
MORE = "…"


def capture(*, received_at: float, peer: str, method: str, raw_path: str,
            headers: Iterable[tuple[str, str]], refused: Refused, auth: HeaderAuth | None,
            authenticated: bool) -> Reject:
    """The bounded, redacted record of one refused request.

    ``authenticated`` is False when auth is configured and the request has not passed it
    (a 401, or a wrong path checked before auth): such a request keeps no body, only its size.
    """
    body = refused.body[:MAX_BODY_PREVIEW] if authenticated else b""
    return Reject(received_at, peer, _clip(method, MAX_METHOD), safe_url(raw_path), refused.status,
                  _clip(refused.reason, MAX_REASON), safe_headers(headers, auth), bytes(body),
                  min(max(refused.body_bytes, 0), MAX_SQLITE_INT))


def safe_headers(headers: Iterable[tuple[str, str]], auth: HeaderAuth | None) -> dict[str, str]:
    """At most MAX_HEADERS headers, each clipped; secret values replaced by their length."""
    kept: dict[str, str] = {}
    skipped = skipped_bytes = 0
    for name, value in headers:
        name = _clip(_printable(str(name)), MAX_HEADER_NAME)
        if len(kept) >= MAX_HEADERS or name in kept:
            skipped += 1
            skipped_bytes += len(name) + len(value)
            continue
        if is_secret_header(name, auth):
            kept[name] = f"<redacted, {len(header_bytes(value))} bytes>"
        else:
            kept[name] = _clip(_printable(value), MAX_HEADER_VALUE)
    if skipped:
        kept[MORE] = f"{skipped} more headers ({skipped_bytes} bytes) not kept"
    return kept


def safe_url(raw_path: str) -> str:
    """The request target clipped, with values of secret-looking query parameters redacted."""
    path, sep, query = _printable(raw_path).partition("?")
    path = _clip(path, MAX_PATH)
    if not sep:
        return path
    params = query.split("&")
    kept = []
    for param in params[:MAX_QUERY_PARAMS]:
        name, has_value, _value = param.partition("=")
        secret = has_value and any(word in name.lower() for word in SECRET_QUERY_WORDS)
        kept.append(f"{name}=<redacted>" if secret else param)
    text = "&".join(kept)
    if len(params) > MAX_QUERY_PARAMS:
        text += f"&{MORE}{len(params) - MAX_QUERY_PARAMS} more"
    return f"{path}?{_clip(text, MAX_QUERY)}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + MORE


def _printable(text: str) -> str:
    """Non-UTF-8 bytes (kept by aiohttp as surrogates, which JSON cannot hold) as ``\\xNN``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return header_bytes(text).decode("utf-8", "backslashreplace")
    return text
