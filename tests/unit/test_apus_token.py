"""The APUS token process (ao/processes/token.lua) on the AO runtime: every action, every
refusal (each checked to change no balance), the notices' exact tags with the X- tags
forwarded, a hypothesis model of transfers, mints and the faucet (the supply is the sum of
the balances, none negative), and the memory of two runtimes fed the same messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ao.processes import source
from ao.runtime import Limits, Message, ModuleError, ProcessInfo, ProcessRuntime, Result

TOKEN = "T" * 43
OWNER = "O" * 42
ALICE = "A" * 43
BOB = "B" * 43
ROUTER = "R" * 43
MODULE = "M" * 43
APUS = 10**12
MAX = 2**63 - 1
LIMITS = Limits(memory_bytes=8 << 20, compute_instructions=5_000_000)
BASE = [("Data-Protocol", "ao"), ("Variant", "ao.TN.1"), ("Type", "Message")]
Tags = tuple[tuple[str, str], ...]


def token(*tags: tuple[str, str]) -> ProcessRuntime:
    info = ProcessInfo(id=TOKEN, owner=OWNER, module_id=MODULE, tags=tags)
    return ProcessRuntime(source("token"), info, LIMITS)


class Feed:
    """Numbers the messages sent to one token runtime."""

    def __init__(self, rt: ProcessRuntime) -> None:
        self.rt = rt
        self.slot = 0

    def message(self, action: str, *tags: tuple[str, str], sender: str) -> Message:
        self.slot += 1
        return Message(
            id=f"m{self.slot:042d}",
            slot=self.slot,
            owner=sender,
            from_=sender,
            target=TOKEN,
            tags=(("Action", action), *tags),
            data="",
            timestamp_ms=1_700_000_000_000 + self.slot,
            block_height=self.slot,
        )

    def send(self, action: str, *tags: tuple[str, str], sender: str = OWNER) -> Result:
        result = self.rt.apply(self.message(action, *tags, sender=sender))
        assert result.error is None, result.error
        return result

    def ask(self, action: str, *tags: tuple[str, str], sender: str = OWNER) -> Result:
        result = self.rt.dry_run(self.message(action, *tags, sender=sender))
        assert result.error is None, result.error
        return result

    def balances(self) -> dict[str, str]:
        (answer,) = self.ask("Balances").messages
        decoded = json.loads(answer["Data"])
        assert isinstance(decoded, dict)
        return decoded

    def supply(self) -> int:
        (answer,) = self.ask("Total-Supply").messages
        return int(answer["Data"])

    def state(self) -> tuple[dict[str, str], int]:
        return self.balances(), self.supply()


def tags_of(sent: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["name"], t["value"]) for t in sent["Tags"]]


def only(result: Result) -> dict[str, Any]:
    (sent,) = result.messages
    return sent


def expect(sent: dict[str, Any], target: str, reference: int, *tags: tuple[str, str]) -> None:
    assert sent["Target"] == target
    assert tags_of(sent) == [*BASE, ("Reference", str(reference)), *tags]


# Spawn


def test_the_owner_holds_the_initial_supply() -> None:
    feed = Feed(token(("Initial-Supply", str(5 * APUS))))
    assert feed.state() == ({OWNER: str(5 * APUS)}, 5 * APUS)


def test_without_initial_supply_nobody_holds_anything() -> None:
    feed = Feed(token())
    assert feed.state() == ({}, 0)
    assert only(feed.ask("Balances"))["Data"] == "{}"


@pytest.mark.parametrize(
    "supply, error",
    [
        ("-1", 'Initial-Supply must be a whole number of Armstrongs in decimal digits, got "-1"'),
        ("1.5", 'Initial-Supply must be a whole number of Armstrongs in decimal digits, got "1.5"'),
        ("", 'Initial-Supply must be a whole number of Armstrongs in decimal digits, got ""'),
        (str(MAX + 1), f"Initial-Supply is too large: at most {MAX}"),
    ],
)
def test_a_bad_initial_supply_fails_the_spawn_naming_the_tag(supply: str, error: str) -> None:
    with pytest.raises(ModuleError) as raised:
        token(("Initial-Supply", supply))
    assert raised.value.text == error


def test_the_largest_initial_supply_is_the_largest_integer() -> None:
    assert Feed(token(("Initial-Supply", str(MAX)))).supply() == MAX


# Reads


def test_info_gives_the_token_parameters() -> None:
    feed = Feed(token())
    expect(
        only(feed.send("Info", sender=ALICE)),
        ALICE,
        1,
        ("Denomination", "12"),
        ("Name", "APUS"),
        ("Ticker", "APUS"),
    )
    logo = "L" * 43
    with_logo = Feed(token(("Logo", logo)))
    assert ("Logo", logo) in tags_of(only(with_logo.send("Info")))


def test_balance_of_the_sender_the_recipient_or_the_target_tag() -> None:
    feed = Feed(token(("Initial-Supply", "700")))
    feed.send("Transfer", ("Recipient", ALICE), ("Quantity", "200"))
    expect(
        only(feed.send("Balance", sender=ALICE)),
        ALICE,
        3,
        ("Account", ALICE),
        ("Balance", "200"),
        ("Ticker", "APUS"),
    )
    assert only(feed.send("Balance", sender=ALICE))["Data"] == "200"
    of_owner = only(feed.send("Balance", ("Recipient", OWNER), sender=BOB))
    assert of_owner["Target"] == BOB
    assert ("Account", OWNER) in tags_of(of_owner) and of_owner["Data"] == "500"
    by_target = only(feed.send("Balance", ("Target", ALICE), sender=BOB))
    assert ("Account", ALICE) in tags_of(by_target) and by_target["Data"] == "200"
    both = only(feed.send("Balance", ("Recipient", OWNER), ("Target", ALICE), sender=BOB))
    assert both["Data"] == "500"
    nobody = only(feed.send("Balance", sender=BOB))
    assert ("Account", BOB) in tags_of(nobody) and nobody["Data"] == "0"


def test_balances_is_a_json_object_of_decimal_texts_in_key_order() -> None:
    feed = Feed(token(("Initial-Supply", "1000")))
    feed.send("Transfer", ("Recipient", BOB), ("Quantity", "300"))
    feed.send("Transfer", ("Recipient", ALICE), ("Quantity", "7"))
    sent = only(feed.send("Balances", sender=BOB))
    assert sent["Target"] == BOB
    assert sent["Data"] == json.dumps({ALICE: "7", BOB: "300", OWNER: "693"}, separators=(",", ":"))


def test_total_supply() -> None:
    feed = Feed(token(("Initial-Supply", "42")))
    expect(
        only(feed.send("Total-Supply", sender=ALICE)),
        ALICE,
        1,
        ("Action", "Total-Supply"),
        ("Ticker", "APUS"),
    )
    assert only(feed.send("Total-Supply"))["Data"] == "42"


# Transfer


def test_transfer_moves_the_quantity_and_sends_both_notices() -> None:
    feed = Feed(token(("Initial-Supply", str(3 * APUS))))
    result = feed.send("Transfer", ("Recipient", ALICE), ("Quantity", str(APUS)))
    debit, credit = result.messages
    expect(
        debit,
        OWNER,
        1,
        ("Action", "Debit-Notice"),
        ("Quantity", str(APUS)),
        ("Recipient", ALICE),
        ("Sender", OWNER),
    )
    assert debit["Data"] == f"You transferred {APUS} to {ALICE}"
    expect(
        credit,
        ALICE,
        2,
        ("Action", "Credit-Notice"),
        ("Quantity", str(APUS)),
        ("Recipient", ALICE),
        ("Sender", OWNER),
    )
    assert credit["Data"] == f"You received {APUS} from {OWNER}"
    assert feed.state() == ({ALICE: str(APUS), OWNER: str(2 * APUS)}, 3 * APUS)


def test_a_buy_credits_transfer_forwards_every_x_tag_to_both_notices() -> None:
    """The router's purchase: the Credit-Notice it receives names the buyer (Sender), the
    Quantity and X-Reason; the buyer's Debit-Notice answers its Transfer (X-Reference)."""
    feed = Feed(token(("Initial-Supply", str(2 * APUS))))
    feed.send("Transfer", ("Recipient", ALICE), ("Quantity", str(2 * APUS)))
    tags = (
        ("Recipient", ROUTER),
        ("Quantity", str(APUS)),
        ("X-Reason", "Buy-Credits"),
        ("X-Reference", "buy-1"),
        ("X-Note", "first"),
        ("X-Note", "second"),
        ("Reference", "9"),
        ("Memo", "not forwarded"),
    )
    debit, credit = feed.send("Transfer", *tags, sender=ALICE).messages
    forwarded = [("X-Note", "second"), ("X-Reason", "Buy-Credits"), ("X-Reference", "buy-1")]
    expect(
        debit,
        ALICE,
        3,
        ("Action", "Debit-Notice"),
        ("Quantity", str(APUS)),
        ("Recipient", ROUTER),
        ("Sender", ALICE),
        *forwarded,
    )
    expect(
        credit,
        ROUTER,
        4,
        ("Action", "Credit-Notice"),
        ("Quantity", str(APUS)),
        ("Recipient", ROUTER),
        ("Sender", ALICE),
        *forwarded,
    )
    assert feed.balances() == {ALICE: str(APUS), ROUTER: str(APUS)}


