"""A server on a free port for a test block, and plugin files written the way editors do.

``serving(app)`` runs ``serve_http(app)`` (Streamable HTTP at /mcp, WebSocket at /ws, /admin)
in-process on port 0 and checks, on the way out, that nothing was logged at ERROR that the
test did not expect. ``write_plugin`` replaces a file atomically (temporary file, rename), so
a watcher never reads half of it.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from mcp_trio import Limits, Server
from mcp_trio.serving._supervisor import Supervisor
from mcp_trio.transports.http import serve_http
from tests.http_client import McpHttp, Response, request


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


@dataclass
class Served:
    port: int
    supervisor: Supervisor
    log: Collect = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def client(self) -> McpHttp:
        return McpHttp(self.port)

    async def admin(self, method: str, path: str, token: str | None = None) -> Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await request(self.port, method, path, headers=headers, body=b"" if method == "POST" else None)

    async def metrics(self) -> str:
        return (await request(self.port, "GET", "/metrics")).body.decode()


@asynccontextmanager
async def serving(app: Server, limits: Limits | None = None, *, expect_errors: bool = False, **options: Any) -> AsyncIterator[Served]:
    """``serve_http(app)`` on a free port for the block. Unless ``expect_errors``, nothing may
    be logged at ERROR meanwhile."""
    collect = Collect()
    logging.getLogger("mcp_trio").addHandler(collect)
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_http(app, limits, port=0, task_status=task_status, **options))
            assert app._supervisor is not None
            try:
                yield Served(port, app._supervisor, collect)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("mcp_trio").removeHandler(collect)
    if not expect_errors:
        errors = [f"{r.name}: {r.getMessage()}" for r in collect.errors()]
        assert not errors, errors


def write_plugin(directory: Path, name: str, source: str) -> Path:
    """Write ``directory/name.py`` atomically (a hidden temporary file renamed over it)."""
    path = directory / f"{name}.py"
    temporary = directory / f".{name}.py.tmp"
    temporary.write_text(textwrap.dedent(source), encoding="utf-8")
    os.replace(temporary, path)
    return path
