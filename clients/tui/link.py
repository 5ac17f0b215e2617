"""A connection for a screen: reconnects with backoff, bounds every request, reports its state.

A kiosk or counter must never hang and never show a traceback: when the
server restarts or the network drops, :class:`Link` reconnects by itself
(after 0.5 s, then 1, 2, 4, ... up to 15 s between attempts: see
:func:`backoff_delay`), and :attr:`Link.state` says what is happening in a
form a status bar can show, with the seconds until the next attempt and a
way to try now (:meth:`Link.retry_now`). A refused device
(``bad_credentials``) is not retried by itself: that needs a person, so the
state is ``failed`` until :meth:`Link.retry_now`.

::

    link = Link(url, "kiosk-01", token, on_state=show, on_event=handle)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        catalog = await link.request("catalog.list")   # waits for the connection, 10 s at most

:meth:`Link.request` gives each request one deadline covering the wait for a
connection and for the reply. It raises :class:`clients.client.RemoteError`
for the server's refusal, :class:`NoReply` (code ``no_reply``) when the
deadline passes, and :class:`LinkDown` (code ``connection_lost``, or the
failure's code such as ``bad_credentials``) when the connection is lost
with the request in flight or the link has failed. After ``no_reply`` or
``connection_lost`` the request may or may not have run: retry it with the
same idempotency key (``client_key``, ``key``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Literal

import attrs
import trio

from clients.client import Client, ConnectionLost, RemoteError, connect
from server.errors import ScenicError

__all__ = ["Link", "LinkDown", "LinkState", "NoReply", "backoff_delay"]

log = logging.getLogger("scenic.tui.link")

Status = Literal["connecting", "connected", "reconnecting", "failed"]


class NoReply(ScenicError):
    """No reply within the request's timeout; it may or may not have run."""

    code = "no_reply"


class LinkDown(ScenicError):
    """The connection was lost with the request in flight, or the link has failed."""

    code = "connection_lost"


@attrs.frozen
class LinkState:
    """What the link is doing, for a status bar.

    ``status``: ``connecting`` (the first attempt), ``connected``,
    ``reconnecting`` (the last attempt failed or the connection dropped; the
    next attempt is ``retry_in_s`` seconds after the state was reported) or
    ``failed`` (refused: a person must act; no attempt until
    :meth:`Link.retry_now`). ``code`` and ``reason`` say why it is not
    connected (an error code such as ``bad_credentials`` or
    ``connection_lost``, and the underlying words); ``attempt`` counts the
    failed attempts since the last success.
    """

    status: Status
    code: str | None = None
    reason: str | None = None
    attempt: int = 0
    retry_in_s: float | None = None


def backoff_delay(attempt: int, *, base_s: float = 0.5, cap_s: float = 15.0) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1 for the first retry).

    ``base_s`` doubled for each failure before it, never more than ``cap_s``:
    0.5, 1, 2, 4, 8, 15, 15, ... with the defaults. Raises ``ValueError`` for
    an attempt below 1.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if attempt > 64:
        return cap_s
    return min(cap_s, base_s * 2 ** (attempt - 1))


class Link:
    """One device's connection to the server, kept up by :meth:`run`.

    ``on_state(LinkState)`` is called in trio on every change of
    :attr:`state`; ``on_event(event, data)`` for every server push. Both must
    not block (post to the UI and return). ``ping_every_s``: a ping is sent
    this often and a connection that does not answer it within
    ``request_timeout_s`` is dropped and reconnected, so a silent network is
    noticed too.
    """

    def __init__(
        self,
        url: str,
        device: str,
        token: str,
        *,
        on_state: Callable[[LinkState], None] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        ping_every_s: float = 5.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 15.0,
    ) -> None:
        self.url, self.device, self._token = url, device, token
        self._on_state = on_state or (lambda state: None)
        self._on_event = on_event or (lambda event, data: None)
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.ping_every_s = ping_every_s
        self._backoff = {"base_s": backoff_base_s, "cap_s": backoff_cap_s}
        self.state = LinkState("connecting")
        self._client: Client | None = None
        self._changed = trio.Event()
        self._retry = trio.Event()

    @property
    def connected(self) -> bool:
        """True while a hello-ed connection is open."""
        return self._client is not None

    async def run(self) -> None:
        """Connect and stay connected until cancelled, reconnecting with backoff."""
        attempt = 0
        while True:
            code, reason = await self._one_connection()
            if self.state.status == "connected":
                attempt = 0  # it was up: back off from the start
            attempt += 1
            if code == "bad_credentials":
                self._set(LinkState("failed", code, reason, attempt))
                await self._retry.wait()
            else:
                delay = backoff_delay(attempt, **self._backoff)
                self._set(LinkState("reconnecting", code, reason, attempt, delay))
                with trio.move_on_after(delay):
                    await self._retry.wait()
            self._retry = trio.Event()
            self._set(LinkState("reconnecting", code, reason, attempt, 0.0))

    def retry_now(self) -> None:
        """Make the next connection attempt now (the status bar's retry)."""
        self._retry.set()

    async def drop(self) -> None:
        """Close the current connection (it will reconnect): for a reset key and for tests."""
        client = self._client
        if client is not None:
            await client.ws.aclose()

    async def request(self, op: str, *, timeout: float | None = None, **args: Any) -> dict:
        """Send ``op`` with ``args`` once connected and return the reply's ``ok`` map.

        ``timeout`` (default :attr:`request_timeout_s`) bounds the whole call.
        Raises :class:`RemoteError`, :class:`NoReply` or :class:`LinkDown`
        (see the module's docstring). Never resends by itself.
        """
        timeout = self.request_timeout_s if timeout is None else timeout
        with trio.move_on_after(timeout):
            while self._client is None:
                if self.state.status == "failed":
                    raise LinkDown(self.state.reason or "refused", code=self.state.code)
                await self._changed.wait()
            try:
                return await self._client.request(op, timeout=math.inf, **args)
            except ConnectionLost as exc:
                raise LinkDown(str(exc)) from None
        raise NoReply(f"no reply to {op} within {timeout:g} s")

    async def _one_connection(self) -> tuple[str | None, str]:
        """Run one connection until it ends; return why (code, reason) it ended."""
        try:
            async with connect(
                self.url, self.device, self._token, timeout=self.connect_timeout_s
            ) as client:
                self._client = client
                self._set(LinkState("connected"))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeat, client, nursery.cancel_scope)
                    async for event, data in client.events():
                        self._on_event(event, data)
                    nursery.cancel_scope.cancel()
                return "connection_lost", "the server closed the connection"
        except RemoteError as exc:
            return exc.code, exc.message
        except ConnectionLost as exc:
            return "connection_lost", exc.message
        except trio.TooSlowError:
            return "no_reply", f"no answer from {self.url} within {self.connect_timeout_s:g} s"
        except OSError as exc:
            return "connection_lost", f"cannot reach {self.url}: {exc.strerror or exc}"
        except Exception as exc:  # trio_websocket's handshake and rejection errors, among others
            log.info("link.connect_failed", exc_info=True)
            return "connection_lost", f"cannot connect to {self.url}: {exc}"
        finally:
            if self._client is not None:
                self._client = None
                self._changed.set()
                self._changed = trio.Event()

    async def _heartbeat(self, client: Client, scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self.ping_every_s)
            try:
                await client.request("ping", timeout=self.request_timeout_s)
            except (ConnectionLost, trio.TooSlowError):
                await client.ws.aclose()
                return

    def _set(self, state: LinkState) -> None:
        self.state = state
        self._changed.set()
        self._changed = trio.Event()
        self._on_state(state)
