"""Validators per machine: the cost of each validator added to a network on one machine.

For each count of `VALIDATOR_COUNTS` (4, 8 and 16 by default), `per_validator_count` starts
a fresh network through `scripts/testnet.py` (that many validators, 3 resource nodes, no AO
unit, 200 ms blocks) and offers it a modest open-loop load of submitTask, well under its
capacity (10 per second for 20 s), with the machinery of `bench.e2e`: its launcher wrapper,
its warm-up, its presigned load (ten dev accounts, account i to validator i mod N), its
follower and its figures. What changes from one count to the next is then the cost of the
validators, not of saturation.

Each run reports:

- the block interval (mean, p50, p99), between the commits of consecutive heights, a height's
  commit being the first `newBlocks` notification of it from any validator (one WebSocket
  per validator, from this process); and the spread of a height's commit over the validators
  (the last validator's notification minus the first's);
- the commit latency: from a task's scheduled submit to the `newBlocks` notification of the
  block that holds it (its `createdHeight`) from the validator it was sent to;
- the time from the start of a height to its commit as each validator measures it
  (`inferchain_block_commit_seconds` of its `GET /metrics`, before and after the run: the
  mean, and the bucket bounds of p50 and p99), that is the consensus rounds without the
  block time that precedes them; and the round each block was decided in (the round of its
  commit's precommits, read with getBlock): a round past 0 means timeouts;
- the e2e figures of `bench.e2e.figures` (submit to verified p50 and p99, verified per second);
- the validators' CPU seconds (user + system from /proc) over the measured window (the
  load's start until every task was decided), per validator and in total, the total per
  block, and their RSS at its end; the machine's busy share over the window (/proc/stat, every
  core, whoever used it) and this process's own CPU (the load, the follower, the WebSockets);
- before the load, the same network idle for a few seconds: its blocks and the validators'
  CPU per block with no task (empty blocks, the status polls, the messages sent again).

`growth` then fits a straight line (least squares) over the counts to the block interval,
the validators' CPU per block, the commit latency and the e2e p50: its slope is what each
added validator costs. `python -m bench.validators` prints the report as JSON;
`python scripts/bench.py --only validators` runs it as a part of the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import e2e
from bench.common import REPO, percentile, rss_bytes
from rpc import api
from rpc.client import InferchainClient, RpcError, TransportError, Wallet

log = logging.getLogger(__name__)

VALIDATOR_COUNTS = (4, 8, 16)
BLOCK_TIME_MS = 200
OFFERED_PER_S = 10.0
DURATION_S = 20.0
RESOURCE_NODES = 3
SUBSCRIBE_TIMEOUT_S = 30.0
IDLE_S = 3.0  # without load, before it: the cost of the network alone
START_S_PER_VALIDATOR = 5.0  # more time to start, per validator, than the e2e testnet's
COMMIT_METRIC = "inferchain_block_commit_seconds"
# What `growth` fits against the validator count: (key, the figure's path in a run).
GROWTH_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("blockIntervalMs", ("blockIntervalMs", "mean")),
    ("validatorCpuMsPerBlock", ("cpu", "validatorsMsPerBlock")),
    ("idleValidatorCpuMsPerBlock", ("idle", "validatorsMsPerBlock")),
    ("commitLatencyP50Ms", ("commitLatencyMs", "p50")),
    ("e2eP50Ms", ("e2e", "latency", "p50_ms")),
    ("heightToCommitMs", ("heightToCommitMs", "mean")),
    ("validatorRssMiB", ("rssMiB", "mean")),
)


# The pure parts: summaries, the fit, the growth


@dataclass(frozen=True, slots=True)
class Line:
    """y = intercept + slope * x, fitted by least squares over `points` points."""

    slope: float
    intercept: float
    points: int

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def least_squares(xs: list[float], ys: list[float]) -> Line | None:
    """The least-squares line through (xs[i], ys[i]); None below two distinct xs."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} xs for {len(ys)} ys")
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return Line(slope, mean_y - slope * mean_x, n)


