"""Nothing answered is lost on a crash (PROTOCOL 5.1, the mempool journal): a validator
process killed with SIGKILL while several clients send it transfers and tasks reopens with
every transaction it had answered with a txHash, pending or committed, and goes on to commit
them. It covers the one-validator producer (automine with its group commit, and interval
blocks, where most answered transactions still wait at the kill) and a network of four
validators killed all at once (the consensus path, `after_commit`).

A journal whose last record is torn (what a crash in the middle of a write leaves) is read up
to that record. The figures (answered, found after the restart) are printed for the README.
"""

from __future__ import annotations

import asyncio
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chain.node.journal import JOURNAL_FILE
from chain.protocol.types import Message, SubmitTask, Transfer
from rpc.client import InferchainClient, TransportError, Wallet, presign
from tests.e2e.network import LocalNetwork, eventually, network_genesis
from tests.e2e.processes import TRACEBACK, StartValidator, log_text
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

pytestmark = pytest.mark.slow

CLIENTS = tuple(Wallet.dev(i) for i in range(6))
RECIPIENT = Wallet.dev(9).address
ANSWERED_BEFORE_KILL = 1500  # the kill condition, counted over all clients
ANSWERED_BEFORE_KILL_NETWORK = 600
MAX_TXS_PER_CLIENT = 100_000  # a bound only: the kill interrupts the clients long before
TIMEOUT = 60.0
TORN_RECORD = b'{"digest":"0x12","hash":"0x34","message":{"amount":"1'  # no newline


@dataclass
class Load:
    """Presigned transfers and tasks from CLIENTS, each client on its own connection, as fast
    as the node answers; what was answered with a txHash is `answered`."""

    chain_id: int
    label: str
    # (index of the validator that answered, sender, nonce, txHash)
    answered: list[tuple[int, str, int, str]] = field(default_factory=list)
    kill_at: int = ANSWERED_BEFORE_KILL
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: int = 0

    async def run(self, urls: list[str], k: int, wallet: Wallet) -> None:
        url = urls[k % len(urls)]
        async with InferchainClient(url, timeout=TIMEOUT) as client:
            first = (await client.get_account(wallet.address))["pendingNonce"]
            for i in range(MAX_TXS_PER_CLIENT):
                nonce = first + i
                msg: Message
                if i % 3 == 2:
                    prompt = f"{self.label} {wallet.address} {nonce}"
                    msg = SubmitTask(wallet.address, nonce, "text", 1, prompt, "")
                else:
                    msg = Transfer(wallet.address, nonce, RECIPIENT, 1 + i)
                tx = presign(msg, self.chain_id, wallet.private_key)
                try:
                    result = await client.send_presigned(tx)
                except TransportError:
                    self.interrupted += 1  # the node is gone: this client stops
                    return
                assert result["txHash"].lower() == tx.tx_hash
                self.answered.append((k % len(urls), wallet.address, nonce, tx.tx_hash))
                if len(self.answered) >= self.kill_at:
                    self.enough.set()


