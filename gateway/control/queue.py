"""A model's waiting requests, in the order workers take them: by priority level (a
lower level first, as Triton's `priority`), oldest first within a level.

Only requests still waiting are held: the pool removes one whose client went
away or whose deadline passed, so `len()` is what `max_queue_size` bounds.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Callable, Generic, Iterator, Protocol, TypeVar


class Queued(Protocol):
    level: int


Q = TypeVar("Q", bound=Queued)


class RequestQueue(Generic[Q]):
    def __init__(self) -> None:
        self._levels: dict[int, deque[Q]] = {}
        self._order: list[int] = []  # the levels that hold requests, ascending
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Q]:
        for level in self._order:
            yield from self._levels[level]

    def push(self, item: Q, first: bool = False) -> None:
        """At the end of its level; `first`: at its front (a request run once already, retried)."""
        line = self._levels.get(item.level)
        if line is None:
            line = self._levels[item.level] = deque()
            bisect.insort(self._order, item.level)
        line.appendleft(item) if first else line.append(item)
        self._count += 1

    def peek(self) -> Q:
        """The next request to serve, left in the queue (IndexError if none waits)."""
        return self._levels[self._order[0]][0]

    def pop(self) -> Q:
        """The next request to serve (IndexError if none waits)."""
        level = self._order[0]
        item = self._levels[level].popleft()
        self._taken(level)
        return item

    def take(self, accept: Callable[[Q], bool], limit: int) -> list[Q]:
        """Up to `limit` of the requests `accept` takes, in serving order (batch-mates)."""
        taken: list[Q] = []
        for level in list(self._order):
            line = self._levels[level]
            kept: deque[Q] = deque()
            while line and len(taken) < limit:
                item = line.popleft()
                (taken if accept(item) else kept).append(item)
            kept.extend(line)
            self._levels[level] = kept
            self._tidy(level)
            if len(taken) == limit:
                break
        self._count -= len(taken)
        return taken

    def remove(self, item: Q) -> bool:
        """Take out a request that no longer waits; False if it is not here (already sent)."""
        line = self._levels.get(item.level)
        if line is None:
            return False
        try:
            line.remove(item)
        except ValueError:
            return False
        self._taken(item.level)
        return True

    def clear(self) -> list[Q]:
        """Every waiting request, in serving order; the queue is empty after."""
        items = list(self)
        self._levels.clear()
        self._order.clear()
        self._count = 0
        return items

    def _taken(self, level: int) -> None:
        self._count -= 1
        self._tidy(level)

    def _tidy(self, level: int) -> None:
        if not self._levels[level]:
            del self._levels[level]
            self._order.remove(level)
