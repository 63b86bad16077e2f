"""Dev mode (PROTOCOL 5.4): a dev account of a genesis with `dev` may leave out `signature`
(and `nonce`); the node fills the next nonce and signs, like an unlocked account, and checks
everything else as usual. Without `dev`, an unsigned call is -32004.

The tests that need unlocked accounts skip on a target without them; the last one runs only
on such a target.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.support import (
    DEAD,
    DEV_WALLETS,
    TASK_RECEIPT_KEYS,
    Api,
    Target,
    check_task_object,
    fresh_wallet,
    unique,
)


def unlocked(caps: Target, tasks: bool = False) -> str:
    """A funded dev account, unlocked on this target, other than the one that funds the
    other tests' senders. Tasks come from another one than transfers: a task that fails at
    its deadline refunds its sender at some later block."""
    if len(caps.funded) < 3:
        pytest.skip("needs three dev accounts with funds on the target")
    return caps.funded[-2 if tasks else -1].address


async def next_nonce(api: Api, address: str) -> int:
    account = await api.client.get_account(address)
    return int(account.get("pendingNonce", account["nonce"]))


async def test_unsigned_transfer_gets_the_next_nonce(
    api: Api, caps: Target, dev_mode: None
) -> None:
    sender = unlocked(caps)
    recipient = fresh_wallet().address
    nonce = await next_nonce(api, sender)
    params = {"sender": sender, "to": recipient, "amount": "21"}
    first = await api.result("transfer", params)
    second = await api.result("transfer", params)
    for receipt in (first, second):
        assert set(receipt) == {"txHash"}
    assert first["txHash"] != second["txHash"]
    records = [await api.committed(r["txHash"]) for r in (first, second)]
    assert all(r["signer"] == sender and r["tx_type"] == "transfer" for r in records)
    signed = [await api.result("getTransaction", [r["txHash"]]) for r in (first, second)]
    assert [full.get("params", full)["nonce"] for full in signed] == [nonce, nonce + 1]
    assert (await api.client.get_account(recipient))["balance"] == "42"
    assert await next_nonce(api, sender) == nonce + 2


async def test_unsigned_task_with_and_without_nonce(api: Api, caps: Target, dev_mode: None) -> None:
    sender = unlocked(caps, tasks=True)
    params: dict[str, Any] = {
        "sender": sender,
        "schema": "text",
        "targetCount": 1,
        "prompts": unique("dev mode"),
        "modelOptions": "",
    }
    receipt = await api.result("submitRequest", params)
    assert set(receipt) == TASK_RECEIPT_KEYS and receipt["taskHash"] == receipt["requestHash"]
    nonce = await next_nonce(api, sender)
    explicit = await api.result("submitTask", {**params, "nonce": nonce})
    for item in (receipt, explicit):
        await api.committed(item["txHash"])
        task = await api.client.query_task(item["taskHash"])
        check_task_object(task)
        assert task["sender"] == sender and task["txHash"] == item["txHash"]
    assert (await api.client.query_task(explicit["taskHash"]))["nonce"] == nonce


async def test_unsigned_calls_are_checked_as_usual(api: Api, caps: Target, dev_mode: None) -> None:
    sender = unlocked(caps)
    nonce = await next_nonce(api, sender)
    watch = (sender, DEAD)
    transfer = {"sender": sender, "to": DEAD, "amount": "1"}
    data = await api.error("transfer", {**transfer, "nonce": nonce + 3}, -32000, watch=watch)
    assert int(data["expected"]) == nonce
    balance = int((await api.client.get_account(sender))["balance"])
    await api.error("transfer", {**transfer, "amount": str(balance + 1)}, -32002, watch=watch)
    await api.error("stake", {"sender": sender, "amount": str(balance + 1)}, -32002, watch=watch)
    await api.error("transfer", {**transfer, "memo": "x"}, -32602, watch=watch)
    await api.error("transfer", {**transfer, "to": "0x12"}, -32602, watch=watch)


async def test_unsigned_call_of_another_account_is_invalid_signature(
    api: Api, dev_mode: None
) -> None:
    stranger = fresh_wallet().address
    await api.error("transfer", {"sender": stranger, "to": DEAD, "amount": "1"}, -32004)


async def test_without_dev_mode_an_unsigned_call_is_invalid_signature(
    api: Api, caps: Target
) -> None:
    if caps.dev_mode:
        pytest.skip("the target has unlocked dev accounts")
    params = {"sender": DEV_WALLETS[0].address, "to": DEAD, "amount": "1"}
    await api.error("transfer", params, -32004, watch=(DEV_WALLETS[0].address,))
