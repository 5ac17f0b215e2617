"""A nursery for a context manager's background tasks.

Drivers and simulators are async context managers that run tasks for as long
as the caller's block runs. Yielding from inside ``trio.open_nursery()`` does
that, but with strict exception groups an exception raised by the caller's
block would come out wrapped in an ExceptionGroup. :func:`background_nursery`
unwraps a lone exception so ``async with open_scanner(...)`` is as transparent
as any other context manager.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def background_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose tasks are cancelled when the block ends.

    If exactly one exception comes out (the block's, or a crashed task's), it
    is raised as itself; several are raised as the ExceptionGroup.
    """
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
