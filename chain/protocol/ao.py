"""The chain as AO's scheduler unit (PROTOCOL 8): processes spawned, messages given their
slots, data items checked, processes terminated, cron ticks scheduled at the end of a block.

Each process has its own ordered slots: 0 is the spawn, then 1, 2, ... for its messages, in
the order the blocks include them; a message's timestamp is its block's time (in ms, as AO's).
Ids are AO's: base64url without padding (43 characters) of the SHA-256 of the signature: the
EIP-712 signature of an AoSpawn or AoMessage, the data item's own of an AoDataItem. A cron
tick's message has no signature: its id is of the text `inferchain/ao/cron/<pid>/<tick>`.

The chain does not run Lua: it orders what the compute units evaluate (`ao/`), off the
consensus path. Every AO transaction pays `transferFee` (burned), as a Transfer does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chain.protocol import ans104, wire
from chain.protocol.accounts import check_nonce
from chain.protocol.errors import (
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    NotEligible,
)
from chain.protocol.genesis import Params
from chain.protocol.state import (
    Reader,
    State,
    burn,
    get_account,
    put_account,
)
from chain.protocol.types import (
    Account,
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    BlockContext,
    SignedTx,
)

PROCESS = b"s/ao/proc/"  # <pid>: the process
SLOT = b"s/ao/slot/"  # <pid>/<slot:8>: a scheduled message
MESSAGE_ID = b"s/ao/id/"  # <id>: where a message (or a spawn) is: {process, slot}
MODULE = b"s/ao/module/"  # <id>: a published module's Lua source
CRON = b"s/ao/cron"  # the processes with a cron interval, sorted
PROCESS_COUNT = b"s/ao/count"  # how many processes were spawned
PROCESS_LIST = b"s/ao/list/"  # <i:8>: the i-th process spawned
ALIAS = b"s/ao/alias/"  # <id>: the process that id stands for (a Dev-Process-Id spawn's own id)
DEV_ID_TAG = "Dev-Process-Id"

ID = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_TAGS = 128  # as ANS-104
MAX_TAG_NAME = 1024
MAX_TAG_VALUE = 3072
MIN_MEMORY_LIMIT = 64 * 1024
MAX_MEMORY_LIMIT = 1 << 30
MIN_COMPUTE_LIMIT = 1_000
MAX_COMPUTE_LIMIT = 10**12
CRON_UNITS = {
    "block": 0,
    "blocks": 0,
    "second": 1,
    "seconds": 1,
    "minute": 60,
    "minutes": 60,
    "hour": 3600,
    "hours": 3600,
}
CRON_INTERVAL = re.compile(r"(\d{1,9})-([a-z]+)")
MAX_CRON_TICKS_PER_BLOCK = 100  # the rest of a long gap follows in the next blocks
CRON_DOMAIN = "inferchain/ao/cron/"
# The data items' tags that make a process, a message or a module (AO's).
TYPE_TAG = "Type"
PROCESS_TYPE, MESSAGE_TYPE, MODULE_TYPE = "Process", "Message", "Module"


def ao_id(signature: bytes) -> str:
    """AO's id of a signed thing: base64url (no padding) of SHA-256 of the signature."""
    return base64.urlsafe_b64encode(hashlib.sha256(signature).digest()).rstrip(b"=").decode()


def is_id(text: str) -> bool:
    """Whether `text` is an AO id in its one canonical form: 43 base64url characters that
    stand for 32 bytes (the last character's two low bits zero)."""
    return bool(ID.fullmatch(text)) and id_text(id_bytes(text)) == text


def id_bytes(ao_id_text: str) -> bytes:
    """The 32 bytes an AO id stands for (a data item's `target`)."""
    return base64.urlsafe_b64decode(ao_id_text + "=")


def id_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def cron_id(process: str, tick: int) -> str:
    return ao_id(f"{CRON_DOMAIN}{process}/{tick}".encode())


