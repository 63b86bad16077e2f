"""genesis: the shipped genesis.json, the genesis hash, dev_genesis, with_dev_validators
and broken documents.

Dev addresses are derived here with eth-account (m/44'/60'/0'/0/i, PROTOCOL 2), independently of
the crypto module; every broken document must stop the node with a GenesisError naming the field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account as EthAccount
from hypothesis import given
from hypothesis import strategies as st

from chain.node.config import load_genesis
from chain.node.node import dev_validator_key
from chain.protocol.errors import GenesisError
from chain.protocol.genesis import (
    DevConfig,
    Params,
    dev_genesis,
    genesis_hash,
    params_to_json,
    parse_genesis,
    with_dev_validators,
)

ROOT = Path(__file__).resolve().parents[2]
GENESIS_PATH = ROOT / "genesis.json"
RAW: dict[str, Any] = json.loads(GENESIS_PATH.read_text(encoding="utf-8"))
MNEMONIC = RAW["dev"]["mnemonic"]

# PROTOCOL 2, the params table (amounts in base units).
PROTOCOL_DEFAULTS = {
    "blockTimeMs": 1000,
    "maxBlockTxs": 5000,
    "maxTxBytes": 131072,
    "minNodeStake": str(1000 * 10**18),
    "minValidatorStake": str(10000 * 10**18),
    "taskBaseFee": str(10**15),
    "taskFeePerNode": str(10**15),
    "transferFee": str(10**12),
    "networkRewardPerTask": str(10**16),
    "blockReward": str(10**16),
    "computeShareBps": 7000,
    "rankDecayBps": 1000,
    "maxTargetCount": 16,
    "verificationQuorum": 2,
    "disputeRounds": 2,
    "computeDeadlineBlocks": 20,
    "verifyDeadlineBlocks": 20,
    "resultSlashBps": 1000,
    "verifierSlashBps": 500,
    "revealDeadlineBlocks": 10,
    "canaryRateBps": 100,
    "canaryBonus": str(10**16),
    "slashing": True,
}

EthAccount.enable_unaudited_hdwallet_features()


@cache
def dev_key(index: int) -> bytes:
    path = f"m/44'/60'/0'/0/{index}"
    return bytes(EthAccount.from_mnemonic(MNEMONIC, account_path=path).key)


def dev_address(index: int) -> str:
    return EthAccount.from_key(dev_key(index)).address


def keccak(data: bytes) -> bytes:
    return pycryptodome_keccak.new(digest_bits=256, data=data).digest()


def consensus_pub_key(index: int) -> bytes:
    """PROTOCOL 2: the Ed25519 key seeded by keccak256 of the validator account's key."""
    key = Ed25519PrivateKey.from_private_bytes(keccak(dev_key(index)))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def canonical_hash(doc: Any) -> bytes:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keccak(text.encode("utf-8"))


# --- the shipped genesis.json ---------------------------------------------------------------


def test_shipped_genesis_loads() -> None:
    genesis = load_genesis(GENESIS_PATH)
    assert genesis.chain_id == 7331
    expected_time = datetime.fromisoformat(RAW["genesisTime"].replace("Z", "+00:00"))
    assert genesis.genesis_time == int(expected_time.timestamp())
    assert genesis.symbol == RAW["symbol"]
    assert genesis.raw == RAW


def test_shipped_params_are_the_protocol_defaults_on_a_dev_chain() -> None:
    # the protocol's defaults, and aoAliases: the shipped genesis is a dev chain's (8.2)
    assert RAW["params"] == {**PROTOCOL_DEFAULTS, "aoAliases": True}
    assert load_genesis(GENESIS_PATH).params == Params(ao_aliases=True)
    assert params_to_json(Params()) == PROTOCOL_DEFAULTS


def test_ten_dev_accounts_are_the_first_ten_of_the_mnemonic() -> None:
    genesis = load_genesis(GENESIS_PATH)
    assert genesis.dev == DevConfig(MNEMONIC, 10)
    assert [a.address for a in genesis.accounts[:10]] == [dev_address(i) for i in range(10)]
    assert genesis.dev_keys() == {dev_address(i): dev_key(i) for i in range(10)}


def test_one_validator_from_dev_index_100() -> None:
    genesis = load_genesis(GENESIS_PATH)
    assert len(genesis.validators) == 1
    validator = genesis.validators[0]
    assert validator.address == dev_address(100)
    assert validator.consensus_pub_key == consensus_pub_key(100)
    assert validator.stake >= genesis.params.min_validator_stake
    assert validator.url == RAW["validators"][0]["url"]


