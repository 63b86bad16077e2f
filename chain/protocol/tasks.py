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

from dataclasses import replace
from typing import Any

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
    add_busy,
    add_due,
    clear_due,
    credit,
    get_account,
    get_due,
    get_node,
    get_open_task,
    get_supply,
    get_task,
    put_account,
    put_node,
    put_supply,
    update_task,
)
from chain.protocol.types import (
    FINAL_STATUSES,
    UNDECIDED,
    Account,
    BlockContext,
    ExecutionInfo,
    Payout,
    PayoutRole,
    ResourceNodeInfo,
    ResultStatus,
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


def schedule_deadlines(state: State, params: Params, task: Task) -> None:
    compute, verify = compute_deadline(params, task), verify_deadline(params, task)
    add_due(state, compute, task.task_hash)
    if verify != compute:
        add_due(state, verify, task.task_hash)


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


def check_eligible(state: State, params: Params, address: str, model: str | None) -> None:
    """An eligible node: registered, staked, not jailed, and serving the task's model (4.2).

    Twins: `Reference.eligible` in tests/property/test_settlement_machine.py."""
    node = get_node(state, address)
    reason = standing_problem(node, get_account(state, address).stake, params)
    if reason is None and node is not None and not node.serves(model):
        reason = f"the node does not serve the model {model!r}"
    if reason is not None:
        raise NotEligible(address, reason)


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
    check_eligible(state, params, msg.resource_node, task.model)
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
    entry = decide_result(state, params, ctx, entry, at_deadline=False)
    entries = list(task.execution_info)
    entries[index] = entry
    stored_status = task.status
    task = _with_results(task, tuple(entries))
    closed = ctx.height > compute_deadline(params, task)
    task = maybe_decide_task(state, params, ctx, task, compute_closed=closed)
    update_task(state, task, stored_status)


def weigh(state: State, entry: ExecutionInfo) -> tuple[int, int]:
    """(for, against): the submitter's and valid verifiers' stake, the others' stake (4.6).

    Twins: `Reference.decide` in tests/property/test_settlement_machine.py and PROTOCOL 4.6
    must change with it."""
    stake_for = get_account(state, entry.resource_node).stake
    stake_against = 0
    for verdict in entry.verifications:
        stake = get_account(state, verdict.verifier).stake
        if verdict.valid:
            stake_for += stake
        else:
            stake_against += stake
    return stake_for, stake_against


def decide_result(
    state: State, params: Params, ctx: BlockContext, entry: ExecutionInfo, *, at_deadline: bool
) -> ExecutionInfo:
    """Decide an undecided result if the rule allows; returns the (possibly) updated entry.

    Twins: `Reference.decide` in tests/property/test_settlement_machine.py and PROTOCOL 4.6
    (the quorum, the tie, the verify deadline) must change with it."""
    if entry.status not in UNDECIDED:
        return entry
    verdicts = entry.verifications
    outcome: ResultStatus | None = None
    if verdicts and (at_deadline or len(verdicts) >= params.verification_quorum):
        stake_for, stake_against = weigh(state, entry)
        if stake_for > stake_against:
            outcome = ResultStatus.VERIFIED
        elif stake_against > stake_for:
            outcome = ResultStatus.REJECTED
    if outcome is None and at_deadline:
        outcome = ResultStatus.UNVERIFIED
    if outcome is None:
        return entry
    return entry.decided(outcome, ctx.height)


# Deciding the task


def maybe_decide_task(
    state: State, params: Params, ctx: BlockContext, task: Task, *, compute_closed: bool
) -> Task:
    """Decide and settle the task once nothing is undecided and no result can come (4.7).

    Twins: `Reference.maybe_settle` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.7 must change with it."""
    if task.status in FINAL_STATUSES:
        return task
    if any(e.status in UNDECIDED for e in task.execution_info):
        return task
    if open_slots(task) > 0 and not compute_closed:
        return task
    return settle(state, params, ctx, task)


def process_deadlines(state: State, params: Params, ctx: BlockContext) -> None:
    """End of block: the tasks whose compute or verify deadline is this height (4.6, 4.7).

    Twins: `Reference.end_block` in tests/property/test_settlement_machine.py (the tasks due,
    in creation order) and PROTOCOL 4.6 and 4.7 must change with it."""
    due = get_due(state, ctx.height)
    if not due:
        return
    for task_hash in due:
        task = get_open_task(state, task_hash)
        if task is None:
            continue  # settled already (a task is due at its compute and its verify deadline)
        stored_status = task.status
        if ctx.height >= verify_deadline(params, task):
            entries = tuple(
                decide_result(state, params, ctx, e, at_deadline=True) for e in task.execution_info
            )
            task = _with_results(task, entries)
        task = maybe_decide_task(state, params, ctx, task, compute_closed=True)
        update_task(state, task, stored_status)
    clear_due(state, ctx.height)


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


def _slash_losers(
    state: State, params: Params, results: list[ExecutionInfo]
) -> tuple[list[Slash], list[tuple[int, str]]]:
    """Slash rejected results and losing verdicts, jail who falls below minNodeStake:
    (the slashes, the winning verdicts as (seq, verifier)).

    Twins: the slashes and jailing of `Reference.settle` and `Reference.slash` in
    tests/property/test_settlement_machine.py and PROTOCOL 4.8 step 2 must change with it;
    what it takes stays in the supply (PROTOCOL 4.10) through poolV."""
    slashed: list[Slash] = []
    winners: list[tuple[int, str]] = []
    for entry in results:
        status = entry.status
        if status not in (ResultStatus.VERIFIED, ResultStatus.REJECTED):
            continue
        if status == ResultStatus.REJECTED and params.slashing:
            address = entry.resource_node
            amount = _slash(state, address, params.result_slash_bps)
            slashed.append(Slash(address, amount, "result"))
        for verdict in entry.verifications:
            if verdict.valid == (status == ResultStatus.VERIFIED):
                winners.append((verdict.seq, verdict.verifier))
            elif params.slashing:
                address = verdict.verifier
                amount = _slash(state, address, params.verifier_slash_bps)
                slashed.append(Slash(address, amount, "verdict"))
    for address in dict.fromkeys(s.address for s in slashed):
        _jail_if_below_minimum(state, params, address)
    return slashed, winners


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
    valid = [e for e in results if e.status == ResultStatus.VERIFIED]
    fee = task.fee
    reward = params.network_reward_per_task if valid else 0
    slashed, winners = _slash_losers(state, params, results) if results else ([], [])
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
    genesis_supply, minted, burned_before = get_supply(state)
    put_supply(state, genesis_supply, minted + reward - unminted, burned_before + burned)

    response = valid[0] if valid else None
    settlement = Settlement(
        height=ctx.height,
        fee=fee,
        network_reward=reward - unminted,
        slashed=tuple(slashed),
        payouts=(*compute_payouts, *verify_payouts),
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


# The work open for one node (queryPendingTasks, PROTOCOL 5.1)


def pending_work(
    state: Reader, params: Params, address: str, height: int, task_hashes: list[bytes]
) -> list[tuple[Task, bool, list[ExecutionInfo]]]:
    """For each open task: (task, may compute, results it may verify) at block `height`, in
    the node's own order, keccak256(node || taskHash) (each node starts on other tasks).

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
        answered = any(e.resource_node == address for e in task.execution_info)
        compute = not answered and open_slots(task) > 0 and height <= compute_deadline(params, task)
        verify = []
        if height <= verify_deadline(params, task):
            verify = [
                e
                for e in task.execution_info
                if e.status in UNDECIDED
                and e.resource_node != address
                and all(v.verifier != address for v in e.verifications)
            ]
        if compute or verify:
            work.append((task, compute, verify))
    node_bytes = bytes.fromhex(address[2:])
    work.sort(key=lambda item: crypto.keccak(node_bytes + item[0].task_hash))
    return work
