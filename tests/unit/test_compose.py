"""`scripts/testnet.py --emit compose DIR` (`testnet.compose`): the project is valid under the
Compose Specification's JSON schema, has one service per process running the command line the
launcher's network builds, with the options it honours (--validators, --nodes, --block-time,
--models, --byzantine, --no-ao); the genesis names the services; every key is a file of the
right account, mounted read-only; a directory that holds something else is refused, a
previous emit is written over; bad options exit 2. (tests/e2e/test_compose.py brings the
project up where a Docker engine answers.)

The schema is the Compose Specification's `schema/compose-spec.json`, vendored in
tests/vectors (its origin and licence in `compose-spec.NOTICE`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ao.__main__ import parse_args as ao_parse_args
from chain.protocol import crypto
from chain.protocol.genesis import parse_genesis
from resource_node.__main__ import parse_args as node_parse_args
from rpc.__main__ import parse_args as validator_parse_args
from testnet import compose
from testnet.launcher import emit_compose, parse_args
from tests.helpers import REPO

SCHEMA = json.loads((REPO / "tests" / "vectors" / "compose-spec.json").read_text())


def emit(out: Path, *argv: str) -> dict[str, Any]:
    assert emit_compose(parse_args(["--emit", "compose", str(out), *argv]), out) == 0
    document: dict[str, Any] = json.loads((out / compose.COMPOSE_FILE).read_text())
    return document


def mounted(service: dict[str, Any], out: Path) -> dict[str, Path]:
    """A service's bind mounts: target in the container -> the file in `out`."""
    return {
        mount["target"]: out / mount["source"]
        for mount in service["volumes"]
        if mount["type"] == "bind"
    }


def key_address(path: Path) -> str:
    return crypto.address_of_private_key(bytes.fromhex(path.read_text().strip()[2:]))


def test_the_project_is_valid_under_the_compose_specification(tmp_path: Path) -> None:
    document = emit(tmp_path / "net")
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    assert sorted(document["services"]) == sorted(
        [*(f"validator-{k}" for k in range(4)), *(f"node-{i}" for i in range(3)), "ao"]
    )


def test_each_service_runs_what_the_launcher_would_with_its_options(tmp_path: Path) -> None:
    out = tmp_path / "net"
    document = emit(
        out,
        *("--validators", "3", "--nodes", "2", "--block-time", "700", "--no-ao"),
        *("--models", "demo;demo,llama", "--byzantine", "wrong:1,*"),
        *("--port", "18545", "--node-port", "19100"),
    )
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    services = document["services"]
    assert sorted(services) == ["node-0", "node-1", "validator-0", "validator-1", "validator-2"]
    genesis = parse_genesis(json.loads((out / compose.GENESIS_FILE).read_text()))
    urls = [f"http://validator-{k}:{18545 + k}" for k in range(3)]
    assert [v.url for v in genesis.validators] == urls
    assert [n.endpoint for n in genesis.resource_nodes] == [
        f"http://node-{i}:{19100 + i}" for i in range(2)
    ]
    assert [n.models for n in genesis.resource_nodes] == ["demo", "demo,llama"]

    for k in range(3):
        service = services[f"validator-{k}"]
        assert service["command"][:3] == ["python", "-m", "rpc"]
        args = validator_parse_args(service["command"][3:])
        files = mounted(service, out)
        assert files[args.genesis] == out / "./genesis.json"
        assert key_address(files[args.validator_key]) == genesis.validators[k].address
        assert args.host == "0.0.0.0" and args.port == 18545 + k
        assert args.peer == [url for j, url in enumerate(urls) if j != k]
        assert args.block_time == 700
        assert args.data_dir == f"/inferchain/validator-{k}"
        assert {"type": "volume", "source": f"validator-{k}", "target": args.data_dir} in (
            service["volumes"]
        )
        assert all(m["read_only"] for m in service["volumes"] if m["type"] == "bind")
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"][-1] == f"http://127.0.0.1:{18545 + k}/health"
        assert ("ports" in service) == (k == 0)  # validator 0's RPC on the host
    assert services["validator-0"]["ports"] == [
        {"target": 18545, "published": "18545", "protocol": "tcp"}
    ]

    for i in range(2):
        service = services[f"node-{i}"]
        args = node_parse_args(service["command"][3:])
        files = mounted(service, out)
        assert key_address(files[args.key]) == genesis.resource_nodes[i].address
        assert args.rpc == urls[i % 3]
        assert args.models == genesis.resource_nodes[i].models
        assert args.fault == (["wrong:1"] if i == 0 else [])
        assert args.endpoint == f"http://node-{i}:{19100 + i}"
        assert args.host == "0.0.0.0" and args.http_port == 19100 + i
        assert service["depends_on"] == {f"validator-{i % 3}": {"condition": "service_healthy"}}
        assert service["ports"][0]["published"] == str(19100 + i)
    assert sorted(document["volumes"]) == sorted(services)

    keys = sorted(path.name for path in (out / compose.KEYS_DIR).iterdir())
    assert keys == ["node-0.key", "node-1.key", *(f"validator-{k}.key" for k in range(3))]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (out / compose.KEYS_DIR).iterdir())


def test_the_ao_unit_has_its_keys_and_its_port(tmp_path: Path) -> None:
    out = tmp_path / "net"
    service = emit(out, "--validators", "1", "--nodes", "2", "--ao-port", "18700")["services"]["ao"]
    args = ao_parse_args(service["command"][3:])
    files = mounted(service, out)
    assert key_address(files[args.key]) == crypto.address_of_private_key(
        crypto.dev_private_key(crypto_mnemonic(out), compose.AO_DEV_INDEX)
    )
    assert args.bridge_key in files
    assert args.rpc == "http://validator-0:8545" and args.port == 18700
    assert args.host == "0.0.0.0"
    assert service["healthcheck"]["test"][-1] == "http://127.0.0.1:18700/"


def crypto_mnemonic(out: Path) -> str:
    mnemonic: str = json.loads((out / compose.GENESIS_FILE).read_text())["dev"]["mnemonic"]
    return mnemonic


def test_a_previous_emit_is_written_over_and_anything_else_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "net"
    emit(out, "--validators", "4", "--nodes", "3")
    document = emit(out, "--validators", "1", "--nodes", "2", "--no-ao")
    assert sorted(document["services"]) == ["node-0", "node-1", "validator-0"]
    assert sorted(p.name for p in (out / "keys").iterdir()) == [
        "node-0.key",
        "node-1.key",
        "validator-0.key",
    ]

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    args = parse_args(["--emit", "compose", str(other)])
    assert emit_compose(args, other) == 2
    assert "is not empty and holds no project emitted before" in caplog.text
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--emit", "swarm", "d"], "--emit: FORMAT compose, got 'swarm'"),
        (["--emit", "compose"], "--emit: expected 2 arguments"),
        (["--emit", "compose", "d", "--netns"], "--netns does not apply"),
        (["--emit", "compose", "d", "--perturb"], "--perturb does not apply"),
        (["--emit", "compose", "d", "--node-port", "0"], "the published ports are fixed"),
        (["--emit", "compose", "d", "--nodes", "1", "--models", "a;b"], "--models: 2 model"),
    ],
)
def test_bad_emit_options_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
