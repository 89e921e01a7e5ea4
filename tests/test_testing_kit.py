"""The pytest kit's own promises: no test reaches the network, and it says who tried."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from meshagent.testing import NetworkRefused


def test_a_connection_to_another_host_is_refused_naming_the_caller():
    with pytest.raises(NetworkRefused) as caught:
        socket.create_connection(("203.0.113.7", 443), timeout=1)
    message = str(caught.value)
    assert "a connection to 203.0.113.7:443 was refused" in message
    assert "test_testing_kit.py" in message and "in test_a_connection_to_another_host" in message


def test_dns_lookups_of_other_hosts_are_refused():
    with pytest.raises(NetworkRefused, match="a DNS lookup of 'slack.com' was refused"):
        socket.getaddrinfo("slack.com", 443)


def test_http_clients_are_stopped_too():
    with pytest.raises(httpx.ConnectError, match="tests must not reach the network"):
        httpx.get("https://api.openai.com/v1/models", timeout=2)

    async def through_slack_sdk():
        from slack_sdk.web.async_client import AsyncWebClient

        await AsyncWebClient(token="xoxb-not-real").auth_test()

    with pytest.raises(Exception) as caught:
        asyncio.run(through_slack_sdk())
    assert "tests must not reach the network" in repr(caught.value) + repr(
        caught.value.__cause__
    ) + repr(caught.value.__context__)


def test_this_machine_is_allowed(sandbox):
    answer = httpx.post(sandbox.slack_url + "auth.test",
                        headers={"Authorization": f"Bearer {sandbox.slack_token}"})  # fmt: skip
    assert answer.json()["ok"] is True
