"""The actor registry: ordering per key, concurrency across keys, crashes, passivation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.runtime import open_registry
from server.errors import Internal, Overloaded, ScenicError, Timeout


class Journal:
    """What the test actors did, shared by all of them (stands in for their storage)."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, object]] = []
        self.loads: list[str] = []
        self.stored: dict[str, int] = {}
        self.active: set[str] = set()
        self.overlaps = 0


class Counter:
    """A test actor: a counter persisted in the journal, slow enough to interleave."""

    def __init__(self, actor_id: str, journal: Journal) -> None:
        self.actor_id = actor_id
        self.journal = journal
        self.value: int | None = None

    async def load(self) -> None:
        self.journal.loads.append(self.actor_id)
        self.value = self.journal.stored.get(self.actor_id, 0)

    async def handle(self, command):
        if self.actor_id in self.journal.active:
            self.journal.overlaps += 1
        self.journal.active.add(self.actor_id)
        try:
            kind, payload = command
            await trio.sleep(payload if kind == "sleep" else 0.01)
            self.journal.handled.append((self.actor_id, command))
            if kind == "crash":
                self.value = -999  # corrupted in memory, never persisted
                raise RuntimeError("boom")
            if kind == "refuse":
                raise ScenicError("no thanks", code="refused")
            if kind == "add":
                self.value += payload
                self.journal.stored[self.actor_id] = self.value
            return self.value
        finally:
            self.journal.active.discard(self.actor_id)


