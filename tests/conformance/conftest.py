"""Fixtures of the conformance suite: the node under test, reached over HTTP only.

`pytest tests/conformance --target URL` checks any node that serves the AegisAI RPC at URL.
The resource node suites in `infernet/` and `ocean/` read the same option as the resource
node's URL: run them by their directory (`pytest tests/conformance/infernet --target URL`).
Without `--target`, the suite starts `python -m rpc` itself (the dev genesis with automine,
dev accounts unlocked) on an ephemeral port, and stops it at the end of the run.

What a target may lack (unlocked dev accounts, funded dev accounts, registered dev resource
nodes, the getTasksBySender extension) is probed once over the API; the tests that need it
skip with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from rpc.client import InferchainClient, RpcError, Wallet
from tests.conformance.support import (
    DEV_WALLETS,
    MIN_FUNDS,
    NODE_WALLETS,
    SENDER_FUNDS,
    UNKNOWN_HASH,
    Api,
    Target,
    epoch,
    fresh_wallet,
)
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

MEMPOOL_BLOCK_TIME_MS = 3_600_000  # blocks so rare that nothing drains the mempool
MEMPOOL_MAX_TX_BYTES = 4 * 1024 * 1024  # a few large transactions fill its 64 MiB quickly


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target",
        metavar="URL",
        default=None,
        help="conformance suite: check the AegisAI RPC node at URL instead of starting one",
    )


@pytest.fixture(scope="session")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    url = request.config.getoption("--target", default=None)
    if url:
        yield Target(url.rstrip("/"), owned=False)
        return
    base = tmp_path_factory.mktemp("conformance")
    genesis = write_genesis(base / "genesis.json", make_genesis())
    process = ValidatorProcess(genesis, base / "validator")
    try:
        yield Target(process.start(), owned=True)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def mempool_target(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second validator of the dev genesis whose blocks come once an hour and whose
    transactions may be 4 MiB: its mempool fills in a few requests. Only when the suite starts
    its validators: filling the mempool of a target is not the suite's business."""
    if not target.owned:
        pytest.skip("-32007 is provoked only on a validator the suite starts (without --target)")
    base = tmp_path_factory.mktemp("conformance-mempool")
    genesis = write_genesis(
        base / "genesis.json",
        make_genesis(block_time_ms=MEMPOOL_BLOCK_TIME_MS, max_tx_bytes=MEMPOOL_MAX_TX_BYTES),
    )
    process = ValidatorProcess(genesis, base / "validator")
    try:
        yield process.start()
    finally:
        stop(process)


def stop(process: ValidatorProcess) -> None:
    """SIGTERM (a clean stop), then make sure it is gone."""
    if process.proc is not None and process.proc.poll() is None:
        process.terminate()
    process.close()


@pytest.fixture
async def client(target: Target) -> AsyncIterator[InferchainClient]:
    """A fresh client per test: its nonce counters start from the node's pendingNonce."""
    async with InferchainClient(target.url) as fresh:
        yield fresh


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Plain HTTP, only for bodies and shapes the client library cannot send."""
    async with aiohttp.ClientSession() as session:
        yield session


async def probe(target: Target, client: InferchainClient) -> Target:
    if target.probed:
        return target
    # Unlocked dev accounts (PROTOCOL 5.4): an unsigned result for an unknown task is -32001
    # when the node signs for dev account 0, -32004 when it does not. Neither changes anything.
    try:
        await client.call(
            "submitInferenceResult",
            {"taskHash": UNKNOWN_HASH, "resourceNode": DEV_WALLETS[0].address, "result": "r"},
        )
    except RpcError as exc:
        target.dev_mode = exc.code == -32001
    for wallet in DEV_WALLETS:
        account = await client.get_account(wallet.address)
        if int(account["balance"]) >= MIN_FUNDS:
            target.funded.append(wallet)
    for wallet in NODE_WALLETS:
        try:
            await client.call(
                "queryPendingTasks", {"ResourceAddress": wallet.address, "TimeStamp": epoch()}
            )
        except RpcError:
            continue  # not registered, jailed or staked too little on this chain
        target.nodes.append(wallet)
    try:
        await client.call("getTasksBySender", {"address": DEV_WALLETS[0].address, "limit": 1})
        target.tasks_by_sender = True
    except RpcError as exc:
        target.tasks_by_sender = exc.code != -32601
    target.probed = True
    return target


@pytest.fixture
async def api(target: Target, client: InferchainClient, http: aiohttp.ClientSession) -> Api:
    return Api(client, http, target.url)


@pytest.fixture
async def caps(target: Target, client: InferchainClient) -> Target:
    """The target with what it offers probed (once per run)."""
    return await probe(target, client)


@pytest.fixture
async def dev_mode(caps: Target) -> None:
    if not caps.dev_mode:
        pytest.skip("the target has no unlocked dev accounts (PROTOCOL 5.4)")


@pytest.fixture
async def sender(caps: Target, api: Api) -> Wallet:
    """A new key funded by a dev account (the well-known mnemonic) for this test alone: its
    nonces start at 0, and no task of another test refunds it meanwhile."""
    if not caps.funded:
        pytest.skip("no dev account (m/44'/60'/0'/0/0..9 of the dev mnemonic) has funds here")
    wallet = fresh_wallet()
    await api.committed(await api.client.transfer(caps.funded[0], wallet.address, SENDER_FUNDS))
    return wallet


@pytest.fixture
async def nodes(caps: Target) -> list[Wallet]:
    """The dev resource nodes (accounts 200 + k) that are eligible on the target."""
    if len(caps.nodes) < len(NODE_WALLETS):
        pytest.skip(
            f"needs the {len(NODE_WALLETS)} dev resource nodes (accounts 200-202 of the dev "
            f"mnemonic) registered and eligible; {len(caps.nodes)} are"
        )
    return caps.nodes


@pytest.fixture
async def tasks_by_sender(caps: Target) -> None:
    if not caps.tasks_by_sender:
        pytest.skip("the target does not serve the getTasksBySender extension (-32601)")