def summary_ms(samples_s: list[float]) -> dict[str, Any]:
    """Mean, p50, p99 and max of `samples_s` (seconds), in milliseconds; the sample count."""
    if not samples_s:
        return {"samples": 0, "mean": None, "p50": None, "p99": None, "max": None}
    return {
        "samples": len(samples_s),
        "mean": round(sum(samples_s) / len(samples_s) * 1000, 1),
        "p50": round(percentile(samples_s, 0.5) * 1000, 1),
        "p99": round(percentile(samples_s, 0.99) * 1000, 1),
        "max": round(max(samples_s) * 1000, 1),
    }


def first_commits(seen: list[dict[int, float]]) -> dict[int, float]:
    """Each height's first notification over the validators."""
    out: dict[int, float] = {}
    for at in seen:
        for height, t in at.items():
            if height not in out or t < out[height]:
                out[height] = t
    return out


def intervals_s(commits: dict[int, float], first: float, last: float) -> list[float]:
    """The times between the commits of consecutive heights, both committed in [first, last]."""
    heights = sorted(h for h, t in commits.items() if first <= t <= last)
    return [
        commits[h] - commits[h - 1] for h in heights if h - 1 in commits and commits[h - 1] >= first
    ]


def commit_spreads_s(seen: list[dict[int, float]], heights: list[int]) -> list[float]:
    """For each of `heights` every validator notified: the last notification minus the first."""
    out = []
    for height in heights:
        times = [at[height] for at in seen if height in at]
        if len(times) == len(seen):
            out.append(max(times) - min(times))
    return out


