"""The validators-per-machine part of the benchmark: the fit, the figures it derives from
notifications, metrics and blocks, its table and target rows, and one short run of a network
of four validators through `scripts/bench.py`. No figure is judged here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench import validators
from bench.run import table, targets
from bench.validators import (
    bucket_quantile_s,
    commit_histogram,
    commit_rounds,
    commit_spreads_s,
    first_commits,
    growth,
    growth_sentence,
    height_to_commit,
    histogram_delta,
    intervals_s,
    least_squares,
    medians_by_count,
    parse_counts,
    summary_ms,
    validators_table,
)
from rpc.metrics import COMMIT_BUCKETS

REPO = Path(__file__).resolve().parent.parent.parent

small = st.floats(-1e3, 1e3, allow_nan=False)


@given(slope=small, intercept=small, xs=st.lists(st.integers(1, 64), min_size=2, max_size=8))
def test_the_fit_recovers_a_line_through_its_points(
    slope: float, intercept: float, xs: list[int]
) -> None:
    if len(set(xs)) < 2:
        assert least_squares([float(x) for x in xs], [intercept] * len(xs)) is None
        return
    line = least_squares([float(x) for x in xs], [intercept + slope * x for x in xs])
    assert line is not None and line.points == len(xs)
    assert math.isclose(line.slope, slope, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(line.intercept, intercept, rel_tol=1e-6, abs_tol=1e-4)


def test_the_fit_is_least_squares_over_scattered_points() -> None:
    # 200 + 50 x plus residuals (20, -30, 10): they sum to 0 and are orthogonal to x
    line = least_squares([4.0, 8.0, 16.0], [420.0, 570.0, 1010.0])
    assert line is not None
    assert math.isclose(line.slope, 50.0, rel_tol=1e-9)
    assert math.isclose(line.intercept, 200.0, rel_tol=1e-9)
    assert math.isclose(line.at(28 / 3), 2000 / 3, rel_tol=1e-9)  # through the means
    with pytest.raises(ValueError, match="3 xs for 2 ys"):
        least_squares([1.0, 2.0, 3.0], [1.0, 2.0])


def run_at(n: int, interval: float, cpu: float, **extra: Any) -> dict[str, Any]:
    """A run of `per_validator_count` as far as the growth and the table read it."""
    return {
        "validators": n,
        "blockIntervalMs": {"samples": 50, "mean": interval, "p50": interval, "p99": interval},
        "commitLatencyMs": {"samples": 100, "p50": 2 * interval, "p99": 3 * interval},
        "acceptedToCommitMs": {"samples": 100, "p50": interval},
        "heightToCommitMs": {"mean": interval - 200, "heights": 50 * n},
        "commitRounds": {"0": 48, "1": 2},
        "e2e": {
            "latency": {"p50_ms": 4 * interval, "p99_ms": 6 * interval},
            "verifiedPerS": 9.5,
            "failed": 0,
            "refusals": 3,
        },
        "cpu": {
            "validatorsSeconds": cpu * 50 / 1000,
            "perValidatorMean": cpu * 50 / 1000 / n,
            "validatorsMsPerBlock": cpu,
            "machineBusyPercent": 60.0,
            "cores": 2,
        },
        "rssMiB": {"mean": 78.0 + n / 4, "max": 80.0},
        "idle": {"blocks": 15, "validatorsMsPerBlock": cpu / 2},
    } | extra


def test_the_growth_is_the_slope_of_each_figure_over_the_counts() -> None:
    runs = [run_at(4, 240.0, 100.0), run_at(8, 280.0, 300.0), run_at(16, 360.0, 700.0)]
    fits = growth(runs)
    assert fits["blockIntervalMs"] == {"perValidator": 10.0, "intercept": 200.0, "points": 3}
    assert fits["validatorCpuMsPerBlock"] == {
        "perValidator": 50.0,
        "intercept": -100.0,
        "points": 3,
    }
    assert fits["commitLatencyP50Ms"]["perValidator"] == 20.0
    assert fits["e2eP50Ms"]["perValidator"] == 40.0
    assert fits["heightToCommitMs"]["perValidator"] == 10.0
    assert fits["validatorRssMiB"]["perValidator"] == 0.25
    assert fits["idleValidatorCpuMsPerBlock"]["perValidator"] == 25.0
    assert growth_sentence(fits) == (
        "Each added validator adds 10.0 ms to the block interval and 50.0 ms of CPU per block "
        "(the validators' total; least squares over 3 runs)."
    )


def test_a_run_without_a_figure_leaves_it_out_of_the_fit() -> None:
    runs = [run_at(4, 240.0, 100.0), run_at(8, 280.0, 300.0)]
    runs[1]["e2e"]["latency"]["p50_ms"] = None
    fits = growth(runs)
    assert fits["blockIntervalMs"]["points"] == 2
    assert fits["e2eP50Ms"] is None
    assert growth([run_at(4, 240.0, 100.0)])["blockIntervalMs"] is None
    assert growth_sentence(growth([])) == (
        "Too few validator counts for a growth per added validator."
    )


def test_intervals_spreads_and_summaries_come_from_the_notifications() -> None:
    seen = [
        {1: 0.0, 2: 0.25, 3: 0.50, 4: 0.80},
        {1: 0.01, 2: 0.24, 3: 0.55, 5: 1.1},
    ]
    commits = first_commits(seen)
    assert commits == {1: 0.0, 2: 0.24, 3: 0.50, 4: 0.80, 5: 1.1}
    # heights committed in [0.2, 1.0] whose previous height was too: 3 and 4 (2's is before)
    assert intervals_s(commits, 0.2, 1.0) == pytest.approx([0.26, 0.30])
    assert commit_spreads_s(seen, [1, 2, 3, 4]) == pytest.approx([0.01, 0.01, 0.05])
    fig = summary_ms([0.26, 0.30, 0.28])
    assert fig == {"samples": 3, "mean": 280.0, "p50": 280.0, "p99": 300.0, "max": 300.0}
    assert summary_ms([])["mean"] is None


def commit_metrics(times_s: list[float]) -> str:
    """A /metrics text with the validators' commit histogram after `times_s`."""
    registry = CollectorRegistry()
    hist = Histogram(validators.COMMIT_METRIC, "commit", buckets=COMMIT_BUCKETS, registry=registry)
    for t in times_s:
        hist.observe(t)
    return generate_latest(registry).decode()


