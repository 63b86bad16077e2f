"""The overload guard (PROTOCOL 5.11): its cap from the measured throughput, the floor while
nothing is verified, and its refusal, as a hypothesis model over heads seen at given times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.node.overload import FLOOR, MARGIN, MIN_OPEN, WINDOW_S, OverloadGuard
from chain.protocol.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(deadline_blocks: int = 20, block_time_ms: int = 200) -> tuple[OverloadGuard, Clock]:
    clock = Clock()
    return OverloadGuard(deadline_blocks, block_time_ms, clock=clock), clock


def test_nothing_verified_allows_the_floor() -> None:
    g, _ = guard()
    assert g.verified_per_s() == 0 and g.max_open() == FLOOR
    g.check(FLOOR - 1)
    with pytest.raises(Overloaded) as info:
        g.check(FLOOR)
    data = info.value.data()
    assert data["limit"] == "openTasks" and data["openTasks"] == FLOOR
    assert data["maxOpenTasks"] == FLOOR and data["retryAfterMs"] > 0 and data["retry"] is True


def test_the_cap_is_the_work_verified_in_the_deadlines_margin() -> None:
    g, clock = guard(deadline_blocks=20, block_time_ms=200)  # a 4 s deadline
    for height in range(1, 52):  # 100 verified per second for 10 s
        g.saw_head(height, {"verified": 20 * height})
        clock.now += 0.2
    assert g.verified_per_s() == pytest.approx(100, rel=0.05)
    assert g.max_open() == pytest.approx(100 * 4 * MARGIN, rel=0.05)
    with pytest.raises(Overloaded) as info:
        g.check(g.max_open() + 50)
    assert info.value.retry_after_s == pytest.approx(51 / g.verified_per_s())


def test_a_height_seen_again_is_not_a_new_sample() -> None:
    g, clock = guard()
    g.saw_head(1, {"verified": 0})
    clock.now += 1
    g.saw_head(2, {"verified": 10})
    clock.now += 5
    g.saw_head(2, {"verified": 99})  # the same head: its first sighting counts
    assert g.verified_per_s() == pytest.approx(10 / 6)


steps = st.lists(st.tuples(st.floats(0.01, 3.0), st.integers(0, 50)), min_size=0, max_size=60)


def model_rate(seen: list[tuple[float, int]], now: float) -> float:
    """PROTOCOL 5.11's throughput, written again: the samples of the window (the oldest one
    kept while the next is still within WINDOW_S), verified over the time since the first."""
    kept = list(seen)
    while len(kept) > 2 and now - kept[1][0] > WINDOW_S:
        kept.pop(0)
    if len(kept) < 2 or now <= kept[0][0]:
        return 0.0
    return (kept[-1][1] - kept[0][1]) / (now - kept[0][0])


@given(steps=steps, open_tasks=st.integers(0, 10_000), deadline=st.integers(1, 100))
def test_the_guard_refuses_exactly_at_its_cap(
    steps: list[tuple[float, int]], open_tasks: int, deadline: int
) -> None:
    g, clock = guard(deadline_blocks=deadline, block_time_ms=500)
    verified, seen = 0, []
    for height, (dt, more) in enumerate(steps, start=1):
        clock.now += dt
        verified += more
        g.saw_head(height, {"verified": verified})
        seen.append((clock.now, verified))
    rate = model_rate(seen, clock.now)
    assert g.verified_per_s() == pytest.approx(rate)
    deadline_s = deadline * 0.5
    cap = (
        FLOOR
        if g.verified_per_s() <= 0
        else max(MIN_OPEN, int(g.verified_per_s() * deadline_s * MARGIN))
    )
    assert g.max_open() == cap
    if open_tasks < cap:
        g.check(open_tasks)
    else:
        with pytest.raises(Overloaded) as info:
            g.check(open_tasks)
        assert info.value.retry_after_s > 0
