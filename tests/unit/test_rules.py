"""The protocol's transactions and end of block as pure functions (PROTOCOL 3, 4).

Every rule runs on a `State` over the store of a fresh LevelDB ledger written from the dev
genesis, so the reads go through the same records a node uses. Expected values are computed
here from PROTOCOL, not by calling the helpers of chain.protocol.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import keccak as Keccak

from chain.node.ledger import Ledger
from chain.protocol import blocks, crypto, wire
from chain.protocol.errors import (
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    InvalidTransaction,
    NonceMismatch,
    NotEligible,
)
from chain.protocol.genesis import DEV_MNEMONIC, Genesis, Params, dev_genesis, parse_genesis
from chain.protocol.state import (
    OPEN_TASK,
    State,
    encode_write_set,
    get_account,
    get_node,
    get_supply,
    get_task,
    get_task_stats,
    put_account,
    put_node,
    put_task,
    task_key,
)
from chain.protocol.types import (
    Account,
    BlockContext,
    Message,
    RegisterResourceNode,
    ResourceNodeInfo,
    Secrets,
    SignedTx,
    Stake,
    SubmitTask,
    TaskStatus,
    Transfer,
    Unstake,
)

GENESIS = parse_genesis(dev_genesis(mnemonic=DEV_MNEMONIC))
GENESIS3 = parse_genesis(
    dev_genesis(mnemonic=DEV_MNEMONIC, validators=3, params=Params(block_time_ms=1000))
)
PARAMS = GENESIS.params
E18 = 10**18

KEYS: dict[str, bytes] = {}
for _i in [*range(10), 100, 101, 102, 200, 201, 202]:
    _key = crypto.dev_private_key(DEV_MNEMONIC, _i)
    KEYS[crypto.address_of_private_key(_key)] = _key
ALICE = crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, 0))
BOB = crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, 1))
VALIDATOR = GENESIS.validators[0].address
NODE0 = GENESIS.resource_nodes[0].address
FRESH = "0x000000000000000000000000000000000000dEaD"
CTX = BlockContext(height=7, time=1_767_225_700, proposer=VALIDATOR)

DEV_BALANCE = 10_000 * E18
NODE_BALANCE = 1_000 * E18
NODE_STAKE = 2_000 * E18
VALIDATOR_STAKE = 10_000 * E18
TRANSFER_FEE = PARAMS.transfer_fee  # PROTOCOL 2: the default, 1e12


def dev_secrets_head(key: bytes) -> bytes:
    """A dev node's head (PROTOCOL 4.13): keccak^65536 of the seed
    keccak("inferchain/secrets/v1" || key || epoch 0 as 8 bytes), the seed by hand (the long
    chain by crypto.hash_steps, itself checked against pycryptodome in test_assignment.py)."""
    seed = Keccak.new(digest_bits=256, data=b"inferchain/secrets/v1" + key + bytes(8)).digest()
    return crypto.hash_steps(seed, 65536)


NODE0_HEAD = dev_secrets_head(crypto.dev_private_key(DEV_MNEMONIC, 200))
NODE0_SECRETS = Secrets(NODE0_HEAD, 0, 0, NODE0_HEAD)  # committed at genesis: base 0


def sign(msg: Message, chain_id: int = GENESIS.chain_id) -> SignedTx:
    return crypto.sign_message(msg, chain_id, KEYS[getattr(msg, msg.SIGNER)])


def fee_of(target_count: int, params: Params = PARAMS) -> int:
    # PROTOCOL 4.1, with the shipped defaults 1e15 + 1e15 * n
    return params.task_base_fee + params.task_fee_per_node * target_count


def task_msg(
    sender: str = ALICE,
    nonce: int = 0,
    *,
    target_count: int = 1,
    model_options: str = '{"model": "llama-3"}',
    fee_params: str = "",
    prompts: str = "hello",
) -> SubmitTask:
    return SubmitTask(
        sender=sender,
        nonce=nonce,
        schema='{"type": "text"}',
        target_count=target_count,
        prompts=prompts,
        model_options=model_options,
        sid=b"\x11" * 32,
        fee_params=fee_params,
    )


def open_ledger(path: Path, genesis: Genesis) -> Iterator[Ledger]:
    ledger = Ledger.open(path, genesis)
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield from open_ledger(tmp_path / "ledger", GENESIS)


@pytest.fixture
def ledger3(tmp_path: Path) -> Iterator[Ledger]:
    yield from open_ledger(tmp_path / "ledger3", GENESIS3)


@pytest.fixture
def state(ledger: Ledger) -> State:
    return State(ledger.store)


def apply(state: State, msg: Message, params: Params = PARAMS, ctx: BlockContext = CTX) -> SignedTx:
    tx = sign(msg)
    blocks.apply_tx(state, params, ctx, tx)
    return tx


def rejects(state: State, msg: Message, error: type[Exception], params: Params = PARAMS) -> Any:
    """Apply `msg`, expect `error`, and check the state's write set did not move."""
    before = dict(state.writes())
    with pytest.raises(error) as info:
        apply(state, msg, params)
    assert dict(state.writes()) == before
    return info.value


