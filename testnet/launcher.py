"""The testnet supervisor: run a local inferchain network until Ctrl-C (`make testnet`, which
runs `scripts/testnet.py`).

Derives the genesis of N validators from `genesis.json` (`with_dev_validators`) into the data
directory, starts the validators, each told the RPC URLs of the others, then M resource nodes
spread over them (node i talks to validator i mod N); only those M are registered in the
derived genesis. Every process has its own data directory
and log file. Prints the RPC URLs, the chain id and the dev accounts, submits one demo task and
prints its verified result, then keeps a live status line. Ctrl-C or SIGTERM stops every
process cleanly.

Before it starts anything it checks that no network runs there already: its own lock in the
data directory (`launcher.lock`, with `launcher.json` saying who holds it), the LevelDB LOCK
of every validator ledger, and the RPC ports. A process that exits later is reported (name,
exit code, the tail of its log) and the rest keep running; the status line counts the
processes running and says when too few validators run to make blocks. With `--restart` an
exited process is started again after a backoff. The launcher gives up only when no validator
runs and none will be restarted.

`--models` gives each resource node its models (written into its genesis entry, which is
what the chain routes by, and passed to the node as its `--models`); `--byzantine` gives nodes
their faults (the resource node's `--fault` specs). How a list maps to the nodes is in
`node_models` and `node_faults`.

With `--perturb` it then injects faults in a loop (`testnet.perturb`: pause, disconnect,
restart, foreign genesis, resource node kill) and prints what it did and whether the network
recovered each time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from chain.protocol import wire
from chain.protocol.errors import GenesisError
from chain.protocol.genesis import (
    RESOURCE_NODE_KEY_OFFSET,
    VALIDATOR_KEY_OFFSET,
    Genesis,
    parse_genesis,
    parse_genesis_file,
    with_dev_validators,
)
from resource_node.backends.faults import Faults
from rpc.client import InferchainClient, RpcError, TransportError, Wallet
from testnet import compose, netns, perturb
from testnet.network import Network, Placement, health_of
from testnet.process import REPO, LaunchError, Process, log_tail

log = logging.getLogger("testnet")
T = TypeVar("T")

REQUEST_TIMEOUT_S = 5.0
STATUS_INTERVAL_S = 1.0
EXIT_POLL_S = 0.2
STOP_TIMEOUT_S = 15.0
DEMO_TIMEOUT_S = 120.0
MAX_VALIDATORS = RESOURCE_NODE_KEY_OFFSET - VALIDATOR_KEY_OFFSET
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_TAIL_LINES = 8  # of an exited process's log, printed with its exit
RESTART_FIRST_S = 1.0  # --restart: the first restart of a process waits this long,
RESTART_MAX_S = 30.0  # each next one twice as long, up to this,
RESTART_RESET_S = 60.0  # and a process that ran this long starts again from the first delay
LOCK_FILE = "launcher.lock"  # flock-ed by the launcher running on a data directory
PID_FILE = "launcher.json"  # who holds it: the launcher's pid, its URLs, its processes' pids
MODEL_LISTS_SEPARATOR = ";"  # --models: between the nodes' lists (a list's models take ",")
FAULTS_JOIN = "+"  # --byzantine: between one node's faults (the nodes' specs take ",")
ALL_MODELS = "*"  # a node's models: every model
HONEST = "*"  # --byzantine: the spec of an honest node (as is an empty one)
DEMO_MODEL = "demo"  # the demo task's model: it needs a node to compute and one to verify
EMIT_FORMATS = ("compose",)
MAX_LOSS_PERCENT = 50.0  # --loss: beyond half the packets lost TCP barely moves


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (`argv`, default sys.argv's), checked: a bad option exits 2 with a
    message naming it."""
    parser = argparse.ArgumentParser(description="Run a local inferchain network")
    parser.add_argument(
        "--genesis", default=str(REPO / "genesis.json"), help="genesis to derive the network from"
    )
    parser.add_argument(
        "--validators", type=int, default=4, metavar="N", help="validators to run (default 4)"
    )
    parser.add_argument(
        "--nodes", type=int, default=3, metavar="M", help="resource nodes to run (default 3)"
    )
    parser.add_argument(
        "--data-dir",
        default=str(REPO / ".data" / "testnet"),
        help="where the genesis, the ledgers and the logs go; it holds one chain",
    )
    parser.add_argument(
        "--port", type=int, default=8545, help="RPC port of validator 0; validator k: port + k"
    )
    parser.add_argument(
        "--node-port",
        type=int,
        default=9100,
        metavar="P",
        help="HTTP port of resource node 0 (Infernet, Ocean, status); node i: P + i; 0: free "
        "ports (each node registers its URL on the chain)",
    )
    parser.add_argument(
        "--ao-port",
        type=int,
        default=8700,
        metavar="P",
        help="HTTP port of the AO unit (PROTOCOL 8); 0: a free one",
    )
    parser.add_argument("--no-ao", action="store_true", help="do not start the AO unit")
    parser.add_argument("--block-time", type=int, metavar="MS", help="override blockTimeMs")
    parser.add_argument(
        "--models",
        metavar="LISTS",
        help="the models of each resource node, one comma-separated list per node separated "
        "by ';' from node 0 on, e.g. 'demo,llama;demo;*' (a node without a list, or with an "
        "empty one, keeps the models of its genesis entry)",
    )
    parser.add_argument(
        "--byzantine",
        metavar="SPECS",
        help="faults of resource nodes as --fault specs: one spec is the last node's (e.g. "
        "wrong:0.5); several, comma-separated, are nodes 0, 1, ... in order (e.g. "
        "'wrong:1,lazy,*'; '*' or empty: honest; a node's faults joined with '+', e.g. "
        "wrong:0.5+slow:1); nodes without a spec are honest",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete the chain in --data-dir and start a new one"
    )
    parser.add_argument("--no-demo", action="store_true", help="do not submit the demo task")
    parser.add_argument(
        "--no-overload-guard",
        action="store_true",
        help="validators admit new tasks past what the network verifies in time (PROTOCOL 5.11)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start a process that exits again, after a backoff of 1 s doubling up to 30 s",
    )
    parser.add_argument(
        "--perturb",
        action="store_true",
        help="inject faults in a loop and report whether the network recovers each time",
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="run every process in its own network namespace, on its own address of a "
        "private subnet, the links between them delayed as --latency says (root only)",
    )
    parser.add_argument(
        "--latency",
        choices=netns.LATENCIES,
        help="with --netns: the links' delay: none (the default), lan (RTT 1 ms) or wan "
        "(four regions, RTTs of 52-146 ms)",
    )
    parser.add_argument(
        "--loss",
        type=float,
        metavar="PERCENT",
        help="with --netns: each packet is lost with this probability on each link (0-50)",
    )
    parser.add_argument(
        "--emit",
        nargs=2,
        metavar=("FORMAT", "DIR"),
        help="write the network as a project of another engine into DIR and exit, instead of "
        "running it: FORMAT compose (a Docker Compose project; see the README)",
    )
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    if args.emit is not None:
        if args.emit[0] not in EMIT_FORMATS:
            parser.error(f"--emit: FORMAT {', '.join(EMIT_FORMATS)}, got {args.emit[0]!r}")
        for option, given in (
            ("--netns", args.netns),
            ("--perturb", args.perturb),
            ("--restart", args.restart),
        ):
            if given:
                parser.error(f"--emit writes a project and exits: {option} does not apply")
        if args.node_port == 0 or args.ao_port == 0:
            parser.error("--emit: the published ports are fixed: --node-port and --ao-port > 0")
    if not args.netns and (args.latency is not None or args.loss is not None):
        parser.error("--latency and --loss are the links of --netns: add --netns")
    if args.loss is not None and not 0 <= args.loss <= MAX_LOSS_PERCENT:
        parser.error(f"--loss: a percentage between 0 and {MAX_LOSS_PERCENT:g}")
    if args.netns and (why := netns.unusable()) is not None:
        parser.error(why)
    if not 1 <= args.validators <= MAX_VALIDATORS:
        parser.error(f"--validators: between 1 and {MAX_VALIDATORS}")
    if not 1 <= args.port <= 65536 - args.validators:
        parser.error(f"--port: validators use ports {args.port}..{args.port + args.validators - 1}")
    if args.node_port != 0 and not 1 <= args.node_port <= 65536 - args.nodes:
        parser.error(
            f"--node-port: nodes use ports {args.node_port}..{args.node_port + args.nodes - 1}"
        )
    if args.block_time is not None and args.block_time < 0:
        parser.error("--block-time: milliseconds, 0 or more")
    if args.block_time == 0 and args.validators > 1:
        parser.error("--block-time 0 (automine) needs --validators 1")
    if args.nodes < 0:
        parser.error("--nodes: 0 or more")
    if args.byzantine is not None and args.nodes == 0:
        parser.error("--byzantine: there is no resource node to make faulty")
    if args.models is not None and args.nodes == 0:
        parser.error("--models: there is no resource node to give models to")
    try:
        args.node_models = node_models(args.models, args.nodes)
    except ValueError as exc:
        parser.error(f"--models: {exc}")
    try:
        args.node_faults = node_faults(args.byzantine, args.nodes)
    except ValueError as exc:
        parser.error(f"--byzantine: {exc}")
    return args


