"""The task lifecycle of PoS+W (PROTOCOL 4.1 to 4.8, 4.11) as pure functions over a State.

Results fill a task's slots in inclusion order; verdicts weigh stake for and against a result;
a decided result frees its slot (rejected) or counts (verified); a task is decided once no
result is undecided and no slot is open or its compute deadline has passed; deadlines are
kept in an index by height, so a block only touches the tasks due in it. Settlement pays by
rank, slashes, jails, refunds, mints and burns to the last base unit, and records how.

The rules work on typed values (`chain.protocol.types`: `ExecutionInfo` per result, `Verdict`,
`Settlement` with its `Payout`s and `Slash`es, `TaskStatus`, `ResultStatus`);
`chain.protocol.state` encodes them to the stored JSON.

Twins: most rules here have a reference model in tests/property/test_settlement_machine.py
(class `Reference`, which re-implements PROTOCOL 4 over plain values) and a section in
docs/PROTOCOL.md; each rule's docstring names its own. A change of a rule changes them too,
and the appHashes of the golden chain (tests/vectors/chain.json).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from chain.protocol import crypto, wire
from chain.protocol.accounts import check_nonce
from chain.protocol.errors import (
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    NotEligible,
    TaskClosed,
    UnknownTask,
)
from chain.protocol.genesis import Params
from chain.protocol.state import (
    Reader,
    State,
    add_awaiting,
    add_busy,
    add_due,
    add_to_assign,
    clear_due,
    clear_to_assign,
    credit,
    get_account,
    get_awaiting,
    get_busy,
    get_due,
    get_node,
    get_node_list,
    get_open_task,
    get_supply,
    get_task,
    get_to_assign,
    put_account,
    put_awaiting,
    put_node,
    put_supply,
    update_task,
)
from chain.protocol.types import (
    FINAL_STATUSES,
    UNDECIDED,
    ZERO_HASH,
    Account,
    BlockContext,
    CommitSecrets,
    ExecutionInfo,
    Payout,
    PayoutRole,
    ResourceNodeInfo,
    ResultStatus,
    RevealSecret,
    Secrets,
    Settlement,
    SignedTx,
    Slash,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Task,
    TaskStatus,
    Verdict,
)

BPS = 10_000
# A reveal may walk at most this many heights past the node's last revealed secret (PROTOCOL
# 4.12): a bound on the hashing one transaction can ask of a validator (about 9 ms).
MAX_REVEAL_STEPS = 4096


# Submission (PROTOCOL 4.1, 4.2)


MODEL_OPTION_RANGES: dict[str, tuple[float, float, type]] = {
    "temperature": (0.0, 2.0, float),
    "top_p": (0.0, 1.0, float),
    "max_tokens": (1, 8192, int),
}


def task_fee(params: Params, target_count: int) -> int:
    """taskBaseFee + taskFeePerNode * targetCount (PROTOCOL 4.1).

    Twins: `Model.fee` in tests/property/test_accounts_machine.py and the fee of
    `Reference.submit_task` in tests/property/test_settlement_machine.py."""
    return params.task_base_fee + params.task_fee_per_node * target_count


def parse_json_object(text: str, param: str) -> dict[str, Any] | None:
    """The JSON object a bytes field holds; None when it holds something else.

    A field that starts like an object (`{`) but is not valid JSON (RFC 8259: no NaN, no
    Infinity, nesting at most 1024 deep) is refused rather than taken as opaque bytes: it is
    almost certainly a mistake, and nodes would read it differently.
    """
    raw = wire.decode_bytes_field(text)
    if not raw.lstrip().startswith(b"{"):
        return None  # not an object, whatever else it may be (and no parse error to build)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = f"starts like a JSON object but is not valid JSON: {exc}"
        raise InvalidParams(param, reason) from exc
    return value if isinstance(value, dict) else None


def validate_model_options(text: str) -> str | None:
    """Check JSON modelOptions (PROTOCOL 4.2) and return the model it names, if any."""
    options = parse_json_object(text, "modelOptions")
    if options is None:
        return None
    for key, (low, high, kind) in MODEL_OPTION_RANGES.items():
        if key not in options:
            continue
        value = options[key]
        param = f"modelOptions.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParams(param, f"expected a number, got {type(value).__name__}")
        if kind is int and not isinstance(value, int):
            raise InvalidParams(param, "expected an integer")
        if not low <= value <= high:
            raise InvalidParams(param, f"must be between {low} and {high}")
    model = options.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidParams("modelOptions.model", "expected a string")
    return model


def max_fee_of(text: str) -> int | None:
    fee_params = parse_json_object(text, "feeParams")
    if fee_params is None or "maxFee" not in fee_params:
        return None
    return wire.parse_uint(fee_params["maxFee"], "feeParams.maxFee")


def apply_submit_task(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: SubmitTask
) -> None:
    """A SubmitTask (PROTOCOL 4.1): the fee moves from the sender's balance to the escrow.

    Twins: `Model.submit_task` in tests/property/test_accounts_machine.py (the order of the
    checks), `Reference.submit_task` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.1 must change with it; it keeps the supply invariant of PROTOCOL 4.10 (the
    escrow counts until the settlement)."""
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    if not 1 <= msg.target_count <= params.max_target_count:
        raise InvalidParams("targetCount", f"must be between 1 and {params.max_target_count}")
    model = validate_model_options(msg.model_options)
    fee = task_fee(params, msg.target_count)
    max_fee = max_fee_of(msg.fee_params)
    if max_fee is not None and fee > max_fee:
        raise InvalidParams("feeParams.maxFee", f"the fee {fee} exceeds maxFee {max_fee}")
    if get_task(state, tx.digest) is not None:
        raise DuplicateSubmission(wire.hex0x(tx.hash), "this task exists already")
    if account.balance < fee:
        raise InsufficientBalance(msg.sender, fee, account.balance)
    put_account(state, msg.sender, Account(account.balance - fee, account.stake, account.nonce + 1))
    task = new_task(tx, fee, model, ctx)
    update_task(state, task, None)  # new: get_task found no task under this hash
    schedule_deadlines(state, params, task)


def new_task(tx: SignedTx, fee: int, model: str | None, ctx: BlockContext | None) -> Task:
    """The task a SubmitTask creates; without a block context it is still in the mempool."""
    msg = tx.message
    assert isinstance(msg, SubmitTask)
    return Task(
        task_hash=tx.digest,
        tx_hash=tx.hash,
        sender=msg.sender,
        nonce=msg.nonce,
        schema=msg.schema,
        target_count=msg.target_count,
        prompts=msg.prompts,
        model_options=msg.model_options,
        sid=msg.sid,
        fee_params=msg.fee_params,
        fee=fee,
        model=model,
        created_height=None if ctx is None else ctx.height,
        created_at=None if ctx is None else ctx.time,
    )


def pending_task(params: Params, tx: SignedTx) -> Task:
    """The task of a SubmitTask still in the mempool: `submitted`, with no block yet."""
    msg = tx.message
    assert isinstance(msg, SubmitTask)
    fee = task_fee(params, msg.target_count)
    return new_task(tx, fee, validate_model_options(msg.model_options), None)


# Deadlines, slots and eligibility


def compute_deadline(params: Params, task: Task) -> int:
    """The last height at which the task takes results (PROTOCOL 4.3).

    Twins: `Reference.compute_deadline` in tests/property/test_settlement_machine.py."""
    assert task.created_height is not None
    return task.created_height + params.compute_deadline_blocks


def verify_deadline(params: Params, task: Task) -> int:
    """The last height at which the task's results take verdicts (PROTOCOL 4.5).

    Twins: `Reference.verify_deadline` in tests/property/test_settlement_machine.py."""
    return compute_deadline(params, task) + params.verify_deadline_blocks


def reveal_deadline(params: Params, task: Task) -> int:
    """The last height at which the task waits for its submitters' secrets (PROTOCOL 4.13)."""
    return verify_deadline(params, task) + params.reveal_deadline_blocks


