"""The anvil peer of the ingestion benchmark, run for a few transactions: installed from npm's
cache into a temporary cache directory (skipped, saying why, where it cannot be), on an
ephemeral loopback port, quiet, fed by the benchmark's own loops in each way of sending, and
gone once stopped. No figure is judged here."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ingest, peer
from rpc.client import InferchainClient, Wallet

COUNT = 24  # timed calls per mode: 25 of one sender, or 8 senders' 4 (the first untimed)


@pytest.fixture(scope="module")
def anvil_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache_dir = tmp_path_factory.mktemp("bench-cache")
    try:
        return peer.ensure_anvil(cache_dir, offline=True)
    except peer.PeerUnavailable as exc:
        pytest.skip(f"anvil {peer.ANVIL_VERSION} cannot be installed from npm's cache here: {exc}")


async def nonce(client: InferchainClient, sender: int) -> int:
    count = await client.call("eth_getTransactionCount", [Wallet.dev(sender).address, "latest"])
    return int(count, 16)


@pytest.mark.parametrize("mode", ingest.MODES)
async def test_anvil_takes_and_mines_every_presigned_transfer(
    anvil_project: Path, tmp_path: Path, mode: str
) -> None:
    calls = peer.ingestion_calls("anvil", COUNT, ingest.CONCURRENT_CLIENTS)[mode]
    if mode == "batched":  # one sender's nonces in one batch, last first: anvil queues them
        calls = [[calls[0][0], *reversed(calls[0][1:])]]
    log_path = tmp_path / "anvil.log"
    node = peer.Anvil(anvil_project, log_path)
    with node:
        assert node.url.startswith("http://127.0.0.1:") and not node.url.endswith(":0")
        accepted = await ingest.drive(mode, node.url, calls)
        assert accepted.count == sum(len(c) - 1 for c in calls)
        assert accepted.rate > 0
        await peer.wait_mined(node.url)
        async with InferchainClient(node.url) as client:
            assert int(await client.call("eth_chainId", []), 16) == peer.ANVIL_CHAIN_ID
            for sender, sent in enumerate(calls):
                assert await nonce(client, sender) == len(sent)
        pid = node.pid
    assert node.proc is None and node.url == ""
    assert not Path(f"/proc/{pid}").exists()
    assert log_path.read_text() == ""  # --quiet: no call, no block, no banner logged


async def test_anvil_accounts_are_the_dev_mnemonics(anvil_project: Path, tmp_path: Path) -> None:
    with peer.Anvil(anvil_project, tmp_path / "anvil.log") as node:
        async with InferchainClient(node.url) as client:
            accounts = await client.call("eth_accounts", [])
    assert len(accounts) == peer.ANVIL_ACCOUNTS
    wanted = [Wallet.dev(0).address, Wallet.dev(peer.ANVIL_ACCOUNTS - 1).address]
    assert [accounts[0].lower(), accounts[-1].lower()] == [a.lower() for a in wanted]


def test_without_npm_anvil_is_unavailable_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(peer.PeerUnavailable) as failure:
        peer.ensure_anvil(tmp_path / "cache")
    message = str(failure.value)
    assert "npm not found on PATH" in message or "linux-amd64 only" in message
    assert not (tmp_path / "cache" / "anvil" / peer.INSTALLED_STAMP).exists()
