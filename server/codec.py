"""The wire codec: one CBOR map per binary websocket message, sans-IO.

Bytes go in, plain Python values come out, or a :class:`~server.errors.ScenicError`
that says what was wrong. Nothing here touches a socket, so the same code serves
the server, the client library and the tests.

What a frame may hold is deliberately narrow: maps, arrays, text and byte
strings, integers, floats, booleans and null. CBOR tags (dates, bignums, shared
references, anything else), ``undefined`` and other simple values are refused,
as are maps with duplicate or non-text keys, frames nested deeper than
:data:`MAX_DEPTH`, and trailing bytes after the first item. Times travel as
numbers (seconds since the Unix epoch, UTC) so every vendor's CBOR library can
read them.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from server.errors import BadFrame, TooLarge

#: nesting limit of a frame: the envelope, its args and two levels inside them
MAX_DEPTH = 8


class _TagRefused(Exception):
    pass


def _refuse_tag(decoder: object, tag: object = None) -> Any:
    raise _TagRefused


# Tags cbor2 decodes itself go through semantic_decoders; every other tag reaches
# tag_hook. Refusing both means no tag of any number is accepted.
_REFUSE_KNOWN_TAGS = {tag: _refuse_tag for tag in (*range(0, 300), 1004, 55799)}

_PLAIN_SCALARS = (str, bytes, int, float, bool, type(None))


def decode_frame(data: bytes, *, max_bytes: int) -> Any:
    """Decode one binary frame into a plain Python value.

    Raises :class:`TooLarge` when ``data`` is longer than ``max_bytes`` and
    :class:`BadFrame` when it is not exactly one well-formed CBOR item of the
    accepted kinds (see the module docstring). The value is not yet checked to
    be a request; :func:`server.envelope.read_request` does that.
    """
    if len(data) > max_bytes:
        raise TooLarge(f"frame of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(
        stream,
        tag_hook=_refuse_tag,
        semantic_decoders=_REFUSE_KNOWN_TAGS,
        max_depth=MAX_DEPTH,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeError as exc:
        raise BadFrame(_describe(exc)) from None
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as exc:
        raise BadFrame(f"not valid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise BadFrame(f"{len(data) - stream.tell()} bytes after the end of the CBOR item")
    _check_plain(value, 0)
    return value


def _describe(exc: cbor2.CBORDecodeError) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, _TagRefused) or "semantic tag" in str(exc):
        return "CBOR tags are not accepted; send times as numbers of seconds"
    if isinstance(exc, cbor2.CBORDecodeEOF) or "premature end" in str(exc):
        return "truncated CBOR: the frame ends inside an item"
    if "nesting depth" in str(exc):
        return f"nested deeper than {MAX_DEPTH} levels"
    if "duplicate key" in str(exc):
        return "a map has the same key twice"
    return f"not valid CBOR: {exc}"


def _check_plain(value: Any, depth: int) -> None:
    """Refuse values a frame may not hold: simple values, undefined, non-text keys."""
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadFrame("map keys must be text strings")
            if not isinstance(item, _PLAIN_SCALARS):
                _check_plain(item, depth + 1)
        return
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, _PLAIN_SCALARS):
                _check_plain(item, depth + 1)
        return
    raise BadFrame(f"a frame may not hold a CBOR {type(value).__name__}")


def encode(value: Any) -> bytes:
    """Encode a plain value (maps, lists, text, bytes, numbers, bools, None) as CBOR.

    Raises ``cbor2.CBOREncodeError`` for values outside that set; the server
    never sends them, so this is a programming error, not a client's.
    """
    return cbor2.dumps(value)
