"""The benchmark's own machinery: its statistics, and a short ingestion run end to end
(`scripts/bench.py` with tiny counts). No figure is judged here: timing targets live in the
benchmark's report, never in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import floods
from bench.common import percentile, throughput
from bench.run import Target, targets

REPO = Path(__file__).resolve().parent.parent.parent


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_samples_in_order(samples: list[float]) -> None:
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    assert p50 in samples and p99 in samples
    assert min(samples) <= p50 <= p99 <= max(samples)
    below = sum(1 for s in samples if s <= p50)
    assert below >= len(samples) / 2


def test_throughput_rate_and_latencies() -> None:
    fig = throughput(4, 2.0, [0.001, 0.002, 0.003, 0.004])
    assert fig.rate == 2.0
    assert fig.p50_ms == 2.0 and fig.p99_ms == 4.0
    assert throughput(0, 0.0).rate == 0.0


def test_targets_compare_in_the_right_direction() -> None:
    assert Target("x", 3.2, 3).met is True
    assert Target("x", 2.9, 3).met is False
    assert Target("x", 1.2, 1.5, at_most=True).met is True
    assert Target("x", 1.6, 1.5, at_most=True).met is False
    assert Target("x", None, 1.5).met is None


@pytest.mark.slow
def test_a_short_ingestion_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["--only", "ingest", "--peer", "none", "--count", "60", "--rounds", "1"]
    run = subprocess.run(
        [sys.executable, "scripts/bench.py", *args, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    part = report["ingest"]
    for mode in ("sequential", "concurrent", "batched"):
        fig = part["validator"][mode]
        assert fig["count"] >= 60 - 8 and fig["rate"] > 0 and fig["committedRate"] > 0  # 8 clients
    assert part["bareAiohttp"]["count"] == 60
    assert part["recoveryCeiling"]["rate"] > 0
    assert part["peer"] is None and "none" in part["peerNote"]
    assert part["peerLogging"] is None and part["ratios"]["sequentialVsHardhatLogging"] is None
    names = [t["name"] for t in report["targets"]]
    assert "ingestion sequential / bare aiohttp" in names
    assert report["machine"]["ethKeysBackend"].startswith("CoinCurve")
    assert "| inferchain validator | sequential |" in run.stdout
    assert {t.name for t in targets(report)} == set(names)


def test_the_flood_bodies_are_what_the_table_says() -> None:
    body = floods.deep_nesting_body(1_000)
    assert body == b"[" * 1_000 + b"123456789012345678901234567890" + b"]" * 1_000
    junk = json.loads(floods.p2p_junk_body(7331, 300, 180_000))
    assert junk["messages"] == [] and len(junk["txs"]) == 300
    assert len({json.dumps(tx["message"]) for tx in junk["txs"]}) == 300
    assert abs(len(floods.p2p_junk_body(7331, 300, 180_000)) - 180_000) < 300 + 64


def run_bench(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "scripts/bench.py", *args, "--peer", "none", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout


@pytest.mark.slow
def test_a_tiny_flood_run_reports_every_attack(tmp_path: Path) -> None:
    report, stdout = run_bench(tmp_path, "--only", "floods", "--flood-size", "tiny")
    rows = report["floods"]["attacks"]
    assert [row["attack"] for row in rows] == list(floods.ATTACKS)
    for row in rows:
        assert row["established"], row
        assert row["baseline"]["read"]["samples"] == floods.TINY.honest_rounds, row
        assert row["baseline"]["submit"]["samples"] == floods.TINY.honest_rounds, row
        assert row["during"]["read"]["samples"] + row["during"]["read"]["failed"] > 0, row
        assert row["rssMiB"]["before"] > 0 and row["survived"] is True, row
    assert rows[0]["flood"]["opened"] == floods.TINY.idle_connections
    assert rows[-1]["flood"]["admitted"] > 0
    assert "| idle | 50 idle TCP connections |" in stdout


@pytest.mark.slow
def test_a_short_memory_run_reads_the_rss_at_every_step(tmp_path: Path) -> None:
    args = ("--only", "memory", "--memory-tasks", "600", "--memory-step", "300")
    report, stdout = run_bench(tmp_path, *args)
    part = report["memory"]
    assert [s["finished"] for s in part["samples"]] == [0, 300, 600]
    assert all(
        s["rssMiB"] > 0 and s["anonMiB"] + s["fileMiB"] <= s["rssMiB"] + 0.2
        for s in part["samples"]
    )
    assert "| finished tasks | validator RSS | anonymous |" in stdout
