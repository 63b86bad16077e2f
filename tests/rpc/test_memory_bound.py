"""A validator's memory does not grow with finished tasks (PERFORMANCE.md, "Memory").

Finished tasks live in LevelDB; nothing in the process may keep them. `blocks.tx_size` used
to be an lru_cache keyed by the transaction, which kept the last 65,536 transactions alive,
finished or not (60 MiB after 20,000 answered tasks); it now keeps at most
`blocks.TX_SIZE_CACHE` sizes by hash. The decoded tasks `state.decode_task` keeps are at most
`state.TASK_CACHE`, the verified transactions `crypto.verify_message` keeps at most
`crypto.VERIFIED_CACHE`. The tests finish tasks through a real validator
(tests.helpers.local_chain, LevelDB in a temp dir, HTTP on loopback) and count what is left.
"""

from __future__ import annotations

import gc
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import blocks, crypto, state
from chain.protocol.types import SignedTx, Task, Transfer
from rpc.client import message_params
from tests.helpers import local_chain, make_genesis
from tests.rpc.support import CHAIN_ID, DEAD, DEV0, NODE0, NODE1, NODE2

TASKS = 240  # half answered and verified, half left to fail at their compute deadline
SMALL_CACHE = 64
FRESH_NONCES = itertools.count()


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def test_finished_tasks_leave_nothing_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocks, "TX_SIZE_CACHE", SMALL_CACHE)
    monkeypatch.setattr(state, "TASK_CACHE", SMALL_CACHE)
    monkeypatch.setattr(crypto, "VERIFIED_CACHE", SMALL_CACHE)
    # no forced errors: a verified result settles without its submitter's secret
    genesis = make_genesis(compute_deadline_blocks=2, verify_deadline_blocks=2, canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        client, node = chain.client, chain.node
        before_txs, before_tasks = live(SignedTx), live(Task)
        receipts = []
        for nonce in range(TASKS):
            prompt = f"memory {nonce}"
            receipts.append(await client.submit_task(DEV0, prompts=prompt, nonce=nonce))
        node.produce_block()
        answered = receipts[: TASKS // 2]
        for receipt in answered:
            assert await client.submit_inference_result(NODE0, receipt.task_hash, "ok")
        node.produce_block()
        for receipt in answered:  # by both assigned verifiers, the other two nodes
            for verifier in (NODE1, NODE2):
                assert await client.submit_verification(
                    verifier, receipt.task_hash, NODE0.address, True
                )
        for _ in range(6):  # past every deadline
            node.produce_block()

        stats = await client.task_stats()
        assert stats["verified"] == TASKS // 2 and stats["failed"] == TASKS // 2, stats
        assert stats["submitted"] == stats["processing"] == 0, stats
        assert node.pending_count() == 0
        assert blocks.tx_size_cache_len() <= SMALL_CACHE
        assert state.task_cache_len() <= SMALL_CACHE
        assert crypto.verified_cache_len() <= SMALL_CACHE
        # 2.5 * TASKS transactions were admitted, executed and committed: none is still held
        assert live(SignedTx) - before_txs < 10 + SMALL_CACHE
        assert live(Task) - before_tasks < 10 + SMALL_CACHE
        last = await client.query_task(receipts[-1].task_hash)  # still served, from LevelDB
        assert last["status"] == "failed"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 10**30), min_size=1, max_size=40), st.integers(1, 8))
def test_tx_size_is_the_encoded_size_and_the_cache_stays_bounded(
    amounts: list[int], bound: int
) -> None:
    key = DEV0.private_key
    original = blocks.TX_SIZE_CACHE
    blocks.TX_SIZE_CACHE = bound
    try:
        for amount in amounts:
            nonce = next(FRESH_NONCES)  # a transaction never sized before
            tx = crypto.sign_message(Transfer(DEV0.address, nonce, DEAD, amount), CHAIN_ID, key)
            wire_form = message_params(tx.message) | {"signature": "0x" + tx.signature.hex()}
            text = json.dumps(wire_form, sort_keys=True, separators=(",", ":"))
            assert blocks.tx_size(tx) == blocks.tx_size(tx) == len(text.encode())
            assert blocks.tx_size_cache_len() <= bound
    finally:
        blocks.TX_SIZE_CACHE = original
