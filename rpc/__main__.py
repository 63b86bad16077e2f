"""Run a validator: `python -m rpc --genesis genesis.json --data-dir DIR --port N`.

With the shipped dev genesis no key option is needed: the validator key derives from the
dev mnemonic (PROTOCOL 2). On start it prints, like anvil, the RPC URL, the chain id and the
dev accounts with their private keys; it stops cleanly on SIGINT and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from chain.node import devstate
from chain.node.config import load_genesis
from chain.node.ledger import repair_ledger
from chain.node.mempool import DEFAULT_MAX_PER_SENDER
from chain.node.node import Node, ValidatorKey, dev_validator_key
from chain.protocol import crypto, wire
from chain.protocol.errors import ChainError
from chain.protocol.genesis import Genesis
from chain.protocol.gossip import RequestSigner
from rpc import serving, subscriptions
from rpc.p2p import Peers
from rpc.server import RpcServer

log = logging.getLogger("inferchain")


def _at_least_one(text: str) -> int:
    digits = text.strip()
    value = int(digits) if wire.ascii_digits(digits) else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    digits = text.strip()
    if not wire.ascii_digits(digits):
        raise argparse.ArgumentTypeError(f"expected an integer of at least 0, got {text!r}")
    return int(digits)


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP address, got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rpc", description="An inferchain validator")
    parser.add_argument("--genesis", default="genesis.json", help="genesis file")
    parser.add_argument("--data-dir", default=".data/dev", help="ledger directory (LevelDB)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8545, help="RPC port; 0 picks a free one")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--validator", type=int, metavar="K", help="act as validator K of a dev genesis"
    )
    keys.add_argument(
        "--validator-key",
        metavar="FILE",
        help="file holding the validator's account private key (hex)",
    )
    parser.add_argument(
        "--block-time", type=int, metavar="MS", help="override params.blockTimeMs (0: automine)"
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="URL",
        help="RPC URL of another validator (repeat; default: the genesis validators' urls)",
    )
    parser.add_argument(
        "--dev-control-from",
        action="append",
        default=[],
        type=_ip_address,
        metavar="ADDR",
        help="an address besides loopback that may set the dev links (POST /p2p/dev/links, "
        "with the dev token; repeat): a launcher's, when the validators run on other addresses",
    )
    parser.add_argument(
        "--automine-interval",
        type=_non_negative,
        default=0,
        metavar="MS",
        help="automine: at least this long between two blocks (default 0); dev_mine still "
        "mines at once",
    )
    parser.add_argument(
        "--no-overload-guard",
        action="store_true",
        help="admit new tasks past what the network verifies before their deadline "
        "(PROTOCOL 5.11; by default they are refused, -32007, with when to retry)",
    )
    parser.add_argument(
        "--load-state",
        metavar="FILE",
        help="dev chain: start from the state a --dump-state wrote (the data directory must "
        "hold a new chain)",
    )
    parser.add_argument(
        "--dump-state",
        metavar="FILE",
        help="dev chain: write the whole state (ledger and mempool) to FILE on stop",
    )
    parser.add_argument(
        "--max-pending-per-sender",
        type=_at_least_one,
        default=DEFAULT_MAX_PER_SENDER,
        metavar="N",
        help=f"transactions one sender may have waiting in the mempool "
        f"(default {DEFAULT_MAX_PER_SENDER})",
    )
    parser.add_argument(
        "--check-invariants",
        action="store_true",
        help="check the supply invariant after every block (slower; for tests)",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="run LevelDB's repair on --data-dir, check the ledger against --genesis, "
        "say what was done, and exit (start the validator again without it)",
    )
    defaults = subscriptions.Limits()
    parser.add_argument(
        "--ws-queue",
        type=_at_least_one,
        default=defaults.queue,
        metavar="N",
        help=f"notifications waiting per WebSocket before it is closed 1008 (default "
        f"{defaults.queue})",
    )
    parser.add_argument(
        "--ws-subscriptions",
        type=_at_least_one,
        default=defaults.subscriptions,
        metavar="N",
        help=f"subscriptions per WebSocket (default {defaults.subscriptions})",
    )
    parser.add_argument(
        "--ws-connections",
        type=_at_least_one,
        default=defaults.connections,
        metavar="N",
        help=f"WebSockets per client address (default {defaults.connections})",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the dev accounts")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    serving.add_arguments(parser)
    return parser.parse_args(argv)


def validator_key(args: argparse.Namespace, genesis: Genesis) -> ValidatorKey:
    if args.validator_key:
        try:
            text = Path(args.validator_key).read_text().strip()
            key = bytes.fromhex(text.removeprefix("0x"))
        except (OSError, ValueError) as exc:
            raise ChainError(f"cannot read a hex private key from {args.validator_key}") from exc
        return ValidatorKey.from_account_key(key)
    return dev_validator_key(genesis, args.validator)


def banner(genesis: Genesis, node: Node, url: str) -> str:
    lines = [
        "",
        f"inferchain validator {node.validator.address}",
        f"Chain ID:      {genesis.chain_id} ({genesis.symbol})",
        f"Genesis hash:  {wire.hex0x(genesis.hash)}",
        f"Height:        {node.head.height}",
        f"Block time:    {node.block_time_ms} ms"
        + (" (automine)" if not node.block_time_ms else ""),
        f"Validators:    {len(genesis.validators)}"
        + (" (dev mode: this node commits alone)" if node.alone else " (Tendermint BFT)"),
    ]
    if node.dev_keys:
        lines += ["", "Available accounts (unlocked, dev mode)", "=" * 40]
        for i, address in enumerate(node.dev_keys):
            balance = node.account(address)[0].balance
            lines.append(f"({i}) {address} ({balance / 10**18:g} {genesis.symbol})")
        lines += ["", "Private keys", "=" * 40]
        for i, key in enumerate(node.dev_keys.values()):
            lines.append(f"({i}) {wire.hex0x(key)}")
    lines += ["", f"Listening on {url}", ""]
    return "\n".join(lines)


async def serve(args: argparse.Namespace) -> int:
    genesis = load_genesis(args.genesis)
    node = Node(
        genesis,
        args.data_dir,
        validator_key(args, genesis),
        block_time_ms=args.block_time,
        max_pending_per_sender=args.max_pending_per_sender,
        check_invariants=args.check_invariants,
        automine_interval_ms=args.automine_interval,
        overload_guard=not args.no_overload_guard,
    )
    backend = crypto.eth_keys_backend_name()
    if "CoinCurve" not in backend:
        log.warning("eth-keys uses %s, not coincurve: signatures are about 30x slower", backend)
    await node.setup()
    if args.load_state or args.dump_state:
        refusal = node.dev_controls_refusal()
        if refusal is not None:
            await node.cleanup()
            raise ChainError(f"--load-state and --dump-state: {refusal}")
    if args.load_state:
        await load_state(node, args.load_state)
    damage: list[ChainError] = []  # the ledger found damaged while running: stop, exit 2
    loop = asyncio.get_running_loop()

    def damaged(error: ChainError) -> None:
        damage.append(error)
        loop.call_soon_threadsafe(node.stop)

    node.ledger.watch_damage(damaged)
    peers = None
    if not node.alone:
        urls = args.peer or [
            v.url for v in genesis.validators if v.address != node.validator.address and v.url
        ]
        signer = RequestSigner(node.validator, genesis.chain_id)
        peers = Peers(urls, genesis.hash, node.consensus.pending_tx_wire, signer)
        node.network = peers
    limits = serving.prepare_process(loop, serving.limits_from(args))
    ws_limits = subscriptions.Limits(
        queue=args.ws_queue, subscriptions=args.ws_subscriptions, connections=args.ws_connections
    )
    server = RpcServer(node, ws_limits, args.dev_control_from)
    cors = serving.cors_from(args, dev=genesis.dev is not None)
    service = serving.HttpService(
        server.app, args.host, args.port, limits=limits, cors=cors, refuse=server.refuse
    )
    try:
        try:
            await service.start()
        except OSError as exc:
            raise ChainError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
        url = service.url
        # the handlers first: a SIGTERM sent as soon as the ready line is read stops cleanly
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        if args.quiet:
            print(f"Listening on {url}", flush=True)
        else:
            print(banner(genesis, node, url), flush=True)
        if peers is not None:
            log.info("validator %s with peers %s", node.validator.address, ", ".join(urls))
            await peers.start()
        await node.run_forever()
        if damage:
            raise damage[0]
        log.info("stopping at height %d", node.head.height)
        if args.dump_state:
            await dump_state(node, args.dump_state)
    finally:
        if peers is not None:
            await peers.stop()
        await service.stop()
        await node.cleanup()
    return 0


async def load_state(node: Node, path: str) -> None:
    """Start from a dumped state: only on a new chain, so nothing is overwritten."""
    if node.head.height > 0 or node.pending_count():
        refusal = ChainError(
            f"--load-state {path}: the data directory {node.data_dir} already holds a chain "
            f"at height {node.head.height}; give a new --data-dir"
        )
        await node.cleanup()
        raise refusal
    assert node.dev is not None
    try:
        state = devstate.read_file(path, node.genesis)
        head = await node.dev.load(state)
    except ChainError:
        await node.cleanup()
        raise
    log.info(
        "state loaded from %s: height %d, appHash %s, %d transactions pending",
        path,
        head.height,
        wire.hex0x(head.app_hash),
        node.pending_count(),
    )


async def dump_state(node: Node, path: str) -> None:
    assert node.dev is not None
    state = await node.dev.dump()
    devstate.write_file(path, state, node.genesis)
    log.info("state written to %s at height %d", path, node.head.height)


def repair(args: argparse.Namespace) -> int:
    """`--repair`: LevelDB's repair of the data directory, then the ledger's check; says
    what it did on stdout."""
    repaired = repair_ledger(args.data_dir, load_genesis(args.genesis))
    lost = ", ".join(repaired.lost) or "nothing"
    head = repaired.head
    print(
        f"repaired the ledger in {args.data_dir}: LevelDB files {' '.join(repaired.before)} "
        f"became {' '.join(repaired.after)}; moved to {Path(args.data_dir) / 'lost'}: {lost}\n"
        "its blocks re-executed from genesis agree with it: the ledger is consistent at "
        f"height {head.height} (block {wire.hex0x(head.hash)}, "
        f"appHash {wire.hex0x(head.app_hash)}): start the validator without --repair",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.repair:
            return repair(args)
        return serving.run(serve(args))
    except ChainError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
