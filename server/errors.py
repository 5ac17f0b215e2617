"""Errors with a stable machine code, as the protocol reports them.

Every refusal the server sends carries a ``code`` a program can switch on and a
``message`` a person can read. Domain rules raise :class:`ScenicError`
subclasses; the session layer turns them into error replies. Anything else that
escapes a handler is logged and answered with ``internal``.
"""

from __future__ import annotations


class ScenicError(Exception):
    """A refusal with a stable machine ``code`` and a human ``message``."""

    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


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


class Overloaded(ScenicError):
    """The server cannot take this request now (a full mailbox, shutting down)."""

    code = "overloaded"


class Timeout(ScenicError):
    """The request did not finish within its time bound; it may or may not have taken effect."""

    code = "timeout"


class NotFound(ScenicError):
    """The entity the request names does not exist."""

    code = "not_found"


class Internal(ScenicError):
    """An unexpected failure; details are in the server log, not in the reply."""

    code = "internal"
