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
from bench.run import Target, peers_of, table, targets

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


def fig(rate: float, rounds: list[float | None], **extra: float) -> dict[str, Any]:
    base = {"count": 3000, "seconds": 3000 / rate, "p50_ms": 1.0, "p99_ms": 2.0, "rate": rate}
    return base | {"rounds": rounds} | extra


def canned_report() -> dict[str, Any]:
    """An ingestion report as `bench.run.ingestion` writes it: anvil's batched run gave no
    figure in its second round."""
    ratios = {
        "sequentialVsBare": 0.42,
        "batchedVsRecovery": 0.3,
        "sequentialVsHardhatLogging": 2.0,
        "sequentialVsHardhat": 1.4,
        "concurrentVsHardhat": 1.6,
        "batchedVsHardhat": 4.0,
        "sequentialVsAnvil": 1.05,
        "concurrentVsAnvil": 1.2,
        "batchedVsAnvil": None,
        "sequentialCommittedVsAnvil": 1.1,
        "concurrentCommittedVsAnvil": 1.3,
        "batchedCommittedVsAnvil": None,
    }
    return {
        "machine": {
            "cpu": "a CPU",
            "cores": 2,
            "python": "3.11.7",
            "ethKeysBackend": "CoinCurveECCBackend",
            "commit": "abc1234",
            "date": "2026-12-03 10:00",
        },
        "ingest": {
            "count": 3000,
            "rounds": 2,
            "recoveryCeiling": fig(20_000, [19_000, 20_000]),
            "bareAiohttp": fig(2_200, [2_100, 2_200]),
            "validator": {
                "sequential": fig(940, [900, 940], committedRate=930),
                "concurrent": fig(1_900, [1_800, 1_900], committedRate=1_850),
                "batched": fig(6_000, [5_500, 6_000], committedRate=5_800),
            },
            "hardhat": {
                "sequential": fig(660, [650, 660]),
                "concurrent": fig(1_190, [1_180, 1_190]),
                "batched": fig(1_670, [1_600, 1_670]),
            },
            "hardhatLogging": fig(470, [460, 470]),
            "anvil": {
                "sequential": fig(900, [880, 900], committedRate=850),
                "concurrent": fig(1_580, [1_500, 1_580], committedRate=1_400),
                "batched": fig(4_000, [4_000, None], committedRate=2_500),
            },
            "peerNotes": ["round 2, anvil batched: TransportError: POST failed (no figure)"],
            "ratios": ratios,
        },
        "seconds": {"ingest": 100.0, "total": 100.0},
    }


def test_the_ingestion_targets_hold_the_validator_to_anvil() -> None:
    report = canned_report()
    rows = targets(report)
    assert [(t.name, t.value, t.bound, t.at_most, t.met) for t in rows] == [
        ("ingestion sequential / anvil", 1.05, 1.0, False, True),
        ("ingestion concurrent (8 clients) / anvil", 1.2, 1.5, False, False),
        ("ingestion batched (100 per batch) / anvil", None, 2.0, False, None),
        ("ingestion batched / recovery ceiling", 0.3, 0.5, False, False),
    ]
    report["targets"] = [t.to_json() for t in rows]
    text = table(report)
    assert "| ingestion sequential / anvil | 1.05 | >= 1 | yes |" in text
    assert "| ingestion concurrent (8 clients) / anvil | 1.20 | >= 1.5 | **no** |" in text
    assert "| ingestion batched (100 per batch) / anvil | - | >= 2 | - |" in text
    # The retired targets: their figures stay, as information, with no bound.
    assert "| hardhat node | 1.40 | 1.60 | 4.00 |" in text
    assert "| hardhat node, logging every call | 2.00 | - | - |" in text
    assert "| bare aiohttp handler | 0.42 | - | - |" in text
    assert "(committed / mined) | 1.10 | 1.30 | - |" in text
    targets_part = text[text.index("\nTargets\n") :]
    assert "hardhat" not in targets_part and "bare" not in targets_part
    assert "| anvil | batched | 4,000 (mined 2,500) | 1.00 / 2.00 | [4000, None] |" in text
    assert "| anvil | sequential | 900 (mined 850) |" in text
    assert "| hardhat node | concurrent | 1,190 | 1.00 / 2.00 | [1180, 1190] |" in text
    assert "Peer: round 2, anvil batched: TransportError: POST failed (no figure)" in text


def test_a_report_without_peers_has_their_targets_unmeasured() -> None:
    report = canned_report()
    part = report["ingest"]
    part["hardhat"] = part["hardhatLogging"] = part["anvil"] = None
    part["ratios"] = {key: None for key in part["ratios"]} | {
        "sequentialVsBare": 0.42,
        "batchedVsRecovery": 0.3,
    }
    report["targets"] = [t.to_json() for t in targets(report)]
    text = table(report)
    assert [t["met"] for t in report["targets"]] == [None, None, None, False]
    assert "| anvil | sequential | - | - | - |" in text
    assert "| hardhat node | batched | - | - | - |" in text


def test_the_peer_option_names_the_peers() -> None:
    assert peers_of("all") == ("hardhat", "anvil")
    assert peers_of("anvil") == ("anvil",)
    assert peers_of("hardhat") == ("hardhat",)
    assert peers_of("none") == ()
    with pytest.raises(ValueError, match="peer 'geth': one of all, anvil, hardhat, none"):
        peers_of("geth")


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
    assert part["hardhat"] is None and part["hardhatLogging"] is None and part["anvil"] is None
    assert part["peerNotes"] == [
        "hardhat not measured (--peer none)",
        "anvil not measured (--peer none)",
    ]
    assert part["ratios"]["sequentialVsHardhatLogging"] is None
    assert part["ratios"]["batchedVsAnvil"] is None
    names = [t["name"] for t in report["targets"]]
    assert "ingestion batched (100 per batch) / anvil" in names
    assert all("hardhat" not in name and "bare" not in name for name in names)
    assert report["machine"]["ethKeysBackend"].startswith("CoinCurve")
    assert "| inferchain validator | sequential |" in run.stdout
    assert {t.name for t in targets(report)} == set(names)


@pytest.mark.slow
def test_a_short_end_to_end_run_follows_every_task_to_its_end(tmp_path: Path) -> None:
    """bench.e2e on the default testnet: the follower learns of every task's end from the
    blocks' events and reads each task once, so every figure comes from the chain."""
    args = ["--block-time", "200", "--rate", "10", "--duration", "2", "--work-dir", str(tmp_path)]
    run = subprocess.run(
        [sys.executable, "-m", "bench.e2e", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["sent"] == report["accepted"] == 20
    assert report["settled"] is True and report["undecided"] == 0
    assert report["verified"] + report["failed"] == 20
    assert report["latency"]["count"] == report["verified"] > 0
    assert report["followerErrors"] == {"health": 0, "reads": 0}
    blocks = report["breakdown"]["blocks"]
    # each task's result came in a block after it, and its verdicts in a block after that
    for step in ("createdToResult", "resultToVerdict"):
        assert all(int(gap) >= 1 for gap in blocks[step]), (step, blocks[step])
    assert sum(blocks["createdToDecided"].values()) >= report["verified"]
    assert report["breakdown"]["ms"]["submitToCreatedBlock"]["p50"] > 0


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