def test_the_debit_notice_answers_a_transfer_by_its_reference() -> None:
    feed = Feed(token(("Initial-Supply", "10")))
    debit, credit = feed.send(
        "Transfer", ("Recipient", ALICE), ("Quantity", "4"), ("Reference", "17")
    ).messages
    assert ("X-Reference", "17") in tags_of(debit)
    assert all(name != "X-Reference" for name, _ in tags_of(credit))


def test_a_quantity_with_leading_zeros_is_the_number_it_spells() -> None:
    feed = Feed(token(("Initial-Supply", "10")))
    debit, _ = feed.send("Transfer", ("Recipient", ALICE), ("Quantity", "007")).messages
    assert ("Quantity", "7") in tags_of(debit)
    assert feed.balances() == {ALICE: "7", OWNER: "3"}


def test_a_cast_transfer_sends_no_notice() -> None:
    feed = Feed(token(("Initial-Supply", "10")))
    result = feed.send("Transfer", ("Recipient", ALICE), ("Quantity", "10"), ("Cast", "true"))
    assert result.messages == []
    assert feed.state() == ({ALICE: "10"}, 10)


def test_a_transfer_to_oneself_changes_no_balance() -> None:
    feed = Feed(token(("Initial-Supply", "10")))
    debit, credit = feed.send("Transfer", ("Recipient", OWNER), ("Quantity", "10")).messages
    assert debit["Target"] == credit["Target"] == OWNER
    assert feed.state() == ({OWNER: "10"}, 10)


