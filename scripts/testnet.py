"""Run a local inferchain network until Ctrl-C (`make testnet`).

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
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chain.node.config import load_genesis  # noqa: E402
from chain.protocol import wire  # noqa: E402
from chain.protocol.errors import GenesisError  # noqa: E402
from chain.protocol.genesis import (  # noqa: E402
    RESOURCE_NODE_KEY_OFFSET,
    VALIDATOR_KEY_OFFSET,
    Genesis,
    parse_genesis,
    with_dev_validators,
)
from resource_node.backends.faults import Faults  # noqa: E402
from resource_node.worker import CRASH_EXIT_CODE  # noqa: E402
from rpc.client import InferchainClient, RpcError, TransportError, Wallet  # noqa: E402
from testnet import perturb  # noqa: E402

log = logging.getLogger("testnet")
T = TypeVar("T")

START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 5.0
STATUS_INTERVAL_S = 1.0
EXIT_POLL_S = 0.2
STOP_TIMEOUT_S = 15.0
DEMO_TIMEOUT_S = 120.0
MAX_VALIDATORS = RESOURCE_NODE_KEY_OFFSET - VALIDATOR_KEY_OFFSET
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LaunchError(Exception):
    """The network cannot start or go on; the message says why and which log to read."""


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


@dataclass
class Service:
    """One process of the network."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    may_exit_with: int | None = None  # an exit code that is not a failure (a crash fault)

    def exit_report(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            report = f"{self.name} was killed by {signal.Signals(-code).name}"
        else:
            report = f"{self.name} exited with code {code}"
        last = last_line(self.log_path)
        if last:
            report += f"\n  its last log line: {last}"
        if "already in use" in last.lower():
            report += "\n  is another testnet running? Stop it or choose another --port"
        return f"{report}\n  log: {self.log_path}"


def last_line(path: Path) -> str:
    """The last non-empty line of a log file, or "" if there is none."""
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - 4096))
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def spawn(name: str, args: list[str], log_path: Path, may_exit_with: int | None = None) -> Service:
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            # Its own process group: Ctrl-C reaches the launcher only, which then stops the
            # processes in order instead of racing them.
            process_group=0,
        )
    return Service(name, proc, log_path, may_exit_with)