def test_height_to_commit_is_read_from_two_scrapes_of_the_histogram() -> None:
    before = commit_histogram(commit_metrics([0.03, 0.04]))
    after = commit_histogram(commit_metrics([0.03, 0.04, 0.2, 0.3, 0.4, 0.7]))
    assert before["count"] == 2 and after["count"] == 6
    delta = histogram_delta(before, after)
    assert delta["count"] == 4 and delta["sum"] == pytest.approx(1.6)
    assert delta["buckets"][0.25] == 1 and delta["buckets"][0.5] == 3
    assert bucket_quantile_s(delta, 0.5) == 0.5
    assert bucket_quantile_s(delta, 0.99) == 1.0
    other = histogram_delta(commit_histogram(""), commit_histogram(commit_metrics([0.1])))
    fig = height_to_commit([delta, other])
    assert fig == {
        "heights": 5,
        "mean": 340.0,
        "slowestValidatorMean": 400.0,
        "p50AtMost": 500.0,
        "p99AtMost": 1000.0,
    }
    assert height_to_commit([histogram_delta(before, before)])["mean"] is None


def test_the_rounds_are_those_of_each_block_s_commit() -> None:
    blocks = [
        {"height": 5, "commit": [{"round": 0}, {"round": 0}]},
        {"height": 6, "commit": [{"round": 2}]},
        {"height": 7, "commit": [{"round": 0}]},
        {"height": 8, "commit": []},
    ]
    assert commit_rounds(blocks) == {"0": 2, "2": 1}


def test_the_counts_are_parsed_or_refused_saying_why() -> None:
    assert parse_counts("4,8,16") == (4, 8, 16)
    assert parse_counts(" 4 , 8 ") == (4, 8)
    with pytest.raises(ValueError, match="integers separated by commas, got '4,x'"):
        parse_counts("4,x")
    with pytest.raises(ValueError, match="positive integers, got '0,4'"):
        parse_counts("0,4")
    with pytest.raises(ValueError, match="positive integers"):
        parse_counts("")


def canned_part() -> dict[str, Any]:
    runs = [run_at(4, 240.0, 100.0), run_at(8, 280.0, 300.0), run_at(16, 360.0, 700.0)]
    return {
        "blockTimeMs": 200,
        "offeredPerS": 10.0,
        "durationS": 20.0,
        "resourceNodes": 3,
        "counts": [4, 8, 16],
        "rounds": 1,
        "runs": [{"round": 1} | run for run in runs],
        "growth": growth(runs),
        "medians": medians_by_count(runs),
        "notes": [],
    }


def test_each_count_s_median_is_over_its_rounds() -> None:
    runs = [
        run_at(4, 240.0, 100.0),
        run_at(4, 250.0, 100.0),
        run_at(4, 300.0, 100.0),
        run_at(8, 280.0, 300.0),
        run_at(8, 290.0, 300.0),
    ]
    runs[2]["e2e"]["latency"]["p50_ms"] = None
    medians = medians_by_count(runs)
    assert list(medians) == ["4", "8"]
    assert medians["4"] == {
        "blockIntervalMs": 250.0,
        "commitLatencyP50Ms": 500.0,
        "e2eP50Ms": 980.0,  # of 960 and 1000: their mean
    }
    assert medians["8"]["blockIntervalMs"] == 285.0
    # the fit takes every run, repeated counts included
    assert growth(runs)["blockIntervalMs"]["points"] == 5


