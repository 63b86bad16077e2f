"""The golden chain: a fixed, seeded sequence of blocks through every transaction type and
every settlement path, with every block hash and appHash (`tests/vectors/chain.json`).

The chain is a one-validator dev chain with short deadlines and the PoS+W rules of PROTOCOL
4.5 to 4.8 and 4.13: verifiers assigned from the including block's hash, two per round, one
dispute opening the last round, forced errors at canaryRateBps 1000. Its blocks hold, in this
order: account transactions (transfer, stake, unstake, a resource node's registration and its
CommitSecrets), tasks that end verified, rejected, unverified and failed at their compute
deadline; a dispute settled by the last round, with a losing verdict slashed; a forced error
rejected after a dispute, revealed, its lazy verifier slashed and its catchers paid the canary
bonus; reveals that settle tasks; a result never revealed, slashed as wrong at its reveal
deadline, which jails its node below minNodeStake until a Stake releases it; results and
transactions that come too late and stay in their block as `late`; a task verified by two
results paid by rank; and AO's processes, messages, data items, a relay, a cron tick and a
terminate (PROTOCOL 8).

The verdicts depend on the assignment, which depends on the block hashes: the scenario is
written block by block, each block's verdicts chosen from the rounds the chain assigned in
the blocks before (`_scenario`). `build_chain()` makes the document from the scenario (every
signature is deterministic); `replay()` executes a document's blocks from its signed
transactions and returns what it found, so a test compares it with the document. Regenerate
the file, only when a change of the protocol is meant, with
`python -m tests.golden_chain --write`.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from chain.node.ledger import Ledger
from chain.protocol import ans104, ao, crypto, wire
from chain.protocol.blocks import context_of, execute_block
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
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    BlockContext,
    CommitSecrets,
    ExecutionInfo,
    Message,
    RegisterResourceNode,
    RevealSecret,
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
    reveal_deadline_blocks=3,
    verification_quorum=2,
    dispute_rounds=0,
    canary_rate_bps=1000,
)
OPTIONS = '{"model":"demo","temperature":0.7,"max_tokens":64}'
BLOCKS = 16  # past every deadline of the scenario, and a block after the AO terminate
# A salt in every prompt, the first that gives the scenario its forced error and no other
# (`find_salt`): which results are forced errors is a function of the task hashes.
SALT = 5


def _key(index: int) -> bytes:
    return crypto.dev_private_key(DEV_MNEMONIC, index)


def _address(index: int) -> str:
    return crypto.address_of_private_key(_key(index))


# Dev accounts 0 to 5, resource nodes R0 to R4 (accounts 200 to 204); account 3 registers
# as the resource node J with a stake just above minNodeStake, and commits its secrets in
# block 1.
A0, A1, A2, A3, A4, A5 = (_address(i) for i in range(6))
RESOURCE_NODES = [_address(RESOURCE_NODE_KEY_OFFSET + k) for k in range(5)]
R0, R1, R2, R3, R4 = RESOURCE_NODES
J = A3
J_BASE = 1  # the height of the block that includes J's CommitSecrets
KEYS = {_address(i): _key(i) for i in range(6)} | {
    _address(RESOURCE_NODE_KEY_OFFSET + k): _key(RESOURCE_NODE_KEY_OFFSET + k) for k in range(5)
}
NODES = [*RESOURCE_NODES, J]


def genesis_document() -> dict[str, Any]:
    return dev_genesis(chain_id=7331, params=PARAMS, resource_nodes=5)


@cache
def secret(node: str, height: int) -> bytes:
    """The node's secret of `height` (PROTOCOL 4.13): a dev chain of SECRET_CHAIN_LENGTH
    from the node's seed, committed at genesis (base 0), or at J_BASE for J."""
    base = J_BASE if node == J else 0
    seed = crypto.secrets_seed(KEYS[node], 0)
    return crypto.hash_steps(seed, crypto.SECRET_CHAIN_LENGTH - (height - base))


def forced(node: str, task: SignedTx, created: int) -> bool:
    return crypto.is_forced_error(secret(node, created), task.digest, PARAMS.canary_rate_bps)


def _task(sender: str, nonce: int, prompt: str, target_count: int, salt: int) -> SubmitTask:
    text = '{"prompt":"' + prompt + '","salt":' + str(salt) + "}"
    return SubmitTask(sender, nonce, "text", target_count, text, OPTIONS)


