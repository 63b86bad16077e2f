"""Fixtures shared by the test suites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import LocalChain, local_chain


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain with automine, served on 127.0.0.1 at an ephemeral port."""
    async with local_chain(tmp_path / "ledger") as running:
        yield running
