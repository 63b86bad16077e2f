"""Shared test machinery: a validator in this process behind a real HTTP server on an
ephemeral loopback port, and validator and resource node processes (`testnet.process`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from eth_hash.auto import keccak

from chain.node.node import Node, ValidatorKey, dev_validator_key
from chain.protocol import crypto
from chain.protocol.genesis import DEV_MNEMONIC as DEV_MNEMONIC  # re-exported for the tests
from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from chain.protocol.types import Task
from rpc import subscriptions
from rpc.client import InferchainClient, Wallet
from rpc.server import RpcServer
from testnet.commands import (
    RESOURCE_NODE_READY,
    VALIDATOR_READY,
    resource_node_args,
    validator_args,
)
from testnet.process import Process

REPO = Path(__file__).resolve().parent.parent
JS_DIR = REPO / "tests" / "js"
NODE_MAJOR = 18  # fetch() without a flag


def make_genesis(**overrides: Any) -> Genesis:
    """The dev genesis (one validator) with `params` overrides by attribute name."""
    params = Params(**{"block_time_ms": 0, **overrides})
    return parse_genesis(dev_genesis(params=params))


@dataclass
class LocalChain:
    node: Node
    url: str
    client: InferchainClient


@contextlib.asynccontextmanager
async def local_chain(
    data_dir: Path,
    genesis: Genesis | None = None,
    *,
    run: bool = True,
    ws_limits: subscriptions.Limits | None = None,
    key: ValidatorKey | None = None,
    **node_options: Any,
) -> AsyncIterator[LocalChain]:
    """A validator in this process with its RPC on 127.0.0.1:<ephemeral>.

    With `run`, blocks are produced (automine unless the genesis says otherwise); without it,
    the test produces blocks itself with `node.produce_block()`. `key`: the validator's, by
    default the only validator of a dev genesis.
    """
    genesis = genesis or make_genesis()
    key = key or dev_validator_key(genesis, None)
    node = Node(genesis, data_dir, key, check_invariants=True, **node_options)
    await node.setup()
    runner = web.AppRunner(RpcServer(node, ws_limits).app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    producer = asyncio.create_task(node.run_forever()) if run else None
    client = InferchainClient(url)
    try:
        yield LocalChain(node, url, client)
    finally:
        await client.close()
        node.stop()
        if producer is not None:
            await asyncio.wait_for(producer, 10)
        await runner.cleanup()
        await node.cleanup()


class ValidatorProcess(Process):
    """`python -m rpc` in its own process, on an ephemeral port; `start()` returns its URL once
    it serves. `extra` options go to the command as they are."""

    def __init__(self, genesis_path: Path, data_dir: Path, *extra: str) -> None:
        args = validator_args(genesis_path, data_dir, extra=extra)
        log_path = data_dir.parent / f"{data_dir.name}.log"
        super().__init__("validator", args, log_path, ready_prefix=VALIDATOR_READY)


class ResourceNodeProcess(Process):
    """`python -m resource_node` for dev resource node `index`; `url` is its HTTP URL."""

    def __init__(self, rpc_url: str, index: int, state_dir: Path, *extra: str) -> None:
        self.index = index
        args = resource_node_args(rpc_url, index, state_dir=state_dir, http_port=0, extra=extra)
        log_path = state_dir.parent / f"{state_dir.name}.log"
        super().__init__(f"resource node {index}", args, log_path, ready_prefix=RESOURCE_NODE_READY)


def write_genesis(path: Path, genesis: Genesis) -> Path:
    path.write_text(json.dumps(genesis.raw, indent=2))
    return path


# Assigned verifiers and secrets (PROTOCOL 4.5, 4.13), computed here from the rules' text


DEV_NODE_INDEX = 200  # the derivation index of dev resource node 0 (PROTOCOL 2)


@functools.cache
def dev_node_wallet(k: int) -> Wallet:
    """Dev resource node `k` of `dev_genesis` (index 200 + k)."""
    return Wallet.dev(DEV_NODE_INDEX + k)


@functools.lru_cache(maxsize=256)
def dev_secret(private_key: bytes, height: int, base: int = 0, epoch: int = 0) -> bytes:
    """The secret of `height` of a chain of secrets derived from `private_key` (the chain of
    `crypto.dev_secrets_head`, committed at `base`): the value that hashes `height - base`
    times to the head."""
    steps = crypto.SECRET_CHAIN_LENGTH - (height - base)
    return crypto.hash_steps(crypto.secrets_seed(private_key, epoch), steps)


async def reveal_dev_secret(
    client: InferchainClient, wallet: Wallet, height: int, base: int = 0
) -> str:
    """Reveal `wallet`'s dev secret of `height` (revealSecret); returns the txHash."""
    return await client.reveal_secret(wallet, height, dev_secret(wallet.private_key, height, base))


