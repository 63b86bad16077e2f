"""The names the client and the server share (`rpc.api`, `rpc.errors`): the method table
serves exactly the names of `rpc.api`, and the client side imports nothing of the server's."""

from __future__ import annotations

import subprocess
import sys

from chain.protocol.types import MESSAGE_TYPES
from rpc import api
from rpc.methods import METHODS

TEXT_FORMATS = {api.PENDING_TASKS_TEXT_FORMAT, api.LEGACY_PENDING_TASKS_TEXT_FORMAT}
METHOD_NAMES = {
    value
    for name, value in vars(api).items()
    if name.isupper() and isinstance(value, str) and not name.startswith("_")
} - TEXT_FORMATS
SERVER_SIDE = ("rpc.server", "rpc.methods", "rpc.p2p", "chain.node")


def test_the_method_table_serves_exactly_the_names_of_the_api() -> None:
    assert set(METHODS) == METHOD_NAMES


def test_each_message_type_goes_to_the_method_that_takes_it() -> None:
    assert set(api.METHOD_OF_TYPE) == set(MESSAGE_TYPES)
    for type_name, method in api.METHOD_OF_TYPE.items():
        spec = METHODS[method]
        assert spec.message_type is MESSAGE_TYPES[type_name]


def test_the_upstream_aliases_are_the_same_methods() -> None:
    assert dict(api.ALIASES) == {
        "submitRequest": "submitTask",
        "submitResponse": "submitInferenceResult",
    }
    for alias, method in api.ALIASES.items():
        assert METHODS[alias] is METHODS[method]


def test_the_pending_tasks_message_names_the_chain() -> None:
    address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    text = api.pending_tasks_message(7331, address, 1700000000)
    assert text == f"queryPendingTasks:7331:{address}:1700000000"
    assert api.pending_tasks_message(7332, address, 1700000000) != text
    legacy = api.legacy_pending_tasks_message(address, 1700000000)
    assert legacy == f"queryPendingTasks:{address}:1700000000"
    assert api.PENDING_TASKS_TEXT_FORMAT == "queryPendingTasks:<chainId>:<address>:<TimeStamp>"
    assert api.LEGACY_PENDING_TASKS_TEXT_FORMAT == "queryPendingTasks:<address>:<TimeStamp>"


def test_the_client_side_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, rpc.client, rpc.api, rpc.errors; "
        f"print(sorted(m for m in sys.modules if m.startswith({SERVER_SIDE!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"
