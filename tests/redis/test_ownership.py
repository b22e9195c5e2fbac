"""Invariant 5: a service refuses the other service's Redis unless sharing is explicitly allowed."""

from __future__ import annotations

import pytest

from kubernaut.config import StandaloneRedis
from kubernaut.redis import OwnershipError, claim_ownership, connect
from kubernaut.redis.keys import CONTEXT_API, GATEWAY, OWNER_KEY, SHARERS_KEY
from kubernaut_tools.localstack import LocalStack


async def test_gateway_refuses_the_context_api_redis(stack: LocalStack) -> None:
    settings = StandaloneRedis(**stack.redis_auth(stack.topology.redis_context_port))
    handle = connect(settings, client_name="test")
    try:
        await handle.client.delete(OWNER_KEY, SHARERS_KEY)
        assert await claim_ownership(
            handle.client, CONTEXT_API, where=handle.describe(), allow_shared=False
        ) == (CONTEXT_API)
        with pytest.raises(OwnershipError) as err:
            await claim_ownership(handle.client, GATEWAY, where=handle.describe(), allow_shared=False)
        message = str(err.value)
        assert "gateway" in message
        assert "context-api" in message
        assert "allow_shared_redis" in message
        assert await handle.client.smembers(SHARERS_KEY) == set()

        owner = await claim_ownership(handle.client, GATEWAY, where=handle.describe(), allow_shared=True)
        assert owner == CONTEXT_API
        assert await handle.client.smembers(SHARERS_KEY) == {GATEWAY.encode()}
    finally:
        await handle.client.delete(OWNER_KEY, SHARERS_KEY)
        await handle.aclose()


async def test_gateway_claims_its_sentinel_group(stack: LocalStack) -> None:
    handle = connect(stack.settings().gateway.redis, client_name="test")
    try:
        await handle.client.delete(OWNER_KEY)
        assert (
            await claim_ownership(handle.client, GATEWAY, where=handle.describe(), allow_shared=False)
            == GATEWAY
        )
        assert await handle.master_address() == (stack.topology.host, stack.current_master()[1])  # type: ignore[index]
    finally:
        await handle.client.delete(OWNER_KEY)
        await handle.aclose()
