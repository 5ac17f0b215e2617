"""A rental's state and events as JSON and back, exactly: the rental store's snapshot format.

The pure core's values are frozen attrs classes holding datetimes, times,
enums, tuples, frozensets and dicts. :func:`encode` turns one into plain
JSON values, tagging what JSON cannot say (``{"$": "actors.x:Class", ...}``
for an attrs value, ``{"$dt": iso}``, ``{"$time": iso}``, ``{"$enum": ...}``,
``{"$tuple": [...]}``, ``{"$set": [...]}``); :func:`decode` rebuilds the very
same value. Only classes under ``actors.`` are rebuilt: a row can never name
an arbitrary class to construct.
"""

from __future__ import annotations

import enum
import importlib
from datetime import datetime, time
from typing import Any

import attrs

_OWN_MODULES = "actors."


def encode(value: Any) -> Any:
    """``value`` (an attrs value of actors/, or anything inside one) as plain JSON values."""
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, enum.Enum):
        return {"$enum": _name_of(type(value)), "v": value.value}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times inside are timezone-aware")
        return {"$dt": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, tuple):
        return {"$tuple": [encode(item) for item in value]}
    if isinstance(value, frozenset):
        return {"$set": sorted((encode(item) for item in value), key=repr)}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"dict keys must be text: {value!r}")
        if any(key.startswith("$") for key in value):
            raise ValueError(f"dict keys may not start with '$': {value!r}")
        return {key: encode(item) for key, item in value.items()}
    if attrs.has(type(value)):
        out: dict[str, Any] = {"$": _name_of(type(value))}
        for field in attrs.fields(type(value)):
            if field.init:
                out[field.name] = encode(getattr(value, field.name))
        return out
    raise TypeError(f"cannot store {type(value).__name__} values: {value!r}")


def decode(data: Any) -> Any:
    """The value :func:`encode` made ``data`` from."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "$" in data:
        cls = _class_of(data["$"])
        kwargs = {
            (field.alias or field.name): decode(data[field.name])
            for field in attrs.fields(cls)
            if field.init and field.name in data
        }
        return cls(**kwargs)
    if "$dt" in data:
        return datetime.fromisoformat(data["$dt"])
    if "$time" in data:
        return time.fromisoformat(data["$time"])
    if "$enum" in data:
        return _class_of(data["$enum"])(data["v"])
    if "$tuple" in data:
        return tuple(decode(item) for item in data["$tuple"])
    if "$set" in data:
        return frozenset(_hashable(decode(item)) for item in data["$set"])
    return {key: decode(item) for key, item in data.items()}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _name_of(cls: type) -> str:
    if not cls.__module__.startswith(_OWN_MODULES):
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a value of actors/")
    return f"{cls.__module__}:{cls.__qualname__}"


def _class_of(name: str) -> type:
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith(_OWN_MODULES) or not qualname.isidentifier():
        raise ValueError(f"stored value names {name!r}, not a class of actors/")
    cls = getattr(importlib.import_module(module_name), qualname)
    if not isinstance(cls, type):
        raise ValueError(f"stored value names {name!r}, which is not a class")
    return cls