def schedule_deadlines(state: State, params: Params, task: Task) -> None:
    heights = [compute_deadline(params, task), verify_deadline(params, task)]
    if params.canary_rate_bps:
        heights.append(reveal_deadline(params, task))
    for height in dict.fromkeys(heights):
        add_due(state, height, task.task_hash)


def open_slots(task: Task) -> int:
    """Slots not taken by a result; a rejected result frees its slot (PROTOCOL 4.3).

    Twins: `MTask.open_slots` in tests/property/test_settlement_machine.py."""
    return task.target_count - _taken(task.execution_info)


def _taken(entries: tuple[ExecutionInfo, ...]) -> int:
    return sum(1 for e in entries if e.status != ResultStatus.REJECTED)


def standing_problem(node: ResourceNodeInfo | None, stake: int, params: Params) -> str | None:
    """Why a node may not compute or verify at all (PROTOCOL 4.2), or None.

    Twins: `Reference.standing` in tests/property/test_settlement_machine.py."""
    if node is None:
        return "not a registered resource node"
    if node.jailed:
        return "the node is jailed"
    if stake < params.min_node_stake:
        return f"stake {stake} is below minNodeStake {params.min_node_stake}"
    return None


def check_eligible(
    state: State, params: Params, address: str, model: str | None
) -> ResourceNodeInfo:
    """An eligible node: registered, staked, not jailed, and serving the task's model (4.2);
    its record.

    Twins: `Reference.eligible` in tests/property/test_settlement_machine.py."""
    node = get_node(state, address)
    reason = standing_problem(node, get_account(state, address).stake, params)
    if reason is None and node is not None and not node.serves(model):
        reason = f"the node does not serve the model {model!r}"
    if reason is not None or node is None:
        raise NotEligible(address, reason or "not a registered resource node")
    return node