class _Tasks:
    """The scenario's tasks, signed, with the salt in their prompts."""

    def __init__(self, chain_id: int, salt: int) -> None:
        def sign(msg: SubmitTask) -> SignedTx:
            return crypto.sign_message(msg, chain_id, KEYS[msg.sender])

        self.verified = sign(_task(A0, 1, "verified", 1, salt))
        self.rejected = sign(_task(A0, 2, "rejected", 1, salt))
        self.unverified = sign(_task(A1, 0, "unverified", 1, salt))
        self.no_result = sign(_task(A1, 1, "no result", 2, salt))
        self.disputed = sign(_task(A4, 0, "disputed", 1, salt))
        self.canary = sign(_task(A5, 0, "canary", 1, salt))
        self.jailing = sign(_task(A4, 1, "jailing", 1, salt))  # in block 2
        self.by_rank = sign(_task(A5, 1, "two results", 2, salt))  # in block 5

    def canary_node(self) -> str | None:
        """The first of R2 to R4 whose result for `canary` is a forced error."""
        return next((n for n in (R2, R3, R4) if forced(n, self.canary, 1)), None)

    def fits(self) -> bool:
        """Whether the salt gives the scenario its one forced error and no other: every
        result meant to be honest is not a forced error."""
        honest = [
            (R0, self.verified, 1),
            (R0, self.rejected, 1),  # its junk is a plain wrong result, not a forced one
            (R1, self.unverified, 1),
            (R1, self.disputed, 1),
            (R0, self.by_rank, 5),
            (R1, self.by_rank, 5),
        ]
        return self.canary_node() is not None and not any(forced(*h) for h in honest)


def find_salt(chain_id: int = 7331) -> int:
    """The first salt whose tasks fit the scenario (see `_Tasks.fits`)."""
    salt = 0
    while not _Tasks(chain_id, salt).fits():
        salt += 1
    return salt


View = Callable[[SignedTx, str], ExecutionInfo]


def _scenario(chain_id: int, view: View) -> Iterator[list[SignedTx]]:
    """The transactions of blocks 1, 2, ... in order; `view(task, node)` reads that node's
    result in the committed state, for its assigned rounds."""

    def sign(msg: Message) -> SignedTx:
        return crypto.sign_message(msg, chain_id, KEYS[getattr(msg, msg.SIGNER)])

    t = _Tasks(chain_id, SALT)
    assert t.fits(), "SALT no longer fits the scenario: set it to find_salt()"
    canary_node = t.canary_node()
    assert canary_node is not None

    def result(task: SignedTx, node: str, text: str) -> SignedTx:
        return sign(SubmitInferenceResult(task.digest, node, text, "proof:" + text))

    def verdict(task: SignedTx, verifier: str, submitter: str, valid: bool) -> SignedTx:
        return sign(SubmitVerification(task.digest, verifier, submitter, valid))

    def rounds(task: SignedTx, submitter: str) -> list[list[str]]:
        return [list(members) for members in view(task, submitter).rounds]

    def round0(task: SignedTx, submitter: str) -> list[str]:
        """Round 0 of the result, J first: J is always the honest one of a pair (its stake,
        just above minNodeStake, is kept for its own result's slash)."""
        ((first, second),) = rounds(task, submitter)
        return [second, first] if second == J else [first, second]

    def reveal(node: str, height: int) -> SignedTx:
        return sign(RevealSecret(node, height, secret(node, height)))

    yield [  # block 1: account transactions, J's secrets and six tasks
        sign(Transfer(A0, 0, A1, 5 * AEGIS)),
        sign(Stake(A2, 0, 100 * AEGIS)),
        sign(Unstake(A2, 1, 40 * AEGIS)),
        sign(RegisterResourceNode(J, 0, "demo, other", "http://127.0.0.1:9199")),
        sign(Stake(J, 1, 1050 * AEGIS)),
        sign(CommitSecrets(J, 2, crypto.dev_secrets_head(KEYS[J]))),
        t.verified,
        t.rejected,
        t.unverified,
        t.no_result,
        t.disputed,
        t.canary,
    ]
    yield [  # block 2: results (the canary one a forced error: wrong on purpose); a task
        result(t.verified, R0, "the right answer"),
        result(t.rejected, R0, "junk"),
        result(t.unverified, R1, "nobody checks this"),
        result(t.disputed, R1, "a fine answer"),
        result(t.canary, canary_node, "wrong on purpose"),
        result(t.no_result, J, "too early"),  # late: J's secrets are not older than the task
        t.jailing,
    ]
    # block 3: verdicts of the assigned; a dispute on `disputed` (a liar) and on `canary`
    # (a lazy verifier), each opening the last round; J's junk; two late transactions
    txs = [verdict(t.verified, v, R0, True) for v in round0(t.verified, R0)]
    txs += [verdict(t.rejected, v, R0, False) for v in round0(t.rejected, R0)]
    honest_one, liar = round0(t.disputed, R1)
    txs += [verdict(t.disputed, honest_one, R1, True), verdict(t.disputed, liar, R1, False)]
    catcher, lazy = round0(t.canary, canary_node)
    txs += [
        verdict(t.canary, lazy, canary_node, True),
        verdict(t.canary, catcher, canary_node, False),
    ]
    txs += [
        result(t.jailing, J, "more junk"),
        sign(Unstake(J, 3, 500 * AEGIS)),  # late: the Unstake guard (J has open work)
        verdict(t.verified, round0(t.verified, R0)[0], R0, False),  # late: a second verdict
    ]
    yield txs
    # block 4: the last rounds of both disputes; the reveals of height 1; the compute
    # deadline of the block 1 tasks (rejected, canary, no result)
    (_round0, last) = rounds(t.disputed, R1)
    txs = [verdict(t.disputed, v, R1, True) for v in last]
    (_round0, last) = rounds(t.canary, canary_node)
    txs += [verdict(t.canary, v, canary_node, False) for v in last]
    txs += [verdict(t.jailing, v, J, False) for v in round0(t.jailing, J)]
    txs += [reveal(R0, 1), reveal(R1, 1), reveal(canary_node, 1)]
    yield txs
    yield [  # block 5: a result after its deadline: late; a task for two results
        result(t.no_result, R2, "too late"),
        t.by_rank,
    ]
    yield [  # block 6: two results for the task of block 5
        result(t.by_rank, R0, "first"),
        result(t.by_rank, R1, "second"),
    ]
    txs = [verdict(t.by_rank, v, R0, True) for v in round0(t.by_rank, R0)]
    txs += [verdict(t.by_rank, v, R1, True) for v in round0(t.by_rank, R1)]
    yield txs  # block 7: both verified; the verify deadline of `unverified` passes
    yield [reveal(R0, 5)]  # block 8: R0's secret of height 5, from height 1
    yield [reveal(R1, 8)]  # block 9: R1's, a later height than the task's: it covers it too
    yield []  # block 10
    yield []  # block 11: the reveal deadline of `jailing`: J's result, never revealed
    yield [sign(Stake(J, 3, 200 * AEGIS))]  # block 12: J stakes back above minNodeStake
    yield from _ao_scenario(sign)


