"""Run a local inferchain network until Ctrl-C (`make testnet`).

Starts the validator of `genesis.json` and its resource nodes, each its own process with its
own data directory and log file, prints the RPC URL, chain id and dev accounts, submits one
demo task and prints its verified result, and keeps a live status line until interrupted,
when it stops every process cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chain.genesis import Genesis, load_genesis  # noqa: E402
from rpc.client import InferchainClient, TransportError, Wallet  # noqa: E402

log = logging.getLogger("testnet")
START_TIMEOUT_S = 30.0
STATUS_INTERVAL_S = 1.0
DEMO_TIMEOUT_S = 120.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a local inferchain network")
    parser.add_argument("--genesis", default=str(REPO / "genesis.json"))
    parser.add_argument("--data-dir", default=str(REPO / ".data" / "testnet"))
    parser.add_argument("--port", type=int, default=8545, help="RPC port of the validator")
    parser.add_argument("--block-time", type=int, metavar="MS", help="override blockTimeMs")
    parser.add_argument(
        "--nodes", type=int, metavar="M", help="resource nodes to run (default: all in genesis)"
    )
    parser.add_argument(
        "--byzantine", metavar="SPEC", help="fault of the last resource node, e.g. wrong:0.5"
    )
    parser.add_argument("--fresh", action="store_true", help="start from new data directories")
    parser.add_argument("--no-demo", action="store_true", help="do not submit the demo task")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args()


async def wait_ready(client: InferchainClient, proc: subprocess.Popen[bytes]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the validator exited with code {proc.returncode}")
        try:
            await client.health()
            return
        except TransportError:
            if loop.time() > deadline:
                raise RuntimeError("the validator did not answer in time") from None
            await asyncio.sleep(0.1)


async def status_line(client: InferchainClient) -> str:
    health = await client.health()
    stats = await client.task_stats()
    tasks = " ".join(f"{k}={v}" for k, v in stats.items() if k != "total" and v)
    return (
        f"height {health['height']}  mempool {health['mempool']}  "
        f"tasks {stats['total']} ({tasks or 'none'})  appHash {health['appHash'][:12]}…"
    )


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def spawn(name: str, args: list[str], log_path: Path) -> Service:
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env=os.environ.copy(),
        )
    return Service(name, proc, log_path)


def stop_all(services: list[Service]) -> None:
    for service in services:
        if service.proc.poll() is None:
            service.proc.send_signal(signal.SIGTERM)
    for service in services:
        try:
            service.proc.wait(15)
        except subprocess.TimeoutExpired:
            service.proc.kill()


async def run(args: argparse.Namespace) -> int:
    genesis = load_genesis(args.genesis)
    nodes = len(genesis.resource_nodes) if args.nodes is None else args.nodes
    if not 0 <= nodes <= len(genesis.resource_nodes):
        print(f"--nodes: the genesis has {len(genesis.resource_nodes)} resource nodes")
        return 2
    data_dir = Path(args.data_dir)
    if args.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    validator_args = ["-m", "rpc", "--genesis", args.genesis, "--port", str(args.port)]
    validator_args += ["--data-dir", str(data_dir / "validator-0"), "--quiet"]
    validator_args += ["--log-level", args.log_level]
    if args.block_time is not None:
        validator_args += ["--block-time", str(args.block_time)]
    services = [spawn("validator 0", validator_args, data_dir / "validator-0.log")]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with InferchainClient(url) as client:
            await wait_ready(client, services[0].proc)
            for index in range(nodes):
                node_args = ["-m", "resource_node", "--rpc", url, "--dev-index", str(index)]
                node_args += ["--state-dir", str(data_dir / f"node-{index}")]
                node_args += ["--log-level", args.log_level]
                if args.byzantine and index == nodes - 1:
                    node_args += ["--fault", args.byzantine]
                log_path = data_dir / f"node-{index}.log"
                services.append(spawn(f"resource node {index}", node_args, log_path))
            print_banner(genesis, url, services)
            if not args.no_demo and nodes:
                await demo_task(client)
            while not stop.is_set():
                for service in services:
                    if service.proc.poll() is not None:
                        print(
                            f"\n{service.name} exited with code {service.proc.returncode}; "
                            f"see {service.log_path}"
                        )
                        return 1
                with contextlib.suppress(TransportError):
                    print("\r\033[K" + await status_line(client), end="", flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATUS_INTERVAL_S)
    finally:
        stop_all(services)
        print("\nstopped")
    return 0


def print_banner(genesis: Genesis, url: str, services: list[Service]) -> None:
    print(f"inferchain testnet: chain {genesis.chain_id} ({genesis.symbol}), RPC {url}")
    for service in services:
        print(f"  {service.name:<16} log {service.log_path}")
    if genesis.dev is not None:
        print("\nDev accounts (unlocked: calls from them may omit signature and nonce)")
        for i in range(genesis.dev.accounts):
            wallet = Wallet.from_mnemonic(genesis.dev.mnemonic, i)
            print(f"  ({i}) {wallet.address}  0x{wallet.private_key.hex()}")
    print()


async def demo_task(client: InferchainClient) -> None:
    receipt = await client.submit_task(
        Wallet.dev(0),
        prompts='{"prompt":"Translate to French: Hello, world!"}',
        model_options='{"model":"demo","max_tokens":16}',
        target_count=1,
    )
    print(f"demo task {receipt.task_hash}")
    task = await client.wait_for_task(receipt.task_hash, timeout=DEMO_TIMEOUT_S)
    print(f"  {task['status']} at block {task['finishedHeight']}: {task['response']!r}\n")


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
