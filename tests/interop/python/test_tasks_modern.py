"""Interop tests for durable tasks on the 2026-07-28 wire (tasks extension `io.modelcontextprotocol/tasks`,
SEP-2663; shared/docs/protocol.md §4) against taskwire-fixtures, over Streamable HTTP and stdio.

Why raw JSON-RPC and not `mcp.Client`: mcp 2.3.0 has no task client. Its typed `send_request`
validates a tools/call reply as a CallToolResult (a `resultType:"task"` CreateTaskResult does not fit),
and the only raw path is the private `client.session._dispatcher.send_raw_request` (interop.md §9c),
which may change without notice. So these tests speak the wire directly with the standard library:

* HTTP: POST JSON-RPC to the endpoint with the modern headers (Content-Type, Accept,
  MCP-Protocol-Version, Mcp-Method, and Mcp-Name = tool name / taskId for tools/call and
  tasks/get|update|cancel); the reply is JSON or SSE (`data:` lines).
* stdio: `taskwire-fixtures --stdio`, one JSON-RPC message per line each way (no initialize: every
  request carries the per-request `_meta` envelope).

Every request carries `_meta` {protocolVersion: 2026-07-28, clientCapabilities: {elicitation,
extensions: {io.modelcontextprotocol/tasks}}} unless a test drops the extension on purpose.

Loopback only. Each test is bounded (pytest-timeout plus explicit deadlines on every read and poll),
and every server process is killed at teardown (plus the /proc sweep in conftest.py).
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from interop_support import FIXTURES, kill_pid

MODERN = "2026-07-28"
TASKS_EXT = "io.modelcontextprotocol/tasks"
RELATED_TASK = "io.modelcontextprotocol/related-task"
CAPS_WITH_TASKS: dict[str, Any] = {"elicitation": {}, "extensions": {TASKS_EXT: {}}}
CAPS_WITHOUT_TASKS: dict[str, Any] = {"elicitation": {}}

REQUEST_TIMEOUT_S = 10.0  # one request/response
POLL_DEADLINE_S = 10.0  # polling a task to an expected state
TEST_TIMEOUT_S = 40  # pytest-timeout backstop per test

pytestmark = [pytest.mark.timeout(TEST_TIMEOUT_S)]

_AUTO = object()
_NAME_PARAM = {"tools/call": "name", "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}


def envelope(caps: dict[str, Any]) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "taskwire-interop-py-raw", "version": "0.0.1"},
    }


@dataclass
class Reply:
    """One JSON-RPC response; `status` is the HTTP status (None over stdio)."""

    message: dict[str, Any]
    status: int | None = None
    others: list[dict[str, Any]] = field(default_factory=list)  # notifications seen before it

    @property
    def result(self) -> dict[str, Any]:
        assert "error" not in self.message, f"expected a result, got {self.message}"
        assert "result" in self.message, self.message
        return self.message["result"]

    @property
    def error(self) -> dict[str, Any]:
        assert "error" in self.message, f"expected an error, got {self.message}"
        return self.message["error"]


class Wire:
    kind: str
    _ids = itertools.count(1)

    def body(self, method: str, params: dict[str, Any], caps: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        rid = next(self._ids)
        p = dict(params)
        p["_meta"] = envelope(caps)
        return rid, {"jsonrpc": "2.0", "id": rid, "method": method, "params": p}

    def request(self, method: str, params: dict[str, Any], *, caps: dict[str, Any] = CAPS_WITH_TASKS,
                name: Any = _AUTO, headers: dict[str, str] | None = None) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HttpWire(Wire):
    """Streamable HTTP, 2026-07-28: one POST per request; JSON or SSE reply."""

    kind = "http"

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

    def request(self, method: str, params: dict[str, Any], *, caps: dict[str, Any] = CAPS_WITH_TASKS,
                name: Any = _AUTO, headers: dict[str, str] | None = None) -> Reply:
        rid, body = self.body(method, params, caps)
        h = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
        }
        if name is _AUTO:
            key = _NAME_PARAM.get(method)
            name = params.get(key) if key else None
        if name is not None:
            h["Mcp-Name"] = name
        h.update(headers or {})
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=h, method="POST")
        try:
            resp = self.opener.open(req, timeout=REQUEST_TIMEOUT_S)
        except urllib.error.HTTPError as e:  # 4xx/5xx still carry a JSON-RPC body
            resp = e
        with resp:
            status = resp.status if hasattr(resp, "status") else resp.code
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "text/event-stream":
                return self._read_sse(resp, rid, status)
            raw = resp.read().decode()
        assert ctype == "application/json", f"{method}: HTTP {status} with Content-Type {ctype!r}: {raw[:500]}"
        msg = json.loads(raw)
        assert msg.get("id") == rid, f"{method}: response id {msg.get('id')!r} != {rid}: {msg}"
        return Reply(message=msg, status=status)

    @staticmethod
    def _read_sse(resp: Any, rid: int, status: int) -> Reply:
        others: list[dict[str, Any]] = []
        data: list[str] = []
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
            elif line == "" and data:
                msg = json.loads("\n".join(data))
                data = []
                if msg.get("id") == rid and ("result" in msg or "error" in msg):
                    return Reply(message=msg, status=status, others=others)
                others.append(msg)
        raise AssertionError(f"SSE stream ended without the response to id {rid}; saw {others}")


class StdioWire(Wire):
    """`taskwire-fixtures --stdio`: newline-delimited JSON-RPC, modern envelope on every request."""

    kind = "stdio"

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [FIXTURES, "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)  # EOF

        threading.Thread(target=pump, daemon=True).start()

    def request(self, method: str, params: dict[str, Any], *, caps: dict[str, Any] = CAPS_WITH_TASKS,
                name: Any = _AUTO, headers: dict[str, str] | None = None) -> Reply:
        rid, body = self.body(method, params, caps)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(body) + "\n")
        self.proc.stdin.flush()
        others: list[dict[str, Any]] = []
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{method}: no response to id {rid} within {REQUEST_TIMEOUT_S} s; saw {others}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{method}: server closed stdout (rc={self.proc.poll()}); saw {others}")
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("id") == rid and ("result" in msg or "error" in msg):
                return Reply(message=msg, others=others)
            others.append(msg)

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            kill_pid(self.proc.pid)


@pytest.fixture(params=["http", "stdio"])
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    if request.param == "http":
        w: Wire = HttpWire(request.getfixturevalue("http_server").url)
    else:
        w = StdioWire()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def http_wire(http_server: Any) -> Iterator[HttpWire]:
    yield HttpWire(http_server.url)


# --------------------------------------------------------------------------------------------
# Helpers


def call_tool(w: Wire, name: str, arguments: dict[str, Any], **kw: Any) -> Reply:
    return w.request("tools/call", {"name": name, "arguments": arguments}, **kw)


def create_task(w: Wire, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """tools/call that the server turns into a task: checks the flat CreateTaskResult shape."""
    res = call_tool(w, name, arguments).result
    assert res.get("resultType") == "task", f"{name}: expected a CreateTaskResult, got {res}"
    assert isinstance(res.get("taskId"), str) and res["taskId"], res
    assert res.get("status") == "working", res
    assert "ttlMs" in res, f"ttlMs key missing: {res}"
    assert res["ttlMs"] is None or (isinstance(res["ttlMs"], int) and res["ttlMs"] >= 0), res
    for legacy in ("ttl", "pollInterval", "task"):
        assert legacy not in res, f"legacy key {legacy!r} in a 2026-07-28 CreateTaskResult: {res}"
    assert isinstance(res.get("createdAt"), str) and isinstance(res.get("lastUpdatedAt"), str), res
    if "pollIntervalMs" in res:
        assert isinstance(res["pollIntervalMs"], int) and res["pollIntervalMs"] >= 0, res
    return res


def get_task(w: Wire, task_id: str) -> dict[str, Any]:
    res = w.request("tasks/get", {"taskId": task_id}).result
    assert res.get("resultType") == "complete", f"tasks/get must answer resultType complete: {res}"
    assert res.get("taskId") == task_id, res
    assert "ttlMs" in res, res
    for legacy in ("ttl", "pollInterval", "task"):
        assert legacy not in res, f"legacy key {legacy!r} in a 2026-07-28 tasks/get result: {res}"
    if res["status"] == "failed":
        assert "result" not in res, f"a failed task must not carry result: {res}"
    return res


def poll(w: Wire, task_id: str, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """tasks/get until `until(task)`, honouring pollIntervalMs (capped), within POLL_DEADLINE_S."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + POLL_DEADLINE_S
    while True:
        task = get_task(w, task_id)
        seen.append(task)
        if until(task):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id}: state not reached within {POLL_DEADLINE_S} s; saw "
                                 f"{[t['status'] for t in seen]} last={task}")
        time.sleep(min((task.get("pollIntervalMs") or 200) / 1000, 0.5))


