"""bench.profile's summary of py-spy's collapsed stacks: shares by function over the busy
samples, idle threads apart, lines of the same function merged."""

from __future__ import annotations

import pytest

from bench.profile import frame_name, render, summarize

STACKS = [
    "main (rpc/__main__.py:10);run (asyncio/runners.py:190);"
    "EpollSelector.select (selectors.py:468) 50",
    "main (rpc/__main__.py:10);handle (rpc/server.py:40);get_task (chain/protocol/state.py:455) 30",
    "main (rpc/__main__.py:10);handle (rpc/server.py:41);decode (chain/protocol/state.py:384) 10",
    "main (rpc/__main__.py:10);handle (rpc/server.py:41) 5",
    "_bootstrap (threading.py:995);_worker (concurrent/futures/thread.py:81) 40",
    "_bootstrap (threading.py:995);write (chain/node/store.py:90) 5",
    "not a stack line",
]


def test_shares_are_of_the_busy_samples_and_merge_the_lines_of_a_function() -> None:
    summary = summarize(STACKS)
    assert (summary.samples, summary.idle, summary.busy) == (140, 90, 50)
    shares = {s.function: s for s in summary.top}
    assert shares["handle (rpc/server.py)"].inclusive == pytest.approx(45 / 50)
    assert shares["handle (rpc/server.py)"].self_ == pytest.approx(5 / 50)
    assert shares["get_task (chain/protocol/state.py)"].self_ == pytest.approx(30 / 50)
    assert shares["main (rpc/__main__.py)"].inclusive == pytest.approx(45 / 50)
    assert "EpollSelector.select (selectors.py)" not in shares  # idle
    assert summary.top[0].function in ("main (rpc/__main__.py)", "handle (rpc/server.py)")
    text = render("validator-0", summary)
    assert text.splitlines()[0] == "validator-0: 140 samples, 36% busy"
    assert "60.0%  get_task (chain/protocol/state.py)" in text


def test_frame_names_drop_the_line_only() -> None:
    assert frame_name("f (a/b.py:12)") == "f (a/b.py)"
    assert frame_name("_run_code (<frozen runpy>:88)") == "_run_code (<frozen runpy>)"


def test_nothing_busy_gives_no_shares() -> None:
    summary = summarize(["x (selectors.py:1);EpollSelector.select (selectors.py:2) 7"])
    assert (summary.samples, summary.busy, summary.top) == (7, 0, ())