def test_an_account_emptied_leaves_balances() -> None:
    feed = Feed(token(("Initial-Supply", "10")))
    feed.send("Transfer", ("Recipient", ALICE), ("Quantity", "10"))
    assert feed.balances() == {ALICE: "10"}


DIGITS = "Quantity must be a whole number of Armstrongs in decimal digits, got "


@pytest.mark.parametrize(
    "tags, error",
    [
        ((("Quantity", "1"),), "Recipient is required!"),
        ((("Recipient", ""), ("Quantity", "1")), "Recipient is required!"),
        ((("Recipient", ALICE),), "Quantity is required!"),
        ((("Recipient", ALICE), ("Quantity", "0")), "Quantity must be greater than 0"),
        ((("Recipient", ALICE), ("Quantity", "000")), "Quantity must be greater than 0"),
        ((("Recipient", ALICE), ("Quantity", "-5")), DIGITS + '"-5"'),
        ((("Recipient", ALICE), ("Quantity", "+5")), DIGITS + '"+5"'),
        ((("Recipient", ALICE), ("Quantity", "ten")), DIGITS + '"ten"'),
        ((("Recipient", ALICE), ("Quantity", "1.5")), DIGITS + '"1.5"'),
        ((("Recipient", ALICE), ("Quantity", "1e3")), DIGITS + '"1e3"'),
        ((("Recipient", ALICE), ("Quantity", " 5")), DIGITS + '" 5"'),
        ((("Recipient", ALICE), ("Quantity", "0x10")), DIGITS + '"0x10"'),
        ((("Recipient", ALICE), ("Quantity", "")), DIGITS + '""'),
        ((("Recipient", ALICE), ("Quantity", "x" * 100)), DIGITS + '"' + "x" * 64 + '"'),
        ((("Recipient", ALICE), ("Quantity", "9" * 100)), f"Quantity is too large: at most {MAX}"),
        (
            (("Recipient", ALICE), ("Quantity", str(MAX + 1))),
            f"Quantity is too large: at most {MAX}",
        ),
        ((("Recipient", ALICE), ("Quantity", "1001")), "Insufficient Balance!"),
        ((("Recipient", ALICE), ("Quantity", str(MAX))), "Insufficient Balance!"),
    ],
)
def test_a_refused_transfer_answers_transfer_error_and_changes_nothing(
    tags: Tags, error: str
) -> None:
    feed = Feed(token(("Initial-Supply", "1000")))
    before = feed.state()
    result = feed.send("Transfer", *tags, ("X-Reason", "Buy-Credits"), sender=OWNER)
    expect(
        only(result),
        OWNER,
        1,
        ("Action", "Transfer-Error"),
        ("Error", error),
        ("Message-Id", f"m{feed.slot:042d}"),
    )
    assert feed.state() == before


