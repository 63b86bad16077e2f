"""Run a resource node: `python -m resource_node --rpc URL (--key FILE | --dev-index I)`.

It polls the validator for tasks, computes results with its backend, verifies other nodes'
results, and serves on its HTTP port (on 127.0.0.1 unless `--host` names another address)
the Infernet node API and Ocean's compute-to-data over its containers (`--config`,
`--container`), and its status. When ready it prints `Resource node 0x... ready` and
`Serving on http://HOST:PORT` on stdout; it stops cleanly on SIGINT and SIGTERM (exit 0).
Bad options exit 2 with a message that names the option.

The node registers that URL as its `endpoint` on the chain (a RegisterResourceNode with its
registered models, sent once when the chain shows another endpoint), unless `--endpoint`
names another URL to register or is `off`.

`--dev-index I` is resource node I of a dev genesis: account 200 + I of the mnemonic on
m/44'/60'/0'/0/i (PROTOCOL 2).

`--genesis FILE` is the genesis the validator runs: the node reads the params it needs from it
(`canaryRateBps` and the deadlines, for forced errors: PROTOCOL 4.13) and warns when the
validator's genesis hash is another one. Without it the node asks the validator (getParams),
and keeps the protocol's defaults only when the validator does not answer that method.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from chain.protocol import wire
from chain.protocol.errors import GenesisError
from chain.protocol.genesis import (
    DEV_MNEMONIC,
    RESOURCE_NODE_KEY_OFFSET,
    Genesis,
    Params,
    parse_genesis_file,
)
from resource_node import turns
from resource_node.backends import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    make_backend,
    parse_backend_options,
)
from resource_node.backends.faults import Faults
from resource_node.containers import (
    Container,
    NodeConfig,
    RateLimit,
    backend_key,
    build_containers,
    check_unique,
    default_containers,
    load_config,
    parse_container_flag,
)
from resource_node.infernet import InfernetApi
from resource_node.jobs import JobEngine
from resource_node.jobstore import JobStore, StorageError
from resource_node.ocean import OceanConfig, OceanProvider
from resource_node.server import DEFAULT_HOST, NodeServer
from resource_node.state import StateError
from resource_node.worker import ResourceNode, WorkerConfig
from rpc import serving
from rpc.client import InferchainClient, Wallet

log = logging.getLogger("resource_node")

DEFAULT_RPC_TIMEOUT = 10.0
BAD_CONFIG_EXIT = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """Everything the command line decides, checked before anything starts."""

    rpc: str
    wallet: Wallet
    backend: Backend
    faults: Faults
    config: WorkerConfig
    containers: dict[str, Container]
    rate_limit: RateLimit
    max_running_jobs: int
    ocean: OceanConfig
    http_port: int
    host: str
    endpoint: str | None  # None: off; "" : the server's own URL
    rpc_timeout: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m resource_node", description="An inferchain resource node"
    )
    parser.add_argument("--rpc", required=True, metavar="URL", help="validator RPC base URL")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", metavar="FILE", help="file holding the node's private key (hex)")
    keys.add_argument(
        "--dev-index",
        type=int,
        metavar="I",
        help="resource node I of a dev genesis (account 200 + I of --mnemonic)",
    )
    parser.add_argument(
        "--mnemonic", default=DEV_MNEMONIC, help="mnemonic for --dev-index (default: the dev one)"
    )
    parser.add_argument(
        "--models", default="*", help="comma-separated models to serve (default *: all)"
    )
    parser.add_argument(
        "--backend", default="deterministic", choices=BACKEND_NAMES, help="inference backend"
    )
    parser.add_argument(
        "--backend-opt",
        action="append",
        default=[],
        metavar="K=V",
        help="backend option, repeatable (deterministic: tokens_per_second, default_max_tokens; "
        "openai: base_url, api_key, timeout, model, api, template, max_tokens, max_tokens_cap, "
        "verify, logprobs, fast_path)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="comma-separated or repeated: wrong[:P] (a wrong result with probability P, "
        "default 1; forced errors as any node's), lazy (every verdict valid=true without "
        "computing), silent (submits nothing), noreveal (never reveals its secrets), copy "
        "(submits another node's listed result as its own), otherprompt (answers with "
        "another prompt's output), truncate (submits the first half of each output), slow:S "
        "(S more seconds per inference), crash:N (exits with status 3 after N results)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="inferences at a time")
    parser.add_argument("--poll-interval", type=float, default=0.2, metavar="S", help="seconds")
    parser.add_argument(
        "--standby-blocks",
        type=int,
        default=turns.STANDBY_BLOCKS,
        metavar="N",
        help="block times this node leaves a task to the nodes before it in the task's order "
        "before computing it too; 0: compute every task at once (default: %(default)s)",
    )
    parser.add_argument(
        "--pushed-poll-interval",
        type=float,
        metavar="S",
        help="seconds between polls while work is pushed (default: --poll-interval)",
    )
    parser.add_argument(
        "--no-push",
        action="store_true",
        help="poll only: do not subscribe to the validator's pendingTasks over /ws",
    )
    parser.add_argument(
        "--genesis",
        metavar="FILE",
        help="the chain's genesis.json, for its params (default: the validator's getParams)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where to remember submissions across restarts (default: memory only)",
    )
    parser.add_argument(
        "--http-port",
        "--status-port",
        dest="http_port",
        type=int,
        default=0,
        metavar="P",
        help="the HTTP port: Infernet, Ocean and status routes (0: a free one)",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"the address the HTTP server listens on (default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="containers and limits, a JSON file in Infernet's shape (default: one container "
        "per served model, on --backend)",
    )
    parser.add_argument(
        "--container",
        action="append",
        default=[],
        metavar="JSON",
        help="one more container, a JSON object as in --config's containers (repeatable)",
    )
    parser.add_argument(
        "--rate-limit",
        metavar="N/S",
        help="requests per client to the /api/ routes: N per S seconds (default 60/60)",
    )
    parser.add_argument(
        "--max-running-jobs", type=int, metavar="N", help="off-chain jobs at a time (default 16)"
    )
    parser.add_argument(
        "--endpoint",
        default="auto",
        metavar="URL",
        help="the URL registered on the chain: auto (the HTTP server's, the default), a URL, "
        "or off",
    )
    parser.add_argument(
        "--rpc-timeout", type=float, default=DEFAULT_RPC_TIMEOUT, metavar="S", help="seconds"
    )
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="log level"
    )
    return parser.parse_args(argv)


def load_wallet(args: argparse.Namespace) -> Wallet:
    """The node's key, from --key FILE or --dev-index I; ValueError naming the option."""
    if args.key:
        try:
            text = Path(args.key).read_text().strip()
        except OSError as exc:
            raise ValueError(f"--key {args.key}: cannot read it ({exc.strerror})") from exc
        try:
            return Wallet.from_key(text)
        except ValueError as exc:
            raise ValueError(f"--key {args.key}: {exc}") from exc
    if args.dev_index < 0:
        raise ValueError(f"--dev-index must not be negative, got {args.dev_index}")
    try:
        return Wallet.from_mnemonic(args.mnemonic, RESOURCE_NODE_KEY_OFFSET + args.dev_index)
    except Exception as exc:  # eth-account raises several types for a bad mnemonic
        raise ValueError(f"--mnemonic: not a valid BIP-39 mnemonic ({exc})") from exc


