"""The launcher's per-node options (`scripts/testnet.py`): `--models` lists and `--byzantine`
specs mapped to resource nodes, their bad forms refused with exit 2 naming what is wrong, and
the genesis the network is given agreeing with each node's command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.protocol.genesis import parse_genesis
from resource_node.__main__ import parse_args as node_parse_args
from resource_node.backends.faults import Faults
from testnet.launcher import (
    network_genesis,
    node_faults,
    node_models,
    parse_args,
    read_genesis,
    serving,
)
from testnet.network import Network
from tests.helpers import REPO

# node_models


@pytest.mark.parametrize(
    ("text", "nodes", "expected"),
    [
        ("demo,llama;demo;*", 3, {0: "demo,llama", 1: "demo", 2: "*"}),
        ("demo", 3, {0: "demo"}),  # fewer lists: nodes 1 and 2 keep their genesis models
        ("demo;llama", 2, {0: "demo", 1: "llama"}),
        (";llama", 3, {1: "llama"}),  # an empty list keeps the node's
        ("demo;", 2, {0: "demo"}),
        (" demo , llama ;*", 2, {0: "demo,llama", 1: "*"}),
        ("demo,,llama", 1, {0: "demo,llama"}),
    ],
)
def test_model_lists_map_to_nodes_from_node_0(
    text: str, nodes: int, expected: dict[int, str]
) -> None:
    assert node_models(text, nodes) == expected


def test_no_models_option_changes_no_node() -> None:
    assert node_models(None, 3) == {}


@pytest.mark.parametrize(
    ("text", "nodes", "message"),
    [
        ("a;b;c;d", 3, "4 model lists for 3 resource nodes (--nodes 3)"),
        ("a;b", 1, "2 model lists for 1 resource node (--nodes 1)"),
        ("demo; , ", 2, "list 2 (' , ', node 1) names no model"),
    ],
)
def test_bad_model_lists_are_refused(text: str, nodes: int, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        node_models(text, nodes)
    assert message in str(caught.value)


# node_faults


@pytest.mark.parametrize(
    ("text", "nodes", "expected"),
    [
        ("wrong:0.5", 3, {2: "wrong:0.5"}),  # one spec: the last node's, as always
        ("wrong:0.5", 1, {0: "wrong:0.5"}),
        ("wrong:1,lazy,*", 3, {0: "wrong:1", 1: "lazy"}),
        ("wrong:1,lazy", 4, {0: "wrong:1", 1: "lazy"}),  # nodes 2 and 3 honest
        (",lazy", 3, {1: "lazy"}),  # empty: honest
        ("lazy,", 3, {0: "lazy"}),  # two specs: node 0 lazy, node 1 honest
        ("wrong:0.5+slow:1", 3, {2: "wrong:0.5,slow:1"}),  # one node's faults joined with +
        ("*,silent+noreveal", 2, {1: "silent,noreveal"}),
        ("*", 3, {}),
        ("wrong:0", 2, {}),  # faults that change nothing: an honest node
    ],
)
def test_byzantine_specs_map_to_nodes(text: str, nodes: int, expected: dict[int, str]) -> None:
    faults = node_faults(text, nodes)
    assert faults == expected
    for spec in faults.values():  # each is a spec the resource node reads
        assert Faults.parse([spec]).describe()


@pytest.mark.parametrize(
    ("text", "nodes", "message"),
    [
        ("bogus", 3, "spec 'bogus' (node 2): unknown fault 'bogus'"),
        ("lazy,wrong:2,*", 3, "spec 'wrong:2' (node 1): fault 'wrong:2': the probability"),
        ("*,slow", 2, "spec 'slow' (node 1): fault 'slow': write slow:SECONDS"),
        ("crash:0+lazy", 2, "spec 'crash:0+lazy' (node 1): fault 'crash:0'"),
        ("lazy+lazy", 2, "spec 'lazy+lazy' (node 1): fault lazy given twice"),
        ("lazy,lazy,lazy", 2, "3 specs for 2 resource nodes (--nodes 2)"),
    ],
)
def test_bad_byzantine_specs_are_refused_naming_the_spec(
    text: str, nodes: int, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        node_faults(text, nodes)
    assert message in str(caught.value)


# The command line


def test_the_options_reach_the_parsed_arguments() -> None:
    args = parse_args(["--nodes", "3", "--models", "demo,llama;demo", "--byzantine", "lazy,*"])
    assert args.node_models == {0: "demo,llama", 1: "demo"}
    assert args.node_faults == {0: "lazy"}
    old = parse_args(["--byzantine", "wrong:0.5"])  # the default 3 nodes
    assert old.node_faults == {2: "wrong:0.5"}
    assert old.node_models == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "2", "--byzantine", "lazy,nope"], "--byzantine: spec 'nope' (node 1)"),
        (["--nodes", "2", "--byzantine", "a,b,c"], "--byzantine: 3 specs for 2 resource nodes"),
        (["--nodes", "3", "--models", "a;b;c;d"], "--models: 4 model lists for 3 resource nodes"),
        (["--nodes", "0", "--models", "demo"], "--models: there is no resource node"),
        (["--nodes", "0", "--byzantine", "lazy"], "--byzantine: there is no resource node"),
    ],
)
def test_bad_options_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


# The genesis and the nodes agree


def test_each_node_is_started_with_its_genesis_models_and_faults(tmp_path: Path) -> None:
    base = read_genesis(str(REPO / "genesis.json"))
    raw = network_genesis(base, 1, 8545, 3, node_models("demo,llama;llama", 3))
    genesis = parse_genesis(raw)
    assert [node.models for node in genesis.resource_nodes] == ["demo,llama", "llama", "*"]
    assert serving(genesis, "demo") == [0, 2]
    assert serving(genesis, "llama") == [0, 1, 2]
    assert serving(genesis, "mistral") == [2]
    assert base.raw["resourceNodes"][0]["models"] == "*"  # the base is not modified

    net = Network(genesis, tmp_path, [8545], node_faults=node_faults("*,wrong:1+lazy", 3))
    for i, entry in enumerate(genesis.resource_nodes):
        command = net.node_args(i)
        assert command[:2] == ["-m", "resource_node"]
        parsed = node_parse_args(command[2:])
        assert parsed.models == entry.models
        assert parsed.dev_index == i
        assert Faults.parse(parsed.fault) == (Faults(wrong=1.0, lazy=True) if i == 1 else Faults())


def test_fewer_nodes_than_the_base_registers_only_those(tmp_path: Path) -> None:
    base = read_genesis(str(REPO / "genesis.json"))
    raw = network_genesis(base, 2, 9000, 2, {1: "demo"})
    genesis = parse_genesis(raw)
    assert [node.models for node in genesis.resource_nodes] == ["*", "demo"]
    assert [v.url for v in genesis.validators] == ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]
