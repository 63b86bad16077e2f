"""The one client library of inferchain: sign and send through it (ARCHITECTURE, "One client").

Tests, scripts, resource nodes and dApp users all talk to a validator through
`InferchainClient`: JSON-RPC 2.0 calls, batches and notifications over one aiohttp session,
thin wrappers for every read of PROTOCOL 5.1/5.2, EIP-712 signing of every transaction type
(PROTOCOL 3) with a local per-address nonce counter, and polling helpers that wait for a
condition with a deadline instead of sleeping a fixed time.

Nonces: per client and wallet address, the first transaction reads `pendingNonce` (getAccount)
and later ones are allotted consecutively under an asyncio lock held until the node answered,
so any number of concurrent sends from one wallet reach the node in nonce order. A refused
transaction used no nonce: the counter is resynced from the node (an "Invalid nonce" error's
`data.expected`, and that transaction signed again and sent once more; otherwise the next
transaction reads `pendingNonce` again) and the error goes to the caller.

Signing needs no server: `sign_params` and `presign` turn a `chain.protocol.types` message
into the wire params (with `signature`) and its transaction hash, so a test can sign many
transactions before a clock starts and send them later with `InferchainClient.send_signed`.

Errors: a JSON-RPC error response raises `RpcError` (code, message, data as the server sent
them); anything below JSON-RPC (connection refused, timeout, an HTTP status without a JSON-RPC
body, a body that is not a JSON-RPC response) raises `TransportError`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import orjson

from chain.protocol import crypto, gossip, wire
from chain.protocol.errors import GenesisError, InvalidParams
from chain.protocol.genesis import DEV_MNEMONIC, parse_params
from chain.protocol.genesis import Params as ChainParams
from chain.protocol.types import (
    FINAL_STATUSES,
    ZERO_HASH,
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    CommitSecrets,
    Message,
    RegisterResourceNode,
    RevealSecret,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Transfer,
    Unstake,
)
from rpc import api
from rpc.errors import INTERNAL_ERROR, NONCE_MISMATCH

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
JSON_HEADERS = {"Content-Type": "application/json"}
POLL_INTERVAL_START = 0.02
POLL_INTERVAL_MAX = 0.2
POLL_INTERVAL_GROWTH = 1.5
TX_DONE_STATUSES = ("committed", "late")
# A transaction whose allotted nonce the node refused (-32000) is signed again with the node's
# expected nonce and sent this many more times (someone else sent from the same wallet).
NONCE_MISMATCH_RETRIES = 1
TASK_DONE_STATUSES = tuple(status.value for status in FINAL_STATUSES)  # ("verified", "failed")

Params = dict[str, Any] | list[Any] | None


class RpcError(Exception):
    """A JSON-RPC error response: `code`, `message` and `data` exactly as the server sent them."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"JSON-RPC error {self.code}: {self.message} (data: {self.data!r})"

    @classmethod
    def from_response(cls, error: Any) -> RpcError:
        """Build from the `error` member of a response, tolerating a malformed one."""
        if not isinstance(error, dict):
            return cls(INTERNAL_ERROR, f"malformed error object: {error!r}", None)
        code = error.get("code")
        message = error.get("message")
        data = error.get("data")
        return cls(
            code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
            message if isinstance(message, str) else repr(message),
            data if isinstance(data, dict) or data is None else {"value": data},
        )


class TransportError(Exception):
    """The exchange failed below JSON-RPC: connection, timeout, HTTP status, or a bad body."""

    def __init__(self, status: int | None, text: str) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no HTTP response"
        return f"transport error ({where}): {self.text}"


@dataclass(frozen=True, slots=True)
class Wallet:
    """A secp256k1 key and its EIP-55 address. The key never appears in repr()."""

    private_key: bytes = field(repr=False)
    address: str

    @classmethod
    def from_key(cls, key: str | bytes) -> Wallet:
        """From 32 raw bytes or a hex string (with or without `0x`)."""
        if isinstance(key, str):
            text = key[2:] if key[:2] in ("0x", "0X") else key
            try:
                raw = bytes.fromhex(text)
            except ValueError as exc:
                raise ValueError("private key: not a hex string") from exc
        else:
            raw = bytes(key)
        if len(raw) != 32:
            raise ValueError(f"private key must be 32 bytes, got {len(raw)}")
        try:
            address = crypto.address_of_private_key(raw)
        except Exception as exc:  # coincurve rejects zero and keys >= the curve order
            raise ValueError("private key is not a valid secp256k1 key") from exc
        return cls(private_key=raw, address=address)

    @classmethod
    def from_mnemonic(cls, mnemonic: str, index: int = 0) -> Wallet:
        """The account on m/44'/60'/0'/0/index of a BIP-39 mnemonic (PROTOCOL 2)."""
        return cls.from_key(crypto.dev_private_key(mnemonic, index))

    @classmethod
    def dev(cls, index: int = 0) -> Wallet:
        """Dev account `index` of the shipped genesis (accounts 0..9, validators 100 + k,
        resource nodes 200 + k)."""
        return cls.from_mnemonic(DEV_MNEMONIC, index)