def secrets_problem(node: ResourceNodeInfo, params: Params, task: Task) -> str | None:
    """Why a node may not compute this task for want of secrets (PROTOCOL 4.13), or None."""
    if not params.canary_rate_bps:
        return None
    secrets = node.secrets
    assert task.created_height is not None
    if secrets is None or secrets.base >= task.created_height:
        return "no secrets committed before the task"
    if secrets.revealed_height >= task.created_height:
        return "the secret of the task's height is revealed already"
    return None


def _with_results(task: Task, entries: tuple[ExecutionInfo, ...]) -> Task:
    """The open task with these result entries, and the status they give it (PROTOCOL 4.3).

    Twins: `Reference.refresh_status` in tests/property/test_settlement_machine.py."""
    status = TaskStatus.SUBMITTED
    if entries:
        more = task.target_count > _taken(entries)
        status = TaskStatus.PROCESSING if more else TaskStatus.COMPLETED
    return task.with_results(entries, status)


def _known_task(state: State, task_hash: bytes) -> Task:
    task = get_task(state, task_hash)
    if task is None:
        raise UnknownTask(wire.hex0x(task_hash))
    return task


# Results


def apply_result(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: SubmitInferenceResult
) -> None:
    """A SubmitInferenceResult: the result takes the next rank (PROTOCOL 4.3).

    Twins: `Reference.result` in tests/property/test_settlement_machine.py and PROTOCOL 4.3
    (the order of its checks) must change with it."""
    task = _known_task(state, msg.task_hash)
    node = check_eligible(state, params, msg.resource_node, task.model)
    reason = secrets_problem(node, params, task)
    if reason is not None:
        raise NotEligible(msg.resource_node, reason)
    if any(e.resource_node == msg.resource_node for e in task.execution_info):
        raise DuplicateSubmission(wire.hex0x(tx.hash), "this node already answered this task")
    task_hex = wire.hex0x(task.task_hash)
    if task.status in FINAL_STATUSES:
        raise TaskClosed(task_hex, f"the task is {task.status}")
    if ctx.height > compute_deadline(params, task):
        raise TaskClosed(task_hex, "the compute deadline has passed")
    if open_slots(task) == 0:
        raise TaskClosed(task_hex, "every slot of the task is taken")
    seed = crypto.task_seed(task.task_hash, msg.resource_node)
    rank = len(task.execution_info) + 1
    entry = ExecutionInfo(
        rank, msg.resource_node, msg.result, msg.proof, seed, wire.hex0x(tx.hash), ctx.height
    )
    add_busy(state, msg.resource_node, 1)
    add_to_assign(state, task.task_hash, msg.resource_node)
    add_awaiting(state, msg.resource_node, task.task_hash)
    stored_status = task.status
    task = _with_results(task, (*task.execution_info, entry))
    task = maybe_decide_task(state, params, ctx, task, compute_closed=False)
    update_task(state, task, stored_status)


# Verdicts


def apply_verification(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: SubmitVerification
) -> None:
    """A SubmitVerification: the verdict takes the next `seq`, the result is weighed (4.5, 4.6).

    Twins: `Reference.verdict` in tests/property/test_settlement_machine.py and PROTOCOL 4.5
    (the order of its checks) must change with it."""
    task = _known_task(state, msg.task_hash)
    if msg.verifier == msg.submitter:
        raise NotEligible(msg.verifier, "a node cannot verify its own result")
    check_eligible(state, params, msg.verifier, task.model)
    index = next(
        (i for i, e in enumerate(task.execution_info) if e.resource_node == msg.submitter), None
    )
    if index is None:
        raise InvalidParams("submitter", f"{msg.submitter} has no result in this task")
    entry = task.execution_info[index]
    if msg.verifier not in entry.assigned():
        raise NotEligible(msg.verifier, "not assigned")
    if any(v.verifier == msg.verifier for v in entry.verifications):
        raise DuplicateSubmission(wire.hex0x(tx.hash), "this node already gave a verdict here")
    task_hex = wire.hex0x(task.task_hash)
    if entry.status not in UNDECIDED:
        raise TaskClosed(task_hex, "the result is decided already")
    if ctx.height > verify_deadline(params, task):
        raise TaskClosed(task_hex, "the verify deadline has passed")
    seq = 1 + sum(len(e.verifications) for e in task.execution_info)
    verdict = Verdict(msg.verifier, msg.valid, wire.hex0x(tx.hash), ctx.height, seq)
    entry = entry.with_verdict(verdict)
    add_busy(state, msg.verifier, 1)
    entry = decide_result(state, params, ctx, task, entry, at_deadline=False)
    entries = list(task.execution_info)
    entries[index] = entry
    stored_status = task.status
    task = _with_results(task, tuple(entries))
    closed = ctx.height > compute_deadline(params, task)
    task = maybe_decide_task(state, params, ctx, task, compute_closed=closed)
    update_task(state, task, stored_status)


