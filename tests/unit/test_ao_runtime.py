"""The AO process runtime (ao.runtime): the sandbox, the limits, rollback, determinism of
memory(), Eval, the Handlers rules, the message's shape, sends and replies, json, seeding,
and the APUS router document's Lua examples."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ao.runtime import Limits, Message, ModuleError, ProcessInfo, ProcessRuntime, Result
from tests.apus_examples import (
    APUS_BUY_CREDITS,
    APUS_HANDLER,
    APUS_INFER,
    APUS_ROUTER,
    APUS_TOKEN,
)

PID = "P" * 43
OWNER = "O" * 42
OTHER = "Q" * 43
MODULE = "M" * 43
PROCESS = ProcessInfo(id=PID, owner=OWNER, module_id=MODULE, tags=(("Name", "tester"),))
SMALL = Limits(memory_bytes=8 << 20, compute_instructions=5_000_000)


def message(
    n: int,
    data: str = "",
    tags: tuple[tuple[str, str], ...] = (),
    *,
    sender: str = OWNER,
    action: str | None = None,
    timestamp: int = 1_700_000_000_000,
) -> Message:
    if action is not None:
        tags = (("Action", action), *tags)
    return Message(
        id=f"m{n:042d}",
        slot=n,
        owner=sender,
        from_=sender,
        target=PID,
        tags=tags,
        data=data,
        timestamp_ms=timestamp,
        block_height=10 + n,
        from_process=None,
        cron=False,
    )


def runtime(module: str = "", limits: Limits = SMALL) -> ProcessRuntime:
    return ProcessRuntime(module, PROCESS, limits)


def evaluate(rt: ProcessRuntime, code: str, n: int = 1) -> Result:
    return rt.apply(message(n, code, action="Eval"))


def data(result: Result) -> str:
    assert result.error is None, result.error
    assert isinstance(result.output, dict)
    return str(result.output["data"])


def tags_of(sent: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["value"] for t in sent["Tags"]}


# The sandbox


@pytest.mark.parametrize(
    "code, expected",
    [
        ("return tostring(os.execute)", "nil"),
        ("return tostring(os.getenv)", "nil"),
        ("return tostring(io)", "nil"),
        ("return tostring(debug)", "nil"),
        ("return tostring(loadfile) .. tostring(dofile)", "nilnil"),
        ("return tostring(string.dump)", "nil"),
        ("return tostring(python)", "nil"),
        ("return tostring(package.loadlib) .. tostring(package.cpath)", "nilnil"),
        (
            "return select(2, load('\\27Lua', 'x', 'b'))",
            'load: only text chunks can be loaded (mode "t")',
        ),
        ("return select(2, load('\\27LuaT'))", "load: binary chunks are not allowed"),
        ("return load('return 6 * 7')()", "42"),
        ("return type(collectgarbage('count'))", "number"),
        ("return math.type(os.time())", "integer"),
    ],
)
def test_sandbox_leaves_out_what_a_process_must_not_have(code: str, expected: str) -> None:
    assert data(evaluate(runtime(), code)) == expected


@pytest.mark.parametrize(
    "code, error",
    [
        ("io.open('/etc/passwd')", "attempt to index a nil value (global 'io')"),
        ("os.execute('true')", "attempt to call a nil value (field 'execute')"),
        ("require('socket')", "module 'socket' not found"),
        ("require('io')", "module 'io' not found"),
        ("debug.sethook()", "attempt to index a nil value (global 'debug')"),
        ("collectgarbage('collect')", 'collectgarbage: only "count"'),
        ("collectgarbage('stop')", 'collectgarbage: only "count"'),
        ("setmetatable({}, {__gc = print})", "__gc metamethods are not allowed"),
    ],
)
def test_sandbox_refusals_are_errors_and_change_nothing(code: str, error: str) -> None:
    rt = runtime()
    before = rt.memory()
    result = evaluate(rt, "Touched = true; " + code)
    assert result.error is not None and error in result.error
    assert rt.memory() == before


def test_require_gives_the_runtime_modules_by_their_aos_names() -> None:
    rt = runtime()
    code = (
        "return tostring(require('json') == require('.json')) .. "
        "tostring(require('.handlers') == Handlers) .. "
        "tostring(require('.handlers-utils') == Handlers.utils) .. tostring(require('.ao') == ao)"
    )
    assert data(evaluate(rt, code)) == "truetruetruetrue"


# Limits


def test_memory_bomb_ends_the_message_and_the_unit_keeps_running() -> None:
    rt = runtime("Count = 0")
    before = rt.memory()
    bomb = evaluate(rt, 'Count = 1; Bomb = string.rep("x", 1 << 30)', 1)
    assert bomb.error == "memory limit exceeded: the process needs more than 8388608 bytes"
    assert bomb.messages == [] and bomb.spawns == []
    assert rt.memory() == before
    growth = evaluate(rt, "T = {} for i = 1, 1e7 do T[i] = {i} end", 2)
    assert growth.error is not None and growth.error.startswith("memory limit exceeded")
    caught = evaluate(rt, "while true do pcall(string.rep, 'x', 1 << 30) end", 3)
    assert caught.error is not None and caught.error.startswith("memory limit exceeded")
    assert rt.memory() == before
    assert data(evaluate(rt, "Count = Count + 1; return Count", 4)) == "1"


def test_memory_limit_counts_the_state_not_the_checkpoint() -> None:
    rt = runtime("Records = {} for i = 1, 30000 do Records[i] = { id = i } end")
    state = rt.memory_used()
    assert 2 << 20 < state < 4 << 20
    room = ((8 << 20) - state) // 2 - (256 << 10)  # string.rep holds its buffer and the string
    grown = evaluate(rt, f"Big = string.rep('x', {room}) return #Big", 1)
    assert data(grown) == str(room)
    too_much = evaluate(rt, f"Bigger = string.rep('y', {room})", 2)
    assert too_much.error is not None and too_much.error.startswith("memory limit exceeded")


@pytest.mark.parametrize(
    "loop",
    [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
        "coroutine.wrap(function() while true do end end)()",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "local function f() return f() end f()",
    ],
)
def test_endless_loop_ends_the_message_and_the_unit_keeps_running(loop: str) -> None:
    rt = runtime("Count = 0")
    before = rt.memory()
    result = evaluate(rt, "Count = 99; " + loop, 1)
    assert result.error == "compute limit exceeded: the message ran more than 5000000 instructions"
    assert rt.memory() == before
    assert data(evaluate(rt, "Count = Count + 1; return Count", 2)) == "1"


def test_limits_have_bounds() -> None:
    assert Limits().memory_bytes == 256 * 1024 * 1024
    for bad in (
        {"memory_bytes": 1024},
        {"memory_bytes": 1 << 40},
        {"compute_instructions": 10},
        {"compute_instructions": True},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Limits(**bad)


# Loading the module


def test_module_that_does_not_compile_names_the_line() -> None:
    with pytest.raises(ModuleError) as raised:
        runtime("X = 1\nY = 2\nZ = = 3\n")
    assert raised.value.line == 3
    assert str(raised.value).startswith("module:3:")


def test_module_that_raises_at_load_names_the_line() -> None:
    with pytest.raises(ModuleError) as raised:
        runtime("X = 1\nerror('no config')\n")
    assert raised.value.line == 2
    assert "no config" in str(raised.value)


def test_module_that_loops_at_load_is_a_module_error() -> None:
    with pytest.raises(ModuleError, match="compute limit exceeded"):
        runtime("while true do end")


def test_empty_module_is_a_bare_process_that_eval_fills() -> None:
    rt = runtime("")
    assert data(evaluate(rt, "Handlers.add('hi', {Action = 'Hi'}, function(m) print('hello') end)"))
    assert data(rt.apply(message(2, action="Hi"))) == "hello"


# Rollback


ROLLBACK_MODULE = """
local counter = 0
local meta = { __index = function(_, k) return "default " .. k end }
Config = setmetatable({ name = "a" }, meta)
Shared = { list = { 1, 2, 3 } }
Alias = Shared.list
function Bump() counter = counter + 1 return counter end
Handlers.add("fail", { Action = "Fail" }, function(msg)
  Bump()
  Config.name = "changed"
  getmetatable(Config).__index = function() return "hijacked" end
  setmetatable(Shared, { __index = function() return "new meta" end })
  table.insert(Alias, 4)
  Shared.extra = { deep = true }
  ao.send({ Target = msg.From, Data = "never" })
  print("before the error")
  error("boom in handler")
end)
Handlers.add("read", { Action = "Read" }, function(msg)
  print(Bump(), Config.name, Config.missing, #Alias, tostring(Shared.extra), Shared.nothing)
end)
"""


def test_a_failing_handler_rolls_back_globals_tables_metatables_and_upvalues() -> None:
    rt = runtime(ROLLBACK_MODULE)
    twin = runtime(ROLLBACK_MODULE)
    before = rt.memory()
    failed = rt.apply(message(1, action="Fail"))
    assert failed.error is not None and "boom in handler" in failed.error
    assert failed.error.startswith("module:")
    assert failed.messages == [] and failed.output == "before the error"
    assert rt.memory() == before
    assert data(rt.apply(message(2, action="Read"))) == "1\ta\tdefault missing\t3\tnil\tnil"
    assert data(twin.apply(message(2, action="Read"))) == "1\ta\tdefault missing\t3\tnil\tnil"
    assert rt.memory() == twin.memory()


def test_a_failing_eval_rolls_back_new_handlers_and_the_reference_counter() -> None:
    rt = runtime()
    before = rt.memory()
    code = "Handlers.add('x', {Action='X'}, print); Send({Target = 'a', Data = 'b'}); error('no')"
    assert evaluate(rt, code).error == "eval:1: no"
    assert rt.memory() == before
    sent = evaluate(rt, "Send({Target = 'a', Data = 'b'})", 2).messages
    assert tags_of(sent[0])["Reference"] == "1"


def test_dry_run_of_a_failing_message_changes_nothing() -> None:
    rt = runtime(ROLLBACK_MODULE)
    before = rt.memory()
    result = rt.dry_run(message(1, action="Fail"))
    assert result.error is not None and "boom in handler" in result.error
    assert rt.memory() == before


def test_dry_run_changes_nothing_and_still_answers() -> None:
    rt = runtime(
        "Count = 0\nHandlers.add('inc', {Action='Inc'}, function(m)\n"
        "  Count = Count + 1; m.reply({Data = tostring(Count)})\nend)"
    )
    before = rt.memory()
    result = rt.dry_run(message(1, action="Inc"))
    assert result.error is None and result.messages[0]["Data"] == "1"
    assert rt.memory() == before
    assert rt.apply(message(2, action="Inc")).messages[0]["Data"] == "1"


# Determinism: a small language of messages, two runtimes, the same memory after each


LANGUAGE_MODULE = """
State = { n = 0, items = {}, names = {} }
local hidden = 0
Handlers.add("set", { Action = "Set" }, function(m) State.names[m.Key] = m.Data end)
Handlers.add("incr", { Action = "Incr" }, function(m)
  hidden = hidden + 1
  State.n = State.n + tonumber(m.Data)
end)
Handlers.add("push", { Action = "Push" }, function(m)
  table.insert(State.items, { m.Data, math.random(1, 1000), m.Timestamp / 7 })
end)
Handlers.add("send", { Action = "Send" }, function(m)
  m.reply({ Data = m.Data, Hidden = hidden })
end)
Handlers.add("fail", { Action = "Fail" }, function(m)
  State.n = -1
  State.items[#State.items + 1] = "lost"
  hidden = 1000
  error("failed")
end)
Handlers.add("loop", { Action = "Loop" }, function(m) State.n = -2 while true do end end)
Handlers.add("list", { Action = "List" }, function(m)
  local seen = {}
  for k, v in pairs(State.names) do seen[#seen + 1] = tostring(k) .. "=" .. tostring(v) end
  State.order = table.concat(seen, ";")
  State.first = next(State.names)
  print(State.order)
end)
Handlers.add("cycle", { Action = "Cycle" }, function(m)
  local t = { name = m.Data }
  t.self = t
  State.names[t] = State.items
end)
"""

actions = st.sampled_from(["Set", "Incr", "Push", "Send", "Fail", "Loop", "Cycle", "List", "Other"])
programs = st.lists(
    st.tuples(actions, st.sampled_from(["a", "b", "1", "2", "x y", "k9", "k10"]), st.booleans()),
    max_size=8,
)


@settings(max_examples=25, deadline=None)
@given(programs)
def test_two_runtimes_fed_the_same_messages_reach_the_same_memory(
    program: list[tuple[str, str, bool]],
) -> None:
    limits = Limits(memory_bytes=8 << 20, compute_instructions=200_000)
    left = ProcessRuntime(LANGUAGE_MODULE, PROCESS, limits)
    right = ProcessRuntime(LANGUAGE_MODULE, PROCESS, limits)
    assert left.memory() == right.memory()
    for n, (action, value, peek) in enumerate(program, start=1):
        value = "3" if action == "Incr" else value
        m = message(n, value, (("Key", value),), action=action)
        if peek:  # a dry run and a read of memory on one side only change nothing
            left.dry_run(m)
            left.memory()
        a, b = left.apply(m), right.apply(m)
        assert a == b
        assert (a.error is not None) == (action in ("Fail", "Loop"))
        assert left.memory() == right.memory()


DETERMINISM_PROBE = """
local t = {}
for i = 1, 60 do t["key" .. i] = i end
t[3] = "three"; t[1.5] = "x"; t[true] = "yes"; t[false] = "no"
local order = {}
for k in pairs(t) do order[#order + 1] = tostring(k) end
local records = {}
for i = 1, 300 do records[i] = { group = i % 4, i = i } end
table.sort(records, function(a, b) return a.group < b.group end)
local firsts = {}
for i = 1, 8 do firsts[i] = records[i].i end
math.randomseed()
return table.concat(order, ",") .. " | " .. tostring(next(t)) .. " | " .. tostring({})
  .. " " .. tostring(print) .. " " .. string.format("%s", {}) .. " | "
  .. table.concat(firsts, ",") .. " | " .. math.random(1, 10 ^ 9)
"""


def test_what_lua_leaves_to_the_state_is_the_same_on_every_runtime() -> None:
    # Lua seeds string hashes per state and hashes tables by address: raw `next` order,
    # tostring's addresses and table.sort's pivots would differ between compute units.
    outputs = {data(evaluate(runtime(), DETERMINISM_PROBE)) for _ in range(3)}
    assert len(outputs) == 1
    (output,) = outputs
    order, first, names, firsts, _ = output.split(" | ")
    keys = order.split(",")
    assert keys[:4] == ["false", "true", "1.5", "3"]
    assert keys[4:] == sorted(f"key{i}" for i in range(1, 61))
    assert first == "false"
    assert names == "table function table"
    assert firsts == "4,8,12,16,20,24,28,32"  # stable
    result = evaluate(runtime(), "return string.format('%p', {})")
    assert result.error is not None and "%p is not available" in result.error


def test_memory_format_distinguishes_integers_floats_and_shares() -> None:
    rt = runtime("A = 1\nB = 1.0\nC = 0.1\nD = -0.0\nE = {}\nF = E\nG2 = 1e308 * 10")
    memory = rt.memory()
    assert memory.startswith(b"AOMEM/1\n")
    assert b"s1:Ai1;" in memory and b"s1:Bd1;" in memory and b"s1:Cd0.1;" in memory
    assert b"s1:Dd-0;" in memory and b"s2:G2dinf;" in memory
    e_table = memory.index(b"s1:Et")
    ref = memory[e_table + 5 : memory.index(b":", e_table + 5)].decode()
    assert b"s1:Fr" + ref.encode() + b";" in memory
    other = runtime("A = 1\nB = 1\nC = 0.1\nD = -0.0\nE = {}\nF = E\nG2 = 1e308 * 10")
    assert other.memory() != memory


def test_memory_names_functions_by_their_first_path_with_upvalues() -> None:
    rt = runtime("local secret = 41\nfunction Get() return secret end\nAlso = Get")
    memory = rt.memory()
    assert b"s4:Alsof2:s7:_G.Alsos8:module:2(s6:secreti41;)" in memory
    assert b"s3:Getr2;" in memory


# Eval


def test_eval_output_is_the_prints_then_the_value() -> None:
    rt = runtime()
    result = evaluate(rt, "print('one'); print({ 2, x = 'y' }); return 40 + 2")
    assert result.output == {"data": 'one\n{ 2, x = "y" }\n42', "prompt": "tester@aos[Inbox:0]> "}
    assert data(evaluate(rt, "X = 5", 2)) == ""
    assert evaluate(rt, "return X", 3).output == {
        "data": "5",
        "prompt": "tester@aos[Inbox:0]> ",
    }


def test_eval_from_someone_else_is_not_run_and_lands_in_the_inbox() -> None:
    rt = runtime()
    result = rt.apply(message(1, "Hacked = true", action="Eval", sender=OTHER))
    assert data(result) == "New Message From QQQ...QQQ: Action = Eval"
    assert data(evaluate(rt, "return tostring(Hacked) .. #Inbox", 2)) == "nil1"


def test_eval_that_does_not_compile_is_an_error_naming_the_line() -> None:
    result = evaluate(runtime(), "x = 1\ny = = 2")
    assert result.error is not None and result.error.startswith("eval:2:")


# Handlers


HANDLERS_MODULE = """
Seen = {}
local function note(name) return function(msg) table.insert(Seen, name) end end
Handlers.add("first", function(msg)
  if msg.Mode == "break" then return "break" end
  return msg.Mode == "continue" and "continue" or 0
end, note("first"))
Handlers.add("second", function(msg)
  return msg.Mode == "one" and 1 or (msg.Mode == "minus" and -1 or "skip")
end, note("second"))
Handlers.add("bytag", { Action = "Tagged", Kind = "exact" }, note("bytag"))
Handlers.add("bypattern", { Action = "Pat", Kind = "^item%-%d+$" }, note("bypattern"))
Handlers.add("utiltag", Handlers.utils.hasMatchingTag("Action", "Util"), note("utiltag"))
Handlers.add("utildata", Handlers.utils.hasMatchingData("ping"), Handlers.utils.reply("pong"))
Handlers.add("last", function(msg) return msg.Mode ~= nil end, note("last"))
Handlers.add("string", "Plain", note("string"))
"""


def seen(rt: ProcessRuntime, n: int) -> str:
    return data(rt.apply(message(n, "return table.concat(Seen, ','), 0", action="Eval")))


@pytest.mark.parametrize(
    "tags, expected",
    [
        ((("Mode", "continue"),), "first,last"),
        ((("Mode", "break"),), "first"),
        ((("Mode", "one"),), "second,last"),
        ((("Mode", "minus"),), "second"),
        ((("Mode", "skip"),), "last"),
        ((("Action", "Tagged"), ("Kind", "exact")), "bytag"),
        ((("Action", "Tagged"), ("Kind", "exactly")), ""),
        ((("Action", "Pat"), ("Kind", "item-12")), "bypattern"),
        ((("Action", "Pat"), ("Kind", "item-x")), ""),
        ((("Action", "Util"),), "utiltag"),
        ((("Action", "Plain"),), "string"),
    ],
)
def test_handler_patterns_and_their_continue_break_skip(
    tags: tuple[tuple[str, str], ...], expected: str
) -> None:
    rt = runtime(HANDLERS_MODULE)
    assert rt.apply(message(1, "", tags)).error is None
    assert seen(rt, 2) == expected


def test_unhandled_message_goes_to_the_default_handler_and_inbox() -> None:
    rt = runtime(HANDLERS_MODULE)
    assert data(rt.apply(message(1, "hello", action="Nobody"))) == (
        "New Message From OOO...OOO: Action = Nobody"
    )
    assert data(evaluate(rt, "return #Inbox .. Inbox[1].Data", 2)) == "1hello"


def test_inbox_keeps_the_last_ten_thousand() -> None:
    rt = runtime()
    assert evaluate(rt, "for i = 1, 10000 do Inbox[i] = { Data = tostring(i) } end").error is None
    rt.apply(message(2, "newest", action="Nobody"))
    assert data(evaluate(rt, "return #Inbox .. Inbox[1].Data .. Inbox[10000].Data", 3)) == (
        "100002newest"
    )


def test_has_matching_data_and_reply() -> None:
    rt = runtime(HANDLERS_MODULE)
    result = rt.apply(message(1, "ping"))
    assert [m["Data"] for m in result.messages] == ["pong"]
    assert result.messages[0]["Target"] == OWNER


def test_prepend_once_remove_and_update_by_name() -> None:
    rt = runtime(HANDLERS_MODULE)
    code = """
    Handlers.prepend("front", { Action = "Tagged" }, function() table.insert(Seen, "front") end)
    Handlers.once("one-shot", { Action = "Tagged" }, function() table.insert(Seen, "once") end)
    Handlers.remove("bytag")
    Handlers.add("second", { Action = "Tagged" }, function() table.insert(Seen, "second'") end)
    local names = {}
    for _, h in ipairs(Handlers.list) do names[#names + 1] = h.name end
    return table.concat(names, ",")
    """
    names = data(evaluate(rt, code))
    assert (
        names == "one-shot,front,first,second,bypattern,utiltag,utildata,last,string,_eval,_default"
    )
    tagged = message(2, "", (("Action", "Tagged"), ("Kind", "exact"), ("Mode", "x")))
    rt.apply(tagged)
    assert seen(rt, 3) == "once"  # a once handler's pattern true breaks
    rt.apply(message(4, "", (("Action", "Tagged"), ("Mode", "x"))))
    assert seen(rt, 5) == "once,front"


def test_handle_as_a_table_of_resolvers() -> None:
    rt = runtime(
        "Handlers.add('r', {Action='R'}, { [{Kind='a'}] = function() print('A') end, "
        "[{Kind='b'}] = function() print('B') end })"
    )
    assert data(rt.apply(message(1, "", (("Kind", "b"),), action="R"))) == "B"


# The message as the process sees it


def test_message_fields_tags_as_list_and_table_and_os_time() -> None:
    rt = runtime(
        "Handlers.add('look', {Action = 'Look'}, function(msg)\n"
        "  print(msg.Action, msg['X-Prompt'], msg.Tags['X-Prompt'], msg.TagArray[2].name,\n"
        "    #msg.TagArray, msg.From, msg.Owner, msg.Id, msg.Data, msg.Timestamp,\n"
        "    msg['Block-Height'], os.time(), ao.id, ao.env.Process.Id, ao.env.Process.Owner,\n"
        "    ao.env.Process.Tags.Name, Owner, Name)\n"
        "end)"
    )
    m = message(
        3,
        "the data",
        (("X-Prompt", "Who are you?"), ("Data-Protocol", "ao")),
        action="Look",
        timestamp=1234,
    )
    fields = data(rt.apply(m)).split("\t")
    assert fields == [
        "Look",
        "Who are you?",
        "Who are you?",
        "X-Prompt",
        "3",
        OWNER,
        OWNER,
        m.id,
        "the data",
        "1234",
        "13",
        "1234",
        PID,
        PID,
        OWNER,
        "tester",
        OWNER,
        "tester",
    ]


def test_json_content_type_data_is_decoded() -> None:
    rt = runtime("Handlers.add('j', {Action='J'}, function(m) print(m.Data.a + 1) end)")
    m = message(1, '{"a": 41}', (("Content-Type", "application/json"),), action="J")
    assert data(rt.apply(m)) == "42"


# Sends, replies, spawns


def test_send_shape_reference_anchor_and_tag_order() -> None:
    rt = runtime()
    code = (
        "Send({ Target = 'T1', Data = 'hi', Zeta = 'z', Alpha = 1, Tags = { Extra = 'e' } }); "
        "ao.send({ Target = 'T2', Data = { k = 'v' } })"
    )
    result = evaluate(rt, code)
    first, second = result.messages
    assert first == {
        "Target": "T1",
        "Data": "hi",
        "Anchor": "0" * 31 + "1",
        "Tags": [
            {"name": "Data-Protocol", "value": "ao"},
            {"name": "Variant", "value": "ao.TN.1"},
            {"name": "Type", "value": "Message"},
            {"name": "Reference", "value": "1"},
            {"name": "Alpha", "value": "1"},
            {"name": "Zeta", "value": "z"},
            {"name": "Extra", "value": "e"},
        ],
    }
    assert second["Data"] == '{"k":"v"}' and second["Anchor"].endswith("02")
    assert tags_of(second)["Content-Type"] == "application/json"
    assert Result(output="", messages=result.messages).to_json()["Messages"] == result.messages


def test_reply_carries_x_reference_and_targets_the_sender() -> None:
    rt = runtime(
        "Handlers.add('q', {Action='Q'}, function(m) m.reply({ Action = 'A', Data = 'ok' }) end)"
    )
    result = rt.apply(message(1, "", (("Reference", "7"),), action="Q", sender=OTHER))
    (reply,) = result.messages
    assert reply["Target"] == OTHER
    assert tags_of(reply)["X-Reference"] == "7" and tags_of(reply)["Action"] == "A"
    pushed = rt.apply(message(2, "", (("X-Reference", "abc"), ("Reference", "9")), action="Q"))
    assert tags_of(pushed.messages[0])["X-Reference"] == "abc"


def test_spawn_shape() -> None:
    result = evaluate(runtime(), "Spawn('mod-id', { Data = 'init', Name = 'child' })")
    (spawn,) = result.spawns
    assert spawn["Data"] == "init" and spawn["Anchor"] == "0" * 31 + "1"
    assert tags_of(spawn) == {
        "Data-Protocol": "ao",
        "Variant": "ao.TN.1",
        "Type": "Process",
        "From-Process": PID,
        "From-Module": MODULE,
        "Module": "mod-id",
        "Reference": "1",
        "Name": "child",
    }


@pytest.mark.parametrize(
    "code, error",
    [
        ("ao.outbox.Messages = 5", "ao.outbox.Messages is not a list"),
        ("table.insert(ao.outbox.Messages, { Target = 'x' })", "Messages[1].Data is not a string"),
        (
            "table.insert(ao.outbox.Spawns, { Data = 'd', Anchor = 'a', Tags = { 1 } })",
            "Spawns[1].Tags[1] is not a {name, value} of strings",
        ),
        (
            "error(setmetatable({ code = 7 }, { __tostring = function() while true do end end }))",
            'error object: {"code":7}',
        ),
        ("error(print)", "error object: a function"),
    ],
)
def test_what_the_process_leaves_in_the_outbox_is_checked(code: str, error: str) -> None:
    rt = runtime()
    before = rt.memory()
    result = evaluate(rt, code)
    assert result.error is not None and error in result.error
    assert rt.memory() == before


def test_a_tag_value_that_is_a_table_is_an_error() -> None:
    result = evaluate(runtime(), "Send({ Target = 'x', Bad = {} })")
    assert result.error is not None and "tag Bad: a value must be a string" in result.error


# json


SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=SURROGATES)),
    lambda inner: (
        st.lists(inner, max_size=4).filter(lambda v: None not in v)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4).filter(
            lambda v: None not in v.values()
        )
    ),
    max_leaves=12,
).filter(lambda v: v is not None)


def typed(value: Any) -> Any:
    """The value with its types made visible (1 and 1.0, [] and {} differ)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value if value != 0 else math.copysign(1, value))
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, dict):
        if not value:
            return ("list", [])  # an empty table is []
        return ("dict", sorted((k, typed(v)) for k, v in value.items()))
    return ("str", value)


JSON_MODULE = (
    "local json = require('json')\n"
    "Handlers.add('rt', {Action='RoundTrip'}, function(m)\n"
    "  m.reply({ Data = json.encode(json.decode(m.Data)) })\nend)"
)
JSON_RUNTIME = runtime(JSON_MODULE)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_json_round_trips_through_lua(value: Any) -> None:
    text = json.dumps(value)
    result = JSON_RUNTIME.apply(message(1, text, action="RoundTrip"))
    assert result.error is None, result.error
    encoded = result.messages[0]["Data"]
    assert typed(json.loads(encoded)) == typed(value)
    again = JSON_RUNTIME.apply(message(2, encoded, action="RoundTrip")).messages[0]["Data"]
    assert again == encoded  # deterministic


def test_json_encode_sorts_keys_and_rejects_what_json_cannot_hold() -> None:
    rt = runtime()
    code = "return require('json').encode({ b = 1, a = { 1.5, 2.0, 'x\\n' }, c = {} })"
    assert data(evaluate(rt, code)) == '{"a":[1.5,2.0,"x\\n"],"b":1,"c":[]}'
    for bad, why in (
        ("{ [1] = 1, x = 2 }", "mixed or sparse"),
        ("{ 0/0 }", "cannot encode"),
        ("{ print }", "type function"),
    ):
        result = evaluate(rt, f"return require('json').encode({bad})", 2)
        assert result.error is not None and why in result.error
    result = evaluate(rt, "return require('json').decode('[1, 2')", 3)
    assert result.error is not None and "position" in result.error


# math.random


def test_math_random_is_seeded_from_the_message_id() -> None:
    code = (
        "local t = {} for i = 1, 5 do t[i] = math.random(1, 1000000) end "
        "return table.concat(t, ',')"
    )
    a, b = runtime(), runtime()
    first = data(a.apply(message(7, code, action="Eval")))
    evaluate(b, "math.random(); X = 1", 1)  # other messages before change nothing
    assert data(b.apply(message(7, code, action="Eval"))) == first
    assert data(a.apply(message(8, code, action="Eval"))) != first
    assert data(a.apply(message(7, code, action="Eval"))) == first


@pytest.mark.parametrize("as_module", [False, True])
def test_apus_send_examples_send_what_the_document_says(as_module: bool) -> None:
    if as_module:
        rt = runtime(APUS_BUY_CREDITS + "\n" + APUS_INFER)
        transfer, infer = rt.load_result.messages
    else:
        rt = runtime()
        transfer = evaluate(rt, APUS_BUY_CREDITS, 1).messages[0]
        infer = evaluate(rt, APUS_INFER, 2).messages[0]
    assert transfer["Target"] == APUS_TOKEN
    assert {
        "Action": "Transfer",
        "Recipient": APUS_ROUTER,
        "Quantity": "1000000000000",
        "X-Reason": "Buy-Credits",
    }.items() <= tags_of(transfer).items()
    assert infer["Target"] == APUS_ROUTER
    infer_tags = tags_of(infer)
    assert infer_tags["Action"] == "Infer" and infer_tags["X-Prompt"] == "Who are you?"
    assert json.loads(infer_tags["X-Options"]) == {"temperature": 0.8, "max_tokens": 150}
    assert tags_of(infer)["Reference"] == "2"


@pytest.mark.parametrize("as_module", [True, False])
def test_apus_handler_example_as_printed_runs_its_slash_line_a_comment(as_module: bool) -> None:
    # The document's handler has a `//` comment, which Lua reads as floor division: a text
    # that does not compile is tried again with such lines made `--` comments (PROTOCOL 8.8),
    # as a module and through Eval, and the handler then prints what it was given.
    response = (("Action", "Infer-Response"), ("X-Reference", "r-1"), ("X-Session", "s-1"))
    rt = runtime(APUS_HANDLER) if as_module else runtime()
    if not as_module:
        assert evaluate(rt, APUS_HANDLER).error is None
    result = rt.apply(message(9, tags=response, data='{"result": "hi"}'))
    assert data(result) == '{"result": "hi"}\nr-1\ns-1'


def test_slash_lines_are_read_as_comments_only_when_the_text_does_not_compile() -> None:
    kept = runtime('Text = "a\\n// not a comment"\nN = 7 // 2')
    assert kept.read(["N"]) == 3 and kept.read(["Text"]) == "a\n// not a comment"
    with pytest.raises(ModuleError) as raised:
        runtime("// a comment\nlocal x = = 1")
    assert raised.value.line == 1  # the text's own error, as it was given
    result = evaluate(runtime(), "// a comment\nreturn 1 +")
    assert result.error is not None and result.error.startswith("eval:1:")


def infer_response(n: int, body: str, *extra: tuple[str, str]) -> Message:
    return Message(
        id=f"r{n:042d}",
        slot=n,
        owner=OWNER,
        from_=APUS_ROUTER,
        target=PID,
        tags=(("Action", "Infer-Response"), *extra),
        data=body,
        timestamp_ms=1,
        block_height=1,
        from_process=APUS_ROUTER,
        cron=False,
    )


def test_apus_handler_example_with_a_lua_comment_handles_infer_responses() -> None:
    handler = APUS_HANDLER.replace("// check", "-- check")
    rt = runtime()
    assert evaluate(rt, handler).error is None
    names = (
        "local n = {} for _, h in ipairs(Handlers.list) do n[#n + 1] = h.name end "
        "return table.concat(n, ',')"
    )
    assert data(evaluate(rt, names, 2)) == "_eval,_default,AcceptResponse"
    body = '{"attestation":"att","result":"I am Gemma."}'
    ok = rt.apply(infer_response(3, body, ("X-Reference", "ref-1"), ("X-Session", "s-1")))
    assert data(ok) == f"{body}\nref-1\ns-1"
    failed = rt.apply(
        infer_response(4, "quota exceeded", ("Code", "402"), ("X-Reference", "ref-2"))
    )
    assert data(failed) == "402\nquota exceeded\nquota exceeded\nref-2\nnil"
    assert data(evaluate(rt, "return #Inbox", 5)) == "0"
