"""Interop tests for `taskwire proxy` on the 2026-07-28 wire (tasks extension `io.modelcontextprotocol/tasks`)
in front of a real third-party MCP server: npm @modelcontextprotocol/server-everything (stdio), whose
`trigger-long-running-operation {duration, steps}` reports progress once per step.

    taskwire proxy --http 127.0.0.1:0 --task-tools trigger-long-running-operation --store memory \
        -- node ts/stdio-tap.mjs <log> <pidfile> -- node .../server-everything/dist/index.js stdio

The upstream runs behind the stdio tap (ts/stdio-tap.mjs), which logs every message the proxy sends
upstream ({"dir":"out"}) and every message that comes back ({"dir":"in"}), so the tests can check
that cancelling the task really sends `notifications/cancelled` for the upstream `tools/call`.

The client side is raw JSON-RPC over Streamable HTTP, with the helpers of test_tasks_modern.py (mcp
2.3.0 has no task client; see there): every request carries the per-request `_meta` envelope, and
declaring the extension in its clientCapabilities lets the server decide to answer tools/call with a
task.

The binary is TASKWIRE_BIN (default <repo>/target/debug/taskwire); node must be on PATH and
`npm ci` must have installed server-everything. Loopback only. Every test is bounded
(pytest-timeout plus explicit deadlines); the proxy, the tap and the upstream are killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from interop_support import REPO, TASKWIRE, TASKWIRE_LISTENING, HttpServer, ServerStartError, listening_process
from test_tasks_modern import CAPS_WITHOUT_TASKS, HttpWire, create_task, get_task, poll, texts

INTEROP = REPO / "tests" / "interop"
STDIO_TAP = INTEROP / "ts" / "stdio-tap.mjs"
EVERYTHING = INTEROP / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
LONG_TOOL = "trigger-long-running-operation"
TAP_DEADLINE_S = 5.0  # notifications/cancelled must reach the upstream within this

pytestmark = [pytest.mark.timeout(40)]


def is_progress(message: Any) -> bool:
    """The statusMessage the proxy makes of an upstream {progress, total} without a message: "i/n"."""
    if not isinstance(message, str) or "/" not in message:
        return False
    a, b = message.split("/", 1)
    try:
        float(a)
        float(b)
    except ValueError:
        return False
    return True


class Proxy:
    def __init__(self, server: HttpServer, log_file: Path, pid_file: Path) -> None:
        self.server = server
        self.url = server.url
        self.log_file = log_file
        self.pid_file = pid_file

    def tap(self) -> list[dict[str, Any]]:
        """The upstream traffic so far: [{"dir": "out" (proxy -> upstream) | "in", "msg": {...}}]."""
        try:
            text = self.log_file.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line being written right now
                    pass
        return out

    def wait_tap(self, pred: Callable[[list[dict[str, Any]]], Any], deadline_s: float) -> Any:
        end = time.monotonic() + deadline_s
        while True:
            v = pred(self.tap())
            if v or time.monotonic() > end:
                return v
            time.sleep(0.1)

    def upstream_call(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The upstream tools/call the proxy sent for these exact arguments."""
        for e in self.tap():
            m = e["msg"]
            if (e["dir"] == "out" and m.get("method") == "tools/call" and m.get("params", {}).get("name") == LONG_TOOL
                    and m["params"].get("arguments") == arguments):
                return m
        return None

    def dump(self) -> str:
        return "\n".join(f"{'>>' if e['dir'] == 'out' else '<<'} {json.dumps(e['msg'])[:300]}" for e in self.tap())


