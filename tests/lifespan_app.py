"""A server with a lifespan and per-session state, served by tests/test_lifespan.py over every
transport (``mcp-trio serve tests/lifespan_app.py:server`` for stdio and ``--workers``).

``LIFESPAN_APP_FAIL=start`` makes the lifespan fail as it starts, ``=stop`` as it stops.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import msgspec
import trio

from mcp_trio import Context, NoSessionError, Server

server = Server("lifespan-app")
#: How often this process entered and left the lifespan.
ENTERED: list[str] = []


class AppState(msgspec.Struct):
    pid: int
    greeting: str


@server.lifespan
async def lifespan(app: Server) -> AsyncIterator[AppState]:
    if os.environ.get("LIFESPAN_APP_FAIL") == "start":
        raise ConnectionRefusedError("no database at db.invalid:5432")
    ENTERED.append("start")
    async with trio.open_nursery() as nursery:  # a background task for the process's life
        nursery.start_soon(trio.sleep_forever)
        try:
            yield AppState(os.getpid(), f"hello from {app.name}")
        finally:
            await trio.sleep(0.01)  # an await in the clean-up, as a pool's close() has
            ENTERED.append("stop")
            nursery.cancel_scope.cancel()
            if os.environ.get("LIFESPAN_APP_FAIL") == "stop":
                raise RuntimeError("the pool would not close")


@server.tool
async def visit(ctx: Context[AppState]) -> dict:
    """What this process's lifespan holds, and how often this session has visited."""
    try:
        visits = ctx.session_state["visits"] = ctx.session_state.get("visits", 0) + 1
    except NoSessionError:
        visits = None
    return {"pid": os.getpid(), "lifespan_pid": ctx.lifespan.pid, "greeting": ctx.lifespan.greeting,
            "entered": ENTERED.count("start"), "visits": visits}