def test_three_resource_nodes_from_dev_indices_200() -> None:
    genesis = load_genesis(GENESIS_PATH)
    assert [n.address for n in genesis.resource_nodes] == [dev_address(200 + k) for k in range(3)]
    for node, raw in zip(genesis.resource_nodes, RAW["resourceNodes"], strict=True):
        assert node.stake == int(raw["stake"])
        assert node.stake >= genesis.params.min_node_stake
        assert (node.models, node.endpoint) == (raw["models"], raw["endpoint"])


def test_supply_is_the_sum_of_balances_and_stakes() -> None:
    expected = (
        sum(int(a["balance"]) for a in RAW["accounts"])
        + sum(int(v["stake"]) for v in RAW["validators"])
        + sum(int(n["stake"]) for n in RAW["resourceNodes"])
    )
    genesis = load_genesis(GENESIS_PATH)
    assert genesis.supply == expected
    assert [a.balance for a in genesis.accounts] == [int(a["balance"]) for a in RAW["accounts"]]


# --- the genesis hash -----------------------------------------------------------------------


def test_genesis_hash_is_keccak_of_canonical_json() -> None:
    assert genesis_hash(RAW) == canonical_hash(RAW)
    assert load_genesis(GENESIS_PATH).hash == canonical_hash(RAW)


def _reorder(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {key: _reorder(doc[key]) for key in reversed(list(doc))}
    if isinstance(doc, list):
        return [_reorder(item) for item in doc]
    return doc


def test_genesis_hash_ignores_key_order_and_whitespace(tmp_path: Path) -> None:
    reordered = _reorder(RAW)
    assert list(reordered) != list(RAW)
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(reordered, indent=7), encoding="utf-8")
    assert load_genesis(path).hash == load_genesis(GENESIS_PATH).hash


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _leaves(value, (*path, index))
    else:
        yield path


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return value + "0"


LEAVES = list(_leaves(RAW))


