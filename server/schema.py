"""Declared argument shapes for ops, and the strict check of a request's args.

Each op declares its arguments as a tuple of :class:`Arg`. :func:`parse_args`
checks a request's ``args`` map against it: every required argument present,
every value of the declared kind and range, no argument the op does not know.
A failure raises :class:`~server.errors.BadRequest` naming the argument, so a
vendor sees at once which field to fix. Booleans are never accepted as
integers, nor integers as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from server.errors import BadRequest

_KINDS = ("text", "int", "number", "bool", "bytes", "map", "list")


@attrs.frozen
class Arg:
    """One declared argument of an op.

    ``kind`` is one of text, int, number (int or float), bool, bytes, map, list.
    ``low``/``high`` bound numbers; ``max_len`` bounds text, bytes and lists;
    ``pattern`` is a full-match regex for text; ``fields`` declares the shape
    of a map, or of each element of a list of maps.
    """

    name: str
    kind: str = attrs.field(validator=attrs.validators.in_(_KINDS))
    required: bool = True
    low: float | None = None
    high: float | None = None
    max_len: int | None = None
    pattern: str | None = None
    fields: tuple[Arg, ...] | None = None
    default: Any = None


def parse_args(spec: tuple[Arg, ...], args: Mapping[str, Any], *, where: str = "") -> dict:
    """Check ``args`` against ``spec`` and return them with defaults filled in.

    Raises :class:`BadRequest` for a missing required argument, an unknown
    argument, or a value of the wrong kind or out of range.
    """
    known = {arg.name for arg in spec}
    unknown = [name for name in args if name not in known]
    if unknown:
        raise BadRequest(f"unknown argument '{where}{sorted(unknown)[0]}'")
    parsed: dict[str, Any] = {}
    for arg in spec:
        if arg.name not in args or args[arg.name] is None:
            if arg.required:
                raise BadRequest(f"missing argument '{where}{arg.name}'")
            parsed[arg.name] = arg.default
            continue
        parsed[arg.name] = _check(arg, args[arg.name], f"{where}{arg.name}")
    return parsed


def _check(arg: Arg, value: Any, path: str) -> Any:
    kind = arg.kind
    if kind == "text":
        if not isinstance(value, str):
            raise _wrong(path, "a text string", value)
        _check_len(arg, len(value), path)
        if arg.pattern is not None and re.fullmatch(arg.pattern, value) is None:
            raise BadRequest(f"argument {path!r} has an invalid format")
    elif kind == "int":
        if type(value) is not int:
            raise _wrong(path, "an integer", value)
        _check_range(arg, value, path)
    elif kind == "number":
        if (
            type(value) not in (int, float)
            or value != value
            or value
            in (
                float("inf"),
                float("-inf"),
            )
        ):
            raise _wrong(path, "a finite number", value)
        _check_range(arg, value, path)
    elif kind == "bool":
        if type(value) is not bool:
            raise _wrong(path, "a boolean", value)
    elif kind == "bytes":
        if not isinstance(value, bytes):
            raise _wrong(path, "a byte string", value)
        _check_len(arg, len(value), path)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _wrong(path, "a map", value)
        if arg.fields is not None:
            return parse_args(arg.fields, value, where=f"{path}.")
    else:  # list
        if not isinstance(value, list):
            raise _wrong(path, "an array", value)
        _check_len(arg, len(value), path)
        if arg.fields is not None:
            items = []
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    raise _wrong(f"{path}[{index}]", "a map", item)
                items.append(parse_args(arg.fields, item, where=f"{path}[{index}]."))
            return items
    return value


def _check_len(arg: Arg, length: int, path: str) -> None:
    if arg.max_len is not None and length > arg.max_len:
        raise BadRequest(f"argument {path!r} is longer than {arg.max_len}")
    if arg.required and length == 0 and arg.kind in ("text", "bytes"):
        raise BadRequest(f"argument {path!r} must not be empty")


def _check_range(arg: Arg, value: float, path: str) -> None:
    if arg.low is not None and value < arg.low:
        raise BadRequest(f"argument {path!r} must be at least {arg.low:g}")
    if arg.high is not None and value > arg.high:
        raise BadRequest(f"argument {path!r} must be at most {arg.high:g}")


def _wrong(path: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"argument {path!r} must be {expected}, not {type(value).__name__}")