def verifier_order(
    block_hash: str, task_hash: str, submitter: str, candidates: Iterable[str]
) -> list[str]:
    """PROTOCOL 4.5, computed here: the candidates by keccak256(blockHash || taskHash ||
    submitter || node), smallest first (hex strings in, addresses as their 20 bytes)."""
    prefix = bytes.fromhex(block_hash[2:] + task_hash[2:] + submitter[2:])
    return sorted(candidates, key=lambda node: keccak(prefix + bytes.fromhex(node[2:])))


def entry_of(task: Mapping[str, Any], submitter: str) -> dict[str, Any]:
    """The executionInfo entry of `submitter` in a queryTask answer."""
    (entry,) = [e for e in task["executionInfo"] if e["resourceNode"] == submitter]
    return dict(entry)


async def assigned_rounds(
    client: InferchainClient, task_hash: str, submitter: str
) -> list[list[str]]:
    """The rounds of verifiers assigned to `submitter`'s result so far, as queryTask shows
    them (empty while the result's block has not ended)."""
    entry = entry_of(await client.query_task(task_hash), submitter)
    return [list(members) for members in entry["assignment"]["rounds"]]


async def verify_with_assigned(
    client: InferchainClient,
    task_hash: str,
    submitter: str,
    valid: bool | Mapping[str, bool],
    wallets: Iterable[Wallet] = (),
) -> list[str]:
    """Every member of the result's current (last opened) round that has not judged it yet
    submits a verdict: `valid`, or `valid[address]` per verifier. The members sign with
    `wallets` or, when not among them, as dev resource nodes. Returns the verifiers in round
    order; each verdict must be accepted (true)."""
    keys = {w.address: w for w in wallets}
    entry = entry_of(await client.query_task(task_hash), submitter)
    rounds = entry["assignment"]["rounds"]
    assert rounds, f"no verifier is assigned to {submitter}'s result yet"
    answered = {v["verifier"] for v in entry["verifications"]}
    sent = []
    for verifier in rounds[-1]:
        if verifier in answered:
            continue
        verdict = valid if isinstance(valid, bool) else valid[verifier]
        wallet = keys.get(verifier) or dev_node_by_address(verifier)
        assert await client.submit_verification(wallet, task_hash, submitter, verdict)
        sent.append(verifier)
    return sent


def dev_node_by_address(address: str) -> Wallet:
    for k in range(64):
        if dev_node_wallet(k).address == address:
            return dev_node_wallet(k)
    raise KeyError(f"{address} is no dev resource node")


def settlement_values(task: Task, *, height: bool = True) -> dict[str, Any]:
    """A settled task's settlement as plain values (amounts as ints, each slash and payout a
    tuple), to compare with one written by hand."""
    s = task.settlement
    assert s is not None
    out: dict[str, Any] = {"height": s.height} if height else {}
    out.update(
        {
            "fee": s.fee,
            "networkReward": s.network_reward,
            "slashed": [(x.address, x.amount, x.reason) for x in s.slashed],
            "payouts": [(p.address, p.amount, p.role, p.rank) for p in s.payouts],
            "refund": s.refund,
            "burned": s.burned,
        }
    )
    return out


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` served on 127.0.0.1:<ephemeral>: its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


WAIT_S = 30.0
POLL_S = 0.02


async def wait_until(
    probe: Callable[[], Awaitable[Any]] | Callable[[], Any], what: str, timeout: float = WAIT_S
) -> Any:
    """`probe()` (awaited when it answers an awaitable) until it answers something true, and
    that answer; TimeoutError naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"after {timeout} s: {what}")
        await asyncio.sleep(POLL_S)


def node_for(what: str, packages: Iterable[str] = (), directory: Path = JS_DIR) -> str:
    """node (NODE_MAJOR or later) with `packages` installed in `directory` (default tests/js),
    for `what`; the test skips, saying which is missing, when they cannot be had."""

    node = shutil.which("node")
    if node is None:
        pytest.skip(f"node is not installed: {what} needs Node {NODE_MAJOR}+ and npm")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR:
        pytest.skip(f"node {version} is older than {NODE_MAJOR}: {what} uses fetch()")
    for package in packages:
        if not (directory / "node_modules" / package).is_dir():
            where = directory.relative_to(REPO)
            pytest.skip(f"{package} is not installed in {where}: `cd {where} && npm ci`")
    return node
