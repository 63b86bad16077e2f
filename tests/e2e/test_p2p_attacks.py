"""The transport between validators (PROTOCOL 6.8) under attack, on four real validator
processes: a flood of badly signed transactions, requests past the item cap, consensus
messages of non-validators, forged request signatures, and the dev link control without its
token.

The attacker is a plain HTTP client on loopback, the address the validators share: what it
sends is not signed by a validator, so it gets the budget of one remote address, and the
validators' own traffic (signed) goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from chain.node.node import dev_validator_key
from chain.node.validators import RECOVER_THREAD_MIN
from chain.protocol import crypto, gossip, wire
from chain.protocol.consensus import PREVOTE, VoteMsg
from chain.protocol.genesis import DEV_MNEMONIC
from chain.protocol.gossip import RequestSigner, ValidatorKey
from chain.protocol.types import Transfer
from rpc.client import TransportError, Wallet
from rpc.p2p import HEIGHT_HEADER, MAX_BATCH_ITEMS
from tests.e2e.network import LocalNetwork, eventually
from tests.e2e.processes import StartValidator
from tests.helpers import make_genesis, write_genesis

FLOOD_TXS = 11_000
FLOOD_SENDERS = 4
BLOCKS_DURING_FLOOD = 3
WAIT_S = 60.0
# a dev account that is not a validator; its key signs the forgeries
OUTSIDER = ValidatorKey.from_account_key(crypto.dev_private_key(DEV_MNEMONIC, 0))
JSON = {"Content-Type": "application/json"}


def transfer_wire(chain_id: int, account: int, nonce: int, *, bad: bool) -> dict[str, Any]:
    """A Transfer as peers gossip it; `bad`: its nonce changed after signing, so its
    signature recovers to another address. Without the fields the receiver computes."""
    key = crypto.dev_private_key(DEV_MNEMONIC, account)
    address = crypto.address_of_private_key(key)
    obj = wire.signed_tx_to_json(
        crypto.sign_message(Transfer(address, nonce, address, 1), chain_id, key)
    )
    if bad:
        obj["message"]["nonce"] = nonce + 1
    return {k: obj[k] for k in ("type", "message", "signature")}


def badly_signed(chain_id: int, count: int) -> list[dict[str, Any]]:
    one = transfer_wire(chain_id, 6, 0, bad=True)
    return [{**one, "message": {**one["message"], "nonce": n + 1}} for n in range(count)]


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with session.post(
        url + "/p2p/messages", data=body, headers=JSON | (headers or {})
    ) as response:
        raw = await response.read()
        if not raw:  # 204: what the answer tells is the validator's height
            return response.status, {"height": response.headers.get(HEIGHT_HEADER)}
        return response.status, orjson.loads(raw)


def request(messages: Sequence[Any] = (), txs: Sequence[Any] = ()) -> bytes:
    return orjson.dumps({"messages": list(messages), "txs": list(txs)})


async def started(network: LocalNetwork) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 2)


async def test_a_flood_of_badly_signed_transactions_is_refused_while_the_chain_goes_on(
    network: LocalNetwork,
) -> None:
    await started(network)
    chain_id = network.genesis.chain_id
    bodies = [
        request(txs=badly_signed(chain_id, FLOOD_TXS)),  # 11,000 items, about 3.6 MiB
        request(txs=badly_signed(chain_id, MAX_BATCH_ITEMS)),  # the most one request holds
    ]
    answers: Counter[int] = Counter()
    unexplained: list[Any] = []
    stop = asyncio.Event()

    async def flood(session: aiohttp.ClientSession, index: int) -> None:
        while not stop.is_set():
            status, answer = await post(session, network.url(0), bodies[index % len(bodies)])
            answers[status] += 1
            if (
                status not in (400, 413, 429)
                or not isinstance(answer, dict)
                or "error" not in answer
            ):
                unexplained.append((status, answer))
            index += 1

    async def answered() -> int:
        return sum(answers.values())

    connector = aiohttp.TCPConnector(limit=FLOOD_SENDERS)
    async with aiohttp.ClientSession(connector=connector) as session:
        floods = [asyncio.create_task(flood(session, i)) for i in range(FLOOD_SENDERS)]
        try:
            await eventually(answered, bool, WAIT_S, "an answer to the flood")
            start = min((await network.heights([0, 1, 2, 3])).values())
            # an honest transfer through the flooded validator, committed on another one
            wallet = Wallet.dev(7)
            tx_hash = await network.client(0).transfer(wallet, Wallet.dev(8).address, 1)
            receipt = await network.client(2).wait_for_tx(tx_hash, timeout=WAIT_S)
            await network.wait_heights([0, 1, 2, 3], start + BLOCKS_DURING_FLOOD, WAIT_S)
            assert all(not f.done() for f in floods), [f.exception() for f in floods if f.done()]
        finally:
            stop.set()
            for task in floods:
                with contextlib.suppress(aiohttp.ClientError):
                    await task
    assert receipt["status"] == "committed", receipt
    assert not unexplained, unexplained[:3]
    assert answers[400] >= 1 and answers[429] >= 1, answers
    await network.assert_same_chain([0, 1, 2, 3], start + BLOCKS_DURING_FLOOD)


async def test_bad_requests_are_refused_naming_what_is_wrong_and_change_nothing(
    network: LocalNetwork,
) -> None:
    await started(network)
    chain_id = network.genesis.chain_id
    url = network.url(0)
    validator = RequestSigner(dev_validator_key(network.genesis, 1), chain_id)
    good = transfer_wire(chain_id, 5, 0, bad=False)
    sender = Wallet.dev(5).address
    async with aiohttp.ClientSession() as session:
        # past the item cap: refused before any item is decoded, signed by a validator or not
        body = request(txs=[{}] * (MAX_BATCH_ITEMS + 1))
        for headers in ({}, validator.headers(body, _now_ms())):
            status, answer = await post(session, url, body, headers)
            assert status == 400, answer
            assert f"at most {MAX_BATCH_ITEMS} items" in answer["error"]
            assert answer["limit"] == MAX_BATCH_ITEMS and answer["got"] == MAX_BATCH_ITEMS + 1

        # a badly signed transaction after a good one: refused at it, the good one not taken
        bad = transfer_wire(chain_id, 5, 1, bad=True)
        status, answer = await post(session, url, request(txs=[good, bad]))
        assert status == 400 and answer["error"].startswith("txs[1]: a bad transaction"), answer
        assert (await network.client(0).get_account(sender))["pendingNonce"] == 0
        before = await network.client(0).block_number()
        status, answer = await post(session, url, request(txs=[good]))
        assert status == 204, answer
        assert before <= int(answer["height"]) <= await network.client(0).block_number()
        assert (await network.client(0).get_account(sender))["pendingNonce"] == 1

        # the same in a batch large enough to be recovered on the recovery thread
        many = RECOVER_THREAD_MIN
        goods = [transfer_wire(chain_id, 5, n, bad=False) for n in range(1, many + 1)]
        bad = transfer_wire(chain_id, 5, many + 1, bad=True)
        status, answer = await post(session, url, request(txs=[*goods, bad]))
        assert status == 400 and answer["error"].startswith(f"txs[{many}]: a bad "), answer
        assert (await network.client(0).get_account(sender))["pendingNonce"] == 1
        status, answer = await post(session, url, request(txs=goods))
        assert status == 204, answer
        assert (await network.client(0).get_account(sender))["pendingNonce"] == 1 + many

        # votes of a non-validator: its own address, or a validator's with its own key
        height = max((await network.heights([0])).values()) + 1
        message = VoteMsg(height, 0, PREVOTE, None, OUTSIDER.address)
        vote = gossip.sign_vote(OUTSIDER, chain_id, message)
        own = gossip.vote_to_wire(vote)
        forged = {**own, "validator": validator.key.address}
        for obj, why in ((own, "who is not a validator"), (forged, "has a bad signature")):
            body = request(messages=[obj])
            for headers in ({}, validator.headers(body, _now_ms())):
                status, answer = await post(session, url, body, headers)
                assert status == 400, answer
                assert answer["error"].startswith("messages[0]: ") and why in answer["error"]

        # a request signed by a non-validator, or naming a validator it cannot sign for
        body = request(txs=[good])
        outsider = RequestSigner(OUTSIDER, chain_id).headers(body, _now_ms())
        posing = outsider | {gossip.VALIDATOR_HEADER: validator.key.address}
        stale = validator.headers(body, _now_ms() - 10 * gossip.MAX_CLOCK_SKEW_MS)
        for headers, why in (
            (outsider, "is not a validator"),
            (posing, "bad signature"),
            (stale, "off this validator's clock"),
        ):
            status, answer = await post(session, url, body, headers)
            assert status == 401 and why in answer["error"], answer
    # the network went on: the good transfers are committed everywhere
    await network.wait_heights([0, 1, 2, 3], height + 2, WAIT_S)
    for k in range(4):
        await eventually(
            lambda k=k: network.client(k).get_account(sender),  # type: ignore[misc]
            lambda account: account["nonce"] == 1 + RECOVER_THREAD_MIN,
            WAIT_S,
            f"the good transfers committed on validator {k}",
        )


async def test_the_dev_link_control_takes_effect_only_with_the_token(
    network: LocalNetwork,
) -> None:
    await started(network)
    client = network.client(0)
    links = await client.p2p_links()
    assert not any(link["drop"] for link in links.values())
    peer = network.url(1)
    for token, why in ((None, "no dev token"), ("0" * 64, "wrong dev token")):
        with pytest.raises(TransportError) as refused:
            await client.set_p2p_link(peer, token=token, drop=True)
        assert refused.value.status == 403 and why in str(refused.value)
        assert await client.p2p_links() == links
    token = network.dev_token(0)
    assert (network.data_dir(0) / gossip.DEV_TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    changed = await client.set_p2p_link(peer, token=token, drop=True)
    assert changed[peer]["drop"] and await client.p2p_links() == changed
    healed = await client.set_p2p_link("*", token=token, drop=False)
    assert healed == links


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            address: str = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_the_dev_link_control_refuses_a_caller_that_is_not_on_loopback(
    tmp_path: Path, validators: StartValidator
) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    genesis_path = write_genesis(tmp_path / "genesis.json", make_genesis())
    data_dir = tmp_path / "validator"
    process = validators(genesis_path, data_dir, "--host", "0.0.0.0")
    port = int(process.url.rsplit(":", 1)[1])
    token = (data_dir / gossip.DEV_TOKEN_FILE).read_text().strip()
    body = orjson.dumps({"peer": "*", "drop": True})
    headers = JSON | {gossip.DEV_TOKEN_HEADER: token}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"http://{address}:{port}/p2p/dev/links", data=body, headers=headers
        ) as response:
            status, answer = response.status, orjson.loads(await response.read())
        assert status == 403, answer
        assert f"loopback callers only, not {address}" in answer["error"]
        # the same request from loopback passes the check (a single validator has no links)
        async with session.post(
            f"http://127.0.0.1:{port}/p2p/dev/links", data=body, headers=headers
        ) as response:
            status, answer = response.status, orjson.loads(await response.read())
        assert status == 400 and answer["error"] == "this validator has no peers", answer


def _now_ms() -> int:
    return int(time.time() * 1000)