@dataclass(frozen=True, slots=True)
class TaskReceipt:
    """What submitTask answered: the transaction hash and the task hash (the EIP-712 digest)."""

    tx_hash: str
    task_hash: str


@dataclass(frozen=True, slots=True)
class AoReceipt:
    """An AO transaction sent: its txHash, and the AO id of its process or message."""

    tx_hash: str
    id: str


AO_DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024
AO_DEFAULT_COMPUTE_LIMIT = 9_000_000_000


def ao_tags_json(tags: Sequence[tuple[str, str]]) -> str:
    """AO's tags as the chain takes them: a JSON list of {name, value}."""
    return json.dumps([{"name": name, "value": value} for name, value in tags])


@dataclass(frozen=True, slots=True)
class PresignedTx:
    """A signed transaction ready to send: the method, its wire params and the SignedTx."""

    method: str
    params: dict[str, Any]
    signed: SignedTx

    @property
    def tx_hash(self) -> str:
        return wire.hex0x(self.signed.hash)

    @property
    def digest(self) -> str:
        """The EIP-712 digest; for a SubmitTask this is the taskHash."""
        return wire.hex0x(self.signed.digest)


# Pure helpers: no server needed


def method_for(msg: Message) -> str:
    """The JSON-RPC method that submits `msg`."""
    return api.METHOD_OF_TYPE[msg.TYPE]


def message_params(msg: Message) -> dict[str, Any]:
    """The wire params of `msg` (no signature)."""
    return wire.message_to_params(msg)


def params_of_signed(signed: SignedTx) -> dict[str, Any]:
    """The wire params of a signed transaction: its message fields plus `signature`."""
    return message_params(signed.message) | {"signature": wire.hex0x(signed.signature)}


def presign(msg: Message, chain_id: int, private_key: bytes) -> PresignedTx:
    """Sign `msg` for `chain_id`; the result carries the method, params and tx hash."""
    signed = crypto.sign_message(msg, chain_id, private_key)
    return PresignedTx(method_for(msg), params_of_signed(signed), signed)


def sign_params(msg: Message, chain_id: int, private_key: bytes) -> dict[str, Any]:
    """The wire params of `msg` with its `signature`; `presign` also gives the tx hash."""
    return presign(msg, chain_id, private_key).params


def pending_tasks_message(address: str, timestamp: int, chain_id: int | None = None) -> str:
    """The text a resource node personal_signs to call queryPendingTasks (PROTOCOL 5.1),
    `queryPendingTasks:<chainId>:<address>:<TimeStamp>`, the address checksummed first
    (ValueError for a bad one). Without `chain_id`, the previous release's text, which names
    no chain: deprecated, accepted on dev chains only."""
    if chain_id is None:
        _warn_unbound_pending_text()
    return _pending_text(address, timestamp, chain_id)


def sign_pending_tasks_query(wallet: Wallet, timestamp: int, chain_id: int | None = None) -> str:
    """EIP-191 signature (0x + 130 hex) of `pending_tasks_message` by `wallet`."""
    if chain_id is None:
        _warn_unbound_pending_text()
    return _sign_pending_text(wallet, timestamp, chain_id)


def pending_tasks_params(
    wallet: Wallet,
    timestamp: int | None = None,
    limit: int | None = None,
    chain_id: int | None = None,
) -> dict[str, Any]:
    """Signed queryPendingTasks params for chain `chain_id` (without it, the deprecated text of
    `pending_tasks_message`); `timestamp` defaults to now (Unix seconds)."""
    if chain_id is None:
        _warn_unbound_pending_text()
    stamp = int(time.time()) if timestamp is None else timestamp
    params: dict[str, Any] = {
        "ResourceAddress": wallet.address,
        "TimeStamp": stamp,
        "Signature": _sign_pending_text(wallet, stamp, chain_id),
    }
    if limit is not None:
        params["limit"] = limit
    return params


def _pending_text(address: str, timestamp: int, chain_id: int | None) -> str:
    checksummed = _checksum(address, "ResourceAddress")
    if chain_id is None:
        return api.legacy_pending_tasks_message(checksummed, timestamp)
    return api.pending_tasks_message(chain_id, checksummed, timestamp)


def _sign_pending_text(wallet: Wallet, timestamp: int, chain_id: int | None) -> str:
    text = _pending_text(wallet.address, timestamp, chain_id)
    signature = crypto.sign_digest(crypto.personal_message_hash(text), wallet.private_key)
    return wire.hex0x(signature)


def _warn_unbound_pending_text() -> None:
    warnings.warn(
        "a queryPendingTasks signature without chain_id signs the deprecated text "
        f"{api.LEGACY_PENDING_TASKS_TEXT_FORMAT}, accepted on dev chains only; "
        f"pass chain_id to sign {api.PENDING_TASKS_TEXT_FORMAT}",
        DeprecationWarning,
        stacklevel=3,  # the caller of the public function
    )


def _checksum(address: str, param: str) -> str:
    """EIP-55 form of `address`; ValueError (not a chain error) for a bad one."""
    try:
        return wire.parse_address(address, param)
    except InvalidParams as exc:
        raise ValueError(f"{param}: {exc.detail}") from exc


