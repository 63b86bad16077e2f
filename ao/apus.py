"""The APUS processes the unit ships, and the AI router's bridge to inferchain (PROTOCOL 8.10).

**Shipped.** At its first start the unit spawns the APUS token (`ao/processes/token.lua`) and
the AI router (`router.lua`), owned and scheduled by the unit's key; their ids are kept in
the store and given by `GET /apus`. On a dev chain (`params.aoAliases`, PROTOCOL 2) the two
take the ids APUS's document uses (`Dev-Process-Id`, 8.2), so its examples run unchanged,
the token's Faucet is on, and dev account 0 (the REST routes' sender when a request names
none) buys credits with 10 APUS from the Faucet, once; on any other chain their ids are
their spawns'. A router that another unit schedules is not bridged by this one.

**The bridge** has its own key (funded: it pays every task's fee and every message it
sends). It reads the router's `Pending` from the compute unit and, for each task there:
submits it as a SubmitTask (the session-prefixed prompt, `modelOptions` = the router's model
and the Infer's options), follows it with `queryTask`, and tells the router with a
`Task-Status` message (from the bridge's key): `processing` once the task is in a block,
then `successed` with `{result, attestation}` (the verified response; the task hash, its
verificationCount and the addresses of the verifiers whose verdicts were valid) and the
`Worker` (the resource node whose result was verified), or `failed` with the reason. Each
of these transactions is recorded before it is sent and sent once (`ao.once`): after a
restart the bridge goes on where it was, and the router, which ignores anything about a
task that is final, sends exactly one Infer-Response per accepted Infer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ao.cu import ComputeUnit, UnknownProcess
from ao.mu import MessengerUnit
from ao.once import OnceSender, poll_forever
from ao.processes import source
from ao.store import JsonStore
from chain.protocol.types import AoSpawn, Message, SubmitTask
from rpc.client import (
    AO_DEFAULT_COMPUTE_LIMIT,
    AO_DEFAULT_MEMORY_LIMIT,
    InferchainClient,
    RpcError,
    TransportError,
    Wallet,
    ao_tags_json,
)
from rpc.errors import TASK_NOT_FOUND, UNKNOWN_TASK

log = logging.getLogger(__name__)

TOKEN_ID = "mqBYxpDsolZmJyBdTK8TJp_ftOuIUXVYcSQ8MYZdJg0"  # APUS's document's ids
ROUTER_ID = "Bf6JJR2tl2Wr38O2-H6VctqtduxHgKF-NzRB9HhTRzo"
DEV_ID_TAG = "Dev-Process-Id"
IDS_KEY = b"apus/ids"  # -> {token, router}
SPAWN_PREFIX = b"apus/spawn/"  # token | router -> the spawn's record (ao.once)
DEV_PREFIX = b"apus/dev/"  # faucet | buy -> dev account 0's record (ao.once)
DEV_CREDIT_APUS = 10  # what dev account 0 buys credits with on a dev chain
TASK_PREFIX = b"apus/task/"  # <task key>/submit | /processing | /successed | /failed
OPEN = ("submitted", "processing", "completed")
VERIFIED_RESULT = 2  # executionInfo[].status of a verified result (PROTOCOL 4.6)
HEX_TEXT = re.compile(r"0x([0-9a-fA-F]{2})*")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """The router's spawn tags (router.lua's header says what each is)."""

    model: str = "gemma3-27b"
    armstrongs_per_credit: int = 10**10
    price: int = 1
    target_count: int = 1

    def tags(self) -> list[tuple[str, str]]:
        return [
            ("Model", self.model),
            ("Armstrongs-Per-Credit", str(self.armstrongs_per_credit)),
            ("Infer-Price", str(self.price)),
            ("Target-Count", str(self.target_count)),
        ]


def prompts_field(text: str) -> str:
    """A prompt as a SubmitTask's `prompts` bytes field: the text, or its UTF-8 in hex when
    the text would read as hex bytes (PROTOCOL 1)."""
    return "0x" + text.encode().hex() if HEX_TEXT.fullmatch(text) else text


def attestation_of(task: dict[str, Any], chain_id: int) -> tuple[dict[str, Any], str]:
    """The attestation of a verified task and its worker: the result entry that is the
    task's response, and the verifiers whose verdicts on it were valid."""
    entries = [
        e
        for e in task["executionInfo"]
        if e["status"] == VERIFIED_RESULT and e["result"] == task["response"]
    ]
    entry = min(entries, key=lambda e: int(e["rank"])) if entries else None
    verifiers = (
        [] if entry is None else [v["verifier"] for v in entry["verifications"] if v["valid"]]
    )
    attestation = {
        "chainId": chain_id,
        "taskHash": task["taskHash"],
        "verificationCount": task["verificationCount"],
        "verifiers": verifiers,
    }
    return attestation, "" if entry is None else str(entry["resourceNode"])