def node_models(text: str | None, nodes: int) -> dict[int, str]:
    """`--models`: resource node i -> the models it serves, a comma-separated list as a
    genesis entry's `models` holds it (PROTOCOL 2), for the nodes that are given one.

    The lists are separated by `;` and taken in order, the first for node 0; within a list
    the models are separated by `,` and `*` is every model. A node after the last list, or
    whose list is empty, is not in the answer: it keeps its genesis entry's models. ValueError
    for more lists than `nodes`, or a list of commas that names no model."""
    if text is None:
        return {}
    lists = text.split(MODEL_LISTS_SEPARATOR)
    if len(lists) > nodes:
        raise ValueError(
            f"{len(lists)} model lists for {_count(nodes, 'resource node')} (--nodes {nodes})"
        )
    models: dict[int, str] = {}
    for i, listed in enumerate(lists):
        if not listed.strip():
            continue
        names = [name.strip() for name in listed.split(",") if name.strip()]
        if not names:
            raise ValueError(f"list {i + 1} ({listed!r}, node {i}) names no model; use * for all")
        models[i] = ",".join(names)
    return models


def serving(genesis: Genesis, model: str) -> list[int]:
    """The resource nodes of `genesis` whose models include `model` (or `*`), by index."""
    return [
        i
        for i, node in enumerate(genesis.resource_nodes)
        if {ALL_MODELS, model} & {name.strip() for name in node.models.split(",")}
    ]


