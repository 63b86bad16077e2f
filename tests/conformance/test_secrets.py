"""The extension methods of forced errors (PROTOCOL 4.12, 4.13), commitSecrets and
revealSecret, refused with their codes (-32000, -32004, -32005, -32602 naming the param),
the table's message and nothing changed; and a verdict by a node not assigned to the result
(PROTOCOL 4.5: -32005 with data.reason "not assigned"), where the target can be driven there.

Over HTTP only, as the rest of the suite: any target with the dev mnemonic's accounts.
"""

from __future__ import annotations

from typing import Any

import pytest

from chain.protocol import crypto
from chain.protocol.types import CommitSecrets, RegisterResourceNode, RevealSecret
from rpc.client import RpcError, Wallet, presign
from tests.conformance.support import (
    E18,
    Api,
    Target,
    fresh_wallet,
    unique,
)

NODE_STAKE = 1000 * E18  # minNodeStake of the shipped genesis (PROTOCOL 2)
FEE_ROOM = E18 // 1000  # for the fee of the transfer back


async def commit_tx(api: Api, wallet: Wallet, nonce: int, head: str) -> dict[str, Any]:
    msg = CommitSecrets(wallet.address, nonce, bytes.fromhex(head[2:]))
    return await presign_params(api, wallet, msg)


async def reveal_tx(api: Api, wallet: Wallet, height: int, secret: bytes) -> dict[str, Any]:
    return await presign_params(api, wallet, RevealSecret(wallet.address, height, secret))


async def presign_params(api: Api, wallet: Wallet, msg: Any) -> dict[str, Any]:
    return dict(presign(msg, await api.chain_id(), wallet.private_key).params)


async def node_entry(api: Api, address: str) -> dict[str, Any] | None:
    listed = [n for n in await api.client.get_resource_nodes() if n["address"] == address]
    return listed[0] if listed else None


async def registered_node(api: Api) -> Wallet:
    """A fresh key registered as a resource node (no stake, no secrets)."""
    node = fresh_wallet()
    msg = RegisterResourceNode(node.address, 0, "*", "")
    tx = presign(msg, await api.chain_id(), node.private_key)
    await api.client.send_presigned(tx)
    await api.committed(tx.tx_hash)
    return node


# commitSecrets


async def test_commit_secrets_refusals(api: Api) -> None:
    stranger = fresh_wallet()
    head = "0x" + crypto.dev_secrets_head(stranger.private_key).hex()
    watch = (stranger.address,)
    # -32000: the nonce comes first
    params = await commit_tx(api, stranger, 3, head)
    data = await api.error("commitSecrets", params, -32000, watch=watch)
    assert int(data["expected"]) == 0
    # -32602: the zero hash, a head that is no hash
    params = await commit_tx(api, stranger, 0, "0x" + "00" * 32)
    await api.error("commitSecrets", params, -32602, mentions=("head",), watch=watch)
    for bad in ("0x12", "", 7, None):
        params = {**await commit_tx(api, stranger, 0, head), "head": bad}
        await api.error("commitSecrets", params, -32602, mentions=("head",), watch=watch)
    # -32004: signed by another key
    params = await commit_tx(api, stranger, 0, head)
    other = await commit_tx(api, fresh_wallet(), 0, head)
    await api.error("commitSecrets", {**params, "signature": other["signature"]}, -32004)
    # -32005: not a registered resource node
    data = await api.error(
        "commitSecrets", params, -32005, mentions=(stranger.address,), watch=watch
    )
    assert data["reason"]
    assert await node_entry(api, stranger.address) is None


async def test_commit_secrets_of_a_registered_node(api: Api) -> None:
    """A registered node commits a chain: getResourceNodes shows it from that block."""
    node = await registered_node(api)
    entry = await node_entry(api, node.address)
    assert entry is not None and entry.get("secrets") is None
    head = "0x" + crypto.dev_secrets_head(node.private_key).hex()
    tx_hash = await api.client.commit_secrets(node, bytes.fromhex(head[2:]))
    record = await api.committed(tx_hash)
    entry = await node_entry(api, node.address)
    assert entry is not None
    assert entry["secrets"] == {
        "base": record["blockHeight"],
        "head": head,
        "revealed": head,
        "revealedHeight": record["blockHeight"],
    }


# revealSecret


