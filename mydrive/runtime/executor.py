"""The executor that runs concurrent work, handed in.

The engine asks an ``ExecutorFactory`` for an executor per transfer (``max_workers`` and a
thread name), uses it as a context manager and never keeps a future it does not need. The
product's factory is ``thread_pool`` (real threads: the R replicas of a chunk stream in
parallel). ``inline_executor`` runs each task to its end inside ``submit``, in the caller's
thread: one order of events for one seed, for tests and a simulator. Nothing is kept: a crash
leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class ExecutorFactory(Protocol):
    def __call__(self, *, max_workers: int, name: str) -> Executor:
        """An executor running at most ``max_workers`` tasks at once; ``name`` labels its
        threads, if it has any."""
        ...


def thread_pool(*, max_workers: int, name: str) -> Executor:
    """The product's executor: a pool of ``max_workers`` threads named ``name``."""
    assert max_workers >= 1
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)


class InlineExecutor(Executor):
    """Runs each task at once in the submitting thread; the future is done on return.

    An ``Exception`` from the task is kept in its future, as a pool would; anything else
    (KeyboardInterrupt, SystemExit) propagates to the caller at once.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


def inline_executor(*, max_workers: int, name: str) -> Executor:
    """A factory of ``InlineExecutor``: everything sequential, deterministic."""
    del max_workers, name  # one thread, the caller's
    return InlineExecutor()
