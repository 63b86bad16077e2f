"""The project `scripts/testnet.py --emit compose DIR` writes, brought up with `docker compose
up` where a Docker engine answers (`docker info` succeeds): validator 0 commits blocks on its
published port. Skipped, saying why, elsewhere; tests/e2e/test_netns.py runs an emitted
project's services in network namespaces without an engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testnet import compose
from testnet.launcher import emit_compose, parse_args

pytestmark = pytest.mark.slow

UP_TIMEOUT_S = 600.0  # the first build of the image
COMMIT_TIMEOUT_S = 120.0


def docker_engine() -> str | None:
    """Why no Docker engine can run the project here, or None."""
    if shutil.which("docker") is None:
        return "no docker client"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "docker info did not answer in 20 s"
    if info.returncode != 0:
        return f"no Docker engine answers (docker info: {info.stderr.strip()[:200]})"
    compose_version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
    )
    if compose_version.returncode != 0:
        return "docker compose is not installed"
    return None


def docker_compose(project: Path) -> list[str]:
    """`docker compose` on the project, under a name of this test's own."""
    name = f"inferchain-test-{os.getpid()}"
    return ["docker", "compose", "-p", name, "-f", str(project / compose.COMPOSE_FILE)]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "net"
    yield out
    if (out / compose.COMPOSE_FILE).exists():
        subprocess.run(
            [*docker_compose(out), "down", "-v"],
            capture_output=True,
            timeout=120,
        )


@pytest.mark.skipif((engine := docker_engine()) is not None, reason=str(engine))
def test_the_project_comes_up_under_docker_compose(project: Path) -> None:
    argv = ["--validators", "2", "--nodes", "2", "--no-ao", "--port", "18645"]
    argv += ["--node-port", "19245"]
    assert emit_compose(parse_args(["--emit", "compose", str(project), *argv]), project) == 0
    up = subprocess.run(
        [*docker_compose(project), "up", "-d", "--build"],
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_S,
    )
    assert up.returncode == 0, up.stderr
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    height = -1
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:18645/health", timeout=5) as answer:
                height = json.loads(answer.read())["height"]
        except OSError:
            height = -1
        if height >= 2:
            break
        time.sleep(0.5)  # polling an outside engine's containers, each answer checked
    assert height >= 2, "validator 0 of the project did not commit 2 blocks"
