"""A device connection that survives a server killed under it, as a real kiosk's or gate's does.

:class:`ResilientClient` keeps one device connected (reconnecting with a
short jittered backoff when the connection drops) and retries a request
that got no answer: on a lost connection, a reply later than its timeout,
or an answer that says *try again* (:data:`RETRY_CODES`), the same op is
sent again with the same arguments, so the same idempotency key
(``client_key``, ``key``) or ``scan_id``. Nothing may then be applied
twice: that is what the chaos audit checks. A request is given up after
``give_up_s`` without an answer (it raises what its last attempt raised).

Every attempt and every answer is counted in a shared :class:`Tally`,
which also hears each successful reply (``on_success``): the chaos run
uses that for the time from a fault to the first success after it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import trio

from clients.client import Client, ConnectionLost, RemoteError, connect

#: answers that mean "not done, try again" (docs/protocol.md's error codes)
RETRY_CODES = frozenset({"overloaded", "timeout", "internal", "channel_unavailable"})
#: how long one attempt may wait for its reply before it is sent again
ATTEMPT_TIMEOUT_S = 30.0


@attrs.define
class Tally:
    """Requests sent (every attempt), answered (any reply), retried and given up."""

    sent: int = 0
    answered: int = 0
    retried: int = 0
    given_up: int = 0
    reconnects: int = 0
    on_success: Callable[[float], None] | None = None

    def succeeded(self) -> None:
        """One reply with ``ok`` came in now."""
        if self.on_success is not None:
            self.on_success(trio.current_time())


class ResilientClient:
    """One device, connected whenever the server lets it; run :meth:`run` in a nursery.

    ``request`` and ``events`` behave like :class:`~clients.client.Client`'s,
    across reconnections; events pushed while the device was disconnected
    are not seen (as on a real device).
    """

    def __init__(
        self,
        url: str,
        device: str,
        token: str,
        tally: Tally,
        *,
        give_up_s: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        self.url, self.device, self._token = url, device, token
        self.tally = tally
        self.give_up_s = give_up_s
        self._rng = rng or random.Random(device)
        self._client: Client | None = None
        self._up = trio.Event()
        self._events_in, self._events_out = trio.open_memory_channel[tuple[str, dict]](1000)
        self.events_dropped = 0

    async def run(
        self, *, first_connect_s: float = 60.0, task_status=trio.TASK_STATUS_IGNORED
    ) -> None:
        """Stay connected until cancelled; ``task_status.started`` after the first hello.

        Raises what the last attempt raised if no hello succeeds within ``first_connect_s``.
        """
        started = False
        first_deadline = trio.current_time() + first_connect_s
        while True:
            try:
                async with connect(self.url, self.device, self._token, timeout=5.0) as client:
                    self._client = client
                    self._up.set()
                    if not started:
                        started = True
                        task_status.started(self)
                    async for item in client.events():
                        try:
                            self._events_in.send_nowait(item)
                        except trio.WouldBlock:
                            self.events_dropped += 1
            except Exception:
                if not started and trio.current_time() > first_deadline:
                    raise
            finally:
                self._lost(self._client)
            self.tally.reconnects += 1
            await trio.sleep(self._rng.uniform(0.05, 0.3))

    def _lost(self, client: Client | None) -> None:
        """``client``'s connection is gone: requests wait for the next one."""
        if self._client is client:
            self._client = None
            if self._up.is_set():
                self._up = trio.Event()

    async def request(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send ``op`` until it is answered; the ``ok`` map of the answer.

        Raises :class:`~clients.client.RemoteError` for a final error answer,
        and the last attempt's error once ``give_up_s`` has passed unanswered.
        """
        deadline = trio.current_time() + self.give_up_s
        while True:
            client = self._client
            if client is None:
                with trio.move_on_at(deadline):
                    await self._up.wait()
                    continue
                self.tally.given_up += 1
                raise ConnectionLost(f"{op}: no connection for {self.give_up_s:.0f} s")
            self.tally.sent += 1
            try:
                reply = await client.request(op, timeout=min(timeout, ATTEMPT_TIMEOUT_S), **args)
            except (ConnectionLost, trio.TooSlowError) as exc:
                if isinstance(exc, ConnectionLost) and self._client is client:
                    self._lost(client)  # wait for the next connection, do not spin on this one
                if trio.current_time() >= deadline:
                    self.tally.given_up += 1
                    raise
            except RemoteError as exc:
                self.tally.answered += 1
                if exc.code not in RETRY_CODES or trio.current_time() >= deadline:
                    raise
            else:
                self.tally.answered += 1
                self.tally.succeeded()
                return reply
            self.tally.retried += 1
            await trio.sleep(self._rng.uniform(0.05, 0.2))

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Server pushes as ``(event, data)`` pairs, from every connection in turn."""
        async for item in self._events_out:
            yield item
