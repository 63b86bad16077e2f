"""The dev controls (PROTOCOL 5.9), an extension after anvil's: on a target that has them,
the rows that change nothing (bad params, an unknown snapshot) and the harmless ones (a
snapshot taken, a block mined); on a target without them, -32601 naming the method. The
target is shared by the whole suite, so nothing here reverts or resets it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rpc.client import RpcError
from tests.conformance.support import DEAD, Api

DEV_METHODS = (
    ("dev_snapshot", {}),
    ("dev_revert", {"id": "0x1"}),
    ("dev_mine", {"blocks": 1}),
    ("dev_setNextBlockTimestamp", {"timestamp": 2**40}),
    ("dev_increaseTime", {"seconds": 0}),
    ("dev_setBalance", {"address": DEAD, "balance": "0"}),
    ("dev_reset", {}),
)
BAD = [
    ("dev_mine", {"blocks": 0}, "blocks"),
    ("dev_mine", {"blocks": "one"}, "blocks"),
    ("dev_revert", {"id": "snapshot"}, "id"),
    ("dev_revert", {}, "id"),
    ("dev_increaseTime", {"seconds": -1}, "seconds"),
    ("dev_setNextBlockTimestamp", {"timestamp": 0}, "timestamp"),
    ("dev_setBalance", {"address": "0xdead", "balance": "1"}, "address"),
    ("dev_setBalance", {"address": DEAD, "balance": 1.5}, "balance"),
]


async def has_dev_controls(api: Api) -> bool:
    try:
        await api.client.call("dev_snapshot")
    except RpcError as exc:
        if exc.code == -32601:
            return False
        raise
    return True


@pytest.fixture
async def dev_controls(api: Api) -> None:
    if not await has_dev_controls(api):
        pytest.skip("the target has no dev controls (PROTOCOL 5.9)")


async def test_a_snapshot_is_an_id_and_an_unknown_one_does_not_revert(
    api: Api, dev_controls: None
) -> None:
    snapshot = await api.result("dev_snapshot")
    assert isinstance(snapshot, str) and re.fullmatch(r"0x[0-9a-f]+", snapshot)
    assert await api.result("dev_revert", {"id": "0xffffffffffff"}) is False


async def test_dev_mine_makes_blocks_now(api: Api, dev_controls: None) -> None:
    before = await api.result("blockNumber")
    height = await api.result("dev_mine", {"blocks": 2})
    assert height >= before + 2
    assert await api.result("blockNumber") >= height


@pytest.mark.parametrize(("method", "params", "param"), BAD)
async def test_bad_params_name_the_param_and_change_nothing(
    api: Api, dev_controls: None, method: str, params: dict[str, Any], param: str
) -> None:
    data = await api.error(method, params, -32602, watch=(DEAD,))
    assert data["param"] == param


@pytest.mark.parametrize(("method", "params"), DEV_METHODS)
async def test_without_dev_controls_each_is_method_not_found(
    api: Api, method: str, params: dict[str, Any]
) -> None:
    if await has_dev_controls(api):
        pytest.skip("the target has dev controls")
    data = await api.error(method, params, -32601, watch=(DEAD,))
    assert data["method"] == method and data["reason"]
