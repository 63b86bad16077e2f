"""Graceful overload (PROTOCOL 5.11): a validator refuses a client's new task, -32007 with when
to retry, when the tasks already open would take longer to verify than a new one may wait,
instead of accepting a task that would fail at its deadline.

The rule is the validator's own admission policy, not consensus: what peers gossip and what
the journal gives back is admitted as before. It reads the chain only:

- the throughput: tasks verified per second over the last `WINDOW_S` seconds of blocks (the
  `verified` counter of taskStats, read once per new head, timed by this validator's clock);
- the open work: the tasks open at the head plus those waiting in the mempool;
- the time a task may wait: its compute deadline in blocks times the block interval.

A new task is refused when the open work is at `max_open` = throughput x deadline x
`MARGIN` (at least `MIN_OPEN`): the work already admitted then takes the whole margin of a
task's deadline. While nothing has been verified in the window (a new chain, a validator
just started, a network whose nodes are away) `FLOOR` tasks may be open. The cap follows
the load up: while the network is not saturated, the throughput is the open work over its
latency, so the cap stays above the open work as long as tasks are verified within `MARGIN`
of their deadline.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from chain.protocol.errors import Overloaded
from chain.protocol.types import TaskStatus

WINDOW_S = 10.0  # the throughput is measured over this much of the recent past
MARGIN = 0.5  # the share of a task's deadline the open work may take
FLOOR = 64  # the tasks that may be open while no throughput is measured
MIN_OPEN = 16  # the cap never goes below this while tasks are verified


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # this validator's monotonic clock, when it first saw the head
    height: int
    verified: int  # taskStats' verified, after that block


class OverloadGuard:
    """Refuses new tasks past the open work the measured throughput can verify in time."""

    def __init__(
        self,
        deadline_blocks: int,
        block_time_ms: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline_s = deadline_blocks * block_time_ms / 1000
        self._clock = clock
        self._samples: deque[Sample] = deque()

    def needs_head(self, height: int) -> bool:
        """Whether `height` is a head not noted yet."""
        return not self._samples or self._samples[-1].height < height

    def saw_head(self, height: int, task_stats: dict[str, int]) -> None:
        """Note a new head (once per height; the first sighting's time counts)."""
        if not self.needs_head(height):
            return
        now = self._clock()
        self._samples.append(Sample(now, height, task_stats.get(TaskStatus.VERIFIED.value, 0)))
        while len(self._samples) > 2 and now - self._samples[1].at > WINDOW_S:
            self._samples.popleft()

    def verified_per_s(self) -> float:
        """Tasks verified per second over the window; 0 before two heads were seen."""
        if len(self._samples) < 2:
            return 0.0
        first, last = self._samples[0], self._samples[-1]
        span = self._clock() - first.at
        return (last.verified - first.verified) / span if span > 0 else 0.0

    def max_open(self) -> int:
        rate = self.verified_per_s()
        if rate <= 0:
            return FLOOR
        return max(MIN_OPEN, int(rate * self.deadline_s * MARGIN))

    def check(self, open_tasks: int) -> None:
        """Raise Overloaded when one more task would be past the cap."""
        cap = self.max_open()
        if open_tasks < cap:
            return
        rate = self.verified_per_s()
        retry_s = (open_tasks - cap + 1) / rate if rate > 0 else self.deadline_s * MARGIN
        raise Overloaded(open_tasks, cap, rate, max(retry_s, 0.1))
