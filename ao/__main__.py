"""Run an AO unit: `python -m ao --rpc URL --port P --data-dir DIR` (on 127.0.0.1 unless
`--host` says another address).

One port serves the scheduler, compute, messenger and cron units of PROTOCOL 8 over the
chain at URL. DIR holds the unit's store (results, memory hashes, relays, monitored
processes) and its key (`DIR/unit.key`): the key of the first start stays the unit's. That
key signs the unit's own transactions (data items handed in, relayed messages, cron runs):
on a dev chain it is dev account 9 unless `--key FILE` or `--dev-index I` says otherwise.

It also ships the APUS token and AI router (`ao.apus`, PROTOCOL 8.10) unless `--no-apus`:
their bridge's key is `DIR/bridge.key` (first start: `--bridge-key FILE`, `--bridge-dev-index
I`, else dev account 8), and it must hold funds for the tasks' fees.

When ready it prints `AO unit <address> ready`, the token's and the router's ids, and `AO on
http://HOST:PORT`; it stops cleanly on SIGINT and SIGTERM. Bad options exit 2 with a
message that names the option.
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

from ao.apus import Apus, RouterConfig
from ao.compat import AoConnectApi
from ao.cu import ComputeUnit
from ao.mu import MessengerUnit
from ao.patch import PatchApi
from ao.server import AoApi
from ao.store import JsonStore
from chain.protocol.errors import StorageError
from rpc import serving
from rpc.client import InferchainClient, Wallet

log = logging.getLogger("ao")

BAD_CONFIG_EXIT = 2
DEFAULT_DEV_INDEX = 9
DEFAULT_BRIDGE_DEV_INDEX = 8
KEY_FILE = "unit.key"
BRIDGE_KEY_FILE = "bridge.key"
DEFAULT_ROUTER = RouterConfig()
READY = "AO on "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ao", description="An inferchain AO unit")
    parser.add_argument("--rpc", required=True, metavar="URL", help="validator RPC base URL")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    parser.add_argument("--data-dir", required=True, metavar="DIR", help="store and key")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="FILE", help="the unit's private key (hex), first start")
    keys.add_argument("--dev-index", type=int, metavar="I", help="dev account I, first start")
    bridge = parser.add_mutually_exclusive_group()
    bridge.add_argument("--bridge-key", metavar="FILE", help="the bridge's key (hex), first start")
    bridge.add_argument("--bridge-dev-index", type=int, metavar="I", help="dev account I")
    parser.add_argument("--no-apus", action="store_true", help="do not ship the APUS processes")
    parser.add_argument("--router-model", default=DEFAULT_ROUTER.model, metavar="NAME")
    parser.add_argument(
        "--armstrongs-per-credit",
        type=int,
        default=DEFAULT_ROUTER.armstrongs_per_credit,
        metavar="N",
    )
    parser.add_argument("--infer-price", type=int, default=DEFAULT_ROUTER.price, metavar="CREDITS")
    parser.add_argument(
        "--target-count", type=int, default=DEFAULT_ROUTER.target_count, metavar="N"
    )
    parser.add_argument("--poll-interval", type=float, default=0.2, metavar="S", help="seconds")
    parser.add_argument("--log-level", default="INFO", type=str.upper)
    return parser.parse_args(argv)


def load_wallet(args: argparse.Namespace, data_dir: Path) -> Wallet:
    """The unit's key: DIR/unit.key when it exists, else --key, --dev-index or dev account 9,
    written there; ValueError naming the option."""
    return load_key(data_dir / KEY_FILE, args.key, args.dev_index, DEFAULT_DEV_INDEX, "")


def load_bridge_wallet(args: argparse.Namespace, data_dir: Path) -> Wallet:
    """The bridge's key: DIR/bridge.key, else --bridge-key, --bridge-dev-index or dev
    account 8, written there."""
    return load_key(
        data_dir / BRIDGE_KEY_FILE,
        args.bridge_key,
        args.bridge_dev_index,
        DEFAULT_BRIDGE_DEV_INDEX,
        "bridge-",
    )


def load_key(
    path: Path, key_file: str | None, dev_index: int | None, default_index: int, option: str
) -> Wallet:
    """The key kept at `path`, else the one `--<option>key FILE` or `--<option>dev-index I`
    gives (or dev account `default_index`), written to `path` (mode 0600)."""
    if path.exists():
        try:
            return Wallet.from_key(path.read_text().strip())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if key_file:
        try:
            wallet = Wallet.from_key(Path(key_file).read_text().strip())
        except (OSError, ValueError) as exc:
            raise ValueError(f"--{option}key {key_file}: {exc}") from exc
    else:
        index = default_index if dev_index is None else dev_index
        if index < 0:
            raise ValueError(f"--{option}dev-index must not be negative, got {index}")
        wallet = Wallet.dev(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("0x" + wallet.private_key.hex() + "\n")
    return wallet


def router_config(args: argparse.Namespace) -> RouterConfig:
    """The router's settings; ValueError naming the option that is out of range."""
    for option, value, low in (
        ("--armstrongs-per-credit", args.armstrongs_per_credit, 1),
        ("--infer-price", args.infer_price, 0),
        ("--target-count", args.target_count, 1),
    ):
        if value < low:
            raise ValueError(f"{option} must be at least {low}, got {value}")
    if not args.router_model.strip():
        raise ValueError("--router-model must not be empty")
    return RouterConfig(
        model=args.router_model,
        armstrongs_per_credit=args.armstrongs_per_credit,
        price=args.infer_price,
        target_count=args.target_count,
    )


async def serve(
    args: argparse.Namespace,
    wallet: Wallet,
    data_dir: Path,
    bridge: Wallet | None,
    config: RouterConfig = DEFAULT_ROUTER,
) -> int:
    """The unit; with `bridge` (its key) it ships the APUS processes, the router with
    `config`."""
    client = InferchainClient(args.rpc)
    store = JsonStore(data_dir / "store")
    cu = ComputeUnit(client, store)
    mu = MessengerUnit(client, wallet, cu, store, poll_interval=args.poll_interval)
    apus = None
    if bridge is not None:
        apus = Apus(
            client,
            cu,
            mu,
            store,
            bridge,
            config=config,
            poll_interval=args.poll_interval,
        )
    app = web.Application()
    app.add_routes(AoApi(client, cu, mu, store).routes())
    app.add_routes(AoConnectApi(client, cu, mu, store).routes())
    app.add_routes(PatchApi(client, cu, mu, store).routes())
    if apus is not None:
        app.add_routes(apus.routes())
    service = serving.HttpService(app, args.host, args.port)
    try:
        serving.prepare_process(asyncio.get_running_loop())
        await mu.resend_pending()
        if apus is not None:
            await apus.ship_when_reachable()
        await service.start()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            mu.stop()
            if apus is not None:
                apus.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        print(f"AO unit {wallet.address} ready", flush=True)
        if apus is not None:
            print(f"APUS token {apus.token}", flush=True)
            print(f"APUS router {apus.router} (bridge {apus.bridge.wallet.address})", flush=True)
        print(f"{READY}{service.url}", flush=True)
        if apus is None:
            await mu.run_forever()
        else:
            await asyncio.gather(mu.run_forever(), apus.run_forever())
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
        if args.no_apus:
            return serving.run(serve(args, wallet, data_dir, None))
        bridge = load_bridge_wallet(args, data_dir)
        return serving.run(serve(args, wallet, data_dir, bridge, router_config(args)))
    except (ValueError, OSError, StorageError) as exc:
        log.error("%s", exc)
        return BAD_CONFIG_EXIT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
