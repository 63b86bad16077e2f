"""Fixtures of the RPC suite (the `chain` fixture comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP session, only for bodies and shapes the client library cannot send."""
    async with aiohttp.ClientSession() as session:
        yield session