AO_MODULE = "Handlers.add('ping', Handlers.utils.hasMatchingTag('Action', 'Ping'), print)"


def _ao_scenario(sign: Callable[[Message], SignedTx]) -> Iterator[list[SignedTx]]:
    """Blocks 13 to 15: AO (PROTOCOL 8): a spawn with a cron of one block, a message, a
    process, a module and a message as data items (dev account 4's, handed in by account 5),
    a relay by the process's scheduler, a spawn by module id, the cron tick of block 14, a
    terminate, and a message to the terminated process and a terminate by another than the
    owner, both late."""
    item_signer = ans104.EthereumSigner(_key(4))

    def item(**kw: Any) -> str:
        return wire.hex0x(ans104.serialize(ans104.create(signer=item_signer, **kw)))

    spawn = sign(
        AoSpawn(
            A0, 3, AO_MODULE, A0, 1 << 20, 10**6, "1-blocks", '[{"name":"Name","value":"p0"}]', "hi"
        )
    )
    p0 = ao.ao_id(spawn.signature)
    process_item = item(data=AO_MODULE.encode(), tags=[ans104.Tag("Type", "Process")])
    p1 = ans104.parse(wire.decode_bytes_field(process_item)).id
    module_item = item(data=AO_MODULE.encode(), tags=[ans104.Tag("Type", "Module")])
    module = ans104.parse(wire.decode_bytes_field(module_item)).id
    yield [  # block 13
        spawn,
        sign(AoMessage(A1, 2, p0, "ping", '[{"name":"Action","value":"Ping"}]', "")),
        sign(AoDataItem(A5, 2, process_item)),
        sign(AoDataItem(A5, 3, module_item)),
    ]
    to_p1 = item(data=b"hello", target=ao.id_bytes(p1), tags=[ans104.Tag("Type", "Message")])
    yield [  # block 14; the cron tick of p0 at its end
        sign(AoMessage(A0, 4, p0, "pong", "[]", p0)),
        sign(AoSpawn(A1, 3, module, A1, 1 << 20, 10**6, "", "[]", "")),
        sign(AoDataItem(A5, 4, to_p1)),
    ]
    yield [  # block 15
        sign(AoTerminate(A0, 5, p0)),
        sign(AoMessage(A1, 4, p0, "late", "[]", "")),  # late: p0 is terminated
        sign(AoTerminate(A1, 4, p1)),  # late: A1 is not p1's owner
    ]


