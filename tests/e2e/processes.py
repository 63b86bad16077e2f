"""Helpers of the process-level tests: what a validator process logged, and running a
`python -m rpc` that is expected to refuse to start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testnet.commands import validator_args
from testnet.process import Exited as Exited
from testnet.process import run_to_exit as run_args_to_exit
from tests.helpers import ValidatorProcess

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


def run_to_exit(genesis_path: Path, data_dir: Path, *extra: str, port: int = 0) -> Exited:
    """Run `python -m rpc` that should exit by itself (a refused start); the process is killed
    if it is still running after REFUSAL_TIMEOUT seconds, and the test then fails."""
    args = validator_args(genesis_path, data_dir, port=port, extra=extra)
    exited = run_args_to_exit(args, REFUSAL_TIMEOUT)
    if exited.timed_out:
        pytest.fail(
            f"the validator was expected to refuse to start but still runs after "
            f"{REFUSAL_TIMEOUT} s; stdout {exited.stdout!r}, stderr {exited.stderr!r}"
        )
    return exited
