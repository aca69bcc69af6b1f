"""HTTP helpers shared by the services' endpoints: bounded JSON bodies and error answers.

Every bad request gets a 4xx JSON body ``{"error": "<code>", "detail": <what and where>}``
and changes nothing. Bodies are decoded with msgspec into typed Structs that forbid unknown
fields, so a typo (``"quantity"``) is refused instead of silently ignored, and a wrong type
is reported with its JSON path (``Expected `int`, got `str` - at `$.qty```).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actorbus import ServiceContext

__all__ = (
    "MAX_BODY_BYTES",
    "Endpoint",
    "HttpError",
    "error_response",
    "json_endpoint",
    "json_response",
    "read_json",
)

T = TypeVar("T")

#: The largest request body accepted, in bytes; larger ones get 413.
MAX_BODY_BYTES = 64 * 1024

#: How much of a too-large body is read (and thrown away) before answering 413. A client that
#: does not wait for ``100 Continue`` (urllib, requests) is still sending; closing on it would
#: reset the connection before it reads the answer. Past this bound the connection is closed.
DRAIN_BYTES = 16 * 1024 * 1024

Endpoint = Callable[[Request, ServiceContext], Awaitable[Response]]
"""``async def endpoint(request, service_context) -> Response``: what ``Service.route`` takes."""

_encoder = msgspec.json.Encoder()


class HttpError(Exception):
    """Raised inside an endpoint to answer with ``{"error", "detail"}`` and ``status``.

    Args:
        status: The HTTP status (4xx).
        error: A short machine-readable code, e.g. ``"invalid_body"``.
        detail: What was wrong and where (text, or a JSON-able value).
    """

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"{status} {error}: {detail}")


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Encode ``content`` (Structs included) with msgspec and answer with it."""
    return Response(
        _encoder.encode(content),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(status: int, error: str, detail: Any = None) -> Response:
    """Return the error body every 4xx uses: ``{"error": ..., "detail": ...}``."""
    return json_response({"error": error, "detail": detail}, status)


def json_endpoint(endpoint: Endpoint) -> Endpoint:
    """Turn :class:`HttpError` raised by ``endpoint`` into its JSON error response."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request, ctx: ServiceContext) -> Response:
        try:
            return await endpoint(request, ctx)
        except HttpError as exc:
            return error_response(exc.status, exc.error, exc.detail)

    return wrapper


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the request body, refusing (413) one larger than ``limit`` bytes.

    The declared ``Content-Length`` is checked first; the stream is then read with a running
    count, so a chunked or lying client cannot make the service buffer more than ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, "invalid_content_length", f"Content-Length {declared!r}")
        if int(declared) > limit:
            if int(declared) <= DRAIN_BYTES:
                await _drain(request)
            raise HttpError(
                413, "body_too_large", f"request body of {declared} bytes exceeds {limit} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request)
            raise HttpError(413, "body_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request) -> None:
    """Read and discard the rest of the body (up to :data:`DRAIN_BYTES`)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            return


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


def _check_syntax(body: bytes) -> None:
    """Refuse malformed JSON with its position, and objects that repeat a key.

    msgspec (which does the typed decoding) keeps the last of repeated keys and reports
    malformed input without a position; the stdlib parser, on a body of at most
    :data:`MAX_BODY_BYTES`, says where (a few microseconds per request).
    """
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKeyError as exc:
        raise HttpError(
            400, "duplicate_key", f"key {exc.key!r} appears twice in one JSON object"
        ) from None
    except json.JSONDecodeError as exc:
        raise HttpError(
            400,
            "malformed_json",
            f"malformed JSON at line {exc.lineno} column {exc.colno} (byte {exc.pos}): {exc.msg}",
        ) from None
    except UnicodeDecodeError as exc:
        raise HttpError(
            400, "malformed_json", f"the JSON body is not UTF-8: byte {exc.start} ({exc.reason})"
        ) from None


async def read_json(request: Request, type_: type[T], limit: int = MAX_BODY_BYTES) -> T:
    """Read and decode the JSON body as ``type_``.

    Raises:
        HttpError: 413 too large; 400 empty or malformed JSON (with the line, column and
            byte), or an object that repeats a key; 422 valid JSON of the wrong shape (wrong
            type, missing or unknown field, value out of range), with its path.
    """
    body = await read_body(request, limit)
    if not body.strip():
        raise HttpError(400, "empty_body", "the request body is empty; send a JSON object")
    _check_syntax(body)
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise HttpError(422, "invalid_body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise HttpError(400, "malformed_json", str(exc)) from None
