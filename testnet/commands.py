"""The command lines of the project's processes: a validator (`python -m rpc`) and a resource
node (`python -m resource_node`), each flag once, and the line each prints on stdout when it
is ready. Every launcher builds them here: the testnet supervisor, the tests and the benchmark.

They are the interpreter's arguments: `[sys.executable, *args]` runs one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

# What a process prints on stdout once it serves; its URL follows.
VALIDATOR_READY = "Listening on "
RESOURCE_NODE_READY = "Serving on "
AO_READY = "AO on "


def validator_args(
    genesis_path: Path,
    data_dir: Path,
    *,
    port: int = 0,
    host: str | None = None,
    validator: int | None = None,
    key_file: Path | None = None,
    peers: Iterable[str] = (),
    dev_control_from: Iterable[str] = (),
    block_time_ms: int | None = None,
    check_invariants: bool = False,
    quiet: bool = True,
    log_level: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """`python -m rpc` on `host` (None: its default, 127.0.0.1) and `port` (0: one the OS
    picks), as the validator whose key is in `key_file`, else dev validator `validator` of the
    genesis when given, with `peers` (RPC URLs) as
    its `--peer`s, the addresses `dev_control_from` allowed to set its dev links besides
    loopback; `extra` is passed as it is, after the rest."""
    args = ["-m", "rpc", "--genesis", str(genesis_path)]
    args += ["--data-dir", str(data_dir), "--port", str(port)]
    if host is not None:
        args += ["--host", host]
    if key_file is not None:
        args += ["--validator-key", str(key_file)]
    elif validator is not None:
        args += ["--validator", str(validator)]
    for peer in peers:
        args += ["--peer", peer]
    for address in dev_control_from:
        args += ["--dev-control-from", address]
    if block_time_ms is not None:
        args += ["--block-time", str(block_time_ms)]
    if check_invariants:
        args.append("--check-invariants")
    if quiet:
        args.append("--quiet")
    if log_level is not None:
        args += ["--log-level", log_level]
    return [*args, *extra]


def resource_node_args(
    rpc_url: str,
    dev_index: int,
    *,
    key_file: Path | None = None,
    state_dir: Path | None = None,
    http_port: int | None = None,
    host: str | None = None,
    endpoint: str | None = None,
    log_level: str | None = None,
    faults: Iterable[str] = (),
    genesis_path: Path | None = None,
    models: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """`python -m resource_node` as the node whose key is in `key_file`, else dev resource
    node `dev_index`, working through the validator at `rpc_url`, serving on `host` (None:
    127.0.0.1) and registering `endpoint` (None: the URL it serves on); `faults` are `--fault`
    specs; `genesis_path` the chain's genesis file, for its params (forced errors); `models`
    its `--models` (comma-separated; None: the node's default, every model); `extra` is passed
    as it is."""
    args = ["-m", "resource_node", "--rpc", rpc_url]
    if key_file is not None:
        args += ["--key", str(key_file)]
    else:
        args += ["--dev-index", str(dev_index)]
    if models is not None:
        args += ["--models", models]
    if genesis_path is not None:
        args += ["--genesis", str(genesis_path)]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    if http_port is not None:
        args += ["--http-port", str(http_port)]
    if host is not None:
        args += ["--host", host]
    if endpoint is not None:
        args += ["--endpoint", endpoint]
    if log_level is not None:
        args += ["--log-level", log_level]
    for fault in faults:
        args += ["--fault", fault]
    return [*args, *extra]


def ao_args(
    rpc_url: str,
    data_dir: Path,
    *,
    port: int = 0,
    host: str | None = None,
    key_file: Path | None = None,
    bridge_key_file: Path | None = None,
    log_level: str | None = None,
) -> list[str]:
    """`python -m ao`, the AO unit (PROTOCOL 8), over the validator at `rpc_url`, on `host`
    (None: 127.0.0.1), its key and its bridge's from those files at its first start (None:
    its default dev accounts)."""
    args = ["-m", "ao", "--rpc", rpc_url, "--data-dir", str(data_dir), "--port", str(port)]
    if host is not None:
        args += ["--host", host]
    if key_file is not None:
        args += ["--key", str(key_file)]
    if bridge_key_file is not None:
        args += ["--bridge-key", str(bridge_key_file)]
    if log_level is not None:
        args += ["--log-level", log_level]
    return args
