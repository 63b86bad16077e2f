"""The peers of the ingestion benchmark: `hardhat node` and anvil, fed presigned transfers.

`ensure_hardhat` installs a pinned hardhat 2 with npm into a cache directory on first use and
reuses it afterwards; `Hardhat` runs `hardhat node` (automine, chain id 31337, the default
accounts of the dev mnemonic) on an ephemeral loopback port. `ensure_anvil` installs anvil the
same way, from its npm package for linux-amd64 (the binary ships inside it), and `Anvil` runs
it with the same chain id, accounts and automine, quiet, keeping no state file. `transfer_calls`
signs `eth_sendRawTransaction` calls before any clock starts, in the `bench.ingest.Call` shape,
so the loops of `bench.ingest` drive both peers exactly as they drive a validator.

How each takes a JSON-RPC batch differs. Hardhat runs the calls of a batch in no fixed order and
cannot hold a nonce ahead of an account's, so `bench.ingest.batched` needs the calls of
`batch_transfer_calls` (distinct senders within a batch) for it. Anvil also runs a batch's calls
concurrently (a join of their futures), but its pool keeps a transaction whose nonce is ahead of
the account's queued until the gap is filled: one sender's nonces are accepted in any order, and
anvil takes the same single sender's batches as the validator. Under automine hardhat mines a
transaction before it answers its call; anvil answers once the transaction is in its pool and
mines behind, so `wait_mined` tells when anvil's pool is empty (its committed rate).

Nothing is downloaded at run time: hardhat runs as on a CI server (no telemetry prompt, no
analytics, no banner fetch), keeps its global files (analytics id, vars, compiler cache) under
the cache directory instead of the home directory, and `hardhat node` compiles nothing; anvil
runs with its home directory in the cache directory too. When a peer cannot run (no npm or
node, not linux-amd64 for anvil, a failed install, a node that does not start),
`PeerUnavailable` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from eth_account import Account

from chain.protocol.genesis import DEV_MNEMONIC
from rpc.client import InferchainClient, Wallet

logger = logging.getLogger(__name__)

HARDHAT_VERSION = "2.29.1"  # the last hardhat 2 release; supports Node.js 20, 22 and 24
HARDHAT_CHAIN_ID = 31337
# Funded accounts m/44'/60'/0'/0/0..99, 10,000 ETH each: hardhat's 20 default accounts and 80
# more of the same mnemonic, one per call of a batch (see `batch_transfer_calls`).
HARDHAT_ACCOUNTS = 100
BATCH_SENDERS = 100  # bench.ingest.BATCH_SIZE: the calls of one batch need distinct senders
PROJECT_DIR_NAME = "hardhat"
HARDHAT_CLI = Path("node_modules/hardhat/internal/cli/bootstrap.js")
HARDHAT_BIN = Path("node_modules/.bin/hardhat")
INSTALLED_STAMP = ".installed"  # holds the pinned version once npm install has succeeded
NPM_INSTALL_TIMEOUT_S = 600.0
NPM_OUTPUT_TAIL_LINES = 20
START_TIMEOUT_S = 60.0
START_POLL_S = 0.02
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
LOGGING_ENV = "INFERCHAIN_HARDHAT_LOGGING"  # "true": hardhat node logs every call

# anvil of Foundry 1.7.1, from the npm package that carries its linux-amd64 binary.
ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
ANVIL_VERSION = "1.7.1"
ANVIL_PROJECT_DIR_NAME = "anvil"
ANVIL_BIN = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
ANVIL_PLATFORM = ("Linux", ("x86_64", "amd64"))  # the only one the package is built for
ANVIL_VERSION_TIMEOUT_S = 30.0
ANVIL_CHAIN_ID = HARDHAT_CHAIN_ID
ANVIL_ACCOUNTS = HARDHAT_ACCOUNTS  # the same 100 funded accounts of the dev mnemonic
TCP_LISTEN = "0A"  # the LISTEN state in /proc/net/tcp
MINED_TIMEOUT_S = 120.0
MINED_POLL_S = 0.01
MINING_STALL_S = 10.0

TRANSFER_GAS = 21_000
TRANSFER_VALUE_WEI = 1
# The base fee starts at 1 gwei and only falls under automine (one 21,000-gas block per
# transaction, far below the 30M gas target), so a 10 gwei cap is never reached.
MAX_FEE_PER_GAS = 10 * 10**9
MAX_PRIORITY_FEE_PER_GAS = 10**9
RECIPIENT = "0x000000000000000000000000000000000000dEaD"

SEND_RAW_TRANSACTION = "eth_sendRawTransaction"
TXPOOL_STATUS = "txpool_status"
BLOCK_NUMBER = "eth_blockNumber"

READY = re.compile(rb"Started HTTP and WebSocket JSON-RPC server at (http://\S+?)/?\r?\n")

PACKAGE_JSON: dict[str, Any] = {
    "name": "inferchain-bench-hardhat",
    "version": "0.0.0",
    "private": True,
    "description": "hardhat for the inferchain ingestion benchmark (written by bench/peer.py)",
    "license": "UNLICENSED",
    "dependencies": {"hardhat": HARDHAT_VERSION},
}

ANVIL_PACKAGE_JSON: dict[str, Any] = {
    "name": "inferchain-bench-anvil",
    "version": "0.0.0",
    "private": True,
    "description": "anvil for the inferchain ingestion benchmark (written by bench/peer.py)",
    "license": "UNLICENSED",
    "dependencies": {ANVIL_PACKAGE: ANVIL_VERSION},
}

# Hardhat 2 refuses to run without a config file. Every value below but the account count (20
# by default) is hardhat's own default, written out so that a change of default cannot change
# the peer; the per-call log of `hardhat node` (on by default) follows LOGGING_ENV.
HARDHAT_CONFIG = f"""\
// Written by bench/peer.py: the default Hardhat Network, pinned.
module.exports = {{
  networks: {{
    hardhat: {{
      chainId: {HARDHAT_CHAIN_ID},
      mining: {{ auto: true, interval: 0 }},
      accounts: {{ mnemonic: "{DEV_MNEMONIC}", path: "m/44'/60'/0'/0", count: {HARDHAT_ACCOUNTS} }},
      loggingEnabled: process.env.{LOGGING_ENV} === "true",
    }},
  }},
}};
"""


class PeerUnavailable(Exception):
    """The peer cannot run here; the message says why and what to look at."""


def ensure_hardhat(cache_dir: Path, *, offline: bool = False) -> Path:
    """The hardhat project in `cache_dir / "hardhat"`, installed with npm on first use
    (`offline`: from npm's cache only)."""
    project = cache_dir / PROJECT_DIR_NAME
    _require_executable("node", "the hardhat peer needs Node.js and npm (nodejs.org)")
    _write_if_changed_in(project, "hardhat.config.js", HARDHAT_CONFIG)
    if _installed_version(project, (HARDHAT_BIN, HARDHAT_CLI)) == HARDHAT_VERSION:
        logger.debug("hardhat %s already installed in %s", HARDHAT_VERSION, project)
        return project
    _npm_install(
        project, "hardhat", HARDHAT_VERSION, PACKAGE_JSON, (HARDHAT_BIN, HARDHAT_CLI), offline
    )
    return project


def ensure_anvil(cache_dir: Path, *, offline: bool = False) -> Path:
    """The anvil project in `cache_dir / "anvil"` (its binary at ANVIL_BIN), installed with
    npm on first use (`offline`: from npm's cache only) and checked to run as ANVIL_VERSION."""
    system, machine = platform.system(), platform.machine()
    if system != ANVIL_PLATFORM[0] or machine.lower() not in ANVIL_PLATFORM[1]:
        raise PeerUnavailable(
            f"the anvil peer runs {ANVIL_PACKAGE}, built for linux-amd64 only; this machine is "
            f"{system} {machine}"
        )
    project = cache_dir / ANVIL_PROJECT_DIR_NAME
    if _installed_version(project, (ANVIL_BIN,)) == ANVIL_VERSION:
        logger.debug("anvil %s already installed in %s", ANVIL_VERSION, project)
        return project
    _npm_install(project, "anvil", ANVIL_VERSION, ANVIL_PACKAGE_JSON, (ANVIL_BIN,), offline)
    binary = project / ANVIL_BIN
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=ANVIL_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        (project / INSTALLED_STAMP).unlink(missing_ok=True)
        raise PeerUnavailable(f"{binary} does not run here: {exc}") from exc
    said = _tail(done.stdout + done.stderr, NPM_OUTPUT_TAIL_LINES)
    if done.returncode != 0 or f"Version: {ANVIL_VERSION}" not in said:
        (project / INSTALLED_STAMP).unlink(missing_ok=True)
        raise PeerUnavailable(
            f"{binary} --version exited with {done.returncode}, not naming {ANVIL_VERSION}:\n{said}"
        )
    return project


def _npm_install(
    project: Path,
    what: str,
    version: str,
    package_json: dict[str, Any],
    expected: tuple[Path, ...],
    offline: bool,
) -> None:
    """`npm install` of `package_json` in `project`; the stamp once `expected` files exist."""
    npm = _require_executable("npm", f"the {what} peer is installed with npm (nodejs.org)")
    project.mkdir(parents=True, exist_ok=True)
    _write_if_changed(project / "package.json", json.dumps(package_json, indent=2) + "\n")
    (project / INSTALLED_STAMP).unlink(missing_ok=True)
    where = "from npm's cache" if offline else "with npm"
    logger.info("installing %s %s %s into %s", what, version, where, project)
    started = time.monotonic()
    command = [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier"]
    if offline:
        command.append("--offline")
    try:
        done = subprocess.run(
            command,
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=NPM_INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output if isinstance(exc.output, bytes) else b""
        raise PeerUnavailable(
            f"npm install of {what} {version} did not finish in "
            f"{NPM_INSTALL_TIMEOUT_S:g} s in {project}:\n{_tail(output, NPM_OUTPUT_TAIL_LINES)}"
        ) from exc
    if done.returncode != 0:
        raise PeerUnavailable(
            f"npm install of {what} {version} {where} failed (exit {done.returncode}) in "
            f"{project}:\n{_tail(done.stdout, NPM_OUTPUT_TAIL_LINES)}"
        )
    missing = [str(path) for path in expected if not (project / path).exists()]
    if missing:
        raise PeerUnavailable(
            f"npm install succeeded but left no {', '.join(missing)} in {project}:\n"
            f"{_tail(done.stdout, NPM_OUTPUT_TAIL_LINES)}"
        )
    (project / INSTALLED_STAMP).write_text(version + "\n")
    logger.info("installed %s %s in %.1f s", what, version, time.monotonic() - started)


class PeerNode:
    """A peer node process of the benchmark (hardhat, anvil): a context manager that starts
    it (`start`, its URL once it serves) and stops its process group."""

    name = "peer"

    def __init__(self, project_dir: Path, log_path: Path) -> None:
        self.project_dir = project_dir.resolve()  # node runs in it: a relative path breaks
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The process that serves (its RSS is the peer's)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after STOP_TIMEOUT_S; nothing is left."""
        if self.proc is not None:
            _stop_group(self.proc, self.name)
        self.proc = None
        self.url = ""


class Hardhat(PeerNode):
    """`hardhat node` on an ephemeral loopback port, its output in `log_path`.

    `log_calls=True` keeps hardhat's log of every call (the default of `hardhat node`); off by
    default, as the validators of the benchmark run with `--quiet`.
    """

    name = "hardhat node"

    def __init__(self, project_dir: Path, log_path: Path, *, log_calls: bool = False) -> None:
        super().__init__(project_dir, log_path)
        self.log_calls = log_calls

    def start(self) -> str:
        """Start `hardhat node` and return its URL once it serves."""
        if self.proc is not None:
            raise RuntimeError("hardhat is already running")
        node = _require_executable("node", "the hardhat peer needs Node.js (nodejs.org)")
        cli = self.project_dir / HARDHAT_CLI
        if not cli.exists():
            raise PeerUnavailable(f"no hardhat in {self.project_dir}: call ensure_hardhat first")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The port is the kernel's choice (0), and hardhat prints the one it got.
        command = [node, str(cli), "node", "--hostname", "127.0.0.1", "--port", "0"]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.project_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
            )
        self.url = self._wait_ready(offset, started + START_TIMEOUT_S)
        logger.info(
            "hardhat node (pid %d) serves %s after %.2f s",
            self.proc.pid,
            self.url,
            time.monotonic() - started,
        )
        return self.url

    def _environment(self) -> dict[str, str]:
        # Hardhat's global dir follows the XDG variables (env-paths): keep it in the cache.
        home = self.project_dir / ".hardhat-home"
        return {
            **os.environ,
            "CI": "true",  # no prompt, no analytics, no banner fetched from GitHub
            "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
            "NO_COLOR": "1",
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            LOGGING_ENV: "true" if self.log_calls else "false",
        }

    def _wait_ready(self, offset: int, deadline: float) -> str:
        assert self.proc is not None
        with self.log_path.open("rb") as log:
            log.seek(offset)
            output = b""
            while (match := READY.search(output)) is None:
                output += log.read()
                if self.proc.poll() is not None:
                    if (match := READY.search(output)) is not None:
                        break
                    code = self.proc.returncode
                    self.stop()
                    raise PeerUnavailable(
                        f"hardhat node exited with {code} before serving; see {self.log_path}:\n"
                        f"{_tail(output, LOG_TAIL_LINES)}"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise PeerUnavailable(
                        f"hardhat node did not start in {START_TIMEOUT_S:g} s; see {self.log_path}"
                    )
                time.sleep(START_POLL_S)
        return match.group(1).decode()


class Anvil(PeerNode):
    """anvil on an ephemeral loopback port: automine (its default, no block time), chain id
    31337, ANVIL_ACCOUNTS accounts of the dev mnemonic, `--quiet` (no log of calls or blocks,
    as the validators run with `--quiet`), no state file (no `--state`, `--dump-state` or
    `--load-state`, and `--max-persisted-states 0`: no past state written to disk either);
    whatever it prints (errors) in `log_path`, its home directory beside it.

    Quiet, anvil prints nothing when it serves, not even its port: the port is the kernel's
    choice (0), read from the socket the process listens on (/proc).
    """

    name = "anvil"

    def __init__(self, project_dir: Path, log_path: Path) -> None:
        super().__init__(project_dir, log_path)
        self.binary = self.project_dir / ANVIL_BIN

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--chain-id",
            str(ANVIL_CHAIN_ID),
            "--mnemonic",
            DEV_MNEMONIC,
            "--accounts",
            str(ANVIL_ACCOUNTS),
            # Without it anvil writes each block's state past its in-memory history to disk as
            # JSON (~/.foundry/anvil/tmp: 103 MB after 1,032 one-transaction blocks, when its
            # mining stopped); with 0 it keeps its in-memory history and writes nothing.
            "--max-persisted-states",
            "0",
            "--quiet",
        ]

    def start(self) -> str:
        """Start anvil and return its URL once it listens."""
        if self.proc is not None:
            raise RuntimeError("anvil is already running")
        if not self.binary.exists():
            raise PeerUnavailable(f"no anvil in {self.project_dir}: call ensure_anvil first")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # anvil keeps its files (~/.foundry) under HOME: keep them beside this run's log.
        home = self.log_path.with_name(self.log_path.stem + "-home")
        home.mkdir(exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HOME": str(home), "NO_COLOR": "1"},
                start_new_session=True,
            )
        deadline = started + START_TIMEOUT_S
        while (port := _listening_port(self.proc.pid)) is None:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise PeerUnavailable(
                    f"anvil exited with {code} before serving; see {self.log_path}:\n"
                    f"{_tail(self.log_path.read_bytes(), LOG_TAIL_LINES)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise PeerUnavailable(
                    f"anvil did not listen in {START_TIMEOUT_S:g} s; see {self.log_path}"
                )
            time.sleep(START_POLL_S)
        self.url = f"http://127.0.0.1:{port}"
        logger.info(
            "anvil (pid %d) serves %s after %.2f s",
            self.proc.pid,
            self.url,
            time.monotonic() - started,
        )
        return self.url


async def wait_mined(
    url: str, timeout: float = MINED_TIMEOUT_S, stalled_after: float = MINING_STALL_S
) -> float:
    """Seconds until anvil's pool holds nothing (every accepted transaction mined);
    TimeoutError past `timeout`, or once neither its height nor its pool has moved for
    `stalled_after` seconds (anvil has stopped mining: it does, under load, on this machine)."""
    started = time.perf_counter()
    async with InferchainClient(url) as client:
        seen: tuple[Any, ...] = ()
        moved = started
        while True:
            status = await client.call(TXPOOL_STATUS, [])
            pending, queued = int(status["pending"], 16), int(status["queued"], 16)
            if pending == 0 and queued == 0:
                return time.perf_counter() - started
            now = time.perf_counter()
            state = (await client.call(BLOCK_NUMBER, []), pending, queued)
            if state != seen:
                seen, moved = state, now
            if now - moved > stalled_after:
                raise TimeoutError(
                    f"anvil stopped mining: height {int(state[0], 16)}, {pending} pending and "
                    f"{queued} queued transactions, unchanged for {stalled_after:g} s"
                )
            if now - started > timeout:
                raise TimeoutError(f"anvil's pool did not drain in {timeout:g} s: {status}")
            await asyncio.sleep(MINED_POLL_S)


def transfer_calls(
    chain_id: int, count: int, sender_index: int, tag: int = 0
) -> list[tuple[str, Any]]:
    """`count` presigned `eth_sendRawTransaction` calls of the dev mnemonic's account
    `sender_index`, nonces 0.., each an EIP-1559 transfer of 1 + `tag` wei to RECIPIENT
    (`tag` tells the transactions of two runs apart)."""
    if not 0 <= sender_index < HARDHAT_ACCOUNTS:
        raise ValueError(f"sender_index {sender_index}: only 0..{HARDHAT_ACCOUNTS - 1} are funded")
    if tag < 0:
        raise ValueError(f"tag must be non-negative, got {tag}")
    key = Wallet.dev(sender_index).private_key
    calls: list[tuple[str, Any]] = []  # bench.ingest.Call
    for nonce in range(count):
        tx = {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce,
            "to": RECIPIENT,
            "value": TRANSFER_VALUE_WEI + tag,
            "gas": TRANSFER_GAS,
            "maxFeePerGas": MAX_FEE_PER_GAS,
            "maxPriorityFeePerGas": MAX_PRIORITY_FEE_PER_GAS,
            "data": b"",
        }
        signed = Account.sign_transaction(tx, key)
        calls.append((SEND_RAW_TRANSACTION, ["0x" + bytes(signed.raw_transaction).hex()]))
    return calls


def batch_transfer_calls(
    chain_id: int, count: int, senders: int = BATCH_SENDERS, tag: int = 0
) -> list[tuple[str, Any]]:
    """`count` presigned transfers (as `transfer_calls`) of accounts 0..`senders`-1 in turn:
    call k is sender k % `senders`'s nonce k // `senders`.

    For `bench.ingest.batched` against hardhat: hardhat runs the calls of a JSON-RPC batch
    concurrently, in no fixed order, and cannot queue a transaction under automine, so a batch
    that holds two nonces of one sender is refused at random. Any `senders` consecutive calls of
    this list come from distinct accounts: batches of up to `senders` calls are accepted
    whatever their order.
    """
    if not 0 < senders <= HARDHAT_ACCOUNTS:
        raise ValueError(f"senders {senders}: only 1..{HARDHAT_ACCOUNTS} accounts are funded")
    columns = [
        transfer_calls(chain_id, count // senders + (i < count % senders), i, tag)
        for i in range(senders)
    ]
    return [columns[k % senders][k // senders] for k in range(count)]


def ingestion_calls(peer: str, count: int, clients: int) -> dict[str, list[list[tuple[str, Any]]]]:
    """The presigned calls of each way of sending for `peer` ("hardhat" or "anvil"), about
    `count` timed ones each, as `bench.ingest.validator_calls` gives the validator's: one
    sender sequentially, `clients` senders concurrently, and for the batches one sender
    (anvil, as the validator) or `batch_transfer_calls` (hardhat)."""
    chain_id = ANVIL_CHAIN_ID if peer == "anvil" else HARDHAT_CHAIN_ID
    per_client = count // clients + 1
    batched = (
        transfer_calls(chain_id, count + 1, 0)
        if peer == "anvil"
        else batch_transfer_calls(chain_id, count + 1)
    )
    return {
        "sequential": [transfer_calls(chain_id, count + 1, 0)],
        "concurrent": [transfer_calls(chain_id, per_client, i) for i in range(clients)],
        "batched": [batched],
    }


def _listening_port(pid: int) -> int | None:
    """The TCP port process `pid` listens on (IPv4), if it listens yet."""
    sockets = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    sockets.add(target[len("socket:[") : -1])
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:  # the process is gone, or its fds changed under us: try again
        return None
    for line in table:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == TCP_LISTEN and inode in sockets:
            return int(local.rsplit(":", 1)[1], 16)
    return None


def _stop_group(proc: subprocess.Popen[bytes], name: str) -> None:
    group = proc.pid  # start_new_session: the group id is the leader's pid
    _signal_group(group, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop on SIGTERM; killing it", name)
    _signal_group(group, signal.SIGKILL)  # also any child left behind
    proc.wait()


def _require_executable(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailable(f"{name} not found on PATH: {why}")
    return path


def _installed_version(project: Path, expected: tuple[Path, ...]) -> str | None:
    """The version a finished install stamped in `project`, if its files are still there."""
    stamp = project / INSTALLED_STAMP
    if not stamp.exists() or not all((project / path).exists() for path in expected):
        return None
    return stamp.read_text().strip()


def _write_if_changed_in(project: Path, name: str, text: str) -> None:
    project.mkdir(parents=True, exist_ok=True)
    _write_if_changed(project / name, text)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _tail(output: bytes, lines: int) -> str:
    text = output.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(no output)"


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)
