"""The kiosk's flow as a pure state machine: choose, review, pay, done; reset when idle.

No I/O, no clock, no randomness: the App feeds in what the visitor pressed,
what the server answered and the purchase id it drew, and shows the
:class:`Kiosk` it gets back. Every function returns a new state.

The screens, in order (docs/kiosk.md):

``start``  the welcome screen; nothing of any visitor on it.
``choose`` products, quantities, the visit date and time slot, places left.
``review`` the lines, the total and the notes; confirm or go back.
``pay``    the QR code of a payment started on the order; waits for ``order.paid``.
``done``   the tickets and their QR codes; any refund notice of a second payment.

**One order per purchase.** A purchase (from ``start`` to the next
``start``) has an id drawn by the App; the ``client_key`` sent with
``order.create`` is that id and a revision that changes only when the
visitor changes the cart after a create was sent. So a retried create (after
``no_reply`` or a dropped connection) always carries the same key, and the
server answers with the same order rather than making a second.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from clients.tui.messages import Language

__all__ = [
    "Kiosk",
    "Payment",
    "Product",
    "Refunded",
    "Screen",
    "Ticket",
    "begin",
    "cart_lines",
    "client_key",
    "idle_expired",
    "order_seen",
    "reset",
]


class Screen(enum.Enum):
    """The kiosk's screens (see the module's docstring)."""

    START = "start"
    CHOOSE = "choose"
    REVIEW = "review"
    PAY = "pay"
    DONE = "done"


@attrs.frozen
class Product:
    """A product on sale, as ``catalog.list`` gives it."""

    product: str
    name_zh: str
    name_en: str
    price_fen: int
    needs_slot: bool
    entries: int | None

    @classmethod
    def from_catalog(cls, entry: Mapping[str, Any]) -> Product:
        """From one of ``catalog.list``'s ``products``."""
        return cls(
            entry["product"],
            entry["name_zh"],
            entry["name_en"],
            entry["price_fen"],
            bool(entry["needs_slot"]),
            entry["entries"],
        )


@attrs.frozen
class Payment:
    """The payment attempt on screen: what ``payment.start`` answered."""

    channel: str
    out_trade_no: str
    amount_fen: int
    qr: str | None


@attrs.frozen
class Ticket:
    """An issued ticket: its id and the code its QR holds."""

    ticket: str
    code: str


@attrs.frozen
class Refunded:
    """A payment of this order being given back (a second payment, a late one)."""

    out_trade_no: str
    channel: str
    amount_fen: int
    reason: str
    confirmed: bool


@attrs.frozen
class Kiosk:
    """Everything the kiosk shows; a new visitor starts from ``Kiosk(products=..., ...)``."""

    screen: Screen = Screen.START
    language: Language = "zh"
    products: tuple[Product, ...] = ()
    dates: tuple[str, ...] = ()
    slots: tuple[str, ...] = ()
    #: places left per (date, slot): slot None is the whole day
    places: Mapping[tuple[str, str | None], int] = attrs.field(factory=dict)
    row: int = 0
    quantities: tuple[int, ...] = ()
    date_index: int = 0
    slot_index: int = 0
    purchase: str | None = None
    revision: int = 0
    #: an order.create was sent with the current key (its reply may have been lost)
    create_sent: bool = False
    order: str | None = None
    total_fen: int = 0
    expires_at: float | None = None
    status: str | None = None
    payment: Payment | None = None
    tickets: tuple[Ticket, ...] = ()
    ticket_index: int = 0
    refunds: tuple[Refunded, ...] = ()
    #: the error code on screen (with its retry), or a flow notice such as ``order_expired``
    error: str | None = None
    #: a request is on its way: the screen says please wait
    busy: bool = False


#: the most tickets of one product in one purchase (the server allows 200 in all)
MAX_QUANTITY = 20


def reset(state: Kiosk) -> Kiosk:
    """The start screen for the next visitor: only the catalog and the places are kept."""
    return Kiosk(products=state.products, dates=state.dates, slots=state.slots, places=state.places)


def with_catalog(
    state: Kiosk, products: Sequence[Product], slots: Sequence[str], dates: Sequence[str]
) -> Kiosk:
    """The state with the catalog's products, slots and the dates on offer."""
    quantities = state.quantities if len(state.quantities) == len(products) else None
    return attrs.evolve(
        state,
        products=tuple(products),
        slots=tuple(slots),
        dates=tuple(dates),
        quantities=quantities or (0,) * len(products),
        date_index=min(state.date_index, max(len(dates) - 1, 0)),
    )


