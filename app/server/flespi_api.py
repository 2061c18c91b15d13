"""A small client for flespi's REST API: requests, answers, errors and selectors.

What is documented and where (the sources read; none of them is copied here):

* every request carries ``Authorization: FlespiToken <token>``; answers are ``{"result": [...]}``
  and failures ``{"errors": [{"code": .., "reason": ..}]}``, 400 often with a ``schema_hint``;
  401 is a bad or expired token, 403 a token without the right, 429 too many requests
  (flespi's own API guide, github.com/flespi-software/skills ``skills/flespi/SKILL.md``,
  "Response Format", "Error Codes");
* selectors in the path: ``all``, ``12,34``, ``field=value`` and ``{expression}``, e.g.
  ``{name=="my tracker"}`` (same guide, "Selectors"); ``?fields=a,b`` limits what an item
  holds; message and log endpoints take a JSON ``data`` query parameter instead (same guide,
  "Limiting Response Size"; flespi-io-js ``src/configs.json`` lists ``data`` "in: query" for
  ``GET /gw/devices/{dev-selector}/messages`` and ``GET /gw/streams/{stream.selector}/logs``);
* ``POST`` creates from an array of objects, ``PATCH`` patches the object's fields, ``PUT``
  replaces the fields given (same guide, "CRUD Operations").

The base URL is configurable (``--api``, Settings): the tests point it at a local stand-in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

DEFAULT_API = "https://flespi.io"
#: Environment variable the command line reads the flespi token from (never an argument).
FLESPI_TOKEN_ENV = "FLESPI_TOKEN"


class FlespiError(RuntimeError):
    """flespi refused a request or could not be reached; the message says why in plain words."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def reasons(payload: Any) -> str:
    """The ``errors[].reason`` texts of a flespi answer (and its schema hint), joined."""
    if not isinstance(payload, dict):
        return ""
    parts = []
    for error in payload.get("errors") or []:
        parts.append(str(error.get("reason", error)) if isinstance(error, dict) else str(error))
    hint = payload.get("schema_hint")
    if hint:
        parts.append(f"schema hint: {orjson.dumps(hint).decode()[:300]}")
    return "; ".join(parts)


_ID_LIST = re.compile(r"^\d+(,\d+)*$")
_FIELD_EQUALS = re.compile(r"^[A-Za-z_][\w.]*=[^/{}]+$")


def check_selector(text: str) -> str:
    """A selector as a user typed it (ids, ``all``, ``field=value`` or ``{expression}``),
    stripped; raises ValueError naming what is wrong."""
    selector = text.strip()
    if (selector == "all" or _ID_LIST.match(selector) or _FIELD_EQUALS.match(selector)
            or (len(selector) > 2 and selector.startswith("{") and selector.endswith("}") and "/" not in selector)):
        return selector
    raise ValueError(f"{text!r} is not a flespi selector: use ids (12 or 12,34), all, field=value "
                     "(e.g. configuration.ident=3526...) or an expression in braces")


def name_selector(name: str) -> str:
    """The expression selector for items called exactly ``name`` (documented form
    ``{name=="my tracker"}``). Quotes and backslashes are refused: how flespi escapes them
    inside an expression is not documented."""
    if '"' in name or "\\" in name:
        raise ValueError("a stream name cannot hold \" or \\")
    return '{name=="' + name + '"}'


def ids_selector(ids: Sequence[int]) -> str:
    """``12,34``: the documented list-of-ids selector."""
    return ",".join(str(int(i)) for i in ids)


def _path(path: str) -> str:
    # Selectors hold braces, quotes, = and spaces: percent-encode them, keep / and , readable.
    return quote(path, safe="/,=")


class FlespiClient:
    """One aiohttp session to flespi with the token; use as ``async with FlespiClient(...)``."""

    def __init__(self, token: str, api: str = DEFAULT_API, *, timeout: float = 30.0,
                 app_name: str = "trackmon") -> None:
        if not token.strip():
            raise FlespiError("no flespi token given")
        self.api = (api or DEFAULT_API).rstrip("/")
        # x-flespi-app names the application in flespi's logs (documented, "Auxiliary Headers").
        self._headers = {"Authorization": f"FlespiToken {token.strip()}", "x-flespi-app": app_name}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FlespiClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, path: str, *, body: Any = None, fields: Sequence[str] | None = None,
                   data: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One request; returns the answer's ``result`` list or raises `FlespiError`."""
        if self._session is None:
            raise RuntimeError("use FlespiClient in `async with`")
        url = self.api + _path(path)
        params: dict[str, str] = {}
        if fields:
            params["fields"] = ",".join(fields)
        if data is not None:
            params["data"] = orjson.dumps(data).decode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            async with self._session.request(method, url, params=params or None, headers=headers,
                                             data=None if body is None else orjson.dumps(body)) as reply:
                text = await reply.read()
                status = reply.status
        except TimeoutError:
            raise FlespiError(f"flespi did not answer {method} {path} in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FlespiError(f"cannot reach {self.api}: {exc}") from None
        try:
            payload = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            payload = {}
        problem = reasons(payload)
        if status == 401:
            raise FlespiError("flespi did not accept the token (401): check it, or make a new one in the "
                              "flespi panel (Tokens)", status)
        if status == 403:
            raise FlespiError(f"the token may not do this (403){': ' + problem if problem else ''}; "
                              f"it needs access to {path.split('/')[2] if path.count('/') > 1 else path}", status)
        if status == 429:
            raise FlespiError("flespi asks to slow down (429 too many requests); try again in a minute", status)
        if status >= 400 or (isinstance(payload, dict) and payload.get("errors")):
            detail = problem or text[:200].decode(errors="replace") or "no reason given"
            raise FlespiError(f"flespi answered {status} to {method} {path}: {detail}", status)
        result = payload.get("result") if isinstance(payload, dict) else None
        return result if isinstance(result, list) else []

    async def items(self, kind: str, selector: str = "all",
                    fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """``GET /gw/{kind}/{selector}`` — devices, channels, groups, streams, stream-protocols."""
        return await self.call("GET", f"/gw/{kind}/{selector}", fields=fields)