def set_balance(state: State, address: str, balance: int) -> None:
    acct = get_account(state, address)
    put_account(state, address, Account(balance, acct.stake, acct.nonce))


# --- the genesis state the rules start from -----------------------------------------------


def test_genesis_state_as_written_by_the_ledger(state: State) -> None:
    assert get_account(state, ALICE) == Account(DEV_BALANCE, 0, 0)
    assert get_account(state, VALIDATOR) == Account(0, VALIDATOR_STAKE, 0)
    assert get_account(state, NODE0) == Account(NODE_BALANCE, NODE_STAKE, 0)
    assert get_node(state, NODE0) == ResourceNodeInfo(
        "*", "http://127.0.0.1:9100", False, NODE0_SECRETS
    )
    supply = 10 * DEV_BALANCE + 3 * (NODE_BALANCE + NODE_STAKE) + VALIDATOR_STAKE
    assert get_supply(state) == (supply, 0, 0)


# --- SubmitTask ---------------------------------------------------------------------------


def test_submit_task_moves_the_fee_to_a_new_task(state: State) -> None:
    msg = task_msg(target_count=3, model_options='{"model": "llama-3", "temperature": 0.7}')
    tx = apply(state, msg)
    fee = 10**15 + 10**15 * 3
    assert get_account(state, ALICE) == Account(DEV_BALANCE - fee, 0, 1)
    task = get_task(state, tx.digest)
    assert task is not None
    assert task.task_hash == crypto.digest(msg, GENESIS.chain_id)
    assert task.tx_hash == crypto.keccak(tx.digest + tx.signature)
    assert (task.sender, task.nonce, task.target_count) == (ALICE, 0, 3)
    assert (task.schema, task.prompts) == (msg.schema, msg.prompts)
    assert (task.model_options, task.sid, task.fee_params) == (msg.model_options, b"\x11" * 32, "")
    assert task.fee == fee
    assert task.model == "llama-3"
    assert task.status == "submitted"
    assert (task.created_height, task.created_at) == (CTX.height, CTX.time)
    assert (task.finished_height, task.finished_at, task.response) == (None, None, None)
    assert (task.execution_info, task.settlement, task.verification_count) == ((), None, 0)
    assert state.get(OPEN_TASK + tx.digest) == b""


def test_submit_task_model_from_hex_encoded_model_options(state: State) -> None:
    options = "0x" + json.dumps({"model": "mistral", "max_tokens": 64}).encode().hex()
    tx = apply(state, task_msg(model_options=options))
    task = get_task(state, tx.digest)
    assert task is not None and task.model == "mistral"
    assert task.model_options == options  # stored as given


@pytest.mark.parametrize(
    "options",
    ["write me a poem", "", "[1, 2]", '"llama"', '{"temperature": 1}', "0xzz"],
)
def test_submit_task_without_a_model_is_accepted_with_model_none(
    state: State, options: str
) -> None:
    tx = apply(state, task_msg(model_options=options))
    task = get_task(state, tx.digest)
    assert task is not None and task.model is None and task.model_options == options


@pytest.mark.parametrize("target_count", [1, 2, 16])
def test_target_count_within_bounds(state: State, target_count: int) -> None:
    tx = apply(state, task_msg(target_count=target_count))
    task = get_task(state, tx.digest)
    assert task is not None and task.fee == fee_of(target_count)
    assert get_account(state, ALICE).balance == DEV_BALANCE - fee_of(target_count)