def node_faults(text: str | None, nodes: int) -> dict[int, str]:
    """`--byzantine`: resource node i -> its `--fault` spec, for the faulty nodes.

    One spec (no comma) is the fault of the last node, node `nodes - 1`. Several,
    comma-separated, are taken in order, the first for node 0; a node after the last spec is
    honest. A spec `*` or empty is an honest node; one node's several faults are joined with
    `+` (`wrong:0.5+slow:1`), since the comma separates the nodes. Every spec is checked by the
    resource node's own parser (`Faults.parse`); ValueError naming the spec that fails it, or
    for more specs than `nodes`."""
    if text is None:
        return {}
    specs = text.split(",")
    if len(specs) > nodes:
        raise ValueError(
            f"{len(specs)} specs for {_count(nodes, 'resource node')} (--nodes {nodes})"
        )
    first = nodes - 1 if len(specs) == 1 else 0
    faults: dict[int, str] = {}
    for offset, spec in enumerate(specs):
        i = first + offset
        if spec.strip() in ("", HONEST):
            continue
        fault = ",".join(part.strip() for part in spec.split(FAULTS_JOIN))
        try:
            parsed = Faults.parse([fault])
        except ValueError as exc:
            raise ValueError(f"spec {spec!r} (node {i}): {exc}") from None
        if parsed.describe():
            faults[i] = fault
    return faults


class StatusLine:
    """One line rewritten in place on a terminal; plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.open = False

    def show(self, text: str) -> None:
        if self.tty:
            print("\r\033[K" + text, end="", flush=True)
            self.open = True
        else:
            print(text, flush=True)

    def end(self) -> None:
        if self.open:
            print(flush=True)
            self.open = False


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a process sits in the network: validator k or resource node i."""

    kind: str  # "validator" or "node"
    index: int


