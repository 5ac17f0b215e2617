"""The notifier delivers like a real channel: late, out of order, twice, or after retries."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
import trio

from server.channels import signing
from server.channels.adapter import ChannelUnavailable
from server.channels.notifier import Notifier, NotifyPolicy

SECRET = b"s" * 32
EPOCH = 1_795_000_000.0


def trio_clock():
    return datetime.fromtimestamp(EPOCH + trio.current_time(), UTC)


def fields(n=1):
    return {
        "channel": "wechat",
        "out_trade_no": f"T{n}",
        "channel_txn_id": f"42000{n:023d}",
        "amount_fen": 100 * n,
        "paid_at": EPOCH,
    }


class Merchant:
    """A deliver() that records every attempt and answers from a script."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.received = []

    async def deliver(self, body):
        self.received.append((trio.current_time(), body))
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        if answer == "hang":
            await trio.sleep_forever()
        return answer

    def gaps(self):
        times = [when for when, _ in self.received]
        return [round(b - a, 6) for a, b in itertools.pairwise(times)]


async def deliver_all(notifier, *notifications):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        for item in notifications:
            notifier.submit(item)
        with trio.fail_after(100_000):
            await notifier.wait_idle()
        nursery.cancel_scope.cancel()


def notifier_for(merchant, seed=1, **policy):
    return Notifier(
        merchant.deliver, SECRET, trio_clock, NotifyPolicy(**policy), random.Random(seed)
    )


async def test_an_unacknowledged_notification_is_retried_with_backoff_until_acked(
    autojump_clock,
):
    merchant = Merchant([False, False, False, True])
    notifier = notifier_for(merchant, retry_base_s=1.0)
    await deliver_all(notifier, fields())
    assert merchant.gaps() == [1.0, 2.0, 4.0]
    stats = notifier.stats()
    assert (stats.submitted, stats.delivered, stats.attempts, stats.given_up) == (1, 1, 4, 0)
    assert stats.pending == 0


async def test_backoff_is_capped_and_the_notification_is_given_up_after_max_attempts(
    autojump_clock,
):
    merchant = Merchant([False] * 100)
    notifier = notifier_for(merchant, retry_base_s=1.0, retry_max_s=4.0, max_attempts=6)
    await deliver_all(notifier, fields())
    assert merchant.gaps() == [1.0, 2.0, 4.0, 4.0, 4.0]
    stats = notifier.stats()
    assert (stats.attempts, stats.delivered, stats.given_up, stats.pending) == (6, 0, 1, 0)


async def test_an_exception_or_a_timeout_counts_as_not_acknowledged(autojump_clock):
    merchant = Merchant([ConnectionError("reset"), "hang", True])
    notifier = notifier_for(merchant, retry_base_s=1.0, timeout_s=10.0)
    await deliver_all(notifier, fields())
    assert merchant.gaps() == [1.0, 12.0]  # the hung attempt gave up after 10 s, then 2 s
    assert notifier.stats().delivered == 1
    assert notifier.stats().attempts == 3


async def test_a_truthy_answer_that_is_not_true_is_not_an_acknowledgement(autojump_clock):
    merchant = Merchant([{"ok": "maybe"}, True])
    notifier = notifier_for(merchant)
    await deliver_all(notifier, fields())
    assert notifier.stats().attempts == 2


async def test_every_attempt_is_signed_afresh(autojump_clock):
    merchant = Merchant([False, False, True])
    notifier = notifier_for(merchant, retry_base_s=30.0)
    await deliver_all(notifier, fields())
    bodies = [body for _, body in merchant.received]
    assert len({body["nonce"] for body in bodies}) == 3
    assert len({body["signature"] for body in bodies}) == 3
    assert [body["sign_ts"] - bodies[0]["sign_ts"] for body in bodies] == [0.0, 30.0, 90.0]
    for when, body in merchant.received:
        signing.verify(body, SECRET, EPOCH + when)
        assert {k: body[k] for k in fields()} == fields()


async def test_with_duplicate_rate_one_every_notification_arrives_twice(autojump_clock):
    merchant = Merchant()
    notifier = notifier_for(merchant, duplicate_rate=1.0)
    await deliver_all(notifier, *(fields(n) for n in range(5)))
    delivered = [body["out_trade_no"] for _, body in merchant.received]
    assert sorted(delivered) == sorted([f"T{n}" for n in range(5)] * 2)
    assert notifier.stats().duplicates_sent == 5
    assert notifier.stats().delivered == 5
    nonces = [body["nonce"] for _, body in merchant.received]
    assert len(set(nonces)) == 10  # a duplicate is a fresh delivery, not a byte replay


async def test_with_duplicate_rate_zero_each_notification_arrives_once(autojump_clock):
    merchant = Merchant()
    notifier = notifier_for(merchant, duplicate_rate=0.0)
    await deliver_all(notifier, *(fields(n) for n in range(20)))
    assert len(merchant.received) == 20
    assert notifier.stats().duplicates_sent == 0


async def test_random_delays_let_later_notifications_overtake_earlier_ones(autojump_clock):
    merchant = Merchant()
    notifier = notifier_for(merchant, seed=3, max_delay_s=10.0)
    start = trio.current_time()
    await deliver_all(notifier, *(fields(n) for n in range(20)))
    order = [int(body["out_trade_no"][1:]) for _, body in merchant.received]
    assert sorted(order) == list(range(20))
    assert order != list(range(20))
    assert all(0 <= when - start <= 10.0 for when, _ in merchant.received)


async def test_a_full_queue_refuses_rather_than_dropping_silently():
    notifier = Notifier(Merchant().deliver, SECRET, trio_clock, NotifyPolicy(), queue_size=2)
    notifier.submit(fields(1))
    notifier.submit(fields(2))
    assert not notifier.has_room()
    with pytest.raises(ChannelUnavailable):
        notifier.submit(fields(3))
    assert notifier.stats().submitted == 2


async def test_deliveries_in_flight_are_bounded(autojump_clock):
    active = 0
    most = 0

    async def slow_deliver(body):
        nonlocal active, most
        active += 1
        most = max(most, active)
        await trio.sleep(5)
        active -= 1
        return True

    notifier = Notifier(slow_deliver, SECRET, trio_clock, NotifyPolicy(), max_in_flight=3)
    await deliver_all(notifier, *(fields(n) for n in range(10)))
    assert most == 3
    assert notifier.stats().delivered == 10


def test_policies_out_of_range_are_refused():
    with pytest.raises(ValueError):
        NotifyPolicy(duplicate_rate=1.5)
    with pytest.raises(ValueError):
        NotifyPolicy(max_delay_s=-1)
    with pytest.raises(ValueError):
        NotifyPolicy(max_attempts=0)