@dataclass(frozen=True, slots=True)
class CronInterval:
    """Every `count` blocks (`seconds` 0), or every `count * seconds` seconds."""

    count: int
    seconds: int

    @property
    def by_blocks(self) -> bool:
        return self.seconds == 0

    def text(self) -> str:
        unit = (
            "blocks"
            if self.by_blocks
            else {1: "seconds", 60: "minutes", 3600: "hours"}[self.seconds]
        )
        return f"{self.count}-{unit}"


def parse_cron_interval(text: str) -> CronInterval | None:
    """AO's `cron_interval` ("5-blocks", "10-seconds", "1-minute"); None for ""."""
    if text == "":
        return None
    match = CRON_INTERVAL.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in CRON_UNITS or int(match.group(1)) < 1:
        raise InvalidParams(
            "cronInterval", f"N-blocks, N-seconds, N-minutes or N-hours with N >= 1, got {text!r}"
        )
    return CronInterval(int(match.group(1)), CRON_UNITS[match.group(2)])


def parse_tags(text: str, param: str = "tags") -> list[tuple[str, str]]:
    """AO's tags, a JSON list of {name, value} strings, within ANS-104's bounds."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidParams(param, "a JSON list of {name, value}") from exc
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise InvalidParams(param, f"a JSON list of at most {MAX_TAGS} {{name, value}}")
    tags = []
    for i, tag in enumerate(value):
        if (
            not isinstance(tag, dict)
            or set(tag) != {"name", "value"}
            or not isinstance(tag["name"], str)
            or not isinstance(tag["value"], str)
            or not tag["name"]
        ):
            raise InvalidParams(
                f"{param}[{i}]", "an object {name, value} of strings, name not empty"
            )
        check_tag(tag["name"], tag["value"], f"{param}[{i}]")
        tags.append((tag["name"], tag["value"]))
    return tags


def check_tag(name: str, value: str, where: str) -> None:
    if len(name.encode()) > MAX_TAG_NAME or len(value.encode()) > MAX_TAG_VALUE:
        raise InvalidParams(
            where, f"a name of at most {MAX_TAG_NAME} bytes, a value of at most {MAX_TAG_VALUE}"
        )


def tag(tags: Iterable[tuple[str, str]], name: str) -> str | None:
    """The value of the first tag `name`, if any."""
    return next((value for key, value in tags if key == name), None)


# State: the records of processes and slots


def _load(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else dict(json.loads(raw))


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def process_key(pid: str) -> bytes:
    return PROCESS + pid.encode()


def slot_key(pid: str, slot: int) -> bytes:
    return SLOT + pid.encode() + b"/" + slot.to_bytes(8, "big")


def get_process(state: Reader, pid: str) -> dict[str, Any] | None:
    """The process record `{id, owner, module, moduleId, scheduler, memoryLimit,
    computeLimit, cronInterval, tags, data, height, timestamp, slots, terminated, cronTicks}`."""
    return _load(state.get(process_key(pid)))


def resolve(state: Reader, pid: str) -> str:
    """The process an id stands for: an alias's process (8.2, Dev-Process-Id), else `pid`."""
    raw = state.get(ALIAS + pid.encode())
    return pid if raw is None else raw.decode()


def get_slot(state: Reader, pid: str, slot: int) -> dict[str, Any] | None:
    """A scheduled message `{id, process, slot, owner, from, fromProcess, tags, data, height,
    timestamp, cron}` (slot 0 is the spawn, with `module`)."""
    return _load(state.get(slot_key(pid, slot)))


def get_message_place(state: Reader, message_id: str) -> tuple[str, int] | None:
    place = _load(state.get(MESSAGE_ID + message_id.encode()))
    return None if place is None else (str(place["process"]), int(place["slot"]))


def get_module(state: Reader, module_id: str) -> str | None:
    raw = state.get(MODULE + module_id.encode())
    return None if raw is None else str(json.loads(raw))


def get_cron_processes(state: Reader) -> list[str]:
    raw = state.get(CRON)
    return [] if raw is None else list(json.loads(raw))


def process_count(state: Reader) -> int:
    raw = state.get(PROCESS_COUNT)
    return 0 if raw is None else int(raw)