def _hash_bytes(value: str | bytes, param: str) -> bytes:
    if isinstance(value, bytes):
        if len(value) != 32:
            raise ValueError(f"{param}: expected 32 bytes, got {len(value)}")
        return value
    try:
        return wire.parse_hash(value, param)
    except InvalidParams as exc:
        raise ValueError(f"{param}: {exc.detail}") from exc


def _amount(value: int, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{param}: expected a non-negative int in base units, got {value!r}")
    return value


def _encode(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:
        # orjson refuses integers beyond 64 bits; tests may send such values on purpose.
        return json.dumps(payload, separators=(",", ":")).encode()


class Subscription:
    """One subscription over a validator's WebSocket (`InferchainClient.subscription`)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, request: dict[str, Any]) -> None:
        self._session = session
        self._url = url
        self._request = request
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.id = ""

    async def __aenter__(self) -> Self:
        try:
            self._ws = await self._session.ws_connect(self._url, heartbeat=30.0)
        except aiohttp.WSServerHandshakeError as exc:
            raise TransportError(exc.status, f"GET /ws: {exc.message}") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(None, f"GET /ws: {exc}") from exc
        try:
            message = {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": self._request}
            await self._ws.send_str(orjson.dumps(message).decode())
            body = await self._receive()
            if "error" in body:
                raise RpcError.from_response(body["error"])
            self.id = str(body.get("result"))
        except BaseException:
            await self._ws.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            body = await self._receive()
            if body.get("method") == "subscription":
                result: dict[str, Any] = body["params"]["result"]
                return result

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None, "enter the subscription first"
        msg = await self._ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            reason = msg.extra if isinstance(msg.extra, str) else ""
            raise TransportError(self._ws.close_code, f"the subscription closed: {reason}")
        body: dict[str, Any] = orjson.loads(msg.data)
        return body


class InferchainClient:
    """Async client of one validator's JSON-RPC API (PROTOCOL 5).

    Use as `async with InferchainClient(url) as client: ...`. One aiohttp session serves every
    request; it is created on first use unless one is passed in, and `close()` closes it only
    if this client created it.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self._chain_id: int | None = None
        self._nonces: dict[str, int] = {}
        self._nonce_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if not self._owns_session:
                raise RuntimeError("the session passed to InferchainClient is gone")
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    # Transport

    async def _post(self, payload: Any) -> tuple[int, bytes]:
        try:
            async with self._get_session().post(
                self.url + "/", data=_encode(payload), headers=JSON_HEADERS, timeout=self._timeout
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(None, f"POST {self.url}/ failed: {exc!r}") from exc

    async def _get(self, path: str) -> tuple[int, bytes]:
        try:
            async with self._get_session().get(self.url + path, timeout=self._timeout) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(None, f"GET {self.url}{path} failed: {exc!r}") from exc

    @staticmethod
    def _parse_body(status: int, body: bytes) -> Any:
        try:
            return wire.parse_json(body)  # big integers kept exact
        except ValueError as exc:
            text = body[:500].decode("utf-8", errors="replace")
            raise TransportError(status, f"response is not JSON: {text!r}") from exc

    async def call(self, method: str, params: Params = None) -> Any:
        """One JSON-RPC request; its result, or RpcError for an error response."""
        request_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            request["params"] = params
        logger.debug("-> %s #%d %r", method, request_id, params)
        status, body = await self._post(request)
        response = self._parse_body(status, body)
        if not isinstance(response, dict) or ("result" not in response and "error" not in response):
            raise TransportError(status, f"not a JSON-RPC response: {body[:500]!r}")
        if "error" in response:
            error = RpcError.from_response(response["error"])
            logger.debug("<- %s #%d %s", method, request_id, error)
            raise error
        if status != 200:
            raise TransportError(status, f"JSON-RPC result with HTTP status {status}")
        if response.get("id") != request_id:
            raise TransportError(
                status, f"response id {response.get('id')!r} does not match {request_id}"
            )
        return response["result"]

    async def batch(self, calls: list[tuple[str, Params]]) -> list[Any | RpcError]:
        """Send `calls` in one HTTP request; results (or RpcError values) in call order."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        requests: list[dict[str, Any]] = []
        for request_id, (method, params) in zip(ids, calls, strict=True):
            request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
            if params is not None:
                request["params"] = params
            requests.append(request)
        logger.debug("-> batch of %d calls", len(requests))
        status, body = await self._post(requests)
        responses = self._parse_body(status, body)
        if isinstance(responses, dict) and "error" in responses:
            raise RpcError.from_response(responses["error"])  # the batch as a whole was refused
        if not isinstance(responses, list):
            raise TransportError(status, f"batch response is not a list: {body[:500]!r}")
        by_id: dict[Any, dict[str, Any]] = {}
        for item in responses:
            if isinstance(item, dict) and ("result" in item or "error" in item):
                by_id[item.get("id")] = item
        missing = [request_id for request_id in ids if request_id not in by_id]
        if missing:
            raise TransportError(status, f"batch response lacks the answers for ids {missing}")
        results: list[Any | RpcError] = []
        for request_id in ids:
            item = by_id[request_id]
            if "error" in item:
                results.append(RpcError.from_response(item["error"]))
            else:
                results.append(item["result"])
        return results

    async def notify(self, method: str, params: Params = None) -> None:
        """A JSON-RPC notification (no id); the server answers HTTP 204 with no body."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            request["params"] = params
        status, body = await self._post(request)
        if status != 204:
            text = body[:500].decode("utf-8", errors="replace")
            raise TransportError(status, f"a notification expects HTTP 204, got {text!r}")

    # Reads (PROTOCOL 5.2, 5.1)

    async def chain_id(self) -> int:
        """The chain id; asked once, then cached (it signs every transaction)."""
        if self._chain_id is None:
            self._chain_id = int(await self.call(api.CHAIN_ID))
        return self._chain_id

    async def get_params(self) -> ChainParams:
        """The genesis params the chain runs with (getParams); ValueError if the answer is not
        a params object."""
        raw = await self.call(api.GET_PARAMS)
        try:
            return parse_params(raw)
        except GenesisError as exc:
            raise ValueError(f"getParams answered params that do not parse: {exc}") from exc

    async def genesis_hash(self) -> str:
        """Not cached: a changed genesis hash is how a client notices a reset chain."""
        result: str = await self.call(api.GENESIS_HASH)
        return result

    async def block_number(self) -> int:
        return int(await self.call(api.BLOCK_NUMBER))

    async def discover(self) -> dict[str, Any]:
        """The API's OpenRPC document (rpc.discover, PROTOCOL 5.8)."""
        result: dict[str, Any] = await self.call(api.RPC_DISCOVER)
        return result

    async def get_block(self, height: int | str = "latest") -> dict[str, Any]:
        result: dict[str, Any] = await self.call(api.GET_BLOCK, {"height": height})
        return result

    async def get_block_events(self, height: int | str = "latest") -> dict[str, Any]:
        """What block `height` changed: `{height, events}`, the events as the subscriptions
        give them (PROTOCOL 5.6)."""
        result: dict[str, Any] = await self.call(api.GET_BLOCK_EVENTS, {"height": height})
        return result

    async def get_transaction(self, tx_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(api.GET_TRANSACTION, {"txHash": tx_hash})
        return result

    async def get_account(self, address: str, block_height: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"address": address}
        if block_height is not None:
            params["blockHeight"] = block_height
        result: dict[str, Any] = await self.call(api.GET_ACCOUNT, params)
        return result

    async def get_validators(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call(api.GET_VALIDATORS)
        return result

    async def get_resource_nodes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call(api.GET_RESOURCE_NODES)
        return result

    async def task_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(api.TASK_STATS)
        return result

    async def query_task(self, task_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(api.QUERY_TASK, {"taskHash": task_hash})
        return result

    async def get_tasks_by_sender(
        self, address: str, from_nonce: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The committed tasks of `address`, by nonce (queryTask objects)."""
        params = {"address": address, "fromNonce": from_nonce, "limit": limit}
        result: list[dict[str, Any]] = await self.call(api.GET_TASKS_BY_SENDER, params)
        return result

    async def query_pending_tasks(
        self, wallet_or_address: Wallet | str, limit: int | None = None, signed: bool = True
    ) -> list[dict[str, Any]]:
        """Tasks this resource node can act on; signed (EIP-191, over the text naming this
        chain's id) unless `signed=False`."""
        params: dict[str, Any]
        if signed:
            if not isinstance(wallet_or_address, Wallet):
                raise ValueError("a signed queryPendingTasks needs a Wallet, not only an address")
            chain_id = await self.chain_id()
            params = pending_tasks_params(wallet_or_address, limit=limit, chain_id=chain_id)
        else:
            if isinstance(wallet_or_address, Wallet):
                address = wallet_or_address.address
            else:
                address = _checksum(wallet_or_address, "ResourceAddress")
            params = {"ResourceAddress": address, "TimeStamp": int(time.time())}
            if limit is not None:
                params["limit"] = limit
        result: list[dict[str, Any]] = await self.call(api.QUERY_PENDING_TASKS, params)
        return result

    async def get_tx(self, tx_hash: str) -> dict[str, Any] | None:
        """GET /tx/<hash> (PROTOCOL 5.1); None when the node does not know the hash (404)."""
        status, body = await self._get(f"/tx/{tx_hash}")
        if status == 404:
            return None
        if status != 200:
            text = body[:500].decode("utf-8", errors="replace")
            raise TransportError(status, f"GET /tx/{tx_hash}: {text}")
        result = self._parse_body(status, body)
        if not isinstance(result, dict):
            raise TransportError(status, f"GET /tx/{tx_hash} did not return an object")
        return result

    async def subscribe(self, topic: str, **params: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Subscribe to `topic` over the validator's WebSocket (`GET /ws`, PROTOCOL 5.6) and
        yield each notification's result, in order (`fromHeight=h` replays from block h
        first). RpcError when the subscription is refused; TransportError, with the close
        code and reason, when the socket closes (1008: this consumer fell behind)."""
        async with self.subscription(topic, **params) as subscription:
            async for result in subscription:
                yield result

    def subscription(self, topic: str, **params: Any) -> Subscription:
        """`subscribe` as an async context manager: entered once the validator answered the
        subscription's id (`.id`), then iterated for the notifications' results."""
        url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
        return Subscription(self._get_session(), url, {"topic": topic, **params})

    # Dev controls (PROTOCOL 5.9): a dev chain of one validator only

    async def dev_snapshot(self) -> str:
        """Keep the whole state; the id to give dev_revert."""
        return str(await self.call(api.DEV_SNAPSHOT))

    async def dev_revert(self, snapshot_id: str) -> bool:
        """Restore a snapshot (consuming it and every later one); False if there is none.
        The nonces learnt are forgotten, as the chain moved back."""
        reverted = bool(await self.call(api.DEV_REVERT, {"id": snapshot_id}))
        self.forget_chain()
        return reverted

    async def dev_mine(self, blocks: int = 1) -> int:
        """Make `blocks` blocks now; the new height."""
        return int(await self.call(api.DEV_MINE, {"blocks": blocks}))

    async def dev_set_next_block_timestamp(self, timestamp: int) -> int:
        return int(await self.call(api.DEV_SET_NEXT_BLOCK_TIMESTAMP, {"timestamp": timestamp}))

    async def dev_increase_time(self, seconds: int) -> int:
        """Move block times forward; the offset in all, in seconds."""
        return int(await self.call(api.DEV_INCREASE_TIME, {"seconds": seconds}))

    async def dev_set_balance(self, address: str, balance: int) -> None:
        await self.call(api.DEV_SET_BALANCE, {"address": address, "balance": str(balance)})

    async def dev_reset(self) -> int:
        """Back to the genesis block; the nonces learnt are forgotten."""
        height = int(await self.call(api.DEV_RESET))
        self.forget_chain()
        return height

    async def health(self) -> dict[str, Any]:
        """GET /health."""
        status, body = await self._get("/health")
        if status != 200:
            text = body[:500].decode("utf-8", errors="replace")
            raise TransportError(status, f"GET /health: {text}")
        result = self._parse_body(status, body)
        if not isinstance(result, dict):
            raise TransportError(status, "GET /health did not return an object")
        return result

    async def metrics_text(self) -> str:
        """GET /metrics: the validator's metrics in the Prometheus text format (PROTOCOL 5.7)."""
        status, body = await self._get("/metrics")
        text = body.decode("utf-8", errors="replace")
        if status != 200:
            raise TransportError(status, f"GET /metrics: {text[:500]}")
        return text

    async def p2p_links(self) -> dict[str, dict[str, Any]]:
        """GET /p2p/dev/links: this validator's links to its peers (dev chains only)."""
        status, body = await self._get("/p2p/dev/links")
        result = self._parse_body(status, body)
        if status != 200 or not isinstance(result, dict):
            raise TransportError(status, f"GET /p2p/dev/links: {body[:500]!r}")
        return result

    async def set_p2p_link(
        self, peer: str, *, token: str | None, drop: bool = False, delay_ms: int = 0
    ) -> dict[str, dict[str, Any]]:
        """Cut (`drop`) or slow (`delay_ms`) what this validator sends to `peer` ("*": every
        peer); a dev-chain control for testing partitions on loopback. `token` is the
        contents of the validator's `<data-dir>/dev-token` (None sends none: refused)."""
        body = {"peer": peer, "drop": drop, "delayMs": delay_ms}
        headers = {} if token is None else {gossip.DEV_TOKEN_HEADER: token}
        try:
            async with self._get_session().post(
                self.url + "/p2p/dev/links",
                data=_encode(body),
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(None, f"POST {self.url}/p2p/dev/links failed: {exc!r}") from exc
        result = self._parse_body(status, raw)
        if status != 200 or not isinstance(result, dict):
            raise TransportError(status, f"POST /p2p/dev/links: {raw[:500]!r}")
        return result

    # Nonces

    def _nonce_lock(self, address: str) -> asyncio.Lock:
        return self._nonce_locks.setdefault(address, asyncio.Lock())

    async def _allot_nonce(self, address: str) -> int:
        """The next nonce of `address`, counted as used; the caller holds its lock."""
        if address not in self._nonces:
            self._nonces[address] = await self._fetch_pending_nonce(address)
        nonce = self._nonces[address]
        self._nonces[address] = nonce + 1
        return nonce

    async def next_nonce(self, address: str) -> int:
        """The nonce for the next transaction of `address`, and count it as used.

        The first use asks the node (`getAccount(...).pendingNonce`, which counts the mempool);
        later uses count locally under the address's lock, so a burst costs no extra round
        trips. An "Invalid nonce" error (-32000) resets the counter to the node's
        `data.expected`.
        """
        address = _checksum(address, "address")
        async with self._nonce_lock(address):
            return await self._allot_nonce(address)

    async def _fetch_pending_nonce(self, address: str) -> int:
        account = await self.get_account(address)
        if "pendingNonce" in account:
            return int(account["pendingNonce"])
        logger.warning(
            "getAccount(%s) has no pendingNonce; using the committed nonce, which misses "
            "transactions still in the mempool",
            address,
        )
        return int(account["nonce"])

    def forget_chain(self) -> None:
        """Forget what was learnt of the chain (its id, the nonces): for a chain that was reset."""
        self._chain_id = None
        self._nonces.clear()

    def reset_nonce(self, address: str) -> None:
        """Forget the local counter of `address`; its next use asks the node again."""
        self._nonces.pop(_checksum(address, "address"), None)

    def _note_nonce_error(self, params: Params, error: RpcError) -> None:
        if error.code != NONCE_MISMATCH or not isinstance(params, dict):
            return
        sender = params.get("sender")
        if not isinstance(sender, str):
            return
        try:
            address = _checksum(sender, "sender")
        except ValueError:
            return
        expected = (error.data or {}).get("expected")
        if isinstance(expected, str) and wire.ascii_digits(expected):
            expected = int(expected)
        if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
            self._nonces.pop(address, None)  # no usable hint: ask the node next time
            return
        self._nonces[address] = expected
        logger.info("nonce of %s reset to %d after: %s", address, expected, error)

    # Sending

    async def send_signed(self, method: str, params: dict[str, Any]) -> Any:
        """Send presigned params (see `presign`); an Invalid nonce error resets the counter."""
        try:
            return await self.call(method, params)
        except RpcError as exc:
            self._note_nonce_error(params, exc)
            raise

    async def send_presigned(self, tx: PresignedTx) -> Any:
        return await self.send_signed(tx.method, tx.params)

    async def _send_account_tx(
        self, wallet: Wallet, build: Callable[[int], Message], nonce: int | None
    ) -> tuple[PresignedTx, Any]:
        """Sign `build(nonce)` and send it. Without a `nonce`, the client allots one
        (`_send_allotted`); with one, it is sent as given and the counter moves past it."""
        if nonce is None:
            return await self._send_allotted(wallet, build)
        tx = presign(build(nonce), await self.chain_id(), wallet.private_key)
        result = await self.send_signed(tx.method, tx.params)
        if wallet.address in self._nonces:
            self._nonces[wallet.address] = max(self._nonces[wallet.address], nonce + 1)
        return tx, result

    async def _send_allotted(
        self, wallet: Wallet, build: Callable[[int], Message]
    ) -> tuple[PresignedTx, Any]:
        """Allot the wallet's next nonce, sign and send, all under the wallet's lock.

        The lock is held until the node has answered, so the transactions of one wallet
        reach the node in nonce order however many are sent at once (the node takes only
        the next nonce, PROTOCOL 3). A rejection leaves the counter to the node: an
        "Invalid nonce" (-32000, someone else used the wallet) sets it to `data.expected`
        and the transaction is signed again with that nonce and sent once more; any other
        rejection, or an unknown outcome (TransportError), forgets the counter, so the next
        transaction asks the node for its pendingNonce, and the error goes to the caller.
        """
        chain_id = await self.chain_id()
        address = wallet.address
        async with self._nonce_lock(address):
            for attempt in range(NONCE_MISMATCH_RETRIES + 1):
                tx = presign(build(await self._allot_nonce(address)), chain_id, wallet.private_key)
                try:
                    return tx, await self.call(tx.method, tx.params)
                except RpcError as exc:
                    if exc.code == NONCE_MISMATCH and attempt < NONCE_MISMATCH_RETRIES:
                        self._note_nonce_error(tx.params, exc)
                        continue
                    self._nonces.pop(address, None)  # a rejected call used no nonce: resync
                    raise
                except TransportError:
                    self._nonces.pop(address, None)  # accepted or not is unknown: resync
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _check_tx_hash(tx: PresignedTx, result: Any) -> str:
        if not isinstance(result, dict) or not isinstance(result.get("txHash"), str):
            raise ValueError(f"{tx.method} answered {result!r}, expected an object with txHash")
        if result["txHash"].lower() != tx.tx_hash:
            raise ValueError(
                f"server bug: {tx.method} answered txHash {result['txHash']}, but "
                f"keccak256(digest || signature) is {tx.tx_hash} (PROTOCOL 3)"
            )
        return tx.tx_hash

    async def submit_task(
        self,
        wallet: Wallet,
        *,
        prompts: str,
        schema: str = "text",
        model_options: str = "",
        target_count: int = 1,
        sid: bytes = ZERO_HASH,
        fee_params: str = "",
        nonce: int | None = None,
    ) -> TaskReceipt:
        """Sign and send a SubmitTask; checks that the node's taskHash is the EIP-712 digest."""
        if len(sid) != 32:
            raise ValueError(f"sid must be 32 bytes, got {len(sid)}")

        def build(n: int) -> Message:
            return SubmitTask(
                sender=wallet.address,
                nonce=n,
                schema=schema,
                target_count=target_count,
                prompts=prompts,
                model_options=model_options,
                sid=sid,
                fee_params=fee_params,
            )

        tx, result = await self._send_account_tx(wallet, build, nonce)
        tx_hash = self._check_tx_hash(tx, result)
        for key in ("taskHash", "requestHash"):
            got = result.get(key)
            if not isinstance(got, str) or got.lower() != tx.digest:
                raise ValueError(
                    f"server bug: submitTask answered {key} {got!r}, but the EIP-712 digest "
                    f"of the task is {tx.digest} (PROTOCOL 3: taskHash = digest)"
                )
        return TaskReceipt(tx_hash=tx_hash, task_hash=tx.digest)

    async def transfer(self, wallet: Wallet, to: str, amount: int, nonce: int | None = None) -> str:
        """Sign and send a Transfer of `amount` base units; returns the txHash."""
        recipient = _checksum(to, "to")
        value = _amount(amount, "amount")

        def build(n: int) -> Message:
            return Transfer(sender=wallet.address, nonce=n, to=recipient, amount=value)

        tx, result = await self._send_account_tx(wallet, build, nonce)
        return self._check_tx_hash(tx, result)

    async def stake(self, wallet: Wallet, amount: int, nonce: int | None = None) -> str:
        """Sign and send a Stake of `amount` base units; returns the txHash."""
        return await self._send_stake_change(Stake, wallet, amount, nonce)

    async def unstake(self, wallet: Wallet, amount: int, nonce: int | None = None) -> str:
        """Sign and send an Unstake of `amount` base units; returns the txHash."""
        return await self._send_stake_change(Unstake, wallet, amount, nonce)

    async def _send_stake_change(
        self, cls: type[Stake | Unstake], wallet: Wallet, amount: int, nonce: int | None
    ) -> str:
        value = _amount(amount, "amount")

        def build(n: int) -> Message:
            return cls(sender=wallet.address, nonce=n, amount=value)

        tx, result = await self._send_account_tx(wallet, build, nonce)
        return self._check_tx_hash(tx, result)

    async def register_resource_node(
        self, wallet: Wallet, models: str, endpoint: str, nonce: int | None = None
    ) -> str:
        """Register `wallet` as a resource node serving `models` (comma-separated, `*` = all)."""

        def build(n: int) -> Message:
            return RegisterResourceNode(
                sender=wallet.address, nonce=n, models=models, endpoint=endpoint
            )

        tx, result = await self._send_account_tx(wallet, build, nonce)
        return self._check_tx_hash(tx, result)

    # AO (PROTOCOL 8)

    async def ao_spawn(
        self,
        wallet: Wallet,
        *,
        module: str,
        scheduler: str | None = None,
        memory_limit: int = AO_DEFAULT_MEMORY_LIMIT,
        compute_limit: int = AO_DEFAULT_COMPUTE_LIMIT,
        cron_interval: str = "",
        tags: Sequence[tuple[str, str]] = (),
        data: str = "",
        nonce: int | None = None,
    ) -> AoReceipt:
        """Spawn an AO process of `module` (Lua source or a published module's id), relayed by
        `scheduler` (default: the wallet); its txHash and process id."""
        relay = _checksum(scheduler or wallet.address, "scheduler")

        def build(n: int) -> Message:
            return AoSpawn(
                sender=wallet.address,
                nonce=n,
                module=module,
                scheduler=relay,
                memory_limit=memory_limit,
                compute_limit=compute_limit,
                cron_interval=cron_interval,
                tags=ao_tags_json(tags),
                data=data,
            )

        return await self._send_ao_tx(wallet, build, nonce)

    async def ao_message(
        self,
        wallet: Wallet,
        target: str,
        *,
        data: str = "",
        tags: Sequence[tuple[str, str]] = (),
        from_process: str = "",
        nonce: int | None = None,
    ) -> AoReceipt:
        """Send an AO message to process `target` (relayed for `from_process` when given);
        its txHash and message id."""

        def build(n: int) -> Message:
            return AoMessage(
                sender=wallet.address,
                nonce=n,
                target=target,
                data=data,
                tags=ao_tags_json(tags),
                from_process=from_process,
            )

        return await self._send_ao_tx(wallet, build, nonce)

    async def ao_data_item(
        self, wallet: Wallet, item: bytes, nonce: int | None = None
    ) -> AoReceipt:
        """Hand in an ANS-104 data item (PROTOCOL 8.3); its txHash and the item's id."""
        encoded = wire.hex0x(item)

        def build(n: int) -> Message:
            return AoDataItem(sender=wallet.address, nonce=n, item=encoded)

        return await self._send_ao_tx(wallet, build, nonce)

    async def ao_terminate(self, wallet: Wallet, process: str, nonce: int | None = None) -> str:
        """Terminate process `process` (its owner only); the txHash."""

        def build(n: int) -> Message:
            return AoTerminate(sender=wallet.address, nonce=n, process=process)

        tx, result = await self._send_account_tx(wallet, build, nonce)
        return self._check_tx_hash(tx, result)

    async def _send_ao_tx(
        self, wallet: Wallet, build: Callable[[int], Message], nonce: int | None
    ) -> AoReceipt:
        tx, result = await self._send_account_tx(wallet, build, nonce)
        tx_hash = self._check_tx_hash(tx, result)
        if not isinstance(result.get("id"), str):
            raise ValueError(f"{tx.method} answered {result!r}, expected an AO id")
        return AoReceipt(tx_hash, result["id"])

    async def ao_process(self, process_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(api.AO_PROCESS, {"processId": process_id})
        return result

    async def ao_processes(self, start: int = 0, limit: int = 100) -> list[str]:
        result: list[str] = await self.call(api.AO_PROCESSES, {"from": start, "limit": limit})
        return result

    async def ao_schedule(
        self, process_id: str, from_slot: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        """`{messages, next}`: the process's scheduled messages from `from_slot`."""
        params = {"processId": process_id, "fromSlot": from_slot, "limit": limit}
        result: dict[str, Any] = await self.call(api.AO_SCHEDULE, params)
        return result

    async def ao_message_by_id(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(api.AO_MESSAGE_BY_ID, {"messageId": message_id})
        return result

    async def commit_secrets(self, wallet: Wallet, head: bytes, nonce: int | None = None) -> str:
        """Commit the head of `wallet`'s chain of secrets (PROTOCOL 4.13); returns the txHash."""
        value = _hash_bytes(head, "head")

        def build(n: int) -> Message:
            return CommitSecrets(sender=wallet.address, nonce=n, head=value)

        tx, result = await self._send_account_tx(wallet, build, nonce)
        return self._check_tx_hash(tx, result)

    async def reveal_secret(self, wallet: Wallet, height: int, secret: bytes) -> str:
        """Reveal `wallet`'s secret of `height` (PROTOCOL 4.13); returns the txHash."""
        msg = RevealSecret(
            resource_node=wallet.address, height=height, secret=_hash_bytes(secret, "secret")
        )
        tx = presign(msg, await self.chain_id(), wallet.private_key)
        return self._check_tx_hash(tx, await self.send_signed(tx.method, tx.params))

    async def submit_inference_result(
        self, wallet: Wallet, task_hash: str | bytes, result: str, proof: str = ""
    ) -> bool:
        """True when accepted, False when the task no longer takes results (PROTOCOL 4.3).

        The transaction hash (in `executionInfo[].txHash`) is `presign(...).tx_hash`.
        """
        msg = SubmitInferenceResult(
            task_hash=_hash_bytes(task_hash, "taskHash"),
            resource_node=wallet.address,
            result=result,
            proof=proof,
        )
        tx = presign(msg, await self.chain_id(), wallet.private_key)
        return self._check_bool(tx.method, await self.send_signed(tx.method, tx.params))

    async def submit_verification(
        self, wallet: Wallet, task_hash: str | bytes, submitter: str, valid: bool
    ) -> bool:
        """True when accepted, False when that result no longer takes verdicts."""
        msg = SubmitVerification(
            task_hash=_hash_bytes(task_hash, "taskHash"),
            verifier=wallet.address,
            submitter=_checksum(submitter, "submitter"),
            valid=bool(valid),
        )
        tx = presign(msg, await self.chain_id(), wallet.private_key)
        return self._check_bool(tx.method, await self.send_signed(tx.method, tx.params))

    @staticmethod
    def _check_bool(method: str, result: Any) -> bool:
        if not isinstance(result, bool):
            raise ValueError(f"server bug: {method} answered {result!r}, expected true or false")
        return result

    # Waiting: poll a condition until a deadline, never a fixed sleep

    async def _poll(
        self,
        probe: Callable[[], Awaitable[Any]],
        done: Callable[[Any], bool],
        timeout: float,
        describe: Callable[[Any], str],
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = POLL_INTERVAL_START
        while True:
            value = await probe()
            if done(value):
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"after {timeout:.2f} s: {describe(value)}")
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * POLL_INTERVAL_GROWTH, POLL_INTERVAL_MAX)

    async def wait_for_tx(
        self,
        tx_hash: str,
        timeout: float = 10.0,
        statuses: Iterable[str] = TX_DONE_STATUSES,
    ) -> dict[str, Any]:
        """Poll GET /tx/<hash> until its status is one of `statuses`; TimeoutError otherwise."""
        wanted = tuple(statuses)

        def describe(tx: dict[str, Any] | None) -> str:
            seen = "unknown to the node (404)" if tx is None else f"status {tx.get('status')!r}"
            return f"transaction {tx_hash} is {seen}, waiting for {wanted}"

        result: dict[str, Any] = await self._poll(
            lambda: self.get_tx(tx_hash),
            lambda tx: tx is not None and tx.get("status") in wanted,
            timeout,
            describe,
        )
        return result

    async def wait_for_block(self, height: int, timeout: float = 10.0) -> int:
        """Poll blockNumber until it reaches `height`; returns the height seen."""
        result: int = await self._poll(
            self.block_number,
            lambda number: number >= height,
            timeout,
            lambda number: f"block number is {number}, waiting for {height}",
        )
        return result

    async def wait_for_task(
        self,
        task_hash: str,
        timeout: float = 60.0,
        statuses: Iterable[str] = TASK_DONE_STATUSES,
    ) -> dict[str, Any]:
        """Poll queryTask until the task's status is one of `statuses` (default: decided)."""
        wanted = tuple(statuses)
        result: dict[str, Any] = await self._poll(
            lambda: self.query_task(task_hash),
            lambda task: task.get("status") in wanted,
            timeout,
            lambda task: f"task {task_hash} is {task.get('status')!r}, waiting for {wanted}",
        )
        return result
