"""A task as the resource node reads it: every field untrusted, bounded before it is parsed.

What `queryPendingTasks` lists comes from a validator the node does not control, and the bytes
fields of a task were chosen by whoever submitted it: the validator stores a `modelOptions`
that does not start with `{` as opaque bytes and lists it as given (PROTOCOL 1). So before
any JSON parse a bytes field is held to two bounds, a length (MAX_FIELD_LENGTH characters)
and a nesting depth (MAX_JSON_DEPTH levels of `[` and `{` outside JSON strings, measured by
`wire.json_depth`): no parser, in C or in Python, ever sees a value that could exhaust the
stack or the memory. The parse is then `wire.parse_json`'s. The depth bound is stricter than
the parser's own (`wire.MAX_JSON_DEPTH`), so that what a backend does with a parsed value (the
deterministic model encodes modelOptions with the standard library, which recurses in C once
per level) stays far inside any recursion limit. A field
beyond a bound, of the wrong type, or a `modelOptions` object the protocol refuses (PROTOCOL
4.2) raises `Unreadable`, naming the field; the worker skips that one task (or that one verify
entry) and logs it once.

`decode_task` reads one listed task into a `PendingTask`, `read_inputs` the fields a backend
computes from (also of a `queryTask` object), `json_value` is the bounded JSON reader, and
`describe` a value for a log line without printing (or walking) all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chain.protocol import wire
from chain.protocol.errors import InvalidParams
from chain.protocol.tasks import validate_model_options

MAX_JSON_DEPTH = 256
MAX_FIELD_LENGTH = 1 << 20  # characters of a bytes field's wire string (8x maxTxBytes' default)
MAX_VERIFY_ENTRIES = 256
MAX_SEED_DIGITS = 20  # a seed is below 2**64 (PROTOCOL 4.4)
DEFAULT_SCHEMA = "text"
DESCRIPTION_CHARS = 60


class Unreadable(ValueError):
    """A field the node cannot read within its bounds; `field` names it, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotJson:
    """The marker `json_value` returns for text that is not JSON (opaque bytes)."""


NOT_JSON = NotJson()


def describe(value: Any) -> str:
    """A short description of any value for a log line: its type and size, a string's start."""
    if isinstance(value, str):
        if len(value) <= DESCRIPTION_CHARS:
            return repr(value)
        return f"{value[:DESCRIPTION_CHARS]!r}... ({len(value)} characters)"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 64:
            return f"an integer of {value.bit_length()} bits"
        return repr(value)
    if isinstance(value, dict):
        return f"an object of {len(value)} members"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return type(value).__name__