def process_at(state: Reader, index: int) -> str | None:
    """The id of the `index`-th process spawned (from 0), if there is one."""
    raw = state.get(PROCESS_LIST + index.to_bytes(8, "big"))
    return None if raw is None else raw.decode()


def _put_slot(state: State, process: dict[str, Any], message: dict[str, Any]) -> None:
    slot = int(process["slots"])
    pid = str(process["id"])
    entry = {**message, "process": pid, "slot": slot}
    state.put(slot_key(pid, slot), _dump(entry))
    state.put(MESSAGE_ID + str(message["id"]).encode(), _dump({"process": pid, "slot": slot}))
    state.put(process_key(pid), _dump({**process, "slots": slot + 1}))


def _check_new_id(state: Reader, message_id: str) -> None:
    if state.get(MESSAGE_ID + message_id.encode()) is not None or (
        state.get(MODULE + message_id.encode()) is not None
    ):
        raise DuplicateSubmission(message_id, f"AO id {message_id} is scheduled already")


def _pay_fee(state: State, params: Params, sender: str, nonce: int) -> None:
    """The sender's nonce, and the fee, burned."""
    account = get_account(state, sender)
    check_nonce(account, sender, nonce)
    fee = params.transfer_fee
    if account.balance < fee:
        raise InsufficientBalance(sender, fee, account.balance)
    put_account(state, sender, Account(account.balance - fee, account.stake, account.nonce + 1))
    burn(state, fee)


def _process_id(value: str, param: str) -> str:
    if not isinstance(value, str) or not is_id(value):
        raise InvalidParams(param, "an AO id: 43 characters of base64url, standing for 32 bytes")
    return value


def _limit(value: int, low: int, high: int, param: str) -> int:
    if not low <= value <= high:
        raise InvalidParams(param, f"from {low} to {high}, got {value}")
    return value


# The transactions


def apply_spawn(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: AoSpawn
) -> None:
    """An AoSpawn (PROTOCOL 8.2): the process, its slot 0, its place in the cron list."""
    _pay_fee(state, params, msg.sender, msg.nonce)
    pid = ao_id(tx.signature)
    spawn(
        state,
        ctx,
        params,
        pid=pid,
        owner=msg.sender,
        module=msg.module,
        scheduler=msg.scheduler,
        memory_limit=msg.memory_limit,
        compute_limit=msg.compute_limit,
        cron_interval=msg.cron_interval,
        tags=parse_tags(msg.tags),
        data=msg.data,
    )


def spawn(
    state: State,
    ctx: BlockContext,
    params: Params,
    *,
    pid: str,
    owner: str,
    module: str,
    scheduler: str,
    memory_limit: int,
    compute_limit: int,
    cron_interval: str,
    tags: list[tuple[str, str]],
    data: str,
) -> None:
    _check_new_id(state, pid)
    spawn_id = pid
    chosen = tag(tags, DEV_ID_TAG)
    if chosen is not None:
        pid = _dev_process_id(state, params, chosen)
    module_id = None
    if ID.fullmatch(module):
        if get_module(state, module) is None:
            raise InvalidParams("module", f"no published module {module}")
        module_id = module
    cron = parse_cron_interval(cron_interval)
    process = {
        "id": pid,
        "owner": owner,
        "module": module if module_id is None else "",
        "moduleId": module_id,
        "scheduler": wire.parse_address(scheduler, "scheduler"),
        "memoryLimit": _limit(memory_limit, MIN_MEMORY_LIMIT, MAX_MEMORY_LIMIT, "memoryLimit"),
        "computeLimit": _limit(compute_limit, MIN_COMPUTE_LIMIT, MAX_COMPUTE_LIMIT, "computeLimit"),
        "cronInterval": "" if cron is None else cron.text(),
        "tags": [[k, v] for k, v in tags],
        "data": data,
        "height": ctx.height,
        "timestamp": ctx.time * 1000,
        "slots": 0,
        "terminated": False,
        "cronTicks": 0,
    }
    if chosen is not None:
        process["spawnId"] = spawn_id
        state.put(ALIAS + spawn_id.encode(), pid.encode())
    _put_slot(
        state,
        process,
        {
            "id": spawn_id,
            "owner": owner,
            "from": owner,
            "fromProcess": None,
            "tags": process["tags"],
            "data": data,
            "height": ctx.height,
            "timestamp": ctx.time * 1000,
            "cron": False,
        },
    )
    count = process_count(state)
    state.put(PROCESS_LIST + count.to_bytes(8, "big"), pid.encode())
    state.put(PROCESS_COUNT, str(count + 1).encode())
    if cron is not None:
        listed = get_cron_processes(state)
        state.put(CRON, _dump(sorted({*listed, pid})))


