"""Why a request is being refused: the status, a stable error code and a reason for people."""

from __future__ import annotations


class Refused(Exception):
    """A request is refused with HTTP ``status``; the client gets ``{"error": code, "detail":
    reason}`` and the reject row keeps ``reason``, a preview of ``body`` and ``body_bytes``.

    ``detail`` replaces ``reason`` in the answer when the client must not learn what the reason
    says (the 404 names the configured stream path; only the local user may see that).
    """

    def __init__(self, status: int, code: str, reason: str, body: bytes = b"", body_bytes: int = 0, *,
                 detail: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason
        self.body, self.body_bytes = body, body_bytes
        self.detail = reason if detail is None else detail
