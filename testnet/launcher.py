"""The testnet supervisor: run a local inferchain network until Ctrl-C (`make testnet`, which
runs `scripts/testnet.py`).

Derives the genesis of N validators from `genesis.json` (`with_dev_validators`) into the data
directory, starts the validators, each told the RPC URLs of the others, then M resource nodes
spread over them (node i talks to validator i mod N). Every process has its own data directory
and log file. Prints the RPC URLs, the chain id and the dev accounts, submits one demo task and
prints its verified result, then keeps a live status line. A process that exits stops the
network with its name and log; Ctrl-C or SIGTERM stops every process cleanly.

With `--perturb` it then injects faults in a loop (`testnet.perturb`: pause, disconnect,
restart, foreign genesis, resource node kill) and prints what it did and whether the network
recovered each time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

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
from testnet import perturb
from testnet.network import Network, health_of
from testnet.process import REPO, LaunchError, Process

log = logging.getLogger("testnet")
T = TypeVar("T")

REQUEST_TIMEOUT_S = 5.0
STATUS_INTERVAL_S = 1.0
EXIT_POLL_S = 0.2
STOP_TIMEOUT_S = 15.0
DEMO_TIMEOUT_S = 120.0
MAX_VALIDATORS = RESOURCE_NODE_KEY_OFFSET - VALIDATOR_KEY_OFFSET
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived."""


def parse_args() -> argparse.Namespace:
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
    parser.add_argument("--block-time", type=int, metavar="MS", help="override blockTimeMs")
    parser.add_argument(
        "--byzantine", metavar="SPEC", help="fault of the last resource node, e.g. wrong:0.5"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete the chain in --data-dir and start a new one"
    )
    parser.add_argument("--no-demo", action="store_true", help="do not submit the demo task")
    parser.add_argument(
        "--perturb",
        action="store_true",
        help="inject faults in a loop and report whether the network recovers each time",
    )
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    args = parser.parse_args()
    if not 1 <= args.validators <= MAX_VALIDATORS:
        parser.error(f"--validators: between 1 and {MAX_VALIDATORS}")
    if not 1 <= args.port <= 65536 - args.validators:
        parser.error(f"--port: validators use ports {args.port}..{args.port + args.validators - 1}")
    if args.block_time is not None and args.block_time < 0:
        parser.error("--block-time: milliseconds, 0 or more")
    if args.block_time == 0 and args.validators > 1:
        parser.error("--block-time 0 (automine) needs --validators 1")
    if args.nodes < 0:
        parser.error("--nodes: 0 or more")
    if args.byzantine is not None:
        if args.nodes == 0:
            parser.error("--byzantine: there is no resource node to make faulty")
        try:
            Faults.parse([args.byzantine])
        except ValueError as exc:
            parser.error(f"--byzantine: {exc}")
    return args


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


class Testnet:
    """One run: the network (`testnet.network.Network`, the `perturb.Cluster` of
    `--perturb`), its banner, its demo task and its status line."""

    def __init__(self, args: argparse.Namespace, genesis: Genesis, data_dir: Path) -> None:
        self.args = args
        self.genesis = genesis
        self.net = Network(
            genesis,
            data_dir,
            [args.port + k for k in range(args.validators)],
            block_time_ms=args.block_time,
            log_level=args.log_level,
            node_faults={} if args.byzantine is None else {args.nodes - 1: args.byzantine},
            request_timeout_s=REQUEST_TIMEOUT_S,
        )
        self.stop = asyncio.Event()
        self.status = StatusLine()

    async def close(self) -> None:
        await self.net.close_clients()
        self.status.end()
        self.net.stop(STOP_TIMEOUT_S)

    async def guard(self, work: Awaitable[T]) -> T:
        """`await work`, unless a signal comes first (Stopped) or a process exits (LaunchError)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        exited = asyncio.ensure_future(self.first_exit())
        try:
            await asyncio.wait({task, stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (task, stopped, exited):
                future.cancel()
            await asyncio.gather(task, stopped, exited, return_exceptions=True)
        if task.done() and not task.cancelled():
            return task.result()
        if stopped.done() and not stopped.cancelled():
            raise Stopped
        raise LaunchError(exited.result().exit_report())

    async def first_exit(self) -> Process:
        """The first process that exits when it should not; a crash fault is only reported."""
        while True:
            for process in self.net.processes():
                code = None if process.proc is None else process.proc.poll()
                if code is None or process.exit_expected:
                    continue
                if code != process.may_exit_with:
                    return process
                process.exit_expected = True
                self.status.end()
                log.warning("%s exited as its fault says; see %s", process.name, process.log_path)
            await asyncio.sleep(EXIT_POLL_S)

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
            print(f"  {process.name:<16} RPC {url}  log {process.log_path}")
        for i, process in net.nodes.items():
            validator = net.urls[i % net.size]
            print(f"  {process.name:<16} via {validator}  log {process.log_path}")
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
                model_options='{"model":"demo","max_tokens":16}',
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
        parts.append(f"validators {len(up)}/{len(healths)}")
        stats = await _task_stats([c for c, h in zip(clients, healths, strict=True) if h])
        if stats is not None:
            counts = " ".join(f"{k}={v}" for k, v in stats.items() if k != "total" and v)
            parts.append(f"tasks {stats['total']} ({counts or 'none'})")
        running = sum(process.running() for process in self.net.nodes.values())
        parts.append(f"nodes {running}/{self.net.node_count}")
        return "  ".join(parts)

    async def run(self) -> None:
        for k in range(self.net.size):
            self.net.spawn_validator(k)
        await self.guard(self.net.wait_serving())
        for i in range(self.args.nodes):
            self.net.spawn_node(i)
        self.print_banner()
        if self.args.no_demo:
            pass
        elif self.net.node_count < 2:
            log.info("no demo task: another resource node verifies a result; run --nodes 2 or more")
        else:
            await self.guard(self.demo_task())
        if self.args.perturb:
            await self.guard(self.perturb_forever())
        while True:
            self.status.show(await self.guard(self.status_text()))
            await self.guard(asyncio.sleep(STATUS_INTERVAL_S))


async def _task_stats(clients: list[InferchainClient]) -> dict[str, Any] | None:
    for client in clients:
        with contextlib.suppress(TransportError, RpcError):
            return await client.task_stats()
    return None


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
    try:
        base = read_genesis(args.genesis)
        if args.nodes > len(base.resource_nodes):
            raise LaunchError(f"--nodes: {args.genesis} has {len(base.resource_nodes)}")
        raw = with_dev_validators(base.raw, args.validators, base_port=args.port)
        genesis = parse_genesis(raw)
        data_dir = Path(args.data_dir).resolve()
        prepare_data_dir(data_dir, raw, args.fresh)
    except (GenesisError, LaunchError, OSError) as exc:
        log.error("%s", exc)
        return 2

    testnet = Testnet(args, genesis, data_dir)
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
        print("stopped", flush=True)
    return 0


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(message)s")
    return asyncio.run(main_async(args))
