#!/usr/bin/env bash
# Interop tests: real MCP clients against the taskwire fixture server, over stdio and Streamable HTTP.
#   - TypeScript SDK @modelcontextprotocol/sdk 1.32.2 (node:test)   -> ts/clients.test.mjs
#       + 2025-11-25 tasks through its experimental task client       -> ts/tasks.test.mjs
#   - mcpdo (@modelcontextprotocol/inspector 2.12.0): tools/call --task,
#       legacy + modern era, HTTP + stdio, wire-tapped                -> ts/mcpdo.test.mjs
#   - Python mcp 2.3.0, auto and legacy modes (pytest)              -> python/test_clients.py
#       + 2026-07-28 tasks extension over raw JSON-RPC (HTTP, stdio)  -> python/test_tasks_modern.py
#   - the taskwire CLI itself (TASKWIRE_BIN):
#       `taskwire serve --config examples/devtools.toml`, HTTP + stdio, TS SDK tasks client:
#         progress statuses, cancel and timeout leave no process behind -> ts/cli.test.mjs
#       `taskwire proxy` in front of @modelcontextprotocol/server-everything (stdio, wire-tapped):
#         progress -> statusMessage, tasks/cancel -> notifications/cancelled upstream
#         TS SDK on 2025-11-25                                          -> ts/cli.test.mjs
#         raw 2026-07-28 requests (Python)                              -> python/test_proxy_modern.py
#   - asyncmcp 0.2.1 clients (Python, own venv asyncmcp/.venv: asyncmcp needs mcp<2) against
#       `taskwire-fixtures --http 127.0.0.1:0 --webhook-transport`:
#         webhook transport (/mcp/request) + stock ClientSession, progress by webhook
#         StreamableHTTP+webhook (/mcp): slow_report 202 + result by webhook -> asyncmcp/test_webhook_asyncmcp.py
#
# Usage: TASKWIRE_FIXTURES=/path/to/taskwire-fixtures TASKWIRE_BIN=/path/to/taskwire bash tests/interop/run.sh
# (default binaries: <repo>/target/debug/taskwire-fixtures and <repo>/target/debug/taskwire; this
# script does not build them).
# Needs node >= 20 / npm and python3 (with venv). Talks to 127.0.0.1 only.
# Exit status: 0 when all suites pass, non-zero otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export TASKWIRE_FIXTURES="${TASKWIRE_FIXTURES:-$REPO/target/debug/taskwire-fixtures}"
export TASKWIRE_BIN="${TASKWIRE_BIN:-$REPO/target/debug/taskwire}"

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

[[ -x "$TASKWIRE_FIXTURES" ]] || die "fixture binary not found or not executable: $TASKWIRE_FIXTURES (build it, or set TASKWIRE_FIXTURES)"
[[ -x "$TASKWIRE_BIN" ]] || die "taskwire binary not found or not executable: $TASKWIRE_BIN (build it, or set TASKWIRE_BIN)"
command -v node >/dev/null || die "node not found on PATH"
command -v npm >/dev/null || die "npm not found on PATH"
command -v python3 >/dev/null || die "python3 not found on PATH"

say "fixture server: $TASKWIRE_FIXTURES"
say "taskwire: $TASKWIRE_BIN"
say "node $(node --version), npm $(npm --version), $(python3 --version)"

cd "$HERE"

say "npm ci (TypeScript SDK, inspector, server-everything; pinned by package-lock.json)"
timeout 600 npm ci --no-audit --no-fund || die "npm ci failed"

VENV="$HERE/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating Python venv at $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
say "pip install -r requirements.txt"
timeout 600 "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt \
  || die "pip install failed"

AM_DIR="$HERE/asyncmcp"
AM_VENV="$AM_DIR/.venv"
if [[ ! -x "$AM_VENV/bin/python" ]]; then
  say "creating Python venv for the asyncmcp tests at $AM_VENV (asyncmcp 0.2.1 needs mcp<2)"
  python3 -m venv "$AM_VENV" || die "python3 -m venv failed for $AM_VENV (on Debian: apt-get install python3-venv)"
fi
say "pip install -r asyncmcp/requirements.txt"
timeout 600 "$AM_VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$AM_DIR/requirements.txt" \
  || die "pip install failed (asyncmcp/requirements.txt)"

ts_rc=0
py_rc=0
am_rc=0

say "TypeScript SDK client tests: node --test ts/"
timeout 300 node --test --test-timeout=60000 ts/ || ts_rc=$?

say "Python mcp client tests: pytest -q"
timeout 300 "$VENV/bin/python" -m pytest -q || py_rc=$?

say "asyncmcp client tests (webhook, StreamableHTTP+webhook): pytest -q in asyncmcp/"
(cd "$AM_DIR" && timeout 180 "$AM_VENV/bin/python" -m pytest -q) || am_rc=$?

echo
if [[ $ts_rc -eq 0 ]]; then echo "TypeScript interop: PASS"; else echo "TypeScript interop: FAIL (exit $ts_rc)"; fi
if [[ $py_rc -eq 0 ]]; then echo "Python interop:     PASS"; else echo "Python interop:     FAIL (exit $py_rc)"; fi
if [[ $am_rc -eq 0 ]]; then echo "asyncmcp interop:   PASS"; else echo "asyncmcp interop:   FAIL (exit $am_rc)"; fi
if [[ $ts_rc -ne 0 || $py_rc -ne 0 || $am_rc -ne 0 ]]; then
  exit 1
fi