def _dev_process_id(state: Reader, params: Params, chosen: str) -> str:
    """The id a spawn chooses with its Dev-Process-Id tag (8.2): on a chain whose params set
    aoAliases, an AO id that no process, message, module or alias has taken."""
    param = f"tags.{DEV_ID_TAG}"
    if not params.ao_aliases:
        raise InvalidParams(
            param,
            "a process chooses its id only on a chain whose params set aoAliases (a dev chain)",
        )
    if not is_id(chosen):
        raise InvalidParams(param, "an AO id: 43 characters of base64url, standing for 32 bytes")
    taken = (
        state.get(PROCESS + chosen.encode()) is not None
        or state.get(MESSAGE_ID + chosen.encode()) is not None
        or state.get(MODULE + chosen.encode()) is not None
        or state.get(ALIAS + chosen.encode()) is not None
    )
    if taken:
        raise InvalidParams(param, f"{chosen} is taken already")
    return chosen


def apply_message(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: AoMessage
) -> None:
    """An AoMessage (PROTOCOL 8.2): the target's next slot."""
    _pay_fee(state, params, msg.sender, msg.nonce)
    schedule(
        state,
        ctx,
        message_id=ao_id(tx.signature),
        owner=msg.sender,
        target=msg.target,
        tags=parse_tags(msg.tags),
        data=msg.data,
        from_process=msg.from_process or None,
    )


def schedule(
    state: State,
    ctx: BlockContext,
    *,
    message_id: str,
    owner: str,
    target: str,
    tags: list[tuple[str, str]],
    data: str,
    from_process: str | None,
) -> None:
    _check_new_id(state, message_id)
    process = get_process(state, resolve(state, _process_id(target, "target")))
    if process is None:
        raise InvalidParams("target", f"no process {target}")
    if process["terminated"]:
        raise InvalidParams("target", f"process {target} was terminated")
    if from_process is not None:
        sending = get_process(state, _process_id(from_process, "fromProcess"))
        if sending is None:
            raise InvalidParams("fromProcess", f"no process {from_process}")
        if sending["scheduler"].lower() != owner.lower():
            raise NotEligible(
                owner,
                f"only process {from_process}'s scheduler {sending['scheduler']} relays its "
                "messages",
            )
    _put_slot(
        state,
        process,
        {
            "id": message_id,
            "owner": owner,
            "from": from_process or owner,
            "fromProcess": from_process,
            "tags": [[k, v] for k, v in tags],
            "data": data,
            "height": ctx.height,
            "timestamp": ctx.time * 1000,
            "cron": False,
        },
    )


