"""`scripts/testnet.py --emit compose DIR`: the network the launcher would run, written as a
Docker Compose project, for networks of several hosts on an engine made for them.

One service per validator (`validator-K`), per resource node (`node-I`) and the AO unit
(`ao`, unless `--no-ao`), all of the one image the repository's Dockerfile builds, each running
the command line `testnet.network.Network` gives it (built in `testnet.commands`, as the
launcher's), placed by `ServiceHosts`: every process listens on all its container's
addresses and is reached by its service's name, so the genesis' urls are
`http://validator-0:8545` and so on, and a resource node registers `http://node-I:PORT`.

DIR holds `compose.yaml` (JSON, which is YAML, and deterministic: keys in order), the derived
`genesis.json` and `keys/<service>.key` (hex private keys, mode 0600; the AO unit's bridge
`keys/ao-bridge.key`), mounted read-only into the containers under /inferchain; each
validator's ledger, each node's state and the AO unit's store are named volumes. Validator 0's
RPC port, the nodes' HTTP ports and the AO unit's port are published on the host as the
launcher's are. Every service restarts unless stopped and has a healthcheck on its
`/health` (the AO unit's `/`).

A DIR that is not empty is refused unless it holds a project emitted before (its
`compose.yaml` carries the `x-inferchain` key): that one is written over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from chain.protocol import crypto, wire
from chain.protocol.genesis import (
    RESOURCE_NODE_KEY_OFFSET,
    VALIDATOR_KEY_OFFSET,
    Genesis,
)
from testnet.network import Network

COMPOSE_FILE = "compose.yaml"
GENESIS_FILE = "genesis.json"
KEYS_DIR = "keys"
MARKER = "x-inferchain"  # the top-level key that says a compose.yaml is ours
PROJECT = "inferchain"
IMAGE = "inferchain:dev"
ROOT = PurePosixPath("/inferchain")  # in every container: the genesis, the keys, the data
WILDCARD = "0.0.0.0"
AO_DEV_INDEX = 9  # the AO unit's own dev accounts (ao.__main__'s defaults)
AO_BRIDGE_DEV_INDEX = 8
RESTART = "unless-stopped"
STOP_GRACE = "20s"
HEALTHCHECK = {"interval": "2s", "timeout": "3s", "retries": 30, "start_period": "10s"}
HEALTH_PROBE = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"


class ServiceHosts:
    """A `testnet.network.Placement`: every process in its own container, listening on all
    its addresses and reached by its service's name."""

    def bind(self, name: str) -> str:
        return WILDCARD

    def reach(self, name: str) -> str:
        return name

    def command_prefix(self, name: str) -> list[str]:
        return []

    def dev_control_from(self) -> list[str]:
        return []  # no launcher sets the links: loopback (the container's own) only


class NotAnEmit(ValueError):
    """DIR is not empty and holds no project emitted before."""


def network_of(
    genesis: Genesis,
    ports: list[int],
    node_ports: list[int],
    *,
    block_time_ms: int | None,
    log_level: str | None,
    node_faults: Mapping[int, str],
) -> Network:
    """The network as the containers see it: its root /inferchain, its keys in files."""
    return Network(
        genesis,
        Path(ROOT),
        ports,
        block_time_ms=block_time_ms,
        log_level=log_level,
        node_faults=node_faults,
        node_ports=node_ports,
        placement=ServiceHosts(),
        keys=Path(ROOT / KEYS_DIR),
    )


def key_files(genesis: Genesis, nodes: int, ao: bool) -> dict[str, bytes]:
    """Each service's private key by its file's stem (the dev keys of the genesis' mnemonic,
    PROTOCOL 2): validator K, resource node I, the AO unit and its bridge."""
    if genesis.dev is None:
        raise ValueError("the genesis has no dev mnemonic to derive the keys from")
    mnemonic = genesis.dev.mnemonic
    keys = {
        f"validator-{k}": crypto.dev_private_key(mnemonic, VALIDATOR_KEY_OFFSET + k)
        for k in range(len(genesis.validators))
    }
    keys |= {
        f"node-{i}": crypto.dev_private_key(mnemonic, RESOURCE_NODE_KEY_OFFSET + i)
        for i in range(nodes)
    }
    if ao:
        keys["ao"] = crypto.dev_private_key(mnemonic, AO_DEV_INDEX)
        keys["ao-bridge"] = crypto.dev_private_key(mnemonic, AO_BRIDGE_DEV_INDEX)
    return keys


