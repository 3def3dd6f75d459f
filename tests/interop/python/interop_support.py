"""Shared helpers for the Python interop tests (fixture binary, taskwire binary, server processes).

Used by conftest.py (the `http_server` fixture and the stray-process backstop) and the test modules.
Loopback only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FIXTURES = os.environ.get("TASKWIRE_FIXTURES") or str(REPO / "target" / "debug" / "taskwire-fixtures")
# The taskwire CLI itself (`taskwire proxy`, test_proxy_modern.py).
TASKWIRE = os.environ.get("TASKWIRE_BIN") or str(REPO / "target" / "debug" / "taskwire")

LISTEN_TIMEOUT_S = 10.0  # waiting for the HTTP server to print its address

_LISTENING = re.compile(r"taskwire-fixtures: listening on (http://127\.0\.0\.1:\d+/mcp)")
# `taskwire serve|proxy --http ...` prints "taskwire: ...; listening on http://127.0.0.1:PORT/mcp".
TASKWIRE_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/mcp)")


def fixture_children() -> list[int]:
    """PIDs of live taskwire-fixtures processes whose parent is this test process."""
    me = os.getpid()
    target = os.path.realpath(FIXTURES)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != me:
                continue
            if os.path.realpath(f"/proc/{entry}/exe") == target:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_pid(pid: int) -> None:
    """SIGKILL and reap one of our own children (by pid)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError, OSError):
        pass


@dataclass
class HttpServer:
    proc: subprocess.Popen[str]
    url: str
    stderr_lines: list[str] = field(default_factory=list)


class ServerStartError(RuntimeError):
    pass


@contextmanager
def http_server_process(extra_args: Sequence[str] = ()) -> Iterator[HttpServer]:
    """`taskwire-fixtures --http 127.0.0.1:0 [extra_args...]`; yields once it printed its address; always killed.

    `extra_args` (e.g. ``["--webhook-transport"]``) go after the listen address.
    """
    argv = [FIXTURES, "--http", "127.0.0.1:0", *extra_args]
    with listening_process(argv, _LISTENING, "fixture HTTP server") as server:
        yield server


@contextmanager
def listening_process(argv: list[str], pattern: re.Pattern[str], label: str) -> Iterator[HttpServer]:
    """Start `argv` (stderr drained); yield once stderr matched `pattern` (group 1 = URL); always killed."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    url_box: list[str] = []

    def drain() -> None:  # keep reading so the pipe never fills
        assert proc.stderr is not None
        for line in proc.stderr:
            if len(lines) < 10_000:
                lines.append(line)
            m = pattern.search(line)
            if m and not url_box:
                url_box.append(m.group(1))
                ready.set()
        ready.set()  # EOF: the server exited

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(LISTEN_TIMEOUT_S) or not url_box:
            raise ServerStartError(
                f"{label} did not come up (rc={proc.poll()}); stderr:\n{''.join(lines)}"
            )
        yield HttpServer(proc=proc, url=url_box[0], stderr_lines=lines)
    finally:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
