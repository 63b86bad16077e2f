"""Starting `python -m rpc`: refusals with a clear message and no traceback (a data directory
held by another process, a data directory of another chain, a broken genesis file), and the
dev-mode banner that lists the unlocked accounts like anvil."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chain.node.config import load_genesis
from chain.protocol import wire
from chain.protocol.genesis import Genesis
from rpc.client import InferchainClient, Wallet
from tests.e2e.processes import TRACEBACK, Exited, StartValidator, log_text, run_to_exit
from tests.helpers import REPO, make_genesis, write_genesis

TX_TIMEOUT = 20.0
BANNER_TIMEOUT = 30.0
SHIPPED_GENESIS = REPO / "genesis.json"


async def commit_transfer(url: str) -> dict[str, Any]:
    """Send a transfer from dev account 0, wait until it commits; returns /health after it."""
    async with InferchainClient(url) as client:
        tx_hash = await client.transfer(Wallet.dev(0), Wallet.dev(1).address, 10**18)
        tx = await client.wait_for_tx(tx_hash, timeout=TX_TIMEOUT)
        assert tx["status"] == "committed", tx
        return await client.health()


def assert_clear_refusal(exited: Exited, *expected: str) -> None:
    """Exit code non-zero, every `expected` text in stderr, no traceback, never listened."""
    assert exited.returncode != 0, exited
    assert exited.returncode > 0, f"killed by signal {-exited.returncode}: {exited}"
    assert TRACEBACK not in exited.stderr, exited.stderr
    assert "Listening on" not in exited.stdout, exited.stdout
    for text in expected:
        assert text in exited.stderr, f"{text!r} is not in stderr: {exited.stderr!r}"


async def test_second_process_on_a_held_data_dir_is_refused(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    _genesis, genesis_path = dev_genesis
    data_dir = tmp_path / "ledger"
    holder = validators(genesis_path, data_dir)
    before = await commit_transfer(holder.url)

    exited = run_to_exit(genesis_path, data_dir)

    assert_clear_refusal(exited, "LOCK", "in use", str(data_dir))
    # The refused process disturbed nothing: the holder still serves and commits.
    assert holder.proc is not None and holder.proc.poll() is None, log_text(holder)
    after = await commit_transfer(holder.url)
    assert after["height"] > before["height"]


async def test_data_dir_of_another_genesis_is_refused(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    genesis, genesis_path = dev_genesis
    other = make_genesis(task_base_fee=2 * 10**15)
    assert other.hash != genesis.hash
    other_path = write_genesis(tmp_path / "other-genesis.json", other)
    data_dir = tmp_path / "ledger"
    first = validators(genesis_path, data_dir)
    before = await commit_transfer(first.url)
    assert first.terminate() == 0, log_text(first)

    exited = run_to_exit(other_path, data_dir)

    assert_clear_refusal(exited, wire.hex0x(genesis.hash), wire.hex0x(other.hash))
    # The refusal changed nothing: the right genesis reopens the chain where it was.
    again = validators(genesis_path, data_dir)
    async with InferchainClient(again.url) as client:
        health = await client.health()
    keys = ("genesisHash", "height", "blockHash", "appHash")
    assert {k: health[k] for k in keys} == {k: before[k] for k in keys}


Mutation = Callable[[dict[str, Any]], None]


def _set(key: str, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw[key] = value

    return mutate


def _delete(key: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        del raw[key]

    return mutate


def _set_param(key: str, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw["params"][key] = value

    return mutate


def _set_in_first_account(key: str, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw["accounts"][0][key] = value

    return mutate


def _json_file(mutate: Mutation) -> Callable[[], bytes]:
    def content() -> bytes:
        raw = json.loads(json.dumps(make_genesis().raw))
        mutate(raw)
        return json.dumps(raw, indent=2).encode()

    return content


# (the genesis file's bytes, a text the error must contain; {path} is the file's path)
BROKEN_GENESIS = [
    pytest.param(_json_file(_set("chainId", "abc")), "chainId", id="chainId-not-an-int"),
    pytest.param(_json_file(_delete("validators")), "validators", id="validators-missing"),
    pytest.param(_json_file(_set("validators", [])), "validators", id="validators-empty"),
    pytest.param(_json_file(_delete("genesisTime")), "genesisTime", id="genesisTime-missing"),
    pytest.param(
        _json_file(_set_param("blockTimeMs", -1)),
        "params.blockTimeMs",
        id="blockTimeMs-negative",
    ),
    pytest.param(
        _json_file(_set_in_first_account("address", "0x1234")),
        "accounts[0].address",
        id="account-address-short",
    ),
    pytest.param(
        _json_file(_set_in_first_account("balance", "ten")),
        "accounts[0].balance",
        id="account-balance-not-a-number",
    ),
    pytest.param(lambda: b'{"chainId": 7331,', "{path}", id="not-json"),
    pytest.param(
        lambda: b"\xff\xfe" + json.dumps(make_genesis().raw).encode("utf-16-le"),
        "{path}",
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("content", "expected"), BROKEN_GENESIS)
def test_broken_genesis_is_refused_naming_the_field(
    tmp_path: Path, content: Callable[[], bytes], expected: str
) -> None:
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_bytes(content())

    exited = run_to_exit(genesis_path, tmp_path / "ledger")

    assert_clear_refusal(exited, expected.format(path=genesis_path))


def test_data_dir_that_is_a_file_is_refused(
    tmp_path: Path, dev_genesis: tuple[Genesis, Path]
) -> None:
    _genesis, genesis_path = dev_genesis
    not_a_dir = tmp_path / "ledger"
    not_a_dir.write_text("not a directory\n")

    exited = run_to_exit(genesis_path, not_a_dir)

    assert_clear_refusal(exited, str(not_a_dir))
    assert not_a_dir.read_text() == "not a directory\n"


async def test_port_in_use_is_refused(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    _genesis, genesis_path = dev_genesis
    holder = validators(genesis_path, tmp_path / "first")
    port = holder.url.rsplit(":", 1)[1]

    exited = run_to_exit(genesis_path, tmp_path / "second", port=int(port))

    assert_clear_refusal(exited, port)
    assert holder.proc is not None and holder.proc.poll() is None, log_text(holder)
    await commit_transfer(holder.url)


def _read_banner(proc: subprocess.Popen[bytes], timeout: float) -> list[str]:
    """stdout lines up to and including 'Listening on ...', within `timeout` seconds.

    Reads the raw pipe (os.read after select), not a buffered file object: a buffered
    readline can pull the whole banner into its buffer, and select then waits for nothing.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            lines = received.decode().split("\n")
            if any(line.startswith("Listening on ") for line in lines[:-1]):
                done = next(i for i, line in enumerate(lines) if line.startswith("Listening on "))
                return lines[: done + 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError(f"no 'Listening on' line within {timeout} s: {received!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the validator exited (code {proc.wait(10)}): {received!r}")
            received += chunk


def _section(lines: list[str], title: str) -> list[str]:
    """The `(i) ...` lines that follow the heading `title` (and its ==== rule)."""
    start = lines.index(title) + 1
    assert set(lines[start]) == {"="}, lines[start]
    entries = []
    for line in lines[start + 1 :]:
        if not line.startswith("("):
            break
        entries.append(line)
    return entries


async def test_dev_banner_lists_accounts_keys_chain_id_and_url(tmp_path: Path) -> None:
    log_path = tmp_path / "ledger.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rpc",
                "--genesis",
                str(SHIPPED_GENESIS),
                "--data-dir",
                str(tmp_path / "ledger"),
                "--port",
                "0",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        lines = _read_banner(proc, BANNER_TIMEOUT)
        shipped = load_genesis(SHIPPED_GENESIS)

        chain_line = next(line for line in lines if line.startswith("Chain ID:"))
        assert re.search(r"\b7331\b", chain_line), chain_line
        assert any(wire.hex0x(shipped.hash) in line for line in lines), lines

        wallets = [Wallet.dev(i) for i in range(10)]
        accounts = _section(lines, "Available accounts (unlocked, dev mode)")
        assert len(accounts) == 10, accounts
        for i, (line, wallet) in enumerate(zip(accounts, wallets, strict=True)):
            assert line.startswith(f"({i}) {wallet.address} "), line
        keys = _section(lines, "Private keys")
        assert keys == [f"({i}) {wire.hex0x(w.private_key)}" for i, w in enumerate(wallets)]

        match = re.fullmatch(r"Listening on (http://127\.0\.0\.1:(\d+))", lines[-1])
        assert match is not None, lines[-1]
        assert int(match.group(2)) > 0
        async with InferchainClient(match.group(1)) as client:
            assert await client.chain_id() == 7331
            assert await client.genesis_hash() == wire.hex0x(shipped.hash)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 0, log_path.read_text()


async def test_sigterm_at_the_ready_line_stops_cleanly(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    """The signal handlers are in place before the ready line is printed: a SIGTERM sent as
    soon as it is read is a clean stop (exit code 0), not a death by signal (-15)."""
    _genesis, genesis_path = dev_genesis
    for attempt in range(2):
        process = validators(genesis_path, tmp_path / f"ledger-{attempt}", "--quiet")
        assert process.terminate() == 0, log_text(process)