def _precommit(key: ValidatorKey, chain_id: int, height: int, hash_: bytes) -> Any:
    return sign_vote(key, chain_id, VoteMsg(height, 0, "precommit", hash_, key.address))


def _run(
    genesis_raw: dict[str, Any],
    blocks_of: Callable[[View], Iterable[Sequence[SignedTx]]],
    times: Sequence[int],
) -> dict[str, Any]:
    """Execute the blocks `blocks_of` gives after the genesis of `genesis_raw` as the dev
    validator 0 commits them (each block signed by its precommit, carried by the next one
    as `lastCommit`), in a fresh LevelDB ledger: the golden chain document they make.
    `blocks_of` gets a view of the committed results, read between its blocks."""
    genesis = parse_genesis(genesis_raw)
    key = ValidatorKey.from_account_key(crypto.dev_private_key(DEV_MNEMONIC, 100))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp) / "ledger", genesis)

        def view(task: SignedTx, node: str) -> ExecutionInfo:
            stored = ledger.get_task(task.digest)
            assert stored is not None
            return next(e for e in stored.execution_info if e.resource_node == node)

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
            all_txs: list[SignedTx] = []
            for txs, time in zip(blocks_of(view), times, strict=True):
                all_txs.extend(txs)
                height = ledger.head.height + 1
                block = ledger.next_block(
                    BlockContext(height, time, key.address), [tx.hash for tx in txs]
                )
                ctx = context_of(block)  # the block's hash orders its results' verifiers
                state = State(ledger.view)
                signers = [v.validator for v in block.last_commit]
                records = execute_block(state, genesis.params, ctx, txs, signers)
                assert ctx.block_hash is not None
                commit = (_precommit(key, genesis.chain_id, height, ctx.block_hash),)
                head = ledger.commit_block(block, commit, records, state.write_set())
                assert head.hash == ctx.block_hash
                jailed = [
                    address
                    for address in NODES
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
                tx.digest for tx in all_txs if isinstance(tx.message, SubmitTask)
            ):
                task = ledger.get_task(task_hash)
                assert task is not None
                assert task.settlement is not None  # every task of the scenario is settled
                tasks[wire.hex0x(task_hash)] = {
                    "status": task.status.value,
                    "results": [int(entry.status) for entry in task.execution_info],
                    "rounds": [len(entry.rounds) for entry in task.execution_info],
                    "forcedErrors": [entry.forced_error for entry in task.execution_info],
                    "slashed": [[s.address, s.reason] for s in task.settlement.slashed],
                    "payouts": [[p.address, p.role] for p in task.settlement.payouts],
                }
            processes = {}
            view = ledger.view
            for index in range(ao.process_count(view)):
                pid = ao.process_at(view, index)
                assert pid is not None
                process = ao.get_process(view, pid)
                assert process is not None
                slots = [ao.get_slot(view, pid, slot) for slot in range(process["slots"])]
                processes[pid] = {
                    "terminated": process["terminated"],
                    "slots": [[s["id"], s["from"], s["cron"]] for s in slots if s is not None],
                }
        finally:
            ledger.close()
    return {
        "genesis": genesis_raw,
        "genesisHash": wire.hex0x(genesis.hash),
        "blocks": out,
        "tasks": tasks,
        "ao": processes,
    }


def build_chain() -> dict[str, Any]:
    """The golden chain document, made from the scenario."""
    raw = genesis_document()
    genesis = parse_genesis(raw)

    def blocks_of(view: View) -> Iterator[Sequence[SignedTx]]:
        count = 0
        for txs in _scenario(genesis.chain_id, view):
            count += 1
            yield txs
        for _ in range(BLOCKS - count):
            yield []

    times = [genesis.genesis_time + height for height in range(1, BLOCKS + 1)]
    return _run(raw, blocks_of, times)


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
    return _run(raw, lambda _view: blocks, times)


def dumps(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {PATH}")
    parser.add_argument("--find-salt", action="store_true", help="print the first salt that fits")
    args = parser.parse_args(argv)
    if args.find_salt:
        print(find_salt())
        return 0
    text = dumps(build_chain())
    if args.write:
        PATH.write_bytes(text)
        print(f"wrote {PATH}")
    else:
        print(text.decode(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
