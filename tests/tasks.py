"""Services run beside a test: coroutines started as tasks for the body of an ``async with`` block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def running(*coroutines: Coroutine[Any, Any, object]) -> AsyncIterator[None]:
    """Run ``coroutines`` as tasks for the body of the block, then cancel them and wait until they end.

    A task that fails fails the test: the body is cancelled at once (it would otherwise wait on a service
    that is gone) and the task's exception is raised from the block. A lone failure, the body's own or a
    task's, is raised as itself; several (the body's and a task's, or two tasks') as an ExceptionGroup.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
    except BaseExceptionGroup as failed:
        if len(failed.exceptions) > 1:
            raise
        (error,) = failed.exceptions
    else:
        return
    # Raised outside the handler, so that it keeps its own cause instead of taking the group as context.
    raise error