@pytest.mark.parametrize("target_count", [0, 17, 2**64 - 1])
def test_target_count_out_of_bounds(state: State, target_count: int) -> None:
    exc = rejects(state, task_msg(target_count=target_count), InvalidParams)
    assert exc.param == "targetCount"


@pytest.mark.parametrize("target_count", [2**64, 2**256 - 1])
def test_huge_target_count_is_invalid_params(state: State, target_count: int) -> None:
    exc = rejects(state, task_msg(target_count=target_count), InvalidParams)
    assert exc.param == "targetCount"


def test_target_count_bound_follows_params(state: State) -> None:
    params = replace(PARAMS, max_target_count=2)
    rejects(state, task_msg(target_count=3), InvalidParams, params)
    apply(state, task_msg(target_count=2), params)


@pytest.mark.parametrize("as_int", [False, True], ids=["decimal-string", "json-int"])
@pytest.mark.parametrize("delta", [0, 1, 10**18])
def test_max_fee_at_or_above_the_fee_is_accepted(state: State, as_int: bool, delta: int) -> None:
    fee = fee_of(4)
    max_fee: Any = fee + delta if as_int else str(fee + delta)
    tx = apply(state, task_msg(target_count=4, fee_params=json.dumps({"maxFee": max_fee})))
    task = get_task(state, tx.digest)
    assert task is not None and task.fee == fee


@pytest.mark.parametrize("as_int", [False, True], ids=["decimal-string", "json-int"])
@pytest.mark.parametrize("below", [1, fee_of(4)])
def test_max_fee_below_the_fee_is_rejected(state: State, as_int: bool, below: int) -> None:
    max_fee: Any = fee_of(4) - below if as_int else str(fee_of(4) - below)
    exc = rejects(
        state, task_msg(target_count=4, fee_params=json.dumps({"maxFee": max_fee})), InvalidParams
    )
    assert exc.param == "feeParams.maxFee"


@pytest.mark.parametrize("max_fee", ["1e18", "-1", 1.5, None, "0x10", "  5"])
def test_malformed_max_fee_is_rejected(state: State, max_fee: Any) -> None:
    exc = rejects(state, task_msg(fee_params=json.dumps({"maxFee": max_fee})), InvalidParams)
    assert exc.param == "feeParams.maxFee"


@pytest.mark.parametrize("fee_params", ["", "cheap please", "{}", '{"other": 1}', "[5]"])
def test_fee_params_without_max_fee_set_no_limit(state: State, fee_params: str) -> None:
    apply(state, task_msg(target_count=16, fee_params=fee_params))
    assert get_account(state, ALICE).balance == DEV_BALANCE - fee_of(16)


VALID_OPTIONS = [
    {"temperature": 0},
    {"temperature": 2},
    {"temperature": 0.01},
    {"temperature": 2.0},
    {"top_p": 0},
    {"top_p": 1},
    {"top_p": 0.5},
    {"max_tokens": 1},
    {"max_tokens": 8192},
    {"temperature": 1, "top_p": 1, "max_tokens": 512, "model": "m"},
    {"unknown_option": "anything"},
]
INVALID_OPTIONS = [
    ({"temperature": -0.01}, "temperature"),
    ({"temperature": 2.01}, "temperature"),
    ({"temperature": "1"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": None}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_p": 1.0001}, "top_p"),
    ({"top_p": [0.5]}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 8193}, "max_tokens"),
    ({"max_tokens": 100.0}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_tokens": "100"}, "max_tokens"),
    ({"model": 5}, "model"),
    ({"model": ["a"]}, "model"),
]


@pytest.mark.parametrize("options", VALID_OPTIONS, ids=json.dumps)
def test_model_options_in_range(state: State, options: dict[str, Any]) -> None:
    tx = apply(state, task_msg(model_options=json.dumps(options)))
    task = get_task(state, tx.digest)
    assert task is not None and task.model == options.get("model")


