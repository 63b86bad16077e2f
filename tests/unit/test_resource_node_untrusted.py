"""The resource node's reader of untrusted task fields (resource_node/untrusted.py): the
nesting bound against a plain character-by-character scanner, the bounded JSON reader, and
`decode_task` on arbitrary JSON (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resource_node.untrusted import (
    MAX_FIELD_LENGTH,
    MAX_JSON_DEPTH,
    MAX_VERIFY_ENTRIES,
    NOT_JSON,
    PendingTask,
    Unreadable,
    decode_task,
    describe,
    json_value,
    nests_deeper,
    reported_seed,
)
from rpc.client import Wallet
from tests.strategies import ADDRESSES, BYTES_FIELDS, scanned_json_depth

HASH = "0x" + "ab" * 32
SUBMITTER = Wallet.dev(201).address

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('ab"\\[]{}: \u00e9')),
    st.text(),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed value (0 for a scalar)."""
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    return 0


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for n in range(levels):
        value = [value] if n % 2 else {"k": value}
    return value


@settings(max_examples=300)
@given(value=JSON_VALUES, bound=st.integers(min_value=0, max_value=6))
def test_nesting_bound_is_exact_on_valid_json(value: Any, bound: int) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert scanned_json_depth(text) == depth(value)
    assert nests_deeper(text.encode(), bound) is (depth(value) > bound)


@settings(max_examples=300)
@given(text=st.text(alphabet=st.sampled_from('[]{}"\\a, :')), bound=st.integers(0, 4))
def test_nesting_bound_never_says_less_than_a_parser_meets(text: str, bound: int) -> None:
    """On any text: when the bound is said to hold, whatever parses is within it."""
    if nests_deeper(text.encode(), bound):
        return
    try:
        parsed = json.loads(text)
    except ValueError:
        return
    assert depth(parsed) <= bound


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1])
def test_the_nesting_bound(levels: int) -> None:
    text = json.dumps(nested(levels))
    if levels > MAX_JSON_DEPTH:
        with pytest.raises(Unreadable, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
            json_value(text, "modelOptions")
    else:
        assert json_value(text, "modelOptions") == nested(levels)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "0x" + "5b" * 100_000])
def test_deep_text_is_unreadable_before_any_parse(text: str) -> None:
    """What once took the process down: the interpreter's recursion limit is as high as a
    dependency set it (py_ecc: 100,000), and a C parser would recurse as deep as that."""
    with pytest.raises(Unreadable, match="nested deeper than"):
        json_value(text, "modelOptions")


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"prompt": "[" * 100_000 + '\\"{' * 1000})
    assert json_value(text, "prompts") == json.loads(text)
    assert json_value("0x" + text.encode().hex(), "prompts") == json.loads(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", NOT_JSON), ("plain text", NOT_JSON), ("[1, 2]", [1, 2]), ("NaN", NOT_JSON)],
)
def test_json_value(value: str, expected: Any) -> None:
    assert json_value(value, "f") == expected


def test_json_value_bounds_the_length_and_the_type() -> None:
    with pytest.raises(Unreadable, match="characters, more than"):
        json_value("x" * (MAX_FIELD_LENGTH + 1), "prompts")
    with pytest.raises(Unreadable, match="expected a string"):
        json_value(["not", "a", "string"], "prompts")


def test_integers_stay_exact() -> None:
    assert json_value('{"n": 123456789012345678901234567890}', "f") == {
        "n": 123456789012345678901234567890
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x" * 1000, "'" + "x" * 60 + "'... (1000 characters)"),
        (10**100, "an integer of 333 bits"),
        ({"a": 1, "b": 2}, "an object of 2 members"),
        ([1] * 5, "a list of 5 items"),
        (None, "None"),
    ],
)
def test_describe_is_short(value: Any, text: str) -> None:
    assert describe(value) == text


@pytest.mark.parametrize(
    ("value", "seed"),
    [
        (None, None),
        ("123", "123"),
        (123, "123"),
        (2**64 - 1, str(2**64 - 1)),
        ("0123", "'0123'"),  # not a decimal string (PROTOCOL 1): described, never used
        (2**64, "an integer of 65 bits"),
        (True, "True"),
        ("9" * 100, repr("9" * 60) + "... (100 characters)"),
    ],
)
def test_reported_seed(value: Any, seed: str | None) -> None:
    assert reported_seed(value) == seed