async def load_then_kill(
    urls: list[str], kill: list[ValidatorProcess] | LocalNetwork, kill_at: int
) -> Load:
    """Run the load (client k sends to urls[k % len(urls)]) and SIGKILL the validators once
    `kill_at` transactions are answered, while the clients are still sending."""
    async with InferchainClient(urls[0]) as probe:
        label = f"load at {await probe.block_number()}"
        load = Load(await probe.chain_id(), label, kill_at=kill_at)
    clients = [asyncio.create_task(load.run(urls, k, wallet)) for k, wallet in enumerate(CLIENTS)]
    killed = False
    try:
        await asyncio.wait_for(load.enough.wait(), TIMEOUT)
        if isinstance(kill, LocalNetwork):
            for k in range(kill.size):
                kill.kill(k)
        else:
            for process in kill:
                process.kill()
        killed = True
    finally:
        if not killed:
            for task in clients:
                task.cancel()
        outcomes = await asyncio.gather(*clients, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    assert load.interrupted == len(CLIENTS), "a client finished before the kill"
    return load


async def found_after_restart(urls: list[str], load: Load) -> tuple[int, int]:
    """Every answered transaction is known (pending or committed) to the restarted validator
    that answered it, each sender's pending nonce there is past its answered ones, and they
    all commit. Returns (found at once, of them pending)."""
    found = pending = 0
    clients = [InferchainClient(url, timeout=TIMEOUT) for url in urls]
    try:
        for k, _sender, _nonce, tx_hash in load.answered:
            record = await clients[k].get_tx(tx_hash)
            assert record is not None, f"answered tx {tx_hash} is lost after kill -9"
            assert record["status"] in ("pending", "committed"), record
            found += 1
            pending += record["status"] == "pending"
        last: dict[tuple[int, str], int] = {}
        for k, sender, nonce, _tx_hash in load.answered:
            last[k, sender] = max(last.get((k, sender), -1), nonce)
        for (k, sender), nonce in last.items():
            assert (await clients[k].get_account(sender))["pendingNonce"] > nonce
        for k, _sender, _nonce, tx_hash in load.answered:
            record = await clients[k].wait_for_tx(tx_hash, timeout=TIMEOUT)
            assert record["status"] == "committed", record
    finally:
        for client in clients:
            await client.close()
    return found, pending


def readmitted(log: str) -> int:
    """How many transactions the journal gave back at the restarts the log shows."""
    return sum(int(n) for n in re.findall(r"mempool journal: (\d+) transactions admitted", log))


def report(what: str, load: Load, found: int, readmitted: int) -> None:
    print(
        f"\n{what}: {len(load.answered):,} answered, {found:,} found after kill -9; "
        f"the journal gave back {readmitted:,} waiting transactions"
    )


@pytest.mark.parametrize("block_time_ms", [0, 1000], ids=["automine", "interval"])
async def test_every_answered_transaction_survives_kill_9(
    validators: StartValidator, tmp_path: Path, block_time_ms: int
) -> None:
    genesis = write_genesis(tmp_path / "genesis.json", make_genesis())
    data_dir = tmp_path / "data"
    # no resource node verifies the load's tasks: the guard would refuse them (PROTOCOL 5.11)
    args = ("--block-time", str(block_time_ms), "--check-invariants", "--no-overload-guard")
    first = validators(genesis, data_dir, *args)
    load = await load_then_kill([first.url], [first], ANSWERED_BEFORE_KILL)
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
    # a crash in the middle of a write leaves a torn last record: it is skipped
    with (data_dir / JOURNAL_FILE).open("ab") as journal:
        journal.write(TORN_RECORD)

    again = validators(genesis, data_dir, *args)
    found, _pending = await found_after_restart([again.url], load)
    log = log_text(again)
    report(f"one validator, block time {block_time_ms} ms", load, found, readmitted(log))
    assert "mempool journal:" in log and "1 unreadable records skipped" in log, log
    assert TRACEBACK not in log
    # the journal was rewritten at the start: the torn record is gone from the file
    assert TORN_RECORD not in (data_dir / JOURNAL_FILE).read_bytes()


async def test_a_network_killed_at_once_keeps_what_each_validator_answered(
    tmp_path: Path,
) -> None:
    net = LocalNetwork(tmp_path, network_genesis(4, block_time_ms=1000), "--no-overload-guard")
    try:
        net.start_all()
        await net.wait_serving()
        urls = [net.url(k) for k in range(net.size)]
        load = await load_then_kill(urls, net, ANSWERED_BEFORE_KILL_NETWORK)
        net.start_all()
        await net.wait_serving()
        found, _pending = await found_after_restart(urls, load)
        given_back = sum(readmitted(net.log(k)) for k in range(net.size))
        report("four validators, all killed", load, found, given_back)
        await eventually(
            net.heights, lambda seen: len(seen) == net.size, TIMEOUT, "every validator serving"
        )
        for k in range(net.size):
            assert TRACEBACK not in net.log(k)
    finally:
        await net.close()
