#!/usr/bin/env bash
# The one test command (README "Quick start", and what CI runs):
#   formatting, lints, every Rust test, the official MCP conformance suites, and the
#   TypeScript and Python SDK clients driving the fixture server over stdio and HTTP.
# Installs what it needs (Node 22 and the suites under .work/, npm packages and a Python venv
# under tests/interop/); nothing has to be installed by hand besides the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
command -v cargo >/dev/null || { echo "test: cargo is missing; install Rust with rustup (https://rustup.rs)" >&2; exit 2; }

step() { printf '\n== %s\n' "$*"; }
# `tasks watch` is tested in a real terminal (crates/cli/tests/cli.rs drives tmux).
if ! command -v tmux >/dev/null; then
  step "installing tmux (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq tmux || { apt-get update -qq && apt-get install -y -qq tmux; }
  else sudo apt-get install -y -qq tmux || { sudo apt-get update -qq && sudo apt-get install -y -qq tmux; }; fi
fi
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo build (fixture server, taskwire)"
cargo build --workspace --locked
step "official MCP conformance suites (direct, and through taskwire proxy)"
TASKWIRE_BIN=$PWD/target/debug/taskwire bash scripts/conformance.sh target/debug/taskwire-fixtures
step "TypeScript and Python SDK clients"
TASKWIRE_FIXTURES=$PWD/target/debug/taskwire-fixtures TASKWIRE_BIN=$PWD/target/debug/taskwire bash tests/interop/run.sh
step "cargo test"
cargo test --workspace --locked
