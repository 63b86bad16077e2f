"""Fixtures of the process-level tests: validator processes that are always killed at
teardown, the dev genesis written to a file, a network of four validators, and a headless
Chromium driven by selenium (skipped, saying why, where the browser or its driver is
missing)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from chain.protocol.genesis import Genesis
from tests.e2e.network import LocalNetwork, network_genesis
from tests.e2e.processes import StartValidator
from tests.helpers import ValidatorProcess, make_genesis, write_genesis


@pytest.fixture
def validators() -> Iterator[StartValidator]:
    """`start(genesis_path, data_dir, *extra)` -> a started ValidatorProcess; every process
    started through it is killed (if still running) when the test ends, pass or fail."""
    started: list[ValidatorProcess] = []

    def start(genesis_path: Path, data_dir: Path, *extra: str) -> ValidatorProcess:
        process = ValidatorProcess(genesis_path, data_dir, *extra)
        started.append(process)  # before start(): a failed start is cleaned up too
        process.start()
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def dev_genesis(tmp_path: Path) -> tuple[Genesis, Path]:
    """make_genesis() (automine) written to tmp_path/genesis.json."""
    genesis = make_genesis()
    return genesis, write_genesis(tmp_path / "genesis.json", genesis)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    """Four validator processes of equal stake (not started: `network.start_all()`), all
    killed at teardown."""
    net = LocalNetwork(tmp_path, network_genesis(4))
    try:
        yield net
    finally:
        await net.close()


# The browser and its driver, as Debian's chromium and chromium-driver packages install them
# (`apt-get install chromium chromium-driver`); INFERCHAIN_CHROMIUM and INFERCHAIN_CHROMEDRIVER
# name others.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
WINDOW = "1280,1600"


def _find(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return shutil.which(os.environ[env])
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium for the module's tests, quit at its end. The driver is the one
    found on PATH: selenium is never left to download one."""
    binary = _find("INFERCHAIN_CHROMIUM", BROWSERS)
    driver = _find("INFERCHAIN_CHROMEDRIVER", DRIVERS)
    if binary is None or driver is None:
        missing = [
            what
            for what, path in (
                ("chromium (" + ", ".join(BROWSERS) + ")", binary),
                ("its driver (chromedriver)", driver),
            )
            if path is None
        ]
        pytest.skip(
            f"no {' and no '.join(missing)} on PATH: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={WINDOW}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()