def with_places(state: Kiosk, places_reply: Mapping[str, Any]) -> Kiosk:
    """The state with ``catalog.places``' answer: places left per date and slot."""
    places = dict(state.places)
    for day in places_reply["dates"]:
        for place in day["places"]:
            places[(day["date"], place["slot"])] = place["left"]
    return attrs.evolve(state, places=places)


def begin(state: Kiosk, purchase: str) -> Kiosk:
    """A visitor starts a purchase (``purchase`` is a fresh id the App drew)."""
    return attrs.evolve(
        reset(state),
        language=state.language,
        screen=Screen.CHOOSE,
        purchase=purchase,
        quantities=(0,) * len(state.products),
    )


def _cart_changed(state: Kiosk, **changes: Any) -> Kiosk:
    if state.screen is not Screen.CHOOSE:
        return state
    revision = state.revision + 1 if state.create_sent else state.revision
    return attrs.evolve(state, revision=revision, create_sent=False, error=None, **changes)


def move(state: Kiosk, delta: int) -> Kiosk:
    """Select the product row ``delta`` rows down (up when negative), within the list."""
    if not state.products:
        return state
    return attrs.evolve(state, row=max(0, min(len(state.products) - 1, state.row + delta)))


def change_quantity(state: Kiosk, delta: int) -> Kiosk:
    """Add ``delta`` (or take it away) to the selected product's quantity, 0..MAX_QUANTITY."""
    if not state.products:
        return state
    quantities = list(state.quantities)
    quantities[state.row] = max(0, min(MAX_QUANTITY, quantities[state.row] + delta))
    if tuple(quantities) == state.quantities:
        return state
    return _cart_changed(state, quantities=tuple(quantities))


def shift_date(state: Kiosk, delta: int) -> Kiosk:
    """Choose the date ``delta`` places later (earlier when negative) among those offered."""
    if not state.dates:
        return state
    index = max(0, min(len(state.dates) - 1, state.date_index + delta))
    return state if index == state.date_index else _cart_changed(state, date_index=index)


def shift_slot(state: Kiosk, delta: int) -> Kiosk:
    """Choose the next (or previous) time slot, for the products that need one."""
    if not state.slots:
        return state
    index = (state.slot_index + delta) % len(state.slots)
    return state if index == state.slot_index else _cart_changed(state, slot_index=index)


def chosen_date(state: Kiosk) -> str | None:
    """The visit date chosen, ``YYYY-MM-DD``."""
    return state.dates[state.date_index] if state.dates else None


def chosen_slot(state: Kiosk) -> str | None:
    """The time slot chosen, for the products that need one."""
    return state.slots[state.slot_index] if state.slots else None


def needs_slot(state: Kiosk) -> bool:
    """Whether a product with a time slot is in the cart."""
    return any(q and p.needs_slot for p, q in zip(state.products, state.quantities, strict=True))


def cart_lines(state: Kiosk) -> list[dict[str, Any]]:
    """The cart as ``order.create``'s ``lines`` (a slot only on products that need one)."""
    lines = []
    for product, quantity in zip(state.products, state.quantities, strict=True):
        if quantity:
            line = {"product": product.product, "quantity": quantity, "date": chosen_date(state)}
            if product.needs_slot:
                line["slot"] = chosen_slot(state)
            lines.append(line)
    return lines


def cart_total_fen(state: Kiosk) -> int:
    """What the cart costs, in fen."""
    return sum(p.price_fen * q for p, q in zip(state.products, state.quantities, strict=True))


def client_key(state: Kiosk) -> str:
    """The ``client_key`` of this purchase's ``order.create`` (1..64 characters).

    The same while the cart stays as it was when a create was sent, so a
    retry is answered with the same order. Raises ``ValueError`` outside a
    purchase.
    """
    if state.purchase is None:
        raise ValueError("no purchase is under way")
    return f"{state.purchase[:40]}-{state.revision}"


def review(state: Kiosk) -> Kiosk:
    """From ``choose`` to ``review``; ``nothing_chosen`` when the cart is empty."""
    if state.screen is not Screen.CHOOSE:
        return state
    if not cart_lines(state):
        return attrs.evolve(state, error="nothing_chosen")
    return attrs.evolve(state, screen=Screen.REVIEW, error=None)


def back(state: Kiosk) -> Kiosk:
    """From ``review`` back to ``choose`` (the cart as it was)."""
    if state.screen is not Screen.REVIEW:
        return state
    return attrs.evolve(state, screen=Screen.CHOOSE, error=None)


def create_sent(state: Kiosk) -> Kiosk:
    """An ``order.create`` with :func:`client_key` is on its way."""
    return attrs.evolve(state, create_sent=True, busy=True, error=None)


