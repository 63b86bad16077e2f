"""The hardhat peer of the ingestion benchmark: a `hardhat node` fed presigned transfers.

`ensure_hardhat` installs a pinned hardhat 2 with npm into a cache directory on first use and
reuses it afterwards; `Hardhat` runs `hardhat node` (automine, chain id 31337, the default
accounts of the dev mnemonic) on an ephemeral loopback port; `transfer_calls` signs
`eth_sendRawTransaction` calls before any clock starts, in the `bench.ingest.Call` shape, so the
loops of `bench.ingest` drive hardhat exactly as they drive a validator. One difference: hardhat
runs the calls of a JSON-RPC batch in no fixed order, so `bench.ingest.batched` needs the calls
of `batch_transfer_calls` (distinct senders within a batch), not those of one sender.

Nothing is downloaded at run time: hardhat runs as on a CI server (no telemetry prompt, no
analytics, no banner fetch), keeps its global files (analytics id, vars, compiler cache) under
the cache directory instead of the home directory, and `hardhat node` compiles nothing. When the
peer cannot run (no npm or node, a failed install, a node that does not start), `PeerUnavailable`
says why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from chain.protocol.genesis import DEV_MNEMONIC
from rpc.client import Wallet

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
INSTALLED_STAMP = ".installed"  # holds HARDHAT_VERSION once npm install has succeeded
NPM_INSTALL_TIMEOUT_S = 600.0
NPM_OUTPUT_TAIL_LINES = 20
START_TIMEOUT_S = 60.0
START_POLL_S = 0.02
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
LOGGING_ENV = "INFERCHAIN_HARDHAT_LOGGING"  # "true": hardhat node logs every call

TRANSFER_GAS = 21_000
TRANSFER_VALUE_WEI = 1
# The base fee starts at 1 gwei and only falls under automine (one 21,000-gas block per
# transaction, far below the 30M gas target), so a 10 gwei cap is never reached.
MAX_FEE_PER_GAS = 10 * 10**9
MAX_PRIORITY_FEE_PER_GAS = 10**9
RECIPIENT = "0x000000000000000000000000000000000000dEaD"

READY = re.compile(rb"Started HTTP and WebSocket JSON-RPC server at (http://\S+?)/?\r?\n")

PACKAGE_JSON: dict[str, Any] = {
    "name": "inferchain-bench-hardhat",
    "version": "0.0.0",
    "private": True,
    "description": "hardhat for the inferchain ingestion benchmark (written by bench/peer.py)",
    "license": "UNLICENSED",
    "dependencies": {"hardhat": HARDHAT_VERSION},
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


def ensure_hardhat(cache_dir: Path) -> Path:
    """The hardhat project in `cache_dir / "hardhat"`, installed with npm on first use."""
    project = cache_dir / PROJECT_DIR_NAME
    _require_executable("node")
    if _installed_version(project) == HARDHAT_VERSION:
        _write_if_changed(project / "hardhat.config.js", HARDHAT_CONFIG)
        logger.debug("hardhat %s already installed in %s", HARDHAT_VERSION, project)
        return project
    npm = _require_executable("npm")
    project.mkdir(parents=True, exist_ok=True)
    _write_if_changed(project / "hardhat.config.js", HARDHAT_CONFIG)
    _write_if_changed(project / "package.json", json.dumps(PACKAGE_JSON, indent=2) + "\n")
    (project / INSTALLED_STAMP).unlink(missing_ok=True)
    logger.info("installing hardhat %s with npm into %s", HARDHAT_VERSION, project)
    started = time.monotonic()
    command = [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier"]
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
            f"npm install of hardhat {HARDHAT_VERSION} did not finish in "
            f"{NPM_INSTALL_TIMEOUT_S:g} s in {project}:\n{_tail(output, NPM_OUTPUT_TAIL_LINES)}"
        ) from exc
    if done.returncode != 0:
        raise PeerUnavailable(
            f"npm install of hardhat {HARDHAT_VERSION} failed (exit {done.returncode}) in "
            f"{project}:\n{_tail(done.stdout, NPM_OUTPUT_TAIL_LINES)}"
        )
    if not (project / HARDHAT_BIN).exists() or not (project / HARDHAT_CLI).exists():
        raise PeerUnavailable(
            f"npm install succeeded but left no {HARDHAT_BIN} in {project}:\n"
            f"{_tail(done.stdout, NPM_OUTPUT_TAIL_LINES)}"
        )
    (project / INSTALLED_STAMP).write_text(HARDHAT_VERSION + "\n")
    logger.info("installed hardhat %s in %.1f s", HARDHAT_VERSION, time.monotonic() - started)
    return project


class Hardhat:
    """`hardhat node` on an ephemeral loopback port, its output in `log_path`.

    `log_calls=True` keeps hardhat's log of every call (the default of `hardhat node`); off by
    default, as the validators of the benchmark run with `--quiet`.
    """

    def __init__(self, project_dir: Path, log_path: Path, *, log_calls: bool = False) -> None:
        self.project_dir = project_dir.resolve()  # node runs in it: a relative path breaks
        self.log_path = log_path
        self.log_calls = log_calls
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Hardhat:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The node process that serves (its RSS is hardhat's)."""
        if self.proc is None:
            raise RuntimeError("hardhat is not running")
        return self.proc.pid

    def start(self) -> str:
        """Start `hardhat node` and return its URL once it serves."""
        if self.proc is not None:
            raise RuntimeError("hardhat is already running")
        node = _require_executable("node")
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

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after STOP_TIMEOUT_S; nothing is left."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the leader's pid
        _signal_group(group, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("hardhat node did not stop on SIGTERM; killing it")
        _signal_group(group, signal.SIGKILL)  # also any child left behind
        self.proc.wait()
        self.proc = None
        self.url = ""

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


def transfer_calls(
    chain_id: int, count: int, sender_index: int, tag: int = 0
) -> list[tuple[str, Any]]:
    """`count` presigned `eth_sendRawTransaction` calls of hardhat's default account
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
        calls.append(("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()]))
    return calls


def batch_transfer_calls(
    chain_id: int, count: int, senders: int = BATCH_SENDERS, tag: int = 0
) -> list[tuple[str, Any]]:
    """`count` presigned transfers (as `transfer_calls`) of accounts 0..`senders`-1 in turn:
    call k is sender k % `senders`'s nonce k // `senders`.

    For `bench.ingest.batched`: hardhat runs the calls of a JSON-RPC batch concurrently, in no
    fixed order, and cannot queue a transaction under automine, so a batch that holds two nonces
    of one sender is refused at random. Any `senders` consecutive calls of this list come from
    distinct accounts: batches of up to `senders` calls are accepted whatever their order.
    """
    if not 0 < senders <= HARDHAT_ACCOUNTS:
        raise ValueError(f"senders {senders}: only 1..{HARDHAT_ACCOUNTS} accounts are funded")
    columns = [
        transfer_calls(chain_id, count // senders + (i < count % senders), i, tag)
        for i in range(senders)
    ]
    return [columns[k % senders][k // senders] for k in range(count)]


def _require_executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailable(
            f"{name} not found on PATH: the hardhat peer needs Node.js and npm (nodejs.org)"
        )
    return path


def _installed_version(project: Path) -> str | None:
    """The version a finished install stamped in `project`, if its binary is still there."""
    stamp = project / INSTALLED_STAMP
    if not stamp.exists() or not (project / HARDHAT_BIN).exists():
        return None
    if not (project / HARDHAT_CLI).exists():
        return None
    return stamp.read_text().strip()


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _tail(output: bytes, lines: int) -> str:
    text = output.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(no output)"


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)