def _dig(run: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure of GROWTH_FIGURES: its slope per added validator and its intercept, fitted
    over the runs that gave it (None below two counts)."""
    out: dict[str, Any] = {}
    for key, path in GROWTH_FIGURES:
        points = [(float(r["validators"]), _dig(r, path)) for r in runs]
        xs = [x for x, y in points if y is not None]
        ys = [y for _, y in points if y is not None]
        line = least_squares(xs, ys)
        out[key] = (
            None
            if line is None
            else {
                "perValidator": round(line.slope, 3),
                "intercept": round(line.intercept, 1),
                "points": line.points,
            }
        )
    return out


def growth_sentence(fits: dict[str, Any]) -> str:
    """The growth as the sentence the report and PERFORMANCE.md give."""
    interval, cpu = fits.get("blockIntervalMs"), fits.get("validatorCpuMsPerBlock")
    if interval is None or cpu is None:
        return "Too few validator counts for a growth per added validator."
    return (
        f"Each added validator adds {interval['perValidator']:.1f} ms to the block interval "
        f"and {cpu['perValidator']:.1f} ms of CPU per block (the validators' total; "
        f"least squares over {interval['points']} runs)."
    )


def commit_histogram(text: str) -> dict[str, Any]:
    """`inferchain_block_commit_seconds` of a /metrics text: its sum, its count and its
    cumulative buckets by upper bound (seconds; +Inf last)."""
    out: dict[str, Any] = {"sum": 0.0, "count": 0.0, "buckets": {}}
    for family in text_string_to_metric_families(text):
        if family.name != COMMIT_METRIC:
            continue
        for sample in family.samples:
            if sample.name == f"{COMMIT_METRIC}_sum":
                out["sum"] = float(sample.value)
            elif sample.name == f"{COMMIT_METRIC}_count":
                out["count"] = float(sample.value)
            elif sample.name == f"{COMMIT_METRIC}_bucket":
                out["buckets"][float(sample.labels["le"])] = float(sample.value)
    return out


def histogram_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the histogram counted between two scrapes."""
    return {
        "sum": after["sum"] - before["sum"],
        "count": after["count"] - before["count"],
        "buckets": {
            le: n - before["buckets"].get(le, 0.0) for le, n in sorted(after["buckets"].items())
        },
    }


def bucket_quantile_s(delta: dict[str, Any], q: float) -> float | None:
    """The upper bound of the bucket that holds the q-quantile (inf past the last bound)."""
    count = delta["count"]
    if count <= 0:
        return None
    for le, cumulative in sorted(delta["buckets"].items()):
        if cumulative >= q * count:
            return float(le)
    return float("inf")


def height_to_commit(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    """The validators' times from a height's start to its commit over the run: the mean over
    every validator's heights, the slowest validator's mean, the bounds of p50 and p99 of
    all of them together (ms)."""
    seconds, count = 0.0, 0.0
    buckets: dict[float, float] = {}
    means = []
    for delta in deltas:
        seconds += delta["sum"]
        count += delta["count"]
        for le, n in delta["buckets"].items():
            buckets[le] = buckets.get(le, 0.0) + n
        if delta["count"] > 0:
            means.append(delta["sum"] / delta["count"])
    total = {"sum": seconds, "count": count, "buckets": buckets}

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 1)

    return {
        "heights": int(count),
        "mean": ms(seconds / count) if count else None,
        "slowestValidatorMean": ms(max(means)) if means else None,
        "p50AtMost": ms(bucket_quantile_s(total, 0.5)),
        "p99AtMost": ms(bucket_quantile_s(total, 0.99)),
    }


def commit_rounds(blocks: list[dict[str, Any]]) -> dict[str, int]:
    """How many blocks were decided in each round (the round of their commit's votes)."""
    counts: dict[int, int] = {}
    for block in blocks:
        commit = block.get("commit") or []
        if commit and isinstance(commit[0].get("round"), int):
            round_ = int(commit[0]["round"])
            counts[round_] = counts.get(round_, 0) + 1
    return {str(r): counts[r] for r in sorted(counts)}


TABLE_HEADER = (
    "| validators | block interval mean / p50 / p99 | commit latency p50 / p99 "
    "| accepted to commit p50 | height to commit, mean | blocks past round 0 "
    "| e2e p50 / p99 | verified/s | refusals | validator CPU s, total (per validator) "
    "| validator CPU ms per block | machine busy | RSS MiB per validator |"
)
TABLE_COLUMNS = TABLE_HEADER.count("|") - 1


def validators_table(part: dict[str, Any]) -> list[str]:
    """The runs as a Markdown table, and the growth."""
    lines = [
        f"Validators per machine ({part['resourceNodes']} resource nodes, "
        f"{part['blockTimeMs']} ms blocks, {part['offeredPerS']:g} tasks/s for "
        f"{part['durationS']:g} s; times in ms; CPU over the load and until every task was "
        f"decided)"
        + (f"; {part['rounds']} rounds of every count" if part.get("rounds", 1) > 1 else ""),
        "",
        TABLE_HEADER,
        "|" + "---:|" * TABLE_COLUMNS,
    ]
    for run in part["runs"]:
        lines.append(validators_row(run, with_round=part.get("rounds", 1) > 1))
    fits = part.get("growth") or {}
    lines += ["", growth_sentence(fits)]
    extra = [
        f"{label} {fit['perValidator']:+.1f} {unit}"
        for key, label, unit in (
            ("commitLatencyP50Ms", "commit latency p50", "ms"),
            ("e2eP50Ms", "e2e p50", "ms"),
            ("heightToCommitMs", "height to commit", "ms"),
            ("idleValidatorCpuMsPerBlock", "validator CPU per block without load", "ms"),
            ("validatorRssMiB", "RSS of a validator", "MiB"),
        )
        if (fit := fits.get(key)) is not None
    ]
    if extra:
        lines.append("Per added validator also: " + ", ".join(extra) + ".")
    for note in part.get("notes") or []:
        lines += ["", f"Note: {note}"]
    return lines


def _num(value: Any, digits: int = 1) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def validators_row(run: dict[str, Any], *, with_round: bool = False) -> str:
    """One run's row of `validators_table`; its round beside its count `with_round`."""
    count = f"{run['validators']} (round {run.get('round')})" if with_round else run["validators"]
    if "error" in run:
        return f"| {count} | failed: {run['error']} |" + " - |" * (TABLE_COLUMNS - 2)
    interval, commit = run["blockIntervalMs"], run["commitLatencyMs"]
    e2e_part = run["e2e"]
    lat = e2e_part.get("latency", {})
    cpu, rss = run["cpu"], run["rssMiB"]
    past_zero = sum(n for r, n in run["commitRounds"].items() if r != "0")
    decided = sum(run["commitRounds"].values())
    busy = cpu.get("machineBusyPercent")
    machine = "-" if busy is None else f"{busy:.0f}% of {cpu.get('cores')} cores"
    return (
        f"| {count} "
        f"| {_num(interval['mean'])} / {_num(interval['p50'])} / {_num(interval['p99'])} "
        f"| {_num(commit['p50'])} / {_num(commit['p99'])} "
        f"| {_num(run['acceptedToCommitMs']['p50'])} "
        f"| {_num(run['heightToCommitMs']['mean'])} "
        f"| {past_zero} of {decided} "
        f"| {_num(lat.get('p50_ms'))} / {_num(lat.get('p99_ms'))} "
        f"| {_num(e2e_part.get('verifiedPerS'), 2)} | {e2e_part.get('refusals', 0)} "
        f"| {_num(cpu['validatorsSeconds'])} ({_num(cpu['perValidatorMean'], 2)}) "
        f"| {_num(cpu['validatorsMsPerBlock'])} "
        f"| {machine} "
        f"| {_num(rss['mean'])} |"
    )


# The processes


def validator_port(pid: int) -> int | None:
    """The `--port` of a validator process, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == "--port" and value.isdigit():
            return int(value)
    return None


def validator_processes(testnet: e2e.Testnet) -> dict[int, e2e.ProcInfo]:
    """The testnet's validator processes by index (their port minus the first one's)."""
    out = {}
    for info in testnet.children.values():
        if info.role != "validator":
            continue
        port = validator_port(info.pid)
        if port is not None and 0 <= port - testnet.port < testnet.validators:
            out[port - testnet.port] = info
    return out


def machine_cpu_ticks() -> tuple[int, int]:
    """Busy and total ticks of every core since boot (the `cpu` line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return sum(fields) - idle, sum(fields)


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the machine's CPU time that was busy between two readings (every core)."""
    total = after[1] - before[1]
    return None if total <= 0 else round(100 * (after[0] - before[0]) / total, 1)


class CommitWatch:
    """When each validator notified each height: a `newBlocks` subscription per validator."""

    def __init__(self, clients: list[InferchainClient]) -> None:
        self.clients = clients
        self.seen: list[dict[int, float]] = [{} for _ in clients]
        self.errors = 0
        self._ready = [asyncio.Event() for _ in clients]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe at every validator; returns once every subscription is in place."""
        self._tasks = [asyncio.create_task(self._watch(k)) for k in range(len(self.clients))]
        waits = [asyncio.create_task(ready.wait()) for ready in self._ready]
        _done, pending = await asyncio.wait(waits, timeout=SUBSCRIBE_TIMEOUT_S)
        for wait in pending:
            wait.cancel()
        if pending:
            await self.stop()
            raise RuntimeError(
                f"{len(pending)} of {len(self.clients)} validators took no newBlocks "
                f"subscription in {SUBSCRIBE_TIMEOUT_S:g} s"
            )

    async def _watch(self, k: int) -> None:
        loop = asyncio.get_running_loop()
        seen = self.seen[k]
        while True:
            try:
                async with self.clients[k].subscription("newBlocks") as subscription:
                    self._ready[k].set()
                    async for note in subscription:
                        seen.setdefault(int(note["height"]), loop.time())
            except (TransportError, RpcError, KeyError, ValueError) as exc:
                self.errors += 1
                log.warning("newBlocks at validator %d: %s; subscribing again", k, exc)
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


async def idle_cost(
    procs: dict[int, e2e.ProcInfo], watch: CommitWatch, seconds: float
) -> dict[str, Any]:
    """The validators' CPU and blocks over `seconds` with no load (empty blocks, the status
    polls, the messages sent again each second): what the network costs before any task."""
    loop = asyncio.get_running_loop()
    before = {k: e2e.cpu_seconds(p) for k, p in procs.items()}
    started = loop.time()
    await asyncio.sleep(seconds)
    ended = loop.time()
    cpu_s = sum(e2e.cpu_seconds(p) - before[k] for k, p in procs.items())
    commits = first_commits(watch.seen)
    blocks = sum(1 for t in commits.values() if started <= t <= ended)
    return {
        "seconds": round(ended - started, 2),
        "blocks": blocks,
        "blockIntervalMs": summary_ms(intervals_s(commits, started, ended))["mean"],
        "validatorsSeconds": round(cpu_s, 2),
        "validatorsPercentOfOneCore": round(100 * cpu_s / (ended - started), 1),
        "validatorsMsPerBlock": round(cpu_s * 1000 / blocks, 1) if blocks else None,
    }


async def scrape_commits(clients: list[InferchainClient]) -> list[dict[str, Any]]:
    """Each validator's commit histogram now."""
    texts = await asyncio.gather(*(client.metrics_text() for client in clients))
    return [commit_histogram(text) for text in texts]


