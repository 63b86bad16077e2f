"""Graceful overload (PROTOCOL 5.11): a validator refuses a client's new task, -32007 with when
to retry, when the tasks already open could not all be verified before their deadline,
instead of accepting a task that would fail at its deadline.

The rule is the validator's own admission policy, not consensus: what peers gossip and what
the journal gives back is admitted as before. It reads the chain only, at each new head it
sees:

- the open work: the tasks open at the head plus those waiting in the mempool;
- how long the open tasks have been open: those created more than `SLOW` of the compute
  deadline ago are slow, more than `LATE` of it late (the ledger keeps the open tasks in the
  order they were created, so counting them costs their number);
- the throughput: tasks verified per second over the last `WINDOW_S` seconds of blocks (the
  `verified` counter of taskStats, timed by this validator's clock), for `retryAfterMs`.

The cap on the open work is a controller, additive and multiplicative as TCP's window: it
starts at `FLOOR`; at a head where more tasks are late than a few (`SLACK`, or `SLACK_SHARE`
of the open work: a task may be slow for reasons of its own, a model no node serves, a node
that went away) it falls to `BACKOFF` of the open work; otherwise, while the open work is
near the cap (`NEAR`), it grows, by `GROWTH` of itself while no more than a few tasks are
slow and by `STEP` once some are. So it rises while the network verifies what it takes well
within the deadline, and holds near the open work it can verify in `LATE` of the deadline.
A cap that followed the throughput measured under its own admissions (the first version of
this rule) settled at a third of the network's capacity at four times its load.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from chain.protocol.errors import Overloaded

WINDOW_S = 10.0  # the throughput is measured over this much of the recent past
FLOOR = 64  # the cap at the start
MIN_OPEN = 16  # the cap never goes below this
SLOW = 0.4  # of the compute deadline: a task open longer is slow
LATE = 0.6  # ... and late
SLACK = 8  # slow or late tasks that are not yet a sign (or SLACK_SHARE of the open work)
SLACK_SHARE = 0.05
NEAR = 0.75  # the cap grows only while the open work is at least this share of it
GROWTH = 0.125  # the cap's growth at a head while no more than SLACK tasks are slow
STEP = 4  # ... and while more are (at least this, also above)
BACKOFF = 0.8  # the cap at a head with late tasks: this share of the open work
CEILING = 1 << 20
RETRY_SHARE = 0.5  # of the deadline: the retry asked while no throughput is measured


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # this validator's monotonic clock, when it first saw the head
    height: int
    verified: int  # taskStats' verified, after that block


class OverloadGuard:
    """Refuses new tasks past a cap on the open work that rises while the network verifies
    in time and falls once tasks are late."""

    def __init__(
        self,
        deadline_blocks: int,
        block_time_ms: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline_s = deadline_blocks * block_time_ms / 1000
        self.slow_blocks = max(1, round(deadline_blocks * SLOW))
        self.late_blocks = max(self.slow_blocks, round(deadline_blocks * LATE))
        self.cap = FLOOR
        self._clock = clock
        self._samples: deque[Sample] = deque()

    def needs_head(self, height: int) -> bool:
        """Whether `height` is a head not noted yet."""
        return not self._samples or self._samples[-1].height < height

    def saw_head(self, height: int, verified: int, open_tasks: int, slow: int, late: int) -> None:
        """Note a new head (once per height; the first sighting's time counts): taskStats'
        `verified` after it, the open work, and how many open tasks are slow and late."""
        if not self.needs_head(height):
            return
        now = self._clock()
        self._samples.append(Sample(now, height, verified))
        while len(self._samples) > 2 and now - self._samples[1].at > WINDOW_S:
            self._samples.popleft()
        allowance = max(SLACK, SLACK_SHARE * open_tasks)
        if late > allowance:
            self.cap = max(MIN_OPEN, int(min(self.cap, open_tasks) * BACKOFF))
        elif open_tasks >= self.cap * NEAR:
            grown = STEP if slow > allowance else max(STEP, int(self.cap * GROWTH))
            self.cap = min(CEILING, self.cap + grown)

    def verified_per_s(self) -> float:
        """Tasks verified per second over the window; 0 before two heads were seen."""
        if len(self._samples) < 2:
            return 0.0
        first, last = self._samples[0], self._samples[-1]
        span = self._clock() - first.at
        return (last.verified - first.verified) / span if span > 0 else 0.0

    def max_open(self) -> int:
        return self.cap

    def check(self, open_tasks: int) -> None:
        """Raise Overloaded when one more task would be past the cap."""
        cap = self.cap
        if open_tasks < cap:
            return
        rate = self.verified_per_s()
        retry_s = (open_tasks - cap + 1) / rate if rate > 0 else self.deadline_s * RETRY_SHARE
        raise Overloaded(open_tasks, cap, rate, max(retry_s, 0.1))
