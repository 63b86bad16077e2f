"""Inputs that must not take the validator down: deeply nested JSON in a request body and in
the bytes fields the node reads as JSON (modelOptions, feeParams; PROTOCOL 4.1, 4.2).

The bytes-field case runs against a validator in its own process (`python -m rpc`): if the
node crashes there, it must not take the test run with it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from rpc.client import InferchainClient, RpcError, TransportError
from tests.helpers import LocalChain, ValidatorProcess, make_genesis, write_genesis
from tests.rpc.support import CHAIN_ID, DEV0, assert_error_shape, post_raw, task_params

# Deep enough to exhaust the C stack of a recursive JSON parser, small enough for maxTxBytes.
DEPTH = 120_000


@pytest.mark.parametrize(
    "nested", [b"[" * DEPTH, b"[" * 2000 + b"]" * 2000, b'{"a":' * 2000 + b"1" + b"}" * 2000]
)
async def test_deeply_nested_request_body(
    chain: LocalChain, http: aiohttp.ClientSession, nested: bytes
) -> None:
    status, answer = await post_raw(http, chain.url, nested)
    assert status == 200 and isinstance(answer, dict) and answer["id"] is None
    error = RpcError.from_response(answer["error"])
    assert error.code in (-32700, -32600)
    assert_error_shape(error)
    assert await chain.client.call("chainId") == CHAIN_ID


@pytest.mark.parametrize("field", ["modelOptions", "feeParams"])
async def test_deeply_nested_json_in_a_bytes_field(tmp_path: Path, field: str) -> None:
    validator = ValidatorProcess(
        write_genesis(tmp_path / "genesis.json", make_genesis()), tmp_path / "data"
    )
    try:
        url = await asyncio.to_thread(validator.start)
        async with InferchainClient(url, timeout=20.0) as client:
            params = task_params(DEV0.address, **{field: "[" * DEPTH})
            try:
                result = await client.call("submitTask", params)
            except RpcError as exc:  # refusing it is fine, failing on it is not
                assert_error_shape(exc)
            except TransportError as exc:
                assert validator.proc is not None
                status = await asyncio.to_thread(validator.proc.wait, 10)
                pytest.fail(f"no answer ({exc}); the validator exited with status {status}")
            else:
                assert isinstance(result, dict) and "txHash" in result
            assert await client.call("chainId") == CHAIN_ID  # and the node keeps serving
        assert validator.proc is not None and validator.proc.poll() is None
    finally:
        validator.close()
