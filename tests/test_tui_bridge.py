"""trio in guest mode inside a textual App: calls both ways, errors surface, unmount stops it.

pytest-trio owns async tests, so each test here is a plain function running
its own asyncio loop (textual's) with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio.lowlevel
from textual.widgets import Static

from clients.tui.bridge import TrioApp, TrioNotRunning


class Echo(TrioApp):
    """An App whose trio side counts ticks and records how it ended."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        super().__init__()
        self.fail_with = fail_with
        self.trio_ended_by: str | None = None

    def compose(self):
        yield Static("", id="out")

    async def trio_main(self) -> None:
        if self.fail_with is not None:
            await trio.sleep(0.01)
            raise self.fail_with
        self.to_ui(self.query_one("#out").update, "hello from trio")


async def add_in_trio(a: int, b: int) -> tuple[int, bool]:
    await trio.sleep(0.01)
    return a + b, trio.lowlevel.current_task() is not None


def test_a_handler_runs_a_trio_coroutine_and_gets_its_result():
    async def main() -> None:
        app = Echo()
        async with app.run_test() as pilot:
            assert await app.run_trio(add_in_trio, 2, 3) == (5, True)
            await pilot.pause(0.05)
            assert str(app.query_one("#out").render()) == "hello from trio"

    asyncio.run(main())


def test_a_trio_exception_is_raised_in_the_caller():
    async def boom() -> None:
        await trio.lowlevel.checkpoint()
        raise LookupError("no such thing")

    async def main() -> None:
        app = Echo()
        async with app.run_test():
            with pytest.raises(LookupError, match="no such thing"):
                await app.run_trio(boom)
            assert await app.run_trio(add_in_trio, 1, 1) == (2, True)  # the run goes on

    asyncio.run(main())


def test_an_exception_escaping_trio_main_ends_the_app_and_reaches_the_pilot():
    async def main() -> None:
        app = Echo(fail_with=RuntimeError("the trio side broke"))
        async with app.run_test() as pilot:
            await pilot.pause(0.3)

    with pytest.raises(RuntimeError, match="the trio side broke"):
        asyncio.run(main())


def test_cancelling_the_asyncio_caller_cancels_the_trio_call():
    seen: list[str] = []

    async def slow() -> None:
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            seen.append("cancelled in trio")
            raise

    async def main() -> None:
        app = Echo()
        async with app.run_test() as pilot:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(app.run_trio(slow), 0.1)
            await pilot.pause(0.1)
            assert seen == ["cancelled in trio"]

    asyncio.run(main())


def test_unmount_cancels_the_trio_tasks_and_later_calls_are_refused():
    seen: list[str] = []

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            seen.append("trio task ended")

    async def main() -> Echo:
        app = Echo()
        async with app.run_test() as pilot:
            task = asyncio.ensure_future(app.run_trio(forever))
            await pilot.pause(0.05)
        assert seen == ["trio task ended"]
        assert task.cancelled()
        with pytest.raises(TrioNotRunning):
            await app.run_trio(add_in_trio, 1, 2)
        return app

    asyncio.run(main())
