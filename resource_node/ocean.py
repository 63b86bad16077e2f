"""Ocean Protocol's compute-to-data provider on a resource node (PROTOCOL 7.5).

Publishers register datasets (lists of records) and algorithms (a container, a prompt
template over a record's fields, model options) in the node's local registry; consumers pay
the node on the chain (a committed Transfer) and start a job that runs the algorithm over
every record on the node's own containers. The records never leave the node: consumers read
only status objects, the results (one output per record, JSONL) and the job's log.

Every request that acts for an address is signed by it (EIP-191 personal_sign, `sign_text`),
over the text `address + (jobId | documentId) [+ index] + nonce`, and its nonce must be above
the last one that address used (kept in the store, so across restarts). A refused request
changes nothing: no job, no asset, no nonce used, no transfer spent.

A job is stored as it goes, one synced batch per record (its result, its log line and the
index of the next record), so a job that was running when the node stopped resumes at the
first record not done (`recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from chain.protocol import crypto, wire
from chain.protocol.errors import ChainError
from resource_node.containers import Container, StageError, job_seed
from resource_node.jobs import BUSY_RETRY_AFTER_S, JobEngine, finish
from resource_node.jobstore import JobStore
from resource_node.untrusted import MAX_FIELD_LENGTH, describe
from rpc.client import InferchainClient, RpcError, TransportError

log = logging.getLogger(__name__)

PREFIX = b"ocean/"
ASSET_PREFIX = PREFIX + b"asset/"
JOB_PREFIX = PREFIX + b"job/"
OWNER_PREFIX = PREFIX + b"owner/"
NONCE_PREFIX = PREFIX + b"nonce/"
TRANSFER_PREFIX = PREFIX + b"transfer/"
RESULT_PREFIX = PREFIX + b"result/"
LOG_PREFIX = PREFIX + b"log/"

WEI_PER_AEGIS = 10**18
DEFAULT_ENVIRONMENT_ID = "inferchain-compute"
DEFAULT_MAX_JOBS = 4
MAX_ENVIRONMENTS = 16
MAX_RECORDS = 10_000  # per dataset, and per job over every dataset
MAX_ADDITIONAL_DATASETS = 8
MAX_TEXT = 1_000  # a name, a description, an id
MAX_TEMPLATE = MAX_FIELD_LENGTH
MAX_NONCE = 2**64 - 1
MAX_JOBS_LISTED = 1_000
SIGNATURE_LENGTH = 65
DID_PREFIX = "did:op:"
DID = re.compile(r"did:op:[0-9a-f]{64}")
JOB_ID = re.compile(r"[0-9a-f]{32}")
TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
ENV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
DID_DOMAIN = "inferchain/ocean/did/v1/"
RESULTS_INDEX = 0
LOG_INDEX = 1

# Operator-Service's statuses (the API document's table, and its examples for 7 and 8).
WARMING_UP = 1
STARTED = 10
CONFIGURING = 20
PROVISIONED = 30
DATA_FAILED = 31
ALGORITHM_FAILED = 32
RUNNING = 40
FILTERING = 50
PUBLISHING = 60
COMPLETED = 70
STOPPED = 7
DELETED = 8
STATUS_TEXT = {
    WARMING_UP: "Warming up",
    STARTED: "Job started",
    CONFIGURING: "Configuring volumes",
    PROVISIONED: "Provisioning success",
    DATA_FAILED: "Data provisioning failed",
    ALGORITHM_FAILED: "Algorithm provisioning failed",
    RUNNING: "Running algorithm",
    FILTERING: "Filtering results",
    PUBLISHING: "Publishing results",
    COMPLETED: "Job completed",
    STOPPED: "Job stopped",
    DELETED: "Job deleted successfully",
}
ENDED = frozenset({COMPLETED, STOPPED, DATA_FAILED, ALGORITHM_FAILED})

Clock = Callable[[], float]


class BadRequest(Exception):
    """A request refused with 400 `{error}`; the message names what is wrong."""


class Unavailable(Exception):
    """The node cannot take the request now (busy, or the chain unreachable): 503."""


# Configuration


@dataclass(frozen=True, slots=True)
class Environment:
    """One compute environment the node offers."""

    id: str
    price_min: Decimal  # AEGIS per job
    max_jobs: int
    desc: str
    disk_gb: float | None  # None: the free space where the store lives
    container: str | None  # None: the node's first external container

    @property
    def price_wei(self) -> int:
        return int(self.price_min * WEI_PER_AEGIS)


ENVIRONMENT_KEYS = ("id", "priceMin", "maxJobs", "desc", "diskGB", "container")


@dataclass(frozen=True, slots=True)
class OceanConfig:
    """The `"ocean"` object of the node's `--config`: `{environments: [...]}`."""

    environments: tuple[Environment, ...]

    @classmethod
    def parse(cls, mapping: Mapping[str, Any] | None, where: str = "ocean") -> OceanConfig:
        """ValueError naming the field that is wrong."""
        mapping = mapping or {}
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{where}: an object, got {describe(mapping)}")
        unknown = sorted(set(mapping) - {"environments"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: environments")
        items = mapping.get("environments", [{}])
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ENVIRONMENTS:
            raise ValueError(f"{where}.environments: a list of 1 to {MAX_ENVIRONMENTS} objects")
        envs = tuple(
            _environment(item, f"{where}.environments[{i}]") for i, item in enumerate(items)
        )
        ids = [e.id for e in envs]
        for env_id in ids:
            if ids.count(env_id) > 1:
                raise ValueError(f"{where}.environments: id {env_id!r} given twice")
        return cls(envs)

    def environment(self, env_id: str) -> Environment | None:
        return next((e for e in self.environments if e.id == env_id), None)


def _environment(item: Any, where: str) -> Environment:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: an object, got {describe(item)}")
    unknown = sorted(set(item) - set(ENVIRONMENT_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    env_id = item.get("id", DEFAULT_ENVIRONMENT_ID)
    if not isinstance(env_id, str) or not ENV_ID.fullmatch(env_id):
        raise ValueError(f"{where}.id: 1 to 128 letters, digits and ._:-, got {describe(env_id)}")
    price = item.get("priceMin", 1)
    if isinstance(price, bool) or not isinstance(price, int | float | str):
        raise ValueError(f"{where}.priceMin: a number of AEGIS, got {describe(price)}")
    try:
        price_min = Decimal(str(price))
    except InvalidOperation as exc:
        raise ValueError(f"{where}.priceMin: a number of AEGIS, got {price!r}") from exc
    if not price_min.is_finite() or price_min < 0 or (price_min * WEI_PER_AEGIS) % 1:
        raise ValueError(f"{where}.priceMin: AEGIS >= 0 in whole wei (10^-18), got {price!r}")
    max_jobs = item.get("maxJobs", DEFAULT_MAX_JOBS)
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
        raise ValueError(f"{where}.maxJobs: a positive integer, got {describe(max_jobs)}")
    desc = item.get("desc", "inferchain inference over a private dataset")
    if not isinstance(desc, str) or len(desc) > MAX_TEXT:
        raise ValueError(f"{where}.desc: a string of at most {MAX_TEXT} characters")
    disk = item.get("diskGB")
    if disk is not None and (
        isinstance(disk, bool) or not isinstance(disk, int | float) or disk < 0
    ):
        raise ValueError(f"{where}.diskGB: a number of GB >= 0, got {describe(disk)}")
    container = item.get("container")
    if container is not None and not isinstance(container, str):
        raise ValueError(f"{where}.container: a container id, got {describe(container)}")
    return Environment(
        env_id, price_min, max_jobs, desc, None if disk is None else float(disk), container
    )


# Signatures, nonces, DIDs


def sign_text(text: str, private_key: bytes) -> str:
    """`text` signed as personal_sign does (EIP-191), 0x + 65 bytes hex."""
    return wire.hex0x(crypto.sign_digest(crypto.personal_message_hash(text), private_key))


def signed_by(text: str, signature: Any, address: str) -> bool:
    """Whether `signature` is `address`'s personal_sign of `text`, or of keccak256(text) as
    Ocean's provider and its clients sign (`signMessage(arrayify(solidityKeccak256(bytes)))`)."""
    if not isinstance(signature, str):
        return False
    body = signature[2:] if signature[:2] in ("0x", "0X") else signature
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        return False
    if len(raw) != SIGNATURE_LENGTH:
        return False
    if raw[64] in (0, 1):
        raw = raw[:64] + bytes([raw[64] + 27])
    hashed = crypto.keccak(text.encode())
    digests = (
        crypto.personal_message_hash(text),
        crypto.keccak(b"\x19Ethereum Signed Message:\n32" + hashed),
    )
    for digest in digests:
        try:
            if crypto.recover_digest(digest, raw) == address:
                return True
        except ChainError:
            return False
    return False


def nonce_admits(last: int, nonce: int) -> bool:
    """The nonce rule: strictly above the last nonce the address used (0 before any)."""
    return nonce > last


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def asset_did(publisher: str, asset: Mapping[str, Any]) -> str:
    """The DID of `asset` published by `publisher`: did:op: + keccak256 of the domain, the
    publisher's checksummed address, `/` and the canonical JSON of the normalized asset."""
    normalized = normalize_asset(asset, lambda _cid: True)
    address = wire.parse_address(publisher, "publisherAddress")
    digest = crypto.keccak(f"{DID_DOMAIN}{address}/".encode() + canonical_json(normalized))
    return DID_PREFIX + digest.hex()


def normalize_asset(asset: Any, has_container: Callable[[str], bool]) -> dict[str, Any]:
    """An asset as published, every field present (BadRequest naming what is wrong): a
    dataset `{type, name, description, records: [...]}` (records a JSON array or JSONL text)
    or an algorithm `{type, name, description, container, template, options}`."""
    if not isinstance(asset, dict):
        raise BadRequest(f"asset: an object, got {describe(asset)}")
    kind = asset.get("type")
    name = _short_text(asset.get("name", ""), "asset.name")
    description = _short_text(asset.get("description", ""), "asset.description")
    if kind == "dataset":
        _only(asset, ("type", "name", "description", "records"), "asset")
        return {
            "type": "dataset",
            "name": name,
            "description": description,
            "records": parse_records(asset.get("records"), "asset.records"),
        }
    if kind == "algorithm":
        _only(asset, ("type", "name", "description", "container", "template", "options"), "asset")
        return {"type": "algorithm", "name": name, "description": description} | algorithm_spec(
            asset, "asset", has_container
        )
    raise BadRequest(f"asset.type: 'dataset' or 'algorithm', got {describe(kind)}")


def algorithm_spec(
    value: Mapping[str, Any], where: str, has_container: Callable[[str], bool]
) -> dict[str, Any]:
    container = value.get("container", value.get("image"))
    if not isinstance(container, str) or not has_container(container):
        raise BadRequest(f"{where}.container: not a container of this node: {describe(container)}")
    template = value.get("template", value.get("rawcode"))
    if not isinstance(template, str) or not template or len(template) > MAX_TEMPLATE:
        raise BadRequest(f"{where}.template: a prompt template of 1 to {MAX_TEMPLATE} characters")
    options = value.get("options", {})
    if not isinstance(options, dict):
        raise BadRequest(f"{where}.options: an object of model options, got {describe(options)}")
    return {"container": container, "template": template, "options": options}


def parse_records(value: Any, where: str) -> list[Any]:
    if isinstance(value, str):
        records = []
        for number, line in enumerate(value.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(wire.parse_json(line.encode()))
            except ValueError as exc:
                raise BadRequest(f"{where}: line {number} is not JSON ({exc})") from exc
        value = records
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{where}: a non-empty JSON array or JSONL text of records")
    if len(value) > MAX_RECORDS:
        raise BadRequest(f"{where}: at most {MAX_RECORDS} records, got {len(value)}")
    return value


def render_template(template: str, record: Any, extra: Mapping[str, Any]) -> str:
    """The prompt of one record: `{field}` is the record's field (strings as they are, other
    values as JSON), else `extra`'s (algocustomdata); `{record}` the whole record; `{{` `}}`
    are braces. KeyError naming a field neither has."""
    fields = record if isinstance(record, dict) else {}

    def value(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name in fields:
            found = fields[name]
        elif name in extra:
            found = extra[name]
        elif name == "record":
            found = record
        else:
            raise KeyError(name)
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

    return PLACEHOLDER.sub(value, template)


def _short_text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BadRequest(f"{where}: a string of at most {MAX_TEXT} characters")
    return value


def _only(value: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise BadRequest(f"{where}: unknown field(s) {', '.join(unknown)}")


def _address(value: Any, where: str) -> str:
    try:
        return wire.parse_address(value, where)
    except ChainError as exc:
        raise BadRequest(
            f"{where}: an address (0x and 40 hex digits), got {describe(value)}"
        ) from exc


def _nonce(value: Any) -> tuple[int, str]:
    """The nonce and its decimal text as it is signed."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str) and wire.ascii_digits(value) and len(value) <= 20:
        text = value
    else:
        raise BadRequest(f"nonce: an integer from 1 to {MAX_NONCE}, got {describe(value)}")
    number = int(text)
    if str(number) != text or not 1 <= number <= MAX_NONCE:
        raise BadRequest(f"nonce: an integer from 1 to {MAX_NONCE} in plain decimal, got {text!r}")
    return number, text


def _key(prefix: bytes, *parts: str) -> bytes:
    return prefix + "/".join(parts).encode()


# The machine


def machine() -> dict[str, Any]:
    """The CPU, its count and the memory of this machine, as /proc says."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    return {"cpuType": cpu, "gpuType": "", "nCPU": os.cpu_count() or 1, "nGPU": 0, "ramGB": ram_gb}


# The provider


@dataclass(frozen=True, slots=True)
class Signed:
    """A request's signer and nonce, checked."""

    address: str
    nonce: int


class OceanProvider:
    """The `/api/services/...` routes over the node's containers, store and chain client."""

    def __init__(
        self,
        *,
        config: OceanConfig,
        engine: JobEngine,
        store: JobStore,
        client: InferchainClient,
        address: str,
        base_url: Callable[[], str],
        clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.engine = engine
        self.store = store
        self.client = client
        self.address = wire.parse_address(address, "address")
        self.base_url = base_url
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._env_of: dict[str, str] = {}
        self._to_resume: list[str] = []
        self._chain_id: int | None = None
        for env in config.environments:
            if env.container is not None and env.container not in engine.containers:
                raise ValueError(
                    f"ocean.environments: environment {env.id} names container "
                    f"{env.container!r}, which this node does not have"
                )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/services/assets", self._guard(self.publish)),
            web.get("/api/services/assets", self._guard(self.asset_info)),
            web.post("/api/services/compute", self._guard(self.start)),
            web.post("/api/compute", self._guard(self.start)),  # the document's example
            web.get("/api/services/compute", self._guard(self.status)),
            web.put("/api/services/compute", self._guard(self.stop)),
            web.delete("/api/services/compute", self._guard(self.delete)),
            web.get("/api/services/computeResult", self._guard(self.result)),
            web.get("/api/services/computeLogs", self._guard(self.job_log)),
            web.get("/api/services/computeEnvironments", self._guard(self.environments)),
        ]

    def _guard(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            self._resume_pending()
            try:
                response: web.StreamResponse = await handler(request)
            except BadRequest as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except Unavailable as exc:
                response = web.json_response({"error": str(exc)}, status=503)
                response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
            except Exception:
                log.exception("ocean: %s %s failed", request.method, request.path)
                return web.json_response({"error": "internal error"}, status=500)
            return response

        return guarded

    # Start and stop

    def recover(self) -> int:
        """Jobs that were running when the node stopped resume at their first record not
        done; the number of them."""
        count = 0
        for _key, job in self.store.scan(JOB_PREFIX):
            if job["status"] in ENDED:
                continue
            count += 1
            self._append_log(job, f"the node restarted: resuming at record {job['next']}", {})
            self._to_resume.append(job["jobId"])
        if count:
            log.warning("ocean: %d jobs were running when the node stopped: resuming", count)
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._resume_pending()
        return count

    def _resume_pending(self) -> None:
        while self._to_resume:
            job_id = self._to_resume.pop()
            job = self.store.get(_key(JOB_PREFIX, job_id))
            if job is not None and job_id not in self._tasks:
                self._launch(job)

    async def close(self, grace: float) -> None:
        """Let running jobs end within `grace` seconds; the rest are cancelled where they
        are, and resume at the next start."""
        await finish(self._tasks.values(), grace)

    # Requests: reading them

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        """The request's body, a JSON object; BadRequest otherwise."""
        raw = await request.read()
        try:
            body = wire.parse_json(raw)
        except ValueError as exc:
            raise BadRequest(f"body: not JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise BadRequest(f"body: a JSON object, got {describe(body)}")
        return body

    async def _params(self, request: web.Request) -> dict[str, Any]:
        """The query's parameters, and a JSON object body's (a body wins)."""
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body and (await request.read()).strip():
            params.update(await self._body(request))
        if "consumerAddress" not in params and "owner" in params:
            params["consumerAddress"] = params["owner"]
        return params

    def _last_nonce(self, address: str) -> int:
        value = self.store.get(_key(NONCE_PREFIX, address.lower()))
        return 0 if value is None else int(value)

    def _check_signed(
        self, params: Mapping[str, Any], who: str, middle: str, *, extra_hint: str = ""
    ) -> Signed:
        """The signer `params[who]` proved, its nonce above its last (nothing used yet)."""
        if who not in params:
            raise BadRequest(f"{who}: missing")
        address_text = params[who]
        address = _address(address_text, who)
        if "nonce" not in params:
            raise BadRequest("nonce: missing")
        nonce, nonce_text = _nonce(params["nonce"])
        if "signature" not in params:
            raise BadRequest("signature: missing")
        text = f"{address_text}{middle}{nonce_text}"
        if not signed_by(text, params["signature"], address):
            raise BadRequest(
                f"signature: not {who}'s personal_sign of {who} + "
                f"{extra_hint or 'id'} + nonce ({text!r})"
            )
        last = self._last_nonce(address)
        if not nonce_admits(last, nonce):
            raise BadRequest(f"nonce: {nonce} is not above {last}, the last this address used")
        return Signed(address, nonce)

    def _use_nonce(self, signed: Signed, changes: dict[bytes, Any]) -> dict[bytes, Any]:
        """`changes` with the nonce used, after checking again that it still may be."""
        last = self._last_nonce(signed.address)
        if not nonce_admits(last, signed.nonce):
            raise BadRequest(
                f"nonce: {signed.nonce} is not above {last}, the last this address used"
            )
        return {**changes, _key(NONCE_PREFIX, signed.address.lower()): str(signed.nonce)}

    # Assets

    def _asset(self, did: Any, where: str, kind: str) -> dict[str, Any]:
        if not isinstance(did, str) or not DID.fullmatch(did):
            raise BadRequest(f"{where}: a DID (did:op: and 64 hex digits), got {describe(did)}")
        asset = self.store.get(_key(ASSET_PREFIX, did))
        if asset is None:
            raise BadRequest(f"{where}: no asset {did} on this node")
        if asset["type"] != kind:
            raise BadRequest(f"{where}: {did} is a {asset['type']}, not a {kind}")
        value: dict[str, Any] = asset
        return value

    async def publish(self, request: web.Request) -> web.Response:
        """POST /api/services/assets `{publisherAddress, nonce, signature, asset}` -> `{did}`;
        signed over publisherAddress + did + nonce."""
        body = await self._body(request)
        _only(body, ("publisherAddress", "nonce", "signature", "asset"), "body")
        if "asset" not in body:
            raise BadRequest("asset: missing")
        normalized = normalize_asset(body["asset"], lambda cid: cid in self.engine.containers)
        publisher = _address(body.get("publisherAddress"), "publisherAddress")
        did = asset_did(publisher, normalized)
        signed = self._check_signed(body, "publisherAddress", did, extra_hint="did")
        changes: dict[bytes, Any] = {}
        if self.store.get(_key(ASSET_PREFIX, did)) is None:
            changes[_key(ASSET_PREFIX, did)] = normalized | {
                "did": did,
                "publisher": publisher,
                "created": self.clock(),
            }
        self.store.write(self._use_nonce(signed, changes))
        return web.json_response({"did": did, **self._metadata(did)})

    def _metadata(self, did: str) -> dict[str, Any]:
        asset = self.store.get(_key(ASSET_PREFIX, did))
        out = {k: v for k, v in asset.items() if k != "records"}
        if asset["type"] == "dataset":
            out["recordCount"] = len(asset["records"])
        return out

    async def asset_info(self, request: web.Request) -> web.Response:
        """GET /api/services/assets?did=: an asset's metadata; a dataset's without its records."""
        did = request.query.get("did")
        if not isinstance(did, str) or not DID.fullmatch(did):
            raise BadRequest(f"did: a DID (did:op: and 64 hex digits), got {describe(did)}")
        if self.store.get(_key(ASSET_PREFIX, did)) is None:
            raise BadRequest(f"did: no asset {did} on this node")
        return web.json_response(self._metadata(did))

    # Environments

    async def _chain(self) -> int:
        if self._chain_id is None:
            try:
                self._chain_id = await self.client.chain_id()
            except (RpcError, TransportError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise Unavailable(f"the chain cannot be reached: {exc}") from exc
        return self._chain_id

    def _running_in(self, env_id: str) -> int:
        return sum(1 for job_id in self._tasks if self._env_of.get(job_id) == env_id)

    async def environments(self, request: web.Request) -> web.Response:
        """GET /api/services/computeEnvironments?chainId= (chainID too)."""
        text = request.query.get("chainId", request.query.get("chainID"))
        if text is None:
            raise BadRequest("chainId: missing")
        if not wire.ascii_digits(text) or len(text) > 20:
            raise BadRequest(f"chainId: an integer, got {describe(text)}")
        chain_id = await self._chain()
        if int(text) != chain_id:
            raise BadRequest(f"chainId: this provider is on chain {chain_id}, not {text}")
        info = machine()
        out = []
        for env in self.config.environments:
            disk = env.disk_gb
            if disk is None:
                try:
                    disk = round(shutil.disk_usage(self.store.path).free / 1024**3, 1)
                except OSError:
                    disk = 0.0
            out.append(
                {
                    "id": env.id,
                    **info,
                    "diskGB": disk,
                    "currentJobs": self._running_in(env.id),
                    "maxJobs": env.max_jobs,
                    "priceMin": float(env.price_min),
                    "desc": env.desc,
                }
            )
        return web.json_response(out)

    def _container_of(self, env: Environment, algorithm: Mapping[str, Any]) -> str:
        cid: str = algorithm["container"]
        if env.container is not None and cid != env.container:
            raise BadRequest(
                f"algorithm.container: environment {env.id} runs {env.container}, not {cid}"
            )
        return cid

    def _default_container(self) -> str | None:
        return next((c.id for c in self.engine.containers.values() if c.config.external), None)

    # Starting a job

    async def start(self, request: web.Request) -> web.Response:
        """POST /api/services/compute (and /api/compute): `[status object]`."""
        body = await self._body(request)
        _only(
            body,
            (
                "signature",
                "consumerAddress",
                "nonce",
                "environment",
                "dataset",
                "algorithm",
                "additionalDatasets",
            ),
            "body",
        )
        env_id = body.get("environment", self.config.environments[0].id)
        env = self.config.environment(env_id) if isinstance(env_id, str) else None
        if env is None:
            known = ", ".join(e.id for e in self.config.environments)
            raise BadRequest(f"environment: {describe(env_id)} is not offered here ({known})")
        dataset = body.get("dataset")
        if not isinstance(dataset, dict):
            raise BadRequest(f"dataset: an object, got {describe(dataset)}")
        _only(dataset, ("documentId", "serviceId", "transferTxId", "userdata"), "dataset")
        did: str = self._asset(dataset.get("documentId"), "dataset.documentId", "dataset")["did"]
        for key in ("serviceId",):
            if key in dataset and not isinstance(dataset[key], str):
                raise BadRequest(f"dataset.{key}: a string, got {describe(dataset[key])}")
        if "userdata" in dataset and not isinstance(dataset["userdata"], dict):
            raise BadRequest("dataset.userdata: an object")
        tx_hash = dataset.get("transferTxId")
        if tx_hash is None:
            raise BadRequest("dataset.transferTxId: missing: the payment's transaction hash")
        if not isinstance(tx_hash, str) or not TX_HASH.fullmatch(tx_hash):
            raise BadRequest(f"dataset.transferTxId: a transaction hash, got {describe(tx_hash)}")
        datasets = [did, *self._additional(body.get("additionalDatasets", []))]
        total = sum(len(self._asset(d, "dataset", "dataset")["records"]) for d in datasets)
        if total > MAX_RECORDS:
            raise BadRequest(f"additionalDatasets: at most {MAX_RECORDS} records in a job")
        algorithm = self._algorithm(body.get("algorithm"), env)
        consumer = _address(body.get("consumerAddress"), "consumerAddress")
        container = self.engine.containers[algorithm["container"]]
        if not container.config.admits_address(consumer):
            raise BadRequest(f"consumerAddress: container {container.id} does not admit {consumer}")
        signed = self._check_signed(body, "consumerAddress", did, extra_hint="documentId")
        self._check_capacity(env)
        if self.store.get(_key(TRANSFER_PREFIX, tx_hash.lower())) is not None:
            raise BadRequest(f"dataset.transferTxId: {tx_hash} has paid for a job already")
        await self._check_payment(tx_hash, consumer, env)
        # Checked again after the wait: another request may have taken them meanwhile.
        self._check_capacity(env)
        if self.store.get(_key(TRANSFER_PREFIX, tx_hash.lower())) is not None:
            raise BadRequest(f"dataset.transferTxId: {tx_hash} has paid for a job already")
        now = self.clock()
        job_id = uuid.uuid4().hex
        job = {
            "jobId": job_id,
            "owner": consumer,
            "documentId": did,
            "datasets": datasets,
            "algorithm": algorithm,
            "environment": env.id,
            "transferTxId": tx_hash.lower(),
            "dateCreated": now,
            "dateFinished": None,
            "status": WARMING_UP,
            "next": 0,
            "done": 0,
            "records": total,
            "cancelled": 0,
            "logLines": 1,
        }
        changes = {
            _key(JOB_PREFIX, job_id): job,
            _key(OWNER_PREFIX, consumer.lower(), job_id): job_id,
            _key(TRANSFER_PREFIX, tx_hash.lower()): {"jobId": job_id, "consumer": consumer},
            _key(LOG_PREFIX, job_id, f"{0:08d}"): f"status {WARMING_UP} {STATUS_TEXT[WARMING_UP]}",
        }
        self.store.write(self._use_nonce(signed, changes))
        self._launch(job)
        return web.json_response([self._status_object(job)])

    def _additional(self, value: Any) -> list[str]:
        if not isinstance(value, list) or len(value) > MAX_ADDITIONAL_DATASETS:
            raise BadRequest(
                f"additionalDatasets: a list of at most {MAX_ADDITIONAL_DATASETS} datasets"
            )
        out = []
        for i, item in enumerate(value):
            where = f"additionalDatasets[{i}]"
            if not isinstance(item, dict):
                raise BadRequest(f"{where}: an object, got {describe(item)}")
            self._asset(item.get("documentId"), f"{where}.documentId", "dataset")
            out.append(item["documentId"])
        return out

    def _algorithm(self, value: Any, env: Environment) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BadRequest(f"algorithm: an object, got {describe(value)}")
        _only(
            value,
            ("documentId", "meta", "serviceId", "transferTxId", "userdata", "algocustomdata"),
            "algorithm",
        )
        custom = value.get("algocustomdata", {})
        if not isinstance(custom, dict):
            raise BadRequest(f"algorithm.algocustomdata: an object, got {describe(custom)}")
        if "userdata" in value and not isinstance(value["userdata"], dict):
            raise BadRequest("algorithm.userdata: an object")
        for key in ("serviceId", "transferTxId"):
            if key in value and not isinstance(value[key], str):
                raise BadRequest(f"algorithm.{key}: a string, got {describe(value[key])}")
        has = self.engine.containers.__contains__
        if "meta" in value:
            meta = value["meta"]
            if not isinstance(meta, dict):
                raise BadRequest(f"algorithm.meta: an object, got {describe(meta)}")
            if "container" not in meta and "image" not in meta:
                meta = {**meta, "container": env.container or self._default_container()}
            spec = algorithm_spec(meta, "algorithm.meta", has)
            document = None
        elif "documentId" in value:
            asset = self._asset(value["documentId"], "algorithm.documentId", "algorithm")
            spec = {k: asset[k] for k in ("container", "template", "options")}
            if not has(spec["container"]):
                raise BadRequest(
                    f"algorithm.documentId: its container {spec['container']} is not on this node"
                )
            document = value["documentId"]
        else:
            raise BadRequest("algorithm: documentId or meta is required")
        self._container_of(env, spec)
        return spec | {"documentId": document, "algocustomdata": custom}

    def _check_capacity(self, env: Environment) -> None:
        engine = self.engine
        if engine.running + engine.reserved >= engine.max_running:
            raise Unavailable(
                f"{engine.running + engine.reserved} jobs are running, the most this node runs"
            )
        if self._running_in(env.id) >= env.max_jobs:
            raise Unavailable(f"environment {env.id} runs {env.max_jobs} jobs, its maxJobs")

    async def _check_payment(self, tx_hash: str, consumer: str, env: Environment) -> None:
        where = "dataset.transferTxId"
        try:
            tx = await self.client.get_transaction(tx_hash)
        except RpcError as exc:
            raise BadRequest(f"{where}: no committed transaction {tx_hash} ({exc})") from exc
        except (TransportError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"the chain cannot be reached to check the payment: {exc}") from exc
        params = tx.get("params") or {}
        if tx.get("type") != "Transfer":
            raise BadRequest(f"{where}: {tx_hash} is a {tx.get('type')}, not a Transfer")
        if tx.get("status") != "committed":
            raise BadRequest(f"{where}: {tx_hash} is {tx.get('status')}, not committed")
        sender = params.get("sender", params.get("from"))
        if not isinstance(sender, str) or sender.lower() != consumer.lower():
            raise BadRequest(f"{where}: {tx_hash} is from {sender}, not consumerAddress {consumer}")
        recipient = params.get("to")
        if not isinstance(recipient, str) or recipient.lower() != self.address.lower():
            raise BadRequest(f"{where}: {tx_hash} pays {recipient}, not this node {self.address}")
        try:
            amount = int(str(params.get("amount")))
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"{where}: {tx_hash} has no readable amount") from exc
        if amount < env.price_wei:
            raise BadRequest(
                f"{where}: {tx_hash} pays {amount} wei, less than the {env.price_wei} wei "
                f"({env.price_min} AEGIS) of environment {env.id}"
            )

    # Running a job

    def _launch(self, job: dict[str, Any]) -> None:
        job_id = job["jobId"]
        self._env_of[job_id] = job["environment"]
        self.engine.reserved += 1
        task = asyncio.create_task(self._run(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _task: self._ended(job_id, task))

    def _ended(self, job_id: str, task: asyncio.Task[None]) -> None:
        # A done callback: it runs even for a task cancelled before it started.
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]
            self._env_of.pop(job_id, None)
        self.engine.reserved -= 1

    def _job(self, job_id: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.store.get(_key(JOB_PREFIX, job_id))
        return value

    def _append_log(
        self, job: dict[str, Any], line: str, changes: dict[bytes, Any]
    ) -> dict[bytes, Any]:
        """`changes` with a log line added, and writes them with the job as it now is."""
        index = job["logLines"]
        job["logLines"] = index + 1
        self.store.write(
            {
                **changes,
                _key(LOG_PREFIX, job["jobId"], f"{index:08d}"): line,
                _key(JOB_PREFIX, job["jobId"]): job,
            }
        )
        return changes

    def _set_status(self, job: dict[str, Any], status: int, note: str = "") -> None:
        job["status"] = status
        if status in ENDED:
            job["dateFinished"] = self.clock()
        text = f"status {status} {STATUS_TEXT[status]}" + (f": {note}" if note else "")
        self._append_log(job, text, {})

    async def _run(self, job_id: str) -> None:
        try:
            job = self._job(job_id)
            if job is None:
                return
            if job["status"] < PROVISIONED:
                for status in (STARTED, CONFIGURING):
                    self._set_status(job, status)
            records = self._provision_data(job)
            if records is None:
                return
            container = self._provision_algorithm(job)
            if container is None:
                return
            if job["status"] < PROVISIONED:
                self._set_status(job, PROVISIONED)
            if job["status"] < RUNNING:
                self._set_status(job, RUNNING)
            if job["status"] == RUNNING:
                await self._run_records(job, records, container)
                self._set_status(job, FILTERING)
            if job["status"] == FILTERING:
                self._set_status(job, PUBLISHING)
            self._set_status(job, COMPLETED, f"{job['done']} of {job['records']} records run")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ocean: job %s failed unexpectedly", job_id)

    def _provision_data(self, job: dict[str, Any]) -> list[Any] | None:
        records: list[Any] = []
        for did in job["datasets"]:
            asset = self.store.get(_key(ASSET_PREFIX, did))
            if asset is None or asset.get("type") != "dataset":
                self._set_status(job, DATA_FAILED, f"dataset {did} is not on this node")
                return None
            records.extend(asset["records"])
        return records

    def _provision_algorithm(self, job: dict[str, Any]) -> Container | None:
        cid = job["algorithm"]["container"]
        container = self.engine.containers.get(cid)
        if container is None or not container.config.admits_address(job["owner"]):
            self._set_status(
                job, ALGORITHM_FAILED, f"container {cid} is not available to the owner"
            )
            return None
        return container

    async def _run_records(
        self, job: dict[str, Any], records: list[Any], container: Container
    ) -> None:
        algorithm = job["algorithm"]
        for index in range(job["next"], len(records)):
            line: dict[str, Any] = {"index": index}
            try:
                prompt = render_template(
                    algorithm["template"], records[index], algorithm["algocustomdata"]
                )
            except KeyError as exc:
                line["error"] = f"the template's field {exc.args[0]!r} is not in the record"
                note = f"record {index}: failed: no field {exc.args[0]!r}"
            else:
                data = {"prompt": prompt, "options": algorithm["options"]}
                try:
                    output = await container.run(data, job_seed(job["jobId"], index))
                except StageError as exc:
                    line["error"] = str(exc)
                    note = f"record {index}: failed: {exc}"
                else:
                    line |= output
                    tokens = (output.get("usage") or {}).get("completion_tokens")
                    note = f"record {index}: done" + (f" ({tokens} tokens)" if tokens else "")
            job["next"] = index + 1
            job["done"] += 1
            self._append_log(job, note, {_key(RESULT_PREFIX, job["jobId"], f"{index:08d}"): line})

    # Reading, stopping, deleting

    def _status_object(self, job: Mapping[str, Any], status: int | None = None) -> dict[str, Any]:
        code = job["status"] if status is None else status
        base = self.base_url().rstrip("/")
        job_id = job["jobId"]
        results = (
            [
                f"{base}/api/services/computeResult?jobId={job_id}&index={RESULTS_INDEX}",
                f"{base}/api/services/computeResult?jobId={job_id}&index={LOG_INDEX}",
            ]
            if code in (COMPLETED, STOPPED)
            else []
        )
        return {
            "owner": job["owner"],
            "documentId": job["documentId"],
            "jobId": job_id,
            "dateCreated": job["dateCreated"],
            "dateFinished": job["dateFinished"],
            "status": code,
            "statusText": STATUS_TEXT[code],
            "algorithmLogUrl": f"{base}/api/services/computeLogs?jobId={job_id}",
            "resultsUrls": results,
            "resultsDid": "",
        }

    def _select(
        self, params: Mapping[str, Any], need_id: bool
    ) -> tuple[Signed, list[dict[str, Any]]]:
        """The signer's jobs that `params` names by jobId or documentId (every job of the
        signer when neither is given and `need_id` is false)."""
        job_id = params.get("jobId")
        did = params.get("documentId")
        if job_id is not None and (not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id)):
            raise BadRequest(f"jobId: 32 hex digits, got {describe(job_id)}")
        if did is not None and (not isinstance(did, str) or not DID.fullmatch(did)):
            raise BadRequest(f"documentId: a DID (did:op: and 64 hex digits), got {describe(did)}")
        if need_id and job_id is None and did is None:
            raise BadRequest("jobId or documentId: one is required")
        signed = self._check_signed(
            params, "consumerAddress", job_id or did or "", extra_hint="(jobId | documentId)"
        )
        if job_id is not None:
            job = self._job(job_id)
            if job is None or job["owner"] != signed.address:
                raise BadRequest(f"jobId: no job {job_id} of {signed.address}")
            if did is not None and job["documentId"] != did:
                raise BadRequest(f"documentId: job {job_id} is not of {did}")
            return signed, [job]
        jobs = []
        for _k, jid in self.store.scan(_key(OWNER_PREFIX, signed.address.lower()) + b"/"):
            job = self._job(jid)
            if job is not None and (did is None or job["documentId"] == did):
                jobs.append(job)
            if len(jobs) >= MAX_JOBS_LISTED:
                break
        if did is not None and not jobs:
            raise BadRequest(f"documentId: no job of {signed.address} on {did}")
        return signed, sorted(jobs, key=lambda j: j["dateCreated"])

    async def status(self, request: web.Request) -> web.Response:
        """GET /api/services/compute: the signer's jobs, by jobId, documentId or all."""
        signed, jobs = self._select(await self._params(request), need_id=False)
        self.store.write(self._use_nonce(signed, {}))
        return web.json_response([self._status_object(job) for job in jobs])

    async def _stop_job(self, job: dict[str, Any]) -> dict[str, Any]:
        job_id = job["jobId"]
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        current = self._job(job_id) or job
        if current["status"] in ENDED:
            return current
        current["cancelled"] = current["records"] - current["next"]
        self._set_status(current, STOPPED, f"{current['cancelled']} records cancelled")
        return current

    async def stop(self, request: web.Request) -> web.Response:
        """PUT /api/services/compute: the named jobs stopped (7); records not run cancelled."""
        signed, jobs = self._select(await self._params(request), need_id=False)
        self.store.write(self._use_nonce(signed, {}))
        stopped = [await self._stop_job(job) for job in jobs]
        return web.json_response([self._status_object(job) for job in stopped])

    async def delete(self, request: web.Request) -> web.Response:
        """DELETE /api/services/compute: stopped, then deleted with its results and log (8)."""
        signed, jobs = self._select(await self._params(request), need_id=True)
        self.store.write(self._use_nonce(signed, {}))
        answers = []
        for job in jobs:
            ended = await self._stop_job(job)
            job_id = ended["jobId"]
            changes: dict[bytes, Any] = {
                _key(JOB_PREFIX, job_id): None,
                _key(OWNER_PREFIX, ended["owner"].lower(), job_id): None,
            }
            for prefix in (RESULT_PREFIX, LOG_PREFIX):
                for key in self.store.keys(_key(prefix, job_id) + b"/"):
                    changes[key] = None
            self.store.write(changes)
            deleted = {**ended, "dateFinished": ended["dateFinished"] or self.clock()}
            answers.append(self._status_object(deleted, DELETED))
        return web.json_response(answers)

    def _results_text(self, job_id: str) -> bytes:
        lines = [
            json.dumps(value, ensure_ascii=False)
            for _k, value in self.store.scan(_key(RESULT_PREFIX, job_id) + b"/")
        ]
        return "".join(line + "\n" for line in lines).encode()

    def _log_text(self, job_id: str) -> bytes:
        lines = [value for _k, value in self.store.scan(_key(LOG_PREFIX, job_id) + b"/")]
        return "".join(f"{line}\n" for line in lines).encode()

    async def result(self, request: web.Request) -> web.Response:
        """GET /api/services/computeResult?jobId&index&consumerAddress&nonce&signature, signed
        over consumerAddress + jobId + index + nonce: result 0 the results (JSONL), 1 the log."""
        params = dict(request.query)
        job_id = params.get("jobId")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise BadRequest(f"jobId: 32 hex digits, got {describe(job_id)}")
        index_text = params.get("index", "0")
        if index_text not in (str(RESULTS_INDEX), str(LOG_INDEX)):
            raise BadRequest(
                f"index: {RESULTS_INDEX} (the results) or {LOG_INDEX} (the log), "
                f"got {describe(index_text)}"
            )
        signed = self._check_signed(
            params, "consumerAddress", job_id + index_text, extra_hint="jobId + index"
        )
        job = self._job(job_id)
        if job is None or job["owner"] != signed.address:
            raise BadRequest(f"jobId: no job {job_id} of {signed.address}")
        self.store.write(self._use_nonce(signed, {}))
        if index_text == str(RESULTS_INDEX):
            return web.Response(body=self._results_text(job_id), content_type="application/jsonl")
        return web.Response(body=self._log_text(job_id), content_type="text/plain")

    async def job_log(self, request: web.Request) -> web.Response:
        """GET /api/services/computeLogs?jobId=: the job's log (the job id is its key)."""
        job_id = request.query.get("jobId")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise BadRequest(f"jobId: 32 hex digits, got {describe(job_id)}")
        if self._job(job_id) is None:
            raise BadRequest(f"jobId: no job {job_id}")
        return web.Response(body=self._log_text(job_id), content_type="text/plain")