def test_a_sender_with_no_balance_is_refused() -> None:
    feed = Feed(token(("Initial-Supply", "1000")))
    result = feed.send("Transfer", ("Recipient", OWNER), ("Quantity", "1"), sender=ALICE)
    sent = only(result)
    assert sent["Target"] == ALICE
    assert ("Error", "Insufficient Balance!") in tags_of(sent)
    assert feed.state() == ({OWNER: "1000"}, 1000)


# Mint


def test_the_owner_mints_to_itself_or_to_a_recipient() -> None:
    feed = Feed(token(("Initial-Supply", "5")))
    expect(
        only(feed.send("Mint", ("Quantity", "10"))),
        OWNER,
        1,
        ("Action", "Mint-Notice"),
        ("Quantity", "10"),
        ("Recipient", OWNER),
    )
    sent = only(feed.send("Mint", ("Quantity", "20"), ("Recipient", ALICE)))
    assert sent["Target"] == OWNER and ("Recipient", ALICE) in tags_of(sent)
    assert sent["Data"] == "Successfully minted 20"
    assert feed.state() == ({ALICE: "20", OWNER: "15"}, 35)


@pytest.mark.parametrize(
    "sender, tags, error",
    [
        (ALICE, (("Quantity", "10"),), "Only the process owner can mint new APUS tokens!"),
        (TOKEN, (("Quantity", "10"),), "Only the process owner can mint new APUS tokens!"),
        (OWNER, (), "Quantity is required!"),
        (OWNER, (("Quantity", "0"),), "Quantity must be greater than 0"),
        (OWNER, (("Quantity", "-1"),), DIGITS + '"-1"'),
        (OWNER, (("Quantity", "2.0"),), DIGITS + '"2.0"'),
        (OWNER, (("Quantity", "1"), ("Recipient", "")), "Recipient must be an account id"),
        (OWNER, (("Quantity", str(MAX - 4)),), f"Total supply would exceed {MAX}"),
    ],
)
def test_a_refused_mint_answers_mint_error_and_changes_nothing(
    sender: str, tags: Tags, error: str
) -> None:
    feed = Feed(token(("Initial-Supply", "5")))
    before = feed.state()
    expect(
        only(feed.send("Mint", *tags, sender=sender)),
        sender,
        1,
        ("Action", "Mint-Error"),
        ("Error", error),
        ("Message-Id", f"m{feed.slot:042d}"),
    )
    assert feed.state() == before


def test_a_mint_up_to_the_largest_supply_is_allowed() -> None:
    feed = Feed(token(("Initial-Supply", "5")))
    feed.send("Mint", ("Quantity", str(MAX - 5)), ("Recipient", ALICE))
    assert feed.state() == ({ALICE: str(MAX - 5), OWNER: "5"}, MAX)


# Faucet


def test_the_faucet_gives_the_caller_ten_apus_with_a_credit_notice() -> None:
    feed = Feed(token(("Faucet", "enabled"), ("Initial-Supply", "1")))
    result = feed.send("Faucet", ("X-Reference", "tap"), sender=ALICE)
    expect(
        only(result),
        ALICE,
        1,
        ("Action", "Credit-Notice"),
        ("Quantity", str(10 * APUS)),
        ("Recipient", ALICE),
        ("Sender", TOKEN),
        ("X-Reference", "tap"),
    )
    feed.send("Faucet", sender=ALICE)
    assert feed.state() == ({ALICE: str(20 * APUS), OWNER: "1"}, 20 * APUS + 1)