def failed(state: Kiosk, code: str) -> Kiosk:
    """A request failed with error ``code``: shown with its retry."""
    return attrs.evolve(state, busy=False, error=code)


def waiting(state: Kiosk) -> Kiosk:
    """A request is on its way."""
    return attrs.evolve(state, busy=True, error=None)


def order_seen(state: Kiosk, order: Mapping[str, Any]) -> Kiosk:
    """What the order map (``order.create``, ``order.get``) means for the screen.

    ``pending``: the pay screen. ``paid``: the tickets (from the map, so a
    payment that arrived while the kiosk was offline shows too).
    ``expired`` or ``cancelled`` unpaid: back to the start with the notice
    ``order_expired`` / ``order_cancelled``. Refunds of the order's
    payments become refund notices. An order map of another order than
    this purchase's changes nothing.
    """
    if state.order is not None and order["order"] != state.order:
        return state
    if state.purchase is None:
        return state
    refunds = tuple(
        Refunded(
            r["out_trade_no"], r["channel"], r["amount_fen"], r["reason"], r["state"] == "confirmed"
        )
        for r in order.get("refunds", ())
    )
    state = attrs.evolve(
        state,
        order=order["order"],
        total_fen=order["total_fen"],
        expires_at=order["expires_at"],
        status=order["status"],
        refunds=refunds or state.refunds,
        busy=False,
        error=None,
    )
    if order["status"] == "paid":
        tickets = tuple(Ticket(t["ticket"], t["code"]) for t in order.get("tickets", ()))
        return attrs.evolve(state, screen=Screen.DONE, tickets=tickets or state.tickets)
    if order["status"] in ("expired", "cancelled"):
        notice = "order_expired" if order["status"] == "expired" else "order_cancelled"
        return attrs.evolve(reset(state), language=state.language, error=notice)
    return attrs.evolve(state, screen=Screen.PAY)


def payment_started(state: Kiosk, reply: Mapping[str, Any]) -> Kiosk:
    """``payment.start`` answered: its QR goes on the pay screen."""
    if reply["order"] != state.order or state.screen is not Screen.PAY:
        return state
    payment = Payment(reply["channel"], reply["out_trade_no"], reply["amount_fen"], reply["qr"])
    return attrs.evolve(state, payment=payment, busy=False, error=None)


def paid(state: Kiosk, data: Mapping[str, Any]) -> Kiosk:
    """The ``order.paid`` event: the tickets are issued."""
    if data["order"] != state.order:
        return state
    tickets = tuple(Ticket(t["ticket"], t["code"]) for t in data["tickets"])
    return attrs.evolve(
        state, screen=Screen.DONE, status="paid", tickets=tickets, busy=False, error=None
    )


def refunded(state: Kiosk, data: Mapping[str, Any]) -> Kiosk:
    """The ``payment.refunded`` event: a payment of this order was given back."""
    if data["order"] != state.order:
        return state
    notice = Refunded(
        data["out_trade_no"], data["channel"], data["amount_fen"], data["reason"], True
    )
    others = tuple(r for r in state.refunds if r.out_trade_no != notice.out_trade_no)
    return attrs.evolve(state, refunds=(*others, notice))


def shift_ticket(state: Kiosk, delta: int) -> Kiosk:
    """Show the next (or previous) ticket's QR code on the done screen."""
    if not state.tickets:
        return state
    return attrs.evolve(state, ticket_index=(state.ticket_index + delta) % len(state.tickets))


def toggle_language(state: Kiosk) -> Kiosk:
    """Chinese to English and back."""
    return attrs.evolve(state, language="en" if state.language == "zh" else "zh")


def lapsed(state: Kiosk, now: float) -> bool:
    """Whether the order on the pay screen is past its ``expires_at`` (``now``: epoch seconds).

    The App then reads the order again, and the server's word (``expired``)
    takes the kiosk back to the start with the notice ``order_expired``.
    """
    return state.screen is Screen.PAY and state.expires_at is not None and now >= state.expires_at


def idle_expired(state: Kiosk, idle_s: float, since_input_s: float, pay_s: float) -> bool:
    """Whether the kiosk should return to the start screen now.

    ``since_input_s`` seconds have passed since the last key. On the start
    screen nothing is to be cleared except a notice; on the pay screen the
    wait for the payment is ``pay_s`` (the App cancels the order first);
    elsewhere ``idle_s``.
    """
    if state.screen is Screen.START:
        return state.error is not None and since_input_s >= idle_s
    limit = pay_s if state.screen is Screen.PAY else idle_s
    return since_input_s >= limit
