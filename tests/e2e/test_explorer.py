"""The block explorer at `GET /` (PROTOCOL 5.10) in a real browser, on the default testnet.

`scripts/testnet.py` as `make testnet` runs it (4 validators, 3 resource nodes, the last one
byzantine with `--byzantine wrong:1`, so that every result it gives is wrong), and one headless
Chromium for every check:
- the demo task's page shows its timeline and its settlement, a table row and a bar of the
  chart for each account paid or slashed, as queryTask has them; its sender's page lists it;
- the blocks page takes each new block as the WebSocket brings it, without a reload;
- a task of three results, followed from its submission: its page changes as the task does,
  until the byzantine node is shown slashed, and the nodes page shows its stake taken;
- the validators page counts the blocks each one signed, over the blocks it names;
- an unknown page, a malformed hash and an unknown task each get a message saying so, and a
  file the explorer does not have is a 404.

Screenshots of each page go to the test's directory and, when INFERCHAIN_SCREENSHOTS names a
directory, there too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from chain.protocol.types import SubmitTask
from rpc.client import InferchainClient, PresignedTx, Wallet, presign
from tests.e2e.launcher import Launcher, free_ports
from tests.helpers import dev_node_wallet

pytestmark = pytest.mark.slow

START_TIMEOUT = 120.0  # the network up and its demo task settled
PAGE_TIMEOUT = 20.0  # a page read and drawn
TASK_TIMEOUT = 60.0  # a task submitted here settled
BYZANTINE = dev_node_wallet(2).address  # the last of the default testnet's three nodes
NODES = 3
VALIDATORS = 4


@dataclass(frozen=True)
class Explored:
    url: str  # validator 0's
    demo_task: str
    shots: list[Path]  # where screenshots go


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explored]:
    root = tmp_path_factory.mktemp("explorer")
    port = free_ports(VALIDATORS)
    launcher = Launcher(
        root / "testnet",
        *("--fresh", "--no-ao", "--block-time", "200", "--port", str(port)),
        *("--byzantine", "wrong:1"),
    )
    try:
        line = launcher.wait_for_line("demo task 0x", START_TIMEOUT)
        demo = re.search(r"0x[0-9a-f]{64}", line)
        assert demo is not None, line
        launcher.wait_for_line("verified at block", START_TIMEOUT)
        shots = [root / "screenshots"]
        if os.environ.get("INFERCHAIN_SCREENSHOTS"):
            shots.append(Path(os.environ["INFERCHAIN_SCREENSHOTS"]))
        for directory in shots:
            directory.mkdir(parents=True, exist_ok=True)
        yield Explored(f"http://127.0.0.1:{port}", demo.group(0), shots)
        assert launcher.interrupt() == 0, launcher.output
    finally:
        launcher.kill_all()


def open_page(browser: webdriver.Chrome, net: Explored, route: str) -> None:
    """The explorer at `route`, once the page has drawn it (nothing left loading)."""
    browser.get(f"{net.url}/{route}")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#view > :not(.loading)"), "page")


def until(
    browser: webdriver.Chrome,
    condition: Callable[[webdriver.Chrome], Any],
    what: str,
    timeout: float = PAGE_TIMEOUT,
) -> Any:
    """The first true value of `condition`; fails naming `what` after `timeout` seconds."""
    return WebDriverWait(browser, timeout).until(condition, message=f"no {what} in {timeout} s")


def wait_for(
    browser: webdriver.Chrome, css: str, what: str, timeout: float = PAGE_TIMEOUT
) -> list[WebElement]:
    """The elements `css` matches, once there is one."""
    found: list[WebElement] = until(
        browser, lambda b: b.find_elements(By.CSS_SELECTOR, css), what, timeout
    )
    return found


def screenshot(browser: webdriver.Chrome, net: Explored, name: str) -> None:
    first, *others = net.shots
    path = first / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    for directory in others:
        shutil.copy(path, directory / path.name)


def rpc(net: Explored, method: str, *args: Any) -> Any:
    async def call() -> Any:
        async with InferchainClient(net.url) as client:
            return await getattr(client, method)(*args)

    return asyncio.run(call())


def no_page_errors(browser: webdriver.Chrome) -> None:
    """Nothing the page ran failed, and nothing was refused (the CSP would say so here)."""
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def settlement_rows(browser: webdriver.Chrome) -> list[tuple[str, str, str]]:
    """(kind, address, base units) of each row of the settlement table."""
    return [
        (
            row.get_attribute("class") or "",
            row.get_attribute("data-address") or "",
            row.find_element(By.CSS_SELECTOR, ".amount").get_attribute("data-base-units") or "",
        )
        for row in browser.find_elements(By.CSS_SELECTOR, "#settlement tbody tr")
    ]


def expected_rows(task: dict[str, Any]) -> list[tuple[str, str, str]]:
    settlement = task["settlement"]
    return [("paid", p["address"], p["amount"]) for p in settlement["payouts"]] + [
        ("slashed", s["address"], s["amount"]) for s in settlement["slashed"]
    ]


def chart_bars(browser: webdriver.Chrome) -> list[tuple[str, str]]:
    return [
        (bar.get_attribute("class") or "", bar.get_attribute("data-address") or "")
        for bar in browser.find_elements(By.CSS_SELECTOR, "#settlement-chart rect.bar")
    ]


def test_the_demo_task_shows_its_settlement(browser: webdriver.Chrome, testnet: Explored) -> None:
    task = rpc(testnet, "query_task", testnet.demo_task)
    assert task["status"] == "verified" and task["settlement"] is not None
    open_page(browser, testnet, f"#/task/{testnet.demo_task}")
    wait_for(browser, "#settlement tbody tr", "the demo task's settlement table")
    assert browser.find_element(By.ID, "task").get_attribute("data-status") == "verified"
    assert testnet.demo_task in browser.find_element(By.CSS_SELECTOR, "#task h1").text
    assert browser.find_element(By.ID, "response").text == task["response"]

    rows = expected_rows(task)
    assert settlement_rows(browser) == rows
    bars = chart_bars(browser)
    assert bars == [(f"bar {kind}", address) for kind, address, _amount in rows]
    widths = [
        float(bar.get_attribute("width") or 0)
        for bar in browser.find_elements(By.CSS_SELECTOR, "#settlement-chart rect.bar")
    ]
    assert all(width > 0 for width in widths)
    largest = max(range(len(rows)), key=lambda i: int(rows[i][2]))
    assert widths[largest] == max(widths)  # the bars are drawn to scale

    # The timeline: submitted, each result and verdict, decided, verified, settled.
    items = browser.find_elements(By.CSS_SELECTOR, "#timeline li")
    kinds = [item.get_attribute("class") for item in items]
    verdicts = sum(len(entry["verifications"]) for entry in task["executionInfo"])
    assert kinds[0] == "submitted" and kinds[-2:] == ["verified", "settled"], kinds
    assert kinds.count("result") == len(task["executionInfo"])
    assert kinds.count("valid") + kinds.count("invalid") == verdicts
    assert f"#{task['createdHeight']}" in items[0].text
    seeds = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert [row.get_attribute("data-node") for row in seeds] == [
        entry["resourceNode"] for entry in task["executionInfo"]
    ]
    screenshot(browser, testnet, "demo-task")

    # Its sender's page lists it (getTasksBySender), reached by the link.
    browser.find_element(By.CSS_SELECTOR, "#task dd a[href^='#/account/']").click()
    tasks = wait_for(browser, "#account-tasks tbody tr", "the sender's tasks")
    assert testnet.demo_task in {
        a.get_attribute("title") for row in tasks for a in row.find_elements(By.TAG_NAME, "a")
    }
    screenshot(browser, testnet, "account")
    no_page_errors(browser)


def shown_heights(browser: webdriver.Chrome) -> list[int]:
    """The heights of the rows of the blocks page, top down, read at one moment (rows come
    and go as blocks arrive)."""
    heights: list[int] = browser.execute_script(
        "return [...document.querySelectorAll('#blocks tbody tr')].map(r => +r.dataset.height)"
    )
    return heights


def test_the_blocks_page_takes_each_new_block(browser: webdriver.Chrome, testnet: Explored) -> None:
    open_page(browser, testnet, "#/blocks")
    wait_for(browser, "#blocks tbody tr", "the blocks")
    heights = shown_heights(browser)
    assert heights == list(range(heights[0], heights[0] - len(heights), -1))
    first = heights[0]
    until(browser, lambda b: b.find_element(By.ID, "live").text == "live", "live badge")
    # A marker on the document: it is the same page, not a reload, that shows the new block.
    browser.execute_script("document.body.dataset.marker = 'still here'")
    until(browser, lambda b: shown_heights(b)[0] > first + 1, "new block on the page")
    assert browser.execute_script("return document.body.dataset.marker") == "still here"
    heights = shown_heights(browser)
    page = min(20, heights[0] + 1)
    assert heights == list(range(heights[0], heights[0] - page, -1))  # one page, in order
    newest = rpc(testnet, "get_block", heights[0])
    row = browser.find_element(By.CSS_SELECTOR, f"#blocks tr[data-height='{heights[0]}']")
    assert row.find_element(By.CSS_SELECTOR, "td.txs").text == str(len(newest["txs"]))
    assert newest["proposer"] in {
        a.get_attribute("title") for a in row.find_elements(By.TAG_NAME, "a")
    }
    screenshot(browser, testnet, "blocks")

    # A block's page, by its link: its hash, and what it did to the tasks it changed.
    row.find_element(By.CSS_SELECTOR, "a[href^='#/block/']").click()
    until(browser, lambda b: newest["hash"] in b.find_element(By.ID, "view").text, "block page")
    demo = rpc(testnet, "query_task", testnet.demo_task)
    open_page(browser, testnet, f"#/block/{demo['createdHeight']}")
    links = wait_for(browser, "#block-tasks a[href^='#/task/']", "the tasks of the demo's block")
    assert testnet.demo_task in {link.get_attribute("title") for link in links}
    txs = browser.find_elements(By.CSS_SELECTOR, "#block-txs tbody tr")
    assert demo["txHash"] in {
        cell.get_attribute("title")
        for r in txs
        for cell in r.find_elements(By.CSS_SELECTOR, "td.hash")
    }
    screenshot(browser, testnet, "block")
    no_page_errors(browser)


# Each status the task's page shows, in order, as the page redraws it ("none": no task).
RECORD_STATUSES = """
window.statuses = [];
const record = () => {
  const task = document.getElementById("task");
  const status = task ? task.dataset.status : "none";
  if (window.statuses[window.statuses.length - 1] !== status) window.statuses.push(status);
};
record();
new MutationObserver(record).observe(document.getElementById("view"), {
  childList: true, subtree: true, attributes: true,
});
"""


def test_a_byzantine_result_is_shown_slashed(browser: webdriver.Chrome, testnet: Explored) -> None:
    """A task of three results, its page opened before it is sent: the page shows no task,
    then follows it over the WebSocket through its statuses to its settlement."""

    async def presigned() -> PresignedTx:
        async with InferchainClient(testnet.url) as client:
            sender = Wallet.dev(1)
            message = SubmitTask(
                sender.address,
                await client.next_nonce(sender.address),
                "text",
                NODES,
                '{"prompt":"Three answers, please"}',
                '{"model":"demo","max_tokens":8}',
            )
            return presign(message, await client.chain_id(), sender.private_key)

    async def send(tx: PresignedTx) -> None:
        async with InferchainClient(testnet.url) as client:
            await client.send_presigned(tx)

    tx = asyncio.run(presigned())
    task_hash = "0x" + tx.signed.digest.hex()
    open_page(browser, testnet, f"#/task/{task_hash}")
    assert wait_for(browser, "#problem h1", "no task yet")[0].text == f"No task {task_hash}"
    until(browser, lambda b: b.find_element(By.ID, "live").text == "live", "live badge")
    browser.execute_script(RECORD_STATUSES)
    asyncio.run(send(tx))
    slashed = wait_for(
        browser,
        f"#settlement tr.slashed[data-address='{BYZANTINE}']",
        "byzantine node slashed",
        TASK_TIMEOUT,
    )
    statuses = browser.execute_script("return window.statuses")
    assert statuses[0] == "none" and statuses[-1] == "verified", statuses
    # followed, not found settled (the nodes take the task from the mempool, so its results
    # may all land in its own block: it is first seen completed)
    assert statuses[1] in ("submitted", "processing", "completed"), statuses
    task = rpc(testnet, "query_task", task_hash)
    assert task["status"] == "verified"
    (slash,) = [s for s in task["settlement"]["slashed"] if s["address"] == BYZANTINE]
    assert slash["reason"] == "result"
    assert "result" in slashed[0].text
    assert settlement_rows(browser) == expected_rows(task)
    assert ("bar slashed", BYZANTINE) in chart_bars(browser)
    (byzantine_entry,) = [e for e in task["executionInfo"] if e["resourceNode"] == BYZANTINE]
    assert byzantine_entry["status"] == 3  # rejected
    row = browser.find_element(By.CSS_SELECTOR, f"#results tr[data-node='{BYZANTINE}']")
    assert "rejected" in row.text
    screenshot(browser, testnet, "byzantine-task")

    # The nodes page: its stake taken, the stake line drawn in its chart and no other's.
    open_page(browser, testnet, "#/nodes")
    rows = wait_for(browser, "#nodes tr.node", "the resource nodes")
    assert len(rows) == NODES
    nodes = {node["address"]: node for node in rpc(testnet, "get_resource_nodes")}
    for row in rows:
        address = row.get_attribute("data-address") or ""
        stake = row.find_element(By.CSS_SELECTOR, ".amount").get_attribute("data-base-units")
        assert stake == nodes[address]["stake"]
        lines = row.find_elements(By.CSS_SELECTOR, "svg.earnings-chart polyline.stake")
        assert bool(lines) == (address == BYZANTINE), address
        assert row.find_elements(By.CSS_SELECTOR, "svg.earnings-chart polyline.earnings")
    assert int(nodes[BYZANTINE]["stake"]) < min(
        int(n["stake"]) for a, n in nodes.items() if a != BYZANTINE
    )
    screenshot(browser, testnet, "nodes")
    no_page_errors(browser)


def test_the_validators_page_counts_signed_blocks(
    browser: webdriver.Chrome, testnet: Explored
) -> None:
    open_page(browser, testnet, "#/validators")
    rows = wait_for(browser, "#validators tr.validator", "the validators")
    assert len(rows) == VALIDATORS
    window = re.search(
        r"over the last (\d+) blocks", browser.find_element(By.ID, "signed-window").text
    )
    assert window is not None
    counted = int(window.group(1))
    signed = []
    for row in rows:
        match = re.fullmatch(r"(\d+) / (\d+)", row.find_element(By.CSS_SELECTOR, ".signed").text)
        assert match is not None and int(match.group(2)) == counted
        signed.append(int(match.group(1)))
    # Each block commits with more than 2/3 of the power: 3 of the 4 equal validators at least.
    assert sum(signed) >= 3 * counted and all(0 <= s <= counted for s in signed)
    validators = {v["address"] for v in rpc(testnet, "get_validators")}
    assert {row.get_attribute("data-address") for row in rows} == validators
    screenshot(browser, testnet, "validators")
    no_page_errors(browser)


@pytest.mark.parametrize(
    ("route", "title"),
    [
        ("#/nowhere", "No page /nowhere"),
        ("#/task/0x12zz", "Not a task hash"),
        ("#/task/0x" + "5a" * 32, "No task 0x" + "5a" * 32),
        ("#/block/-3", "Not a height"),
        ("#/block/99999999", "No block 99999999 yet"),
        ("#/account/0x1234", "Not an address"),
    ],
)
def test_bad_input_gets_a_clear_message(
    browser: webdriver.Chrome, testnet: Explored, route: str, title: str
) -> None:
    open_page(browser, testnet, route)
    problem = wait_for(browser, "#problem", f"the message for {route}")[0]
    assert problem.find_element(By.TAG_NAME, "h1").text == title
    assert problem.find_element(By.TAG_NAME, "p").text
    if route == "#/nowhere":
        screenshot(browser, testnet, "unknown-page")
    no_page_errors(browser)


def test_a_file_the_explorer_does_not_have_is_404(testnet: Explored) -> None:
    async def get(path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(testnet.url + path) as resp:
            return resp.status, await resp.text()

    status, body = asyncio.run(get("/explorer/missing.js"))
    assert status == 404 and "missing.js" in body
    status, body = asyncio.run(get("/explorer/explorer.js"))
    assert status == 200 and "subscribe" in body