class Testnet:
    """One run: the network (`testnet.network.Network`, the `perturb.Cluster` of
    `--perturb`), its banner, its demo task, its status line and the supervision of its
    processes."""

    def __init__(
        self,
        args: argparse.Namespace,
        genesis: Genesis,
        data_dir: Path,
        lock: DataDirLock,
        plan: netns.Plan | None = None,
    ) -> None:
        self.args = args
        self.genesis = genesis
        self.lock = lock
        self.net = Network(
            genesis,
            data_dir,
            [args.port + k for k in range(args.validators)],
            block_time_ms=args.block_time,
            log_level=args.log_level,
            node_faults=args.node_faults,
            node_ports=node_ports(args),
            request_timeout_s=REQUEST_TIMEOUT_S,
            validator_extra=["--no-overload-guard"] if args.no_overload_guard else [],
            placement=plan,
        )
        self.plan = plan
        self.stop = asyncio.Event()
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.status = StatusLine()
        self.powers = [validator.stake for validator in genesis.validators]
        self.quorum = True
        self.handled: set[Process] = set()  # the processes whose exit was handled
        self.restarts: dict[Slot, asyncio.Task[None]] = {}
        self.attempts: dict[Slot, int] = {}
        self.started_at: dict[Process, float] = {}  # when each was first seen running

    async def close(self) -> None:
        for task in self.restarts.values():
            task.cancel()
        await asyncio.gather(*self.restarts.values(), return_exceptions=True)
        await self.net.close_clients()
        self.status.end()
        self.net.stop(STOP_TIMEOUT_S)

    async def guard(self, work: Awaitable[T]) -> T:
        """`await work`, unless a signal comes first (Stopped) or the network cannot go on
        (LaunchError)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        failed = asyncio.ensure_future(asyncio.shield(self.failed))
        try:
            await asyncio.wait({task, stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (task, stopped, failed):
                future.cancel()
            await asyncio.gather(task, stopped, failed, return_exceptions=True)
        if task.done() and not task.cancelled():
            return task.result()
        if stopped.done() and not stopped.cancelled():
            raise Stopped
        raise LaunchError(self.failed.result())

    def slots(self) -> list[tuple[Slot, Process]]:
        """The last process of every validator and resource node started so far."""
        found = [
            (Slot("validator", k), process)
            for k, process in enumerate(self.net.validators)
            if process is not None
        ]
        found += [(Slot("node", i), process) for i, process in self.net.nodes.items()]
        if self.net.ao is not None:
            found.append((Slot("ao", 0), self.net.ao))
        return found

    def running_validators(self) -> list[int]:
        return [k for k, p in enumerate(self.net.validators) if p is not None and p.running()]

    async def supervise(self) -> None:
        """Watch every process: report each exit that was not asked for, restart it with
        `--restart`, say when the validators that run hold too little power to make blocks,
        and fail the run when no validator runs and none is being restarted."""
        loop = asyncio.get_running_loop()
        while True:
            for slot, process in self.slots():
                self.started_at.setdefault(process, loop.time())
                if slot in self.restarts:
                    continue  # its restart reports how that ends
                if process in self.handled or process.exit_expected or process.running():
                    continue
                self.handled.add(process)
                self.report_exit(process)
                if self.args.restart:
                    ran = loop.time() - self.started_at[process]
                    if ran >= RESTART_RESET_S:
                        self.attempts.pop(slot, None)
                    self.restarts[slot] = asyncio.create_task(self.restart(slot, process.name))
            self.check_quorum()
            restarting = any(slot.kind == "validator" for slot in self.restarts)
            if not self.running_validators() and not restarting and not self.failed.done():
                self.failed.set_result(
                    "no validator runs any more: the network is stopped. `make testnet` "
                    f"starts it again on the same chain (data directory {self.net.root})"
                )
                return
            await asyncio.sleep(EXIT_POLL_S)

    def report_exit(self, process: Process) -> None:
        assert process.proc is not None
        code = process.proc.returncode
        if code == process.may_exit_with:
            how = f"exited with code {code}, as its fault says"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name} (exit code {code})"
        else:
            how = f"exited with code {code}"
        lines = [f"{process.name} (pid {process.pid}) {how}; the others keep running"]
        tail = log_tail(process.log_path, LOG_TAIL_LINES)
        if tail:
            lines.append(f"  the last lines of its log {process.log_path}:")
            lines += [f"    {line}" for line in tail]
        else:
            lines.append(f"  its log {process.log_path} is empty")
        if not self.args.restart:
            lines.append("  (run with --restart to start exited processes again)")
        self.say("\n".join(lines))

    def check_quorum(self) -> None:
        """Say once when the running validators hold 2/3 of the power or less (no block can
        commit, PROTOCOL 6.1), and once when they hold more again."""
        running = self.running_validators()
        power = sum(self.powers[k] for k in running)
        total = sum(self.powers)
        quorum = 3 * power > 2 * total
        if quorum == self.quorum:
            return
        self.quorum = quorum
        counts = f"validators {len(running)}/{len(self.powers)} run"
        if quorum:
            self.say(f"blocks can commit again: {counts}, more than 2/3 of the voting power")
        else:
            self.say(
                f"the network cannot make blocks: {counts}, holding {100 * power // total}% of "
                "the voting power, and a block needs more than 2/3. It resumes where it stopped "
                "once enough validators run again"
                + ("" if self.args.restart else " (start the network again, or use --restart)")
            )

    async def restart(self, slot: Slot, name: str) -> None:
        """Start an exited process again after its backoff (RESTART_FIRST_S, doubling up to
        RESTART_MAX_S); an exit during its start is handled by `supervise` like any other."""
        try:
            await self._restart(slot, name)
        finally:
            self.restarts.pop(slot, None)

    async def _restart(self, slot: Slot, name: str) -> None:
        attempt = self.attempts.get(slot, 0) + 1
        self.attempts[slot] = attempt
        delay = min(RESTART_FIRST_S * 2 ** (attempt - 1), RESTART_MAX_S)
        self.say(f"restarting {name} in {delay:g} s (restart {attempt})")
        await asyncio.sleep(delay)
        try:
            if slot.kind == "validator":
                await self.net.start_validator(slot.index)
            elif slot.kind == "ao":
                await self.net.start_ao(self.args.ao_port)
            else:
                await self.net.start_node(slot.index)
        except LaunchError as exc:
            process = self.net.validators[slot.index] if slot.kind == "validator" else None
            if process is not None and process.running():
                log.warning("%s", exc)  # it runs but does not answer: it is not retried
            return
        process = dict(self.slots())[slot]
        self.say(f"{name} restarted (pid {process.pid})")
        self.write_pid_file()

    def say(self, text: str) -> None:
        self.status.end()
        print(text, flush=True)

    def write_pid_file(self) -> None:
        self.lock.record(
            {
                "launcher": os.getpid(),
                "urls": self.net.urls,
                "processes": {
                    process.name: process.pid for _, process in self.slots() if process.running()
                },
            }
        )

    async def perturb_forever(self) -> None:
        round_ = 0
        while True:
            self.status.end()
            print(f"perturbation round {round_ + 1}", flush=True)
            for outcome in await perturb.one_round(self.net, round_):
                self.status.end()
                print("  " + outcome.line(), flush=True)
            self.status.show(await self.status_text())
            round_ += 1

    def print_banner(self) -> None:
        genesis, net = self.genesis, self.net
        print(
            f"inferchain testnet: chain {genesis.chain_id} ({genesis.symbol}), "
            f"{_count(net.size, 'validator')}, "
            f"{_count(net.node_count, 'resource node')}"
        )
        print(f"  genesis {net.genesis_path} ({wire.hex0x(genesis.hash)})")
        for process, url in zip(net.validators, net.urls, strict=True):
            assert process is not None
            print(f"  {process.name:<16} RPC {url}  pid {process.pid}  log {process.log_path}")
        for i, process in net.nodes.items():
            via = net.urls[i % net.size]
            print(
                f"  {process.name:<16} HTTP {process.url} (Infernet /api/jobs, Ocean "
                f"/api/services)  via {via}  pid {process.pid}  log {process.log_path}"
            )
        if net.ao is not None:
            print(
                f"  {net.ao.name:<16} HTTP {net.ao.url} (processes, messages, scheduler, "
                f"compute, messenger, cron)  pid {net.ao.pid}  log {net.ao.log_path}"
            )
        if net.ao is not None and net.apus is not None:
            for line in apus_lines(net.ao.url, net.apus):
                print(line)
        if self.plan is not None:
            plan = self.plan
            print(
                f"  namespaces {plan.prefix}-* on {plan.subnet}.0/24 (the launcher at "
                f"{plan.gateway.address}); one-way delay to the core by region, rtt(a, b) = "
                "2 (d(a) + d(b))"
                + (f", jitter up to {plan.jitter_ms:g} ms" if plan.jitter_ms else "")
                + (f", loss {100 * plan.loss:g}% per link" if plan.loss else "")
            )
            for host in plan.hosts:
                print(
                    f"    {host.name:<12} {host.address:<14} {host.region} ({host.delay_ms:g} ms)"
                )
        print(f"  launcher pid {os.getpid()} (recorded in {self.lock.pid_path})")
        dev_keys = genesis.dev_keys()
        if dev_keys:
            print("\nDev accounts (unlocked: calls from them may omit signature and nonce)")
            for i, (address, key) in enumerate(dev_keys.items()):
                print(f"  ({i}) {address}  {wire.hex0x(key)}")
        print(flush=True)

    async def demo_task(self) -> None:
        """Submit one task to validator 0 and print how it ended."""
        client = self.net.client(0)
        try:
            receipt = await client.submit_task(
                Wallet.dev(0),
                prompts='{"prompt":"Translate to French: Hello, world!"}',
                model_options=json.dumps({"model": DEMO_MODEL, "max_tokens": 16}),
                target_count=1,
            )
            print(f"demo task {receipt.task_hash}", flush=True)
            task = await client.wait_for_task(receipt.task_hash, timeout=DEMO_TIMEOUT_S)
        except (RpcError, TransportError, TimeoutError) as exc:
            log.error("demo task: %s; the resource node logs may say why", exc)
            return
        print(
            f"  {task['status']} at block {task['finishedHeight']}: {task['response']!r}\n",
            flush=True,
        )

    async def status_text(self) -> str:
        clients = self.net.clients
        healths = await asyncio.gather(*(health_of(client) for client in clients))
        up = [health for health in healths if health is not None]
        parts = []
        if up:
            low = min(health["height"] for health in up)
            high = max(health["height"] for health in up)
            parts.append(f"height {low}" if low == high else f"height {low}..{high}")
        else:
            parts.append("height ?")
        if healths[0] is not None and healths[0].get("round") is not None:
            parts.append(f"round {healths[0]['round']}")
        parts.append(f"validators {len(self.running_validators())}/{self.net.size}")
        stats = await _task_stats([c for c, h in zip(clients, healths, strict=True) if h])
        if stats is not None:
            counts = " ".join(f"{k}={v}" for k, v in stats.items() if k != "total" and v)
            parts.append(f"tasks {stats['total']} ({counts or 'none'})")
        running = sum(process.running() for process in self.net.nodes.values())
        parts.append(f"nodes {running}/{self.net.node_count}")
        if not self.quorum:
            parts.append("NO QUORUM: no blocks")
        return "  ".join(parts)

    async def run(self) -> None:
        for k in range(self.net.size):
            self.net.spawn_validator(k)
        await self.guard(self.net.wait_serving())
        nodes = [self.net.spawn_node(i) for i in range(self.args.nodes)]
        # Ready before the demo task: a task fails at its compute deadline (20 blocks of the
        # dev chain) when no node has started by then, and a loaded machine is that slow.
        await self.guard(asyncio.gather(*(asyncio.to_thread(n.wait_ready) for n in nodes)))
        if not self.args.no_ao:
            await self.guard(self.net.start_ao(self.args.ao_port))
        self.write_pid_file()
        self.print_banner()
        supervisor = asyncio.create_task(self.supervise())
        try:
            if self.args.no_demo:
                pass
            elif self.net.node_count < 2:
                log.info(
                    "no demo task: another resource node verifies a result; run --nodes 2 or more"
                )
            elif len(serving(self.genesis, DEMO_MODEL)) < 2:
                log.info(
                    "no demo task: fewer than two resource nodes serve the model %s, and "
                    "another node than its own verifies a result (--models)",
                    DEMO_MODEL,
                )
            else:
                await self.guard(self.demo_task())
            if self.args.perturb:
                await self.guard(self.perturb_forever())
            while True:
                self.status.show(await self.guard(self.status_text()))
                await self.guard(asyncio.sleep(STATUS_INTERVAL_S))
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)


def apus_lines(url: str, apus: dict[str, Any]) -> list[str]:
    """The banner's lines for the APUS processes the AO unit ships: their ids and, when a
    dev account holds credits, a recipe to ask the router a question with curl."""
    router = apus["router"]
    lines = [
        f"  APUS token {apus['token']}  AI router {router}  (bridge {apus['bridge']} pays the "
        "tasks' fees)"
    ]
    client = apus.get("devClient")
    if client:
        infer = json.dumps(
            {
                "to": router,
                "tags": [
                    {"name": "Action", "value": "Infer"},
                    {"name": "X-Prompt", "value": "Who are you?"},
                    {"name": "X-Reference", "value": "q1"},
                ],
            },
            separators=(",", ":"),
        )
        lines.append(
            f"  ask the router (as dev account 0, which holds credits): curl -s {url}/message "
            f"-d '{infer}'; the answer: curl -s {url}/{router}~process@1.0/now/cache/tasks/"
            f"{client}-q1"
        )
    return lines


async def _task_stats(clients: list[InferchainClient]) -> dict[str, Any] | None:
    for client in clients:
        with contextlib.suppress(TransportError, RpcError):
            return await client.task_stats()
    return None


class DataDirLock:
    """The launcher's hold on its data directory: an exclusive flock on LOCK_FILE for as long
    as it runs, and PID_FILE saying who holds it (removed at the end)."""

    def __init__(self, data_dir: Path, file: IO[bytes]) -> None:
        self.data_dir = data_dir
        self.pid_path = data_dir / PID_FILE
        self._file = file

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """The lock; LaunchError saying who holds it if another launcher does."""
        data_dir.mkdir(parents=True, exist_ok=True)
        file = (data_dir / LOCK_FILE).open("ab")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise LaunchError(already_running(data_dir)) from None
        return cls(data_dir, file)

    def record(self, info: dict[str, Any]) -> None:
        partial = self.pid_path.with_suffix(".partial")
        partial.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        partial.replace(self.pid_path)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        self._file.close()  # releases the flock; the file stays, unlinking it would race


def already_running(data_dir: Path) -> str:
    """Who holds `data_dir`, from its PID_FILE, and how to reach or stop that network."""
    try:
        info = json.loads((data_dir / PID_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    info = info if isinstance(info, dict) else {}
    pid, urls, processes = info.get("launcher"), info.get("urls"), info.get("processes")
    urls = [str(url) for url in urls] if isinstance(urls, list) else []
    pid = pid if isinstance(pid, int) else None
    lines = [
        f"a testnet is already running in {data_dir}"
        + (f" (launcher pid {pid})" if pid else "")
        + "; nothing was started"
    ]
    if urls:
        lines.append(f"  use it: its validators answer at {', '.join(urls)}")
        lines.append(f"    (curl -s {urls[0]}/health)")
    if pid:
        lines.append(f"  stop it: Ctrl-C in its terminal, or kill {pid}")
    if isinstance(processes, dict) and processes:
        listed = ", ".join(f"{name} pid {number}" for name, number in processes.items())
        lines.append(f"  its processes: {listed}")
    lines.append("  or run another network beside it: another --data-dir and --port")
    return "\n".join(lines)


def held_ledgers(data_dir: Path) -> list[tuple[Path, int | None]]:
    """The validator ledgers in `data_dir` whose LevelDB LOCK another process holds (a
    validator that outlived its launcher), each with the holder's pid when Linux says it."""
    held = []
    for lock in sorted(data_dir.glob("validator-*/LOCK")):
        try:
            with lock.open("r+b") as file:
                try:
                    fcntl.lockf(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    held.append((lock.parent, lock_holder(lock)))
                else:
                    fcntl.lockf(file.fileno(), fcntl.LOCK_UN)
        except OSError:
            continue  # unreadable or gone: the validator says why when it opens it
    return held


def lock_holder(path: Path) -> int | None:
    """The pid holding a POSIX lock on `path`, from /proc/locks (Linux); None if unknown."""
    try:
        inode = path.stat().st_ino
        table = Path("/proc/locks").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in table.splitlines():
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; "->" marks a waiting request
        fields = line.split()
        if len(fields) < 6 or "->" in fields:
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit():
            return int(fields[4])
    return None


def ports_in_use(ports: list[int]) -> list[int]:
    """The ports of `ports` that cannot be bound on 127.0.0.1 now (something listens)."""
    busy = []
    for port in ports:
        with socket.socket() as probe:
            # As aiohttp binds: a port left in TIME_WAIT by a network just stopped is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def node_ports(args: argparse.Namespace) -> list[int] | None:
    """The HTTP ports of the resource nodes (`--node-port`), or None for free ones."""
    if args.node_port == 0:
        return None
    return [args.node_port + i for i in range(args.nodes)]


async def check_nothing_runs(
    data_dir: Path, ports: list[int], node_ports: list[int] | None = None
) -> None:
    """LaunchError, saying what runs and how to reach or stop it, if a validator still holds a
    ledger of `data_dir` or one of `ports` (the validators') or `node_ports` is taken."""
    held = held_ledgers(data_dir)
    if held:
        lines = [f"a validator is still running on the data directory {data_dir}:"]
        for ledger, pid in held:
            owner = f"pid {pid}" if pid is not None else "a process"
            lines.append(f"  {owner} holds the LevelDB LOCK of {ledger}")
        pids = " ".join(str(pid) for _, pid in held if pid is not None)
        lines.append(
            "  nothing was started; stop it first"
            + (f" (kill {pids})" if pids else "")
            + ", or choose another --data-dir"
        )
        raise LaunchError("\n".join(lines))
    busy = ports_in_use(ports)
    if busy:
        url = f"http://127.0.0.1:{busy[0]}"
        taken = f"port {busy[0]} is" if len(busy) == 1 else f"ports {', '.join(map(str, busy))} are"
        lines = [
            f"{taken} already in use on 127.0.0.1 (validator k listens on {ports[0]} + k): "
            "nothing was started",
            f"  {await _describe_listener(url)}",
            "  stop what runs there, or choose another --port (and --data-dir)",
        ]
        raise LaunchError("\n".join(lines))
    busy = ports_in_use(node_ports or [])
    if busy:
        assert node_ports is not None
        taken = f"port {busy[0]} is" if len(busy) == 1 else f"ports {', '.join(map(str, busy))} are"
        raise LaunchError(
            f"{taken} already in use on 127.0.0.1 (the resource nodes' or the AO unit's): "
            "nothing was started; stop what runs there, or choose another --node-port or "
            "--ao-port (0: free ports)"
        )


async def _describe_listener(url: str) -> str:
    async with InferchainClient(url, timeout=2.0) as client:
        try:
            health = await client.health()
        except (TransportError, RpcError):
            return f"{url} does not answer as a validator: another program listens there"
    return (
        f"a network is already running: {url} answers as chain {health.get('chainId')} at "
        f"height {health.get('height')} (curl -s {url}/health)"
    )


def network_genesis(
    base: Genesis,
    validators: int,
    port: int,
    nodes: int,
    models: Mapping[int, str],
    placement: Placement | None = None,
    node_ports: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The network's genesis document: `base` with `validators` dev validators from `port`
    on, its first `nodes` resource nodes, and node i's `models` as `models[i]` says (the
    others keep theirs). Each node is started with its entry's models (`Network.node_args`).
    With a `placement` (namespaces, containers), the validators' urls and the nodes'
    endpoints name the hosts it reaches them at, the endpoints on `node_ports` when given
    (else their ports kept)."""
    raw = with_dev_validators(base.raw, validators, base_port=port)
    # Only the resource nodes that run are registered: a result is judged by the others
    # (PROTOCOL 4.5), and one that never answers would hold it to its verify deadline.
    raw["resourceNodes"] = [
        {**entry, "models": models[i]} if i in models else entry
        for i, entry in enumerate(raw.get("resourceNodes", [])[:nodes])
    ]
    if placement is not None:
        for k, entry in enumerate(raw["validators"]):
            entry["url"] = with_host(entry["url"], placement.reach(f"validator-{k}"))
        for i, entry in enumerate(raw["resourceNodes"]):
            if isinstance(entry.get("endpoint"), str):
                node_port = None if node_ports is None else node_ports[i]
                entry["endpoint"] = with_host(
                    entry["endpoint"], placement.reach(f"node-{i}"), node_port
                )
    return raw


def with_host(url: str, host: str, port: int | None = None) -> str:
    """`url` with its host replaced by `host`, and its port by `port` when given (its scheme
    and path kept)."""
    parts = urlsplit(url)
    kept = parts.port if port is None else port
    netloc = host if kept is None else f"{host}:{kept}"
    return urlunsplit(parts._replace(netloc=netloc))


def process_names(args: argparse.Namespace) -> list[str]:
    """The processes of the run, as `testnet.netns` names their hosts."""
    names = [f"validator-{k}" for k in range(args.validators)]
    names += [f"node-{i}" for i in range(args.nodes)]
    return names if args.no_ao else [*names, "ao"]


def read_genesis(path: str) -> Genesis:
    """The genesis file at `path`; GenesisError, worded as a validator words it, if it cannot
    be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GenesisError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    return parse_genesis_file(data, path)


def prepare_data_dir(data_dir: Path, raw_genesis: dict[str, Any], fresh: bool) -> None:
    """Write the genesis into `data_dir`; a data directory holds one chain."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        for pattern in ("genesis.json", "validator-*", "node-*"):
            for path in data_dir.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    path = data_dir / "genesis.json"
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = None
        if existing != raw_genesis:
            raise LaunchError(
                f"{path} is the genesis of another chain ({_describe(existing)}; asked for "
                f"{_describe(raw_genesis)}). A data directory holds one chain: pass --fresh to "
                "delete it and start a new chain, or choose another --data-dir"
            )
        return
    path.write_text(json.dumps(raw_genesis, indent=2) + "\n", encoding="utf-8")


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _describe(raw: Any) -> str:
    try:
        ports = [int(v["url"].rsplit(":", 1)[1]) for v in raw["validators"]]
        return f"{_count(len(ports), 'validator')} from port {min(ports)}"
    except (TypeError, KeyError, ValueError, IndexError, AttributeError):
        return "not readable"


async def main_async(args: argparse.Namespace) -> int:
    # First of all (before the genesis, whose dev keys take a while to derive, and before
    # --fresh deletes anything): is a network running there already?
    data_dir = Path(args.data_dir).resolve()
    try:
        lock = DataDirLock.acquire(data_dir)
    except (LaunchError, OSError) as exc:
        log.error("%s", exc)
        return 2
    plan = None
    namespaces = None
    try:
        if args.netns:
            # Each process has its namespace's address: nothing of loopback's ports is used.
            plan = netns.make_plan(
                data_dir, process_names(args), args.latency or "none", (args.loss or 0.0) / 100
            )
            await check_nothing_runs(data_dir, [])
        else:
            await check_nothing_runs(
                data_dir,
                [args.port + k for k in range(args.validators)],
                [
                    *(node_ports(args) or []),
                    *([] if args.no_ao or not args.ao_port else [args.ao_port]),
                ],
            )
        base = read_genesis(args.genesis)
        if args.nodes > len(base.resource_nodes):
            raise LaunchError(f"--nodes: {args.genesis} has {len(base.resource_nodes)}")
        raw = network_genesis(
            base, args.validators, args.port, args.nodes, args.node_models, plan, node_ports(args)
        )
        genesis = parse_genesis(raw)
        prepare_data_dir(data_dir, raw, args.fresh)
        if plan is not None:
            namespaces = netns.Namespaces(plan, data_dir, args.log_level)
            namespaces.up()
    except (GenesisError, LaunchError, netns.NetnsError, OSError) as exc:
        lock.release()
        log.error("%s", exc)
        return 2

    testnet = Testnet(args, genesis, data_dir, lock, plan)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, testnet.stop.set)
    try:
        await testnet.run()
    except Stopped:
        return 0
    except LaunchError as exc:
        testnet.status.end()
        log.error("%s", exc)
        return 1
    finally:
        await testnet.close()
        if namespaces is not None:
            namespaces.down()
        lock.release()
        print("stopped", flush=True)
    return 0


def emit_compose(args: argparse.Namespace, out: Path) -> int:
    """`--emit compose DIR`: the network's Compose project written into `out`; 2 with the
    reason when it cannot be."""
    try:
        compose.check_dir(out)
        base = read_genesis(args.genesis)
        if args.nodes > len(base.resource_nodes):
            raise ValueError(f"--nodes: {args.genesis} has {len(base.resource_nodes)}")
        hosts = compose.ServiceHosts()
        raw = network_genesis(
            base,
            args.validators,
            args.port,
            args.nodes,
            args.node_models,
            hosts,
            [args.node_port + i for i in range(args.nodes)],
        )
        genesis = parse_genesis(raw)
        ports = [args.port + k for k in range(args.validators)]
        net = compose.network_of(
            genesis,
            ports,
            [args.node_port + i for i in range(args.nodes)],
            block_time_ms=args.block_time,
            log_level=args.log_level,
            node_faults=args.node_faults,
        )
        document = compose.project(
            net, ao_port=None if args.no_ao else args.ao_port, build_context=REPO
        )
        keys = compose.key_files(genesis, args.nodes, not args.no_ao)
        compose.write(out, document, raw, keys)
    except (GenesisError, ValueError, OSError) as exc:
        log.error("%s", exc)
        return 2
    print(
        f"a Docker Compose project of {_count(args.validators, 'validator')} and "
        f"{_count(args.nodes, 'resource node')}{'' if args.no_ao else ' and the AO unit'} in "
        f"{out}: docker compose -f {out / compose.COMPOSE_FILE} up --build",
        flush=True,
    )
    return 0


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(message)s")
    if args.emit is not None:
        return emit_compose(args, Path(args.emit[1]).resolve())
    return asyncio.run(main_async(args))
