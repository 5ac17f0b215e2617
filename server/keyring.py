"""The site keys that make and check ticket codes, as a server holds them.

The newest unretired key makes new codes; every unretired one is accepted
(keys rotate with ``scenic keys rotate``; codes of a retired key are
``forged``). A server reads them at start and again when an operator
changes them (:mod:`server.site` follows the NOTIFY).
"""

from __future__ import annotations

import functools

import attrs

from actors.orders.state import IssuedTicket
from actors.tickets.codes import Entitlement, SiteKey, make_code, ticket_id_of
from server.storage.site import KeyRow


@attrs.frozen(slots=False)
class TicketKeyring:
    """The site keys: the newest makes new codes; every unretired one is accepted."""

    keys: tuple[KeyRow, ...]

    @functools.cached_property
    def current(self) -> SiteKey:
        """The key new codes are made with."""
        row = [k for k in self.keys if k.retired_at is None][-1]
        return SiteKey(row.key_id, row.secret, row.signing_key)

    @functools.cached_property
    def secrets(self) -> dict[str, bytes]:
        """HMAC secrets of the keys still accepted, by key id."""
        return {k.key_id: k.secret for k in self.keys if k.retired_at is None}

    def public_keys(self) -> dict[str, bytes]:
        """Ed25519 public keys of the keys still accepted, for offline gate agents."""
        return {
            k.key_id: SiteKey(k.key_id, k.secret, k.signing_key).public_key
            for k in self.keys
            if k.retired_at is None
        }

    def code_of(self, ticket: IssuedTicket) -> str:
        """The code printed on an issued ticket's QR."""
        entitlement = Entitlement(
            ticket.ticket_id,
            ticket.visit_date,
            ticket.slot,
            ticket.entries_allowed,
            ticket.product_id,
        )
        return make_code(entitlement, self.current)

    def ticket_id_of(self, code: str) -> str:
        """The ticket a genuine ``code`` names; raises ``forged`` otherwise."""
        return ticket_id_of(code, self.secrets)
