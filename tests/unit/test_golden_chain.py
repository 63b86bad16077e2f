"""The golden chain (`tests/vectors/chain.json`) replays byte for byte: every block hash,
appHash, transaction status and task outcome the protocol gave when it was recorded."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from chain.protocol.types import MESSAGE_TYPES
from tests.golden_chain import PATH, J, build_chain, dumps, replay


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(PATH.read_bytes())
    return loaded


def test_the_golden_chain_replays_byte_for_byte(document: dict[str, Any]) -> None:
    assert dumps(replay(document)) == PATH.read_bytes()


def test_the_scenario_still_signs_the_same_transactions(document: dict[str, Any]) -> None:
    assert build_chain() == document


def test_the_golden_chain_covers_every_path(document: dict[str, Any]) -> None:
    blocks = document["blocks"]
    types = {tx["type"] for block in blocks for tx in block["txs"]}
    assert types == set(MESSAGE_TYPES)  # CommitSecrets and RevealSecret included
    statuses = {status for block in blocks for status in block["statuses"]}
    assert statuses == {"committed", "late"}
    tasks = list(document["tasks"].values())
    assert {t["status"] for t in tasks} == {"verified", "failed"}
    # result statuses: verified, rejected, unverified; a task with no result at all
    assert {s for t in tasks for s in t["results"]} == {2, 3, 4}
    assert any(t["results"] == [] for t in tasks)
    assert any(t["results"] == [2, 2] for t in tasks)
    # a dispute opened the last round (PROTOCOL 4.5), of a verified and of a rejected result
    assert {(t["results"][0], t["rounds"][0]) for t in tasks if 2 in t["rounds"]} == {
        (2, 2),
        (3, 2),
    }
    # a revealed forced error, revealed honest results, and one result never revealed
    assert {f for t in tasks for f in t["forcedErrors"]} == {True, False, None}
    reasons = {reason for t in tasks for _address, reason in t["slashed"]}
    assert reasons == {"result", "verdict", "lazy"}
    assert {role for t in tasks for _address, role in t["payouts"]} == {
        "compute",
        "verify",
        "canary",
    }
    (forced,) = [t for t in tasks if True in t["forcedErrors"]]
    assert forced["status"] == "failed" and [r for _a, r in forced["slashed"]] == ["lazy"]
    (unrevealed,) = [t for t in tasks if None in t["forcedErrors"]]
    assert [(a, r) for a, r in unrevealed["slashed"]] == [(J, "result")]
    assert unrevealed["payouts"] == []  # its verdicts are on no side (PROTOCOL 4.13)
    jailed = [J in block["jailed"] for block in blocks]
    assert True in jailed and not jailed[-1]  # jailed by its slash, released by a Stake


def test_another_block_time_changes_every_hash_from_there_on(document: dict[str, Any]) -> None:
    changed = copy.deepcopy(document)
    changed["blocks"][5]["time"] += 1
    replayed = replay(changed)
    for ours, theirs in zip(replayed["blocks"], document["blocks"], strict=True):
        same = ours["hash"] == theirs["hash"]
        assert same == (ours["height"] < 5)
