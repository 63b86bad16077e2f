"""The whole benchmark: every part in one run on one machine, the targets, the table.

Ingestion runs in rounds: each round measures the ceilings, then in each way of sending the
validator, the hardhat peer and the anvil peer one after the other, so that every ratio compares
figures taken a few seconds apart; the report gives the median over the rounds (the machine may
be shared and noisy), and the targets hold the validator to anvil in each way of sending.
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

from bench import capacity, floods, ingest, llm, llm_rates, memory, nodes, subs, validators
from bench.common import REPO, Throughput
from chain.protocol import crypto
from rpc.client import TransportError

log = logging.getLogger("bench")

SECTIONS = (
    "ingest",
    "reads",
    "e2e",
    "capacity",
    "floods",
    "memory",
    "llm",
    "subscriptions",
    "nodes",
    "validators",
)
PEER_HARDHAT = "hardhat"
PEER_ANVIL = "anvil"
PEER_ALL = "all"
PEER_NONE = "none"
PEERS = (PEER_HARDHAT, PEER_ANVIL)  # what PEER_ALL measures, in this order in each mode
PEER_CHOICES = (PEER_ALL, PEER_ANVIL, PEER_HARDHAT, PEER_NONE)
MODE_LOGGING = "sequential, logging"  # hardhat as `hardhat node` starts: every call logged
# The ingestion targets: the validator's accepted rate over anvil's, the median of the rounds'
# ratios, in each way of sending.
ANVIL_TARGETS = {"sequential": 1.0, "concurrent": 1.5, "batched": 2.0}
# The ratios the table shows besides the targets: (row, key of `ratios` per mode).
INFORMATION_RATIOS = (
    ("hardhat node", "{mode}VsHardhat"),
    ("anvil, until every transaction is in a block (committed / mined)", "{mode}CommittedVsAnvil"),
)
MODE_NAMES = {
    "sequential": "sequential",
    "concurrent": f"concurrent ({ingest.CONCURRENT_CLIENTS} clients)",
    "batched": f"batched ({ingest.BATCH_SIZE} per batch)",
}


@dataclass(frozen=True, slots=True)
class Options:
    genesis_path: Path
    work_dir: Path
    cache_dir: Path
    sections: tuple[str, ...] = SECTIONS
    peer: str = PEER_ALL
    count: int = 3000
    rounds: int = 3
    read_sizes: tuple[int, ...] = (10_000, 1_000_000)
    e2e_block_times: tuple[int, ...] = (1000, 200)
    e2e_duration_s: float = 30.0
    e2e_rates: dict[int, float] = field(default_factory=dict)  # default: bench.e2e.LOADS
    capacity_steps: tuple[float, ...] = capacity.STEPS
    capacity_duration_s: float = capacity.DURATION_S
    flood_sizes: floods.Sizes = field(default_factory=floods.Sizes)
    flood_attacks: tuple[str, ...] = floods.ATTACKS
    memory_tasks: int = memory.DEFAULT_TASKS
    memory_step: int = memory.DEFAULT_STEP
    llm_tasks: int = llm.DEFAULT_TASKS
    llm_results: int = llm_rates.DEFAULT_RESULTS
    subs_blocks: int = subs.BLOCKS
    node_count: int = nodes.NODES
    nodes_block_times: tuple[int, ...] | None = None  # default: 200 ms and the genesis'
    nodes_duration_s: float = nodes.DURATION_S
    validator_counts: tuple[int, ...] = validators.VALIDATOR_COUNTS
    validators_duration_s: float = validators.DURATION_S
    validators_rate: float = validators.OFFERED_PER_S
    validators_rounds: int = 1


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: a measured value against its bound (None: a figure the issue
    asks for without a bound, shown for information)."""

    name: str
    value: float | None
    bound: float | None
    at_most: bool = False  # the value must not exceed the bound (else: reach it)

    @property
    def met(self) -> bool | None:
        if self.value is None or self.bound is None:
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


