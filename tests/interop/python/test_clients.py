"""Interop tests: the official Python MCP SDK (`mcp==2.3.0`) as a real client of taskwire-fixtures.

Both transports (stdio: the client spawns `taskwire-fixtures --stdio`; Streamable HTTP: a server
spawned per test on 127.0.0.1:0), and both connect modes of `mcp.Client`:

* ``mode="auto"`` (the SDK default) probes ``server/discover`` at 2026-07-28 and must settle on
  2026-07-28 without falling back to ``initialize``;
* ``mode="legacy"`` runs the ``initialize`` handshake and must negotiate 2025-11-25.

Loopback only. Every test runs under ``anyio.fail_after`` and pytest-timeout, and every fixture server
process is killed at teardown (HTTP servers by the fixture, stdio servers by the SDK's transport with
a /proc sweep for stragglers as a backstop).

Run (from tests/interop): .venv/bin/python -m pytest -q python/
"""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import anyio
import mcp_types as types
import pytest
from interop_support import FIXTURES  # fixtures http_server & co: conftest.py
from mcp import Client, MCPError, StdioServerParameters, stdio_client

TEST_TIMEOUT_S = 20  # per-test bound (anyio.fail_after); pytest-timeout adds a hard backstop
REQUEST_TIMEOUT_S = 10.0  # per-request read timeout handed to the client

# mcp 2.3's auto mode sends `server/discover` with a fixed 10 s timeout
# (mcp.client.session.DISCOVER_TIMEOUT_SECONDS). A server that never answers the probe makes every
# auto-mode connect stall for those 10 s before the client falls back to `initialize` (and then
# lands on 2025-11-25). A healthy connect on loopback takes milliseconds, so anything near the
# probe timeout means the probe stalled; 5 s is far above normal and well below 10 s.
AUTO_CONNECT_BUDGET_S = 5.0

MODERN = "2026-07-28"
HANDSHAKE_LATEST = "2025-11-25"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(TEST_TIMEOUT_S + 15),
    # send_ping() warns that ping is gone in 2026-07-28; these tests call it in legacy mode only.
    pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------
# Clients


@dataclass
class Conn:
    client: Client
    connect_s: float
    elicitations: list[types.ElicitRequestParams]


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@asynccontextmanager
async def connect(transport: str, mode: str, request: pytest.FixtureRequest) -> AsyncIterator[Conn]:
    """Open an `mcp.Client` over `transport` in `mode`; measures the connect time."""
    elicitations: list[types.ElicitRequestParams] = []

    async def on_elicit(_ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        elicitations.append(params)
        return types.ElicitResult(action="accept", content={"username": "u", "email": "e@x"})

    if transport == "stdio":
        errlog = open(os.devnull, "w")  # a real fd for the child's stderr (pytest swaps sys.stderr)
        request.addfinalizer(errlog.close)
        server: Any = stdio_client(StdioServerParameters(command=FIXTURES, args=["--stdio"]), errlog=errlog)
    else:
        server = request.getfixturevalue("http_server").url

    t0 = time.perf_counter()
    async with Client(
        server,
        mode=mode,  # type: ignore[arg-type]
        read_timeout_seconds=REQUEST_TIMEOUT_S,
        elicitation_callback=on_elicit,
    ) as client:
        yield Conn(client=client, connect_s=time.perf_counter() - t0, elicitations=elicitations)


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _list_call_progress(client: Client, label: str) -> None:
    """The common list / echo / progress checks."""
    tools = (await client.list_tools()).tools
    names = {t.name for t in tools}
    for want in ("echo", "sleep_ms", "test_simple_text", "test_tool_with_progress"):
        assert want in names, f"tools/list lacks {want}: {sorted(names)}"

    text = f"hello ✓ from python/{label} \"quoted\"\nnewline"
    res = await client.call_tool("echo", {"text": text})
    assert not res.is_error
    assert _text(res) == text

    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, _message: str | None) -> None:
        seen.append((progress, total))

    res = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    assert not res.is_error, res
    assert len(seen) >= 3, f"expected >= 3 progress notifications, got {seen}"
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:])), f"progress decreased: {seen}"
    assert seen[-1] == (100, 100), f"last progress should be 100/100: {seen}"


# --------------------------------------------------------------------------------------------
# auto mode (default): must settle on 2026-07-28 through server/discover


