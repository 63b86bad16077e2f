"""The Ocean compute-to-data provider (PROTOCOL 7.5) in process: its routes on a test server,
a real dev chain for the payments, a real job store, the deterministic model.

A gated container (the deterministic model whose simulated delay waits for the test to let
it go) holds a job at a known record, so stopping, the slot count and a restart in the middle
of a job are tested without timing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.containers import (
    DETERMINISTIC_IMAGE,
    Container,
    ContainerConfig,
    build_containers,
    job_seed,
)
from resource_node.jobs import JobEngine
from resource_node.jobstore import JobStore
from resource_node.ocean import (
    COMPLETED,
    JOB_PREFIX,
    PREFIX,
    STATUS_TEXT,
    STOPPED,
    WARMING_UP,
    OceanConfig,
    OceanProvider,
    asset_did,
    render_template,
    sign_text,
)
from rpc.client import Wallet
from tests.helpers import LocalChain, wait_until

E18 = 10**18
NODE = Wallet.dev(200)
CONSUMER = Wallet.dev(1)
OTHER = Wallet.dev(2)
PUBLISHER = Wallet.dev(3)
STRANGER = Wallet.dev(4)
SECRET_WORDS = ("zanzibar-quokka", "marmalade-xylophone", "periwinkle-obelisk")
RECORDS = [{"text": f"the {word} sees", "n": i} for i, word in enumerate(SECRET_WORDS)]
TEMPLATE = "Summarize: {text} (#{n})"
WAIT_S = 20.0


class Gate:
    """A simulated model delay that waits until the test lets a record through."""

    def __init__(self) -> None:
        self.passes = asyncio.Semaphore(0)

    async def sleep(self, _seconds: float) -> None:
        await self.passes.acquire()

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.passes.release()


def containers(gate: Gate) -> dict[str, Container]:
    built = build_containers(
        [
            ContainerConfig(id="det", image=DETERMINISTIC_IMAGE, backend="deterministic"),
            ContainerConfig(
                id="private",
                image=DETERMINISTIC_IMAGE,
                backend="deterministic",
                allowed_addresses=(OTHER.address,),
            ),
        ]
    )
    gated = ContainerConfig(id="gated", image=DETERMINISTIC_IMAGE, backend="deterministic")
    built["gated"] = Container(
        gated, DeterministicBackend(tokens_per_second=1.0, sleep=gate.sleep), owns_backend=True
    )
    return built


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Provider:
    """The provider under test, its parts, and every answer it gave."""

    chain: LocalChain
    path: Path
    gate: Gate
    store: JobStore = field(init=False)
    engine: JobEngine = field(init=False)
    ocean: OceanProvider = field(init=False)
    server: TestServer = field(init=False)
    session: aiohttp.ClientSession = field(init=False)
    answers: list[bytes] = field(default_factory=list)
    nonces: dict[str, int] = field(default_factory=dict)
    max_running: int = 4

    async def start(self) -> int:
        self.store = JobStore(self.path)
        self.engine = JobEngine(containers(self.gate), self.store, max_running=self.max_running)
        self.ocean = OceanProvider(
            config=OceanConfig.parse({}),
            engine=self.engine,
            store=self.store,
            client=self.chain.client,
            address=NODE.address,
            base_url=lambda: str(self.server.make_url("")),
        )
        recovered = self.ocean.recover()
        app = web.Application()
        app.add_routes(self.ocean.routes())
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        self.session = aiohttp.ClientSession()
        return recovered

    async def stop(self) -> None:
        await self.session.close()
        await self.ocean.close(0)
        await self.server.close()
        for container in self.engine.containers.values():
            await container.close()
        self.store.close()

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        url = path if path.startswith("http") else str(self.server.make_url(path))
        async with self.session.request(method, url, **kwargs) as response:
            body = await response.read()
        self.answers.append(body)
        return Answer(response.status, body, dict(response.headers))

    def nonce(self, wallet: Wallet) -> int:
        self.nonces[wallet.address] = self.nonces.get(wallet.address, 0) + 1
        return self.nonces[wallet.address]

    def stored_nonce(self, wallet: Wallet) -> int:
        value = self.store.get(PREFIX + b"nonce/" + wallet.address.lower().encode())
        return 0 if value is None else int(value)

    def jobs(self) -> list[Any]:
        return [value for _key, value in self.store.scan(JOB_PREFIX)]

    async def publish(self, asset: dict[str, Any], wallet: Wallet = PUBLISHER) -> str:
        did = asset_did(wallet.address, asset)
        nonce = self.nonce(wallet)
        body = {
            "publisherAddress": wallet.address,
            "nonce": nonce,
            "signature": sign_text(f"{wallet.address}{did}{nonce}", wallet.private_key),
            "asset": asset,
        }
        answer = await self.request("POST", "/api/services/assets", json=body)
        assert answer.status == 200, answer.body
        assert answer.json()["did"] == did
        return did

    async def pay(self, amount: int = E18, payer: Wallet = CONSUMER, to: str = NODE.address) -> str:
        tx_hash = await self.chain.client.transfer(payer, to, amount)
        await self.chain.client.wait_for_tx(tx_hash)
        return tx_hash

    def compute_body(
        self,
        dataset: str,
        algorithm: dict[str, Any],
        tx_hash: str,
        wallet: Wallet = CONSUMER,
        nonce: int | None = None,
    ) -> dict[str, Any]:
        nonce = self.nonce(wallet) if nonce is None else nonce
        return {
            "signature": sign_text(f"{wallet.address}{dataset}{nonce}", wallet.private_key),
            "consumerAddress": wallet.address,
            "nonce": nonce,
            "environment": "inferchain-compute",
            "dataset": {"documentId": dataset, "serviceId": "compute", "transferTxId": tx_hash},
            "algorithm": algorithm,
        }

    def signed_query(self, middle: str, wallet: Wallet = CONSUMER, **params: str) -> dict[str, str]:
        nonce = self.nonce(wallet)
        text = f"{wallet.address}{middle}{nonce}"
        return {
            **params,
            "consumerAddress": wallet.address,
            "nonce": str(nonce),
            "signature": sign_text(text, wallet.private_key),
        }

    async def status(self, job_id: str, wallet: Wallet = CONSUMER) -> dict[str, Any]:
        query = self.signed_query(job_id, wallet, jobId=job_id)
        answer = await self.request("GET", "/api/services/compute", params=query)
        assert answer.status == 200, answer.body
        (status,) = answer.json()
        return status  # type: ignore[no-any-return]

    async def result(self, job_id: str, index: int, wallet: Wallet = CONSUMER) -> Answer:
        query = self.signed_query(f"{job_id}{index}", wallet, jobId=job_id, index=str(index))
        return await self.request("GET", "/api/services/computeResult", params=query)

    async def finished(self, job_id: str, status: int = COMPLETED) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            current = await self.status(job_id)
            return current if current["status"] == status else None

        return await wait_until(probe, f"job {job_id} reaching status {status}", WAIT_S)  # type: ignore[no-any-return]

    def log_lines(self, job_id: str) -> list[str]:
        return [line for _k, line in self.store.scan(PREFIX + b"log/" + job_id.encode() + b"/")]

    def results_done(self, job_id: str) -> int:
        return len(list(self.store.keys(PREFIX + b"result/" + job_id.encode() + b"/")))


@pytest.fixture
async def provider(chain: LocalChain, tmp_path: Path) -> AsyncIterator[Provider]:
    running = Provider(chain, tmp_path / "jobs", Gate())
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def dataset(records: list[Any] = RECORDS, name: str = "secret") -> dict[str, Any]:
    return {"type": "dataset", "name": name, "records": records}


def algorithm(container: str = "det") -> dict[str, Any]:
    return {
        "type": "algorithm",
        "name": "summary",
        "container": container,
        "template": TEMPLATE,
        "options": {"max_tokens": 8},
    }


async def published(
    provider: Provider, container: str = "det", records: list[Any] = RECORDS
) -> tuple[str, str]:
    return await provider.publish(dataset(records)), await provider.publish(algorithm(container))


def no_secrets(provider: Provider) -> None:
    for body in provider.answers:
        text = body.decode(errors="replace")
        for word in SECRET_WORDS:
            assert word not in text, f"an answer holds a record: {text[:300]}"


# Assets


async def test_publish_gives_a_did_and_metadata_without_records(provider: Provider) -> None:
    did = await provider.publish(dataset())
    jsonl = "\n".join(json.dumps(r) for r in RECORDS) + "\n"
    assert asset_did(PUBLISHER.address, {**dataset(), "records": jsonl}) == did
    assert asset_did(OTHER.address, dataset()) != did
    answer = await provider.request("GET", "/api/services/assets", params={"did": did})
    assert answer.status == 200
    info = answer.json()
    assert info["recordCount"] == len(RECORDS)
    assert info["publisher"] == PUBLISHER.address
    assert "records" not in info
    algo = await provider.publish(algorithm())
    info = (await provider.request("GET", "/api/services/assets", params={"did": algo})).json()
    assert info["container"] == "det" and info["template"] == TEMPLATE
    no_secrets(provider)


async def test_publish_refuses_bad_input_and_uses_no_nonce(provider: Provider) -> None:
    good = dataset()
    did = asset_did(PUBLISHER.address, good)

    def body(**changes: Any) -> dict[str, Any]:
        base = {
            "publisherAddress": PUBLISHER.address,
            "nonce": 5,
            "signature": sign_text(f"{PUBLISHER.address}{did}5", PUBLISHER.private_key),
            "asset": good,
        }
        return base | changes

    cases = [
        (body(signature=sign_text(f"{PUBLISHER.address}{did}5", OTHER.private_key)), "signature"),
        (body(nonce=6), "signature"),
        (body(nonce="x"), "nonce"),
        (body(asset={**good, "records": []}), "asset.records"),
        (body(asset={**good, "type": "model"}), "asset.type"),
        (body(asset={**algorithm(), "container": "nope"}), "asset.container"),
        (body(publisherAddress="0x12"), "publisherAddress"),
        (body(extra=1), "body"),
    ]
    for sent, named in cases:
        answer = await provider.request("POST", "/api/services/assets", json=sent)
        assert answer.status == 400, (named, answer.body)
        assert named in answer.json()["error"], (named, answer.json())
    answer = await provider.request("POST", "/api/services/assets", data=b"{not json")
    assert answer.status == 400 and "body" in answer.json()["error"]
    assert provider.stored_nonce(PUBLISHER) == 0
    assert list(provider.store.scan(PREFIX + b"asset/")) == []
    answer = await provider.request("POST", "/api/services/assets", json=body())
    assert answer.status == 200 and answer.json()["did"] == did
    replay = await provider.request("POST", "/api/services/assets", json=body())
    assert replay.status == 400 and "nonce" in replay.json()["error"]


# A job from start to end


async def test_a_job_runs_every_record_to_completion(provider: Provider) -> None:
    data, algo = await published(provider)
    tx_hash = await provider.pay()
    body = provider.compute_body(data, {"documentId": algo, "serviceId": "compute"}, tx_hash)
    answer = await provider.request("POST", "/api/services/compute", json=body)
    assert answer.status == 200, answer.body
    (first,) = answer.json()
    assert first["status"] == WARMING_UP and first["statusText"] == "Warming up"
    assert set(first) == {
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
    assert first["owner"] == CONSUMER.address and first["documentId"] == data
    assert first["dateFinished"] is None and first["resultsDid"] == ""
    job_id = first["jobId"]
    done = await provider.finished(job_id)
    assert done["statusText"] == STATUS_TEXT[COMPLETED]
    assert done["dateFinished"] >= done["dateCreated"]
    statuses = [
        int(line.split()[1]) for line in provider.log_lines(job_id) if line.startswith("status")
    ]
    assert statuses == [1, 10, 20, 30, 40, 50, 60, 70]

    results = await provider.result(job_id, 0)
    assert results.status == 200
    lines = [json.loads(line) for line in results.body.decode().splitlines()]
    assert [line["index"] for line in lines] == list(range(len(RECORDS)))
    container = provider.engine.containers["det"]
    for index, line in enumerate(lines):
        prompt = render_template(TEMPLATE, RECORDS[index], {})
        expected = await container.run(
            {"prompt": prompt, "options": {"max_tokens": 8}}, job_seed(job_id, index)
        )
        assert line["output"] == expected["output"]
    log_text = (await provider.result(job_id, 1)).body.decode()
    assert "status 70 Job completed" in log_text
    by_url = await provider.request("GET", done["algorithmLogUrl"])
    assert by_url.status == 200 and by_url.body.decode() == log_text
    assert len(done["resultsUrls"]) == 2
    for index, url in enumerate(done["resultsUrls"]):
        assert f"jobId={job_id}" in url and f"index={index}" in url
    # the other reader of the same job: listed by documentId and by consumer alone
    query = provider.signed_query(data, documentId=data)
    listed = (await provider.request("GET", "/api/services/compute", params=query)).json()
    assert [s["jobId"] for s in listed] == [job_id]
    query = provider.signed_query("")
    listed = (await provider.request("GET", "/api/services/compute", params=query)).json()
    assert [s["jobId"] for s in listed] == [job_id]
    no_secrets(provider)


async def test_inline_algorithm_and_ocean_hashed_signature(provider: Provider) -> None:
    data = await provider.publish(dataset())
    tx_hash = await provider.pay()
    meta = {"meta": {"template": "{record}"}, "algocustomdata": {}}
    body = provider.compute_body(data, meta, tx_hash)
    text = f"{CONSUMER.address}{data}{body['nonce']}"
    hashed = crypto.keccak(text.encode())
    digest = crypto.keccak(b"\x19Ethereum Signed Message:\n32" + hashed)
    body["signature"] = "0x" + crypto.sign_digest(digest, CONSUMER.private_key).hex()
    answer = await provider.request("POST", "/api/compute", json=body)
    assert answer.status == 200, answer.body
    job_id = answer.json()[0]["jobId"]
    await provider.finished(job_id)
    assert provider.results_done(job_id) == len(RECORDS)


async def test_stop_cancels_the_records_not_run(provider: Provider) -> None:
    records = [{"text": f"line {i}", "n": i} for i in range(10)]
    data, algo = await published(provider, "gated", records)
    tx_hash = await provider.pay()
    body = provider.compute_body(data, {"documentId": algo}, tx_hash)
    job_id = (await provider.request("POST", "/api/services/compute", json=body)).json()[0]["jobId"]
    provider.gate.release(2)

    async def two_done() -> bool:
        return provider.results_done(job_id) == 2

    await wait_until(two_done, "two records done", WAIT_S)
    assert provider.engine.reserved == 1
    query = provider.signed_query(job_id, jobId=job_id)
    answer = await provider.request("PUT", "/api/services/compute", params=query)
    assert answer.status == 200, answer.body
    (stopped,) = answer.json()
    assert stopped["status"] == STOPPED and stopped["statusText"] == "Job stopped"
    assert stopped["dateFinished"] is not None
    assert provider.engine.reserved == 0
    provider.gate.release(10)
    assert (await provider.status(job_id))["status"] == STOPPED
    results = (await provider.result(job_id, 0)).body.decode().splitlines()
    assert len(results) == 2
    assert any("8 records cancelled" in line for line in provider.log_lines(job_id))


async def test_delete_removes_the_job_and_its_results(provider: Provider) -> None:
    data, algo = await published(provider)
    tx_hash = await provider.pay()
    body = provider.compute_body(data, {"documentId": algo}, tx_hash)
    job_id = (await provider.request("POST", "/api/services/compute", json=body)).json()[0]["jobId"]
    done = await provider.finished(job_id)
    query = provider.signed_query(job_id, jobId=job_id)
    answer = await provider.request("DELETE", "/api/services/compute", params=query)
    assert answer.status == 200, answer.body
    (deleted,) = answer.json()
    assert deleted["status"] == 8 and deleted["statusText"] == "Job deleted successfully"
    assert [key for key, _v in provider.store.scan(PREFIX) if job_id.encode() in key] == []
    query = provider.signed_query(job_id, jobId=job_id)
    gone = await provider.request("GET", "/api/services/compute", params=query)
    assert gone.status == 400 and "jobId" in gone.json()["error"]
    result = await provider.result(job_id, 0)
    assert result.status == 400 and "jobId" in result.json()["error"]
    log_url = await provider.request("GET", done["algorithmLogUrl"])
    assert log_url.status == 400
    # the transfer stays spent
    again = provider.compute_body(data, {"documentId": algo}, tx_hash)
    reused = await provider.request("POST", "/api/services/compute", json=again)
    assert reused.status == 400 and "transferTxId" in reused.json()["error"]


# Bad input: a 400 naming the field, and nothing changed


async def test_every_bad_compute_request_changes_nothing(provider: Provider) -> None:
    data, algo = await published(provider)
    private = await provider.publish(algorithm("private"))
    tx_hash = await provider.pay()
    short = await provider.pay(E18 // 2)
    elsewhere = await provider.pay(E18, to=STRANGER.address)
    from_other = await provider.pay(E18, payer=OTHER)
    nonce = 7
    good = provider.compute_body(data, {"documentId": algo}, tx_hash, nonce=nonce)

    def signed(body: dict[str, Any], wallet: Wallet = CONSUMER) -> dict[str, Any]:
        text = f"{body['consumerAddress']}{body['dataset']['documentId']}{body['nonce']}"
        return body | {"signature": sign_text(text, wallet.private_key)}

    def with_dataset(**changes: Any) -> dict[str, Any]:
        return signed(good | {"dataset": good["dataset"] | changes})

    unknown_did = "did:op:" + "ab" * 32
    cases: list[tuple[Any, str]] = [
        ({k: v for k, v in good.items() if k != "dataset"}, "dataset"),
        (with_dataset(transferTxId=None) | {"dataset": {"documentId": data}}, "transferTxId"),
        (with_dataset(transferTxId=short), "less than"),
        (with_dataset(transferTxId=elsewhere), "not this node"),
        (with_dataset(transferTxId=from_other), "not consumerAddress"),
        (with_dataset(transferTxId="0x" + "77" * 32), "transferTxId"),
        (with_dataset(transferTxId="0x12"), "transferTxId"),
        (with_dataset(documentId=unknown_did), "dataset.documentId"),
        (with_dataset(documentId=algo), "dataset.documentId"),
        (signed(good | {"algorithm": {"documentId": unknown_did}}), "algorithm.documentId"),
        (signed(good | {"algorithm": {"documentId": data}}), "algorithm.documentId"),
        (signed(good | {"algorithm": {}}), "algorithm"),
        (signed(good | {"algorithm": {"documentId": private}}), "does not admit"),
        (signed(good | {"environment": "gpu-farm"}), "environment"),
        (good | {"signature": sign_text("something else", CONSUMER.private_key)}, "signature"),
        (signed(good, OTHER), "signature"),
        (good | {"signature": "0x1234"}, "signature"),
        (good | {"nonce": "seven"}, "nonce"),
        (good | {"nonce": 0}, "nonce"),
        (good | {"consumerAddress": "0xnope"}, "consumerAddress"),
        (good | {"surprise": True}, "body"),
        ([good], "body"),
    ]
    for sent, named in cases:
        answer = await provider.request("POST", "/api/services/compute", json=sent)
        assert answer.status == 400, (named, answer.body)
        assert named in answer.json()["error"], (named, answer.json())
        assert provider.jobs() == []
        assert provider.stored_nonce(CONSUMER) == 0
    for raw in (b"", b"{", b"null", b'"text"'):
        answer = await provider.request("POST", "/api/services/compute", data=raw)
        assert answer.status == 400 and "body" in answer.json()["error"]
    assert provider.jobs() == []
    assert list(provider.store.scan(PREFIX + b"transfer/")) == []

    answer = await provider.request("POST", "/api/services/compute", json=good)
    assert answer.status == 200, answer.body
    assert provider.stored_nonce(CONSUMER) == nonce
    replay = await provider.request("POST", "/api/services/compute", json=good)
    assert replay.status == 400 and "nonce" in replay.json()["error"]
    again = provider.compute_body(data, {"documentId": algo}, tx_hash, nonce=nonce + 1)
    reused = await provider.request("POST", "/api/services/compute", json=again)
    assert reused.status == 400 and "has paid for a job already" in reused.json()["error"]
    assert len(provider.jobs()) == 1 and provider.stored_nonce(CONSUMER) == nonce
    no_secrets(provider)


async def test_bad_reads_and_stops_change_nothing(provider: Provider) -> None:
    data, algo = await published(provider)
    tx_hash = await provider.pay()
    body = provider.compute_body(data, {"documentId": algo}, tx_hash)
    job_id = (await provider.request("POST", "/api/services/compute", json=body)).json()[0]["jobId"]
    await provider.finished(job_id)
    before = provider.stored_nonce(CONSUMER)
    nonce = str(before + 1)
    wrong = sign_text(f"{CONSUMER.address}{job_id}{nonce}", OTHER.private_key)
    base = {"consumerAddress": CONSUMER.address, "nonce": nonce, "jobId": job_id}
    for method in ("GET", "PUT", "DELETE"):
        for params, named in (
            (base | {"signature": wrong}, "signature"),
            ({k: v for k, v in base.items() if k != "nonce"} | {"signature": wrong}, "nonce"),
            (base | {"jobId": "zz", "signature": wrong}, "jobId"),
            (
                base
                | {
                    "nonce": str(before),
                    "signature": sign_text(
                        f"{CONSUMER.address}{job_id}{before}", CONSUMER.private_key
                    ),
                },
                "nonce",
            ),
        ):
            answer = await provider.request(method, "/api/services/compute", params=params)
            assert answer.status == 400, (method, named, answer.body)
            assert named in answer.json()["error"], (method, named, answer.json())
    other = provider.signed_query(job_id, OTHER, jobId=job_id)
    answer = await provider.request("DELETE", "/api/services/compute", params=other)
    assert answer.status == 400 and "jobId" in answer.json()["error"]
    no_id = provider.signed_query("")
    provider.nonces[CONSUMER.address] -= 1
    answer = await provider.request("DELETE", "/api/services/compute", params=no_id)
    assert answer.status == 400 and "jobId or documentId" in answer.json()["error"]
    query = {"jobId": job_id, "index": "1", "consumerAddress": CONSUMER.address, "nonce": nonce}
    answer = await provider.request(
        "GET", "/api/services/computeResult", params=query | {"signature": wrong}
    )
    assert answer.status == 400 and "signature" in answer.json()["error"]
    answer = await provider.request(
        "GET", "/api/services/computeResult", params=query | {"index": "2", "signature": wrong}
    )
    assert answer.status == 400 and "index" in answer.json()["error"]
    assert provider.stored_nonce(CONSUMER) == before
    assert (await provider.status(job_id))["status"] == COMPLETED


async def test_environments_from_the_machine_and_the_config(provider: Provider) -> None:
    chain_id = await provider.chain.client.chain_id()
    answer = await provider.request(
        "GET", "/api/services/computeEnvironments", params={"chainId": str(chain_id)}
    )
    assert answer.status == 200, answer.body
    (env,) = answer.json()
    assert set(env) == {
        "id", "cpuType", "gpuType", "nCPU", "nGPU", "ramGB", "diskGB",
        "currentJobs", "maxJobs", "priceMin", "desc",
    }  # fmt: skip
    assert env["id"] == "inferchain-compute" and env["priceMin"] == 1 and env["maxJobs"] == 4
    assert env["currentJobs"] == 0 and env["nCPU"] >= 1 and env["ramGB"] > 0
    for params, named in (({"chainId": str(chain_id + 1)}, "chainId"), ({}, "chainId")):
        answer = await provider.request("GET", "/api/services/computeEnvironments", params=params)
        assert answer.status == 400 and named in answer.json()["error"]


async def test_a_full_node_answers_busy_and_uses_nothing(chain: LocalChain, tmp_path: Path) -> None:
    provider = Provider(chain, tmp_path / "jobs", Gate(), max_running=1)
    await provider.start()
    try:
        data, algo = await published(provider, "gated")
        first = await provider.pay()
        second = await provider.pay()
        body = provider.compute_body(data, {"documentId": algo}, first)
        answer = await provider.request("POST", "/api/services/compute", json=body)
        assert answer.status == 200
        job_id = answer.json()[0]["jobId"]
        before = provider.stored_nonce(CONSUMER)
        busy = provider.compute_body(data, {"documentId": algo}, second)
        answer = await provider.request("POST", "/api/services/compute", json=busy)
        assert answer.status == 503 and answer.headers["Retry-After"] == "1"
        assert "error" in answer.json()
        assert provider.stored_nonce(CONSUMER) == before and len(provider.jobs()) == 1
        provider.gate.release(len(RECORDS))
        await provider.finished(job_id)
        later = provider.compute_body(data, {"documentId": algo}, second)
        answer = await provider.request("POST", "/api/services/compute", json=later)
        assert answer.status == 200, answer.body
    finally:
        provider.gate.release(100)
        await provider.stop()


# Persistence


async def test_a_restart_keeps_jobs_and_nonces_and_resumes_a_running_job(
    chain: LocalChain, tmp_path: Path
) -> None:
    records = [{"text": f"line {i}", "n": i} for i in range(6)]
    provider = Provider(chain, tmp_path / "jobs", Gate())
    await provider.start()
    data, algo = await published(provider, "gated", records)
    tx_hash = await provider.pay()
    body = provider.compute_body(data, {"documentId": algo}, tx_hash)
    job_id = (await provider.request("POST", "/api/services/compute", json=body)).json()[0]["jobId"]
    provider.gate.release(2)

    async def two_done() -> bool:
        return provider.results_done(job_id) == 2

    await wait_until(two_done, "two records done", WAIT_S)
    nonce = provider.stored_nonce(CONSUMER)
    await provider.stop()

    again = Provider(chain, tmp_path / "jobs", Gate(), nonces=dict(provider.nonces))
    assert await again.start() == 1
    try:
        assert again.stored_nonce(CONSUMER) == nonce
        replay = await again.request("POST", "/api/services/compute", json=body)
        assert replay.status == 400 and "nonce" in replay.json()["error"]
        again.gate.release(len(records))
        await again.finished(job_id)
        lines = [json.loads(x) for x in (await again.result(job_id, 0)).body.decode().splitlines()]
        assert [line["index"] for line in lines] == list(range(len(records)))
        log_lines = again.log_lines(job_id)
        assert "the node restarted: resuming at record 2" in log_lines
        assert sum(line.startswith("record ") for line in log_lines) == len(records)
        reused = again.compute_body(data, {"documentId": algo}, tx_hash)
        answer = await again.request("POST", "/api/services/compute", json=reused)
        assert answer.status == 400 and "transferTxId" in answer.json()["error"]
    finally:
        await again.stop()


# Rules


@settings(max_examples=50, deadline=None)
@given(
    records=st.lists(
        st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.one_of(st.integers(-(10**6), 10**6), st.text(max_size=8), st.booleans()),
            max_size=4,
        ),
        min_size=1,
        max_size=6,
    ),
    index=st.integers(min_value=0),
)
def test_did_is_of_the_content_and_publisher_only(
    records: list[dict[str, Any]], index: int
) -> None:
    asset = dataset(records)
    did = asset_did(PUBLISHER.address, asset)
    jsonl = "\n".join(json.dumps(r) for r in records)
    reordered = [dict(reversed(list(r.items()))) for r in records]
    assert asset_did(PUBLISHER.address, {**asset, "records": jsonl}) == did
    assert asset_did(PUBLISHER.address.lower(), dataset(reordered)) == did
    assert asset_did(OTHER.address, asset) != did
    changed = [dict(r) for r in records]
    changed[index % len(records)]["__changed__"] = True
    assert asset_did(PUBLISHER.address, dataset(changed)) != did
    assert did.startswith("did:op:") and len(did) == 7 + 64
