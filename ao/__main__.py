"""Run an AO unit: `python -m ao --rpc URL --port P --data-dir DIR`.

One port serves the scheduler, compute, messenger and cron units of PROTOCOL 8 over the
chain at URL. DIR holds the unit's store (results, memory hashes, relays, monitored
processes) and its key (`DIR/unit.key`): the key of the first start stays the unit's. That
key signs the unit's own transactions (data items handed in, relayed messages, cron runs):
on a dev chain it is dev account 9 unless `--key FILE` or `--dev-index I` says otherwise.

When ready it prints `AO unit <address> ready` and `AO on http://127.0.0.1:PORT`; it stops
cleanly on SIGINT and SIGTERM. Bad options exit 2 with a message that names the option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from ao.compat import AoConnectApi
from ao.cu import ComputeUnit
from ao.mu import MessengerUnit
from ao.server import AoApi
from ao.store import JsonStore
from chain.protocol.errors import StorageError
from rpc import serving
from rpc.client import InferchainClient, Wallet

log = logging.getLogger("ao")

BAD_CONFIG_EXIT = 2
DEFAULT_DEV_INDEX = 9
KEY_FILE = "unit.key"
READY = "AO on "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ao", description="An inferchain AO unit")
    parser.add_argument("--rpc", required=True, metavar="URL", help="validator RPC base URL")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    parser.add_argument("--data-dir", required=True, metavar="DIR", help="store and key")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="FILE", help="the unit's private key (hex), first start")
    keys.add_argument("--dev-index", type=int, metavar="I", help="dev account I, first start")
    parser.add_argument("--poll-interval", type=float, default=0.2, metavar="S", help="seconds")
    parser.add_argument("--log-level", default="INFO", type=str.upper)
    return parser.parse_args(argv)


def load_wallet(args: argparse.Namespace, data_dir: Path) -> Wallet:
    """The unit's key: DIR/unit.key when it exists, else --key, --dev-index or dev account 9,
    written there; ValueError naming the option."""
    path = data_dir / KEY_FILE
    if path.exists():
        try:
            return Wallet.from_key(path.read_text().strip())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if args.key:
        try:
            wallet = Wallet.from_key(Path(args.key).read_text().strip())
        except (OSError, ValueError) as exc:
            raise ValueError(f"--key {args.key}: {exc}") from exc
    else:
        index = DEFAULT_DEV_INDEX if args.dev_index is None else args.dev_index
        if index < 0:
            raise ValueError(f"--dev-index must not be negative, got {index}")
        wallet = Wallet.dev(index)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("0x" + wallet.private_key.hex() + "\n")
    return wallet


async def serve(args: argparse.Namespace, wallet: Wallet, data_dir: Path) -> int:
    client = InferchainClient(args.rpc)
    store = JsonStore(data_dir / "store")
    cu = ComputeUnit(client, store)
    mu = MessengerUnit(client, wallet, cu, store, poll_interval=args.poll_interval)
    app = web.Application()
    app.add_routes(AoApi(client, cu, mu, store).routes())
    app.add_routes(AoConnectApi(client, cu, mu, store).routes())
    service = serving.HttpService(app, "127.0.0.1", args.port)
    try:
        serving.prepare_process(asyncio.get_running_loop())
        await service.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, mu.stop)
        print(f"AO unit {wallet.address} ready", flush=True)
        print(f"{READY}{service.url}", flush=True)
        await mu.run_forever()
    finally:
        await service.stop()
        await client.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.rpc.startswith(("http://", "https://")):
        log.error("--rpc: expected an http(s) URL, got %r", args.rpc)
        return BAD_CONFIG_EXIT
    if not 0 <= args.port <= 65535:
        log.error("--port must be between 0 and 65535, got %d", args.port)
        return BAD_CONFIG_EXIT
    data_dir = Path(args.data_dir)
    try:
        wallet = load_wallet(args, data_dir)
        return asyncio.run(serve(args, wallet, data_dir))
    except (ValueError, OSError, StorageError) as exc:
        log.error("%s", exc)
        return BAD_CONFIG_EXIT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
