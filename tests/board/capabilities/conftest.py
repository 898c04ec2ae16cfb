"""Fixtures for the capability tests: a CoAP client like the master's."""

import aiocoap
import pytest


@pytest.fixture
async def client():
    context = await aiocoap.Context.create_client_context()
    yield context
    await context.shutdown()
