"""Errors with a stable machine code, as the protocol reports them.

Every refusal the server sends carries a ``code`` a program can switch on and a
``message`` a person can read. The rules and the actor runtime raise
:class:`actors.errors.DomainError` subclasses (``ScenicError`` is that same
class); this module adds the protocol's own refusals (bad frames, unknown
ops, authentication, roles). The session layer turns any of them into an
error reply with its code. Anything else that escapes a handler is logged
and answered with ``internal``.
"""

from __future__ import annotations

from actors.errors import DomainError, Internal, NotFound, Overloaded, Timeout

__all__ = [
    "BadCredentials",
    "BadFrame",
    "BadRequest",
    "DomainError",
    "Forbidden",
    "Internal",
    "NotAuthenticated",
    "NotFound",
    "Overloaded",
    "ScenicError",
    "Timeout",
    "TooLarge",
    "UnknownOp",
]


#: every refusal is one of these (the rules' own and the protocol's); see :mod:`actors.errors`
ScenicError = DomainError


class BadFrame(ScenicError):
    """The message is not a CBOR map we can read (not CBOR, a text frame, a tag)."""

    code = "bad_frame"


class TooLarge(ScenicError):
    """The message exceeds the configured frame size limit."""

    code = "too_large"


class BadRequest(ScenicError):
    """The envelope or the op's arguments are missing, mistyped or out of range."""

    code = "bad_request"


class UnknownOp(ScenicError):
    """The op name is not one the server knows."""

    code = "unknown_op"


class NotAuthenticated(ScenicError):
    """A request other than ``hello`` arrived before a successful ``hello``."""

    code = "not_authenticated"


class BadCredentials(ScenicError):
    """The device is unknown, revoked, or its token does not match."""

    code = "bad_credentials"


class Forbidden(ScenicError):
    """The device's role may not call this op."""

    code = "forbidden"
