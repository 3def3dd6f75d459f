"""Interop: asyncmcp 0.2.1's own clients against `taskwire-fixtures --webhook-transport`.

asyncmcp pins ``mcp<2.0``, so these tests live in their own venv (tests/interop/asyncmcp/.venv, made
by tests/interop/run.sh from tests/interop/asyncmcp/requirements.txt), apart from the mcp 2.3 suite.

* ``test_webhook_client``: asyncmcp's webhook transport (``webhook_client``) drives a stock
  ``ClientSession`` against ``<base>/mcp/request``. Every server->client message arrives as a POST to our
  local callback app. asyncmcp's client leaves ``params._meta.webhookUrl`` to the caller, so a small
  stream shim adds it to the ``initialize`` request.
* ``test_streamable_http_webhook_client``: asyncmcp's StreamableHTTP+webhook client against ``<base>/mcp``.
  The client itself puts ``_meta.webhookUrl`` into ``initialize``. ``slow_report`` (a webhook tool on the
  server side) must be answered with ``202 Accepted`` and its result POSTed to the webhook with
  ``mcp-session-id``; ``echo`` goes the ordinary Streamable HTTP way.

Loopback only. Each test runs under ``anyio.fail_after`` and pytest-timeout. The fixture server process
and the callback app are torn down at the end.

``ASYNCMCP_TARGET_URL=http://127.0.0.1:PORT/mcp`` points the tests at an already running server instead
of starting the fixture binary (for checking the harness against another implementation).

Run (from tests/interop/asyncmcp): .venv/bin/python -m pytest -q
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest
import uvicorn
from anyio.streams.memory import MemoryObjectSendStream
from asyncmcp.streamable_http_webhook import StreamableHTTPWebhookClientConfig, streamable_http_webhook_client
from asyncmcp.webhook import WebhookClientConfig, webhook_client
from mcp import ClientSession
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.message import SessionMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from interop_support import FIXTURES, ServerStartError, http_server_process  # noqa: E402

TEST_TIMEOUT_S = 30  # per-test bound (anyio.fail_after); pytest-timeout adds a hard backstop
REQUEST_TIMEOUT_S = 10.0  # per-request read timeout of the ClientSession
SLOW_REPORT_SECONDS = 1

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(TEST_TIMEOUT_S + 15)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------
# The server under test


@pytest.fixture
def target() -> Iterator[str]:
    """Base URL ``http://127.0.0.1:PORT/mcp``: the fixture binary with ``--webhook-transport``."""
    override = os.environ.get("ASYNCMCP_TARGET_URL")
    if override:
        yield override.rstrip("/")
        return
    if not os.access(FIXTURES, os.X_OK):
        pytest.fail(f"fixture binary not found or not executable: {FIXTURES} (set TASKWIRE_FIXTURES)")
    try:
        cm = http_server_process(extra_args=["--webhook-transport"])
        server = cm.__enter__()
    except ServerStartError as e:
        pytest.fail(str(e))
    try:
        yield server.url
    finally:
        cm.__exit__(None, None, None)
        # Shown by pytest only when the test failed.
        print("---- taskwire-fixtures stderr (tail) ----")
        print("".join(server.stderr_lines[-60:]))


# --------------------------------------------------------------------------------------------
# The client's callback app (where the server POSTs its messages)


@dataclass
class Delivery:
    """One POST the server made to our webhook."""

    at: float  # time.monotonic()
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the raw text when it is not JSON
    status: int = 0  # what asyncmcp's callback answered

    @property
    def is_response(self) -> bool:
        return isinstance(self.body, dict) and "id" in self.body and ("result" in self.body or "error" in self.body)


@dataclass
class Hook:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    # asyncmcp's callback (client.get_webhook_callback()); set once the client exists.
    handler: Callable[[Request], Awaitable[Response]] | None = None

    def summary(self) -> str:
        return "\n".join(
            f"  {d.status} {d.headers.get('x-session-id') or d.headers.get('mcp-session-id')} {d.body}"
            for d in self.deliveries
        )


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # leave pytest's signal handlers alone
        return contextlib.nullcontext()


