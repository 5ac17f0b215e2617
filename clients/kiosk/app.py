"""The kiosk App: the flow of :mod:`clients.kiosk.flow` on a textual screen, over a Link.

Keyboard only (docs/kiosk.md lists the keys). Every request goes through
:class:`clients.tui.link.Link` with its timeout; a failed one is shown in
words with ``R`` to retry, and a request the connection dropped is resumed
by itself when the link is back: the order on screen is read again
(``order.get``), an ``order.create`` whose reply was lost is sent again with
the same ``client_key`` (so the server answers with the same order). After
``idle_s`` seconds without a key (``pay_s`` on the pay screen, whose order is
then cancelled, so a payment made later is refunded) the kiosk returns to
the start screen with nothing of the visitor left on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio
from rich.text import Text
from textual import events
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Static

from clients.kiosk import flow
from clients.kiosk.flow import Kiosk, Screen
from clients.kiosk.view import frame, status_line
from clients.tui.bridge import TrioApp
from clients.tui.link import Link, LinkState
from clients.tui.messages import Language
from server.errors import ScenicError

__all__ = ["KioskApp"]

#: how many dates, from today, the kiosk offers
DAYS_ON_OFFER = 7
#: the places left are read again this often while the choose screen is shown
PLACES_EVERY_S = 5.0


class KioskApp(TrioApp):
    """The self-service kiosk for ``device`` at ``url`` (see the module's docstring).

    ``language`` is what each visitor first sees; ``idle_s`` and ``pay_s`` the
    idle rule's limits; ``request_timeout_s`` bounds each request;
    ``reconnect_after_s`` is the first reconnect delay (it doubles up to 15 s);
    ``new_purchase`` draws a purchase id (the ``client_key``'s stem).
    """

    CSS = """
    Screen { layout: vertical; }
    #title { height: 1; background: $primary; color: $text; text-style: bold; padding: 0 1; }
    #main { height: 1fr; }
    #body { width: 1fr; padding: 1 2; }
    #qr { width: auto; padding: 1 2; }
    #status { height: 1; background: $panel; padding: 0 1; }
    #keys { height: 1; background: $boost; padding: 0 1; }
    """

    def __init__(
        self,
        url: str,
        device: str,
        token: str,
        *,
        language: Language = "zh",
        idle_s: float = 60.0,
        pay_s: float = 180.0,
        request_timeout_s: float = 10.0,
        reconnect_after_s: float = 0.5,
        new_purchase: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        super().__init__()
        self.state = Kiosk(language=language)
        self.default_language: Language = language
        self.idle_s, self.pay_s = idle_s, pay_s
        self.new_purchase = new_purchase
        self.site_name = ""
        self.link_state = LinkState("connecting")
        self._link_state_at = time.monotonic()
        self._last_input = time.monotonic()
        self._retry: Callable[[], None] | None = None
        self._places_at = 0.0
        self._lapse_asked_at = 0.0
        self.link = Link(
            url,
            device,
            token,
            on_state=lambda state: self.to_ui(self._link_changed, state),
            on_event=lambda event, data: self.to_ui(self._server_event, event, data),
            request_timeout_s=request_timeout_s,
            backoff_base_s=reconnect_after_s,
        )

    # -- textual

    def compose(self):
        """The title, the body with its QR code beside it, the status bar and the keys."""
        yield Static(id="title")
        with Horizontal(id="main"):
            yield Vertical(Static(id="body"))
            yield Static(id="qr")
        yield Static(id="status")
        yield Static(id="keys")

    def on_mount(self) -> None:
        """Render, and tick twice a second for countdowns, the idle rule and the places."""
        self.set_interval(0.5, self._tick)
        self._render()

    async def trio_main(self) -> None:
        """The trio side: keep the link up."""
        await self.link.run()

    async def on_key(self, event: events.Key) -> None:
        """Every key counts as input (the idle rule); then it acts on the screen shown."""
        self._last_input = time.monotonic()
        key = event.key
        state = self.state
        if key in ("l", "L"):
            self._set(flow.toggle_language(state))
        elif key in ("r", "R"):
            self._retry_now()
        elif state.busy:
            pass  # one request at a time: wait for it (its timeout bounds the wait)
        elif state.screen is Screen.START:
            self._on_start_key(key)
        elif state.screen is Screen.CHOOSE:
            self._on_choose_key(key)
        elif state.screen is Screen.REVIEW:
            if key == "enter":
                self._do(self._confirm)
            elif key == "escape":
                self._set(flow.back(state))
        elif state.screen is Screen.PAY:
            if key in ("w", "a", "W", "A"):
                channel = "wechat" if key in ("w", "W") else "alipay"
                if state.payment is None or state.payment.channel != channel:
                    self._do(partial(self._start_payment, channel))
            elif key == "escape":
                self._do(self._cancel)
        elif state.screen is Screen.DONE:
            if key in ("left", "right"):
                self._set(flow.shift_ticket(state, 1 if key == "right" else -1))
            elif key in ("enter", "escape"):
                self._reset()
        self._render()

    def _on_start_key(self, key: str) -> None:
        if key == "enter" and self.state.products:
            self._set(flow.begin(self.state, self.new_purchase()))
            self._retry = None
            self._do(self._load_places)
        elif key == "enter":
            self._do(self._load_catalog)

    def _on_choose_key(self, key: str) -> None:
        state = self.state
        moves = {
            "up": partial(flow.move, state, -1),
            "down": partial(flow.move, state, 1),
            "left": partial(flow.change_quantity, state, -1),
            "minus": partial(flow.change_quantity, state, -1),
            "right": partial(flow.change_quantity, state, 1),
            "plus": partial(flow.change_quantity, state, 1),
            "equals_sign": partial(flow.change_quantity, state, 1),
            "d": partial(flow.shift_date, state, 1),
            "pagedown": partial(flow.shift_date, state, 1),
            "D": partial(flow.shift_date, state, -1),
            "shift+d": partial(flow.shift_date, state, -1),
            "pageup": partial(flow.shift_date, state, -1),
            "t": partial(flow.shift_slot, state, 1),
            "T": partial(flow.shift_slot, state, -1),
            "shift+t": partial(flow.shift_slot, state, -1),
            "enter": partial(flow.review, state),
        }
        if key in moves:
            self._set(moves[key]())
        elif key == "escape":
            self._reset()

    # -- requests

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        return await self.run_trio(partial(self.link.request, op, **args))

    def _do(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` (one at a time); a refusal is shown with R to run it again."""
        purchase = self.state.purchase

        async def guarded() -> None:
            try:
                await action()
            except ScenicError as exc:
                if self.state.purchase == purchase:
                    self._retry = lambda: self._do(action)
                    self._set(flow.failed(self.state, exc.code))
                return
            if self.state.purchase == purchase and self.state.error is None:
                self._retry = None

        self.run_worker(guarded(), group="requests", exclusive=True, exit_on_error=True)

    def _retry_now(self) -> None:
        if self.link_state.status != "connected":
            self.run_worker(self.run_trio(_sync_async(self.link.retry_now)), group="link")
        if self._retry is not None:
            retry, self._retry = self._retry, None
            retry()

    async def _load_catalog(self) -> None:
        catalog = await self._call("catalog.list")
        places = await self._call("catalog.places", days=DAYS_ON_OFFER)
        self.site_name = catalog["site"]["name_zh" if self.state.language == "zh" else "name_en"]
        self._site = catalog["site"]
        products = [flow.Product.from_catalog(p) for p in catalog["products"]]
        slots = [s["slot"] for s in catalog["slots"]]
        dates = [d["date"] for d in places["dates"]]
        state = flow.with_catalog(self.state, products, slots, dates)
        self._set(flow.with_places(state, places))
        self._places_at = time.monotonic()

    async def _load_places(self) -> None:
        self._places_at = time.monotonic()
        places = await self._call("catalog.places", days=DAYS_ON_OFFER)
        self._set(flow.with_places(self.state, places))

    async def _confirm(self) -> None:
        purchase = self.state.purchase
        key, lines = flow.client_key(self.state), flow.cart_lines(self.state)
        self._set(flow.create_sent(self.state))
        order = await self._call("order.create", client_key=key, lines=lines)
        if self.state.purchase != purchase:
            return
        self._set(flow.order_seen(self.state, order))
        if self.state.screen is Screen.PAY and self.state.payment is None:
            await self._start_payment("wechat")

    async def _start_payment(self, channel: str) -> None:
        purchase, order = self.state.purchase, self.state.order
        self._set(flow.waiting(self.state))
        try:
            reply = await self._call("payment.start", order=order, channel=channel)
        except ScenicError as exc:
            if exc.code != "order_not_pending":
                raise
            await self._refresh_order()
            return
        if self.state.purchase == purchase:
            self._set(flow.payment_started(self.state, reply))

    async def _refresh_order(self) -> None:
        purchase, order = self.state.purchase, self.state.order
        self._set(flow.waiting(self.state))
        seen = await self._call("order.get", order=order)
        if self.state.purchase == purchase:
            self._set(flow.order_seen(self.state, seen))

    async def _cancel(self) -> None:
        purchase, order = self.state.purchase, self.state.order
        self._set(flow.waiting(self.state))
        try:
            seen = await self._call("order.cancel", order=order)
        except ScenicError as exc:
            if exc.code != "order_not_pending":
                raise
            seen = await self._call("order.get", order=order)
        if self.state.purchase == purchase:
            self._set(flow.order_seen(self.state, seen))

    # -- what the trio side reports

    def _link_changed(self, state: LinkState) -> None:
        was_connected = self.link_state.status == "connected"
        self.link_state, self._link_state_at = state, time.monotonic()
        if state.status == "connected" and not was_connected:
            self._resume()
        self._render()

    def _resume(self) -> None:
        """The link is back: load what is missing and carry on with the purchase on screen."""
        state = self.state
        if not state.products:
            self._do(self._load_catalog)
        elif state.order is not None and state.screen in (Screen.PAY, Screen.DONE):
            self._retry = None
            self._do(self._refresh_order)
        elif state.create_sent and state.order is None and state.screen is Screen.REVIEW:
            self._retry = None
            self._do(self._confirm)  # the same client_key: the same order
        elif self._retry is not None and state.error is not None:
            self._retry_now()

    def _server_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "order.paid":
            self._set(flow.paid(self.state, data))
        elif event == "payment.refunded":
            self._set(flow.refunded(self.state, data))

    # -- the clock

    def _tick(self) -> None:
        since = time.monotonic() - self._last_input
        if flow.idle_expired(self.state, self.idle_s, since, self.pay_s):
            if self.state.screen is Screen.PAY and self.state.status == "pending":
                self._cancel_quietly(self.state.order)
            self._reset()
        elif (
            flow.lapsed(self.state, time.time())
            and not self.state.busy
            and time.monotonic() - self._lapse_asked_at > PLACES_EVERY_S
        ):
            self._lapse_asked_at = time.monotonic()
            self._do(self._refresh_order)
        elif (
            self.state.screen is Screen.CHOOSE
            and not self.state.busy
            and time.monotonic() - self._places_at > PLACES_EVERY_S
            and self.link_state.status == "connected"
        ):
            self._places_at = time.monotonic()
            self.run_worker(self._quiet(self._load_places), group="places", exclusive=True)
        self._render()

    def _cancel_quietly(self, order: str | None) -> None:
        """Cancel an abandoned order, so that money paid for it later is given back."""
        if order is not None:
            self.run_worker(self._quiet(partial(self._call, "order.cancel", order=order)))

    async def _quiet(self, action: Callable[[], Awaitable[Any]]) -> None:
        try:
            await action()
        except ScenicError:
            pass  # a background refresh: the next one, or the visitor's retry, tells

    def _reset(self) -> None:
        """The start screen for the next visitor."""
        self.workers.cancel_group(self, "requests")
        self._retry = None
        self._last_input = time.monotonic()
        self._set(attrs.evolve(flow.reset(self.state), language=self.default_language))

    # -- drawing

    def _set(self, state: Kiosk) -> None:
        self.state = state
        self._render()

    def _idle_left(self) -> float | None:
        if self.state.screen is Screen.START and self.state.error is None:
            return None
        limit = self.pay_s if self.state.screen is Screen.PAY else self.idle_s
        return limit - (time.monotonic() - self._last_input)

    def _render(self) -> None:
        try:
            title = self.query_one("#title", Static)
        except NoMatches:
            return  # not composed yet, or shutting down
        lang = self.state.language
        site = getattr(self, "_site", None)
        name = site[f"name_{lang}"] if site else self.site_name
        shown = frame(self.state, name, time.time(), self._idle_left())
        title.update(Text(shown.title))
        self.query_one("#body", Static).update(Text(shown.body))
        qr = self.query_one("#qr", Static)
        qr.update(Text("\n".join(shown.qr), style="white on black") if shown.qr else Text(""))
        left = None
        if self.link_state.retry_in_s is not None:
            left = self.link_state.retry_in_s - (time.monotonic() - self._link_state_at)
        self.query_one("#status", Static).update(Text(status_line(self.link_state, lang, left)))
        self.query_one("#keys", Static).update(Text(shown.keys))


def _sync_async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        fn()
        await trio.lowlevel.checkpoint()

    return call
