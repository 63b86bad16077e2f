"""The validator's HTTP face: JSON-RPC 2.0 on POST / and /rpc, plus GET /tx/<hash>,
GET /queryPendingTasks (the upstream shape), GET /health, GET /metrics (`rpc.metrics`), the
WebSocket of subscriptions at GET /ws (`rpc.subscriptions`), the block explorer at GET / for a
browser and GET /explorer/<file> (`rpc.explorer`) and the routes other validators use
(`rpc.p2p`).

Every request shape of the JSON-RPC 2.0 specification gets its own answer (a parse error, an
invalid request inside a batch, an empty batch, HTTP 204 when only notifications came). Each
valid call runs its handler in `rpc.methods.METHODS`, batch items in order; chain errors map
to the error table in `rpc.errors`, anything else is logged and answered -32603 without
detail. Why it dispatches by itself and recovers the signers of a batch on two threads:
docs/PERFORMANCE.md, "Why the server is built this way".
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from chain.node.node import Node
from chain.protocol import crypto, wire
from chain.protocol.errors import ChainError, InvalidParams
from chain.protocol.types import Message
from rpc import api, errors, explorer, p2p, serving, subscriptions
from rpc.methods import (
    AWAITING_METHODS,
    METHODS,
    MethodSpec,
    json_bytes,
    pending_tasks_answer,
    render_tx,
    signed_call,
)
from rpc.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from rpc.metrics import ValidatorMetrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BATCH = 1000
JSONRPC_PATHS = ("/", "/rpc")
JSON_HEADERS = {"Content-Type": "application/json"}
# Signed transactions a batch needs before a pool thread helps recover them. Below this the
# share a helper takes (about 50 us a recovery) is worth less than waking it and waiting for
# its last one; a single call never pays the hop.
RECOVER_AHEAD_MIN = 8
RECOVERY_HELPERS = 1  # with this thread, one per core of a 2-core validator


def _error_response(failure: errors.RpcFailure, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": failure.to_json(), "id": request_id}


def _request_problem(item: Any) -> str | None:
    """Why `item` is not a valid JSON-RPC 2.0 request object, or None if it is."""
    if not isinstance(item, dict):
        return "a request must be a JSON object"
    if item.get("jsonrpc") != "2.0":
        return 'the member "jsonrpc" must be exactly "2.0"'
    if not isinstance(item.get("method"), str):
        return 'the member "method" must be a string'
    if "params" in item and not isinstance(item["params"], list | dict):
        return 'the member "params" must be an array or an object'
    if "id" in item and (
        isinstance(item["id"], bool) or not isinstance(item["id"], str | int | float | None)
    ):
        return 'the member "id" must be a string, a number or null'
    extra = set(item) - {"jsonrpc", "method", "params", "id"}
    if extra:
        return f"unknown members {sorted(extra)}"
    return None


def _valid_id(item: Any) -> Any:
    if isinstance(item, dict):
        rid = item.get("id")
        if not isinstance(rid, bool) and isinstance(rid, str | int | float):
            return rid
    return None


@dataclass(slots=True)
class SignedAhead:
    """A signed transaction call of a batch, decoded before its turn, and then the address
    its signature recovers to (or why it recovers to none)."""

    spec: MethodSpec
    message: Message
    signature: bytes
    digest: bytes
    recoverable: bytes
    signer: str | None = None
    failure: Exception | None = None

    def recover(self) -> None:
        try:
            public_key = crypto.recover_public_key(self.digest, self.recoverable)
            self.signer = crypto.address_of_public_key(public_key)
        except Exception as exc:  # raised again at the call's turn, as it would be alone
            self.failure = exc


def _recover_all(calls: deque[SignedAhead]) -> None:
    """Recover the calls taken one by one off the shared `calls` until none are left."""
    while True:
        try:
            call = calls.popleft()
        except IndexError:
            return
        call.recover()


class RpcServer:
    """The aiohttp application around one node."""

    def __init__(
        self,
        node: Node,
        ws_limits: subscriptions.Limits | None = None,
        dev_control_from: Iterable[str] = (),
    ) -> None:
        self.node = node
        self.metrics = ValidatorMetrics(node)
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.hub = subscriptions.Hub(node, ws_limits or subscriptions.Limits())
        self.hub.add_routes(self.app)
        for path in JSONRPC_PATHS:
            self.app.router.add_post(path, self.handle_rpc)
        self.app.router.add_get("/tx/{tx_hash}", self.handle_get_tx)
        self.app.router.add_get("/health", self.handle_health)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/queryPendingTasks", self.handle_get_pending)
        explorer.Explorer().add_routes(self.app)
        p2p.add_routes(self.app, node, dev_control_from)
        self.app.on_cleanup.append(self._close_recovery_pool)
        self._pool: ThreadPoolExecutor | None = None

    async def _close_recovery_pool(self, _app: web.Application) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def dispatch_one(self, item: Any, ahead: SignedAhead | None = None) -> dict[str, Any] | None:
        """The response to one request object; None for a notification, which is never
        answered, not even with an error. `ahead` is this item's call as `recover_ahead`
        decoded it. Every call is counted in the metrics (its method, its time, and for a
        transaction whether it was admitted)."""
        started = time.perf_counter()
        if ahead is not None:  # a valid request: recover_ahead checked it
            outcome = self._outcome(item["method"], lambda: self._admit_ahead(ahead))
        else:
            problem = _request_problem(item)
            if problem is not None:
                return _error_response(errors.invalid_request(problem), _valid_id(item))
            outcome = self.call(item["method"], item.get("params"))
        self.metrics.observe_call(item["method"], outcome, time.perf_counter() - started)
        return _response(item, outcome)

    async def dispatch_awaiting(self, payload: Any) -> Any:
        """`dispatch` for a body that calls a dev control (`AWAITING_METHODS`): the calls in
        order, each dev control awaited before the next call runs (`_calls_awaiting` said
        the body is one call or a batch within MAX_BATCH)."""
        responses = []
        for item in payload if isinstance(payload, list) else [payload]:
            spec = METHODS.get(item["method"]) if _request_problem(item) is None else None
            if spec is None or not spec.awaits:
                response = self.dispatch_one(item)
            else:
                started = time.perf_counter()
                outcome = await self._awaited(item["method"], spec, item)
                self.metrics.observe_call(item["method"], outcome, time.perf_counter() - started)
                response = _response(item, outcome)
            if response is not None:
                responses.append(response)
        if not isinstance(payload, list):
            return responses[0] if responses else None
        return responses or None

    async def _awaited(self, name: str, spec: MethodSpec, item: dict[str, Any]) -> Any:
        work = self._outcome(name, lambda: spec.handler(self.node, _bind(spec, item.get("params"))))
        if isinstance(work, errors.RpcFailure):
            return work
        try:
            return await work
        except Exception as exc:
            return _failure(name, exc)

    def call(self, name: str, params: Any) -> Any:
        """The result of a method call, or the RpcFailure it is answered with."""
        spec = METHODS.get(name)
        if spec is None:
            return errors.method_not_found(name)
        return self._outcome(name, lambda: spec.handler(self.node, _bind(spec, params)))

    def _outcome(self, name: str, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except Exception as exc:
            return _failure(name, exc)

    def dispatch(self, payload: Any) -> Any:
        """The response object(s) for a parsed request body; None for nothing to answer."""
        if not isinstance(payload, list):
            return self.dispatch_one(payload)
        if not payload:
            return _error_response(errors.invalid_request("an empty batch"))
        if len(payload) > MAX_BATCH:
            return _error_response(
                errors.invalid_request(
                    f"a batch holds at most {MAX_BATCH} calls", limit=MAX_BATCH, got=len(payload)
                )
            )
        ahead = self.recover_ahead(payload)
        responses = [
            r
            for r in (self.dispatch_one(item, ahead.get(i)) for i, item in enumerate(payload))
            if r is not None
        ]
        return responses or None

    def recover_ahead(self, batch: list[Any]) -> dict[int, SignedAhead]:
        """The signed transaction calls of a batch by position, decoded as `admit` decodes
        them and with their signers recovered: by this thread and RECOVERY_HELPERS threads of
        a pool together once there are RECOVER_AHEAD_MIN of them.

        This exists because the secp256k1 recovery is the largest single cost of a
        transaction and libsecp256k1 runs it without the GIL, so a second core can share it.
        It is done in a phase of its own, after decoding: a helper thread recovering while
        this thread runs Python waits for the GIL after every recovery (up to the 5 ms
        switch interval) and ends up slower than no helper at all.

        A call that does not decode cleanly is left out: its turn in `dispatch_one` then
        takes the ordinary path and gives the same error as it does alone. Decoding depends
        on nothing a call before it could change (an unsigned dev call, which reads the next
        nonce, is left to its turn)."""
        ahead: dict[int, SignedAhead] = {}
        if len(batch) < RECOVER_AHEAD_MIN:
            return ahead
        chain_id = self.node.genesis.chain_id
        for index, item in enumerate(batch):
            if _request_problem(item) is not None:
                continue
            spec = METHODS.get(item["method"])
            if spec is None or spec.message_type is None:
                continue
            try:
                signed = signed_call(spec.message_type, _bind(spec, item.get("params")))
                if signed is None:
                    continue
                message, signature = signed
                recoverable = crypto.recoverable_signature(signature)
                digest = crypto.digest(message, chain_id)
            except Exception:
                continue
            ahead[index] = SignedAhead(spec, message, signature, digest, recoverable)
        calls = deque(ahead.values())
        helpers = []
        if len(calls) >= RECOVER_AHEAD_MIN:
            pool = self._recovery_pool()
            helpers = [pool.submit(_recover_all, calls) for _ in range(RECOVERY_HELPERS)]
        _recover_all(calls)
        for helper in helpers:
            helper.result()
        return ahead

    def _recovery_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(RECOVERY_HELPERS, thread_name_prefix="recover")
        return self._pool

    def _admit_ahead(self, call: SignedAhead) -> Any:
        """What `admit` does with a signed call once `recover_ahead` decoded and recovered
        it: the same check of the recovered signer, then admission."""
        assert call.spec.signed_handler is not None
        if call.failure is not None:
            raise call.failure
        assert call.signer is not None
        chain_id = self.node.genesis.chain_id
        tx = crypto.verified_tx(call.message, call.signature, call.digest, call.signer, chain_id)
        return call.spec.signed_handler(self.node, tx)

    def refuse(
        self, request: web.Request, status: int, reason: str, data: dict[str, Any]
    ) -> web.Response:
        """The answer to a request `rpc.serving` refuses before its handler runs (a body too
        large, late, or past the budget of bodies in flight): on the JSON-RPC paths a -32600
        error with `data`, elsewhere `{"error": reason, ...}`; HTTP `status` either way."""
        if request.path not in JSONRPC_PATHS:
            return serving.plain_refusal(request, status, reason, data)
        return _json(_error_response(errors.invalid_request(reason, **data)), status=status)

    async def handle_rpc(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            failure = errors.invalid_request(
                f"the body exceeds {MAX_BODY_BYTES} bytes", limit=MAX_BODY_BYTES
            )
            return _json(_error_response(failure), status=413)
        try:
            payload = wire.parse_json(body)
        except ValueError as exc:
            return _json(_error_response(errors.parse_error(f"invalid JSON: {exc}")))
        if _calls_awaiting(payload):
            result = await self.dispatch_awaiting(payload)
        else:
            result = self.dispatch(payload)
        if result is None:
            return web.Response(status=204)
        return _json(result)

    async def handle_get_tx(self, request: web.Request) -> web.Response:
        try:
            tx_hash = wire.parse_hash(request.match_info["tx_hash"], "tx_hash")
        except InvalidParams as exc:
            return _json({"error": exc.reason}, status=400)
        record = self.node.tx_record(tx_hash)
        if record is None:
            return _json({"error": f"no transaction {wire.hex0x(tx_hash)}"}, status=404)
        return _json(render_tx(record))

    async def handle_get_pending(self, request: web.Request) -> web.Response:
        """GET /queryPendingTasks?ResourceAddress=..&TimeStamp=..[&Signature=..][&limit=..]
        in the upstream shape {code, message, result}; errors carry the JSON-RPC code, and a
        call signed over the deprecated text also gets its warning in `data`."""
        params: dict[str, Any] = dict(request.query)
        try:
            for name in ("TimeStamp", "limit"):
                if name in params:
                    params[name] = _query_int(params[name], name)
            spec = METHODS[api.QUERY_PENDING_TASKS]
            answer = pending_tasks_answer(self.node, spec.bind([], params))
        except ChainError as exc:
            failure = errors.error_for(exc)
            return _json(failure.to_json() | {"result": None}, status=400)
        except Exception:
            log.exception("GET /queryPendingTasks failed")
            return _json(errors.internal_error().to_json() | {"result": None})
        body: dict[str, Any] = {"code": 0, "message": "success", "result": answer.tasks}
        if answer.deprecation is not None:
            body["data"] = answer.deprecation
        return _json(body)

    async def handle_metrics(self, _request: web.Request) -> web.Response:
        """GET /metrics: the Prometheus text format (PROTOCOL 5.7)."""
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )

    async def handle_health(self, _request: web.Request) -> web.Response:
        head = self.node.head
        return _json(
            {
                "status": "ok",
                "chainId": self.node.genesis.chain_id,
                "genesisHash": wire.hex0x(self.node.genesis.hash),
                "height": head.height,
                "blockHash": wire.hex0x(head.hash),
                "appHash": wire.hex0x(head.app_hash),
                "time": head.time,
                "mempool": self.node.pending_count(),
                "validator": self.node.validator.address,
                **self.node.consensus_status(),
            }
        )


def _failure(name: str, exc: Exception) -> errors.RpcFailure:
    """The answer to a call that raised: its row of the error table, or -32603 (logged) for
    anything outside it."""
    if isinstance(exc, ChainError):
        return errors.error_for(exc)
    log.exception("method %s failed", name, exc_info=exc)
    return errors.internal_error()


def _response(item: Any, outcome: Any) -> dict[str, Any] | None:
    """The response object to a valid request `item` (None for a notification)."""
    if "id" not in item:
        return None
    if isinstance(outcome, errors.RpcFailure):
        return _error_response(outcome, item["id"])
    return {"jsonrpc": "2.0", "result": outcome, "id": item["id"]}


def _calls_awaiting(payload: Any) -> bool:
    """True when the body calls a dev control (never for a batch past MAX_BATCH)."""
    if isinstance(payload, dict):
        return _awaits(payload.get("method"))
    if isinstance(payload, list) and len(payload) <= MAX_BATCH:
        return any(isinstance(item, dict) and _awaits(item.get("method")) for item in payload)
    return False


def _awaits(method: Any) -> bool:
    return isinstance(method, str) and method in AWAITING_METHODS


def _bind(spec: MethodSpec, params: Any) -> dict[str, Any]:
    return spec.bind(
        params if isinstance(params, list) else [],
        params if isinstance(params, dict) else {},
    )


def _query_int(text: str, name: str) -> int:
    if not wire.DECIMAL.fullmatch(text) or len(text) > 19:
        raise InvalidParams(name, "expected a decimal integer")
    return int(text)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_bytes(obj), status=status, headers=JSON_HEADERS)
