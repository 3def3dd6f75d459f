#!/usr/bin/env bash
# One command for the side-by-side benchmarks: installs and builds everything, runs the matrix,
# and rewrites BENCHMARKS.md.   usage: bench/run.sh [--reps N] [--seconds S] [--only a,b] [--skip http,stdio,ready,tasks,proxy,webhooks]
# Takes about 20 minutes with the defaults (3 repetitions of 5 s). Loopback only. Run it on a
# quiet machine: anything else running shows up in every figure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
say() { printf '\n== %s\n' "$*"; }

if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get update -qq && sudo apt-get install -y -qq wrk; fi
fi
command -v taskset >/dev/null || { echo "bench: taskset is missing (Debian package util-linux)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "bench: needs two CPUs (server on one, load generator on the other)" >&2; exit 2; }

say "building taskwire-fixtures and taskwire (release)"
(cd "$root" && cargo build --release --locked -p taskwire-fixtures -p taskwire -j2)
(cd "$root" && cargo build --release --locked -p taskwire-store-sqlite --example durable_creations -j2)
say "building the Rust peers (rmcp 3.9.0 server, bare axum, probes)"
(cd "$here/peers/rust" && cargo build --release -j2)
say "installing the TypeScript SDK peer"
(cd "$here/peers/ts" && npm ci --no-audit --no-fund --silent)
say "installing the FastMCP peer"
[ -x "$here/peers/py/.venv/bin/python" ] || python3 -m venv "$here/peers/py/.venv"
"$here/peers/py/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/peers/py/requirements.txt"
say "installing the asyncmcp peer (its own venv: asyncmcp 0.2.1 needs mcp<2)"
[ -x "$here/peers/asyncmcp/.venv/bin/python" ] || python3 -m venv "$here/peers/asyncmcp/.venv"
"$here/peers/asyncmcp/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/peers/asyncmcp/requirements.txt"

say "running (load average now: $(cut -d' ' -f1 /proc/loadavg))"
python3 "$here/drive.py" "$@"
