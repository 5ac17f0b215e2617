"""``scenic counter``: the cashier's screen, a textual App with trio inside (clients/tui).

Keyboard only. F1 Sell, F2 Lookup, F3 Refund, F4 Shift, F6 Rentals (a
``rental`` device opens on it), F5 retry the connection now, Esc back out
of a confirmation. Tab moves between fields; Enter submits a field.
docs/counter.md describes each screen.

Every request goes through :class:`clients.tui.link.Link` (a timeout on
each, reconnects by itself); a refusal shows its Chinese and English
message (:func:`clients.tui.messages.describe_error`). A sale keeps its
``client_key`` and payment ``key`` until it is done or abandoned, so
pressing Enter again after ``no_reply`` or ``connection_lost`` retries
the same sale and never makes a second order or a second taking.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import trio
from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, ContentSwitcher, Input, Static

from clients.counter.entry import (
    EntryError,
    lookup_arg,
    read_labels,
    read_lines,
    read_payment,
    read_returns,
    total_of,
)
from clients.counter.money import NotEnoughCash, change_due, parse_yuan, yuan
from clients.counter.receipt import (
    CHANNEL_NAMES,
    as_text,
    refund_slip,
    sale_receipt,
    shift_slip,
)
from clients.counter.views import (
    both,
    error_text,
    lookup_text,
    qr_text,
    refund_amount,
    sale_summary,
    settlement_text,
    ticket_rows,
)
from clients.tui.bridge import TrioApp
from clients.tui.link import Link, LinkState
from clients.tui.messages import REFUND_REASONS, describe_error, text
from server.errors import ScenicError

#: how often the places left are asked again while the Sell screen shows
PLACES_EVERY_S = 5.0


class Sale:
    """One sale in progress: what is sold, how it is paid, and its idempotency keys."""

    def __init__(self) -> None:
        self.client_key = f"c-{secrets.token_hex(8)}"
        self.pay_key = f"p-{secrets.token_hex(8)}"
        self.lines: list[dict[str, Any]] = []
        self.total_fen = 0
        self.channel = "cash"
        self.tendered_fen: int | None = None
        self.order: dict[str, Any] | None = None
        self.qr_trade_no: str | None = None


class CounterApp(TrioApp):
    """The cashier's screen for one counter (or rental desk) device."""

    TITLE = "scenic counter 售票柜台"
    CSS = """
    #status { dock: top; height: 1; background: $panel; }
    #keys { dock: bottom; height: 1; background: $panel; }
    .panel { padding: 0 1; }
    .message { margin-top: 1; }
    Input { width: 60; }
    """
    BINDINGS = [  # noqa: RUF012 (textual's own declaration style)
        Binding("f1", "show('sell')", "Sell"),
        Binding("f2", "show('lookup')", "Lookup"),
        Binding("f3", "show('refund')", "Refund"),
        Binding("f4", "show('shift')", "Shift"),
        Binding("f6", "show('rental')", "Rentals"),
        Binding("f5", "retry", "Retry"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self,
        url: str,
        device: str,
        token: str,
        *,
        printer: Any = None,
        float_fen: int = 0,
        request_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.device = device
        self.printer = printer
        self.float_fen = float_fen
        self.shift_started = datetime.now(UTC)
        self.link = Link(
            url,
            device,
            token,
            on_state=lambda state: self.to_ui(self.show_link, state),
            on_event=lambda event, data: self.to_ui(self.on_server_event, event, data),
            request_timeout_s=request_timeout_s,
        )
        self.catalog: dict[str, Any] | None = None
        self.role: str | None = None
        self.sale = Sale()
        self.refund_plan: dict[str, Any] | None = None
        self.refund_key = f"r-{secrets.token_hex(8)}"
        self.printed: list[Any] = []
        #: set (in trio) to ask the places left again now rather than at the next tick
        self._places_now: trio.Event | None = None

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """The status bar, the five screens (one shown at a time) and the keys line."""
        yield Static("连接中 connecting…", id="status")
        with ContentSwitcher(initial="sell"):
            with VerticalScroll(id="sell", classes="panel"):
                yield Static("售票 Sell tickets", classes="title")
                yield Static("", id="places")
                yield Static("", id="products")
                yield Input(placeholder="日期 date YYYY-MM-DD", id="sale-date")
                yield Input(placeholder="时段 slot (AM / PM, blank: whole day)", id="sale-slot")
                yield Input(placeholder="票 tickets: adult 2, child", id="sale-lines")
                yield Input(
                    placeholder="付款 pay: cash 200 / card / wechat / alipay", id="sale-pay"
                )
                yield Static("", id="sale-confirm", classes="message")
                yield Button("收款 Collect (Enter)", id="collect", disabled=True)
                yield Static("", id="sale-qr")
                yield Static("", id="sale-message", classes="message")
            with VerticalScroll(id="lookup", classes="panel"):
                yield Static("查询 Look up: order, payment, refund, ticket, channel transaction")
                yield Input(placeholder="号码 number (scan or type)", id="lookup-number")
                yield Static("", id="lookup-result", classes="message")
            with VerticalScroll(id="refund", classes="panel"):
                yield Static("退票 Refund unused tickets")
                yield Input(placeholder="订单 order O…", id="refund-order")
                yield Static("", id="refund-tickets-shown")
                yield Input(
                    placeholder="票 ticket ids (blank: every unused one)", id="refund-tickets"
                )
                yield Input(placeholder="原因 reason", id="refund-reason")
                yield Static("", id="refund-confirm", classes="message")
                yield Button("退款 Refund (Enter)", id="refund-go", disabled=True)
                yield Static("", id="refund-message", classes="message")
            with VerticalScroll(id="shift", classes="panel"):
                yield Static("交班 Shift report")
                yield Input(placeholder="备用金 opening float, yuan", id="shift-float")
                yield Static("", id="shift-result", classes="message")
            with Vertical(id="rental", classes="panel"):
                yield Static("租赁 Rentals: hand out and take back")
                yield Input(placeholder="押金凭证 voucher (scan)", id="pickup-voucher")
                yield Input(placeholder="标签 labels (scan each)", id="pickup-labels")
                yield Input(placeholder="归还 rental H…", id="return-rental")
                yield Input(
                    placeholder="归还 labels: 880101001 ok, 880103001 damaged", id="return-units"
                )
                yield Static("", id="rental-result", classes="message")
        yield Static(
            "F1 售票 Sell  F2 查询 Lookup  F3 退票 Refund  F4 交班 Shift  F6 租赁 Rentals  "
            "F5 重连 Retry  Esc 返回 Back",
            id="keys",
        )

    async def trio_main(self) -> None:
        """Keep the link up, load the catalog, and refresh the places left."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.link.run)
            nursery.start_soon(self._places_loop)

    def on_mount(self) -> None:
        """Start on the Sell screen with the lines field focused."""
        self.query_one("#sale-lines", Input).focus()

    # -- the link and the server's pushes ---------------------------------------------

    def show_link(self, state: LinkState) -> None:
        """The status bar: who is signed in, whether connected, when the next retry is."""
        who = f"{self.device}" + (f" ({self.role})" if self.role else "")
        printer = self.printer.describe() if self.printer else "no printer"
        if state.status == "connected":
            line = f"[green]● 已连接 connected[/] {who} · {self.link.url} · 打印 {printer}"
        elif state.status == "failed":
            line = (
                f"[red]● 拒绝 refused[/] {describe_error(state.code or 'internal', 'zh')} "
                f"{describe_error(state.code or 'internal', 'en')} · F5 重试 retry"
            )
        else:
            wait = "" if state.retry_in_s is None else f" in {state.retry_in_s:g} s"
            line = f"[yellow]● 重连中 reconnecting{wait}[/] ({state.code}) · F5 立即重试 retry now"
        self.query_one("#status", Static).update(line)

    def on_server_event(self, event: str, data: dict[str, Any]) -> None:
        """``order.paid`` finishes a QR sale; ``payment.refunded`` is shown to the cashier."""
        if event == "order.paid" and self.sale.order and data["order"] == self.sale.order["order"]:
            self.run_worker(self._finish_qr_sale(), group="sale", exclusive=True)
        elif event == "payment.refunded":
            reason = data.get("reason", "")
            self.say(
                "#sale-message",
                f"[b yellow]{text(REFUND_REASONS, reason, 'zh')}\n"
                f"{text(REFUND_REASONS, reason, 'en')}[/]"
                f"\n{data['order']}: {yuan(data['amount_fen'])} → "
                f"{CHANNEL_NAMES.get(data['channel'], data['channel'])} ({data['out_refund_no']})",
            )

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        """``op`` through the link (from textual); raises what :meth:`Link.request` raises."""
        return await self.run_trio(partial(self.link.request, op, **args))

    async def _places_loop(self) -> None:
        while True:
            try:
                if self.catalog is None:
                    self.catalog = await self.link.request("catalog.list")
                    hello_role = await self._role()
                    self.to_ui(self._catalog_loaded, hello_role)
                day = self.query_one("#sale-date", Input).value.strip() or None
                args = {"date": day} if day else {}
                places = await self.link.request("catalog.places", **args)
                self.to_ui(self._show_places, places)
            except ScenicError as exc:
                self.to_ui(self.say, "#places", error_text(exc))
            self._places_now = trio.Event()
            with trio.move_on_after(PLACES_EVERY_S):
                await self._places_now.wait()

    async def _role(self) -> str:
        try:
            await self.link.request("counter.shift", **{"from": 0.0, "to": 1.0})
        except ScenicError as exc:
            if exc.code == "forbidden":
                return "rental"
        return "counter"

    def _catalog_loaded(self, role: str) -> None:
        self.role = role
        self.show_link(self.link.state)
        products = self.catalog["products"]
        self.query_one("#products", Static).update(
            "  ".join(f"{p['product']} {p['name_zh']} {yuan(p['price_fen'])}" for p in products)
        )
        if role == "rental":
            self.action_show("rental")

    def _show_places(self, places: dict[str, Any]) -> None:
        day = places["dates"][0]
        parts = [f"{p['slot'] or '全天 day'}: {p['left']}/{p['capacity']}" for p in day["places"]]
        self.query_one("#places", Static).update(
            f"余票 places left {day['date']}  " + "  ".join(parts)
        )
        date_input = self.query_one("#sale-date", Input)
        if not date_input.value:
            date_input.value = day["date"]

    def _local_time(self, epoch: float) -> str:
        """``epoch`` as HH:MM at the site."""
        zone = ZoneInfo(self.catalog["timezone"]) if self.catalog else UTC
        return datetime.fromtimestamp(epoch, UTC).astimezone(zone).strftime("%H:%M")

    def _typed(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    def say(self, selector: str, message: str) -> None:
        """Show ``message`` in the widget ``selector``."""
        self.query_one(selector, Static).update(message)

    # -- keys ---------------------------------------------------------------------------

    def action_show(self, panel: str) -> None:
        """Switch to a screen and focus its first field."""
        self.query_one(ContentSwitcher).current = panel
        first = {
            "sell": "#sale-lines",
            "lookup": "#lookup-number",
            "refund": "#refund-order",
            "shift": "#shift-float",
            "rental": "#pickup-voucher",
        }[panel]
        self.query_one(first, Input).focus()

    def action_retry(self) -> None:
        """F5: reconnect now, and ask for the places again."""
        self.link.retry_now()
        if self._places_now is not None:
            self.run_worker(self.run_trio(self._wake_places), group="places")

    async def _wake_places(self) -> None:
        if self._places_now is not None:
            self._places_now.set()

    def action_back(self) -> None:
        """Esc: leave a confirmation without collecting or refunding."""
        collect = self.query_one("#collect", Button)
        if not collect.disabled and self.sale.order is None:
            collect.disabled = True
            self.say("#sale-confirm", "已返回 back: nothing collected")
            self.query_one("#sale-pay", Input).focus()
        go = self.query_one("#refund-go", Button)
        if not go.disabled:
            go.disabled = True
            self.say("#refund-confirm", "已返回 back: nothing refunded")
            self.query_one("#refund-reason", Input).focus()

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field: move on, or do what the field asks."""
        field = event.input.id
        if field in ("sale-date", "sale-slot", "sale-lines"):
            self.screen.focus_next()
        elif field == "sale-pay":
            self.confirm_sale()
        elif field == "lookup-number":
            self.run_worker(self._lookup(event.value), group="lookup", exclusive=True)
        elif field == "refund-order":
            self.run_worker(self._refund_show(event.value.strip()), group="refund", exclusive=True)
        elif field == "refund-tickets":
            self.screen.focus_next()
        elif field == "refund-reason":
            self.run_worker(self._refund_plan(), group="refund", exclusive=True)
        elif field == "shift-float":
            self.run_worker(self._shift(event.value), group="shift", exclusive=True)
        elif field == "pickup-voucher":
            self.screen.focus_next()
        elif field == "pickup-labels":
            self.run_worker(self._pickup(), group="rental", exclusive=True)
        elif field == "return-rental":
            self.screen.focus_next()
        elif field == "return-units":
            self.run_worker(self._return(), group="rental", exclusive=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Enter on Collect or Refund: do it."""
        if event.button.id == "collect":
            self.run_worker(self._collect(), group="sale", exclusive=True)
        elif event.button.id == "refund-go":
            self.run_worker(self._refund_go(), group="refund", exclusive=True)

    # -- selling ------------------------------------------------------------------------

    def confirm_sale(self) -> None:
        """Read the sale, work out the total (and the change), and ask to confirm."""
        if self.catalog is None:
            self.say("#sale-confirm", error_text(ScenicError("no catalog yet", code="no_reply")))
            return
        products = {p["product"]: p for p in self.catalog["products"]}
        try:
            lines = read_lines(
                self._typed("#sale-lines"),
                products,
                self._typed("#sale-date"),
                self._typed("#sale-slot") or None,
            )
            payment = read_payment(self._typed("#sale-pay"))
            total = total_of(lines, products)
            if payment.tendered_fen is not None:
                change_due(total, payment.tendered_fen)  # refuses too little cash
        except EntryError as exc:
            self.say("#sale-confirm", f"[red]{exc.zh}\n{exc.en}[/]")
            return
        except NotEnoughCash as exc:
            self.say(
                "#sale-confirm",
                f"[red]收到的现金不够，还差 {yuan(exc.short_fen)}\n"
                f"not enough cash: {yuan(exc.short_fen)} short[/]",
            )
            return
        if self.sale.order is not None and self.sale.lines != lines:
            self.sale = Sale()  # another purchase: new keys
            self.say("#sale-qr", "")
        elif self.sale.qr_trade_no is not None and payment.channel != self.sale.channel:
            # the same purchase paid another way (the visitor could not scan): the same order;
            # should the QR be paid after all, the server refunds that second payment
            self.sale.qr_trade_no = None
            self.say("#sale-qr", "")
        self.sale.lines, self.sale.total_fen = lines, total
        self.sale.channel, self.sale.tendered_fen = payment.channel, payment.tendered_fen
        summary = sale_summary(lines, payment.channel, total, payment.tendered_fen)
        self.say("#sale-confirm", summary)
        collect = self.query_one("#collect", Button)
        collect.disabled = False
        collect.focus()

    async def _collect(self) -> None:
        sale = self.sale
        self.say("#sale-message", "处理中 working…")
        try:
            if sale.qr_trade_no is not None:  # the QR is up: Enter checks whether it was paid
                await self._sold()
                return
            if sale.order is None:
                sale.order = await self.request(
                    "order.create", client_key=sale.client_key, lines=sale.lines
                )
            if sale.order["total_fen"] != sale.total_fen:
                sale.total_fen = sale.order["total_fen"]
            if sale.channel in ("cash", "card"):
                paid = await self.request(
                    "payment.record",
                    order=sale.order["order"],
                    channel=sale.channel,
                    amount_fen=sale.order["total_fen"],
                    key=sale.pay_key,
                )
                if paid["result"] != "captured":
                    self.say("#sale-message", error_text(ScenicError("", code="order_not_pending")))
                    return
                await self._sold()
            else:
                start = await self.request(
                    "payment.start", order=sale.order["order"], channel=sale.channel
                )
                sale.qr_trade_no = start["out_trade_no"]
                until = self._local_time(sale.order["expires_at"])
                self.say("#sale-qr", qr_text(start["qr"]) + f"\n{start['out_trade_no']}")
                self.say(
                    "#sale-message",
                    both(
                        f"请顾客扫码支付 {yuan(start['amount_fen'])}"
                        f"（{CHANNEL_NAMES[sale.channel]}），{until}前有效；按 Enter 立即查询",
                        f"the visitor scans this QR to pay, before {until}; waiting for the "
                        "payment (Enter: check now; or type another payment, e.g. cash)",
                    ),
                )
        except ScenicError as exc:
            self.say("#sale-message", error_text(exc))
            self.query_one("#collect", Button).focus()

    async def _finish_qr_sale(self) -> None:
        try:
            await self._sold()
        except ScenicError as exc:
            self.say("#sale-message", error_text(exc))

    async def _sold(self) -> None:
        sale = self.sale
        order = await self.request("order.get", order=sale.order["order"])
        if order["status"] != "paid":
            self.say(
                "#sale-message",
                both("尚未收到付款，请稍候", "not paid yet; wait, or Enter to check again"),
            )
            return
        receipt = sale_receipt(
            order,
            {p["product"]: p for p in self.catalog["products"]},
            self.catalog["site"],
            self.catalog["timezone"],
            sale.channel,
            self.device,
            tendered_fen=sale.tendered_fen,
        )
        printed = await self._print(receipt)
        change = (
            ""
            if sale.tendered_fen is None
            else f" · 找零 change {yuan(sale.tendered_fen - order['total_fen'])}"
        )
        self.say(
            "#sale-message",
            f"[b green]已售 Sold {order['order']} · {len(order['tickets'])} 张 tickets · "
            f"{yuan(order['total_fen'])}{change}[/]\n{printed}",
        )
        self.say("#sale-qr", "")
        self.say("#sale-confirm", "")
        self.query_one("#collect", Button).disabled = True
        for field in ("#sale-lines", "#sale-pay"):
            self.query_one(field, Input).value = ""
        self.sale = Sale()
        self.query_one("#sale-lines", Input).focus()

    async def _print(self, receipt: Any) -> str:
        self.printed.append(receipt)
        if self.printer is None:
            return "未接打印机 no printer"
        try:
            await self.run_trio(partial(self.printer.print_receipt, receipt))
        except OSError as exc:
            return f"[red]打印失败 printing failed: {exc}[/]"
        return f"已打印 printed ({self.printer.describe()})"

    # -- lookup -------------------------------------------------------------------------

    async def _lookup(self, number: str) -> None:
        try:
            kind, value = lookup_arg(number)
            reply = await self.request("desk.lookup", **{kind: value})
        except EntryError as exc:
            self.say("#lookup-result", f"[red]{exc.zh}\n{exc.en}[/]")
            return
        except ScenicError as exc:
            self.say("#lookup-result", error_text(exc))
            return
        timezone = self.catalog["timezone"] if self.catalog else "UTC"
        self.say("#lookup-result", lookup_text(reply, timezone))

    # -- refunds ------------------------------------------------------------------------

    async def _refund_show(self, order_id: str) -> None:
        try:
            order = await self.request("order.get", order=order_id)
        except ScenicError as exc:
            self.say("#refund-tickets-shown", error_text(exc))
            return
        self.say("#refund-tickets-shown", ticket_rows(order))
        self.refund_plan = {"order": order}
        self.query_one("#refund-tickets", Input).focus()

    async def _refund_plan(self) -> None:
        order_id = self.query_one("#refund-order", Input).value.strip()
        if self.refund_plan is None or self.refund_plan["order"]["order"] != order_id:
            await self._refund_show(order_id)
            if self.refund_plan is None:
                return
        order = self.refund_plan["order"]
        typed = self.query_one("#refund-tickets", Input).value.replace(",", " ").split()
        reason = self.query_one("#refund-reason", Input).value.strip()
        unused = [t for t in order["tickets"] if not t["refunded"] and not t["entries_used"]]
        chosen = typed or [t["ticket"] for t in unused]
        if not reason:
            self.say("#refund-confirm", "[red]请填写退款原因\ntype a reason[/]")
            return
        if not chosen:
            self.say("#refund-confirm", "[red]没有可退的票\nno unused ticket to refund[/]")
            return
        amount = refund_amount(order, chosen)
        self.refund_plan.update(tickets=chosen, reason=reason)
        self.say(
            "#refund-confirm",
            f"[b]退 {len(chosen)} 张，共 {yuan(amount)} · "
            f"refund {len(chosen)} ticket(s), {yuan(amount)}[/]"
            f"\n原因 reason: {reason}\n按 Enter 确认，Esc 返回 · Enter to refund, Esc to go back",
        )
        go = self.query_one("#refund-go", Button)
        go.disabled = False
        go.focus()

    async def _refund_go(self) -> None:
        plan = self.refund_plan
        try:
            order = await self.request(
                "order.refund",
                order=plan["order"]["order"],
                tickets=plan["tickets"],
                reason=plan["reason"],
                key=self.refund_key,
            )
        except ScenicError as exc:
            self.say("#refund-message", error_text(exc))
            return
        refund = next(r for r in reversed(order["refunds"]) if r["reason"] == plan["reason"])
        printed = await self._print(
            refund_slip(order, refund, self.catalog["site"], self.catalog["timezone"], self.device)
        )
        self.say(
            "#refund-message",
            f"[b green]已退款 Refunded {yuan(refund['amount_fen'])} → "
            f"{CHANNEL_NAMES.get(refund['channel'], refund['channel'])} "
            f"({refund['out_refund_no']})[/]"
            f"\n{printed}",
        )
        self.query_one("#refund-go", Button).disabled = True
        self.refund_key = f"r-{secrets.token_hex(8)}"
        self.refund_plan = None
        self.say("#refund-confirm", "")

    # -- the shift ----------------------------------------------------------------------

    async def _shift(self, typed: str) -> None:
        try:
            float_fen = parse_yuan(typed) if typed.strip() else self.float_fen
        except ValueError:
            self.say(
                "#shift-result", "[red]备用金应为金额，如 500\nthe float is an amount, like 500[/]"
            )
            return
        try:
            report = await self.request(
                "counter.shift",
                float_fen=float_fen,
                **{"from": self.shift_started.timestamp()},
            )
        except ScenicError as exc:
            self.say("#shift-result", error_text(exc))
            return
        slip = shift_slip(report, self.catalog["site"], self.catalog["timezone"])
        printed = await self._print(slip)
        self.say("#shift-result", escape(as_text(slip)) + printed)

    # -- rentals ------------------------------------------------------------------------

    async def _pickup(self) -> None:
        voucher = self.query_one("#pickup-voucher", Input).value.strip()
        try:
            labels = read_labels(self.query_one("#pickup-labels", Input).value)
            rental = await self.request("rental.pickup", voucher=voucher, labels=labels)
        except EntryError as exc:
            self.say("#rental-result", f"[red]{exc.zh}\n{exc.en}[/]")
            return
        except ScenicError as exc:
            self.say("#rental-result", error_text(exc))
            return
        units = ", ".join(f"{u['label']} {u['item']}" for u in rental["units"])
        self.say(
            "#rental-result",
            f"[b green]已借出 Handed out {rental['rental']}[/]: {units}\n"
            f"归还时间 due {self._local_time(rental['due_at'])}",
        )
        self.query_one("#return-rental", Input).value = rental["rental"]
        for field in ("#pickup-voucher", "#pickup-labels"):
            self.query_one(field, Input).value = ""

    async def _return(self) -> None:
        rental_id = self.query_one("#return-rental", Input).value.strip()
        try:
            returns = read_returns(self.query_one("#return-units", Input).value)
            rental = await self.request("rental.return", rental=rental_id, returns=returns)
        except EntryError as exc:
            self.say("#rental-result", f"[red]{exc.zh}\n{exc.en}[/]")
            return
        except ScenicError as exc:
            self.say("#rental-result", error_text(exc))
            return
        if rental["settlement"] is None:
            out = [u["label"] for u in rental["units"] if u["back_at"] is None]
            self.say("#rental-result", f"已归还部分 part back; still out: {', '.join(out)}")
            return
        self.say("#rental-result", settlement_text(rental))
        self.query_one("#return-units", Input).value = ""