def _stakes(state: State, entry: ExecutionInfo, among: frozenset[str]) -> tuple[int, int]:
    """(valid, invalid): the stake behind each side among the verdicts of `among` (4.6)."""
    stake_valid = stake_invalid = 0
    for verdict in entry.verifications:
        if verdict.verifier not in among:
            continue
        stake = get_account(state, verdict.verifier).stake
        if verdict.valid:
            stake_valid += stake
        else:
            stake_invalid += stake
    return stake_valid, stake_invalid


def _over_two_thirds(stake_valid: int, stake_invalid: int, total: int) -> ResultStatus | None:
    if 3 * stake_valid > 2 * total:
        return ResultStatus.VERIFIED
    if 3 * stake_invalid > 2 * total:
        return ResultStatus.REJECTED
    return None


def _deadline_outcome(state: State, entry: ExecutionInfo, answered: frozenset[str]) -> ResultStatus:
    """At the verify deadline (PROTOCOL 4.6): the side with more than half of the answers and
    more than half of their stake; else unverified (a tie, no answer, or a split majority)."""
    stake_valid, stake_invalid = _stakes(state, entry, answered)
    count_valid = sum(1 for v in entry.verifications if v.valid)
    count_invalid = len(entry.verifications) - count_valid
    if stake_valid > stake_invalid and count_valid > count_invalid:
        return ResultStatus.VERIFIED
    if stake_invalid > stake_valid and count_invalid > count_valid:
        return ResultStatus.REJECTED
    return ResultStatus.UNVERIFIED


def decide_result(
    state: State,
    params: Params,
    ctx: BlockContext,
    task: Task,
    entry: ExecutionInfo,
    *,
    at_deadline: bool,
) -> ExecutionInfo:
    """Decide an undecided result if the rule allows, opening dispute rounds on the way;
    returns the (possibly) updated entry.

    Twins: `Reference.decide` in tests/property/test_settlement_machine.py and PROTOCOL 4.6
    (rounds, the last round's stake, the verify deadline) must change with it."""
    if entry.status not in UNDECIDED:
        return entry
    answered = frozenset(v.verifier for v in entry.verifications)
    if at_deadline:
        return entry.decided(_deadline_outcome(state, entry, answered), ctx.height)
    while entry.rounds:
        if not is_last_round(params, entry):
            members = entry.rounds[-1]
            votes = {v.verifier: v.valid for v in entry.verifications if v.verifier in members}
            if len(set(votes.values())) > 1:  # a dispute: call the next round at once
                entry = open_round(state, params, task, entry)
                continue
            if not votes or len(votes) < len(members):
                return entry  # the round waits for its members
            # The round agrees; it decides if its side also holds more than 2/3 of the stake
            # of every verdict given (earlier rounds' dissent included), else more are called.
            stake_valid, stake_invalid = _stakes(state, entry, answered)
            outcome = _over_two_thirds(stake_valid, stake_invalid, stake_valid + stake_invalid)
            agreed = ResultStatus.VERIFIED if next(iter(votes.values())) else ResultStatus.REJECTED
            if outcome == agreed:
                return entry.decided(outcome, ctx.height)
            entry = open_round(state, params, task, entry)
            continue
        assigned = entry.assigned()
        total = sum(get_account(state, address).stake for address in assigned)
        outcome = _over_two_thirds(*_stakes(state, entry, assigned), total)
        return entry if outcome is None else entry.decided(outcome, ctx.height)
    return entry  # not assigned yet: its block has not ended


# Assigned verifiers (PROTOCOL 4.5)


def verifier_order(
    block_hash: bytes, task_hash: bytes, submitter: str, candidates: list[str]
) -> list[str]:
    """The candidates in the order keccak256(blockHash || taskHash || submitter || node).

    Twins: the order of `Reference.assign` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.5 must change with it."""
    prefix = block_hash + task_hash + bytes.fromhex(submitter[2:])
    return sorted(candidates, key=lambda node: crypto.keccak(prefix + bytes.fromhex(node[2:])))