def project(net: Network, *, ao_port: int | None, build_context: Path) -> dict[str, Any]:
    """The compose.yaml document of `net` (and the AO unit on `ao_port`, unless None)."""
    assert net.node_ports is not None
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for k in range(net.size):
        name = f"validator-{k}"
        services[name] = _service(
            net,
            name,
            net.validator_args(k),
            port=net.ports[k],
            published=k == 0,
            data=net.data_dir(k),
            keys=[name],
            build_context=build_context,
        )
        volumes[name] = {}
    for i in range(len(net.node_ports)):
        name = f"node-{i}"
        service = _service(
            net,
            name,
            net.node_args(i),
            port=net.node_ports[i],
            published=True,
            data=net.root / name,
            keys=[name],
            build_context=build_context,
        )
        service["depends_on"] = {f"validator-{i % net.size}": {"condition": "service_healthy"}}
        services[name] = service
        volumes[name] = {}
    if ao_port is not None:
        service = _service(
            net,
            "ao",
            net.ao_args(ao_port),
            port=ao_port,
            published=True,
            data=net.root / "ao",
            keys=["ao", "ao-bridge"],
            build_context=build_context,
            health_path="/",
        )
        service["depends_on"] = {"validator-0": {"condition": "service_healthy"}}
        services["ao"] = service
        volumes["ao"] = {}
    return {
        "name": PROJECT,
        MARKER: {
            "emittedBy": "scripts/testnet.py --emit compose",
            "chainId": net.genesis.chain_id,
            "genesisHash": wire.hex0x(net.genesis.hash),
        },
        "services": services,
        "volumes": volumes,
    }


def _service(
    net: Network,
    name: str,
    args: list[str],
    *,
    port: int,
    published: bool,
    data: Path,
    keys: list[str],
    build_context: Path,
    health_path: str = "/health",
) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {
            "type": "bind",
            "source": f"./{GENESIS_FILE}",
            "target": str(net.genesis_path),
            "read_only": True,
        }
    ]
    for key in keys:
        target = net.key_file(key)
        assert target is not None
        mounts.append(
            {
                "type": "bind",
                "source": f"./{KEYS_DIR}/{key}.key",
                "target": str(target),
                "read_only": True,
            }
        )
    mounts.append({"type": "volume", "source": name, "target": str(data)})
    service: dict[str, Any] = {
        "image": IMAGE,
        "build": {"context": str(build_context)},
        "command": ["python", *args],
        "environment": {"PYTHONUNBUFFERED": "1"},
        "volumes": mounts,
        "restart": RESTART,
        "stop_grace_period": STOP_GRACE,
        "healthcheck": {
            "test": ["CMD", "python", "-c", HEALTH_PROBE, f"http://127.0.0.1:{port}{health_path}"],
            **HEALTHCHECK,
        },
    }
    if published:
        service["ports"] = [{"target": port, "published": str(port), "protocol": "tcp"}]
    return service


def is_emit(path: Path) -> bool:
    """Whether `path` is a compose.yaml this module wrote."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and MARKER in document


def check_dir(out: Path) -> None:
    """NotAnEmit if `out` exists, is not empty and holds no project emitted before;
    ValueError if it is not a directory."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} is not a directory")
    if any(out.iterdir()) and not is_emit(out / COMPOSE_FILE):
        raise NotAnEmit(
            f"{out} is not empty and holds no project emitted before (no {COMPOSE_FILE} with "
            f"{MARKER}): choose an empty or a new directory"
        )


def write(
    out: Path,
    document: Mapping[str, Any],
    raw_genesis: Mapping[str, Any],
    keys: Mapping[str, bytes],
) -> None:
    """Write the project into `out` (`check_dir` first), over a previous emit's files."""
    check_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    keys_dir = out / KEYS_DIR
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    for stale in keys_dir.glob("*.key"):
        stale.unlink()
    for stem, key in keys.items():
        fd = os.open(keys_dir / f"{stem}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(wire.hex0x(key) + "\n")
    (out / GENESIS_FILE).write_text(json.dumps(raw_genesis, indent=2) + "\n", encoding="utf-8")
    (out / COMPOSE_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