def stop_all(services: list[Service]) -> None:
    """SIGTERM to every running process, wait up to STOP_TIMEOUT_S, then SIGKILL."""
    running = [s for s in services if s.proc.poll() is None]
    for service in running:
        service.proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for service in running:
        try:
            code = service.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %g s: killed", service.name, STOP_TIMEOUT_S)
            service.proc.kill()
            service.proc.wait()
            continue
        if code != 0:
            log.warning("%s stopped with code %d; see %s", service.name, code, service.log_path)


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
    """The processes of one run and the clients of its validators."""

    def __init__(self, args: argparse.Namespace, genesis: Genesis, data_dir: Path) -> None:
        self.args = args
        self.genesis = genesis
        self.data_dir = data_dir
        self.urls = [f"http://127.0.0.1:{args.port + k}" for k in range(args.validators)]
        self.clients = [InferchainClient(url, timeout=REQUEST_TIMEOUT_S) for url in self.urls]
        self.validators: list[Service] = []
        self.nodes: list[Service] = []
        self.stop = asyncio.Event()
        self.status = StatusLine()
        self.reported: set[str] = set()

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        self.status.end()
        stop_all(self.nodes)
        stop_all(self.validators)

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

    async def first_exit(self) -> Service:
        """The first process that exits when it should not; a crash fault is only reported."""
        while True:
            for service in [*self.validators, *self.nodes]:
                code = service.proc.poll()
                if code is None or service.name in self.reported:
                    continue
                if code != service.may_exit_with:
                    return service
                self.reported.add(service.name)
                self.status.end()
                log.warning("%s exited as its fault says; see %s", service.name, service.log_path)
            await asyncio.sleep(EXIT_POLL_S)

    def validator_args(self, k: int, genesis_path: Path | None = None) -> list[str]:
        genesis_path = genesis_path or self.data_dir / "genesis.json"
        args = ["-m", "rpc", "--genesis", str(genesis_path)]
        args += ["--data-dir", str(self.data_dir / f"validator-{k}")]
        args += ["--port", str(self.args.port + k), "--validator", str(k), "--quiet"]
        args += ["--log-level", self.args.log_level]
        if self.args.block_time is not None:
            args += ["--block-time", str(self.args.block_time)]
        for peer in self.urls:
            if peer != self.urls[k]:
                args += ["--peer", peer]
        return args

    def start_validators(self) -> None:
        for k in range(len(self.urls)):
            log_path = self.data_dir / f"validator-{k}.log"
            self.validators.append(spawn(f"validator {k}", self.validator_args(k), log_path))

    async def wait_validators(self) -> None:
        """Until every validator answers GET /health for this chain."""
        expected = wire.hex0x(self.genesis.hash)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        for service, client in zip(self.validators, self.clients, strict=True):
            while (health := await _health(client)) is None:
                if loop.time() > deadline:
                    raise LaunchError(
                        f"{service.name} did not answer on {client.url} in {START_TIMEOUT_S:g} s"
                        f"\n  log: {service.log_path}"
                    )
                await asyncio.sleep(0.1)
            if health.get("genesisHash") != expected:
                raise LaunchError(
                    f"{client.url} answers for another chain (genesis hash "
                    f"{health.get('genesisHash')}): is another testnet running? "
                    "Stop it or choose another --port"
                )

    def spawn_node(self, i: int) -> Service:
        crash = Faults.parse([self.args.byzantine or ""]).crash_after is not None
        validator = i % self.args.validators
        args = ["-m", "resource_node", "--rpc", self.urls[validator], "--dev-index", str(i)]
        args += ["--state-dir", str(self.data_dir / f"node-{i}")]
        args += ["--log-level", self.args.log_level]
        faulty = self.args.byzantine is not None and i == self.args.nodes - 1
        if faulty:
            args += ["--fault", self.args.byzantine]
        name = f"resource node {i}"
        log_path = self.data_dir / f"node-{i}.log"
        exit_code = CRASH_EXIT_CODE if faulty and crash else None
        return spawn(name, args, log_path, exit_code)

    def start_nodes(self) -> None:
        for i in range(self.args.nodes):
            self.nodes.append(self.spawn_node(i))

    # testnet.perturb.Cluster: faults on purpose are not failures

    @property
    def size(self) -> int:
        return len(self.validators)

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    def client(self, k: int) -> InferchainClient:
        return self.clients[k]

    def url(self, k: int) -> str:
        return self.urls[k]

    def kill_validator(self, k: int) -> None:
        self._kill(self.validators[k])

    async def start_validator(self, k: int) -> None:
        log_path = self.data_dir / f"validator-{k}.log"
        service = spawn(f"validator {k}", self.validator_args(k), log_path)
        self.validators[k] = service
        self.reported.discard(service.name)
        await self.wait_validators()

    async def refused_with_foreign_genesis(self, k: int) -> str:
        raw = dict(self.genesis.raw)
        raw["chainId"] = self.genesis.chain_id + 1
        path = self.data_dir / "foreign-genesis.json"
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.validator_args(k, path),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _out, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("a validator with a foreign genesis kept running") from None
        if proc.returncode == 0:
            raise AssertionError("a validator with a foreign genesis exited 0")
        return err.decode(errors="replace")

    def pause_validator(self, k: int) -> None:
        self.validators[k].proc.send_signal(signal.SIGSTOP)

    def resume_validator(self, k: int) -> None:
        self.validators[k].proc.send_signal(signal.SIGCONT)

    def kill_node(self, i: int) -> None:
        self._kill(self.nodes[i])

    async def start_node(self, i: int) -> None:
        self.nodes[i] = self.spawn_node(i)
        self.reported.discard(self.nodes[i].name)

    def _kill(self, service: Service) -> None:
        self.reported.add(service.name)  # its exit is on purpose
        service.proc.kill()
        service.proc.wait()

    async def perturb_forever(self) -> None:
        round_ = 0
        while True:
            self.status.end()
            print(f"perturbation round {round_ + 1}", flush=True)
            for outcome in await perturb.one_round(self, round_):
                self.status.end()
                print("  " + outcome.line(), flush=True)
            self.status.show(await self.status_text())
            round_ += 1

    def print_banner(self) -> None:
        genesis = self.genesis
        print(
            f"inferchain testnet: chain {genesis.chain_id} ({genesis.symbol}), "
            f"{_count(len(self.validators), 'validator')}, "
            f"{_count(len(self.nodes), 'resource node')}"
        )
        print(f"  genesis {self.data_dir / 'genesis.json'} ({wire.hex0x(genesis.hash)})")
        for service, url in zip(self.validators, self.urls, strict=True):
            print(f"  {service.name:<16} RPC {url}  log {service.log_path}")
        for i, service in enumerate(self.nodes):
            validator = self.urls[i % len(self.urls)]
            print(f"  {service.name:<16} via {validator}  log {service.log_path}")
        dev_keys = genesis.dev_keys()
        if dev_keys:
            print("\nDev accounts (unlocked: calls from them may omit signature and nonce)")
            for i, (address, key) in enumerate(dev_keys.items()):
                print(f"  ({i}) {address}  {wire.hex0x(key)}")
        print(flush=True)

    async def demo_task(self) -> None:
        """Submit one task to validator 0 and print how it ended."""
        client = self.clients[0]
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
        healths = await asyncio.gather(*(_health(client) for client in self.clients))
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
        stats = await _task_stats([c for c, h in zip(self.clients, healths, strict=True) if h])
        if stats is not None:
            counts = " ".join(f"{k}={v}" for k, v in stats.items() if k != "total" and v)
            parts.append(f"tasks {stats['total']} ({counts or 'none'})")
        running = sum(service.proc.poll() is None for service in self.nodes)
        parts.append(f"nodes {running}/{len(self.nodes)}")
        return "  ".join(parts)

    async def run(self) -> None:
        self.start_validators()
        await self.guard(self.wait_validators())
        self.start_nodes()
        self.print_banner()
        if self.args.no_demo:
            pass
        elif len(self.nodes) < 2:
            log.info("no demo task: another resource node verifies a result; run --nodes 2 or more")
        else:
            await self.guard(self.demo_task())
        if self.args.perturb:
            await self.guard(self.perturb_forever())
        while True:
            self.status.show(await self.guard(self.status_text()))
            await self.guard(asyncio.sleep(STATUS_INTERVAL_S))


async def _health(client: InferchainClient) -> dict[str, Any] | None:
    try:
        return await client.health()
    except TransportError:
        return None


async def _task_stats(clients: list[InferchainClient]) -> dict[str, Any] | None:
    for client in clients:
        with contextlib.suppress(TransportError, RpcError):
            return await client.task_stats()
    return None


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
        base = load_genesis(args.genesis)
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


if __name__ == "__main__":
    sys.exit(main())
