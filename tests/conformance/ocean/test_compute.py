"""Ocean's compute-to-data routes of a resource node (PROTOCOL 7.5), over HTTP only: publishing,
a paid and signed job to status 70, its results and log, stopping and deleting, the
environments, bad requests that change nothing, the records never answered, and a node
killed in the middle of a job resuming it.

The suite signs and derives DIDs from the rules' text (EIP-191 personal_sign over
`address + id + nonce`; did:op: + keccak256 of the domain, the publisher and the canonical
JSON of the asset), not from the provider's code.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from chain.protocol import crypto, wire
from rpc.client import InferchainClient, Wallet
from tests.conformance.ocean.conftest import SLOW_CONTAINER, OceanTarget
from tests.conformance.support import fresh_wallet
from tests.helpers import wait_until

E18 = 10**18
WAIT_S = 60.0
STATUS_KEYS = {
    "owner",
    "documentId",
    "jobId",
    "dateCreated",
    "dateFinished",
    "status",
    "statusText",
    "algorithmLogUrl",
    "resultsUrls",
    "resultsDid",
}
ENVIRONMENT_KEYS = {
    "id",
    "cpuType",
    "gpuType",
    "nCPU",
    "nGPU",
    "ramGB",
    "diskGB",
    "currentJobs",
    "maxJobs",
    "priceMin",
    "desc",
}


def sign(text: str, wallet: Wallet) -> str:
    return wire.hex0x(crypto.sign_digest(crypto.personal_message_hash(text), wallet.private_key))


def did_of(publisher: str, asset: dict[str, Any]) -> str:
    canonical = json.dumps(asset, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = f"inferchain/ocean/did/v1/{publisher}/".encode() + canonical.encode()
    return "did:op:" + crypto.keccak(text).hex()


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Session:
    """One consumer (a fresh funded key) and one publisher, talking to the node."""

    target: OceanTarget
    http: aiohttp.ClientSession
    chain: InferchainClient
    consumer: Wallet
    publisher: Wallet
    node_address: str
    price_wei: int
    nonces: dict[str, int] = field(default_factory=dict)
    answers: list[bytes] = field(default_factory=list)

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        url = path if path.startswith("http") else self.target.url + path
        async with self.http.request(method, url, **kwargs) as response:
            body = await response.read()
        assert response.status != 500, body
        self.answers.append(body)
        return Answer(response.status, body)

    def nonce(self, wallet: Wallet) -> int:
        self.nonces[wallet.address] = self.nonces.get(wallet.address, 0) + 1
        return self.nonces[wallet.address]

    async def publish(self, asset: dict[str, Any]) -> str:
        full = {"name": "", "description": "", **asset}
        if full["type"] == "algorithm":
            full.setdefault("options", {})
        did = did_of(self.publisher.address, full)
        nonce = self.nonce(self.publisher)
        body = {
            "publisherAddress": self.publisher.address,
            "nonce": nonce,
            "signature": sign(f"{self.publisher.address}{did}{nonce}", self.publisher),
            "asset": asset,
        }
        answer = await self.request("POST", "/api/services/assets", json=body)
        assert answer.status == 200, answer.body
        assert answer.json()["did"] == did
        return did

    async def pay(self, amount: int | None = None) -> str:
        tx_hash = await self.chain.transfer(
            self.consumer, self.node_address, self.price_wei if amount is None else amount
        )
        await self.chain.wait_for_tx(tx_hash, timeout=WAIT_S)
        return tx_hash

    def compute(
        self, dataset: str, algorithm: dict[str, Any], tx_hash: str, nonce: int | None = None
    ) -> dict[str, Any]:
        nonce = self.nonce(self.consumer) if nonce is None else nonce
        return {
            "signature": sign(f"{self.consumer.address}{dataset}{nonce}", self.consumer),
            "consumerAddress": self.consumer.address,
            "nonce": nonce,
            "environment": "inferchain-compute",
            "dataset": {"documentId": dataset, "serviceId": "compute", "transferTxId": tx_hash},
            "algorithm": algorithm,
        }

    def query(self, middle: str, **params: str) -> dict[str, str]:
        nonce = self.nonce(self.consumer)
        return {
            **params,
            "consumerAddress": self.consumer.address,
            "nonce": str(nonce),
            "signature": sign(f"{self.consumer.address}{middle}{nonce}", self.consumer),
        }

    async def start(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.request("POST", "/api/services/compute", json=body)
        assert answer.status == 200, answer.body
        (status,) = answer.json()
        assert set(status) == STATUS_KEYS
        return status  # type: ignore[no-any-return]

    async def status(self, job_id: str) -> dict[str, Any]:
        answer = await self.request(
            "GET", "/api/services/compute", params=self.query(job_id, jobId=job_id)
        )
        assert answer.status == 200, answer.body
        (status,) = answer.json()
        assert set(status) == STATUS_KEYS
        return status  # type: ignore[no-any-return]

    async def finished(self, job_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status = await self.status(job_id)
            return status if status["status"] == 70 else None

        return await wait_until(probe, f"job {job_id} completed", WAIT_S)  # type: ignore[no-any-return]

    async def result(self, job_id: str, index: int) -> Answer:
        params = self.query(f"{job_id}{index}", jobId=job_id, index=str(index))
        return await self.request("GET", "/api/services/computeResult", params=params)

    async def log(self, status: dict[str, Any]) -> str:
        answer = await self.request("GET", status["algorithmLogUrl"])
        assert answer.status == 200, answer.body
        return answer.body.decode()


@pytest.fixture
async def session(
    ocean_target: OceanTarget, http: aiohttp.ClientSession, chain: InferchainClient, funder: Wallet
) -> Session:
    async with http.get(ocean_target.url + "/status") as response:
        node_address = (await response.json())["address"]
    chain_id = await chain.chain_id()
    async with http.get(
        ocean_target.url + "/api/services/computeEnvironments", params={"chainId": str(chain_id)}
    ) as response:
        environments = await response.json()
    price = next(e["priceMin"] for e in environments if e["id"] == "inferchain-compute")
    price_wei = int(Decimal(str(price)) * E18)
    consumer = fresh_wallet()
    funding = await chain.transfer(funder, consumer.address, 3 * price_wei + E18 // 10)
    await chain.wait_for_tx(funding, timeout=WAIT_S)
    return Session(ocean_target, http, chain, consumer, fresh_wallet(), node_address, price_wei)


def secret_records(count: int) -> tuple[list[dict[str, Any]], list[str]]:
    words = [f"secret-{uuid.uuid4().hex}" for _ in range(count)]
    return [{"text": word, "n": i} for i, word in enumerate(words)], words


def algorithm(container: str = "deterministic") -> dict[str, Any]:
    return {
        "type": "algorithm",
        "container": container,
        "template": "Say something about {text} ({n})",
        "options": {"max_tokens": 8},
    }


async def containers(session: Session) -> set[str]:
    async with session.http.get(session.target.url + "/info") as response:
        info = await response.json()
    return {c["id"] for c in info["containers"]}


async def test_environments(session: Session) -> None:
    chain_id = await session.chain.chain_id()
    answer = await session.request(
        "GET", "/api/services/computeEnvironments", params={"chainId": str(chain_id)}
    )
    assert answer.status == 200
    envs = answer.json()
    assert envs and all(set(env) == ENVIRONMENT_KEYS for env in envs)
    assert all(env["nCPU"] >= 1 and env["currentJobs"] <= env["maxJobs"] for env in envs)
    for params in ({"chainId": str(chain_id + 1)}, {}):
        answer = await session.request("GET", "/api/services/computeEnvironments", params=params)
        assert answer.status == 400 and "chainId" in answer.json()["error"]


async def test_a_paid_job_completes_and_is_deleted(session: Session) -> None:
    records, words = secret_records(4)
    data = await session.publish({"type": "dataset", "records": records})
    meta = await session.request("GET", "/api/services/assets", params={"did": data})
    assert meta.status == 200 and meta.json()["recordCount"] == 4
    algo = await session.publish(algorithm())
    first = await session.start(session.compute(data, {"documentId": algo}, await session.pay()))
    assert first["status"] == 1 and first["owner"] == session.consumer.address
    job_id = first["jobId"]
    done = await session.finished(job_id)
    assert done["statusText"] == "Job completed" and done["dateFinished"] is not None
    assert len(done["resultsUrls"]) == 2 and done["resultsDid"] == ""
    results = await session.result(job_id, 0)
    assert results.status == 200
    lines = [json.loads(line) for line in results.body.decode().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2, 3]
    assert all(isinstance(line["output"], str) and line["output"] for line in lines)
    log_text = await session.log(done)
    assert (await session.result(job_id, 1)).body.decode() == log_text
    codes = [int(line.split()[1]) for line in log_text.splitlines() if line.startswith("status ")]
    assert codes == [1, 10, 20, 30, 40, 50, 60, 70]

    answer = await session.request(
        "DELETE", "/api/services/compute", params=session.query(job_id, jobId=job_id)
    )
    assert answer.status == 200 and answer.json()[0]["status"] == 8
    gone = await session.result(job_id, 0)
    assert gone.status == 400 and "jobId" in gone.json()["error"]
    for body in session.answers:
        assert not any(word.encode() in body for word in words), body[:300]


async def test_bad_requests_change_nothing(session: Session) -> None:
    records, _words = secret_records(2)
    data = await session.publish({"type": "dataset", "records": records})
    algo = await session.publish(algorithm())
    tx_hash = await session.pay()
    short = await session.pay(session.price_wei - 1)
    nonce = 1_000
    good = session.compute(data, {"documentId": algo}, tx_hash, nonce=nonce)

    def resigned(body: dict[str, Any]) -> dict[str, Any]:
        text = f"{body['consumerAddress']}{body['dataset']['documentId']}{body['nonce']}"
        return body | {"signature": sign(text, session.consumer)}

    unknown = "did:op:" + "cd" * 32
    rows: list[tuple[Any, str]] = [
        (resigned(good | {"dataset": good["dataset"] | {"transferTxId": short}}), "less than"),
        (resigned(good | {"dataset": {"documentId": data}}), "transferTxId"),
        (resigned(good | {"dataset": good["dataset"] | {"documentId": unknown}}), "documentId"),
        (resigned(good | {"algorithm": {"documentId": unknown}}), "algorithm.documentId"),
        (resigned(good | {"environment": "nowhere"}), "environment"),
        (good | {"signature": sign("another text", session.consumer)}, "signature"),
        (good | {"nonce": "1e3"}, "nonce"),
        ({"dataset": 1}, "dataset"),
    ]
    for body, named in rows:
        answer = await session.request("POST", "/api/services/compute", json=body)
        assert answer.status == 400, (named, answer.body)
        assert named in answer.json()["error"], (named, answer.json())
    answer = await session.request("POST", "/api/services/compute", data=b"{]")
    assert answer.status == 400 and "body" in answer.json()["error"]
    # Nothing was used: the same nonce and the same transfer start the job.
    job = await session.start(good)
    replay = await session.request("POST", "/api/services/compute", json=good)
    assert replay.status == 400 and "nonce" in replay.json()["error"]
    again = session.compute(data, {"documentId": algo}, tx_hash, nonce=nonce + 1)
    reused = await session.request("POST", "/api/services/compute", json=again)
    assert reused.status == 400 and "transferTxId" in reused.json()["error"]
    session.nonces[session.consumer.address] = nonce
    await session.finished(job["jobId"])


async def test_stop_cancels_the_records_not_run(session: Session) -> None:
    if SLOW_CONTAINER not in await containers(session):
        pytest.skip(f"the target has no {SLOW_CONTAINER!r} container to stop a job in")
    records, _words = secret_records(40)
    data = await session.publish({"type": "dataset", "records": records})
    algo = await session.publish(algorithm(SLOW_CONTAINER))
    first = await session.start(session.compute(data, {"documentId": algo}, await session.pay()))
    job_id = first["jobId"]

    async def one_done() -> bool:
        return "record 0: done" in await session.log(first)

    await wait_until(one_done, "the first record done", WAIT_S)
    answer = await session.request(
        "PUT", "/api/services/compute", params=session.query(job_id, jobId=job_id)
    )
    assert answer.status == 200, answer.body
    (stopped,) = answer.json()
    assert stopped["status"] == 7 and stopped["statusText"] == "Job stopped"
    lines = (await session.result(job_id, 0)).body.decode().splitlines()
    assert 1 <= len(lines) < 40
    assert f"{40 - len(lines)} records cancelled" in await session.log(first)
    assert (await session.status(job_id))["status"] == 7


async def test_a_killed_node_resumes_its_job(session: Session) -> None:
    if not session.target.owned:
        pytest.skip("the suite restarts only a node it started (without --target)")
    records, _words = secret_records(3)
    data = await session.publish({"type": "dataset", "records": records})
    algo = await session.publish(algorithm(SLOW_CONTAINER))
    body = session.compute(data, {"documentId": algo}, await session.pay())
    first = await session.start(body)
    job_id = first["jobId"]

    async def one_done() -> bool:
        return "record 0: done" in await session.log(first)

    await wait_until(one_done, "the first record done", WAIT_S)
    session.target.restart(kill=True)
    replay = await session.request("POST", "/api/services/compute", json=body)
    assert replay.status == 400 and "nonce" in replay.json()["error"]
    done = await session.finished(job_id)
    log_text = await session.log(done)
    assert "the node restarted: resuming at record" in log_text
    lines = [json.loads(x) for x in (await session.result(job_id, 0)).body.decode().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
