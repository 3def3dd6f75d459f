"""Shared pytest fixtures for the Python interop tests (helpers live in interop_support.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from interop_support import FIXTURES, HttpServer, ServerStartError, fixture_children, http_server_process, kill_pid


@pytest.fixture(scope="session", autouse=True)
def _fixture_binary_exists() -> None:
    if not os.access(FIXTURES, os.X_OK):
        pytest.fail(f"fixture binary not found or not executable: {FIXTURES} (set TASKWIRE_FIXTURES)")


@pytest.fixture(autouse=True)
def _no_stray_servers() -> Iterator[None]:
    """Backstop: whatever fixture server a test leaves behind (e.g. a stdio child) is killed."""
    yield
    for pid in fixture_children():
        kill_pid(pid)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """`taskwire-fixtures --http 127.0.0.1:0`, killed at teardown."""
    try:
        cm = http_server_process()
        server = cm.__enter__()
    except ServerStartError as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)
