#!/usr/bin/env python3
"""A stub MCP server on stdio for the proxy's tests: every answer carries vendor fields MCP does
not define, so a test can check that the proxy passes them through. Tools:
  echo {text}      -> a result with vendor fields, after a vendor notification and progress
  crash {}         -> the process exits mid-call (the proxy must restart it)
  slow {seconds}   -> answers after a while unless notifications/cancelled arrives first
It records every notifications/cancelled it receives in the file named by $STUB_CANCEL_LOG.
"""
import json
import os
import sys
import threading
import time

lock = threading.Lock()
cancelled = set()


def send(msg):
    with lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


TOOLS = [
    {
        "name": "echo",
        "description": "Echo with vendor fields.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "annotations": {"readOnlyHint": True, "x-vendor-hint": "kept"},
        "x-vendor-tool": {"owner": "stub", "n": 1},
        "_meta": {"com.example/tool": True},
    },
    {"name": "crash", "description": "Exits mid-call.", "inputSchema": {"type": "object"}},
    {"name": "slow", "description": "Waits.", "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
]


def call_tool(msg):
    rid, params = msg["id"], msg.get("params", {})
    name = params.get("name")
    args = params.get("arguments") or {}
    token = (params.get("_meta") or {}).get("progressToken")
    if name == "echo":
        send({"jsonrpc": "2.0", "method": "notifications/x-vendor/trace", "params": {"step": "echo", "x-vendor-note": 7}})
        if token is not None:
            send({"jsonrpc": "2.0", "method": "notifications/progress",
                  "params": {"progressToken": token, "progress": 1, "total": 2, "message": "half way"}})
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "content": [{"type": "text", "text": args.get("text", ""), "x-vendor-item": "item-kept"}],
            "x-vendor-result": {"trace": "abc"},
            "_meta": {"com.example/cost": 3},
        }, "x-vendor-envelope": 1})
    elif name == "crash":
        os._exit(3)
    elif name == "slow":
        def later():
            deadline = time.time() + float(args.get("seconds", 1))
            while time.time() < deadline:
                if rid in cancelled:
                    return
                time.sleep(0.02)
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "slow done"}]}})
        threading.Thread(target=later, daemon=True).start()
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"Unknown tool: {name}", "x-vendor-error": True}})


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    method = msg.get("method")
    if "id" not in msg:
        if method == "notifications/cancelled":
            rid = msg["params"]["requestId"]
            cancelled.add(rid)
            path = os.environ.get("STUB_CANCEL_LOG")
            if path:
                with open(path, "a") as f:
                    f.write(json.dumps(msg["params"]) + "\n")
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}, "resources": {}, "x-vendor-capability": {}},
            "serverInfo": {"name": "vendor-stub", "version": "9.9.9"},
            "instructions": "stub instructions",
        }})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"tools": TOOLS, "x-vendor-list": "kept"}})
    elif method == "tools/call":
        call_tool(msg)
    elif method == "resources/list":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"resources": [
            {"uri": "stub://a", "name": "a", "x-vendor-resource": [1, 2]}]}})
    elif method == "resources/read":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"contents": [
            {"uri": msg["params"]["uri"], "text": "body", "x-vendor-content": {"deep": {"er": None}}}]}})
    elif method == "vendor/custom":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"echoed": msg.get("params"), "x-vendor": True}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": f"Method not found: {method}"}})
