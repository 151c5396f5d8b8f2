"""``notifications/roots/list_changed`` delivered to the server's hooks (``@server.on_roots_changed``).

A handshake-era client that declared ``roots: {listChanged: true}`` tells the server when the
folders it shares change. Each hook is called with a ``Context`` of that notification, so it can
ask again (``await ctx.list_roots()``), log to the client, or read ``ctx.lifespan`` and
``ctx.session_state`` (to remember the new roots for the session's tools).

Per session, at most one run of the hooks is under way and one more is owed: notifications
that arrive while the hooks run are coalesced into one more run after it (a client that sends
a thousand costs two runs, not a thousand tasks). A hook's failure is logged and the session
goes on; hooks still waiting when the session stops reading (its client left, the server is
shutting down) are cancelled, since nobody is left to answer their ``roots/list``.

The stateless revision (2026-07-28) has no such notification: a request that needs the roots
asks for them in its own input round.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .._containment import call_user, is_failure
from ._context import Context
from ._peer import Peer
from ._request import InFlight

logger = logging.getLogger("mcp_trio.roots")

METHOD = "notifications/roots/list_changed"


class RootsWatch:
    """One session's runs of the roots hooks: one at a time, later changes coalesced."""

    __slots__ = ("_peer", "_running", "_owed")

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._running = False
        self._owed = False

    def changed(self, nursery: trio.Nursery, params: Any) -> None:
        """The client said its roots changed: run the hooks now, or once more after this run."""
        if not self._peer.server.roots_changed_hooks:
            logger.debug("client roots changed; the server has no on_roots_changed hook")
            return
        if self._running:
            self._owed = True
            return
        self._running = True
        nursery.start_soon(self._run, params)

    async def _run(self, params: Any) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_done, self._peer.input_done, nursery.cancel_scope)
                while True:
                    self._owed = False
                    await self._call_hooks(params)
                    if not self._owed:
                        break
                nursery.cancel_scope.cancel()
        finally:
            self._running = False

    async def _call_hooks(self, params: Any) -> None:
        peer = self._peer
        for hook in peer.server.roots_changed_hooks:
            ctx = Context(peer, InFlight(None, METHOD, params), client=peer.state.client)  # type: ignore[arg-type]
            try:
                await call_user(hook.fn, hook.is_async, {hook.parameter: ctx})
            except BaseException as exc:
                if not is_failure(exc):
                    raise
                logger.warning("on_roots_changed hook %s failed: %s", hook.name, exc or type(exc).__name__,
                               exc_info=logger.isEnabledFor(logging.DEBUG))


async def _cancel_when_done(done: trio.Event | None, scope: trio.CancelScope) -> None:
    if done is None:
        await trio.sleep_forever()
    await done.wait()  # type: ignore[union-attr]
    scope.cancel()
