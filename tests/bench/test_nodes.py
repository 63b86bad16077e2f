"""The nodes-per-validator benchmark (`bench.nodes`): its figures from block arrivals, its
targets and table from a canned report, and one tiny run (one validator, one resource node,
two seconds) whose processes are all gone after it. No figure is judged here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import nodes
from bench.run import table, targets


def test_intervals_are_between_consecutive_heights_only() -> None:
    arrivals = {10: 1.0, 11: 1.2, 12: 1.5, 14: 2.0, 15: 2.1}  # 13 was missed
    figures = nodes.intervals(arrivals, 200)
    assert figures.blocks == 5
    assert figures.mean_ms == pytest.approx((200 + 300 + 100) / 3)
    assert figures.max_ms == pytest.approx(300)
    assert figures.p50_ms == pytest.approx(200)
    assert figures.ratio == pytest.approx((200 + 300 + 100) / 3 / 200)


def test_too_few_blocks_give_no_interval() -> None:
    for arrivals in ({}, {3: 1.0}, {3: 1.0, 5: 2.0}):
        figures = nodes.intervals(arrivals, 1000)
        assert figures.mean_ms is None and figures.ratio is None
        assert figures.to_json()["ratio"] is None


@given(st.lists(st.floats(0.001, 10.0), min_size=1, max_size=100), st.integers(1, 5000))
def test_the_mean_interval_spans_the_window(gaps: list[float], setting_ms: int) -> None:
    arrivals, t = {1: 0.0}, 0.0
    for h, gap in enumerate(gaps, start=2):
        t += gap
        arrivals[h] = t
    figures = nodes.intervals(arrivals, setting_ms)
    assert figures.mean_ms == pytest.approx(t * 1000 / len(gaps))
    assert figures.p50_ms is not None and figures.p99_ms is not None
    assert figures.max_ms is not None
    slack = 1e-6  # the gaps come back as differences of sums: a rounding apart
    assert min(gaps) * 1000 - slack <= figures.p50_ms <= figures.p99_ms + slack
    assert figures.p99_ms <= figures.max_ms + slack


def test_the_cpu_share_is_seconds_over_wall_seconds() -> None:
    assert nodes.cpu_share(1.0, 3.0, 4.0) == 0.5
    assert nodes.cpu_share(1.0, 1.0, 0.0) is None


def run_figures(count: int, block_time_ms: int, mean_ms: float) -> dict[str, Any]:
    figures = nodes.intervals({1: 0.0, 2: mean_ms / 1000, 3: 2 * mean_ms / 1000}, block_time_ms)
    return {
        "nodes": count,
        "blockTimeMs": block_time_ms,
        "interval": figures.to_json(),
        "validatorCpuShare": 0.2,
        "nodesCpuShare": 0.5,
        "tasks": {"accepted": 100, "refused": 0, "statuses": {"verified": 90}},
    }


def test_the_targets_hold_each_block_time_to_the_setting() -> None:
    part = {
        "nodes": 30,
        "runs": [
            {
                "blockTimeMs": 200,
                "baseline": run_figures(0, 200, 200.0),
                "loaded": run_figures(30, 200, 230.0),
            },
            {
                "blockTimeMs": 1000,
                "baseline": run_figures(0, 1000, 1000.0),
                "loaded": run_figures(30, 1000, 1010.0),
            },
        ],
    }
    report = {"machine": {}, "nodes": part, "seconds": {"total": 1.0}}
    met = {t.name: t.met for t in targets(report)}
    assert met == {
        "block interval with 30 nodes / setting, 200 ms blocks": False,
        "block interval with 30 nodes / setting, 1000 ms blocks": True,
    }
    report["machine"] = {
        "cpu": "x",
        "cores": 2,
        "python": "3.11",
        "ethKeysBackend": "y",
        "commit": "z",
        "date": "d",
    }
    report["targets"] = [t.to_json() for t in targets(report)]
    text = table(report)
    assert "| 200 | 30 | 230.0 |" in text
    assert (
        "| block interval with 30 nodes / setting, 200 ms blocks | 1.15 | <= 1.1 | **no** |" in text
    )


async def test_a_tiny_run_measures_and_leaves_no_process(tmp_path: Path) -> None:
    figures = await nodes.measure(tmp_path, 1, 200, duration_s=2.0, settle_s=0.5)
    assert figures["nodes"] == 1 and figures["blockTimeMs"] == 200
    assert figures["interval"]["blocks"] >= 2
    assert figures["interval"]["meanMs"] is not None
    assert figures["tasks"]["accepted"] > 0
    assert sum(figures["tasks"]["statuses"].values()) == figures["tasks"]["accepted"]
    assert figures["validatorCpuShare"] is not None and figures["validatorCpuShare"] > 0
    left = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and str(tmp_path).encode() in _cmdline(int(pid))
    ]
    assert left == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
