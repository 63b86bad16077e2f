"""The resource node's submission log (resource_node.state): what it remembers, how it writes
its file, and the files it refuses. No validator is involved."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from resource_node.backends.deterministic import DeterministicBackend
from resource_node.state import (
    COMPACT_MIN,
    StateError,
    SubmissionLog,
    Verdict,
    journal_path,
    state_path,
)
from resource_node.worker import ResourceNode, WorkerConfig
from rpc.client import InferchainClient, Wallet

GENESIS = "0x" + "ab" * 32
NODE = Wallet.dev(200)
OTHER = Wallet.dev(201)
THIRD = Wallet.dev(202)


def test_submission_log_round_trip(tmp_path: Path) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path)
    log.record_genesis(GENESIS)
    log.record_result("0x" + "AA" * 32, "accepted")
    log.record_result("0x" + "bb" * 32, "closed")
    log.record_verdict("0x" + "aa" * 32, OTHER.address, True, "accepted")
    log.record_verdict("0x" + "cc" * 32, THIRD.address.lower(), False, "duplicate")

    again = SubmissionLog.load(NODE.address, path)
    assert again.genesis_hash == GENESIS
    assert again.result_outcome("0x" + "aa" * 32) == "accepted"
    assert again.result_outcome("0x" + "BB" * 32) == "closed"
    assert not again.has_result("0x" + "cc" * 32)
    assert again.has_verdict("0x" + "aa" * 32, OTHER.address)
    assert not again.has_verdict("0x" + "aa" * 32, THIRD.address)
    verdict = again.verdict("0x" + "cc" * 32, THIRD.address)
    assert verdict is not None and (verdict.valid, verdict.outcome) == (False, "duplicate")
    assert len(again) == 3
    assert again.to_json() == log.to_json()


def test_submission_log_writes_its_file_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path)
    log.record_result("0x" + "aa" * 32, "accepted")
    log.save()
    before = path.read_bytes()

    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: Any, dst: Any) -> None:
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    log.record_result("0x" + "bb" * 32, "accepted")
    log.save()
    [(src, dst)] = replaced
    assert dst == str(path) and src != dst and Path(src).parent == path.parent
    assert journal_path(path).read_bytes() == b""  # the file holds everything

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    after_first = path.read_bytes()
    log.record_result("0x" + "cc" * 32, "accepted")  # in the journal
    with pytest.raises(StateError, match=str(path)):
        log.save()
    assert path.read_bytes() == after_first != before  # the old file, whole
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([path.name, journal_path(path).name])  # no temporary left
    monkeypatch.setattr(os, "replace", real_replace)
    again = SubmissionLog.load(NODE.address, path)  # the journal still has the third
    assert again.result_outcome("0x" + "cc" * 32) == "accepted" and len(again) == 3


def test_a_change_is_one_journal_line_until_the_file_is_rewritten(tmp_path: Path) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path)
    log.record_genesis(GENESIS)
    file_before = path.read_bytes()
    hashes = ["0x" + f"{i:064x}" for i in range(COMPACT_MIN)]
    for number, task_hash in enumerate(hashes, 1):
        log.record_result(task_hash, "accepted", number)
        assert journal_path(path).read_bytes().count(b"\n") == number
    assert path.read_bytes() == file_before  # the file was not written again
    # As many lines as tasks: the next change writes the whole file and empties the journal.
    log.record_verdict(hashes[0], OTHER.address, True, "accepted")
    assert journal_path(path).read_bytes() == b""
    document = json.loads(path.read_bytes())
    assert len(document["tasks"]) == COMPACT_MIN and document["genesisHash"] == GENESIS
    assert document["tasks"][hashes[0]]["verdicts"] == {
        OTHER.address.lower(): {"valid": True, "outcome": "accepted"}
    }
    assert SubmissionLog.load(NODE.address, path).to_json() == log.to_json()


def test_a_journal_line_cut_short_is_dropped(tmp_path: Path) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path)
    log.record_result("0x" + "aa" * 32, "accepted", 7)
    log.record_verdict("0x" + "bb" * 32, OTHER.address, False, "accepted")
    log.close()
    whole = journal_path(path).read_bytes()
    cut = b'{"result":"0x' + b"cc" * 10  # a crash in the middle of a line
    journal_path(path).write_bytes(whole + cut)
    again = SubmissionLog.load(NODE.address, path)
    assert again.created_height("0x" + "aa" * 32) == 7
    assert again.verdict("0x" + "bb" * 32, OTHER.address) == Verdict(False, "accepted")
    assert not again.has_result("0x" + "cc" * 32) and len(again) == 2
    assert journal_path(path).read_bytes() == b""  # written afresh, nothing glued to the cut
    again.record_result("0x" + "dd" * 32, "duplicate")
    assert SubmissionLog.load(NODE.address, path).result_outcome("0x" + "dd" * 32) == "duplicate"


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"{not json", "line 2: cannot read it as JSON"),
        (b"[1]", "line 2: not an object"),
        (b'{"result": "0x1", "outcome": "maybe"}', "line 2: bad result outcome"),
        (b'{"result": 5, "outcome": "accepted"}', "line 2: bad task hash"),
        (b'{"verdict": "0x1", "valid": true, "outcome": "accepted"}', "needs `submitter`"),
        (b'{"secretsEpoch": -1}', "line 2: `secretsEpoch` is not an epoch"),
        (b'{"something": 1}', "neither a result, a verdict nor a secrets epoch"),
    ],
)
def test_submission_log_refuses_a_bad_journal_line(tmp_path: Path, line: bytes, match: str) -> None:
    path = state_path(tmp_path, NODE.address)
    good = b'{"result": "0x' + b"aa" * 32 + b'", "outcome": "accepted"}'
    journal_path(path).write_bytes(good + b"\n" + line + b"\n")
    with pytest.raises(StateError, match=match) as raised:
        SubmissionLog.load(NODE.address, path)
    assert str(journal_path(path)) in str(raised.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"{not json", "cannot read it as JSON"),
        (b'{"version": 99}', "not a version 1"),
        (b'{"version": 1, "address": "0x0000000000000000000000000000000000000001"}', "belongs"),
        (
            json.dumps(
                {"version": 1, "address": NODE.address, "tasks": {"0x1": {"result": "maybe"}}}
            ).encode(),
            "bad result outcome",
        ),
        (
            json.dumps(
                {
                    "version": 1,
                    "address": NODE.address,
                    "tasks": {"0x1": {"verdicts": {"0x2": {"valid": True, "outcome": 7}}}},
                }
            ).encode(),
            "bad verdict outcome",
        ),
        (b'{"version": 1, "n": ' + b"9" * 5000 + b"}", "cannot read it as JSON"),
        (b"[" * 100_000, "cannot read it as JSON"),  # refused before any parser sees it
    ],
)
def test_submission_log_refuses_a_bad_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = state_path(tmp_path, NODE.address)
    path.write_bytes(content)
    with pytest.raises(StateError, match=match):
        SubmissionLog.load(NODE.address, path)


async def test_unreadable_state_stops_setup(tmp_path: Path) -> None:
    state_path(tmp_path, NODE.address).write_text("garbage")
    # setup() reads only the state file: the client is never used.
    node = ResourceNode(
        InferchainClient("http://127.0.0.1:9"),
        NODE,
        DeterministicBackend(),
        config=WorkerConfig(state_dir=tmp_path),
    )
    with pytest.raises(StateError, match="resource-node-"):
        await node.setup()
    await node.cleanup()


def test_submission_log_keeps_the_most_recent_tasks(tmp_path: Path) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path, max_tasks=3)
    hashes = ["0x" + f"{i:02x}" * 32 for i in range(5)]
    for task_hash in hashes:
        log.record_result(task_hash, "accepted")
    log.record_verdict(hashes[2], OTHER.address, True, "accepted")  # touched again: kept
    log.record_result("0x" + "ff" * 32, "accepted")
    again = SubmissionLog.load(NODE.address, path, max_tasks=3)
    assert [again.has_result(h) for h in hashes] == [False, False, True, False, True]
    assert len(again) == 3


def test_submission_log_reset(tmp_path: Path) -> None:
    path = state_path(tmp_path, NODE.address)
    log = SubmissionLog(NODE.address, path)
    log.record_result("0x" + "aa" * 32, "accepted")
    log.reset("0x" + "01" * 32)
    again = SubmissionLog.load(NODE.address, path)
    assert len(again) == 0 and again.genesis_hash == "0x" + "01" * 32
