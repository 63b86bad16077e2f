"""bench.capacity's figures from its runs: which steps kept up, the knee, the capacity, the
overload run's failed share, and how the report renders them (in-process: the runs are
reports of the shape `bench.e2e.end_to_end` writes)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import capacity, run


def step(
    offered: float,
    verified: float,
    *,
    failed: int = 0,
    p50: float | None = 500.0,
    bound: float | None = 900.0,
    interval: float = 210.0,
) -> dict[str, Any]:
    return {
        "offeredPerS": offered,
        "verifiedPerS": verified,
        "accepted": int(offered * 20),
        "failed": failed,
        "undecided": 0,
        "latency": {"p50_ms": p50, "p99_ms": None if p50 is None else 2 * p50},
        "target": {"boundMs": bound},
        "blockIntervalMs": interval,
        "cpuPercent": {"validators": 90.0, "nodes": 40.0},
    }


def test_a_step_keeps_up_only_when_verified_on_time_and_nothing_failed() -> None:
    assert capacity.kept_up(step(100, 95))
    assert not capacity.kept_up(step(100, 80))  # verified less than KEPT_UP of the offer
    assert not capacity.kept_up(step(100, 99, failed=1))
    assert not capacity.kept_up(step(100, 99, p50=1000.0))  # p50 past the bound
    assert not capacity.kept_up(step(100, 99, p50=None))
    assert not capacity.kept_up({**step(100, 99), "undecided": 3})


def test_the_knee_is_the_last_step_of_an_unbroken_run_from_the_lowest() -> None:
    runs = [step(150, 100), step(25, 25), step(100, 98), step(50, 49), step(200, 199)]
    assert capacity.knee(runs) == 100  # 150 fell behind; 200 after it does not count
    assert capacity.knee([step(25, 10)]) is None
    assert capacity.knee([]) is None


@given(
    st.lists(
        st.tuples(st.integers(1, 400), st.integers(0, 400), st.booleans()),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_the_knee_kept_up_and_so_did_every_lower_step(steps: list[tuple[int, int, bool]]) -> None:
    runs = [step(o, v, failed=0 if ok else 1) for o, v, ok in steps]
    found = capacity.knee(runs)
    lower = [r for r in runs if found is not None and r["offeredPerS"] <= found]
    assert all(capacity.kept_up(r) for r in lower)
    higher = sorted(
        (r for r in runs if found is None or r["offeredPerS"] > found),
        key=lambda r: r["offeredPerS"],
    )
    if higher:  # the step after the knee fell behind
        assert not capacity.kept_up(higher[0])


def test_the_summary_and_the_targets_it_gives() -> None:
    runs = [step(25, 25), step(150, 120, p50=630.0, interval=210.0), step(300, 140, failed=9)]
    overload = {**step(560, 130, failed=3), "accepted": 600, "refusals": 900}
    part = {"blockTimeMs": 200, **capacity.summary(runs, overload)}
    assert part["kneePerS"] == 25 and part["capacityPerS"] == 140
    assert part["p50BlocksAtTarget"] == pytest.approx(3.0)
    assert part["overload"]["failedShare"] == pytest.approx(3 / 600)
    targets = {t.name: t for t in run.targets({"capacity": part})}
    by_start = {name.split(" ")[0]: t for name, t in targets.items()}
    assert by_start["verified"].value == 140 and by_start["verified"].met is False
    assert by_start["e2e"].met is True  # 3.0 blocks, at most 3
    assert by_start["accepted"].value == pytest.approx(0.005) and by_start["accepted"].met
    text = "\n".join(run.capacity_table(part))
    assert "| 150 | 120 | 630.0 |" in text and "| no |" in text
    assert "3 of them failed (0.50%)" in text
