"""Background tasks tied to an ``AsyncExitStack`` (key pool refills, cache sweeps, token renewal,
revocation refresh).

A task group entered with ``async with`` around a body hands the body's exception to the group,
which wraps it in an ``ExceptionGroup`` — hiding an S3 or CLI error behind it. Here the group
belongs to an exit stack that its owner closes with ``aclose()`` (no exception), after cancelling
the tasks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup

Task = Callable[[], Coroutine[Any, Any, None]]


async def start_background(stack: AsyncExitStack, *tasks: Task) -> TaskGroup:
    """Start ``tasks`` in a task group that closing ``stack`` cancels and awaits."""
    task_group = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(task_group.cancel_scope.cancel)  # runs before the task group exits
    for task in tasks:
        task_group.start_soon(task)
    return task_group


@asynccontextmanager
async def running(*tasks: Task) -> AsyncIterator[None]:
    """Run ``tasks`` while the body runs; the body's exception propagates unwrapped."""
    stack = AsyncExitStack()
    await start_background(stack, *tasks)
    try:
        yield
    finally:
        await stack.aclose()
