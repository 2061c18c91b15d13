"""Setting up the flespi stream that feeds this listener: its configuration, a `curl` command
that creates it, and creating or updating it through flespi's REST API.

The configuration uses the HTTP stream fields flespi documents (target URI, custom headers such
as Authorization, limit_messages for the batch size, and an optional private CA for HTTPS). The
API base URL is configurable, which is also how the tests point it at a local stand-in.
"""

from __future__ import annotations

import shlex
from typing import Any

import aiohttp
import orjson

DEFAULT_API = "https://flespi.io"
STREAMS = "/gw/streams"
DEFAULT_LIMIT = 1000


class FlespiError(RuntimeError):
    """flespi refused or could not be reached; the message says why."""


def stream_config(name: str, uri: str, headers: dict[str, str], *, limit_messages: int = DEFAULT_LIMIT,
                  ca_pem: str | None = None) -> dict[str, Any]:
    """The stream to create: protocol http, the target URI, headers, batch size, private CA."""
    configuration: dict[str, Any] = {
        "ident": "http",
        "uri": uri,
        "headers": [{"name": key, "value": value} for key, value in headers.items()],
        "limit_messages": limit_messages,
    }
    if ca_pem:
        configuration["ssl_ca"] = ca_pem
    return {"name": name, "configuration": configuration}


def curl_command(config: dict[str, Any], api: str = DEFAULT_API) -> str:
    """A shell command creating the stream, with the flespi token left as $FLESPI_TOKEN."""
    body = orjson.dumps([config]).decode()
    return (f'curl -X POST -H "Authorization: FlespiToken $FLESPI_TOKEN" -H "Content-Type: application/json" '
            f"-d {shlex.quote(body)} {shlex.quote(api.rstrip('/') + STREAMS)}")


def _errors(payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("errors"):
        return "; ".join(str(e.get("reason", e)) if isinstance(e, dict) else str(e) for e in payload["errors"])
    return ""


async def _call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> list[dict[str, Any]]:
    try:
        async with session.request(method, url, data=None if body is None else orjson.dumps(body)) as reply:
            text = await reply.read()
    except (aiohttp.ClientError, OSError) as exc:
        raise FlespiError(f"cannot reach {url}: {exc}") from None
    try:
        payload = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        payload = {}
    if reply.status == 401:
        raise FlespiError("flespi did not accept the token (401); use a flespi token with access to streams")
    problem = _errors(payload)
    if reply.status >= 400 or problem:
        raise FlespiError(f"flespi answered {reply.status}: {problem or text[:200].decode(errors='replace')}")
    result = payload.get("result") if isinstance(payload, dict) else None
    return result if isinstance(result, list) else []


async def create_or_update_stream(token: str, config: dict[str, Any], api: str = DEFAULT_API) -> tuple[int, bool]:
    """Create the stream, or update the one with the same name; returns (stream id, created)."""
    base = api.rstrip("/") + STREAMS
    headers = {"Authorization": f"FlespiToken {token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        existing = await _call(session, "GET", f"{base}/all?fields=id,name")
        match = next((s for s in existing if s.get("name") == config["name"]), None)
        if match is not None:
            await _call(session, "PUT", f"{base}/{match['id']}", {"configuration": config["configuration"]})
            return int(match["id"]), False
        created = await _call(session, "POST", base, [config])
        if not created or "id" not in created[0]:
            raise FlespiError("flespi did not return the new stream's id")
        return int(created[0]["id"]), True
