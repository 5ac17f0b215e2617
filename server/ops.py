"""The op table: every operation the protocol offers, who may call it, its args.

An op is declared once, with :meth:`OpGroup.op` as a decorator on its
module-level handler function (one group per handler module).
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

from server.fanout import Connection
from server.schema import Arg

if TYPE_CHECKING:
    from server.wiring import Services

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
    #: the connection the request came on
    session: Connection
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


def op_spec(name: str, roles: Iterable[str], args: tuple[Arg, ...], handler: Handler) -> OpSpec:
    """The spec of op ``name``; raises ``ValueError`` for a role the server does not know."""
    role_set = frozenset(roles)
    if not role_set <= ALL_ROLES:
        raise ValueError(f"unknown roles {sorted(role_set - ALL_ROLES)} for op {name}")
    summary = (handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else ""
    return OpSpec(name, role_set, args, handler, summary)


class OpGroup:
    """The ops of one area (selling, gates, ...), declared beside their handlers.

    A handler module makes one group and decorates its module-level handler
    functions with :meth:`op`; :func:`server.handlers.build_op_table` puts
    the groups in one table. The functions stay plain functions: importable,
    callable and testable on their own.
    """

    def __init__(self) -> None:
        self.specs: list[OpSpec] = []

    def op(
        self, name: str, *, roles: Iterable[str], args: tuple[Arg, ...] = ()
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler as op ``name`` callable by ``roles`` with ``args``."""

        def declare(handler: Handler) -> Handler:
            self.specs.append(op_spec(name, roles, args, handler))
            return handler

        return declare


class OpTable:
    """The set of ops a server offers, looked up by name on every request."""

    def __init__(self, *groups: OpGroup) -> None:
        self._ops: dict[str, OpSpec] = {}
        for group in groups:
            for spec in group.specs:
                self.add(spec)

    def add(self, spec: OpSpec) -> None:
        """Offer ``spec``'s op; raises ``ValueError`` when an op of that name is there already."""
        if spec.name in self._ops:
            raise ValueError(f"op {spec.name} is declared twice")
        self._ops[spec.name] = spec

    def op(
        self, name: str, *, roles: Iterable[str], args: tuple[Arg, ...] = ()
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as op ``name`` callable by ``roles`` (tests add ops).

        Raises ``ValueError`` for a duplicate name or an unknown role.
        """

        def register(handler: Handler) -> Handler:
            self.add(op_spec(name, roles, args, handler))
            return handler

        return register

    def get(self, name: str) -> OpSpec | None:
        """The op called ``name``, or ``None`` when there is none."""
        return self._ops.get(name)

    def __iter__(self):
        return iter(sorted(self._ops.values(), key=lambda spec: spec.name))
