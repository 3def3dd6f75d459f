#!/usr/bin/env bash
# Instructions per HTTP `tools/call echo`, counted by callgrind: repeatable whatever else the
# machine is doing, which wall-clock figures on this kind of machine are not (NOTES.md,
# "Run-to-run variance"). Use it to decide whether a change to the request path helps.
#
#   bench/callgrind.sh [stateless|session|modern|stdio|proxy|tasks ...]     (default: the first four)
#
# Builds target/release/taskwire-fixtures, starts it under callgrind with counting on, warms it up,
# zeroes the counters, drives `wrk -c1` for 3 s, dumps, and divides the instructions by the calls.
# `stdio` runs the peers' `stdiobench` (one call at a time) twice, for 1,000 and 3,000 calls, and
# divides the difference by 2,000, so start-up and shutdown cancel out. `proxy` counts the gateway
# alone: `taskwire proxy --http` under callgrind in front of `taskwire-fixtures --stdio` (which runs
# uncounted), session mode, as the harness's gateway section measures it. `tasks` counts a zero-work
# task on the 2026-07-28 extension (`tools/call zero` becoming a task, its creation and completion
# in the in-memory store), as the harness's creation rounds drive it.
# BIN=path (and CLI=path for `proxy`) measures another build (an A/B against an older commit).
# Prints one line per mode: `mode instructions/call calls`. With KEEP=DIR, each mode's profile is
# kept as DIR/MODE.callgrind for `callgrind_annotate --inclusive=yes`. Needs valgrind and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(stateless session modern stdio)
for tool in valgrind callgrind_control wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench/callgrind.sh needs $tool (apt-get install valgrind wrk curl)" >&2; exit 2; }
done
bin=${BIN:-target/release/taskwire-fixtures}
[ -n "${BIN:-}" ] || cargo build -j2 --release -q -p taskwire-fixtures
cli=${CLI:-target/release/taskwire}
if [[ " ${modes[*]} " == *" proxy "* ]] && [ -z "${CLI:-}" ]; then cargo build -j2 --release -q -p taskwire; fi
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
port=8199
url=http://127.0.0.1:$port/mcp
stdio_total() {
  # stdiobench kills its child when done; a shell in between takes the kill, and the server,
  # its input closed, ends by itself and writes the profile. (A background job's stdin is
  # /dev/null before any redirection, so the pipe is kept on fd 3 and given back.)
  "$stdiobench" "$1" 1 -- sh -c 'exec 3<&0; valgrind --tool=callgrind --callgrind-out-file="$1" "$2" --stdio <&3 2>/dev/null & wait' \
    sh "$work/stdio.$1" "$bin" >/dev/null
  for _ in $(seq 300); do grep -qE '^(summary|totals):' "$work/stdio.$1" 2>/dev/null && break; sleep 0.1; done
  awk '/^(summary|totals):/{print $2; exit}' "$work/stdio.$1"
}
for mode in "${modes[@]}"; do
  if [ "$mode" = stdio ]; then
    stdiobench=bench/peers/rust/target/release/stdiobench
    [ -x "$stdiobench" ] || (cd bench/peers/rust && cargo build -j2 --release -q --bin stdiobench)
    few=$(stdio_total 1000) many=$(stdio_total 3000)
    echo "stdio $(((many - few) / 2000)) 2000"
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$work/stdio.3000" "$KEEP/stdio.callgrind"
    continue
  fi
  cmd=("$bin" --http 127.0.0.1:$port)
  case $mode in
    stateless | modern | tasks) cmd+=(--stateless) ;;
    proxy) cmd=("$cli" proxy --http 127.0.0.1:$port --store memory -- "$bin" --stdio) ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "${cmd[@]}" 2>"$work/valgrind.log" &
  server=$!
  for _ in $(seq 600); do curl -s -o /dev/null -m 1 "$url" && break; sleep 0.1; done
  sid="" version=2025-06-18 modern=0 tool=echo tasks=0
  case $mode in
    session | proxy)
      version=2025-11-25
      sid=$(curl -s -D - -o /dev/null "$url" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' \
        -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cg","version":"1"}}}' |
        tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')
      curl -s -o /dev/null "$url" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
        -H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $version" \
        -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
      ;;
    modern) modern=1 ;;
    tasks) modern=1 tool=zero tasks=1 ;;
    stateless) ;;
    *) echo "unknown mode $mode (stateless, session, modern, stdio, proxy or tasks)" >&2; exit 2 ;;
  esac
  export TOOL=$tool SID=$sid MODERN=$modern VERSION=$version TASKS=$tasks
  wrk -t1 -c1 -d1s -s bench/load/call.lua "$url" >/dev/null
  callgrind_control -z "$server" >/dev/null 2>&1
  calls=$(wrk -t1 -c1 -d3s -s bench/load/call.lua "$url" | awk -F'[ =]' '/^RESULT/{for(i=1;i<=NF;i++) if($i=="n") print $(i+1)}')
  callgrind_control -d "$server" >/dev/null 2>&1
  kill "$server"; wait "$server" 2>/dev/null || true
  total=$(cat "$work"/cg.*.[0-9]* 2>/dev/null | awk '/^summary:/{s+=$2} END{print s+0}')
  echo "$mode $((total / calls)) $calls"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cat "$work"/cg.*.[0-9]* >"$KEEP/$mode.callgrind"; fi
  rm -f "$work"/cg.*
done