def texts(result: dict[str, Any]) -> list[str]:
    return [c.get("text") for c in result.get("content", []) if c.get("type") == "text"]


def is_not_working(t: dict[str, Any]) -> bool:
    return t["status"] != "working"


# --------------------------------------------------------------------------------------------
# Tests


def test_create_task_poll_to_completed(wire: Wire) -> None:
    created = create_task(wire, "slow_compute", {"seconds": 1, "label": "m"})
    task_id = created["taskId"]
    # Durable create: the id resolves immediately.
    first = get_task(wire, task_id)
    assert first["status"] in ("working", "completed"), first

    seen = poll(wire, task_id, is_not_working)
    final = seen[-1]
    assert final["status"] == "completed", final
    assert "error" not in final
    result = final["result"]
    assert result["content"][0]["type"] == "text"
    assert result["content"][0]["text"] == "Computed m in 1 s", result
    assert result.get("isError") in (None, False), result
    # The inlined result must not carry the legacy related-task _meta (protocol.md §4.5).
    assert RELATED_TASK not in (result.get("_meta") or {}), result
    # Progress becomes the statusMessage while it works.
    msgs = {t.get("statusMessage") for t in [first, *seen] if t["status"] == "working"} - {None}
    assert msgs <= {"computing m"}, msgs