@pytest.mark.parametrize("path", LEAVES, ids=[".".join(map(str, p)) for p in LEAVES])
def test_genesis_hash_changes_when_any_value_changes(path: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(RAW)
    parent = _get(doc, path[:-1])
    parent[path[-1]] = _changed(parent[path[-1]])
    assert genesis_hash(doc) != genesis_hash(RAW)


@given(symbol=st.text(min_size=1))
def test_genesis_hash_of_any_text_is_utf8_canonical(symbol: str) -> None:
    doc = {**RAW, "symbol": symbol}
    assert genesis_hash(doc) == canonical_hash(doc)
    assert parse_genesis(doc).hash == canonical_hash(doc)


# --- dev_genesis ----------------------------------------------------------------------------


def test_dev_genesis_default_is_the_shipped_genesis() -> None:
    assert dev_genesis() == RAW


def test_dev_genesis_with_four_validators() -> None:
    doc = dev_genesis(validators=4)
    genesis = parse_genesis(doc)
    assert [v.address for v in genesis.validators] == [dev_address(100 + k) for k in range(4)]
    assert [v.consensus_pub_key for v in genesis.validators] == [
        consensus_pub_key(100 + k) for k in range(4)
    ]
    assert len({v.url for v in genesis.validators}) == 4
    # PROTOCOL 2: the launcher keeps the shipped params and accounts.
    assert doc["params"] == RAW["params"]
    assert doc["accounts"] == RAW["accounts"]
    assert genesis.supply == load_genesis(GENESIS_PATH).supply + 3 * genesis.validators[1].stake


def test_automine_with_a_single_validator_is_accepted() -> None:
    doc = copy.deepcopy(RAW)
    doc["params"]["blockTimeMs"] = 0
    assert parse_genesis(doc).params.block_time_ms == 0


# --- with_dev_validators (the testnet launcher's genesis) -----------------------------------


@pytest.mark.parametrize("count", [1, 2, 4, 7])
def test_with_dev_validators_derives_count_validators(count: int) -> None:
    doc = with_dev_validators(RAW, count, base_port=18545)
    genesis = parse_genesis(doc)
    assert len(genesis.validators) == count
    for k, validator in enumerate(genesis.validators):
        key = dev_validator_key(genesis, k)
        assert validator.address == key.address == dev_address(100 + k)
        assert validator.consensus_pub_key == key.public_key == consensus_pub_key(100 + k)
        assert validator.stake == int(RAW["validators"][0]["stake"])
        assert validator.url == f"http://127.0.0.1:{18545 + k}"
    # PROTOCOL 2: the launcher keeps the shipped params and accounts.
    assert {key: value for key, value in doc.items() if key != "validators"} == {
        key: value for key, value in RAW.items() if key != "validators"
    }


def test_with_dev_validators_one_is_the_shipped_genesis() -> None:
    assert with_dev_validators(RAW, 1) == RAW
    assert parse_genesis(with_dev_validators(RAW, 1)).hash == load_genesis(GENESIS_PATH).hash


def test_with_dev_validators_matches_dev_genesis() -> None:
    assert with_dev_validators(RAW, 4) == dev_genesis(validators=4)


def test_with_dev_validators_takes_the_stake_of_the_first_validator() -> None:
    doc = copy.deepcopy(RAW)
    doc["validators"][0]["stake"] = str(3 * MIN_VALIDATOR_STAKE)
    derived = with_dev_validators(doc, 3)
    assert [v["stake"] for v in derived["validators"]] == [str(3 * MIN_VALIDATOR_STAKE)] * 3


def test_with_dev_validators_leaves_its_argument_alone() -> None:
    doc = copy.deepcopy(RAW)
    with_dev_validators(doc, 4)["accounts"].clear()
    assert doc == RAW


@pytest.mark.parametrize("count", [0, -1])
def test_with_dev_validators_needs_one_validator(count: int) -> None:
    with pytest.raises(GenesisError) as info:
        with_dev_validators(RAW, count)
    assert info.value.field == "validators"


def test_with_dev_validators_needs_the_dev_mnemonic() -> None:
    without_dev = {key: value for key, value in RAW.items() if key != "dev"}
    with pytest.raises(GenesisError) as info:
        with_dev_validators(without_dev, 4)
    assert info.value.field == "dev.mnemonic"
    with pytest.raises(GenesisError) as info:
        with_dev_validators({**RAW, "dev": {"accounts": 10}}, 4)
    assert info.value.field == "dev.mnemonic"
    with pytest.raises(GenesisError) as info:
        with_dev_validators({**RAW, "dev": {"mnemonic": "test test test"}}, 4)
    assert info.value.field == "dev.mnemonic"


# --- broken documents -----------------------------------------------------------------------

# A mutation edits the document at the path of the field that the error must name.
Mutation = Callable[[dict[str, Any], tuple[Any, ...]], None]


def field_path(field: str) -> tuple[Any, ...]:
    """'validators[0].consensusPubKey' -> ('validators', 0, 'consensusPubKey')."""
    path: list[Any] = []
    for part in field.split("."):
        name, _, index = part.partition("[")
        path.append(name)
        if index:
            path.append(int(index.rstrip("]")))
    return tuple(path)


def put(value: Any) -> Mutation:
    def mutate(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
        _get(doc, path[:-1])[path[-1]] = value

    return mutate


def drop(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    del _get(doc, path[:-1])[path[-1]]


def flip_checksum(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    address = _get(doc, path)
    index = next(i for i, c in enumerate(address) if i >= 2 and c.isalpha())
    _get(doc, path[:-1])[path[-1]] = (
        address[:index] + address[index].swapcase() + address[index + 1 :]
    )


def duplicate_first_account(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    assert path == ("accounts", len(doc["accounts"]), "address")
    doc["accounts"].append(dict(doc["accounts"][0]))


def automine_with_two_validators(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    assert path == ("params", "blockTimeMs")
    doc["validators"] = dev_genesis(validators=2)["validators"]
    doc["params"]["blockTimeMs"] = 0


def case(name: str, field: str, mutate: Mutation, bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(field, mutate, id=name, marks=marks)


MIN_VALIDATOR_STAKE = int(RAW["params"]["minValidatorStake"])
PUB_KEY = RAW["validators"][0]["consensusPubKey"]
VALIDATOR = RAW["validators"][0]["address"]
V0 = "validators[0]"
N0 = "resourceNodes[0]"

BROKEN = [
    case("missing chainId", "chainId", drop),
    case("chainId a string", "chainId", put("7331")),
    case("chainId 0", "chainId", put(0)),
    case("chainId a boolean", "chainId", put(True)),
    case("missing genesisTime", "genesisTime", drop),
    case("genesisTime not a time", "genesisTime", put("yesterday")),
    case("genesisTime month 13", "genesisTime", put("2026-13-01T00:00:00Z")),
    case("genesisTime without zone", "genesisTime", put("2026-01-01T00:00:00")),
    case("genesisTime a number", "genesisTime", put(1767225600)),
    case("symbol a number", "symbol", put(5)),
    case("params not an object", "params", put([])),
    case("unknown param", "params.blockTimeSeconds", put(1)),
    case("negative amount param", "params.minNodeStake", put("-1")),
    case("amount param a float", "params.blockReward", put(1.5)),
    case("int param a string", "params.blockTimeMs", put("1000")),
    case("negative int param", "params.computeDeadlineBlocks", put(-1)),
    case("computeShareBps > 10000", "params.computeShareBps", put(10001)),
    case("rankDecayBps > 10000", "params.rankDecayBps", put(10001)),
    case("resultSlashBps > 10000", "params.resultSlashBps", put(20000)),
    case("verifierSlashBps negative", "params.verifierSlashBps", put(-1)),
    case("slashing a string", "params.slashing", put("true")),
    case("maxBlockTxs 0", "params.maxBlockTxs", put(0)),
    case("verificationQuorum 0", "params.verificationQuorum", put(0)),
    case("blockTimeMs 0 with 2 validators", "params.blockTimeMs", automine_with_two_validators),
    case("missing accounts", "accounts", drop),
    case("accounts not a list", "accounts", put({})),
    case("account not an object", "accounts[0]", put("0xf39F")),
    case("account without balance", "accounts[0].balance", drop),
    case("negative balance", "accounts[0].balance", put("-1")),
    case("balance a float", "accounts[1].balance", put(1e22)),
    case("bad account checksum", "accounts[0].address", flip_checksum),
    case("account address short", "accounts[1].address", put("0x1234")),
    case("duplicate account", f"accounts[{len(RAW['accounts'])}].address", duplicate_first_account),
    case("missing validators", "validators", drop),
    case("no validators", "validators", put([])),
    case("bad validator checksum", f"{V0}.address", flip_checksum),
    case("consensusPubKey 31 bytes", f"{V0}.consensusPubKey", put(PUB_KEY[:62])),
    case("consensusPubKey 33 bytes", f"{V0}.consensusPubKey", put(PUB_KEY + "00")),
    case("consensusPubKey not hex", f"{V0}.consensusPubKey", put("zz" * 32)),
    case("consensusPubKey a number", f"{V0}.consensusPubKey", put(7)),
    case("negative validator stake", f"{V0}.stake", put("-1")),
    case("validator stake below minimum", f"{V0}.stake", put(str(MIN_VALIDATOR_STAKE - 1))),
    case("validator without url", f"{V0}.url", drop),
    case("resourceNodes not a list", "resourceNodes", put({})),
    case("bad node checksum", "resourceNodes[2].address", flip_checksum),
    case("negative node stake", f"{N0}.stake", put("-5")),
    case("node stake a float", f"{N0}.stake", put(2e21)),
    case("node without models", "resourceNodes[1].models", put(" , ")),
    case("node endpoint a number", f"{N0}.endpoint", put(9100)),
    case("node is also a validator", f"{N0}.address", put(VALIDATOR)),
    case("dev not an object", "dev", put("test")),
    case("dev without mnemonic", "dev.mnemonic", drop),
    case("dev mnemonic too short", "dev.mnemonic", put("test test test")),
    case("dev mnemonic bad checksum", "dev.mnemonic", put(" ".join(["test"] * 12))),
    case("dev mnemonic unknown word", "dev.mnemonic", put(MNEMONIC.replace("junk", "jnuk"))),
    case("dev accounts 101", "dev.accounts", put(101)),
    case("unknown top-level field", "chainID", put(7331)),
]


@pytest.mark.parametrize(("field", "mutate"), BROKEN)
def test_broken_genesis_names_the_field(field: str, mutate: Mutation) -> None:
    doc = copy.deepcopy(RAW)
    mutate(doc, field_path(field))
    assert doc != RAW
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("doc", [[], "genesis", None, 7331], ids=repr)
def test_genesis_that_is_not_an_object_is_rejected(doc: Any) -> None:
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    assert info.value.field == "(top level)"


def test_unreadable_or_invalid_file_is_a_genesis_error(tmp_path: Path) -> None:
    with pytest.raises(GenesisError) as info:
        load_genesis(tmp_path / "missing.json")
    assert info.value.field == "(file)"
    broken = tmp_path / "broken.json"
    broken.write_text(GENESIS_PATH.read_text(encoding="utf-8")[:-3], encoding="utf-8")
    with pytest.raises(GenesisError) as info:
        load_genesis(broken)
    assert info.value.field == "(file)"