def _kill_tap_pids(pid_file: Path) -> None:
    """The tap and the upstream go when the proxy dies (their stdin closes); make sure, by pid."""
    try:
        pids = [int(p) for p in pid_file.read_text().split()]
    except (OSError, ValueError):
        return
    end = time.monotonic() + 2
    for pid in pids:
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if not os.access(TASKWIRE, os.X_OK):
        pytest.fail(f"taskwire binary not found or not executable: {TASKWIRE} (set TASKWIRE_BIN)")
    node = shutil.which("node")
    if not node:
        pytest.fail("node not found on PATH")
    if not EVERYTHING.is_file():
        pytest.fail(f"server-everything not installed: {EVERYTHING} (npm ci in tests/interop)")
    tmp = tmp_path_factory.mktemp("proxy")
    log_file, pid_file = tmp / "upstream.log", tmp / "upstream.pid"
    argv = [
        TASKWIRE, "proxy", "--http", "127.0.0.1:0", "--task-tools", LONG_TOOL, "--store", "memory",
        "--", node, str(STDIO_TAP), str(log_file), str(pid_file), "--", node, str(EVERYTHING), "stdio",
    ]
    try:
        cm = listening_process(argv, TASKWIRE_LISTENING, "taskwire proxy")
        server = cm.__enter__()
    except ServerStartError as e:
        _kill_tap_pids(pid_file)
        pytest.fail(str(e))
    try:
        yield Proxy(server, log_file, pid_file)
    finally:
        try:
            cm.__exit__(None, None, None)
        finally:
            _kill_tap_pids(pid_file)


@pytest.fixture
def wire(proxy: Proxy) -> HttpWire:
    return HttpWire(proxy.url)


def test_long_running_tool_as_task_to_completed(proxy: Proxy, wire: HttpWire) -> None:
    args = {"duration": 3, "steps": 3}
    # No params.task: the request declares the extension and the server decides to make a task.
    created = create_task(wire, LONG_TOOL, args)
    task_id = created["taskId"]
    seen = poll(wire, task_id, lambda t: t["status"] != "working")
    final = seen[-1]
    assert final["status"] == "completed", final
    assert texts(final["result"]) == ["Long running operation completed. Duration: 3 seconds, Steps: 3."], final
    assert final["result"].get("isError") in (None, False), final
    progress = [t["statusMessage"] for t in seen if t["status"] == "working" and is_progress(t.get("statusMessage"))]
    assert progress, f"no progress statusMessage while working: {[(t['status'], t.get('statusMessage')) for t in seen]}"
    # The upstream got a plain tools/call asking for progress (it knows nothing of tasks).
    call = proxy.upstream_call(args)
    assert call is not None, f"no upstream tools/call for {args}:\n{proxy.dump()}"
    assert "task" not in call["params"], call
    assert call["params"].get("_meta", {}).get("progressToken") is not None, call


def test_cancel_reaches_the_upstream(proxy: Proxy, wire: HttpWire) -> None:
    args = {"duration": 30, "steps": 30}
    task_id = create_task(wire, LONG_TOOL, args)["taskId"]
    working = poll(wire, task_id, lambda t: t["status"] != "working" or is_progress(t.get("statusMessage")))[-1]
    assert working["status"] == "working", working
    call = proxy.upstream_call(args)
    assert call is not None, f"no upstream tools/call for {args}:\n{proxy.dump()}"

    t0 = time.monotonic()
    ack = wire.request("tasks/cancel", {"taskId": task_id}).result
    assert time.monotonic() - t0 < 5, "tasks/cancel answered promptly"
    assert ack.get("resultType") == "complete", ack
    final = poll(wire, task_id, lambda t: t["status"] != "working")[-1]
    assert final["status"] == "cancelled", final
    assert "result" not in final, final

    note = proxy.wait_tap(
        lambda log: next((e["msg"] for e in log if e["dir"] == "out"
                          and e["msg"].get("method") == "notifications/cancelled"
                          and e["msg"].get("params", {}).get("requestId") == call["id"]), None),
        TAP_DEADLINE_S,
    )
    assert note is not None, (f"no notifications/cancelled {{requestId: {call['id']!r}}} sent upstream within "
                              f"{TAP_DEADLINE_S} s of tasks/cancel:\n{proxy.dump()}")
    time.sleep(0.3)
    assert get_task(wire, task_id)["status"] == "cancelled"


def test_without_the_extension_the_call_is_answered_directly(proxy: Proxy, wire: HttpWire) -> None:
    # The tool is task-capable but optional: a request that does not declare the extension gets the
    # tool's result, not a task.
    args = {"duration": 0.3, "steps": 1}
    res = wire.request("tools/call", {"name": LONG_TOOL, "arguments": args}, caps=CAPS_WITHOUT_TASKS).result
    assert res.get("resultType") == "complete", res
    assert texts(res) == ["Long running operation completed. Duration: 0.3 seconds, Steps: 1."], res