def _median(figures: Sequence[Throughput | None]) -> dict[str, Any] | None:
    """The round with the median rate, and every round's rate (None: that round gave none)."""
    ordered = sorted((f for f in figures if f is not None), key=lambda f: f.rate)
    if not ordered:
        return None
    middle = ordered[len(ordered) // 2]
    return middle.to_json() | {"rounds": [None if f is None else round(f.rate, 1) for f in figures]}


def _median_of_all(figures: Sequence[Throughput]) -> dict[str, Any]:
    """`_median` of figures every round gave (the validator's, the ceilings')."""
    fig = _median(figures)
    if fig is None:
        raise ValueError("no rounds")
    return fig


def _rates(figures: Sequence[Throughput | None]) -> list[float | None]:
    return [None if f is None else f.rate for f in figures]


def _median_ratio(tops: Sequence[float | None], bottoms: Sequence[float | None]) -> float | None:
    """The median over rounds of top rate / bottom rate, over the rounds where both sides gave
    a rate; None when a side did not run."""
    if not tops or not bottoms:
        return None
    ratios = [
        t / b
        for t, b in zip(tops, bottoms, strict=True)
        if t is not None and b is not None and b > 0
    ]
    return statistics.median(ratios) if ratios else None


def peers_of(choice: str) -> tuple[str, ...]:
    """The peers `--peer` names, in the order each mode measures them."""
    if choice == PEER_ALL:
        return PEERS
    if choice == PEER_NONE:
        return ()
    if choice not in PEERS:
        raise ValueError(f"peer {choice!r}: one of {', '.join(PEER_CHOICES)}")
    return (choice,)


@dataclass(frozen=True, slots=True)
class PeerRun:
    """One run of a peer in one mode: accepted per second, and for anvil (which mines behind
    its answers) the rate until its pool was empty; `failure` says what went wrong, if anything
    did (no figure when a call got no answer, no mined rate when only the pool did not drain)."""

    accepted: Throughput | None
    committed_rate: float | None = None
    failure: str | None = None


async def peer_run(
    name: str, project: Path, mode: str, calls: Sequence[Sequence[ingest.Call]], log_path: Path
) -> PeerRun:
    """A fresh `name` node fed `calls`. A node that does not start or stops answering a call
    gives no figure, one that stops mining no mined rate, and the run says so; a refused call
    stops the benchmark, as for the validator."""
    from bench import peer

    node: peer.Hardhat | peer.Anvil
    if name == PEER_HARDHAT:
        node = peer.Hardhat(project, log_path, log_calls=mode == MODE_LOGGING)
    else:
        node = peer.Anvil(project, log_path)
    accepted = None
    try:
        with node:
            started = time.perf_counter()
            accepted = await ingest.drive(
                "sequential" if mode == MODE_LOGGING else mode, node.url, calls
            )
            if name == PEER_HARDHAT:  # automine: every answer came after its block
                return PeerRun(accepted)
            await peer.wait_mined(node.url)
            return PeerRun(accepted, accepted.count / (time.perf_counter() - started))
    except (peer.PeerUnavailable, TransportError, TimeoutError) as exc:
        # Every call answered but the pool never drained: the accepted rate stands, unmined.
        what = "no figure" if accepted is None else "its accepted rate kept, no mined rate"
        failure = f"{name} {mode}: {type(exc).__name__}: {str(exc).splitlines()[0]} ({what})"
        log.warning("%s (log: %s)", failure, log_path)
        return PeerRun(accepted, failure=failure)


async def ingestion(opts: Options) -> dict[str, Any]:
    """Ceilings, the validator and the peers, in rounds; in each mode the validator, hardhat
    and anvil one after the other."""
    from bench import peer

    calls = ingest.validator_calls(opts.genesis_path, opts.count)
    notes: list[str] = []
    ready: dict[str, tuple[Path, dict[str, list[list[ingest.Call]]]]] = {}
    wanted = peers_of(opts.peer)
    for name in PEERS:
        if name not in wanted:
            notes.append(f"{name} not measured (--peer {opts.peer})")
            continue
        try:
            ensure = peer.ensure_hardhat if name == PEER_HARDHAT else peer.ensure_anvil
            project = ensure(opts.cache_dir)
        except peer.PeerUnavailable as exc:
            notes.append(f"{name} skipped: {exc}")
            log.warning("%s skipped: %s", name, exc)
            continue
        ready[name] = (project, peer.ingestion_calls(name, opts.count, ingest.CONCURRENT_CLIENTS))

    recovery: list[Throughput] = []
    bare: list[Throughput] = []
    ours: dict[str, list[Throughput]] = {m: [] for m in ingest.MODES}
    committed: dict[str, list[float]] = {m: [] for m in ingest.MODES}
    theirs: dict[str, dict[str, list[PeerRun]]] = {
        name: {m: [] for m in (*ingest.MODES, MODE_LOGGING)} for name in ready
    }
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
            for name, (project, peer_calls) in ready.items():
                log_path = opts.work_dir / f"{name}-{mode}-{r}.log"
                got = await peer_run(name, project, mode, peer_calls[mode], log_path)
                theirs[name][mode].append(got)
        if PEER_HARDHAT in ready:  # hardhat as `hardhat node` starts: every call logged
            project, peer_calls = ready[PEER_HARDHAT]
            log_path = opts.work_dir / f"hardhat-logging-{r}.log"
            got = await peer_run(
                PEER_HARDHAT, project, MODE_LOGGING, peer_calls["sequential"], log_path
            )
            theirs[PEER_HARDHAT][MODE_LOGGING].append(got)
    for runs in theirs.values():
        for mode_runs in runs.values():
            notes += [
                f"round {r + 1}, {run.failure}"
                for r, run in enumerate(mode_runs)
                if run.failure is not None
            ]

    def accepted_of(name: str, mode: str) -> list[Throughput | None]:
        return [run.accepted for run in theirs.get(name, {}).get(mode, [])]

    def committed_of(name: str, mode: str) -> list[float | None]:
        return [run.committed_rate for run in theirs.get(name, {}).get(mode, [])]

    out: dict[str, Any] = {
        "count": opts.count,
        "rounds": opts.rounds,
        "recoveryCeiling": _median_of_all(recovery),
        "bareAiohttp": _median_of_all(bare),
        "validator": {
            m: _median_of_all(ours[m])
            | {"committedRate": round(statistics.median(committed[m]), 1)}
            for m in ingest.MODES
        },
        "hardhat": None,
        "hardhatLogging": None,
        "anvil": None,
        "peerNotes": notes,
    }
    if PEER_HARDHAT in theirs:
        out["hardhat"] = {m: _median(accepted_of(PEER_HARDHAT, m)) for m in ingest.MODES}
        out["hardhatLogging"] = _median(accepted_of(PEER_HARDHAT, MODE_LOGGING))
    if PEER_ANVIL in theirs:
        out["anvil"] = {}
        for m in ingest.MODES:
            fig = _median(accepted_of(PEER_ANVIL, m))
            rates = [c for c in committed_of(PEER_ANVIL, m) if c is not None]
            if fig is not None and rates:
                fig["committedRate"] = round(statistics.median(rates), 1)
            out["anvil"][m] = fig
    ratios: dict[str, float | None] = {
        "sequentialVsBare": _median_ratio(_rates(ours["sequential"]), _rates(bare)),
        "batchedVsRecovery": _median_ratio(_rates(ours["batched"]), _rates(recovery)),
        "sequentialVsHardhatLogging": _median_ratio(
            _rates(ours["sequential"]), _rates(accepted_of(PEER_HARDHAT, MODE_LOGGING))
        ),
    }
    for m in ingest.MODES:
        for name, key in ((PEER_HARDHAT, "Hardhat"), (PEER_ANVIL, "Anvil")):
            ratios[f"{m}Vs{key}"] = _median_ratio(_rates(ours[m]), _rates(accepted_of(name, m)))
        ratios[f"{m}CommittedVsAnvil"] = _median_ratio(committed[m], committed_of(PEER_ANVIL, m))
    out["ratios"] = ratios
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


async def capacity_section(opts: Options) -> dict[str, Any]:
    return await capacity.capacity(
        opts.work_dir / "capacity",
        steps=opts.capacity_steps,
        duration_s=opts.capacity_duration_s,
    )


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


async def nodes_section(opts: Options) -> dict[str, Any]:
    return await nodes.nodes_per_validator(
        opts.work_dir / "nodes",
        opts.node_count,
        opts.nodes_block_times,
        duration_s=opts.nodes_duration_s,
    )


async def validators_section(opts: Options) -> dict[str, Any]:
    return await validators.validators_per_machine(
        opts.work_dir,
        opts.validator_counts,
        offered_per_s=opts.validators_rate,
        duration_s=opts.validators_duration_s,
        rounds=opts.validators_rounds,
    )


def targets(report: dict[str, Any]) -> list[Target]:
    """The issue's targets, from whatever sections ran."""
    out = []
    ingest_part = report.get("ingest")
    if ingest_part is not None:
        ratios = ingest_part["ratios"]
        for mode, bound in ANVIL_TARGETS.items():
            out.append(
                Target(f"ingestion {MODE_NAMES[mode]} / anvil", ratios[f"{mode}VsAnvil"], bound)
            )
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
        out.append(
            Target(
                "queryPendingTasks p50 / queryTask p50 (the same rounds, the worst size)",
                ratios.get("pendingOverTaskP50"),
                2.0,
                True,
            )
        )
    nodes_part = report.get("nodes")
    if nodes_part is not None:
        for name, value, bound in nodes.targets_of(nodes_part):
            out.append(Target(name, value, bound, True))
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
    part = report.get("capacity")
    if part is not None:
        out.append(
            Target(
                f"verified per second at {part['blockTimeMs']} ms blocks (the most of any step)",
                part.get("capacityPerS"),
                capacity.CAPACITY_TARGET,
            )
        )
        out.append(
            Target(
                f"e2e p50 at {capacity.CAPACITY_TARGET:g} offered per second, block intervals",
                part.get("p50BlocksAtTarget"),
                capacity.P50_TARGET_BLOCKS,
                True,
            )
        )
        over = part.get("overload")
        if over is not None:
            out.append(
                Target(
                    f"accepted tasks failed at {capacity.OVERLOAD_FACTOR:g}x the capacity, share",
                    over.get("failedShare"),
                    capacity.OVERLOAD_FAILED_TARGET,
                    True,
                )
            )
    part = report.get("validators")
    if part is not None:
        out += validator_targets(part)
    return out


# The growth per added validator (target 5 of the scale issue): figures without a bound.
VALIDATOR_GROWTH_TARGETS = (
    ("blockIntervalMs", "validators: block interval per added validator, ms"),
    ("validatorCpuMsPerBlock", "validators: their CPU per block per added validator, ms"),
    ("commitLatencyP50Ms", "validators: commit latency p50 per added validator, ms"),
    ("e2eP50Ms", "validators: e2e p50 per added validator, ms"),
)
VALIDATOR_COUNT_TARGETS = (  # keys of bench.validators.MEDIAN_FIGURES
    ("blockIntervalMs", "block interval mean"),
    ("commitLatencyP50Ms", "commit latency p50"),
    ("e2eP50Ms", "e2e p50"),
)


def validator_targets(part: dict[str, Any]) -> list[Target]:
    """The growth of `bench.validators` and, at each count, the block interval, the commit
    latency and the e2e p50 (the median of its rounds): for information."""
    out = []
    fits = part.get("growth") or {}
    for key, name in VALIDATOR_GROWTH_TARGETS:
        fit = fits.get(key)
        out.append(Target(name, None if fit is None else fit["perValidator"], None))
    medians = part.get("medians") or {}
    for n in part.get("counts", []):
        figures = medians.get(str(n), {})
        for key, name in VALIDATOR_COUNT_TARGETS:
            out.append(Target(f"validators: {n}, {name}, ms", figures.get(key), None))
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
        ("capacity", capacity_section),
        ("floods", floods_section),
        ("memory", memory_section),
        ("llm", llm_section),
        ("subscriptions", subscriptions_section),
        ("nodes", nodes_section),
        ("validators", validators_section),
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


def _rounds(fig: dict[str, Any] | None) -> str:
    return "-" if fig is None else str(fig["rounds"])


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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
            fig = (part["hardhat"] or {}).get(mode)
            lines.append(f"| hardhat node | {mode} | {_rate(fig)} | {_lat(fig)} | {_rounds(fig)} |")
        fig = part.get("hardhatLogging")
        if fig is not None:
            lines.append(
                f"| hardhat node, logging every call (its default) | sequential | {_rate(fig)} "
                f"| {_lat(fig)} | {_rounds(fig)} |"
            )
        for mode in ingest.MODES:
            fig = (part["anvil"] or {}).get(mode)
            mined = (
                ""
                if fig is None
                else f" (mined {fig['committedRate']:,.0f})"
                if "committedRate" in fig
                else " (never all mined)"
            )
            lines.append(f"| anvil | {mode} | {_rate(fig)}{mined} | {_lat(fig)} | {_rounds(fig)} |")
        fig = part["bareAiohttp"]
        lines.append(
            f"| bare aiohttp handler | sequential | {_rate(fig)} | {_lat(fig)} | {fig['rounds']} |"
        )
        fig = part["recoveryCeiling"]
        lines.append(f"| eth-keys recoveries | one core | {_rate(fig)} | - | {fig['rounds']} |")
        ratios = part["ratios"]
        lines += [
            "",
            "Ratios of the validator's rate, for information (no target; the median of the "
            "rounds' ratios)",
            "",
            "| validator / | sequential | concurrent | batched |",
            "|---|---:|---:|---:|",
        ]
        for label, key in INFORMATION_RATIOS:
            cells = " | ".join(_ratio(ratios.get(key.format(mode=mode))) for mode in ingest.MODES)
            lines.append(f"| {label} | {cells} |")
        lines.append(
            f"| hardhat node, logging every call | {_ratio(ratios['sequentialVsHardhatLogging'])} "
            f"| - | - |"
        )
        lines.append(f"| bare aiohttp handler | {_ratio(ratios['sequentialVsBare'])} | - | - |")
        for note in part.get("peerNotes") or []:
            lines += ["", f"Peer: {note}"]
    part = report.get("reads")
    if part is not None:
        lines += [
            "",
            "Reads (sequential client; latency p50 / p99 in ms)",
            "",
            "| tasks | queryTask rps | queryTask latency | queryPendingTasks rps "
            "| queryPendingTasks latency | pending / task p50 | validator RSS | ledger on disk |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size in part.get("sizes", []):
            lines.append(
                f"| {size['tasks']:,} | {_rate(size['queryTask'])} | {_lat(size['queryTask'])} "
                f"| {_rate(size['queryPendingTasks'])} | {_lat(size['queryPendingTasks'])} "
                f"| {_ratio(size.get('pendingOverTaskP50'))} "
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
    part = report.get("capacity")
    if part is not None:
        lines += ["", *capacity_table(part)]
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
    part = report.get("nodes")
    if part is not None:
        lines += ["", *nodes.table(part)]
    part = report.get("validators")
    if part is not None:
        lines += ["", *validators.validators_table(part)]
    lines += ["", "Targets", "", "| target | value | bound | met |", "|---|---:|---:|---|"]
    for t in report.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        bound = "-" if t["bound"] is None else ("<= " if t["atMost"] else ">= ") + f"{t['bound']:g}"
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['name']} | {value} | {bound} | {met} |")
    lines += ["", f"Ran in {report['seconds']['total']:.0f} s ({report['seconds']})."]
    return "\n".join(lines)


def capacity_table(part: dict[str, Any]) -> list[str]:
    """The steps of the offered load, the knee, and the overload run."""
    lines = [
        f"Capacity (default testnet at {part['blockTimeMs']} ms blocks, overload guard off; "
        f"knee {part.get('kneePerS')} per second offered, capacity "
        f"{part.get('capacityPerS')} verified per second)",
        "",
        "| offered/s | verified/s | p50 ms | p99 ms | p50 blocks | block interval ms "
        "| failed | kept up | CPU % (validators, nodes) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in part.get("steps", []):
        cpu = row.get("cpuPercent") or {}
        lines.append(
            f"| {row['offeredPerS']:g} | {row['verifiedPerS']} | {row['p50Ms']} | {row['p99Ms']} "
            f"| {row['p50Blocks']} | {row['blockIntervalMs']} | {row['failed']} "
            f"| {'yes' if row['keptUp'] else 'no'} "
            f"| {cpu.get('validators', '-')}, {cpu.get('nodes', '-')} |"
        )
    over = part.get("overload")
    if over is not None:
        share = over.get("failedShare")
        lines += [
            "",
            f"Overload, guard on: {over['offeredPerS']:.0f} offered per second, "
            f"{over.get('accepted')} accepted, {over.get('failed')} of them failed "
            f"({'-' if share is None else f'{100 * share:.2f}%'}), {over.get('refusals')} "
            f"refusals, {over.get('verifiedPerS')} verified per second, p50 {over.get('p50Ms')} ms",
        ]
    return lines


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
