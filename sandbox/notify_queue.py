"""The queue behind every notifier (webhooks, e-mail): events go in on the event bus's
thread without blocking it; one thread of the notifier's own plans what to send for each
event, hands each item to ``dispatch``, and wakes retries when their backoff is over."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from sandbox.events import Event

log = logging.getLogger(__name__)


class Attempted(Protocol):
    attempt: int  # 1 for the first try


T = TypeVar("T", bound=Attempted)


class NotifyQueue(Generic[T]):
    """Subclasses give ``plan`` (an event's items) and ``dispatch`` (send one, or hand it to
    a pool); a failed send calls ``retry`` to try again after the next backoff step."""

    what = "notifications"  # for the log

    def __init__(
        self, wants: Callable[[Event], bool], backoff_s: Sequence[float], thread_name: str
    ) -> None:
        self.backoff_s = tuple(backoff_s)
        self._wants = wants
        self._cond = threading.Condition()
        self._events: deque[Event] = deque()
        self._retries: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)
        self._thread.start()

    def plan(self, event: Event) -> list[T]:
        raise NotImplementedError

    def dispatch(self, item: T) -> None:
        raise NotImplementedError

    def __call__(self, event: Event) -> None:
        if self._wants(event):
            with self._cond:
                self._events.append(event)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)

    def retry(self, item: T) -> bool:
        """Try ``item`` again after its backoff step; False when its tries are used up."""
        if item.attempt > len(self.backoff_s):
            return False
        delay = self.backoff_s[item.attempt - 1]
        item.attempt += 1
        with self._cond:
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), item))
            self._cond.notify()
        return True

    def _due(self) -> bool:
        return bool(self._retries) and self._retries[0][0] <= time.monotonic()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._events and not self._due():
                    wait = self._retries[0][0] - time.monotonic() if self._retries else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                events = list(self._events)
                self._events.clear()
                items: list[T] = []
                while self._due():
                    items.append(heapq.heappop(self._retries)[2])
            for e in events:
                try:
                    items += self.plan(e)
                except Exception:  # a store hiccup costs one event, never the thread
                    log.exception("cannot plan %s for %s", self.what, type(e).__name__)
            for item in items:
                self.dispatch(item)
