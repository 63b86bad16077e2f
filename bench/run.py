"""The whole benchmark: every part in one run on one machine, the targets, the table.

Ingestion runs in rounds: each round measures the bare aiohttp handler, the validator and the
hardhat peer one after the other, so that every ratio compares figures taken a few seconds
apart; the report gives the median over the rounds (the machine may be shared and noisy).
Reads and the end-to-end runs follow. Every figure lands in one JSON document; `table`
renders it for a terminal or for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import floods, ingest, llm, llm_rates, memory, subs
from bench.common import REPO, Throughput
from chain.protocol import crypto

log = logging.getLogger("bench")

SECTIONS = ("ingest", "reads", "e2e", "floods", "memory", "llm", "subscriptions")
PEER_NONE = "none"
PEER_HARDHAT = "hardhat"


@dataclass(frozen=True, slots=True)
class Options:
    genesis_path: Path
    work_dir: Path
    cache_dir: Path
    sections: tuple[str, ...] = SECTIONS
    peer: str = PEER_HARDHAT
    count: int = 3000
    rounds: int = 3
    read_sizes: tuple[int, ...] = (10_000, 1_000_000)
    e2e_block_times: tuple[int, ...] = (1000, 200)
    e2e_duration_s: float = 30.0
    e2e_rates: dict[int, float] = field(default_factory=dict)  # default: bench.e2e.LOADS
    flood_sizes: floods.Sizes = field(default_factory=floods.Sizes)
    flood_attacks: tuple[str, ...] = floods.ATTACKS
    memory_tasks: int = memory.DEFAULT_TASKS
    memory_step: int = memory.DEFAULT_STEP
    llm_tasks: int = llm.DEFAULT_TASKS
    llm_results: int = llm_rates.DEFAULT_RESULTS
    subs_blocks: int = subs.BLOCKS


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: a measured value against its bound."""

    name: str
    value: float | None
    bound: float
    at_most: bool = False  # the value must not exceed the bound (else: reach it)

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": None if self.value is None else round(self.value, 3),
            "bound": self.bound,
            "atMost": self.at_most,
            "met": self.met,
        }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "ethKeysBackend": crypto.eth_keys_backend_name(),
        "commit": commit or None,
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
    }


