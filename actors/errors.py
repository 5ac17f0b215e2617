"""Refusals with a stable machine code: what the rules and the runtime raise.

Every refusal carries a ``code`` a program can switch on (``order_not_pending``,
``ticket_used``, ``overloaded``, ...) and a ``message`` a person can read.
The pure rules raise :class:`DomainError` subclasses; the actor runtime
raises :class:`Overloaded`, :class:`Timeout` and :class:`Internal`. The
server's protocol layer turns any of them into an error reply carrying the
same code (``server.errors`` adds the protocol's own refusals: bad frames,
unknown ops, roles); anything else that escapes is logged and answered
``internal``.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal with a stable machine ``code`` and a human ``message``."""

    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class Overloaded(DomainError):
    """The request cannot be taken now (a full mailbox, shutting down)."""

    code = "overloaded"


class Timeout(DomainError):
    """The request did not finish within its time bound; it may or may not have taken effect."""

    code = "timeout"


class Internal(DomainError):
    """An unexpected failure; details are in the log, not in the reply."""

    code = "internal"


class NotFound(DomainError):
    """The entity the request names does not exist."""

    code = "not_found"