def _candidates(state: State, params: Params, task: Task, entry: ExecutionInfo) -> list[str]:
    """The nodes eligible for the task now, other than the submitter and those assigned, in
    the result's order."""
    taken = entry.assigned() | {entry.resource_node}
    eligible = []
    for address in get_node_list(state):
        if address in taken:
            continue
        node = get_node(state, address)
        if node is None or not node.serves(task.model):
            continue
        if standing_problem(node, get_account(state, address).stake, params) is None:
            eligible.append(address)
    assert entry.assignment_seed is not None
    return verifier_order(entry.assignment_seed, task.task_hash, entry.resource_node, eligible)


def is_last_round(params: Params, entry: ExecutionInfo) -> bool:
    """Whether the rounds opened include every candidate: round disputeRounds + 1, or an
    earlier one after which none was left (PROTOCOL 4.5)."""
    return entry.assignment_complete or len(entry.rounds) > params.dispute_rounds + 1


def open_round(state: State, params: Params, task: Task, entry: ExecutionInfo) -> ExecutionInfo:
    """The entry with its next round of verifiers (all that are left for the last round); the
    rounds are complete once no candidate is left after them."""
    order = _candidates(state, params, task, entry)
    last = len(entry.rounds) == params.dispute_rounds + 1
    members = order if last else order[: params.verification_quorum]
    complete = last or len(order) <= params.verification_quorum
    rounds = (*entry.rounds, tuple(members)) if members or not entry.rounds else entry.rounds
    return replace(entry, rounds=rounds, assignment_complete=complete)


def assign_verifiers(state: State, params: Params, ctx: BlockContext) -> None:
    """End of block: round 0 of every result the block included, ordered by its hash (4.5).

    Twins: `Reference.assign` in tests/property/test_settlement_machine.py."""
    pending = get_to_assign(state)
    if not pending:
        return
    for task_hash, submitter in pending:
        task = get_open_task(state, task_hash)
        if task is None:
            continue
        index = next(i for i, e in enumerate(task.execution_info) if e.resource_node == submitter)
        entry = replace(task.execution_info[index], assignment_seed=ctx.block_hash)
        entries = list(task.execution_info)
        entries[index] = open_round(state, params, task, entry)
        update_task(state, task.with_results(tuple(entries), task.status), task.status)
    clear_to_assign(state)


# Deciding the task


def maybe_decide_task(
    state: State,
    params: Params,
    ctx: BlockContext,
    task: Task,
    *,
    compute_closed: bool,
    reveal_closed: bool = False,
) -> Task:
    """Settle the task once nothing is undecided, no result can come and every decided
    result is revealed, or at its reveal deadline (PROTOCOL 4.7).

    Twins: `Reference.maybe_settle` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.7 must change with it."""
    if task.status in FINAL_STATUSES:
        return task
    if any(e.status in UNDECIDED for e in task.execution_info):
        return task
    if open_slots(task) > 0 and not compute_closed:
        return task
    if (
        params.canary_rate_bps
        and not reveal_closed
        and any(_unrevealed(e) for e in task.execution_info)
    ):
        return task
    return settle(state, params, ctx, task)


def _unrevealed(entry: ExecutionInfo) -> bool:
    """A result no longer undecided, the unverified included (a forced error judged 1 against
    1 still catches its lazy verdict), whose submitter has not revealed its secret (4.13)."""
    return entry.status not in UNDECIDED and entry.forced_error is None


def process_deadlines(state: State, params: Params, ctx: BlockContext) -> None:
    """End of block: the tasks whose compute, verify or reveal deadline is this height
    (4.6, 4.7).

    Twins: `Reference.end_block` in tests/property/test_settlement_machine.py (the tasks due,
    in creation order) and PROTOCOL 4.6 and 4.7 must change with it."""
    due = get_due(state, ctx.height)
    if not due:
        return
    for task_hash in due:
        task = get_open_task(state, task_hash)
        if task is None:
            continue  # settled already (a task is due at each of its deadlines)
        stored_status = task.status
        if ctx.height >= verify_deadline(params, task):
            entries = tuple(
                decide_result(state, params, ctx, task, e, at_deadline=True)
                for e in task.execution_info
            )
            task = _with_results(task, entries)
        reveal_closed = ctx.height >= reveal_deadline(params, task)
        task = maybe_decide_task(
            state, params, ctx, task, compute_closed=True, reveal_closed=reveal_closed
        )
        update_task(state, task, stored_status)
    clear_due(state, ctx.height)


# Secrets and forced errors (PROTOCOL 4.13)


def _known_forced_error(params: Params, task: Task, secrets: Secrets) -> bool | None:
    """Whether the node's result in `task` is a forced error, when the secret of the task's
    height is revealed already; None otherwise."""
    height = task.created_height
    assert height is not None
    if not secrets.base < height <= secrets.revealed_height:
        return None
    secret = crypto.hash_steps(secrets.revealed, secrets.revealed_height - height)
    return crypto.is_forced_error(secret, task.task_hash, params.canary_rate_bps)


