"""A dev chain's chosen process ids (PROTOCOL 8.2, `Dev-Process-Id`), on an in-process
validator whose blocks the test makes: the process takes the id, its spawn's own id resolves
to it for messages, terminate and the reads, and every refusal (a taken id, a malformed one,
a chain without `aoAliases`) changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chain.protocol import ans104
from chain.protocol import ao as rules
from chain.protocol.genesis import dev_genesis, params_to_json, parse_genesis
from rpc.client import RpcError, Wallet
from tests.helpers import LocalChain, local_chain, make_genesis
from tests.rpc.support import mine

OWNER = Wallet.dev(1)
OTHER = Wallet.dev(2)
UNIT = Wallet.dev(9)
MODULE = "Count = Count or 0"
CHOSEN = "Bf6JJR2tl2Wr38O2-H6VctqtduxHgKF-NzRB9HhTRzo"
PARAM = "tags.Dev-Process-Id"


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[LocalChain]:
    genesis = make_genesis(ao_aliases=True)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as running:
        yield running


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[LocalChain]:
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


async def spawn(chain: LocalChain, chosen: str, sender: Wallet = OWNER) -> Any:
    return await chain.client.ao_spawn(
        sender, module=MODULE, scheduler=UNIT.address, tags=[("Dev-Process-Id", chosen)]
    )


async def refused(chain: LocalChain, chosen: str, reason: str) -> None:
    def held(account: dict[str, Any]) -> tuple[Any, Any]:
        return account["balance"], account["nonce"]

    account = held(await chain.client.get_account(OWNER.address))
    with pytest.raises(RpcError) as info:
        await spawn(chain, chosen)
    assert info.value.code == -32602
    assert info.value.data["param"] == PARAM and reason in info.value.data["reason"]
    chain.client.reset_nonce(OWNER.address)
    mine(chain)
    assert held(await chain.client.get_account(OWNER.address)) == account  # no fee, no nonce


async def test_the_dev_genesis_sets_ao_aliases_and_a_genesis_without_it_hashes_as_before() -> None:
    assert parse_genesis(dev_genesis()).params.ao_aliases is True
    plain = make_genesis()
    assert plain.params.ao_aliases is False
    assert "aoAliases" not in params_to_json(plain.params)
    assert params_to_json(make_genesis(ao_aliases=True).params)["aoAliases"] is True


async def test_a_spawn_takes_its_chosen_id_and_its_own_id_resolves_to_it(dev: LocalChain) -> None:
    client = dev.client
    receipt = await spawn(dev, CHOSEN)
    mine(dev)
    process = await client.ao_process(CHOSEN)
    assert process["id"] == CHOSEN and process["spawnId"] == receipt.id != CHOSEN
    assert await client.ao_process(receipt.id) == process
    assert await client.ao_processes() == [CHOSEN]
    # messages to either id take the process's slots
    first = await client.ao_message(OTHER, CHOSEN, data="one")
    second = await client.ao_message(OTHER, receipt.id, data="two")
    mine(dev)
    page = await client.ao_schedule(receipt.id)
    assert page == await client.ao_schedule(CHOSEN)
    assert [m["id"] for m in page["messages"]] == [receipt.id, first.id, second.id]
    assert all(m["process"] == CHOSEN for m in page["messages"])
    assert (await client.ao_message_by_id(receipt.id))["slot"] == 0
    # terminate by the spawn's own id
    await client.ao_terminate(OWNER, receipt.id)
    mine(dev)
    assert (await client.ao_process(CHOSEN))["terminated"] is True


async def test_a_data_item_spawn_chooses_its_id_too(dev: LocalChain) -> None:
    signer = ans104.EthereumSigner(OWNER.private_key)
    tags = [
        ans104.Tag("Type", "Process"),
        ans104.Tag("Scheduler", UNIT.address),
        ans104.Tag("Dev-Process-Id", CHOSEN),
    ]
    raw = ans104.serialize(ans104.create(signer=signer, data=MODULE.encode(), tags=tags))
    receipt = await dev.client.ao_data_item(UNIT, raw)
    mine(dev)
    process = await dev.client.ao_process(receipt.id)
    assert process["id"] == CHOSEN and process["spawnId"] == receipt.id
    message = ans104.serialize(
        ans104.create(
            signer=signer,
            data=b"hi",
            target=rules.id_bytes(receipt.id),
            tags=[ans104.Tag("Type", "Message")],
        )
    )
    sent = await dev.client.ao_data_item(UNIT, message)
    mine(dev)
    assert (await dev.client.ao_message_by_id(sent.id))["process"] == CHOSEN


async def test_a_taken_or_malformed_id_is_refused_and_changes_nothing(dev: LocalChain) -> None:
    first = await spawn(dev, CHOSEN)
    mine(dev)
    await refused(dev, CHOSEN, "taken")
    await refused(dev, first.id, "taken")  # the alias
    other = await dev.client.ao_spawn(OWNER, module=MODULE)
    mine(dev)
    await refused(dev, other.id, "taken")  # a process's own id
    await refused(dev, "not-an-id", "AO id")
    await refused(dev, CHOSEN[:-1] + "p", "AO id")  # not canonical: the low bits are set
    assert await dev.client.ao_processes() == [CHOSEN, other.id]


async def test_a_chain_without_ao_aliases_refuses_the_tag(plain: LocalChain) -> None:
    await refused(plain, CHOSEN, "aoAliases")
    assert await plain.client.ao_processes() == []