@asynccontextmanager
async def callback_app(path: str) -> AsyncIterator[Hook]:
    """A Starlette app on 127.0.0.1:<free port> whose `path` records each POST and hands it to asyncmcp."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    hook = Hook(url=f"http://127.0.0.1:{sock.getsockname()[1]}{path}")

    async def endpoint(request: Request) -> Response:
        raw = await request.body()  # cached on the Request: asyncmcp's handler reads it again
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        d = Delivery(at=time.monotonic(), headers={k.lower(): v for k, v in request.headers.items()}, body=body)
        hook.deliveries.append(d)
        if hook.handler is None:
            d.status = 503
            return JSONResponse({"error": "client not ready"}, status_code=503)
        resp = await hook.handler(request)
        d.status = resp.status_code
        return resp

    app = Starlette(routes=[Route(path, endpoint, methods=["POST"])])
    server = _Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(5):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield hook
        finally:
            server.should_exit = True
    sock.close()


# --------------------------------------------------------------------------------------------
# Helpers


@asynccontextmanager
async def webhook_url_shim(
    write: MemoryObjectSendStream[SessionMessage], webhook_url: str
) -> AsyncIterator[MemoryObjectSendStream[SessionMessage]]:
    """A write stream for ClientSession that adds `params._meta.webhookUrl` to `initialize` (seed-systems §5.1).

    asyncmcp's webhook transport refuses (logs and drops) an initialize without it.
    """
    shim_send, shim_recv = anyio.create_memory_object_stream[SessionMessage](0)

    async def forward() -> None:
        async with shim_recv:
            async for msg in shim_recv:
                root = msg.message.root
                if isinstance(root, types.JSONRPCRequest) and root.method == "initialize":
                    params = dict(root.params or {})
                    params["_meta"] = {**(params.get("_meta") or {}), "webhookUrl": webhook_url}
                    msg = SessionMessage(
                        types.JSONRPCMessage(root.model_copy(update={"params": params})), metadata=msg.metadata
                    )
                await write.send(msg)

    async with anyio.create_task_group() as tg:
        tg.start_soon(forward)
        try:
            yield shim_send
        finally:
            tg.cancel_scope.cancel()


@dataclass
class HttpLog:
    """POSTs the asyncmcp client made to the server: (JSON-RPC method, tool name, status, sent at, answered at)."""

    entries: list[tuple[str | None, str | None, int, float, float]] = field(default_factory=list)
    _sent: dict[int, float] = field(default_factory=dict)

    async def on_request(self, request: httpx.Request) -> None:
        self._sent[id(request)] = time.monotonic()

    async def on_response(self, response: httpx.Response) -> None:
        req = response.request
        if req.method != "POST":
            return
        method = name = None
        try:
            body = json.loads(req.content)
            method = body.get("method")
            name = (body.get("params") or {}).get("name")
        except (ValueError, AttributeError, httpx.RequestNotRead):
            pass
        sent = self._sent.pop(id(req), time.monotonic())
        self.entries.append((method, name, response.status_code, sent, time.monotonic()))

    def summary(self) -> str:
        return "\n".join(f"  {m} {n} -> {s}" for m, n, s, _, _ in self.entries)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def echo_args(tools: list[types.Tool], text: str) -> dict[str, str]:
    """Arguments for `echo`, named after its input schema (`text` in taskwire-fixtures, `message` elsewhere)."""
    echo = next(t for t in tools if t.name == "echo")
    props = (echo.inputSchema or {}).get("properties") or {}
    for key in ("text", "message"):
        if key in props:
            return {key: text}
    raise AssertionError(f"echo's input schema has neither `text` nor `message`: {echo.inputSchema}")


def mentions_seconds(text: str, seconds: int) -> bool:
    return re.search(rf"(?<![\d.]){seconds}(\.0+)?(?![\d.])", text) is not None


class ErrorSink:
    """message_handler for ClientSession: keeps exceptions the transport pushed into the read stream."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)


# --------------------------------------------------------------------------------------------
# Tests


async def test_webhook_client(target: str) -> None:
    """asyncmcp's webhook client + stock ClientSession: initialize, tools/list, echo, slow_report with progress."""
    endpoint = f"{target}/request"
    log = HttpLog()
    sink = ErrorSink()
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with callback_app("/hook") as hook:
            config = WebhookClientConfig(
                server_url=endpoint, client_id="taskwire-interop-webhook", timeout_seconds=REQUEST_TIMEOUT_S
            )
            async with webhook_client(config, "/hook") as (read, write, client):
                assert client.http_client is not None
                client.http_client.event_hooks = {"request": [log.on_request], "response": [log.on_response]}
                hook.handler = await client.get_webhook_callback()

                def context() -> str:
                    return (
                        f"\nPOSTs to {endpoint}:\n{log.summary()}\nwebhook deliveries:\n{hook.summary()}"
                        f"\ntransport errors: {sink.errors}"
                    )

                async with webhook_url_shim(write, hook.url) as shimmed_write:
                    async with ClientSession(
                        read,
                        shimmed_write,
                        read_timeout_seconds=timedelta(seconds=REQUEST_TIMEOUT_S),
                        message_handler=sink,
                    ) as session:
                        try:
                            init = await session.initialize()
                        except Exception as e:
                            raise AssertionError(f"initialize failed: {e!r}{context()}") from e
                        assert init.serverInfo.name, context()

                        # The client learns its session id only from X-Session-ID on the webhook POST
                        # carrying the InitializeResult.
                        sid = client.transport.client_state.session_id
                        assert sid, f"no X-Session-ID on the InitializeResult delivery{context()}"
                        init_delivery = next(d for d in hook.deliveries if d.is_response)
                        assert init_delivery.headers.get("x-session-id") == sid, context()
                        assert init_delivery.headers.get("content-type", "").startswith("application/json"), context()

                        tools = (await session.list_tools()).tools
                        names = {t.name for t in tools}
                        for want in ("echo", "slow_report"):
                            assert want in names, f"tools/list lacks {want}: {sorted(names)}"

                        text = 'hello ✓ from asyncmcp "webhook"\nnewline'
                        res = await session.call_tool("echo", echo_args(tools, text))
                        assert not res.isError, res
                        assert text_of(res) == text

                        seen: list[tuple[float, float | None]] = []

                        async def on_progress(progress: float, total: float | None, _message: str | None) -> None:
                            seen.append((progress, total))

                        res = await session.call_tool(
                            "slow_report", {"seconds": SLOW_REPORT_SECONDS}, progress_callback=on_progress
                        )
                        assert not res.isError, res
                        assert mentions_seconds(text_of(res), SLOW_REPORT_SECONDS), text_of(res)
                        assert len(seen) >= 2, f"expected >= 2 progress notifications, got {seen}{context()}"
                        assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:])), f"progress decreased: {seen}"

                # Every message reached the client by webhook with the session id; every POST got a 2xx.
                for d in hook.deliveries:
                    assert d.headers.get("x-session-id") == sid, f"delivery without X-Session-ID {sid}{context()}"
                    assert d.status == 200, f"asyncmcp's callback refused a delivery{context()}"
                for method, _name, status, _, _ in log.entries:
                    assert 200 <= status < 300, f"{method} answered {status}{context()}"
                assert not sink.errors, context()


