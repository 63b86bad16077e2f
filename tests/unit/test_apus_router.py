"""APUS's AI router (ao/processes/router.lua) on the AO runtime, fed the messages the chain
would schedule: credits bought and refunded, every Infer row (each refusal changing nothing),
Task-Status from the bridge only and final once, sessions, the cache its routes read, and a
hypothesis model of credits and task statistics over random steps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ao.processes import source
from ao.runtime import Limits, Message, ModuleError, ProcessInfo, ProcessRuntime, Result

ROUTER = "R" * 43
TOKEN = "T" * 43
OWNER = "0x" + "0" * 40
BRIDGE = "0xAbCdEf0000000000000000000000000000000001"
ALICE = "A" * 43
BOB = "B" * 43
MODULE = "M" * 43
RATE = 10**10
LIMITS = Limits(memory_bytes=32 << 20, compute_instructions=50_000_000)
BASE_TAGS = (("Token", TOKEN), ("Bridge", BRIDGE))


def router(*tags: tuple[str, str]) -> ProcessRuntime:
    info = ProcessInfo(id=ROUTER, owner=OWNER, module_id=MODULE, tags=(*BASE_TAGS, *tags))
    return ProcessRuntime(source("router"), info, LIMITS)


def tags_of(sent: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["value"] for t in sent["Tags"]}


@dataclass
class Feed:
    """Numbers the messages sent to one router runtime."""

    rt: ProcessRuntime = field(default_factory=router)
    slot: int = 0

    def send(self, sender: str, *tags: tuple[str, str], data: str = "") -> Result:
        self.slot += 1
        message = Message(
            id=f"m{self.slot:042d}",
            slot=self.slot,
            owner=sender if sender.startswith("0x") else OWNER,
            from_=sender,
            target=ROUTER,
            tags=tags,
            data=data,
            timestamp_ms=1_700_000_000_000 + 1000 * self.slot,
            block_height=self.slot,
        )
        result = self.rt.apply(message)
        assert result.error is None, result.error
        return result

    def last_id(self) -> str:
        return f"m{self.slot:042d}"

    def buy(self, client: str, quantity: int, reason: str | None = "Buy-Credits") -> Result:
        tags = [("Action", "Credit-Notice"), ("Sender", client), ("Quantity", str(quantity))]
        if reason is not None:
            tags.append(("X-Reason", reason))
        return self.send(TOKEN, *tags)

    def infer(self, client: str, *tags: tuple[str, str]) -> Result:
        return self.send(client, ("Action", "Infer"), *tags)

    def status(self, key: str, status: str, data: str = "", sender: str = BRIDGE) -> Result:
        return self.send(
            sender,
            ("Action", "Task-Status"),
            ("Task-Reference", key),
            ("Status", status),
            ("Task-Hash", "0x" + "ab" * 32),
            ("Worker", "0x" + "11" * 20),
            data=data,
        )

    def read(self, *path: str) -> Any:
        return self.rt.read(list(path))

    def state(self) -> Any:
        return self.read("cache"), self.read("Pending"), self.read("Sessions")

    def credits(self, client: str) -> int:
        return int(self.read("cache", "credits").get(client, 0))


SUCCESS = json.dumps({"result": "I am a model.", "attestation": {"taskHash": "0xab"}})


# Spawn


@pytest.mark.parametrize("missing", ["Token", "Bridge"])
def test_a_router_without_its_token_or_bridge_does_not_load(missing: str) -> None:
    tags = tuple(t for t in BASE_TAGS if t[0] != missing)
    info = ProcessInfo(id=ROUTER, owner=OWNER, module_id=MODULE, tags=tags)
    with pytest.raises(ModuleError, match=missing):
        ProcessRuntime(source("router"), info, LIMITS)


@pytest.mark.parametrize("tag", ["Armstrongs-Per-Credit", "Infer-Price", "Target-Count"])
@pytest.mark.parametrize("value", ["-1", "x", "1.5", ""])
def test_a_bad_setting_is_refused_naming_it(tag: str, value: str) -> None:
    with pytest.raises(ModuleError, match=tag):
        router((tag, value))


def test_the_defaults_and_info() -> None:
    feed = Feed()
    assert feed.read("Router") == {
        "armstrongs_per_credit": RATE,
        "bridge": BRIDGE.lower(),
        "model": "gemma3-27b",
        "price": 1,
        "target_count": 1,
        "token": TOKEN,
    }
    (answer,) = feed.send(ALICE, ("Action", "Info")).messages
    assert answer["Target"] == ALICE
    info = tags_of(answer)
    assert (info["Token"], info["Infer-Price"], info["Armstrongs-Per-Credit"]) == (
        TOKEN,
        "1",
        str(RATE),
    )


# Credits


def test_buy_credits_adds_the_quotient_and_refunds_the_remainder() -> None:
    feed = Feed()
    refund, purchase = feed.buy(ALICE, 3 * RATE + 7).messages
    assert feed.credits(ALICE) == 3
    assert refund["Target"] == TOKEN
    assert {
        "Action": "Transfer",
        "Recipient": ALICE,
        "Quantity": "7",
        "X-Reason": "Refund",
    }.items() <= tags_of(refund).items()
    assert purchase["Target"] == ALICE
    assert {"Action": "Credit-Purchase", "Credits": "3", "Refund": "7", "Balance": "3"}.items() <= (
        tags_of(purchase).items()
    )
    (purchase,) = feed.buy(ALICE, RATE).messages  # no remainder: nothing sent back
    assert tags_of(purchase)["Balance"] == "4" and feed.credits(ALICE) == 4


@pytest.mark.parametrize("reason", [None, "Something-Else"])
def test_a_transfer_without_the_reason_is_sent_back_whole(reason: str | None) -> None:
    feed = Feed()
    (refund,) = feed.buy(ALICE, 5 * RATE, reason).messages
    assert tags_of(refund)["Quantity"] == str(5 * RATE) and refund["Target"] == TOKEN
    assert feed.credits(ALICE) == 0


def test_only_the_tokens_credit_notice_counts_and_a_debit_notice_does_nothing() -> None:
    feed = Feed()
    before = feed.state()
    result = feed.send(
        BOB,
        ("Action", "Credit-Notice"),
        ("Sender", BOB),
        ("Quantity", str(RATE)),
        ("X-Reason", "Buy-Credits"),
    )
    assert result.messages == [] and feed.state() == before
    result = feed.send(TOKEN, ("Action", "Debit-Notice"), ("Quantity", "5"))
    assert result.messages == [] and feed.state() == before


def test_the_largest_quantity_buys_exactly() -> None:
    feed = Feed()
    largest = 2**63 - 1
    feed.buy(ALICE, largest)
    assert feed.credits(ALICE) == largest // RATE


# Infer


def funded(credits: int = 10) -> Feed:
    feed = Feed()
    feed.buy(ALICE, credits * RATE)
    return feed


def test_an_accepted_infer_costs_a_credit_and_is_pending_with_every_field() -> None:
    feed = funded()
    result = feed.infer(ALICE, ("X-Prompt", "Who are you?"), ("X-Reference", "r1"))
    assert result.messages == []
    assert feed.credits(ALICE) == 9
    session = f"session-{feed.last_id()}"
    task = feed.read("cache", "tasks", f"{ALICE}-r1")
    assert task == {
        "status": "pending",
        "created_at": 1_700_000_000 + feed.slot,
        "processed_at": 0,
        "prompt": "Who are you?",
        "options": "{}",
        "session_id": session,
        "result": "",
        "client": ALICE,
        "worker": "",
        "reference": "r1",
        "task_hash": "",
    }
    assert feed.read("Pending", f"{ALICE}-r1") == {
        "client": ALICE,
        "reference": "r1",
        "prompts": "Who are you?",
        "options": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 2048},
    }
    assert feed.read("cache", "taskStats") == {
        "total_tasks": 1,
        "pending": 1,
        "processing": 0,
        "successed": 0,
        "failed": 0,
    }


def test_the_reference_defaults_to_the_message_id() -> None:
    feed = funded()
    feed.infer(ALICE, ("X-Prompt", "hi"))
    assert feed.read("cache", "tasks", f"{ALICE}-{feed.last_id()}")["reference"] == feed.last_id()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('{"temperature": 0, "top_p": 0, "max_tokens": 1}', (0, 0, 1)),
        ('{"temperature": 2, "top_p": 1, "max_tokens": 8192}', (2, 1, 8192)),
        ('{"temperature": 0.8, "max_tokens": 150}', (0.8, 0.9, 150)),
        ("  {}", (0.7, 0.9, 2048)),
    ],
)
def test_options_at_their_bounds_are_taken(options: str, expected: tuple[float, ...]) -> None:
    feed = funded()
    feed.infer(ALICE, ("X-Prompt", "hi"), ("X-Reference", "r"), ("X-Options", options))
    got = feed.read("Pending", f"{ALICE}-r", "options")
    assert (got["temperature"], got["top_p"], got["max_tokens"]) == expected
    assert feed.read("cache", "tasks", f"{ALICE}-r", "options") == options


ERROR_ROWS = [
    ((), "INVALID_PROMPT", "X-Prompt"),
    ((("X-Prompt", ""),), "INVALID_PROMPT", "X-Prompt"),
    ((("X-Options", '{"colour": 1}'),), "INVALID_OPTIONS", "colour"),
    ((("X-Options", '{"temperature": 2.5}'),), "INVALID_OPTIONS", "temperature"),
    ((("X-Options", '{"temperature": -0.1}'),), "INVALID_OPTIONS", "temperature"),
    ((("X-Options", '{"top_p": 1.5}'),), "INVALID_OPTIONS", "top_p"),
    ((("X-Options", '{"max_tokens": 0}'),), "INVALID_OPTIONS", "max_tokens"),
    ((("X-Options", '{"max_tokens": 8193}'),), "INVALID_OPTIONS", "max_tokens"),
    ((("X-Options", '{"max_tokens": 1.5}'),), "INVALID_OPTIONS", "integer"),
    ((("X-Options", '{"temperature": "hot"}'),), "INVALID_OPTIONS", "number"),
    ((("X-Options", "{not json"),), "INVALID_OPTIONS", "JSON"),
    ((("X-Options", "[1, 2]"),), "INVALID_OPTIONS", "JSON object"),
    ((("X-Session", "session-nobody"),), "INVALID_SESSION", "session-nobody"),
]


@pytest.mark.parametrize(("tags", "code", "named"), ERROR_ROWS)
def test_each_refused_infer_answers_its_code_and_changes_nothing(
    tags: tuple[tuple[str, str], ...], code: str, named: str
) -> None:
    feed = funded()
    prompt = () if code == "INVALID_PROMPT" else (("X-Prompt", "hi"),)
    before = feed.state()
    (answer,) = feed.infer(ALICE, *prompt, ("X-Reference", "bad"), *tags).messages
    assert feed.state() == before
    assert answer["Target"] == ALICE
    sent = tags_of(answer)
    assert sent["Action"] == "Infer-Response" and sent["Code"] == code
    assert named in sent["X-Reference"] and answer["Data"] == sent["X-Reference"]
    assert sent["Request-Reference"] == "bad"


def test_no_credits_and_a_used_reference_are_refused() -> None:
    feed = Feed()
    before = feed.state()
    (answer,) = feed.infer(ALICE, ("X-Prompt", "hi"), ("X-Reference", "r")).messages
    assert tags_of(answer)["Code"] == "INSUFFICIENT_CREDITS" and feed.state() == before
    feed.buy(ALICE, RATE)
    feed.infer(ALICE, ("X-Prompt", "hi"), ("X-Reference", "r"))
    feed.buy(ALICE, RATE)
    before = feed.state()
    (answer,) = feed.infer(ALICE, ("X-Prompt", "again"), ("X-Reference", "r")).messages
    assert tags_of(answer)["Code"] == "DUPLICATE_REFERENCE" and feed.state() == before
    # the same reference of another client is another task
    feed.buy(BOB, RATE)
    assert feed.infer(BOB, ("X-Prompt", "hi"), ("X-Reference", "r")).messages == []


def test_a_session_belongs_to_its_client() -> None:
    feed = funded()
    feed.buy(BOB, RATE)
    feed.infer(ALICE, ("X-Prompt", "hi"), ("X-Reference", "r"))
    session = feed.read("cache", "tasks", f"{ALICE}-r", "session_id")
    before = feed.state()
    (answer,) = feed.infer(BOB, ("X-Prompt", "hi"), ("X-Session", session)).messages
    assert tags_of(answer)["Code"] == "INVALID_SESSION" and feed.state() == before


# Task-Status


def accepted(reference: str = "r") -> Feed:
    feed = funded()
    feed.infer(ALICE, ("X-Prompt", "Who are you?"), ("X-Reference", reference))
    return feed


def test_processing_then_successed_sends_one_infer_response() -> None:
    feed = accepted()
    key = f"{ALICE}-r"
    assert feed.status(key, "processing").messages == []
    task = feed.read("cache", "tasks", key)
    assert task["status"] == "processing" and task["task_hash"] == "0x" + "ab" * 32
    (response,) = feed.status(key, "successed", SUCCESS).messages
    assert response["Target"] == ALICE
    sent = tags_of(response)
    assert sent["Action"] == "Infer-Response" and "Code" not in sent
    assert sent["X-Reference"] == "r" and sent["X-Session"] == task["session_id"]
    assert json.loads(response["Data"]) == json.loads(SUCCESS)
    task = feed.read("cache", "tasks", key)
    assert task["status"] == "successed" and task["result"] == "I am a model."
    assert task["worker"] == "0x" + "11" * 20 and task["processed_at"] > 0
    assert feed.read("Pending") == {}
    assert feed.read("cache", "taskStats")["successed"] == 1
    # anything after the final status is ignored: exactly one Infer-Response
    before = feed.state()
    for status, data in (("successed", SUCCESS), ("failed", "late"), ("processing", "")):
        assert feed.status(key, status, data).messages == []
    assert feed.state() == before


def test_failed_gives_the_credit_back_and_answers_task_failed() -> None:
    feed = accepted()
    key = f"{ALICE}-r"
    assert feed.credits(ALICE) == 9
    (response,) = feed.status(key, "failed", "the task is failed").messages
    sent = tags_of(response)
    assert sent["Code"] == "TASK_FAILED" and "the task is failed" in sent["X-Reference"]
    assert sent["Request-Reference"] == "r"
    assert feed.credits(ALICE) == 10
    assert feed.read("cache", "tasks", key, "status") == "failed"
    assert feed.read("Pending") == {}


def test_task_status_from_anyone_but_the_bridge_or_about_nothing_is_ignored() -> None:
    feed = accepted()
    key = f"{ALICE}-r"
    before = feed.state()
    assert feed.status(key, "successed", SUCCESS, sender=ALICE).messages == []
    assert feed.status(f"{ALICE}-nothing", "successed", SUCCESS).messages == []
    assert feed.status(key, "successed", "not json").messages == []
    assert feed.status(key, "successed", json.dumps({"result": 5})).messages == []
    assert feed.state() == before
    # the bridge's address in another case is the bridge
    (response,) = feed.status(key, "successed", SUCCESS, sender="0x" + BRIDGE[2:].upper()).messages
    assert tags_of(response)["Action"] == "Infer-Response"


def test_a_session_over_three_turns_prefixes_the_earlier_turns() -> None:
    feed = funded()
    session = None
    prompts = ["one?", "two?", "three?"]
    for turn, prompt in enumerate(prompts):
        tags = [("X-Prompt", prompt), ("X-Reference", f"t{turn}")]
        if session is not None:
            tags.append(("X-Session", session))
        feed.infer(ALICE, *tags)
        key = f"{ALICE}-t{turn}"
        session = feed.read("cache", "tasks", key, "session_id")
        pending = feed.read("Pending", key, "prompts")
        earlier = "".join(
            f"User: {p}\nAssistant: answer {i}\n" for i, p in enumerate(prompts[:turn])
        )
        assert pending == (prompt if turn == 0 else earlier + f"User: {prompt}\nAssistant:")
        feed.status(key, "successed", json.dumps({"result": f"answer {turn}", "attestation": {}}))
    assert session == f"session-m{2:042d}"  # made by the first Infer (slot 2, after the buy)


def test_the_session_prefix_leaves_out_the_oldest_turns_past_64_kib() -> None:
    feed = funded()
    big = "x" * 3000
    session = None
    for turn in range(30):
        tags = [("X-Prompt", f"p{turn}"), ("X-Reference", f"t{turn}")]
        if session is not None:
            tags.append(("X-Session", session))
        feed.buy(ALICE, RATE)
        feed.infer(ALICE, *tags)
        key = f"{ALICE}-t{turn}"
        session = feed.read("cache", "tasks", key, "session_id")
        prompts = feed.read("Pending", key, "prompts")
        assert len(prompts.encode()) <= 65536
        feed.status(key, "successed", json.dumps({"result": big + str(turn), "attestation": {}}))
    assert "p28" in prompts and "p0\n" not in prompts and prompts.endswith("User: p29\nAssistant:")


# A model of credits and statistics


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.sampled_from([ALICE, BOB]), st.integers(0, 5 * RATE)),
        st.tuples(st.just("infer"), st.sampled_from([ALICE, BOB]), st.integers(0, 3)),
        st.tuples(
            st.just("status"),
            st.integers(0, 8),
            st.sampled_from(["processing", "successed", "failed"]),
        ),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None)
@given(STEPS)
def test_credits_and_stats_follow_the_model(steps: list[tuple[Any, ...]]) -> None:
    feed = Feed()
    credits = {ALICE: 0, BOB: 0}
    tasks: dict[str, str] = {}  # key -> status
    order: list[str] = []
    for step in steps:
        if step[0] == "buy":
            _, client, quantity = step
            feed.buy(client, quantity)
            credits[client] += quantity // RATE
        elif step[0] == "infer":
            _, client, ref = step
            key = f"{client}-{ref}"
            answer = feed.infer(client, ("X-Prompt", "q"), ("X-Reference", str(ref)))
            if key in tasks or credits[client] < 1:
                assert answer.messages and "Code" in tags_of(answer.messages[0])
            else:
                assert answer.messages == []
                credits[client] -= 1
                tasks[key] = "pending"
                order.append(key)
        else:
            _, index, status = step
            if not order:
                continue
            key = order[index % len(order)]
            data = SUCCESS if status == "successed" else "why"
            answer = feed.status(key, status, data)
            current = tasks[key]
            if current in ("successed", "failed"):
                assert answer.messages == []
            elif status == "processing":
                tasks[key] = "processing" if current == "pending" else current
            else:
                tasks[key] = status
                (response,) = answer.messages
                assert tags_of(response)["Action"] == "Infer-Response"
                if status == "failed":
                    credits[key.split("-")[0]] += 1
        for client, amount in credits.items():
            assert feed.credits(client) == amount
        stats = feed.read("cache", "taskStats")
        assert stats["total_tasks"] == len(tasks)
        for status in ("pending", "processing", "successed", "failed"):
            assert stats[status] == sum(1 for s in tasks.values() if s == status)
        open_keys = {k for k, s in tasks.items() if s in ("pending", "processing")}
        assert set(feed.read("Pending")) == open_keys