@pytest.mark.parametrize(
    "tags, error",
    [
        ((), "The faucet is not enabled on this token"),
        ((("Faucet", "true"),), "The faucet is not enabled on this token"),
        ((("Faucet", "Enabled"),), "The faucet is not enabled on this token"),
        (
            (("Faucet", "enabled"), ("Initial-Supply", str(MAX - 10 * APUS + 1))),
            f"Total supply would exceed {MAX}",
        ),
    ],
)
def test_a_refused_faucet_answers_faucet_error_and_changes_nothing(tags: Tags, error: str) -> None:
    feed = Feed(token(*tags))
    before = feed.state()
    expect(
        only(feed.send("Faucet", sender=ALICE)),
        ALICE,
        1,
        ("Action", "Faucet-Error"),
        ("Error", error),
        ("Message-Id", f"m{feed.slot:042d}"),
    )
    assert feed.state() == before


# The rules over any sequence: a model of the ledger


ACCOUNTS = (OWNER, ALICE, BOB, ROUTER)


@dataclass
class Model:
    """What the token must hold: balances (no zero entries) and the supply."""

    balances: dict[str, int] = field(default_factory=dict)
    supply: int = 0

    def credit(self, account: str, quantity: int) -> None:
        self.balances[account] = self.balances.get(account, 0) + quantity
        self.supply += quantity

    def transfer(self, sender: str, recipient: str, quantity: int) -> bool:
        held = self.balances.get(sender, 0)
        if not 0 < quantity <= held:
            return False
        self.balances[sender] = held - quantity
        self.balances[recipient] = self.balances.get(recipient, 0) + quantity
        self.balances = {a: b for a, b in self.balances.items() if b != 0}
        return True


account = st.sampled_from(ACCOUNTS)
quantity = st.integers(min_value=0, max_value=3 * APUS)
step = st.one_of(
    st.tuples(st.just("Transfer"), account, account, quantity),
    st.tuples(st.just("Mint"), account, account, quantity),
    st.tuples(st.just("Faucet"), account, account, st.just(0)),
)
Step = tuple[str, str, str, int]


def run(feed: Feed, model: Model, item: Step) -> None:
    action, sender, recipient, amount = item
    if action == "Transfer":
        result = feed.send(
            "Transfer", ("Recipient", recipient), ("Quantity", str(amount)), sender=sender
        )
        done = model.transfer(sender, recipient, amount)
        actions = [dict(tags_of(m))["Action"] for m in result.messages]
        assert actions == (["Debit-Notice", "Credit-Notice"] if done else ["Transfer-Error"])
    elif action == "Mint":
        feed.send("Mint", ("Recipient", recipient), ("Quantity", str(amount)), sender=sender)
        if sender == OWNER and amount > 0:
            model.credit(recipient, amount)
    else:
        feed.send("Faucet", sender=sender)
        model.credit(sender, 10 * APUS)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=5 * APUS), st.lists(step, max_size=25))
def test_the_supply_is_the_sum_of_the_balances_after_every_step(
    initial: int, steps: list[Step]
) -> None:
    feed = Feed(token(("Faucet", "enabled"), ("Initial-Supply", str(initial))))
    model = Model()
    if initial:
        model.credit(OWNER, initial)
    for item in steps:
        run(feed, model, item)
        balances, supply = feed.state()
        amounts = {a: int(b) for a, b in balances.items()}
        assert all(b == str(int(b)) for b in balances.values())
        assert all(b > 0 for b in amounts.values())
        assert supply == sum(amounts.values())
        assert (amounts, supply) == (model.balances, model.supply)


@settings(max_examples=20, deadline=None)
@given(st.lists(step, max_size=20))
def test_two_runtimes_fed_the_same_messages_have_the_same_memory(steps: list[Step]) -> None:
    feeds = [Feed(token(("Faucet", "enabled"), ("Initial-Supply", str(APUS)))) for _ in "ab"]
    for feed in feeds:
        model = Model(balances={OWNER: APUS}, supply=APUS)
        for item in steps:
            run(feed, model, item)
    first, second = (feed.rt.memory() for feed in feeds)
    assert first == second
    assert b"Balances" in first and b"TotalSupply" in first