def test_input_required_answered_with_tasks_update(wire: Wire) -> None:
    task_id = create_task(wire, "confirm_delete", {"filename": "a.txt"})["taskId"]
    waiting = poll(wire, task_id, is_not_working)[-1]
    assert waiting["status"] == "input_required", waiting
    reqs = waiting.get("inputRequests")
    assert isinstance(reqs, dict) and set(reqs) == {"confirm"}, waiting
    assert reqs["confirm"]["method"] == "elicitation/create", reqs
    params = reqs["confirm"]["params"]
    assert params["requestedSchema"]["properties"]["confirm"]["type"] == "boolean", params
    assert "jsonrpc" not in reqs["confirm"] and "id" not in reqs["confirm"], reqs
    # tasks/get is a pure read: asking again still lists the outstanding request.
    assert get_task(wire, task_id).get("inputRequests") == reqs

    ack = wire.request(
        "tasks/update",
        {"taskId": task_id, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": True}}}},
    ).result
    assert ack.get("resultType") == "complete", ack
    assert set(ack) <= {"resultType", "_meta"}, ack

    final = poll(wire, task_id, lambda t: t["status"] not in ("working", "input_required"))[-1]
    assert final["status"] == "completed", final
    assert final["result"]["content"][0]["text"] == "Deleted a.txt", final
    assert "inputRequests" not in final, final


def test_input_required_declined_keeps_file(wire: Wire) -> None:
    task_id = create_task(wire, "confirm_delete", {"filename": "b.txt"})["taskId"]
    assert poll(wire, task_id, is_not_working)[-1]["status"] == "input_required"
    ack = wire.request("tasks/update", {"taskId": task_id, "inputResponses": {"confirm": {"action": "decline"}}}).result
    assert ack.get("resultType") == "complete", ack
    final = poll(wire, task_id, lambda t: t["status"] not in ("working", "input_required"))[-1]
    assert final["status"] == "completed", final
    assert texts(final["result"]) == ["Kept b.txt"], final


def test_two_input_requests_at_once(wire: Wire) -> None:
    task_id = create_task(wire, "multi_input", {})["taskId"]
    waiting = poll(wire, task_id, is_not_working)[-1]
    assert waiting["status"] == "input_required", waiting
    reqs = waiting["inputRequests"]
    assert set(reqs) == {"first", "second"}, reqs
    for r in reqs.values():
        assert r["method"] == "elicitation/create", r
    ack = wire.request(
        "tasks/update",
        {
            "taskId": task_id,
            "inputResponses": {
                "first": {"action": "accept", "content": {"name": "A", "confirm": True}},
                "second": {"action": "accept", "content": {"name": "B", "confirm": True}},
            },
        },
    ).result
    assert ack.get("resultType") == "complete", ack
    final = poll(wire, task_id, lambda t: t["status"] not in ("working", "input_required"))[-1]
    assert final["status"] == "completed", final
    assert texts(final["result"]) == ["Got A and B"], final


def test_cancel_task(wire: Wire) -> None:
    task_id = create_task(wire, "slow_compute", {"seconds": 60, "label": "long"})["taskId"]
    t0 = time.monotonic()
    ack = wire.request("tasks/cancel", {"taskId": task_id}).result
    assert time.monotonic() - t0 < 5, "tasks/cancel answered promptly"
    assert ack.get("resultType") == "complete", ack
    assert set(ack) <= {"resultType", "_meta"}, ack
    # Cancellation is eventually consistent: poll until the task leaves "working".
    final = poll(wire, task_id, is_not_working)[-1]
    assert final["status"] == "cancelled", final
    assert "result" not in final, final
    time.sleep(0.3)
    assert get_task(wire, task_id)["status"] == "cancelled"
    # Cancelling a terminal task: idempotent empty ack (protocol.md §4.3, conformance).
    again = wire.request("tasks/cancel", {"taskId": task_id}).result
    assert again.get("resultType") == "complete", again


def test_tool_error_completes_task_with_is_error(wire: Wire) -> None:
    # Under the extension a tool error ends the task "completed" with result.isError (§4.4).
    task_id = create_task(wire, "failing_job", {})["taskId"]
    final = poll(wire, task_id, is_not_working)[-1]
    assert final["status"] == "completed", final
    assert final["result"].get("isError") is True, final
    assert texts(final["result"]), final


def test_protocol_error_fails_task_with_error(wire: Wire) -> None:
    task_id = create_task(wire, "protocol_error_job", {})["taskId"]
    final = poll(wire, task_id, is_not_working)[-1]
    assert final["status"] == "failed", final
    err = final.get("error")
    assert isinstance(err, dict) and isinstance(err.get("code"), int) and isinstance(err.get("message"), str), final
    assert "result" not in final, final


def test_no_task_without_the_extension(wire: Wire) -> None:
    # A request that does not declare the extension never gets a CreateTaskResult; a legacy
    # params.task is ignored (§4.3) and the optional tool answers directly.
    res = wire.request(
        "tools/call",
        {"name": "slow_compute", "arguments": {"seconds": 0.2, "label": "d"}, "task": {"ttl": 5000}},
        caps=CAPS_WITHOUT_TASKS,
    ).result
    assert res.get("resultType") == "complete", res
    assert texts(res) == ["Computed d in 0.2 s"], res
    # A task-only tool cannot be served without the extension: -32021 naming it (§4.1).
    reply = call_tool(wire, "failing_job", {}, caps=CAPS_WITHOUT_TASKS)
    err = reply.error
    assert err["code"] == -32021, err
    assert TASKS_EXT in err["data"]["requiredCapabilities"]["extensions"], err
    if wire.kind == "http":
        assert reply.status == 400, reply


def test_tasks_get_without_extension_is_32021(wire: Wire) -> None:
    task_id = create_task(wire, "slow_compute", {"seconds": 0.5})["taskId"]
    for method, params in (
        ("tasks/get", {"taskId": task_id}),
        ("tasks/update", {"taskId": task_id, "inputResponses": {}}),
        ("tasks/cancel", {"taskId": task_id}),
    ):
        reply = wire.request(method, params, caps=CAPS_WITHOUT_TASKS)
        err = reply.error
        assert err["code"] == -32021, (method, err)
        assert err["data"]["requiredCapabilities"] == {"extensions": {TASKS_EXT: {}}}, (method, err)
        if wire.kind == "http":
            assert reply.status == 400, (method, reply)


def test_unknown_task_id_is_32602(wire: Wire) -> None:
    for method, params in (
        ("tasks/get", {"taskId": "no-such-task-0000"}),
        ("tasks/update", {"taskId": "no-such-task-0000", "inputResponses": {}}),
        ("tasks/cancel", {"taskId": "no-such-task-0000"}),
    ):
        err = wire.request(method, params).error
        assert err["code"] == -32602, (method, err)


def test_legacy_task_methods_are_32601(wire: Wire) -> None:
    task_id = create_task(wire, "slow_compute", {"seconds": 0.2})["taskId"]
    for method, params in (("tasks/result", {"taskId": task_id}), ("tasks/list", {})):
        reply = wire.request(method, params)
        assert reply.error["code"] == -32601, (method, reply.message)
        if wire.kind == "http":
            assert reply.status == 404, (method, reply)


def test_mcp_name_header_must_match_task_id(http_wire: HttpWire) -> None:
    # HTTP only: tasks/get|update|cancel carry Mcp-Name = taskId (protocol.md §4.3, §6.3).
    task_id = create_task(http_wire, "slow_compute", {"seconds": 0.2})["taskId"]
    for name in ("some-other-task", None):
        reply = http_wire.request("tasks/get", {"taskId": task_id}, name=name)
        assert reply.status == 400, (name, reply)
        assert reply.error["code"] == -32020, (name, reply.message)
    assert get_task(http_wire, task_id)["taskId"] == task_id
