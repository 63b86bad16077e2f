"""The resource node's chain of secrets (resource_node.secrets, PROTOCOL 4.13), its forced
output, and what its state file keeps of them. No validator is involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto
from resource_node.secrets import CHECKPOINT_EVERY, SecretChain, listed_secrets
from resource_node.state import StateError, SubmissionLog, state_path
from resource_node.untrusted import MAX_FIELD_LENGTH
from resource_node.worker import FORCED_MARKER, forced_output, same_output
from rpc.client import Wallet

NODE = Wallet.dev(200)
KEY = NODE.private_key


def test_epoch_0_of_the_dev_length_is_the_dev_genesis_head() -> None:
    chain = SecretChain.derive(KEY, 0)
    assert chain.head == crypto.dev_secrets_head(KEY)
    assert chain.length == crypto.SECRET_CHAIN_LENGTH
    for height in (1, 255, 256, 257, crypto.SECRET_CHAIN_LENGTH):
        assert crypto.hash_steps(chain.secret(height, 0), height) == chain.head
    # PROTOCOL 4.13's dev form: the seed hashed length - (h - base) times
    seed = crypto.secrets_seed(KEY, 0)
    assert chain.secret(60_000, 0) == crypto.hash_steps(seed, crypto.SECRET_CHAIN_LENGTH - 60_000)


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 3 * CHECKPOINT_EVERY + 5),
    base=st.integers(0, 10**6),
    epoch=st.integers(1, 2**64 - 1),
    data=st.data(),
)
def test_the_secret_of_a_height_hashes_to_the_head(
    length: int, base: int, epoch: int, data: st.DataObject
) -> None:
    chain = SecretChain.derive(KEY, epoch, length)
    assert chain.head == crypto.hash_steps(crypto.secrets_seed(KEY, epoch), length)
    height = data.draw(st.integers(base, base + length))
    secret = chain.secret(height, base)
    assert crypto.hash_steps(secret, height - base) == chain.head
    if height > base:  # each secret hashes to the one before it, never the other way
        assert crypto.keccak(secret) == chain.secret(height - 1, base)
    assert chain.reaches(height, base)
    for outside in (base - 1, base + length + 1):
        assert not chain.reaches(outside, base)
        with pytest.raises(ValueError, match="does not reach"):
            chain.secret(outside, base)


def test_epochs_are_distinct_chains() -> None:
    heads = {SecretChain.derive(KEY, epoch, 300).head for epoch in range(4)}
    other = SecretChain.derive(Wallet.dev(201).private_key, 1, 300).head
    assert len(heads) == 4 and other not in heads


@pytest.mark.parametrize(("epoch", "length"), [(-1, 10), (2**64, 10), (1, 0)])
def test_bad_chains_are_refused(epoch: int, length: int) -> None:
    with pytest.raises(ValueError):
        SecretChain.derive(KEY, epoch, length)


def test_listed_secrets_are_read_or_refused() -> None:
    head, revealed = "0x" + "11" * 32, "0x" + "22" * 32
    good = {"base": 3, "head": head, "revealed": revealed, "revealedHeight": 9}
    read = listed_secrets(good)
    assert read is not None
    assert (read.base, read.head, read.revealed, read.revealed_height) == (
        3,
        bytes.fromhex("11" * 32),
        bytes.fromhex("22" * 32),
        9,
    )
    assert listed_secrets(None) is None
    for bad in (
        "x",
        {**good, "base": "3"},
        {**good, "head": "0x12"},
        {**good, "revealed": "0x" + "zz" * 32},
        {**good, "revealedHeight": 2},  # below base
        {**good, "base": True},
    ):
        with pytest.raises(ValueError, match="secrets"):
            listed_secrets(bad)


@given(st.text(max_size=200) | st.from_regex(r"0x([0-9a-f]{2}){0,40}", fullmatch=True))
def test_a_forced_output_never_passes_for_the_honest_one(output: str) -> None:
    wrong = forced_output(output)
    assert wrong != output and not same_output(output, wrong)
    assert len(wrong) <= max(len(output), MAX_FIELD_LENGTH)


def test_a_forced_output_stays_within_the_field_length() -> None:
    full = "a" * MAX_FIELD_LENGTH
    assert len(forced_output(full)) == MAX_FIELD_LENGTH and forced_output(full) != full
    ends_marked = "a" * (MAX_FIELD_LENGTH - len(FORCED_MARKER)) + FORCED_MARKER
    assert forced_output(ends_marked) != ends_marked
    assert len(forced_output(ends_marked)) == MAX_FIELD_LENGTH


def test_the_state_file_keeps_the_epoch_and_the_heights(tmp_path: Path) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path)
    log.record_secrets_epoch(12)
    log.record_result("0x" + "aa" * 32, "accepted", 40)
    log.record_result("0x" + "bb" * 32, "closed", 41)  # never on chain
    log.record_result("0x" + "cc" * 32, "duplicate", 42)
    log.record_result("0x" + "dd" * 32, "accepted")  # height unknown
    again = SubmissionLog.load(NODE.address, path)
    assert again.secrets_epoch == 12
    assert again.created_height("0x" + "AA" * 32) == 40
    assert again.results_since(40) == {"0x" + "cc" * 32: 42}
    assert again.results_since(0) == {"0x" + "aa" * 32: 40, "0x" + "cc" * 32: 42}
    again.reset("0x" + "ee" * 32)  # a reset chain: the tasks go, the epoch stays
    assert again.results_since(0) == {} and again.secrets_epoch == 12


@pytest.mark.parametrize(
    "document",
    [
        {"secretsEpoch": -1, "tasks": {}},
        {"secretsEpoch": "1", "tasks": {}},
        {"secretsEpoch": 2**64, "tasks": {}},
        {"tasks": {"0x" + "aa" * 32: {"result": "accepted", "createdHeight": -3}}},
        {"tasks": {"0x" + "aa" * 32: {"result": "accepted", "createdHeight": True}}},
    ],
)
def test_bad_secrets_members_are_refused(tmp_path: Path, document: dict[str, object]) -> None:
    path = state_path(tmp_path, NODE.address)
    path.write_text(json.dumps({"version": 1, "address": NODE.address, **document}))
    with pytest.raises(StateError):
        SubmissionLog.load(NODE.address, path)