@pytest.mark.parametrize(
    ("options", "key"), INVALID_OPTIONS, ids=[json.dumps(o) for o, _ in INVALID_OPTIONS]
)
def test_model_options_out_of_range(state: State, options: dict[str, Any], key: str) -> None:
    exc = rejects(state, task_msg(model_options=json.dumps(options)), InvalidParams)
    assert exc.param == f"modelOptions.{key}"


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("modelOptions", '{"temperature": NaN}'),
        ("modelOptions", '{"temperature": Infinity}'),
        ("modelOptions", '{"model": "m",}'),
        ("modelOptions", "  {" * 2000 + "}" * 2000),
        ("feeParams", '{"maxFee": 1'),
    ],
    ids=["NaN", "Infinity", "trailing-comma", "nested-2000", "unterminated"],
)
def test_broken_json_objects_are_rejected(state: State, field: str, text: str) -> None:
    attr = "model_options" if field == "modelOptions" else "fee_params"
    exc = rejects(state, task_msg(**{attr: text}), InvalidParams)
    assert exc.param == field


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "0x00ff", '"a string"', "12"])
def test_model_options_that_are_not_an_object_are_opaque(state: State, text: str) -> None:
    apply(state, task_msg(model_options=text))


def test_exactly_the_fee_is_enough(state: State) -> None:
    set_balance(state, ALICE, fee_of(5))
    apply(state, task_msg(target_count=5))
    assert get_account(state, ALICE) == Account(0, 0, 1)


def test_one_below_the_fee_is_insufficient(state: State) -> None:
    set_balance(state, ALICE, fee_of(5) - 1)
    exc = rejects(state, task_msg(target_count=5), InsufficientBalance)
    assert (exc.needed, exc.available, exc.what) == (fee_of(5), fee_of(5) - 1, "balance")
    assert exc.data() == {
        "address": ALICE,
        "needed": str(fee_of(5)),
        "available": str(fee_of(5) - 1),
        "of": "balance",
    }


def test_stake_does_not_pay_a_fee(state: State) -> None:
    # NODE0 holds 2000e18 staked; only its balance pays
    set_balance(state, NODE0, 0)
    rejects(state, task_msg(NODE0), InsufficientBalance)


@pytest.mark.parametrize("nonce", [1, 2, 2**63])
def test_nonce_ahead_is_rejected(state: State, nonce: int) -> None:
    exc = rejects(state, task_msg(nonce=nonce), NonceMismatch)
    assert exc.data() == {"address": ALICE, "expected": 0, "got": nonce}


def test_nonce_behind_is_rejected(state: State) -> None:
    apply(state, task_msg(nonce=0))
    apply(state, Transfer(ALICE, 1, BOB, 1))
    exc = rejects(state, task_msg(nonce=1, prompts="again"), NonceMismatch)
    assert (exc.expected, exc.got) == (2, 1)


def test_nonce_is_checked_before_other_rules(state: State) -> None:
    exc = rejects(state, task_msg(nonce=3, target_count=0), NonceMismatch)
    assert exc.expected == 0


def test_same_task_twice_is_a_duplicate(state: State) -> None:
    msg = task_msg()
    apply(state, msg)
    acct = get_account(state, ALICE)
    put_account(state, ALICE, Account(acct.balance, acct.stake, 0))  # rewind the nonce
    rejects(state, msg, DuplicateSubmission)


NO_TASKS = {status.value: 0 for status in TaskStatus}


def test_task_stats_count_tasks_by_status(state: State) -> None:
    assert get_task_stats(state) == NO_TASKS
    first = apply(state, task_msg(nonce=0))
    apply(state, task_msg(nonce=1))
    apply(state, task_msg(BOB, 0))
    assert get_task_stats(state) == {**NO_TASKS, "submitted": 3}
    task = get_task(state, first.digest)
    assert task is not None
    put_task(state, replace(task, status=TaskStatus.PROCESSING))
    put_task(state, replace(task, status=TaskStatus.PROCESSING))  # same status: counts unchanged
    assert get_task_stats(state)["processing"] == 1
    assert get_task_stats(state)["submitted"] == 2
    put_task(state, replace(task, status=TaskStatus.FAILED))
    assert get_task_stats(state) == {
        **NO_TASKS,
        "submitted": 2,
        "failed": 1,
    }
    assert state.writes()[OPEN_TASK + first.digest] is None  # left the open index
    assert state.get(task_key(first.digest)) is not None


# --- Transfer -----------------------------------------------------------------------------


