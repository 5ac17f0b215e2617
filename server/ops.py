"""The op table: every operation the protocol offers, who may call it, its args.

An op is declared once with :func:`OpTable.op` as a decorator on its handler.
The session looks the op up by name, refuses roles the op does not admit with
``forbidden``, checks the args against the declared :class:`~server.schema.Arg`
tuple (``bad_request``), and only then calls the handler with an
:class:`OpContext` and the parsed args. Handlers return the ``ok`` map or
raise a :class:`~server.errors.ScenicError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from server.schema import Arg

if TYPE_CHECKING:
    from server.app import Services
    from server.session import Session

#: every device role the server knows
ROLES = ("kiosk", "counter", "gate", "rental", "channel", "admin")
ALL_ROLES = frozenset(ROLES)
#: what a device id may be (``scenic device add`` and the devices table hold it to this):
#: 1 to 64 characters, ASCII letters, digits, ``_``, ``.``, ``-``, beginning with a letter or digit
DEVICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


@attrs.frozen
class OpContext:
    """What a handler knows about the request it serves."""

    device_id: str
    role: str
    request_id: int
    session: Session
    services: Services


Handler = Callable[[OpContext, dict[str, Any]], Awaitable[dict[str, Any]]]


@attrs.frozen
class OpSpec:
    """One op: its name, the roles that may call it, its args and its handler."""

    name: str
    roles: frozenset[str]
    args: tuple[Arg, ...]
    handler: Handler
    summary: str


class OpTable:
    """The set of ops a server offers, looked up by name on every request."""

    def __init__(self) -> None:
        self._ops: dict[str, OpSpec] = {}

    def op(
        self, name: str, *, roles: Iterable[str], args: tuple[Arg, ...] = ()
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as op ``name`` callable by ``roles``.

        Raises ``ValueError`` for a duplicate name or an unknown role.
        """
        role_set = frozenset(roles)
        if not role_set <= ALL_ROLES:
            raise ValueError(f"unknown roles {sorted(role_set - ALL_ROLES)} for op {name}")
        if name in self._ops:
            raise ValueError(f"op {name} is declared twice")

        def register(handler: Handler) -> Handler:
            summary = (handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else ""
            self._ops[name] = OpSpec(name, role_set, args, handler, summary)
            return handler

        return register

    def get(self, name: str) -> OpSpec | None:
        """The op called ``name``, or ``None`` when there is none."""
        return self._ops.get(name)

    def __iter__(self):
        return iter(sorted(self._ops.values(), key=lambda spec: spec.name))
