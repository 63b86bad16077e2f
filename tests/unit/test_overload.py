"""The overload guard (PROTOCOL 5.11): its cap, a controller that grows while the open work
is near it and no task is slow, grows slowly once some are, and falls once tasks are late;
the throughput it measures for `retryAfterMs`; and its refusal. A hypothesis model writes
the rule again and follows the guard over random heads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.node.overload import (
    BACKOFF,
    CEILING,
    FLOOR,
    GROWTH,
    MIN_OPEN,
    NEAR,
    SLACK,
    SLACK_SHARE,
    STEP,
    WINDOW_S,
    OverloadGuard,
)
from chain.protocol.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(deadline_blocks: int = 20, block_time_ms: int = 200) -> tuple[OverloadGuard, Clock]:
    clock = Clock()
    return OverloadGuard(deadline_blocks, block_time_ms, clock=clock), clock


def test_the_cap_starts_at_the_floor_and_refuses_there() -> None:
    g, _ = guard()
    assert g.verified_per_s() == 0 and g.max_open() == FLOOR
    g.check(FLOOR - 1)
    with pytest.raises(Overloaded) as info:
        g.check(FLOOR)
    data = info.value.data()
    assert data["limit"] == "openTasks" and data["openTasks"] == FLOOR
    assert data["maxOpenTasks"] == FLOOR and data["retryAfterMs"] > 0 and data["retry"] is True
    assert f"at most {FLOOR}" in data["reason"]


def test_slow_and_late_are_shares_of_the_compute_deadline() -> None:
    g, _ = guard(deadline_blocks=20)
    assert (g.slow_blocks, g.late_blocks) == (8, 12)
    g, _ = guard(deadline_blocks=1)
    assert (g.slow_blocks, g.late_blocks) == (1, 1)


def test_the_cap_grows_while_the_open_work_is_near_it_and_nothing_is_slow() -> None:
    g, _ = guard()
    g.saw_head(1, 0, open_tasks=FLOOR, slow=0, late=0)
    assert g.max_open() == FLOOR + int(FLOOR * GROWTH)
    cap = g.max_open()
    g.saw_head(2, 0, open_tasks=int(cap * NEAR) - 1, slow=0, late=0)  # not near: it holds
    assert g.max_open() == cap
    g.saw_head(3, 0, open_tasks=cap, slow=SLACK + 1, late=0)  # some are slow: a step
    assert g.max_open() == cap + STEP


def test_a_few_late_tasks_are_not_a_sign() -> None:
    g, _ = guard()
    g.saw_head(1, 0, open_tasks=FLOOR, slow=SLACK, late=SLACK)  # a model no node serves
    assert g.max_open() > FLOOR


def test_late_tasks_bring_the_cap_down_to_a_share_of_the_open_work() -> None:
    g, _ = guard()
    for height in range(1, 30):  # the cap grows to well above the floor
        g.saw_head(height, 0, open_tasks=g.max_open(), slow=0, late=0)
    high = g.max_open()
    assert high > 4 * FLOOR
    g.saw_head(30, 0, open_tasks=high // 2, slow=high // 2, late=high // 4)
    assert g.max_open() == int(high // 2 * BACKOFF)
    for height in range(31, 60):  # it keeps falling while they are late, to the minimum
        g.saw_head(height, 0, open_tasks=g.max_open(), slow=100, late=100)
    assert g.max_open() == MIN_OPEN


def test_the_retry_is_the_time_to_verify_the_tasks_past_the_cap() -> None:
    g, clock = guard(deadline_blocks=20, block_time_ms=200)
    for height in range(1, 52):  # 100 verified per second for 10 s, nothing near the cap
        g.saw_head(height, 20 * height, open_tasks=0, slow=0, late=0)
        clock.now += 0.2
    assert g.verified_per_s() == pytest.approx(100, rel=0.05)
    assert g.max_open() == FLOOR
    with pytest.raises(Overloaded) as info:
        g.check(FLOOR + 50)
    assert info.value.retry_after_s == pytest.approx(51 / g.verified_per_s())


def test_a_height_seen_again_is_not_a_new_sample() -> None:
    g, clock = guard()
    g.saw_head(1, 0, 0, 0, 0)
    clock.now += 1
    g.saw_head(2, 10, FLOOR, 0, 0)
    clock.now += 5
    g.saw_head(2, 99, FLOOR, 0, 0)  # the same head: its first sighting counts, once
    assert g.verified_per_s() == pytest.approx(10 / 6)
    assert g.max_open() == FLOOR + int(FLOOR * GROWTH)


heads = st.lists(
    st.tuples(
        st.floats(0.01, 3.0),  # seconds until the head is seen
        st.integers(0, 50),  # tasks verified in it
        st.integers(0, 5000),  # the open work
        st.integers(0, 400),  # slow tasks
        st.integers(0, 400),  # late tasks (capped at slow below)
    ),
    max_size=80,
)


def model_rate(seen: list[tuple[float, int]], now: float) -> float:
    """PROTOCOL 5.11's throughput, written again: the samples of the window (the oldest one
    kept while the next is still within WINDOW_S), verified over the time since the first."""
    kept = list(seen)
    while len(kept) > 2 and now - kept[1][0] > WINDOW_S:
        kept.pop(0)
    if len(kept) < 2 or now <= kept[0][0]:
        return 0.0
    return (kept[-1][1] - kept[0][1]) / (now - kept[0][0])


def model_cap(cap: int, open_tasks: int, slow: int, late: int) -> int:
    """PROTOCOL 5.11's cap after a head, written again from its text."""
    allowance = max(SLACK, SLACK_SHARE * open_tasks)
    if late > allowance:
        return max(MIN_OPEN, int(min(cap, open_tasks) * BACKOFF))
    if open_tasks >= NEAR * cap:
        return min(CEILING, cap + (STEP if slow > allowance else max(STEP, int(cap * GROWTH))))
    return cap


@given(heads=heads, open_tasks=st.integers(0, 10_000), deadline=st.integers(1, 100))
def test_the_guard_follows_the_rule(
    heads: list[tuple[float, int, int, int, int]], open_tasks: int, deadline: int
) -> None:
    g, clock = guard(deadline_blocks=deadline, block_time_ms=500)
    verified, seen, cap = 0, [], FLOOR
    for height, (dt, more, work, slow, late) in enumerate(heads, start=1):
        clock.now += dt
        verified += more
        late = min(late, slow)
        g.saw_head(height, verified, work, slow, late)
        seen.append((clock.now, verified))
        cap = model_cap(cap, work, slow, late)
        assert g.max_open() == cap
        assert MIN_OPEN <= cap <= CEILING
    rate = model_rate(seen, clock.now)
    assert g.verified_per_s() == pytest.approx(rate)
    if open_tasks < cap:
        g.check(open_tasks)
    else:
        with pytest.raises(Overloaded) as info:
            g.check(open_tasks)
        retry = (open_tasks - cap + 1) / rate if rate > 0 else deadline * 0.5 * 0.5
        assert info.value.retry_after_s == pytest.approx(max(retry, 0.1))