def _median(figures: Sequence[Throughput]) -> dict[str, Any]:
    """The round with the median rate, and every round's rate."""
    ordered = sorted(figures, key=lambda f: f.rate)
    middle = ordered[len(ordered) // 2]
    return middle.to_json() | {"rounds": [round(f.rate, 1) for f in figures]}


def _median_ratio(tops: Sequence[Throughput], bottoms: Sequence[Throughput]) -> float | None:
    """The median over rounds of top rate / bottom rate; None when a side did not run."""
    if not tops or not bottoms:
        return None
    ratios = [t.rate / b.rate for t, b in zip(tops, bottoms, strict=True) if b.rate > 0]
    return statistics.median(ratios) if ratios else None


async def ingestion(opts: Options) -> dict[str, Any]:
    """Ceilings, the validator and the peer, in rounds."""
    calls = ingest.validator_calls(opts.genesis_path, opts.count)
    peer_note, peer_calls, hardhat_project = None, None, None
    if opts.peer == PEER_HARDHAT:
        from bench import peer

        try:
            hardhat_project = peer.ensure_hardhat(opts.cache_dir)
            per_client = opts.count // ingest.CONCURRENT_CLIENTS + 1
            peer_calls = {
                "sequential": [peer.transfer_calls(peer.HARDHAT_CHAIN_ID, opts.count + 1, 0)],
                "concurrent": [
                    peer.transfer_calls(peer.HARDHAT_CHAIN_ID, per_client, i)
                    for i in range(ingest.CONCURRENT_CLIENTS)
                ],
                "batched": [peer.batch_transfer_calls(peer.HARDHAT_CHAIN_ID, opts.count + 1)],
            }
        except peer.PeerUnavailable as exc:
            peer_note = f"hardhat skipped: {exc}"
            log.warning("%s", peer_note)
    else:
        peer_note = "no peer (--peer none)"

    recovery: list[Throughput] = []
    bare: list[Throughput] = []
    ours: dict[str, list[Throughput]] = {m: [] for m in ingest.MODES}
    committed: dict[str, list[float]] = {m: [] for m in ingest.MODES}
    theirs: dict[str, list[Throughput]] = {m: [] for m in ingest.MODES}
    theirs_logging: list[Throughput] = []  # hardhat as `hardhat node` starts: every call logged
    for r in range(opts.rounds):
        log.info("ingestion round %d of %d", r + 1, opts.rounds)
        recovery.append(ingest.recovery_ceiling(opts.count * 2))
        bare.append(await ingest.bare_ceiling(opts.work_dir, opts.count))
        for mode in ingest.MODES:
            data_dir = opts.work_dir / f"ingest-{mode}-{r}"
            accepted, seconds = await ingest.ingest_validator(
                opts.genesis_path, data_dir, mode, calls[mode]
            )
            shutil.rmtree(data_dir, ignore_errors=True)
            ours[mode].append(accepted)
            committed[mode].append(accepted.count / seconds)
        if peer_calls is not None and hardhat_project is not None:
            from bench import peer

            for mode in ingest.MODES:
                log_path = opts.work_dir / f"hardhat-{mode}-{r}.log"
                with peer.Hardhat(hardhat_project, log_path) as node:
                    theirs[mode].append(await ingest.drive(mode, node.url, peer_calls[mode]))
            log_path = opts.work_dir / f"hardhat-logging-{r}.log"
            with peer.Hardhat(hardhat_project, log_path, log_calls=True) as node:
                sequential = peer_calls["sequential"]
                theirs_logging.append(await ingest.drive("sequential", node.url, sequential))
    out: dict[str, Any] = {
        "count": opts.count,
        "rounds": opts.rounds,
        "recoveryCeiling": _median(recovery),
        "bareAiohttp": _median(bare),
        "validator": {
            m: _median(ours[m]) | {"committedRate": round(statistics.median(committed[m]), 1)}
            for m in ingest.MODES
        },
        "peer": {m: _median(theirs[m]) for m in ingest.MODES} if theirs["sequential"] else None,
        "peerLogging": _median(theirs_logging) if theirs_logging else None,
        "peerNote": peer_note,
    }
    out["ratios"] = {
        "sequentialVsBare": _median_ratio(ours["sequential"], bare),
        "batchedVsRecovery": _median_ratio(ours["batched"], recovery),
        "sequentialVsHardhat": _median_ratio(ours["sequential"], theirs["sequential"]),
        "sequentialVsHardhatLogging": _median_ratio(ours["sequential"], theirs_logging),
        "concurrentVsHardhat": _median_ratio(ours["concurrent"], theirs["concurrent"]),
        "batchedVsHardhat": _median_ratio(ours["batched"], theirs["batched"]),
    }
    return out


async def reads_section(opts: Options) -> dict[str, Any]:
    from bench import reads

    return await reads.reads(opts.genesis_path, opts.cache_dir, opts.work_dir, opts.read_sizes)


async def e2e_section(opts: Options) -> dict[str, Any]:
    from bench import e2e

    runs = {}
    for block_time in opts.e2e_block_times:
        rate = opts.e2e_rates.get(block_time) or e2e.LOADS.get(block_time, 10.0)
        runs[str(block_time)] = await e2e.end_to_end(
            opts.work_dir,
            block_time,
            offered_per_s=rate,
            duration_s=opts.e2e_duration_s,
            log_level="WARNING",
        )
    return runs


async def floods_section(opts: Options) -> dict[str, Any]:
    return await floods.floods(opts.work_dir, opts.flood_sizes, opts.flood_attacks)


async def memory_section(opts: Options) -> dict[str, Any]:
    return await memory.memory_over_tasks(opts.work_dir, opts.memory_tasks, opts.memory_step)


async def llm_section(opts: Options) -> dict[str, Any]:
    return await llm.real_model(opts.work_dir / "llm", opts.llm_tasks, opts.llm_results)


async def subscriptions_section(opts: Options) -> dict[str, Any]:
    return await subs.subscription_latency(
        opts.genesis_path, opts.work_dir, blocks=opts.subs_blocks
    )


def targets(report: dict[str, Any]) -> list[Target]:
    """The issue's targets, from whatever sections ran."""
    out = []
    ingest_part = report.get("ingest")
    if ingest_part is not None:
        ratios = ingest_part["ratios"]
        if ratios["sequentialVsHardhat"] is not None:
            out.append(Target("ingestion sequential / hardhat", ratios["sequentialVsHardhat"], 3))
        out.append(Target("ingestion sequential / bare aiohttp", ratios["sequentialVsBare"], 0.6))
        out.append(Target("ingestion batched / recovery ceiling", ratios["batchedVsRecovery"], 0.5))
    reads_part = report.get("reads")
    if reads_part is not None:
        ratios = reads_part.get("ratios", {})
        out.append(
            Target(
                "queryTask p50, largest / smallest ledger", ratios.get("queryTaskP50"), 1.5, True
            )
        )
        out.append(
            Target(
                "queryPendingTasks p50, largest / smallest ledger",
                ratios.get("queryPendingTasksP50"),
                1.5,
                True,
            )
        )
    for block_time, run in (report.get("e2e") or {}).items():
        target = run.get("target", {})
        out.append(
            Target(
                f"e2e p50 at {block_time} ms, ms ({target.get('blocks')} blocks + inference)",
                run.get("latency", {}).get("p50_ms"),
                float(target.get("boundMs", 0)),
                True,
            )
        )
    return out


async def run(opts: Options, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Every section of `opts.sections`; the JSON report."""
    opts.work_dir.mkdir(parents=True, exist_ok=True)
    opts.cache_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine()}
    if "CoinCurve" not in report["machine"]["ethKeysBackend"]:
        log.warning(
            "eth-keys runs on %s, not coincurve: signatures are about 30x slower and every "
            "figure below is meaningless; install coincurve",
            report["machine"]["ethKeysBackend"],
        )
    started = time.perf_counter()
    for section, part in (
        ("ingest", ingestion),
        ("reads", reads_section),
        ("e2e", e2e_section),
        ("floods", floods_section),
        ("memory", memory_section),
        ("llm", llm_section),
        ("subscriptions", subscriptions_section),
    ):
        if section not in opts.sections:
            continue
        progress(f"{section}: running")
        t0 = time.perf_counter()
        report[section] = await part(opts)
        report.setdefault("seconds", {})[section] = round(time.perf_counter() - t0, 1)
        progress(f"{section}: done in {time.perf_counter() - t0:.0f} s")
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    report["targets"] = [t.to_json() for t in targets(report)]
    return report


def _rate(fig: dict[str, Any] | None) -> str:
    return "-" if fig is None else f"{fig['rate']:,.0f}"


def _lat(fig: dict[str, Any] | None) -> str:
    if fig is None or fig.get("p50_ms") is None:
        return "-"
    return f"{fig['p50_ms']:.2f} / {fig['p99_ms']:.2f}"


def table(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = []
    m = report["machine"]
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"eth-keys {m['ethKeysBackend']}, commit {m['commit']}, {m['date']}"
    )
    part = report.get("ingest")
    if part is not None:
        lines += [
            "",
            f"Ingestion ({part['count']} presigned transactions per run, median of "
            f"{part['rounds']} rounds; rates per second, latency p50 / p99 in ms)",
            "",
            "| server | mode | rate | latency | rounds |",
            "|---|---|---:|---:|---|",
        ]
        for mode in ingest.MODES:
            fig = part["validator"][mode]
            lines.append(
                f"| inferchain validator | {mode} | {_rate(fig)} "
                f"(committed {fig['committedRate']:,.0f}) | {_lat(fig)} | {fig['rounds']} |"
            )
        for mode in ingest.MODES:
            fig = (part["peer"] or {}).get(mode)
            rounds = "-" if fig is None else fig["rounds"]
            lines.append(f"| hardhat node | {mode} | {_rate(fig)} | {_lat(fig)} | {rounds} |")
        fig = part.get("peerLogging")
        if fig is not None:
            lines.append(
                f"| hardhat node, logging every call (its default) | sequential | {_rate(fig)} "
                f"| {_lat(fig)} | {fig['rounds']} |"
            )
        fig = part["bareAiohttp"]
        lines.append(
            f"| bare aiohttp handler | sequential | {_rate(fig)} | {_lat(fig)} | {fig['rounds']} |"
        )
        fig = part["recoveryCeiling"]
        lines.append(f"| eth-keys recoveries | one core | {_rate(fig)} | - | {fig['rounds']} |")
        if part.get("peerNote"):
            lines += ["", f"Peer: {part['peerNote']}"]
    part = report.get("reads")
    if part is not None:
        lines += [
            "",
            "Reads (sequential client; latency p50 / p99 in ms)",
            "",
            "| tasks | queryTask rps | queryTask latency | queryPendingTasks rps "
            "| queryPendingTasks latency | validator RSS | ledger on disk |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size in part.get("sizes", []):
            lines.append(
                f"| {size['tasks']:,} | {_rate(size['queryTask'])} | {_lat(size['queryTask'])} "
                f"| {_rate(size['queryPendingTasks'])} | {_lat(size['queryPendingTasks'])} "
                f"| {size['rssBytes'] / 2**20:,.0f} MiB | {size['diskBytes'] / 2**20:,.0f} MiB |"
            )
        lines += [
            "",
            "The explorer's page loads (its three files, then the page's reads; p50 / p99 in ms)",
            "",
            "| tasks | files alone | a task's page | the blocks page | a block's page |",
            "|---:|---:|---:|---:|---:|",
        ]
        for size in part.get("sizes", []):
            pages = size.get("explorer", {})
            lines.append(
                f"| {size['tasks']:,} | {_lat(pages.get('files'))} | {_lat(pages.get('taskPage'))} "
                f"| {_lat(pages.get('blocksPage'))} | {_lat(pages.get('blockPage'))} |"
            )
    part = report.get("e2e")
    if part is not None:
        lines += [
            "",
            "End to end (default testnet: 4 validators, 3 resource nodes)",
            "",
            "| blockTimeMs | offered/s | verified/s | p50 ms | p99 ms | block interval ms "
            "| bound ms | failed |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for block_time, run in part.items():
            lat = run.get("latency", {})
            lines.append(
                f"| {block_time} | {run.get('offeredPerS')} | {run.get('verifiedPerS')} "
                f"| {lat.get('p50_ms')} | {lat.get('p99_ms')} | {run.get('blockIntervalMs')} "
                f"| {run.get('target', {}).get('boundMs')} | {run.get('failed')} |"
            )
    part = report.get("floods")
    if part is not None:
        lines += ["", *flood_table(part)]
    part = report.get("memory")
    if part is not None:
        lines += ["", *memory_table(part)]
    part = report.get("llm")
    if part is not None:
        lines += ["", *llm_table(part)]
    part = report.get("subscriptions")
    if part is not None:
        lines += ["", *subs.subscriptions_table(part)]
    lines += ["", "Targets", "", "| target | value | bound | met |", "|---|---:|---:|---|"]
    for t in report.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        bound = ("<= " if t["atMost"] else ">= ") + f"{t['bound']:g}"
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['name']} | {value} | {bound} | {met} |")
    lines += ["", f"Ran in {report['seconds']['total']:.0f} s ({report['seconds']})."]
    return "\n".join(lines)


def _ms(fig: dict[str, Any]) -> str:
    if fig.get("p50_ms") is None:
        return "-"
    return f"{fig['p50_ms']:.1f} / {fig['p99_ms']:.1f}"


def _failed(fig: dict[str, Any]) -> str:
    return f"{fig['failed']} of {fig['samples'] + fig['failed']}"


def flood_table(part: dict[str, Any]) -> list[str]:
    """The honest client's figures under each attack (ms, p50 / p99)."""
    lines = [
        f"Under attack (a fresh dev validator per attack; an honest client's read and signed "
        f"transfer, ms p50 / p99; RLIMIT_NOFILE {part['nofile']})",
        "",
        "| attack | size | read during | read baseline | submit during | submit baseline "
        "| honest calls failed | validator RSS MiB before / during / after | survived |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in part["attacks"]:
        during, base, rss = row["during"], row["baseline"], row["rssMiB"]
        failed = during["read"]["failed"] + during["submit"]["failed"]
        total = failed + during["read"]["samples"] + during["submit"]["samples"]
        lines.append(
            f"| {row['attack']} | {row['size']} | {_ms(during['read'])} | {_ms(base['read'])} "
            f"| {_ms(during['submit'])} | {_ms(base['submit'])} | {failed} of {total} "
            f"| {rss['before']} / {rss['during']} / {rss['after']} "
            f"| {'yes' if row['survived'] else '**no**'} |"
        )
    return lines


def memory_table(part: dict[str, Any]) -> list[str]:
    """The validator's RSS over finished tasks."""
    lines = [
        f"Memory over finished tasks ({part['tasks']:,} tasks failing at a one-block deadline, "
        f"{part['senders']} senders; {part['seconds']:.0f} s)",
        "",
        "| finished tasks | validator RSS | anonymous | file-backed (LevelDB's mapped tables) |",
        "|---:|---:|---:|---:|",
    ]
    for sample in part["samples"]:
        lines.append(
            f"| {sample['finished']:,} | {sample['rssMiB']:.1f} MiB | {sample['anonMiB']:.1f} MiB "
            f"| {sample['fileMiB']:.1f} MiB |"
        )
    lines += [
        "",
        f"Growth after the first step: RSS {part['growthAfterFirstStepMiB']:+.1f} MiB, "
        f"anonymous {part['anonGrowthAfterFirstStepMiB']:+.1f} MiB",
    ]
    return lines


def _pct(rate: dict[str, Any]) -> str:
    return f"{rate['n']} of {rate['count']} ({rate['rate'] * 100:.1f}%)"


def llm_table(part: dict[str, Any]) -> list[str]:
    """The real model's rates, verifier's cost and latency."""
    if "skipped" in part:
        return [f"Real model: skipped ({part['skipped']})"]
    lines = [
        f"Real model ({part['model']}, two llama.cpp servers: stock, and {part['serverFlags']})"
    ]
    rates = part.get("rates")
    if rates is not None:
        honest = rates["honest"]
        cost = rates["cost"]
        lines += [
            "",
            "| `scored` | results | wrongly judged |",
            "|---|---:|---:|",
            f"| honest, rejected (fast path identical: {honest['identical']}) "
            f"| {honest['falseReject']['count']} | {_pct(honest['falseReject'])} |",
            f"| honest, rejected by the scoring rules alone "
            f"| {honest['scoringAlone']['falseReject']['count']} "
            f"| {_pct(honest['scoringAlone']['falseReject'])} |",
        ]
        for kind, fig in rates["faulty"]["kinds"].items():
            lines.append(
                f"| faulty ({kind}), accepted | {fig['falseAccept']['count']} "
                f"| {_pct(fig['falseAccept'])} |"
            )
        fa = rates["faulty"]["falseAccept"]
        lines.append(f"| every faulty result, accepted | {fa['count']} | {_pct(fa)} |")
        ratio = cost["scoringSecondsPerToken"] / max(1e-9, cost["generationSecondsPerToken"])
        lines += [
            "",
            f"Verifier's cost ({cost['method']}): scoring {cost['scoringSecondsPerToken']:.3f} "
            f"s/token against generation {cost['generationSecondsPerToken']:.3f} s/token "
            f"({ratio:.1f}x), over {cost['scoredTokens']:,} scored tokens.",
        ]
    lat = part.get("latency")
    if lat is not None:
        lines += [
            "",
            f"Submit to decided, one task at a time ({lat['tasks']} tasks, "
            f"{lat['blockTimeMs']} ms blocks, max_tokens {lat['maxTokens']}, temperature "
            f"{lat['temperature']}): p50 {lat['p50Ms']:,.0f} ms, p95 {lat['p95Ms']:,.0f} ms; "
            f"statuses {lat['statuses']}, honest results rejected {lat['honestRejected']}.",
        ]
    return lines