def nests_deeper(raw: bytes, bound: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `bound` in `raw`, brackets inside strings
    left out (`wire.json_depth`: exact for valid JSON, for other bytes never less than a
    parser meets before it fails). Text with no more openings than `bound` passes on the
    count alone."""
    if raw.count(b"[") + raw.count(b"{") <= bound:
        return False
    return wire.json_depth(raw) > bound


def check_field(value: Any, field: str, *, nesting: bool = True) -> str:
    """`value` as a bytes field within the bounds: a string of at most MAX_FIELD_LENGTH
    characters that nests at most MAX_JSON_DEPTH deep (with `nesting`); else Unreadable."""
    if not isinstance(value, str):
        raise Unreadable(field, f"expected a string, got {describe(value)}")
    if len(value) > MAX_FIELD_LENGTH:
        raise Unreadable(field, f"{len(value)} characters, more than {MAX_FIELD_LENGTH}")
    if nesting and nests_deeper(wire.decode_bytes_field(value)):
        raise Unreadable(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def json_value(value: Any, field: str) -> Any:
    """The JSON a bytes field holds, or NOT_JSON when it holds other bytes. The field is held
    to the bounds (`check_field`) before the parse; Unreadable beyond them."""
    raw = wire.decode_bytes_field(check_field(value, field))
    try:
        return wire.parse_json(raw)
    except (ValueError, RecursionError):
        return NOT_JSON


def json_object(value: Any, field: str) -> dict[str, Any] | None:
    """The JSON object a bytes field holds, or None; Unreadable beyond the bounds."""
    parsed = json_value(value, field)
    return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True, slots=True)
class TaskInputs:
    """What a backend computes from, read from a task object: `model_options` is the parsed
    modelOptions object (`{}` when modelOptions is not a JSON object), `max_tokens` its
    `max_tokens`, `model` the model it names (else the `model` the validator reports);
    `length` the characters of the fields they were read from (what keeping them costs)."""

    prompts: str
    model_options: dict[str, Any]
    schema: str
    model: str | None
    max_tokens: int | None
    length: int = 0
    target_count: int = 1


def read_inputs(task: Mapping[str, Any]) -> TaskInputs:
    """The inputs of a `queryPendingTasks` or `queryTask` object; Unreadable naming the field.

    `prompts` must be a string; `modelOptions` and `schema` may be left out (empty, `text`).
    A modelOptions object is held to the rules a validator admits it by (PROTOCOL 4.2)."""
    prompts = check_field(task.get("prompts"), "prompts")
    raw_options = task.get("modelOptions")
    raw_options = "" if raw_options is None else raw_options
    options = json_object(raw_options, "modelOptions") or {}
    if options:
        try:
            validate_model_options(raw_options)
        except InvalidParams as exc:
            raise Unreadable(exc.param, exc.detail) from exc
    schema = task.get("schema")
    schema = DEFAULT_SCHEMA if schema is None else check_field(schema, "schema")
    max_tokens = options.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        max_tokens = None
    model = options.get("model")
    if not isinstance(model, str):
        reported = task.get("model")
        model = reported if isinstance(reported, str) and len(reported) <= 256 else None
    length = len(prompts) + len(raw_options) + len(schema)
    target_count = task.get("targetCount")
    if isinstance(target_count, bool) or not isinstance(target_count, int) or target_count < 1:
        target_count = 1
    return TaskInputs(prompts, options, schema, model, max_tokens, length, target_count)


@dataclass(frozen=True, slots=True)
class VerifyEntry:
    """Another node's result this node may judge; `seed` is the seed the validator reports
    for the submitter, as text (the node computes its own, PROTOCOL 4.4)."""

    submitter: str
    result: str
    seed: str | None


@dataclass(frozen=True, slots=True)
class ListedResult:
    """A result of the task as its `executionInfo` lists it: who submitted it, its text and
    its rank (0 is the earliest)."""

    submitter: str
    result: str
    rank: int


@dataclass(frozen=True, slots=True)
class PendingTask:
    """One task of a `queryPendingTasks` answer, read. `bad_entries` are the verify entries
    that could not be read, as (what identifies the entry, why)."""

    task_hash: str
    compute: bool
    inputs: TaskInputs
    seed: str | None
    verify: tuple[VerifyEntry, ...]
    bad_entries: tuple[tuple[str, str], ...]
    created_height: int | None = None  # None when not a height: no forced error can be told
    reveal: bool = False  # the node's decided result waits for its secret (PROTOCOL 4.13)
    results: tuple[ListedResult, ...] = ()  # executionInfo, the entries that could be read


MAX_HEIGHT = (1 << 63) - 1


def listed_height(value: Any) -> int | None:
    """A listed `createdHeight`: a JSON integer from 0 to 2^63 - 1, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_HEIGHT:
        return value
    return None


def listed_hash(item: Any) -> str | None:
    """The task hash of a listed item (lowercase), if it has a well-formed one."""
    if not isinstance(item, dict):
        return None
    value = item.get("taskHash")
    if isinstance(value, str) and wire.HEX_HASH.fullmatch(value):
        return value.lower()
    return None


def reported_seed(value: Any) -> str | None:
    """A seed as reported: its digits when it is a decimal string or a JSON integer that
    fits, else a description of what was there (to be logged, never used)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64:
        return str(value)
    if isinstance(value, str) and len(value) <= MAX_SEED_DIGITS and wire.DECIMAL.fullmatch(value):
        return value
    return describe(value)


def decode_entry(entry: Any) -> VerifyEntry:
    """One `verify` entry: `{submitter, result, seed, rank}`; Unreadable naming the member."""
    if not isinstance(entry, dict):
        raise Unreadable("verify", f"expected an object, got {describe(entry)}")
    try:
        submitter = wire.parse_address(entry.get("submitter"), "verify.submitter")
    except InvalidParams as exc:
        raise Unreadable(
            exc.param, f"{exc.detail}, got {describe(entry.get('submitter'))}"
        ) from exc
    result = check_field(entry.get("result"), "verify.result", nesting=False)
    return VerifyEntry(submitter, result, reported_seed(entry.get("seed")))


def listed_results(value: Any) -> tuple[ListedResult, ...]:
    """The results of a listed task's `executionInfo` that can be read within the bounds (at
    most MAX_VERIFY_ENTRIES); the others are left out: they only serve to tell a copy."""
    if not isinstance(value, list):
        return ()
    out: list[ListedResult] = []
    for entry in value[:MAX_VERIFY_ENTRIES]:
        if not isinstance(entry, dict):
            continue
        rank = entry.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= MAX_HEIGHT:
            continue
        try:
            submitter = wire.parse_address(entry.get("resourceNode"), "executionInfo")
            result = check_field(entry.get("result"), "executionInfo.result", nesting=False)
        except (InvalidParams, Unreadable):
            continue
        out.append(ListedResult(submitter, result, rank))
    return tuple(out)


def _entry_name(entry: Any) -> str:
    submitter = entry.get("submitter") if isinstance(entry, dict) else None
    return f"submitter {describe(submitter)}" if submitter is not None else describe(entry)


def decode_task(item: Any, inputs: TaskInputs | None = None) -> PendingTask:
    """A listed task read within the bounds; Unreadable naming the first field that is not.
    A verify entry that cannot be read does not make the task unreadable: it is left out and
    named in `bad_entries`. `inputs` are the task's inputs read before (they are fixed by
    its hash), so they are not read again."""
    if not isinstance(item, dict):
        raise Unreadable("task", f"expected an object, got {describe(item)}")
    task_hash = listed_hash(item)
    if task_hash is None:
        raise Unreadable(
            "taskHash", f"expected 0x and 64 hex digits, got {describe(item.get('taskHash'))}"
        )
    inputs = inputs or read_inputs(item)
    entries = item.get("verify")
    entries = [] if entries is None else entries
    verify: list[VerifyEntry] = []
    bad: list[tuple[str, str]] = []
    if not isinstance(entries, list):
        bad.append(("verify", f"expected a list, got {describe(entries)}"))
        entries = []
    if len(entries) > MAX_VERIFY_ENTRIES:
        bad.append(("verify", f"{len(entries)} entries, only the first {MAX_VERIFY_ENTRIES} read"))
    for entry in entries[:MAX_VERIFY_ENTRIES]:
        try:
            verify.append(decode_entry(entry))
        except Unreadable as exc:
            bad.append((_entry_name(entry), str(exc)))
    return PendingTask(
        task_hash=task_hash,
        compute=item.get("compute") is True,
        inputs=inputs,
        seed=reported_seed(item.get("seed")),
        verify=tuple(verify),
        bad_entries=tuple(bad),
        created_height=listed_height(item.get("createdHeight")),
        reveal=item.get("reveal") is True,
        results=listed_results(item.get("executionInfo")),
    )