def test_transfer_to_another_account(state: State) -> None:
    supply = get_supply(state)
    apply(state, Transfer(ALICE, 0, BOB, 5 * E18))
    assert get_account(state, ALICE) == Account(DEV_BALANCE - 5 * E18 - TRANSFER_FEE, 0, 1)
    assert get_account(state, BOB) == Account(DEV_BALANCE + 5 * E18, 0, 0)
    assert get_supply(state) == (supply[0], supply[1], supply[2] + TRANSFER_FEE)  # burned


def test_transfer_to_self_only_moves_the_nonce_and_pays_the_fee(state: State) -> None:
    apply(state, Transfer(ALICE, 0, ALICE, 7 * E18))
    assert get_account(state, ALICE) == Account(DEV_BALANCE - TRANSFER_FEE, 0, 1)


def test_transfer_to_a_new_account_creates_it(state: State) -> None:
    assert state.get(b"s/acct/" + bytes.fromhex(FRESH[2:])) is None
    apply(state, Transfer(ALICE, 0, FRESH, 3))
    assert get_account(state, FRESH) == Account(3, 0, 0)
    assert get_account(state, ALICE).balance == DEV_BALANCE - 3 - TRANSFER_FEE


def test_transfer_of_zero_is_rejected(state: State) -> None:
    exc = rejects(state, Transfer(ALICE, 0, BOB, 0), InvalidParams)
    assert exc.param == "amount"


def test_transfer_of_the_whole_balance_but_the_fee(state: State) -> None:
    apply(state, Transfer(ALICE, 0, BOB, DEV_BALANCE - TRANSFER_FEE))
    assert get_account(state, ALICE) == Account(0, 0, 1)
    assert get_account(state, BOB).balance == 2 * DEV_BALANCE - TRANSFER_FEE


def test_transfer_above_the_balance_counts_the_fee(state: State) -> None:
    for amount in (DEV_BALANCE - TRANSFER_FEE + 1, DEV_BALANCE, DEV_BALANCE + 1):
        exc = rejects(state, Transfer(ALICE, 0, BOB, amount), InsufficientBalance)
        assert (exc.needed, exc.available) == (amount + TRANSFER_FEE, DEV_BALANCE)
        assert exc.data()["of"] == "balance"


def test_transfer_without_a_fee_moves_the_whole_balance(state: State) -> None:
    free = replace(PARAMS, transfer_fee=0)
    supply = get_supply(state)
    apply(state, Transfer(ALICE, 0, BOB, DEV_BALANCE), free)
    assert get_account(state, ALICE) == Account(0, 0, 1)
    assert get_supply(state) == supply


def test_transfer_cannot_spend_stake(state: State) -> None:
    rejects(state, Transfer(NODE0, 0, BOB, NODE_BALANCE + 1), InsufficientBalance)
    rejects(state, Transfer(NODE0, 0, BOB, NODE_BALANCE), InsufficientBalance)
    apply(state, Transfer(NODE0, 0, BOB, NODE_BALANCE - TRANSFER_FEE))
    assert get_account(state, NODE0) == Account(0, NODE_STAKE, 1)


# --- Stake / Unstake ----------------------------------------------------------------------


def test_stake_moves_balance_to_stake(state: State) -> None:
    apply(state, Stake(ALICE, 0, 1000 * E18))
    assert get_account(state, ALICE) == Account(DEV_BALANCE - 1000 * E18, 1000 * E18, 1)


def test_stake_whole_balance_then_one_more(state: State) -> None:
    apply(state, Stake(ALICE, 0, DEV_BALANCE))
    assert get_account(state, ALICE) == Account(0, DEV_BALANCE, 1)
    exc = rejects(state, Stake(ALICE, 1, 1), InsufficientBalance)
    assert (exc.needed, exc.available, exc.what) == (1, 0, "balance")


@pytest.mark.parametrize("cls", [Stake, Unstake])
def test_stake_or_unstake_of_zero_is_rejected(state: State, cls: type) -> None:
    exc = rejects(state, cls(NODE0, 0, 0), InvalidParams)
    assert exc.param == "amount"


def test_unstake_moves_stake_to_balance(state: State) -> None:
    apply(state, Unstake(NODE0, 0, NODE_STAKE))
    assert get_account(state, NODE0) == Account(NODE_BALANCE + NODE_STAKE, 0, 1)