async def test_reveal_secret_refusals(api: Api) -> None:
    stranger = fresh_wallet()
    secret = b"\x11" * 32
    # -32005: not a registered node
    params = await reveal_tx(api, stranger, 1, secret)
    await api.error("revealSecret", params, -32005, mentions=(stranger.address,))
    # -32602: no height, a height that is no number, a secret that is no hash
    for name, bad in (("height", "x"), ("height", -1), ("secret", "0x12"), ("secret", None)):
        await api.error("revealSecret", {**params, name: bad}, -32602, mentions=(name,))
    # -32004: signed over another height
    await api.error("revealSecret", {**params, "height": 2}, -32004)
    # -32005: registered, but no secrets committed
    node = await registered_node(api)
    params = await reveal_tx(api, node, 1, secret)
    data = await api.error("revealSecret", params, -32005, mentions=(node.address,))
    assert data["reason"] == "no secrets committed"


async def test_reveal_secret_checks_height_and_secret(api: Api) -> None:
    """A node with a chain committed here: a height not above the last revealed or beyond the
    block's height, and a secret that does not hash to the last revealed: -32602 naming it,
    and the node's secrets unchanged. Then its good secret is taken."""
    node = await registered_node(api)
    seed = crypto.secrets_seed(node.private_key)
    head = crypto.dev_secrets_head(node.private_key)
    base = (await api.committed(await api.client.commit_secrets(node, head)))["blockHeight"]

    def secret_of(height: int) -> bytes:
        return crypto.hash_steps(seed, crypto.SECRET_CHAIN_LENGTH - (height - base))

    before = await node_entry(api, node.address)
    head_height = await api.client.block_number()
    for height in (base, base - 1, head_height + 1000):
        if height < 0:
            continue
        params = await reveal_tx(api, node, height, secret_of(height))
        await api.error("revealSecret", params, -32602, mentions=("height",))
    for wrong in (b"\x11" * 32, secret_of(base + 2), head):
        params = await reveal_tx(api, node, base + 1, wrong)
        await api.error("revealSecret", params, -32602, mentions=("secret",))
    assert await node_entry(api, node.address) == before

    tx_hash = await api.client.reveal_secret(node, base + 1, secret_of(base + 1))
    await api.committed(tx_hash)
    entry = await node_entry(api, node.address)
    assert entry is not None
    assert entry["secrets"]["revealedHeight"] == base + 1
    assert entry["secrets"]["revealed"] == "0x" + secret_of(base + 1).hex()


# A verdict by a node not assigned to the result (PROTOCOL 4.5)


async def test_a_verdict_by_a_node_not_assigned(
    api: Api, caps: Target, sender: Wallet, nodes: list[Wallet]
) -> None:
    """A fourth node, staked for this test, makes three candidates for a dev node's result;
    round 0 takes verificationQuorum of them, and a candidate left out is refused. The
    fourth node's funds go back to the dev account that lent them."""
    funder = caps.funded[0]
    if int((await api.client.get_account(funder.address))["balance"]) < 2 * NODE_STAKE:
        pytest.skip(f"{funder.address} cannot lend a resource node its stake")
    extra = fresh_wallet()
    await api.committed(await api.client.transfer(funder, extra.address, NODE_STAKE + FEE_ROOM))
    await api.committed(await api.client.stake(extra, NODE_STAKE))
    await api.committed(await api.client.register_resource_node(extra, "*", ""))
    try:
        try:
            await api.client.query_pending_tasks(extra, limit=1)
        except RpcError as exc:
            pytest.skip(f"{NODE_STAKE} base units of stake are not enough here: {exc}")
        submitter = nodes[0]
        task = await api.open_task(sender, target_count=1, label="not assigned")
        result = await api.result_tx(submitter, task.task_hash, unique("answer"))
        assert await api.result("submitInferenceResult", result.params) is True
        await api.committed(result.tx_hash)
        rounds = await api.assigned(task.task_hash, submitter.address)
        keys = {w.address: w for w in (*nodes, extra)}
        left_out = [a for a in keys if a != submitter.address and a not in rounds[0]]
        if not left_out:
            pytest.skip("round 0 holds every candidate at this target's verificationQuorum")
        before = await api.client.query_task(task.task_hash)
        for address in left_out:
            verdict = await api.verdict_tx(keys[address], task.task_hash, submitter.address, True)
            data = await api.error("submitVerification", verdict.params, -32005, watch=(address,))
            assert data["reason"] == "not assigned", data
        assert await api.client.query_task(task.task_hash) == before
    finally:
        await api.committed(await api.client.unstake(extra, NODE_STAKE))
        await api.committed(await api.client.transfer(extra, funder.address, NODE_STAKE))