def apply_data_item(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: AoDataItem
) -> None:
    """An AoDataItem (PROTOCOL 8.3): the item parsed and verified, then by its Type tag a
    process spawned, a message scheduled or a module published, under the item's id and
    owned by its owner."""
    raw = wire.decode_bytes_field(msg.item)
    try:
        item = ans104.parse(raw)
        ans104.verify(item)
    except ans104.Ans104Error as exc:
        raise InvalidParams("item", str(exc)) from exc
    _pay_fee(state, params, msg.sender, msg.nonce)
    tags = [(t.name, t.value) for t in item.tags]
    for i, (name, value) in enumerate(tags):
        check_tag(name, value, f"item.tags[{i}]")
    kind = tag(tags, TYPE_TAG)
    try:
        data = item.data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidParams("item", "its data is not UTF-8 text") from exc
    owner = item.owner_address
    if kind == PROCESS_TYPE:
        spawn(
            state,
            ctx,
            params,
            pid=item.id,
            owner=owner,
            module=tag(tags, "Module") or data,
            scheduler=tag(tags, "Scheduler") or msg.sender,
            memory_limit=_tag_int(tags, "Memory-Limit", MAX_MEMORY_LIMIT // 4),
            compute_limit=_tag_int(tags, "Compute-Limit", MAX_COMPUTE_LIMIT // 100),
            cron_interval=tag(tags, "Cron-Interval") or "",
            tags=tags,
            data="" if tag(tags, "Module") is None else data,
        )
    elif kind == MESSAGE_TYPE:
        if item.target is None:
            raise InvalidParams("item", "a message needs a target (the process)")
        schedule(
            state,
            ctx,
            message_id=item.id,
            owner=owner,
            target=id_text(item.target),
            tags=tags,
            data=data,
            from_process=tag(tags, "From-Process"),
        )
    elif kind == MODULE_TYPE:
        _check_new_id(state, item.id)
        state.put(MODULE + item.id.encode(), _dump(data))
    else:
        raise InvalidParams(
            "item", f"tag {TYPE_TAG} must be {PROCESS_TYPE}, {MESSAGE_TYPE} or {MODULE_TYPE}"
        )


def _tag_int(tags: list[tuple[str, str]], name: str, default: int) -> int:
    value = tag(tags, name)
    if value is None:
        return default
    if not wire.ascii_digits(value) or len(value) > 15:
        raise InvalidParams(f"item.tags.{name}", f"a number, got {value!r}")
    return int(value)


def apply_terminate(state: State, params: Params, msg: AoTerminate) -> None:
    """An AoTerminate (PROTOCOL 8.2): by the process's owner; later messages are refused."""
    pid = resolve(state, _process_id(msg.process, "process"))
    process = get_process(state, pid)
    if process is None:
        raise InvalidParams("process", f"no process {msg.process}")
    if process["owner"].lower() != msg.sender.lower():
        raise NotEligible(msg.sender, f"only the owner {process['owner']} terminates the process")
    if process["terminated"]:
        raise InvalidParams("process", f"process {msg.process} was terminated already")
    _pay_fee(state, params, msg.sender, msg.nonce)
    state.put(process_key(pid), _dump({**process, "terminated": True}))
    if process["cronInterval"]:
        listed = [p for p in get_cron_processes(state) if p != pid]
        state.put(CRON, _dump(listed))


# Cron, at the end of every block


def schedule_cron(state: State, ctx: BlockContext) -> None:
    """Each tick of each cron process that this block reaches gets one Cron message (tags
    Action = Cron), at most MAX_CRON_TICKS_PER_BLOCK per process and block. A tick is due
    every `count` blocks after the spawn's, or every interval of block time after it; the
    count of ticks given is in the process, so each tick is scheduled once."""
    for pid in get_cron_processes(state):
        process = get_process(state, pid)
        if process is None or process["terminated"]:
            continue
        interval = parse_cron_interval(process["cronInterval"])
        assert interval is not None
        if interval.by_blocks:
            reached = (ctx.height - process["height"]) // interval.count
        else:
            elapsed = ctx.time - process["timestamp"] // 1000
            reached = elapsed // (interval.count * interval.seconds)
        given = int(process["cronTicks"])
        for tick in range(given + 1, min(reached, given + MAX_CRON_TICKS_PER_BLOCK) + 1):
            _put_slot(
                state,
                process,
                {
                    "id": cron_id(pid, tick),
                    "owner": process["scheduler"],
                    "from": pid,
                    "fromProcess": None,
                    "tags": [["Action", "Cron"], ["Cron-Tick", str(tick)]],
                    "data": "",
                    "height": ctx.height,
                    "timestamp": ctx.time * 1000,
                    "cron": True,
                },
            )
            process = get_process(state, pid)
            assert process is not None
            process["cronTicks"] = tick
            state.put(process_key(pid), _dump(process))