def test_unstake_beyond_the_stake(state: State) -> None:
    exc = rejects(state, Unstake(NODE0, 0, NODE_STAKE + 1), InsufficientBalance)
    assert (exc.needed, exc.available, exc.what) == (NODE_STAKE + 1, NODE_STAKE, "stake")
    exc = rejects(state, Unstake(ALICE, 0, 1), InsufficientBalance)
    assert (exc.available, exc.what) == (0, "stake")


def test_validator_cannot_unstake_below_min_validator_stake(state: State) -> None:
    assert PARAMS.min_validator_stake == VALIDATOR_STAKE
    exc = rejects(state, Unstake(VALIDATOR, 0, 1), NotEligible)
    assert exc.address == VALIDATOR


def test_validator_may_unstake_down_to_exactly_the_minimum(state: State) -> None:
    set_balance(state, VALIDATOR, 10 * E18)
    apply(state, Stake(VALIDATOR, 0, 10 * E18))
    rejects(state, Unstake(VALIDATOR, 1, 10 * E18 + 1), NotEligible)
    apply(state, Unstake(VALIDATOR, 1, 10 * E18))
    assert get_account(state, VALIDATOR) == Account(10 * E18, VALIDATOR_STAKE, 2)


def test_unstake_beyond_stake_is_insufficient_even_for_a_validator(state: State) -> None:
    rejects(state, Unstake(VALIDATOR, 0, VALIDATOR_STAKE + 1), InsufficientBalance)


# --- RegisterResourceNode -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "stored"),
    [
        ("*", "*"),
        ("llama-3", "llama-3"),
        (" llama-3 , mistral ", "llama-3,mistral"),
        ("a,*", "a,*"),
    ],
)
def test_register_resource_node(state: State, models: str, stored: str) -> None:
    apply(state, RegisterResourceNode(ALICE, 0, models, "https://alice.example:9000"))
    assert get_node(state, ALICE) == ResourceNodeInfo(stored, "https://alice.example:9000", False)
    assert get_account(state, ALICE) == Account(DEV_BALANCE, 0, 1)


@pytest.mark.parametrize("models", ["", " ", "a,,b", "a,", ",a", " , ", "m" * 1025])
def test_register_with_bad_models(state: State, models: str) -> None:
    exc = rejects(state, RegisterResourceNode(ALICE, 0, models, ""), InvalidParams)
    assert exc.param == "models"
    assert get_node(state, ALICE) is None


def test_register_models_at_the_length_limit(state: State) -> None:
    apply(state, RegisterResourceNode(ALICE, 0, "m" * 1024, ""))
    node = get_node(state, ALICE)
    assert node is not None and node.models == "m" * 1024


@pytest.mark.parametrize(
    "endpoint", ["", "http://x", "https://node.example/path", "http://" + "a" * 249]
)
def test_register_with_good_endpoint(state: State, endpoint: str) -> None:
    apply(state, RegisterResourceNode(ALICE, 0, "*", endpoint))
    node = get_node(state, ALICE)
    assert node is not None and node.endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://x", "localhost:9000", "127.0.0.1:9000", "HTTP//x", "http://" + "a" * 250],
)
def test_register_with_bad_endpoint(state: State, endpoint: str) -> None:
    exc = rejects(state, RegisterResourceNode(ALICE, 0, "*", endpoint), InvalidParams)
    assert exc.param == "endpoint"


def test_re_registration_keeps_the_jailed_flag(state: State) -> None:
    put_node(state, NODE0, ResourceNodeInfo("*", "http://old", jailed=True))
    apply(state, RegisterResourceNode(NODE0, 0, "llama-3", "http://new"))
    assert get_node(state, NODE0) == ResourceNodeInfo("llama-3", "http://new", True)
    assert get_account(state, NODE0) == Account(NODE_BALANCE, NODE_STAKE, 1)


def test_re_registration_of_an_unjailed_node_stays_unjailed(state: State) -> None:
    apply(state, RegisterResourceNode(NODE0, 0, "m1,m2", ""))
    # re-registering keeps the committed secrets too (PROTOCOL 4.13)
    assert get_node(state, NODE0) == ResourceNodeInfo("m1,m2", "", False, NODE0_SECRETS)