async def read_blocks(client: InferchainClient, heights: list[int]) -> list[dict[str, Any]]:
    """getBlock of `heights`, in batches."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(heights), e2e.BATCH_LIMIT):
        calls: list[tuple[str, Any]] = [
            (api.GET_BLOCK, {"height": h}) for h in heights[i : i + e2e.BATCH_LIMIT]
        ]
        out += [a for a in await client.batch(calls) if isinstance(a, dict)]
    return out


def commit_latencies_s(
    records: list[e2e.Sent], seen: list[dict[int, float]], *, from_answer: bool = False
) -> list[float]:
    """Per accepted task: its scheduled submit (or, `from_answer`, the answer that accepted
    it) to the notification of its block (`createdHeight`) from the validator it was sent to."""
    out = []
    for sent in records:
        created = (sent.task or {}).get("createdHeight")
        if not sent.accepted or not isinstance(created, int):
            continue
        at = seen[sent.validator].get(created)
        start = sent.answered_at if from_answer else sent.scheduled
        if at is not None and start is not None:
            out.append(at - start)
    return out


# The runs


async def per_validator_count(
    work_dir: Path,
    validators: int,
    *,
    block_time_ms: int = BLOCK_TIME_MS,
    offered_per_s: float = OFFERED_PER_S,
    duration_s: float = DURATION_S,
    nodes: int = RESOURCE_NODES,
    inference: dict[str, Any] | None = None,
    log_level: str = "WARNING",
    idle_s: float | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """One fresh network of `validators` validators, `idle_s` without load (IDLE_S, or half
    of `duration_s` if that is shorter), then under the load; its report (ms). The network,
    its logs and its records stay in `work_dir` under `name`."""
    if offered_per_s <= 0 or duration_s <= 0:
        raise ValueError("offered_per_s and duration_s must be positive")
    inference = inference or e2e.measure_inference_ms()
    wallets = [Wallet.dev(i) for i in range(e2e.DEV_ACCOUNTS)]
    testnet = e2e.Testnet(
        work_dir / (name or f"validators-{validators}"),
        block_time_ms,
        nodes=nodes,
        log_level=log_level,
        validators=validators,
    )
    wall_started = time.perf_counter()
    clients: list[InferchainClient] = []
    watch: CommitWatch | None = None
    try:
        await testnet.start(e2e.START_TIMEOUT_S + START_S_PER_VALIDATOR * validators)
        startup_s = time.perf_counter() - wall_started
        clients = [InferchainClient(url, timeout=e2e.REQUEST_TIMEOUT_S) for url in testnet.urls]
        warmup_s = await e2e.wait_ready(clients, nodes)
        watch = CommitWatch(clients)
        await watch.start()
        chain_id = await clients[0].chain_id()
        nonces = [int((await clients[0].get_account(w.address))["pendingNonce"]) for w in wallets]
        count = max(1, round(offered_per_s * duration_s))
        load = e2e.presign_load(wallets, nonces, chain_id, count, f"validators {validators}")

        procs = validator_processes(testnet)
        loop = asyncio.get_running_loop()
        idle = await idle_cost(
            procs, watch, min(IDLE_S, duration_s / 2) if idle_s is None else idle_s
        )
        follower = e2e.Follower(clients)
        stop_following = asyncio.Event()
        following = asyncio.create_task(follower.run(stop_following))
        histograms_before = await scrape_commits(clients)
        cpu_before = {k: e2e.cpu_seconds(p) for k, p in procs.items()}
        roles_before = testnet.cpu()
        machine_before, own_before = machine_cpu_ticks(), time.process_time()
        started = loop.time()
        records = await e2e.offer_load(clients, load, follower, offered_per_s)
        settled = await e2e.settle(follower, e2e.SETTLE_TIMEOUT_S)
        ended = loop.time()
        cpu_after = {k: e2e.cpu_seconds(p) for k, p in procs.items()}
        roles_after = testnet.cpu()
        machine_after, own_after = machine_cpu_ticks(), time.process_time()
        histograms_after = await scrape_commits(clients)
        rss = {k: rss_bytes(p.pid) / 2**20 for k, p in procs.items() if e2e.alive(p)}
        stop_following.set()
        await following
        await follower.last_word()

        commits = first_commits(watch.seen)
        window = sorted(h for h, t in commits.items() if started <= t <= ended)
        cpu = {k: cpu_after[k] - cpu_before[k] for k in procs}
        validators_s = sum(cpu.values())
        blocks = len(window)
        e2e_figures = await e2e.figures(records, follower, clients[0], block_time_ms, inference)
        report: dict[str, Any] = {
            "validators": validators,
            "settled": settled,
            "windowSeconds": round(ended - started, 2),
            "blocks": blocks,
            "idle": idle,
            "blockIntervalMs": summary_ms(intervals_s(commits, started, ended)),
            "commitSpreadMs": summary_ms(commit_spreads_s(watch.seen, window)),
            "commitLatencyMs": summary_ms(commit_latencies_s(records, watch.seen)),
            "acceptedToCommitMs": summary_ms(
                commit_latencies_s(records, watch.seen, from_answer=True)
            ),
            "heightToCommitMs": height_to_commit(
                [
                    histogram_delta(b, a)
                    for b, a in zip(histograms_before, histograms_after, strict=True)
                ]
            ),
            "commitRounds": commit_rounds(await read_blocks(clients[0], window)),
            "e2e": e2e_figures,
            "cpu": {
                "validatorsSeconds": round(validators_s, 2),
                "perValidatorSeconds": [round(cpu[k], 2) for k in sorted(cpu)],
                "perValidatorMean": round(validators_s / len(cpu), 3) if cpu else None,
                "validatorsMsPerBlock": round(validators_s * 1000 / blocks, 1) if blocks else None,
                "validatorsPercentOfOneCore": round(100 * validators_s / (ended - started), 1),
                "nodesSeconds": round(roles_after["nodes"] - roles_before["nodes"], 2),
                "launcherSeconds": round(
                    roles_after.get("launcher", 0.0) - roles_before.get("launcher", 0.0), 2
                ),
                "benchmarkSeconds": round(own_after - own_before, 2),  # load, follower, watch
                "machineBusyPercent": busy_percent(machine_before, machine_after),
                "cores": os.cpu_count(),
            },
            "rssMiB": {
                "perValidator": [round(rss[k], 1) for k in sorted(rss)],
                "mean": round(sum(rss.values()) / len(rss), 1) if rss else None,
                "max": round(max(rss.values()), 1) if rss else None,
                "total": round(sum(rss.values()), 1),
            },
            "subscriptionErrors": watch.errors,
            "startupSeconds": round(startup_s, 2),
            "warmupSeconds": round(warmup_s, 2),
            "lastStatus": testnet.last_status,
            "records": str(e2e.write_records(testnet.data_dir, records, follower)),
        }
    finally:
        if watch is not None:
            await watch.stop()
        for client in clients:
            await client.close()
        await testnet.stop()
    report["wallSeconds"] = round(time.perf_counter() - wall_started, 1)
    return report


async def validators_per_machine(
    work_dir: Path,
    counts: tuple[int, ...] = VALIDATOR_COUNTS,
    *,
    block_time_ms: int = BLOCK_TIME_MS,
    offered_per_s: float = OFFERED_PER_S,
    duration_s: float = DURATION_S,
    nodes: int = RESOURCE_NODES,
    rounds: int = 1,
) -> dict[str, Any]:
    """`per_validator_count` at each of `counts`, one after the other, `rounds` times over
    (4, 8, 16, 4, 8, 16, ...: a noisy neighbour then weighs on every count), and the growth
    fitted over every run. A count whose network did not start or keep up is reported as
    such and the others still run."""
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"validator counts must be positive, got {counts}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    inference = e2e.measure_inference_ms()
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    for round_ in range(1, rounds + 1):
        for n in counts:
            try:
                run = await per_validator_count(
                    work_dir,
                    n,
                    block_time_ms=block_time_ms,
                    offered_per_s=offered_per_s,
                    duration_s=duration_s,
                    nodes=nodes,
                    inference=inference,
                    name=f"validators-{n}-round-{round_}",
                )
            except (RuntimeError, TransportError, RpcError, TimeoutError) as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("%d validators, round %d: %s", n, round_, first_line)
                run = {"validators": n, "error": first_line[:200]}
                notes.append(
                    f"{n} validators, round {round_}: {type(exc).__name__}: {first_line[:300]}"
                )
            runs.append({"round": round_} | run)
    measured = [r for r in runs if "error" not in r]
    for run in measured:
        if not run["settled"]:
            notes.append(
                f"{run['validators']} validators, round {run['round']}: not every task was "
                f"decided in time"
            )
    return {
        "blockTimeMs": block_time_ms,
        "offeredPerS": offered_per_s,
        "durationS": duration_s,
        "resourceNodes": nodes,
        "counts": list(counts),
        "rounds": rounds,
        "runs": runs,
        "growth": growth(measured),
        "medians": medians_by_count(measured),
        "notes": notes,
    }


# What the targets table shows at each count: (key, the figure's path in a run).
MEDIAN_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("blockIntervalMs", ("blockIntervalMs", "mean")),
    ("commitLatencyP50Ms", ("commitLatencyMs", "p50")),
    ("e2eP50Ms", ("e2e", "latency", "p50_ms")),
)


def medians_by_count(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per validator count, the median over its rounds of each of MEDIAN_FIGURES (of two
    rounds, their mean)."""
    out: dict[str, dict[str, float | None]] = {}
    for n in sorted({int(r["validators"]) for r in runs}):
        of_n = [r for r in runs if r["validators"] == n]
        figures: dict[str, float | None] = {}
        for key, path in MEDIAN_FIGURES:
            values = [v for r in of_n if (v := _dig(r, path)) is not None]
            figures[key] = round(statistics.median(values), 1) if values else None
        out[str(n)] = figures
    return out


def parse_counts(text: str) -> tuple[int, ...]:
    """`4,8,16` as (4, 8, 16); each a positive integer."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"validator-counts: integers separated by commas, got {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"validator-counts: positive integers, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.validators [--validator-counts 4,8,16] [--rate R] [--duration S]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.validators", description=__doc__)
    parser.add_argument("--validator-counts", default="4,8,16", metavar="N,N,...")
    parser.add_argument("--block-time", type=int, default=BLOCK_TIME_MS, metavar="MS")
    parser.add_argument("--rate", type=float, default=OFFERED_PER_S, help="submitTask per second")
    parser.add_argument("--duration", type=float, default=DURATION_S, metavar="S")
    parser.add_argument("--rounds", type=int, default=1, help="every count, this many times")
    parser.add_argument("--work-dir", default=str(REPO / ".data" / "bench"))
    parser.add_argument("--log-level", default="WARNING", type=str.upper)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        counts = parse_counts(args.validator_counts)
    except ValueError as exc:
        parser.error(str(exc))
    report = asyncio.run(
        validators_per_machine(
            Path(args.work_dir),
            counts,
            block_time_ms=args.block_time,
            offered_per_s=args.rate,
            duration_s=args.duration,
            rounds=args.rounds,
        )
    )
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
