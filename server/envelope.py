"""The request/reply envelope of protocol v1, sans-IO.

A request is ``{"id": int, "op": text, "args": map}``; a reply is
``{"id": same, "ok": map}`` or ``{"id": same, "error": {"code", "message"}}``;
a server push is ``{"event": text, "data": map}``. This module turns frame
bytes into a typed :class:`Request` or a :class:`Rejected` that says which
error to answer with, and builds the reply frames. No sockets here.
"""

from __future__ import annotations

from typing import Any

import attrs

from server.codec import decode_frame, encode
from server.errors import BadFrame, BadRequest, ScenicError

#: request ids are non-negative integers that fit in 63 bits
MAX_REQUEST_ID = 2**63 - 1
MAX_OP_LENGTH = 64


@attrs.frozen(slots=True)
class Request:
    """One well-formed request: its id, the op name and the op's raw args."""

    id: int
    op: str
    args: dict[str, Any]


@attrs.frozen(slots=True)
class Rejected:
    """A frame that cannot be served, the id to answer (``None`` if unknown) and why."""

    id: int | None
    error: ScenicError


def read_request(data: bytes, *, max_bytes: int) -> Request | Rejected:
    """Read one binary frame as a request, never raising for bad input.

    Returns :class:`Rejected` with ``too_large``, ``bad_frame`` or
    ``bad_request`` when the frame is oversized, not one CBOR map, or its
    envelope fields are missing or mistyped. The request id is recovered
    whenever the frame decodes far enough to hold a valid one, so a client
    can match the error to its request.
    """
    try:
        value = decode_frame(data, max_bytes=max_bytes)
    except ScenicError as exc:
        return Rejected(None, exc)
    if not isinstance(value, dict):
        return Rejected(None, BadFrame(f"a frame must be a CBOR map, not {_kind(value)}"))
    request_id = value.get("id")
    if not _is_request_id(request_id):
        return Rejected(None, BadRequest("'id' must be an integer from 0 to 2**63-1"))
    op = value.get("op")
    if not isinstance(op, str) or not 0 < len(op) <= MAX_OP_LENGTH:
        return Rejected(request_id, BadRequest("'op' must be a text string of 1 to 64 chars"))
    args = value.get("args", {})
    if not isinstance(args, dict):
        return Rejected(request_id, BadRequest(f"'args' must be a map, not {_kind(args)}"))
    extra = value.keys() - {"id", "op", "args"}
    if extra:
        return Rejected(request_id, BadRequest(f"unknown envelope fields: {sorted(extra)}"))
    return Request(request_id, op, args)


def _is_request_id(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_REQUEST_ID


def _kind(value: object) -> str:
    names = {dict: "a map", list: "an array", str: "a text string", bytes: "a byte string"}
    return names.get(type(value), type(value).__name__)


def ok_frame(request_id: int, result: dict[str, Any]) -> bytes:
    """The frame answering ``request_id`` with success and ``result``."""
    return encode({"id": request_id, "ok": result})


def error_frame(request_id: int | None, code: str, message: str) -> bytes:
    """The frame answering ``request_id`` (or ``None``) with an error code and message."""
    return encode({"id": request_id, "error": {"code": code, "message": message}})


def event_frame(event: str, data: dict[str, Any]) -> bytes:
    """A server push frame: ``{"event": event, "data": data}``."""
    return encode({"event": event, "data": data})