async def enqueue(nursery, actors, key, command, timeout, answers=None):
    """Ask in a background task; return once the command is in the mailbox.

    ``ask`` puts the command in the mailbox before its first checkpoint, and
    ``nursery.start`` resumes us only after that, so arrival order is ours.
    """

    async def asking(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            reply = await actors.ask(key, command, timeout)
        except ScenicError as exc:
            reply = exc.code
        if answers is not None:
            answers.append(reply)

    await nursery.start(asking)


def registry(journal: Journal, **overrides):
    options = {"mailbox_size": 64, "idle_after_s": 60.0, "drain_timeout_s": 5.0} | overrides
    return open_registry({"counter": lambda actor_id: Counter(actor_id, journal)}, **options)


async def test_messages_to_one_key_run_one_at_a_time_in_arrival_order(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors, trio.open_nursery() as nursery:
        for n in range(20):
            await enqueue(nursery, actors, ("counter", "a"), ("add", n), 10)
    assert [cmd for _, cmd in journal.handled] == [("add", n) for n in range(20)]
    assert journal.overlaps == 0
    assert journal.stored["a"] == sum(range(20))


async def test_different_keys_run_concurrently(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors:
        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            for key in range(10):
                nursery.start_soon(actors.ask, ("counter", str(key)), ("sleep", 1.0), 10)
        assert trio.current_time() - began < 1.5  # ten one-second jobs overlapped
        assert actors.stats().live_actors == 10
        assert actors.stats().live_by_kind == {"counter": 10}


async def test_replies_come_back_to_their_asker(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors:
        assert await actors.ask(("counter", "a"), ("add", 5), 10) == 5
        assert await actors.ask(("counter", "a"), ("add", 2), 10) == 7
        assert await actors.ask(("counter", "b"), ("add", 1), 10) == 1


async def test_a_refusal_reaches_the_asker_and_the_actor_goes_on(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors:
        await actors.ask(("counter", "a"), ("add", 3), 10)
        with pytest.raises(ScenicError) as refused:
            await actors.ask(("counter", "a"), ("refuse", None), 10)
        assert refused.value.code == "refused"
        assert await actors.ask(("counter", "a"), ("get", None), 10) == 3
        assert actors.stats().restarts == 0
        assert journal.loads == ["a"]


async def test_a_crash_fails_that_request_and_the_actor_restarts_from_storage(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors:
        await actors.ask(("counter", "a"), ("add", 3), 10)
        await actors.ask(("counter", "b"), ("add", 1), 10)
        with pytest.raises(Internal):
            await actors.ask(("counter", "a"), ("crash", None), 10)
        # The corrupted in-memory value is gone: the new instance loaded what was stored.
        assert await actors.ask(("counter", "a"), ("get", None), 10) == 3
        assert await actors.ask(("counter", "b"), ("get", None), 10) == 1
        assert actors.stats().restarts == 1
        assert journal.loads == ["a", "b", "a"]


async def test_messages_queued_behind_a_crash_are_served_by_the_restarted_actor(autojump_clock):
    journal = Journal()
    answers = []
    async with registry(journal) as actors, trio.open_nursery() as nursery:
        for command in [("add", 1), ("crash", None), ("add", 10)]:
            await enqueue(nursery, actors, ("counter", "a"), command, 10, answers)
    assert answers == [1, "internal", 11]


async def test_idle_actors_are_passivated_and_come_back_loaded(autojump_clock):
    journal = Journal()
    async with registry(journal, idle_after_s=30.0) as actors:
        await actors.ask(("counter", "a"), ("add", 4), 10)
        await trio.sleep(20)
        assert actors.is_live(("counter", "a"))
        await trio.sleep(20)
        assert not actors.is_live(("counter", "a"))
        assert actors.stats().passivations == 1
        assert actors.stats().live_actors == 0
        assert await actors.ask(("counter", "a"), ("add", 1), 10) == 5
        assert journal.loads == ["a", "a"]


async def test_a_slow_actor_times_out_and_the_queued_command_is_skipped(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors:
        async with trio.open_nursery() as nursery:
            await enqueue(nursery, actors, ("counter", "a"), ("sleep", 5.0), 10)
            with pytest.raises(Timeout):
                await actors.ask(("counter", "a"), ("add", 100), 1)
        assert await actors.ask(("counter", "a"), ("get", None), 10) == 0


async def test_a_full_mailbox_answers_overloaded(autojump_clock):
    journal = Journal()
    async with registry(journal, mailbox_size=2) as actors, trio.open_nursery() as nursery:
        for _ in range(3):  # one being handled, two queued
            await enqueue(nursery, actors, ("counter", "a"), ("sleep", 1.0), 10)
            await trio.testing.wait_all_tasks_blocked()
        assert actors.stats().mailbox_depth == 2
        with pytest.raises(Overloaded):
            await actors.ask(("counter", "a"), ("get", None), 10)


async def test_shutdown_drains_queued_messages_then_refuses_new_ones(autojump_clock):
    journal = Journal()
    async with trio.open_nursery() as nursery:
        async with registry(journal, drain_timeout_s=60) as actors:
            for n in range(5):
                await enqueue(nursery, actors, ("counter", "a"), ("add", n), 100)
        assert journal.stored["a"] == sum(range(5))
        with pytest.raises(Overloaded):
            await actors.ask(("counter", "a"), ("get", None), 10)


async def test_shutdown_past_its_bound_cancels_and_answers_the_rest(autojump_clock):
    journal = Journal()
    answers = []
    async with trio.open_nursery() as nursery:
        async with registry(journal, drain_timeout_s=2) as actors:
            await enqueue(nursery, actors, ("counter", "a"), ("sleep", 100.0), 1000, answers)
            await enqueue(nursery, actors, ("counter", "a"), ("add", 1), 1000, answers)
            began = trio.current_time()
    assert 2 <= trio.current_time() - began < 3
    assert answers == ["overloaded", "overloaded"]
    assert "a" not in journal.stored


async def test_tell_delivers_in_order_without_waiting_and_survives_failures(autojump_clock):
    journal = Journal()
    async with registry(journal) as actors:
        actors.tell(("counter", "a"), ("add", 1))
        actors.tell(("counter", "a"), ("crash", None))  # logged; the actor restarts
        actors.tell(("counter", "a"), ("add", 2))
        assert journal.handled == []  # nothing ran yet: tell does not wait
        assert await actors.ask(("counter", "a"), ("get", None), 10) == 3
    assert [cmd for _, cmd in journal.handled] == [
        ("add", 1),
        ("crash", None),
        ("add", 2),
        ("get", None),
    ]


async def test_a_vacant_actor_leaves_memory_at_once(autojump_clock):
    class Nobody(Counter):
        vacant = True

    journal = Journal()
    async with open_registry(
        {"nobody": lambda actor_id: Nobody(actor_id, journal)},
        mailbox_size=8,
        idle_after_s=300,
        drain_timeout_s=5,
    ) as actors:
        await actors.ask(("nobody", "x"), ("get", None), 10)
        await trio.sleep(0.001)
        assert not actors.is_live(("nobody", "x"))
        assert actors.stats().passivations == 1


def inline_registry(journal: Journal, **overrides):
    options = {"mailbox_size": 64, "idle_after_s": 60.0, "drain_timeout_s": 5.0} | overrides
    return open_registry(
        {"counter": lambda actor_id: Counter(actor_id, journal)},
        inline_kinds=frozenset({"counter"}),
        **options,
    )


async def test_inline_actors_take_one_key_one_at_a_time_in_arrival_order(autojump_clock):
    journal = Journal()
    async with inline_registry(journal) as actors, trio.open_nursery() as nursery:
        for n in range(20):
            await enqueue(nursery, actors, ("counter", "a"), ("add", n), 10)
        assert actors.is_live(("counter", "a"))
    assert [cmd for _, cmd in journal.handled] == [("add", n) for n in range(20)]
    assert journal.overlaps == 0
    assert journal.stored["a"] == sum(range(20))
    assert not actors.is_live(("counter", "a"))  # nobody waits: nothing kept in memory


async def test_inline_actors_of_different_keys_run_concurrently(autojump_clock):
    journal = Journal()
    async with inline_registry(journal) as actors:
        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            for key in range(10):
                nursery.start_soon(actors.ask, ("counter", str(key)), ("sleep", 1.0), 10)
        assert trio.current_time() - began < 1.5


async def test_inline_actors_refuse_crash_and_time_out_like_the_others(autojump_clock):
    journal = Journal()
    async with inline_registry(journal) as actors, trio.open_nursery() as nursery:
        await actors.ask(("counter", "a"), ("add", 3), 10)
        with pytest.raises(ScenicError) as refused:
            await actors.ask(("counter", "a"), ("refuse", None), 10)
        assert refused.value.code == "refused"
        with pytest.raises(Internal):
            await actors.ask(("counter", "a"), ("crash", None), 10)
        assert await actors.ask(("counter", "a"), ("get", None), 10) == 3  # loaded afresh
        assert actors.stats().restarts == 1
        await enqueue(nursery, actors, ("counter", "a"), ("sleep", 5.0), 10)
        with pytest.raises(Timeout):
            await actors.ask(("counter", "a"), ("add", 100), 1)
        with pytest.raises(TypeError):
            actors.tell(("counter", "a"), ("add", 1))
    assert journal.stored["a"] == 3


async def test_a_registry_made_before_it_runs_refuses_asks_until_then_and_runs_once():
    from actors.errors import Overloaded
    from actors.runtime import Registry

    class Echo:
        async def load(self):
            pass

        async def handle(self, command):
            return command

    registry = Registry(mailbox_size=4, idle_after_s=1)
    with pytest.raises(Overloaded):
        await registry.ask(("echo", 1), "early", 1)
    async with registry.running({"echo": lambda _: Echo()}, drain_timeout_s=1):
        assert await registry.ask(("echo", 1), "hi", 1) == "hi"
    with pytest.raises(Overloaded):
        await registry.ask(("echo", 1), "late", 1)
    with pytest.raises(RuntimeError):
        async with registry.running({}, drain_timeout_s=1):
            pass