def apply_commit_secrets(state: State, ctx: BlockContext, msg: CommitSecrets) -> None:
    """A CommitSecrets (PROTOCOL 4.12): the node's chain of secrets starts at this block.

    Twins: `Reference.commit_secrets` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.12 must change with it."""
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    if msg.head == ZERO_HASH:
        raise InvalidParams("head", "the zero hash cannot head a chain of secrets")
    node = get_node(state, msg.sender)
    if node is None:
        raise NotEligible(msg.sender, "not a registered resource node")
    if get_busy(state, msg.sender):
        raise NotEligible(msg.sender, "the node has results or verdicts in unsettled tasks")
    secrets = Secrets(msg.head, ctx.height, ctx.height, msg.head)
    put_node(state, msg.sender, replace(node, secrets=secrets))
    put_account(state, msg.sender, Account(account.balance, account.stake, account.nonce + 1))


def apply_reveal(state: State, params: Params, ctx: BlockContext, msg: RevealSecret) -> None:
    """A RevealSecret (PROTOCOL 4.13, 4.12): the secret of `height`, checked against the last
    one revealed; the node's results in tasks created up to it learn whether they were
    forced errors, and their tasks are settled when nothing else is missing.

    Twins: `Reference.reveal` in tests/property/test_settlement_machine.py and PROTOCOL 4.12
    must change with it."""
    address = msg.resource_node
    node = get_node(state, address)
    if node is None:
        raise NotEligible(address, "not a registered resource node")
    secrets = node.secrets
    if secrets is None:
        raise NotEligible(address, "no secrets committed")
    last = secrets.revealed_height
    if msg.height <= last:
        raise InvalidParams("height", f"the secrets up to height {last} are revealed already")
    if msg.height > ctx.height:
        raise InvalidParams("height", f"beyond the current height {ctx.height}")
    if msg.height - last > MAX_REVEAL_STEPS:
        raise InvalidParams(
            "height", f"more than {MAX_REVEAL_STEPS} heights past the last revealed, {last}"
        )
    if crypto.hash_steps(msg.secret, msg.height - last) != secrets.revealed:
        raise InvalidParams("secret", f"does not hash to the secret revealed at height {last}")
    revealed = replace(secrets, revealed_height=msg.height, revealed=msg.secret)
    put_node(state, address, replace(node, secrets=revealed))
    waiting = []
    for task_hash in get_awaiting(state, address):
        task = get_open_task(state, task_hash)
        if task is None:
            continue  # settled since
        waiting.append(task_hash)
        if not params.canary_rate_bps:
            continue
        index = next(i for i, e in enumerate(task.execution_info) if e.resource_node == address)
        entry = task.execution_info[index]
        if entry.forced_error is not None:
            continue
        forced = _known_forced_error(params, task, revealed)
        if forced is None:
            continue
        entries = list(task.execution_info)
        entries[index] = replace(entry, forced_error=forced)
        stored_status = task.status
        task = task.with_results(tuple(entries), task.status)
        closed = ctx.height > compute_deadline(params, task)
        task = maybe_decide_task(state, params, ctx, task, compute_closed=closed)
        update_task(state, task, stored_status)
        if task.status in FINAL_STATUSES:
            waiting.pop()
    put_awaiting(state, address, waiting)


# Settlement (PROTOCOL 4.8)