def load_genesis(path: str | None) -> Genesis | None:
    """The genesis of --genesis FILE; ValueError naming the option."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"--genesis {path}: cannot read it ({exc.strerror})") from exc
    try:
        return parse_genesis_file(data, path)
    except GenesisError as exc:
        raise ValueError(f"--genesis {path}: {exc}") from exc


def build_setup(args: argparse.Namespace) -> NodeSetup:
    """Check every option; ValueError with a message that names the bad one."""
    if not args.rpc.startswith(("http://", "https://")):
        raise ValueError(f"--rpc: expected an http(s) URL, got {args.rpc!r}")
    models = tuple(model.strip() for model in args.models.split(",") if model.strip())
    if not models:
        raise ValueError("--models: give at least one model, or * for all")
    if not 0 <= args.http_port <= 65535:
        raise ValueError(f"--http-port must be between 0 and 65535, got {args.http_port}")
    if not args.rpc_timeout > 0:
        raise ValueError(f"--rpc-timeout must be positive, got {args.rpc_timeout}")
    if not args.poll_interval > 0:
        raise ValueError(f"--poll-interval must be positive, got {args.poll_interval}")
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.standby_blocks < 0:
        raise ValueError(f"--standby-blocks cannot be negative, got {args.standby_blocks}")
    genesis = load_genesis(args.genesis)
    config = WorkerConfig(
        poll_interval=args.poll_interval,
        push=not args.no_push,
        pushed_poll_interval=args.pushed_poll_interval,
        concurrency=args.concurrency,
        standby_blocks=args.standby_blocks,
        models=models,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        params=Params() if genesis is None else genesis.params,
        genesis_hash=None if genesis is None else wire.hex0x(genesis.hash),
    )
    options = parse_backend_options(args.backend_opt)
    faults = Faults.parse(args.fault)
    node_config = load_config(args.config) if args.config else None
    containers = (
        node_config.containers
        if node_config is not None
        else default_containers(models, args.backend, options, faults.describe())
    )
    extra = tuple(parse_container_flag(text, i) for i, text in enumerate(args.container))
    containers = (*containers, *extra)
    check_unique(containers, "--config and --container")
    node_config = node_config or NodeConfig()
    rate_limit = (
        RateLimit.parse(args.rate_limit, "--rate-limit") if args.rate_limit else None
    ) or node_config.rate_limit
    running = args.max_running_jobs or node_config.max_running_jobs
    if running < 1:
        raise ValueError(f"--max-running-jobs must be at least 1, got {running}")
    endpoint = None if args.endpoint == "off" else "" if args.endpoint == "auto" else args.endpoint
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"--endpoint: auto, off or an http(s) URL, got {args.endpoint!r}")
    backend = make_backend(args.backend, options)
    return NodeSetup(
        rpc=args.rpc,
        wallet=load_wallet(args),
        backend=backend,
        faults=faults,
        config=config,
        containers=build_containers(containers, {backend_key(args.backend, options): backend}),
        rate_limit=rate_limit,
        max_running_jobs=running,
        ocean=OceanConfig.parse(node_config.ocean, "--config ocean"),
        http_port=args.http_port,
        host=args.host,
        endpoint=endpoint,
        rpc_timeout=args.rpc_timeout,
    )


async def serve(setup: NodeSetup) -> int:
    client = InferchainClient(setup.rpc, timeout=setup.rpc_timeout)
    node = ResourceNode(
        client, setup.wallet, setup.backend, faults=setup.faults, config=setup.config
    )
    containers = setup.containers
    store: JobStore | None = None
    engine: JobEngine | None = None
    ocean: OceanProvider | None = None
    server: NodeServer | None = None
    try:
        await node.setup()
        for container in containers.values():
            await container.setup()
        store = JobStore.open(setup.config.state_dir, node.address)
        engine = JobEngine(containers, store, max_running=setup.max_running_jobs)
        engine.recover()
        infernet = InfernetApi(engine, onchain=lambda: node.stats().in_flight)
        ocean = OceanProvider(
            config=setup.ocean,
            engine=engine,
            store=store,
            client=client,
            address=node.address,
            base_url=lambda: server.url if server is not None else "",
        )
        ocean.recover()
        server = NodeServer(
            node.info,
            routes=[*infernet.routes(), *ocean.routes()],
            rate_limit=setup.rate_limit,
            host=setup.host,
            port=setup.http_port,
            metrics=node.metrics.registry,
        )
        serving.prepare_process(asyncio.get_running_loop())
        await server.setup()
        if setup.endpoint is not None:
            node.announce(setup.endpoint or server.url)
        running = server

        def stop() -> None:
            node.stop()
            running.stop()

        # the handlers first: a SIGTERM sent as soon as the ready line is read stops cleanly
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        print(f"Resource node {node.address} ready", flush=True)
        print(f"Serving on {server.url}", flush=True)
        await asyncio.gather(node.run_forever(), server.run_forever())
        log.info("stopping: %s", node.stats())
    finally:
        if server is not None:
            await server.cleanup()
        if ocean is not None:
            await ocean.close(setup.config.shutdown_grace)
        if engine is not None:
            await engine.close(setup.config.shutdown_grace)
        if store is not None:
            store.close()
        for container in containers.values():
            await container.close()
        await node.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        setup = build_setup(args)
    except ValueError as exc:
        log.error("%s", exc)
        return BAD_CONFIG_EXIT
    try:
        return serving.run(serve(setup))
    except (StateError, StorageError, OSError, BackendError) as exc:
        log.error("%s", exc)
        return BAD_CONFIG_EXIT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
