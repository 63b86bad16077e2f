"""genesis.json -> validated Genesis value, genesis hash, and the dev keys it implies.

Every problem stops the node with a `GenesisError` that names the field (PROTOCOL 2).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from chain.protocol import crypto, wire
from chain.protocol.errors import GenesisError, InvalidParams

ED25519_KEY_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
HASH_HEX = re.compile(r"0x[0-9a-fA-F]{64}")

# The mnemonic of the dev keys (Hardhat's), and their derivation indices on m/44'/60'/0'/0/i
# (PROTOCOL 2).
DEV_MNEMONIC = "test test test test test test test test test test test junk"
VALIDATOR_KEY_OFFSET = 100
RESOURCE_NODE_KEY_OFFSET = 200


@dataclass(frozen=True, slots=True)
class Params:
    block_time_ms: int = 1000
    max_block_txs: int = 5000
    max_tx_bytes: int = 131072
    min_node_stake: int = 1000 * 10**18
    min_validator_stake: int = 10000 * 10**18
    task_base_fee: int = 10**15
    task_fee_per_node: int = 10**15
    transfer_fee: int = 10**12
    network_reward_per_task: int = 10**16
    block_reward: int = 10**16
    compute_share_bps: int = 7000
    rank_decay_bps: int = 1000
    max_target_count: int = 16
    verification_quorum: int = 2
    dispute_rounds: int = 2
    compute_deadline_blocks: int = 20
    verify_deadline_blocks: int = 20
    reveal_deadline_blocks: int = 10
    result_slash_bps: int = 1000
    verifier_slash_bps: int = 500
    canary_rate_bps: int = 100
    canary_bonus: int = 10**16
    slashing: bool = True
    ao_aliases: bool = False


# wire name -> (attribute, kind); kind "int" is a JSON integer, "amount" a decimal string
PARAM_FIELDS: dict[str, tuple[str, str]] = {
    "blockTimeMs": ("block_time_ms", "int"),
    "maxBlockTxs": ("max_block_txs", "int"),
    "maxTxBytes": ("max_tx_bytes", "int"),
    "minNodeStake": ("min_node_stake", "amount"),
    "minValidatorStake": ("min_validator_stake", "amount"),
    "taskBaseFee": ("task_base_fee", "amount"),
    "taskFeePerNode": ("task_fee_per_node", "amount"),
    "transferFee": ("transfer_fee", "amount"),
    "networkRewardPerTask": ("network_reward_per_task", "amount"),
    "blockReward": ("block_reward", "amount"),
    "computeShareBps": ("compute_share_bps", "bps"),
    "rankDecayBps": ("rank_decay_bps", "bps"),
    "maxTargetCount": ("max_target_count", "int"),
    "verificationQuorum": ("verification_quorum", "int"),
    "disputeRounds": ("dispute_rounds", "int"),
    "computeDeadlineBlocks": ("compute_deadline_blocks", "int"),
    "verifyDeadlineBlocks": ("verify_deadline_blocks", "int"),
    "revealDeadlineBlocks": ("reveal_deadline_blocks", "int"),
    "resultSlashBps": ("result_slash_bps", "bps"),
    "verifierSlashBps": ("verifier_slash_bps", "bps"),
    "canaryRateBps": ("canary_rate_bps", "bps"),
    "canaryBonus": ("canary_bonus", "amount"),
    "slashing": ("slashing", "bool"),
    "aoAliases": ("ao_aliases", "bool"),
}
assert {a for a, _k in PARAM_FIELDS.values()} == {f.name for f in fields(Params)}
# Written only when true: a genesis without them hashes as it did before they existed.
WRITTEN_WHEN_TRUE = frozenset({"aoAliases"})


@dataclass(frozen=True, slots=True)
class GenesisAccount:
    address: str
    balance: int


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    address: str
    consensus_pub_key: bytes
    stake: int
    url: str


@dataclass(frozen=True, slots=True)
class GenesisResourceNode:
    address: str
    stake: int
    models: str
    endpoint: str
    secrets_head: bytes | None = None  # PROTOCOL 4.13, committed at base 0


@dataclass(frozen=True, slots=True)
class DevConfig:
    mnemonic: str
    accounts: int


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: int
    genesis_time: int
    symbol: str
    params: Params
    accounts: tuple[GenesisAccount, ...]
    validators: tuple[GenesisValidator, ...]
    resource_nodes: tuple[GenesisResourceNode, ...]
    dev: DevConfig | None
    hash: bytes
    raw: dict[str, Any]

    @property
    def supply(self) -> int:
        return (
            sum(a.balance for a in self.accounts)
            + sum(v.stake for v in self.validators)
            + sum(n.stake for n in self.resource_nodes)
        )

    def dev_keys(self) -> dict[str, bytes]:
        """Address -> private key of the dev accounts (empty without a `dev` section)."""
        if self.dev is None:
            return {}
        keys = {}
        for i in range(self.dev.accounts):
            key = crypto.dev_private_key(self.dev.mnemonic, i)
            keys[crypto.address_of_private_key(key)] = key
        return keys


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def genesis_hash(raw: dict[str, Any]) -> bytes:
    return crypto.keccak(canonical_json(raw))


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise GenesisError(where, "expected an object")
    if key not in obj:
        raise GenesisError(f"{where}.{key}" if where else key, "missing")
    return obj[key]


def _amount(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise GenesisError(where, "expected an amount as a decimal string")
    try:
        return wire.parse_uint(value, where)
    except InvalidParams as exc:
        raise GenesisError(where, exc.detail) from exc


def _address(value: Any, where: str) -> str:
    try:
        return wire.parse_address(value, where)
    except InvalidParams as exc:
        raise GenesisError(where, exc.detail) from exc


def _int(value: Any, where: str, low: int = 0, high: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GenesisError(where, f"expected an integer between {low} and {high}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise GenesisError(where, "expected a string")
    return value


def parse_params(raw: Any) -> Params:
    """`params` of a genesis document (missing keys take their defaults); GenesisError names
    the key that is wrong. Also how a client reads `getParams` (PROTOCOL 5.2)."""
    return _params(raw)


def _params(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise GenesisError("params", "expected an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in PARAM_FIELDS:
            raise GenesisError(f"params.{key}", "unknown parameter")
        attr, kind = PARAM_FIELDS[key]
        where = f"params.{key}"
        if kind == "amount":
            values[attr] = _amount(value, where)
        elif kind == "bps":
            values[attr] = _int(value, where, 0, 10000)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise GenesisError(where, "expected true or false")
            values[attr] = value
        else:
            values[attr] = _int(value, where)
    params = Params(**values)
    for key in ("maxBlockTxs", "maxTxBytes", "maxTargetCount", "verificationQuorum"):
        if getattr(params, PARAM_FIELDS[key][0]) < 1:
            raise GenesisError(f"params.{key}", "must be at least 1")
    return params


def _timestamp(value: Any) -> int:
    text = _text(value, "genesisTime")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GenesisError("genesisTime", f"not an ISO-8601 time: {text}") from exc
    if moment.tzinfo is None:
        raise GenesisError("genesisTime", "needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return int(moment.timestamp())


def parse_genesis(raw: Any) -> Genesis:
    if not isinstance(raw, dict):
        raise GenesisError("(top level)", "expected a JSON object")
    known = {
        "chainId",
        "genesisTime",
        "symbol",
        "params",
        "accounts",
        "validators",
        "resourceNodes",
        "dev",
    }
    for key in raw:
        if key not in known:
            raise GenesisError(key, "unknown top-level field")
    chain_id = _int(_field(raw, "chainId", ""), "chainId", 1, 2**53)
    genesis_time = _timestamp(_field(raw, "genesisTime", ""))
    symbol = _text(raw.get("symbol", "AEGIS"), "symbol")
    params = _params(raw.get("params", {}))

    accounts = []
    seen: set[str] = set()
    for i, item in enumerate(_list(raw, "accounts")):
        where = f"accounts[{i}]"
        address = _address(_field(item, "address", where), f"{where}.address")
        if address in seen:
            raise GenesisError(f"{where}.address", f"{address} is listed twice")
        seen.add(address)
        _known_keys(item, where, {"address", "balance"})
        balance = _amount(_field(item, "balance", where), f"{where}.balance")
        accounts.append(GenesisAccount(address, balance))

    validators = []
    staked: set[str] = set()
    for i, item in enumerate(_list(raw, "validators")):
        where = f"validators[{i}]"
        address = _address(_field(item, "address", where), f"{where}.address")
        _known_keys(item, where, {"address", "consensusPubKey", "stake", "url"})
        key_hex = _text(_field(item, "consensusPubKey", where), f"{where}.consensusPubKey")
        if not ED25519_KEY_HEX.fullmatch(key_hex):
            raise GenesisError(
                f"{where}.consensusPubKey", "an Ed25519 public key: 64 hex digits (32 bytes)"
            )
        pub_key = bytes.fromhex(key_hex.removeprefix("0x"))
        stake = _amount(_field(item, "stake", where), f"{where}.stake")
        if stake < params.min_validator_stake:
            raise GenesisError(f"{where}.stake", "below params.minValidatorStake")
        if address in staked:
            raise GenesisError(f"{where}.address", f"{address} already has a stake")
        staked.add(address)
        url = _text(_field(item, "url", where), f"{where}.url")
        validators.append(GenesisValidator(address, pub_key, stake, url))
    if not validators:
        raise GenesisError("validators", "at least one validator is needed")
    if params.block_time_ms == 0 and len(validators) > 1:
        raise GenesisError("params.blockTimeMs", "0 (automine) needs a single validator")

    nodes = []
    for i, item in enumerate(_list(raw, "resourceNodes", required=False)):
        where = f"resourceNodes[{i}]"
        _known_keys(item, where, {"address", "stake", "models", "endpoint", "secretsHead"})
        address = _address(_field(item, "address", where), f"{where}.address")
        if address in staked:
            raise GenesisError(f"{where}.address", f"{address} already has a stake")
        staked.add(address)
        models = _text(_field(item, "models", where), f"{where}.models")
        if not [m for m in models.split(",") if m.strip()]:
            raise GenesisError(f"{where}.models", "name at least one model or *")
        head = None
        if "secretsHead" in item:
            head_hex = _text(item["secretsHead"], f"{where}.secretsHead")
            if not HASH_HEX.fullmatch(head_hex):
                raise GenesisError(f"{where}.secretsHead", "a hash: 0x and 64 hex digits")
            head = bytes.fromhex(head_hex[2:])
        nodes.append(
            GenesisResourceNode(
                address,
                _amount(_field(item, "stake", where), f"{where}.stake"),
                models,
                _text(item.get("endpoint", ""), f"{where}.endpoint"),
                head,
            )
        )

    dev = None
    if "dev" in raw:
        dev_raw = raw["dev"]
        _known_keys(dev_raw, "dev", {"mnemonic", "accounts"})
        mnemonic = _text(_field(dev_raw, "mnemonic", "dev"), "dev.mnemonic")
        count = _int(dev_raw.get("accounts", 10), "dev.accounts", 0, 100)
        try:
            crypto.dev_private_key(mnemonic, 0)
        except Exception as exc:
            raise GenesisError("dev.mnemonic", f"not a valid BIP-39 mnemonic: {exc}") from exc
        dev = DevConfig(mnemonic, count)

    return Genesis(
        chain_id=chain_id,
        genesis_time=genesis_time,
        symbol=symbol,
        params=params,
        accounts=tuple(accounts),
        validators=tuple(validators),
        resource_nodes=tuple(nodes),
        dev=dev,
        hash=genesis_hash(raw),
        raw=raw,
    )


def parse_genesis_file(data: bytes, path: str) -> Genesis:
    """The genesis of a file's contents `data`; a GenesisError names `path` when they are not
    UTF-8 JSON (reading the file is the caller's: `chain.node.config`, the launcher)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GenesisError("(file)", f"{path} is not UTF-8 text: {exc.reason}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError("(file)", f"{path} is not valid JSON: {exc}") from exc
    return parse_genesis(raw)


def _known_keys(item: Any, where: str, known: set[str]) -> None:
    if not isinstance(item, dict):
        raise GenesisError(where, "expected an object")
    for key in item:
        if key not in known:
            raise GenesisError(f"{where}.{key}", f"unknown field; expected {sorted(known)}")


def _list(raw: dict[str, Any], key: str, required: bool = True) -> list[Any]:
    if key not in raw:
        if required:
            raise GenesisError(key, "missing")
        return []
    value = raw[key]
    if not isinstance(value, list):
        raise GenesisError(key, "expected a list")
    return value


def params_to_json(params: Params) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (attr, kind) in PARAM_FIELDS.items():
        value = getattr(params, attr)
        if key in WRITTEN_WHEN_TRUE and not value:
            continue
        out[key] = str(value) if kind == "amount" else value
    return out


def dev_genesis(
    *,
    chain_id: int = 7331,
    mnemonic: str = DEV_MNEMONIC,
    validators: int = 1,
    resource_nodes: int = 3,
    dev_accounts: int = 10,
    account_balance: int = 10_000 * 10**18,
    validator_stake: int = 10_000 * 10**18,
    node_stake: int = 2_000 * 10**18,
    node_balance: int = 1_000 * 10**18,
    params: Params | None = None,
    base_port: int = 8545,
    node_base_port: int = 9100,
    genesis_time: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    """A genesis document whose keys all derive from `mnemonic` (PROTOCOL 2); without
    `params`, the defaults with `aoAliases` (a dev chain's processes may choose their ids)."""
    params = params or Params(ao_aliases=True)
    accounts = [
        {
            "address": crypto.address_of_private_key(crypto.dev_private_key(mnemonic, i)),
            "balance": str(account_balance),
        }
        for i in range(dev_accounts)
    ]
    vals = [
        _dev_validator(mnemonic, k, validator_stake, f"http://127.0.0.1:{base_port + k}")
        for k in range(validators)
    ]
    nodes = []
    for k in range(resource_nodes):
        key = crypto.dev_private_key(mnemonic, RESOURCE_NODE_KEY_OFFSET + k)
        address = crypto.address_of_private_key(key)
        accounts.append({"address": address, "balance": str(node_balance)})
        nodes.append(
            {
                "address": address,
                "stake": str(node_stake),
                "models": "*",
                "endpoint": f"http://127.0.0.1:{node_base_port + k}",
                "secretsHead": wire.hex0x(crypto.dev_secrets_head(key)),
            }
        )
    return {
        "chainId": chain_id,
        "genesisTime": genesis_time,
        "symbol": "AEGIS",
        "params": params_to_json(params),
        "accounts": accounts,
        "validators": vals,
        "resourceNodes": nodes,
        "dev": {"mnemonic": mnemonic, "accounts": dev_accounts},
    }


def _dev_validator(mnemonic: str, index: int, stake: int, url: str) -> dict[str, Any]:
    """The genesis entry of dev validator `index`: account 100 + index, its consensus key."""
    key = crypto.dev_private_key(mnemonic, VALIDATOR_KEY_OFFSET + index)
    seed = crypto.consensus_seed(key)
    pub = crypto.ed25519_public_bytes(crypto.ed25519_private_key(seed))
    return {
        "address": crypto.address_of_private_key(key),
        "consensusPubKey": pub.hex(),
        "stake": str(stake),
        "url": url,
    }


def with_dev_validators(
    raw: dict[str, Any], count: int, *, base_port: int = 8545
) -> dict[str, Any]:
    """`raw` (a genesis document) with its validators replaced by `count` dev validators.

    Validator k derives from the document's dev mnemonic (account 100 + k, PROTOCOL 2), stakes
    what the document's first validator stakes and is reached at http://127.0.0.1:<base_port + k>.
    Everything else is kept: for count 1 a `dev_genesis()` document with the same base_port
    comes back unchanged (the shipped genesis.json). `raw` itself is not modified; a
    `GenesisError` names the field that is missing.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise GenesisError("validators", f"at least one validator is needed, got {count!r}")
    dev = raw.get("dev")
    mnemonic = dev.get("mnemonic") if isinstance(dev, dict) else None
    if not isinstance(mnemonic, str):
        raise GenesisError("dev.mnemonic", "no dev mnemonic to derive the validator keys from")
    validators = raw.get("validators")
    if not isinstance(validators, list) or not validators or not isinstance(validators[0], dict):
        raise GenesisError("validators", "no validator to take the stake from")
    try:
        crypto.dev_private_key(mnemonic, VALIDATOR_KEY_OFFSET)
    except Exception as exc:  # eth-account raises several types for a bad mnemonic
        raise GenesisError("dev.mnemonic", f"not a valid BIP-39 mnemonic: {exc}") from exc
    stake = _amount(_field(validators[0], "stake", "validators[0]"), "validators[0].stake")
    derived = copy.deepcopy(raw)
    derived["validators"] = [
        _dev_validator(mnemonic, k, stake, f"http://127.0.0.1:{base_port + k}")
        for k in range(count)
    ]
    return derived