def rank_weights(count: int, decay_bps: int) -> list[int]:
    """w1 = 10000, w(i+1) = w(i) * (10000 - rankDecayBps) // 10000 (PROTOCOL 4.8 step 4).

    Twins: `Reference.weights` in tests/property/test_settlement_machine.py and `rank_weights`
    in tests/rpc/test_lifecycle.py must change with it."""
    weights = [BPS] if count else []
    while len(weights) < count:
        weights.append(weights[-1] * (BPS - decay_bps) // BPS)
    return weights


def split_by_rank(pool: int, recipients: list[str], decay_bps: int) -> list[int]:
    """share_i = pool * w_i // sum(w), in rank order; nothing when there is no recipient.

    Twins: `Reference.shares` in tests/property/test_settlement_machine.py and PROTOCOL 4.8
    step 5 must change with it."""
    weights = rank_weights(len(recipients), decay_bps)
    total = sum(weights)
    return [pool * w // total for w in weights] if total else []


def _slash(state: State, address: str, bps: int) -> int:
    account = get_account(state, address)
    amount = account.stake * bps // BPS
    if amount:
        put_account(state, address, Account(account.balance, account.stake - amount, account.nonce))
    return amount


def _jail_if_below_minimum(state: State, params: Params, address: str) -> None:
    node = get_node(state, address)
    below = get_account(state, address).stake < params.min_node_stake
    if node is not None and not node.jailed and below:
        put_node(state, address, replace(node, jailed=True))


ResultKind = Literal["valid", "wrong", "forced", "unrevealed", "unverified"]  # PROTOCOL 4.8


def result_kind(params: Params, entry: ExecutionInfo) -> ResultKind:
    """What a decided result counts as at settlement (PROTOCOL 4.8): a result not revealed by
    the reveal deadline, a forced error (whatever its status), valid (verified), wrong
    (rejected) or unverified."""
    if params.canary_rate_bps:
        if entry.forced_error is None:
            return "unrevealed"
        if entry.forced_error:
            return "forced"
    if entry.status == ResultStatus.VERIFIED:
        return "valid"
    return "wrong" if entry.status == ResultStatus.REJECTED else "unverified"


# For each kind of result: whether its submitter is slashed, and which verdict wins (None:
# its verdicts are on no side).
_SUBMITTER_SLASHED: frozenset[ResultKind] = frozenset({"wrong", "unrevealed"})
_WINNING_VERDICT: dict[ResultKind, bool | None] = {
    "valid": True,
    "wrong": False,
    "forced": False,
    "unrevealed": None,
    "unverified": None,
}


def _slash_losers(
    state: State, params: Params, results: list[ExecutionInfo]
) -> tuple[list[Slash], list[tuple[int, str]], list[tuple[int, str]]]:
    """Slash wrong results and losing verdicts, jail who falls below minNodeStake: (the
    slashes, the winning verdicts as (seq, verifier), the verdicts that caught a forced
    error as (seq, verifier)).

    Twins: the slashes and jailing of `Reference.settle` and `Reference.slash` in
    tests/property/test_settlement_machine.py and PROTOCOL 4.8 step 2 must change with it;
    what it takes stays in the supply (PROTOCOL 4.10) through poolV."""
    slashed: list[Slash] = []
    winners: list[tuple[int, str]] = []
    catchers: list[tuple[int, str]] = []
    for entry in results:
        kind = result_kind(params, entry)
        winning = _WINNING_VERDICT[kind]
        if kind in _SUBMITTER_SLASHED and params.slashing:
            address = entry.resource_node
            amount = _slash(state, address, params.result_slash_bps)
            slashed.append(Slash(address, amount, "result"))
        if winning is None:
            continue
        for verdict in entry.verifications:
            if verdict.valid == winning:
                winners.append((verdict.seq, verdict.verifier))
                if kind == "forced":
                    catchers.append((verdict.seq, verdict.verifier))
            elif params.slashing:
                address = verdict.verifier
                amount = _slash(state, address, params.verifier_slash_bps)
                slashed.append(Slash(address, amount, "lazy" if kind == "forced" else "verdict"))
    for address in dict.fromkeys(s.address for s in slashed):
        _jail_if_below_minimum(state, params, address)
    return slashed, winners, catchers


def _pay_by_rank(
    state: State, pool: int, recipients: list[str], decay_bps: int, role: PayoutRole
) -> tuple[int, list[Payout]]:
    """Credit `pool` split by rank among `recipients`: (paid, the payout records).

    Twins: the payouts of `Reference.settle` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.8 step 5 must change with it."""
    if not recipients:
        return 0, []
    payouts = []
    paid = 0
    for rank, (address, amount) in enumerate(
        zip(recipients, split_by_rank(pool, recipients, decay_bps), strict=True), 1
    ):
        if amount:
            credit(state, address, amount)
        paid += amount
        payouts.append(Payout(address, amount, role, rank))
    return paid, payouts


def settle(state: State, params: Params, ctx: BlockContext, task: Task) -> Task:
    """Pay, slash, jail, refund, mint and burn for a decided task; returns the final task.

    Twins: `Reference.settle` in tests/property/test_settlement_machine.py, PROTOCOL 4.7 (the
    final status, response and verificationCount) and 4.8 must change with it, and so do the
    settlements written out by hand in tests/unit/test_tasks.py and tests/rpc/test_lifecycle.py.
    It keeps the supply invariant of PROTOCOL 4.10: the escrowed fee, the reward and the
    slashes go out as payouts, refund and burn to the last base unit, and the supply counters
    record what is minted and burned."""
    results = sorted(task.execution_info, key=lambda e: e.rank)
    for entry in results:  # the Unstake guard holds until here, so no slash can be escaped
        add_busy(state, entry.resource_node, -1)
        for verdict in entry.verifications:
            add_busy(state, verdict.verifier, -1)
    _stop_awaiting(state, task)
    valid = [e for e in results if result_kind(params, e) == "valid"]
    fee = task.fee
    reward = params.network_reward_per_task if valid else 0
    slashed, winners, catchers = _slash_losers(state, params, results) if results else ([], [], [])
    total_slashed = sum(s.amount for s in slashed)

    pool_compute = (fee + reward) * params.compute_share_bps // BPS
    pool_verify = fee + reward - pool_compute + total_slashed
    computers = [e.resource_node for e in valid]
    verifiers = [address for _seq, address in sorted(winners)]
    decay = params.rank_decay_bps
    paid_compute, compute_payouts = _pay_by_rank(state, pool_compute, computers, decay, "compute")
    paid_verify, verify_payouts = _pay_by_rank(state, pool_verify, verifiers, decay, "verify")

    # What is not paid out goes back to where it came from, pool by pool, pro rata to the
    # pool's sources: fee -> refunded, reward -> not minted, slashes -> burned.
    unpaid_compute = pool_compute - paid_compute
    unpaid_verify = pool_verify - paid_verify
    burned = unpaid_verify * total_slashed // pool_verify if pool_verify else 0
    from_fee_and_reward = unpaid_compute + unpaid_verify - burned
    unminted = from_fee_and_reward * reward // (fee + reward) if fee + reward else 0
    refund = from_fee_and_reward - unminted
    if refund:
        credit(state, task.sender, refund)
    canary_payouts = []
    for rank, (_seq, address) in enumerate(sorted(catchers), 1):
        if params.canary_bonus:
            credit(state, address, params.canary_bonus)
        canary_payouts.append(Payout(address, params.canary_bonus, "canary", rank))
    bonuses = params.canary_bonus * len(canary_payouts)
    minted_here = reward - unminted + bonuses
    genesis_supply, minted, burned_before = get_supply(state)
    put_supply(state, genesis_supply, minted + minted_here, burned_before + burned)

    response = valid[0] if valid else None
    settlement = Settlement(
        height=ctx.height,
        fee=fee,
        network_reward=minted_here,
        slashed=tuple(slashed),
        payouts=(*compute_payouts, *verify_payouts, *canary_payouts),
        refund=refund,
        burned=burned,
    )
    return replace(
        task,
        status=TaskStatus.FAILED if response is None else TaskStatus.VERIFIED,
        response=None if response is None else response.result,
        verification_count=0
        if response is None
        else sum(1 for v in response.verifications if v.valid),
        finished_height=ctx.height,
        finished_at=ctx.time,
        settlement=settlement,
    )


def _stop_awaiting(state: State, task: Task) -> None:
    """A settled task waits on nobody's secrets any more."""
    for address in dict.fromkeys(e.resource_node for e in task.execution_info):
        waiting = get_awaiting(state, address)
        if task.task_hash in waiting:
            waiting.remove(task.task_hash)
            put_awaiting(state, address, waiting)


# The work open for one node (queryPendingTasks, PROTOCOL 5.1)


@dataclass(frozen=True, slots=True)
class Work:
    """What one node may do in one open task (queryPendingTasks, PROTOCOL 5.1): compute it,
    verify the results it is assigned to, reveal the secret its decided result waits for."""

    task: Task
    compute: bool
    verify: list[ExecutionInfo]
    reveal: bool


def pending_work(
    state: Reader,
    params: Params,
    address: str,
    height: int,
    task_hashes: list[bytes],
) -> list[Work]:
    """For each open task, the node's work at block `height`, in the node's own order,
    keccak256(node || taskHash) (each node starts on other tasks).

    Raises NotEligible when the node cannot act at all (not registered, stake, jailed).

    Twins: `Reference.work` in tests/property/test_settlement_machine.py and PROTOCOL 5.1
    (queryPendingTasks) must change with it.
    """
    node = get_node(state, address)
    reason = standing_problem(node, get_account(state, address).stake, params)
    if reason is not None or node is None:
        raise NotEligible(address, reason or "not a registered resource node")
    work = []
    for task_hash in task_hashes:
        task = get_task(state, task_hash)
        if task is None or task.status in FINAL_STATUSES or not node.serves(task.model):
            continue
        own = next((e for e in task.execution_info if e.resource_node == address), None)
        compute = (
            own is None
            and open_slots(task) > 0
            and height <= compute_deadline(params, task)
            and secrets_problem(node, params, task) is None
        )
        verify = []
        if height <= verify_deadline(params, task):
            verify = [
                e
                for e in task.execution_info
                if e.status in UNDECIDED
                and address in e.assigned()
                and all(v.verifier != address for v in e.verifications)
            ]
        reveal = own is not None and bool(params.canary_rate_bps) and _unrevealed(own)
        if compute or verify or reveal:
            work.append(Work(task, compute, verify, reveal))
    node_bytes = bytes.fromhex(address[2:])
    work.sort(key=lambda item: crypto.keccak(node_bytes + item.task.task_hash))
    return work