async def test_streamable_http_webhook_client(target: str) -> None:
    """asyncmcp's StreamableHTTP+webhook client: slow_report is 202 + result by webhook; echo is plain."""
    log = HttpLog()
    sink = ErrorSink()

    def factory(
        headers: dict[str, str] | None = None, timeout: httpx.Timeout | None = None, auth: httpx.Auth | None = None
    ) -> httpx.AsyncClient:
        c = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        c.event_hooks = {"request": [log.on_request], "response": [log.on_response]}
        return c

    with anyio.fail_after(TEST_TIMEOUT_S):
        async with callback_app("/webhook") as hook:
            config = StreamableHTTPWebhookClientConfig(
                server_url=target,
                webhook_url=hook.url,
                client_id="taskwire-interop-shw",
                timeout_seconds=REQUEST_TIMEOUT_S,
            )
            async with streamable_http_webhook_client(config, "/webhook", httpx_client_factory=factory) as (
                read,
                write,
                client,
            ):
                hook.handler = await client.get_webhook_callback()
                # Informational on the client side: asyncmcp's client never reads this set (routing is
                # the server's decision), but this is how an asyncmcp user declares it.
                client.set_webhook_tools({"slow_report"})

                def context() -> str:
                    return (
                        f"\nPOSTs to {target}:\n{log.summary()}\nwebhook deliveries:\n{hook.summary()}"
                        f"\ntransport errors: {sink.errors}"
                    )

                async with ClientSession(
                    read, write, read_timeout_seconds=timedelta(seconds=REQUEST_TIMEOUT_S), message_handler=sink
                ) as session:
                    try:
                        await session.initialize()
                    except Exception as e:
                        raise AssertionError(f"initialize failed: {e!r}{context()}") from e
                    sid = client.transport.session_id
                    assert sid, f"no mcp-session-id on the initialize response{context()}"

                    tools = (await session.list_tools()).tools
                    names = {t.name for t in tools}
                    for want in ("echo", "slow_report"):
                        assert want in names, f"tools/list lacks {want}: {sorted(names)}"

                    # A plain tool: answered on the POST itself, nothing by webhook.
                    before = len(hook.deliveries)
                    text = "hello ✓ from asyncmcp streamable-http+webhook"
                    res = await session.call_tool("echo", echo_args(tools, text))
                    assert not res.isError, res
                    assert text_of(res) == text
                    assert not [d for d in hook.deliveries[before:] if d.is_response], (
                        f"echo's result came by webhook{context()}"
                    )

                    # The webhook tool: 202 at once, the result POSTed to the webhook with mcp-session-id.
                    before = len(hook.deliveries)
                    res = await session.call_tool("slow_report", {"seconds": SLOW_REPORT_SECONDS})
                    assert not res.isError, res
                    assert mentions_seconds(text_of(res), SLOW_REPORT_SECONDS), text_of(res)

                    results = [d for d in hook.deliveries[before:] if d.is_response]
                    assert len(results) == 1, f"expected slow_report's result by webhook{context()}"
                    result = results[0]
                    assert result.headers.get("mcp-session-id") == sid, context()
                    assert result.headers.get("content-type", "").startswith("application/json"), context()
                    assert result.status == 200, context()

                    posts = [e for e in log.entries if e[0] == "tools/call" and e[1] == "slow_report"]
                    assert len(posts) == 1, context()
                    _, _, status, _sent, answered = posts[0]
                    assert status == 202, f"slow_report's POST answered {status}, want 202{context()}"
                    assert answered < result.at, f"the 202 came after the webhook result{context()}"
                    assert not sink.errors, context()