def test_the_table_gives_a_row_per_count_and_the_growth() -> None:
    part = canned_part()
    part["runs"].append({"validators": 32, "error": "the testnet was not ready in 220 s"})
    part["notes"] = ["32 validators, round 1: RuntimeError: the testnet was not ready in 220 s"]
    lines = validators_table(part)
    header = lines[2]
    columns = header.count("|") - 1
    assert lines[3] == "|" + "---:|" * columns
    rows = [line for line in lines if line.startswith("| 4 ") or line.startswith("| 16 ")]
    assert rows[0] == (
        "| 4 | 240.0 / 240.0 / 240.0 | 480.0 / 720.0 | 240.0 | 40.0 | 2 of 50 | 960.0 / 1440.0 "
        "| 9.50 | 3 | 5.0 (1.25) | 100.0 | 60% of 2 cores | 79.0 |"
    )
    assert all(row.count("|") - 1 == columns for row in rows)
    failed = next(line for line in lines if line.startswith("| 32 "))
    assert failed.count("|") - 1 == columns and "not ready in 220 s" in failed
    assert "Each added validator adds 10.0 ms to the block interval" in "\n".join(lines)
    assert "Per added validator also: commit latency p50 +20.0 ms, e2e p50 +40.0 ms" in (
        "\n".join(lines)
    )
    assert lines[-1] == (
        "Note: 32 validators, round 1: RuntimeError: the testnet was not ready in 220 s"
    )
    part["rounds"] = 2
    lines = validators_table(part)
    assert "; 2 rounds of every count" in lines[0]
    assert any(line.startswith("| 16 (round 1) | 360.0 / ") for line in lines)


def test_the_target_rows_are_information_without_a_bound() -> None:
    report = {
        "machine": {
            "cpu": "a CPU",
            "cores": 2,
            "python": "3.11.7",
            "ethKeysBackend": "CoinCurveECCBackend",
            "commit": "abc1234",
            "date": "2026-12-04 09:00",
        },
        "validators": canned_part(),
        "seconds": {"validators": 200.0, "total": 200.0},
    }
    rows = targets(report)
    assert [(t.name, t.value, t.bound, t.met) for t in rows[:4]] == [
        ("validators: block interval per added validator, ms", 10.0, None, None),
        ("validators: their CPU per block per added validator, ms", 50.0, None, None),
        ("validators: commit latency p50 per added validator, ms", 20.0, None, None),
        ("validators: e2e p50 per added validator, ms", 40.0, None, None),
    ]
    assert [t.value for t in rows[4:7]] == [240.0, 480.0, 960.0]
    assert len(rows) == 4 + 3 * 3
    report["targets"] = [t.to_json() for t in rows]
    text = table(report)
    assert "| validators: block interval per added validator, ms | 10.00 | - | - |" in text
    assert "| validators: 16, e2e p50, ms | 1440.00 | - | - |" in text
    assert "Validators per machine (3 resource nodes, 200 ms blocks" in text


@pytest.mark.slow
def test_a_short_run_of_four_validators_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["--only", "validators", "--validator-counts", "4", "--validators-seconds", "2"]
    run = subprocess.run(
        [sys.executable, "scripts/bench.py", *args, "--peer", "none", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    part = json.loads(out.read_text())["validators"]
    assert part["counts"] == [4] and part["rounds"] == 1 and part["notes"] == []
    (fig,) = part["runs"]
    assert fig["round"] == 1
    accepted = fig["e2e"]["accepted"]
    assert fig["settled"] is True and accepted == fig["e2e"]["sent"] == 20
    assert fig["blocks"] >= 2 and fig["blockIntervalMs"]["samples"] >= 1
    # every accepted task's block was notified by the validator it was sent to
    assert fig["commitLatencyMs"]["samples"] == accepted
    assert fig["blockIntervalMs"]["p50"] <= fig["blockIntervalMs"]["p99"]
    assert sum(fig["commitRounds"].values()) == fig["blocks"]
    assert fig["heightToCommitMs"]["heights"] >= fig["blocks"]
    assert len(fig["cpu"]["perValidatorSeconds"]) == 4
    assert all(seconds > 0 for seconds in fig["cpu"]["perValidatorSeconds"])
    assert len(fig["rssMiB"]["perValidator"]) == 4 and fig["rssMiB"]["mean"] > 0
    assert fig["subscriptionErrors"] == 0
    assert fig["idle"]["blocks"] >= 1 and fig["idle"]["validatorsSeconds"] > 0
    assert part["growth"]["blockIntervalMs"] is None  # one count: no slope
    assert "| 4 | " in run.stdout and "Too few validator counts" in run.stdout