class Apus:
    """The shipped token and router, and the router's bridge."""

    def __init__(
        self,
        client: InferchainClient,
        cu: ComputeUnit,
        mu: MessengerUnit,
        store: JsonStore,
        bridge: Wallet,
        *,
        config: RouterConfig = RouterConfig(),
        poll_interval: float = 0.2,
    ) -> None:
        self.client = client
        self.cu = cu
        self.mu = mu
        self.store = store
        self.bridge = OnceSender(client, bridge, store)
        self.config = config
        self.poll_interval = poll_interval
        self.dev = False
        self.bridging = True  # False when the shipped router is another unit's
        self.dev_client = Wallet.dev(0)
        self._stopping = asyncio.Event()
        ids = store.get(IDS_KEY) or {}
        self.token: str | None = ids.get("token")
        self.router: str | None = ids.get("router")

    # Shipping the processes

    async def ship_when_reachable(self, retry_s: float = 1.0) -> None:
        """`ship`, once the chain answers (a unit may start before its validator)."""
        while True:
            try:
                await self.ship()
                return
            except TransportError as exc:
                log.info("APUS: waiting for the chain (%s)", exc)
                await asyncio.sleep(retry_s)

    async def ship(self) -> None:
        """Spawn the token and the router, once (the ids are kept); ValueError when the chain
        refuses a spawn (the unit's key cannot pay the fee)."""
        self.dev = bool((await self.client.get_params()).ao_aliases)
        await self.mu.sender.resend_pending(SPAWN_PREFIX)
        if self.token is None or self.router is None:
            token_tags = [("Name", "APUS"), ("Ticker", "APUS")]
            if self.dev:
                token_tags.append(("Faucet", "enabled"))
            token = await self._spawn("token", token_tags, TOKEN_ID)
            router_tags = [
                ("Name", "APUS AI Router"),
                ("Token", token),
                ("Bridge", self.bridge.wallet.address),
                *self.config.tags(),
            ]
            router = await self._spawn("router", router_tags, ROUTER_ID)
            self.token, self.router = token, router
            self.store.write({IDS_KEY: {"token": token, "router": router}})
        self.mu.monitor(self.token)
        self.mu.monitor(self.router)
        if self.dev and self.bridging:
            await self._dev_credits()

    async def _dev_credits(self) -> None:
        """On a dev chain, dev account 0 (the REST routes' sender when a request names none)
        gets 10 APUS from the Faucet and buys credits with them, once."""
        token, router = self.token, self.router
        assert token is not None and router is not None
        client = self.dev_client
        sender = OnceSender(self.client, client, self.store)
        await sender.resend_pending(DEV_PREFIX)
        steps = {
            b"faucet": [("Action", "Faucet")],
            b"buy": [
                ("Action", "Transfer"),
                ("Recipient", router),
                ("Quantity", str(DEV_CREDIT_APUS * 10**12)),
                ("X-Reason", "Buy-Credits"),
            ],
        }
        for name, tags in steps.items():
            record = await sender.send_message_once(DEV_PREFIX + name, token, tags)
            if "error" in record:
                log.warning("dev account 0 gets no APUS credits: %s", record["error"]["message"])
                return

    async def _spawn(self, name: str, tags: list[tuple[str, str]], dev_id: str) -> str:
        if self.dev:
            with contextlib.suppress(UnknownProcess):
                found = await self.cu.process(dev_id)
                if str(found["scheduler"]).lower() != self.mu.wallet.address.lower():
                    log.warning(
                        "APUS %s %s is another unit's (scheduler %s): this unit does not bridge it",
                        name,
                        dev_id,
                        found["scheduler"],
                    )
                    self.bridging = False
                return str(found["id"])
            tags = [*tags, (DEV_ID_TAG, dev_id)]
        unit = self.mu.wallet

        def build(nonce: int) -> Message:
            return AoSpawn(
                sender=unit.address,
                nonce=nonce,
                module=source(name),
                scheduler=unit.address,
                memory_limit=AO_DEFAULT_MEMORY_LIMIT,
                compute_limit=AO_DEFAULT_COMPUTE_LIMIT,
                cron_interval="",
                tags=ao_tags_json(tags),
                data="",
            )

        record = await self.mu.sender.send_once(SPAWN_PREFIX + name.encode(), build)
        if "error" in record:
            raise ValueError(f"the chain refused the APUS {name}: {record['error']['message']}")
        return dev_id if self.dev else str(record["id"])

    def info(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "router": self.router,
            "bridge": self.bridge.wallet.address,
            "documentIds": self.dev,
            "devClient": self.dev_client.address if self.dev else None,
        }

    def routes(self) -> list[web.RouteDef]:
        async def apus(_request: web.Request) -> web.Response:
            return web.json_response(self.info())

        return [web.get("/apus", apus)]

    # The bridge

    async def run_forever(self) -> None:
        await self.bridge.resend_pending(TASK_PREFIX)
        await poll_forever(self.step, self._stopping, self.poll_interval, "bridge")

    def stop(self) -> None:
        self._stopping.set()

    async def step(self) -> None:
        """One pass over the router's pending tasks."""
        if self.router is None or not self.bridging:
            return
        try:
            pending = await self.cu.read(self.router, ["Pending"])
            if not pending:
                return
            router = await self.cu.read(self.router, ["Router"])
        except LookupError:  # not in a block yet
            return
        for key in sorted(pending):
            await self._advance(key, pending[key], router)

    async def _advance(self, key: str, entry: dict[str, Any], router: dict[str, Any]) -> None:
        prefix = TASK_PREFIX + key.encode() + b"/"
        options = entry["options"]
        model_options = json.dumps(
            {"model": router["model"], **{k: options[k] for k in sorted(options)}},
            separators=(",", ":"),
        )
        wallet = self.bridge.wallet

        def submit(nonce: int) -> Message:
            return SubmitTask(
                sender=wallet.address,
                nonce=nonce,
                schema="text",
                target_count=int(router["target_count"]),
                prompts=prompts_field(str(entry["prompts"])),
                model_options=model_options,
            )

        record = await self.bridge.send_once(prefix + b"submit", submit)
        task_hash = str(record["digest"])
        if "error" in record:
            reason = f"the bridge could not submit the task: {record['error']['message']}"
            await self._report(prefix, key, "failed", task_hash, reason)
            return
        try:
            task = await self.client.query_task(task_hash)
        except RpcError as exc:
            if exc.code in (UNKNOWN_TASK, TASK_NOT_FOUND):  # not in a block yet: pending
                return
            raise
        status = task["status"]
        if status in OPEN:
            await self._report(prefix, key, "processing", task_hash)
        elif status == "verified":
            attestation, worker = attestation_of(task, await self.client.chain_id())
            data = json.dumps({"result": task["response"], "attestation": attestation})
            await self._report(prefix, key, "successed", task_hash, data, worker)
        else:
            await self._report(prefix, key, "failed", task_hash, f"the task is {status}")

    async def _report(
        self, prefix: bytes, key: str, status: str, task_hash: str, data: str = "", worker: str = ""
    ) -> None:
        router = self.router
        assert router is not None
        tags = [
            ("Action", "Task-Status"),
            ("Task-Reference", key),
            ("Status", status),
            ("Task-Hash", task_hash),
        ]
        if worker:
            tags.append(("Worker", worker))
        record = await self.bridge.send_message_once(prefix + status.encode(), router, tags, data)
        if "error" in record:
            log.error(
                "bridge: task %s: the router was not told %s: %s", key, status, record["error"]
            )