def test_validator_cannot_register_as_resource_node(state: State) -> None:
    exc = rejects(state, RegisterResourceNode(VALIDATOR, 0, "*", ""), NotEligible)
    assert exc.address == VALIDATOR
    assert get_node(state, VALIDATOR) is None


# --- size limit -----------------------------------------------------------------------------


def canonical_size(tx: SignedTx) -> int:
    """The size PROTOCOL 2 bounds, computed here: the tx's sorted compact JSON with signature."""
    params = wire.message_to_params(tx.message)
    params["signature"] = "0x" + tx.signature.hex()
    return len(
        json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_tx_over_max_tx_bytes_is_rejected(state: State) -> None:
    msg = task_msg(prompts="x" * PARAMS.max_tx_bytes)
    exc = rejects(state, msg, InvalidParams)
    assert exc.param == "(transaction)"
    assert get_account(state, ALICE) == Account(DEV_BALANCE, 0, 0)


@pytest.mark.parametrize(
    "msg",
    [
        task_msg(prompts="é" * 300),
        Transfer(ALICE, 0, BOB, 1),
        RegisterResourceNode(ALICE, 0, "*", "http://x"),
    ],
    ids=["task", "transfer", "register"],
)
def test_max_tx_bytes_boundary(state: State, msg: Message) -> None:
    size = canonical_size(sign(msg))
    assert blocks.tx_size(sign(msg)) == size
    rejects(state, msg, InvalidParams, replace(PARAMS, max_tx_bytes=size - 1))
    apply(state, msg, replace(PARAMS, max_tx_bytes=size))


# --- a rejected tx changes nothing -----------------------------------------------------------

REJECTED: list[tuple[Message, type[InvalidTransaction]]] = [
    (task_msg(nonce=5, prompts="p"), NonceMismatch),
    (task_msg(nonce=1, target_count=0), InvalidParams),
    (task_msg(nonce=1, target_count=16, fee_params='{"maxFee": "1"}'), InvalidParams),
    (task_msg(nonce=1, model_options='{"top_p": 3}'), InvalidParams),
    (Transfer(ALICE, 1, BOB, 0), InvalidParams),
    (Transfer(ALICE, 1, BOB, DEV_BALANCE), InsufficientBalance),
    (Stake(ALICE, 1, DEV_BALANCE), InsufficientBalance),
    (Unstake(ALICE, 1, 1), InsufficientBalance),
    (Unstake(VALIDATOR, 0, 1), NotEligible),
    (RegisterResourceNode(ALICE, 1, "", ""), InvalidParams),
    (RegisterResourceNode(VALIDATOR, 0, "*", ""), NotEligible),
]


@pytest.mark.parametrize(
    ("msg", "error"), REJECTED, ids=[f"{m.TYPE}-{e.__name__}" for m, e in REJECTED]
)
def test_rejected_tx_leaves_the_write_set_unchanged(
    state: State, msg: Message, error: type[InvalidTransaction]
) -> None:
    apply(state, Transfer(ALICE, 0, BOB, 1))  # some writes to keep
    before = dict(state.writes())
    assert before
    with pytest.raises(error):
        apply(state, msg)
    assert dict(state.writes()) == before


# --- end of block -------------------------------------------------------------------------


def test_block_reward_without_signers_goes_to_the_proposer(state: State) -> None:
    genesis_supply = get_supply(state)[0]
    blocks.end_block(state, PARAMS, CTX, [])
    assert get_account(state, VALIDATOR) == Account(10**16, VALIDATOR_STAKE, 0)
    assert get_supply(state) == (genesis_supply, 10**16, 0)
    blocks.end_block(state, PARAMS, replace(CTX, proposer=ALICE), [])
    assert get_account(state, ALICE).balance == DEV_BALANCE + 10**16
    assert get_supply(state) == (genesis_supply, 2 * 10**16, 0)


def test_block_reward_to_a_single_signer(state: State) -> None:
    blocks.end_block(state, PARAMS, CTX, [VALIDATOR])
    assert get_account(state, VALIDATOR).balance == 10**16


def test_zero_block_reward_writes_nothing(state: State) -> None:
    blocks.end_block(state, replace(PARAMS, block_reward=0), CTX, [VALIDATOR])
    assert state.writes() == {}


def _validators3(state: State, stakes: list[int]) -> list[str]:
    addresses = [v.address for v in GENESIS3.validators]
    for address, stake in zip(addresses, stakes, strict=True):
        put_account(state, address, Account(0, stake, 0))
    return addresses


def test_block_reward_pro_rata_with_remainder_to_a_non_signing_proposer(ledger3: Ledger) -> None:
    state = State(ledger3.store)
    params = GENESIS3.params
    v0, v1, v2 = _validators3(state, [10_000 * E18, 20_000 * E18, 10_000 * E18])
    blocks.end_block(state, params, BlockContext(5, 0, v2), [v1, v0])
    reward = 10**16
    share0 = reward * 10_000 // 30_000  # 3333333333333333
    share1 = reward * 20_000 // 30_000  # 6666666666666666
    assert get_account(state, v0).balance == share0 == 3333333333333333
    assert get_account(state, v1).balance == share1 == 6666666666666666
    assert get_account(state, v2).balance == reward - share0 - share1 == 1
    assert get_supply(state)[1] == reward


def test_block_reward_remainder_to_a_signing_proposer(ledger3: Ledger) -> None:
    state = State(ledger3.store)
    params = replace(GENESIS3.params, block_reward=100)
    v0, v1, v2 = _validators3(state, [3, 3, 1])
    blocks.end_block(state, params, BlockContext(5, 0, v1), [v0, v1, v2])
    # shares floor(100*3/7)=42, 42, floor(100/7)=14; remainder 2 to the proposer v1
    assert [get_account(state, v).balance for v in (v0, v1, v2)] == [42, 44, 14]
    assert get_supply(state)[1] == 100


def test_block_reward_counts_a_repeated_signer_once(ledger3: Ledger) -> None:
    state = State(ledger3.store)
    params = replace(GENESIS3.params, block_reward=90)
    v0, v1, v2 = _validators3(state, [1, 2, 3])
    blocks.end_block(state, params, BlockContext(5, 0, v2), [v0, v0, v1, v0])
    assert [get_account(state, v).balance for v in (v0, v1, v2)] == [30, 60, 0]


def test_supply_counters_add_up_over_blocks(ledger3: Ledger) -> None:
    state = State(ledger3.store)
    genesis_supply, minted, burned = get_supply(state)
    assert (minted, burned) == (0, 0)
    assert genesis_supply == GENESIS3.supply
    for height in range(1, 4):
        signers = [v.address for v in GENESIS3.validators][:height]
        blocks.end_block(state, GENESIS3.params, BlockContext(height, 0, signers[0]), signers)
    assert get_supply(state) == (genesis_supply, 3 * 10**16, 0)
    held = sum(
        get_account(state, a).balance + get_account(state, a).stake
        for a in {
            *(x.address for x in GENESIS3.accounts),
            *(v.address for v in GENESIS3.validators),
        }
    )
    assert held == genesis_supply + 3 * 10**16


def test_supply_check_counts_escrow(state: State) -> None:
    apply(state, task_msg(target_count=2))
    escrow = [fee_of(2)]
    accounts = [get_account(state, a.address) for a in GENESIS.accounts]
    accounts.append(get_account(state, VALIDATOR))
    held, expected = blocks.supply_check(accounts, escrow, get_supply(state))
    assert held == expected == GENESIS.supply
    held, expected = blocks.supply_check(accounts, [], get_supply(state))
    assert expected - held == fee_of(2)


# --- the canonical write set encoding (PROTOCOL 6) ----------------------------------------


def test_encode_write_set_layout() -> None:
    pairs = [(b"k", b"v"), (b"s/x", None), (b"", b"")]
    assert encode_write_set(pairs) == (
        b"\x00\x00\x00\x01k"
        + b"\x01\x00\x00\x00\x01v"
        + b"\x00\x00\x00\x03s/x"
        + b"\x00"
        + b"\x00\x00\x00\x00"
        + b"\x01\x00\x00\x00\x00"
    )
    assert encode_write_set([]) == b""


def test_write_set_is_sorted_and_records_deletes(state: State) -> None:
    state.put(b"s/b", b"2")
    state.put(b"s/a", b"1")
    state.delete(b"s/c")
    assert state.write_set() == [(b"s/a", b"1"), (b"s/b", b"2"), (b"s/c", None)]
