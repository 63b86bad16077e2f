"""Helpers of the process-level tests: what a validator process logged, and running a
`python -m rpc` that is expected to refuse to start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, ValidatorProcess

REFUSAL_TIMEOUT = 30.0
TRACEBACK = "Traceback (most recent call last)"

# start(genesis_path, data_dir, *extra) -> a started process (the `validators` fixture)
StartValidator = Callable[..., ValidatorProcess]


def log_text(process: ValidatorProcess) -> str:
    """What the process wrote to its log (stderr) so far; for assertion messages."""
    try:
        return process.log_path.read_text()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class Exited:
    returncode: int
    stdout: str
    stderr: str


def run_to_exit(genesis_path: Path, data_dir: Path, *extra: str) -> Exited:
    """Run `python -m rpc` that should exit by itself (a refused start); the process is killed
    if it is still running after REFUSAL_TIMEOUT seconds, and the test then fails."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rpc",
            "--genesis",
            str(genesis_path),
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--quiet",
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        stdout, stderr = proc.communicate(timeout=REFUSAL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"the validator was expected to refuse to start but still runs after "
            f"{REFUSAL_TIMEOUT} s; stdout {stdout!r}, stderr {stderr!r}"
        )
    return Exited(proc.returncode, stdout, stderr)