async def test_auto_mode_negotiates_modern_quickly(transport: str, request: pytest.FixtureRequest) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "auto", request) as conn:
            client = conn.client
            assert client.protocol_version == MODERN
            # Adopted from a real DiscoverResult, not the initialize fallback.
            discover = client.session.discover_result
            assert discover is not None, "auto mode fell back to initialize instead of adopting server/discover"
            assert MODERN in discover.supported_versions
            assert client.server_info is not None and client.server_info.name == "taskwire-fixtures"
            # See AUTO_CONNECT_BUDGET_S: a stalled discover probe would cost the client's 10 s timeout.
            assert conn.connect_s < AUTO_CONNECT_BUDGET_S, f"auto connect took {conn.connect_s:.2f} s"


async def test_auto_mode_list_call_progress(transport: str, request: pytest.FixtureRequest) -> None:
    # On 2026-07-28 there is no session: progress for a tools/call arrives on that call's own
    # response stream (HTTP: the POST's SSE stream; stdio: interleaved before the response).
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "auto", request) as conn:
            assert conn.client.protocol_version == MODERN
            await _list_call_progress(conn.client, f"{transport}/auto")


async def test_auto_mode_elicitation_input_required(transport: str, request: pytest.FixtureRequest) -> None:
    # On 2026-07-28 test_elicitation answers with an InputRequiredResult; Client.call_tool hands the
    # embedded elicitation to the elicitation callback and retries the call with the response.
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "auto", request) as conn:
            assert conn.client.protocol_version == MODERN
            res = await conn.client.call_tool("test_elicitation", {"message": "Who are you?"})
            assert len(conn.elicitations) == 1, conn.elicitations
            assert conn.elicitations[0].message == "Who are you?"
            assert not res.is_error, res
            assert "u" in _text(res)


async def test_auto_mode_tool_errors(transport: str, request: pytest.FixtureRequest) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "auto", request) as conn:
            res = await conn.client.call_tool("test_error_handling", {})
            assert res.is_error is True
            with pytest.raises(MCPError) as exc:
                await conn.client.call_tool("no_such_tool_xyz", {})
            assert exc.value.code == -32602, exc.value


# --------------------------------------------------------------------------------------------
# legacy mode: initialize handshake, 2025-11-25


async def test_legacy_mode_negotiates_handshake(transport: str, request: pytest.FixtureRequest) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "legacy", request) as conn:
            client = conn.client
            assert client.protocol_version == HANDSHAKE_LATEST
            assert client.session.discover_result is None
            assert client.server_info is not None and client.server_info.name == "taskwire-fixtures"
            await client.send_ping()


async def test_legacy_mode_list_call_progress(transport: str, request: pytest.FixtureRequest) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "legacy", request) as conn:
            assert conn.client.protocol_version == HANDSHAKE_LATEST
            await _list_call_progress(conn.client, f"{transport}/legacy")


async def test_legacy_mode_elicitation(transport: str, request: pytest.FixtureRequest) -> None:
    # Handshake era: the server sends elicitation/create to the client during the tools/call.
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "legacy", request) as conn:
            res = await conn.client.call_tool("test_elicitation", {"message": "Who are you?"})
            assert len(conn.elicitations) == 1, conn.elicitations
            assert not res.is_error, res
            assert "u" in _text(res)


async def test_legacy_mode_cancellation(transport: str, request: pytest.FixtureRequest) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(transport, "legacy", request) as conn:
            client = conn.client
            t0 = time.perf_counter()
            # Leaving the cancel scope cancels the awaiting call: the SDK sends
            # notifications/cancelled {requestId, reason} for the in-flight tools/call.
            with anyio.move_on_after(0.3) as scope:
                await client.call_tool("sleep_ms", {"ms": 10_000})
            elapsed = time.perf_counter() - t0
            assert scope.cancelled_caught, "sleep_ms(10000) returned before the cancel scope fired"
            assert elapsed < 3.0, f"cancelling took {elapsed:.2f} s"

            # The same connection keeps working afterwards.
            await client.send_ping()
            res = await client.call_tool("echo", {"text": "after-cancel"})
            assert _text(res) == "after-cancel"
            t1 = time.perf_counter()
            res = await client.call_tool("sleep_ms", {"ms": 50})
            assert not res.is_error
            assert time.perf_counter() - t1 < 5.0