def good_task(**changes: Any) -> dict[str, Any]:
    task = {
        "taskHash": HASH,
        "prompts": '{"prompt":"Hi"}',
        "modelOptions": '{"model":"demo","max_tokens":8}',
        "schema": "json",
        "seed": "42",
        "compute": True,
        "verify": [{"submitter": SUBMITTER, "result": "r", "seed": "7", "rank": 1}],
    }
    task.update(changes)
    return task


def test_decode_a_good_task() -> None:
    task = decode_task(good_task())
    assert (task.task_hash, task.compute, task.seed) == (HASH, True, "42")
    assert task.inputs.model == "demo" and task.inputs.max_tokens == 8
    assert [(e.submitter, e.result, e.seed) for e in task.verify] == [(SUBMITTER, "r", "7")]
    assert task.bad_entries == ()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"taskHash": "0x12"}, "taskHash"),
        ({"taskHash": None}, "taskHash"),
        ({"prompts": None}, "prompts"),
        ({"modelOptions": "[" * 100_000}, "modelOptions"),
        ({"modelOptions": '{"temperature": 9}'}, "modelOptions.temperature"),
        ({"schema": 1}, "schema"),
    ],
)
def test_decode_a_task_it_cannot_read(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(Unreadable) as info:
        decode_task(good_task(**changes))
    assert info.value.field == field


def test_bad_verify_entries_are_left_out_and_named() -> None:
    entries = [
        "junk",
        {"submitter": "0x12", "result": "r"},
        {"submitter": SUBMITTER, "result": None},
        {"submitter": SUBMITTER, "result": "ok"},
    ]
    task = decode_task(good_task(verify=entries))
    assert [e.result for e in task.verify] == ["ok"]
    assert [name for name, _why in task.bad_entries] == [
        "'junk'",
        "submitter '0x12'",
        f"submitter {SUBMITTER!r}",
    ]
    many = decode_task(good_task(verify=[entries[-1]] * (MAX_VERIFY_ENTRIES + 1)))
    assert len(many.verify) == MAX_VERIFY_ENTRIES
    assert many.bad_entries == (
        ("verify", f"{MAX_VERIFY_ENTRIES + 1} entries, only the first {MAX_VERIFY_ENTRIES} read"),
    )


FIELD_VALUES = st.one_of(
    BYTES_FIELDS,
    JSON_VALUES,
    JSON_VALUES.map(json.dumps),
    st.sampled_from(["[" * 100_000, "{" * 300, '{"a":' * 300, "0x" + "5b" * 300]),
)
TASKS = st.fixed_dictionaries(
    {},
    optional={
        "taskHash": st.one_of(st.just(HASH), st.just(HASH.upper()), BYTES_FIELDS, JSON_VALUES),
        "prompts": FIELD_VALUES,
        "modelOptions": FIELD_VALUES,
        "schema": FIELD_VALUES,
        "model": FIELD_VALUES,
        "seed": st.one_of(JSON_VALUES, st.integers().map(str)),
        "compute": JSON_VALUES,
        "verify": st.one_of(
            JSON_VALUES,
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "submitter": st.one_of(ADDRESSES, JSON_VALUES),
                        "result": FIELD_VALUES,
                        "seed": JSON_VALUES,
                    },
                )
                | JSON_VALUES,
                max_size=4,
            ),
        ),
    },
)


@settings(max_examples=200)
@given(item=st.one_of(TASKS, JSON_VALUES))
def test_decode_task_reads_or_refuses_anything(item: Any) -> None:
    try:
        task = decode_task(item)
    except Unreadable as exc:
        assert exc.field and exc.reason
        assert len(str(exc)) < 400  # a description, not the value
        return
    assert isinstance(task, PendingTask)
    assert task.task_hash == item["taskHash"].lower()
    assert isinstance(task.inputs.prompts, str) and isinstance(task.inputs.model_options, dict)
    assert all(len(name) < 200 and len(why) < 400 for name, why in task.bad_entries)
