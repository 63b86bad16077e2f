"""The golden chain: a fixed, seeded sequence of blocks through every transaction type and
every settlement path, with every block hash and appHash (`tests/vectors/chain.json`).

The chain is a one-validator dev chain with short deadlines. Its blocks hold, in this order:
account transactions (transfer, stake, unstake, a resource node's registration), tasks that
end verified, rejected, unverified and failed at their compute deadline, slashes of a result
and of losing verdicts, a node jailed below minNodeStake and released by a Stake, results
and verdicts that come too late and stay in their block as `late`, and a task verified by
two results paid by rank.

`build_chain()` makes the document from the scenario below (every signature is
deterministic); `replay()` executes a document's blocks from its signed transactions and
returns what it found, so a test compares it with the document. Regenerate the file, only
when a change of the protocol is meant, with `python -m tests.golden_chain --write`.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from chain.node.ledger import Ledger
from chain.protocol import crypto, wire
from chain.protocol.blocks import block_hash, execute_block
from chain.protocol.consensus import VoteMsg
from chain.protocol.genesis import (
    DEV_MNEMONIC,
    RESOURCE_NODE_KEY_OFFSET,
    Params,
    dev_genesis,
    parse_genesis,
)
from chain.protocol.gossip import ValidatorKey, sign_vote
from chain.protocol.state import State, get_node
from chain.protocol.types import (
    BlockContext,
    Message,
    RegisterResourceNode,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Transfer,
    Unstake,
)

PATH = Path(__file__).resolve().parent / "vectors" / "chain.json"
AEGIS = 10**18
PARAMS = Params(
    block_time_ms=1000,
    compute_deadline_blocks=3,
    verify_deadline_blocks=3,
    verification_quorum=1,
)
OPTIONS = '{"model":"demo","temperature":0.7,"max_tokens":64}'
BLOCKS = 12  # past every deadline of the scenario


def _key(index: int) -> bytes:
    return crypto.dev_private_key(DEV_MNEMONIC, index)


def _address(index: int) -> str:
    return crypto.address_of_private_key(_key(index))


# Dev accounts 0 to 5, resource nodes R0 to R2 (accounts 200 to 202); account 3 registers
# as the resource node J with a stake just above minNodeStake.
A0, A1, A2, A3, A4, A5 = (_address(i) for i in range(6))
R0, R1, R2 = (_address(RESOURCE_NODE_KEY_OFFSET + k) for k in range(3))
J = A3
KEYS = {_address(i): _key(i) for i in range(6)} | {
    _address(RESOURCE_NODE_KEY_OFFSET + k): _key(RESOURCE_NODE_KEY_OFFSET + k) for k in range(3)
}


def genesis_document() -> dict[str, Any]:
    return dev_genesis(chain_id=7331, params=PARAMS, resource_nodes=3)


def _task(sender: str, nonce: int, prompt: str, target_count: int) -> SubmitTask:
    return SubmitTask(sender, nonce, "text", target_count, '{"prompt":"' + prompt + '"}', OPTIONS)


def _scenario(chain_id: int) -> list[list[SignedTx]]:
    """The transactions of blocks 1, 2, ... in order (the rest of the blocks are empty)."""

    def sign(msg: Message) -> SignedTx:
        return crypto.sign_message(msg, chain_id, KEYS[getattr(msg, msg.SIGNER)])

    verified = sign(_task(A0, 1, "verified", 1))
    rejected = sign(_task(A0, 2, "rejected", 1))
    unverified = sign(_task(A1, 0, "unverified", 1))
    no_result = sign(_task(A1, 1, "no result", 2))
    jailing = sign(_task(A4, 0, "jailing", 1))
    outvoted = sign(_task(A4, 1, "outvoted", 1))
    by_rank = sign(_task(A5, 0, "two results", 2))

    def result(task: SignedTx, node: str, text: str) -> SignedTx:
        return sign(SubmitInferenceResult(task.digest, node, text, "proof:" + text))

    def verdict(task: SignedTx, verifier: str, submitter: str, valid: bool) -> SignedTx:
        return sign(SubmitVerification(task.digest, verifier, submitter, valid))

    return [
        [  # block 1: account transactions and five tasks
            sign(Transfer(A0, 0, A1, 5 * AEGIS)),
            sign(Stake(A2, 0, 100 * AEGIS)),
            sign(Unstake(A2, 1, 40 * AEGIS)),
            sign(RegisterResourceNode(J, 0, "demo, other", "http://127.0.0.1:9199")),
            sign(Stake(J, 1, 1050 * AEGIS)),
            verified,
            rejected,
            unverified,
            no_result,
            jailing,
            outvoted,
        ],
        [  # block 2: results
            result(verified, R0, "the right answer"),
            result(rejected, R0, "junk"),
            result(unverified, R1, "nobody checks this"),
            result(jailing, J, "more junk"),
            result(outvoted, R1, "a fine answer"),
        ],
        [  # block 3: verdicts; J loses one and is jailed; two late transactions
            verdict(verified, R1, R0, True),
            verdict(rejected, R1, R0, False),
            verdict(rejected, R2, R0, False),
            verdict(jailing, R0, J, False),
            verdict(outvoted, J, R1, False),
            sign(Unstake(J, 2, 500 * AEGIS)),  # late: the Unstake guard (J has open work)
            verdict(verified, R2, R0, True),  # late: that result is decided
        ],
        [],  # block 4: the compute deadline of the block 1 tasks (rejected, failed, jailed)
        [  # block 5: J stakes back above minNodeStake; a result after its deadline: late
            sign(Stake(J, 2, 200 * AEGIS)),
            result(no_result, R2, "too late"),
            by_rank,
        ],
        [  # block 6: two results for the task of block 5
            result(by_rank, R0, "first"),
            result(by_rank, R1, "second"),
        ],
        [  # block 7: both verified; the verify deadline of `unverified` passes
            verdict(by_rank, R2, R0, True),
            verdict(by_rank, R2, R1, True),
        ],
    ]


def _precommit(key: ValidatorKey, chain_id: int, height: int, hash_: bytes) -> Any:
    return sign_vote(key, chain_id, VoteMsg(height, 0, "precommit", hash_, key.address))


def _run(
    genesis_raw: dict[str, Any], blocks: Sequence[Sequence[SignedTx]], times: Sequence[int]
) -> dict[str, Any]:
    """Execute `blocks` after the genesis of `genesis_raw` as the dev validator 0 commits
    them (each block signed by its precommit, carried by the next one as `lastCommit`), in
    a fresh LevelDB ledger: the golden chain document they make."""
    genesis = parse_genesis(genesis_raw)
    key = ValidatorKey.from_account_key(crypto.dev_private_key(DEV_MNEMONIC, 100))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp) / "ledger", genesis)
        try:
            genesis_block = ledger.get_block(0)
            assert genesis_block is not None
            out.append(
                {
                    "height": 0,
                    "time": genesis_block.block.time,
                    "txs": [],
                    "statuses": [],
                    "hash": wire.hex0x(genesis_block.hash),
                    "appHash": wire.hex0x(ledger.head.app_hash),
                    "jailed": [],
                }
            )
            for txs, time in zip(blocks, times, strict=True):
                height = ledger.head.height + 1
                ctx = BlockContext(height, time, key.address)
                block = ledger.next_block(ctx, [tx.hash for tx in txs])
                state = State(ledger.view)
                signers = [v.validator for v in block.last_commit]
                records = execute_block(state, genesis.params, ctx, txs, signers)
                hash_ = block_hash(block)
                commit = (_precommit(key, genesis.chain_id, height, hash_),)
                head = ledger.commit_block(block, commit, records, state.write_set())
                assert head.hash == hash_
                jailed = [
                    address
                    for address in (R0, R1, R2, J)
                    if (node := get_node(ledger.view, address)) is not None and node.jailed
                ]
                out.append(
                    {
                        "height": height,
                        "time": time,
                        "txs": [wire.signed_tx_to_json(tx) for tx in txs],
                        "statuses": [status for _tx, status in records],
                        "hash": wire.hex0x(head.hash),
                        "appHash": wire.hex0x(head.app_hash),
                        "jailed": jailed,
                    }
                )
            tasks = {}
            for task_hash in sorted(
                tx.digest for txs in blocks for tx in txs if isinstance(tx.message, SubmitTask)
            ):
                task = ledger.get_task(task_hash)
                assert task is not None
                assert task.settlement is not None  # every task of the scenario is decided
                tasks[wire.hex0x(task_hash)] = {
                    "status": task.status.value,
                    "results": [int(entry.status) for entry in task.execution_info],
                    "slashed": [[s.address, s.reason] for s in task.settlement.slashed],
                }
        finally:
            ledger.close()
    return {
        "genesis": genesis_raw,
        "genesisHash": wire.hex0x(genesis.hash),
        "blocks": out,
        "tasks": tasks,
    }


def build_chain() -> dict[str, Any]:
    """The golden chain document, made from the scenario."""
    raw = genesis_document()
    genesis = parse_genesis(raw)
    scenario = _scenario(genesis.chain_id)
    blocks = [*scenario, *([] for _ in range(BLOCKS - len(scenario)))]
    times = [genesis.genesis_time + height for height in range(1, BLOCKS + 1)]
    return _run(raw, blocks, times)


def replay(document: dict[str, Any]) -> dict[str, Any]:
    """Execute the document's blocks from its signed transactions (each signature recovered
    and its digest and hash derived again) and return the document that gives."""
    raw = document["genesis"]
    genesis = parse_genesis(raw)
    blocks = []
    for record in document["blocks"][1:]:
        txs = []
        for item in record["txs"]:
            stored = wire.signed_tx_from_json(item)
            txs.append(crypto.verify_message(stored.message, genesis.chain_id, stored.signature))
        blocks.append(txs)
    times = [record["time"] for record in document["blocks"][1:]]
    return _run(raw, blocks, times)


def dumps(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {PATH}")
    args = parser.parse_args(argv)
    text = dumps(build_chain())
    if args.write:
        PATH.write_bytes(text)
        print(f"wrote {PATH}")
    else:
        print(text.decode(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
