"""Streamable HTTP (MCP 2025-11-25 and 2026-07-28) and WebSocket on one port.

``serve_http`` runs a supervisor and the HTTP app (``_http_app.McpHttpApp``: ``/mcp``,
``/ws``, ``/healthz``, ``/metrics``, ``/admin``, RFC 9728 metadata, and with ``legacy_sse``
the 2024-11-05 ``/sse`` and ``/messages``) on one of two servers:

* the lean HTTP/1.1 engine (``transports/h1``, the default): it calls the app directly with
  each whole request (``McpHttpApp.handle``) and hands ``/ws`` upgrades over to the WebSocket
  transport's session code (``McpHttpApp.upgrade``);
* hypercorn's trio worker (``http2=True``): HTTP/2 (h2 over TLS by ALPN, h2c in cleartext)
  as well as HTTP/1.1, the same app behind ASGI (``h1.AsgiHost``).

``asgi_app(server)`` is the same app as an ASGI 3 application, to mount in an ASGI stack of
your own that runs on trio (hypercorn's trio worker): its lifespan starts the supervisor.

Limits (``Limits``): see ``_http_app``; the engine's own are ``max_head_size``,
``max_headers``, ``keep_alive_timeout``, ``max_http_connections`` (``H1Limits.from_limits``),
and hypercorn gets what it has of them (``hypercorn_config``).
"""

from __future__ import annotations

import logging
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._limiter import RateLimits
from .._limits import Limits
from .._server import Server
from ..auth import Authenticator
from ..serving._supervisor import Supervisor
from ._gate import TrustedProxies, is_loopback_name
from ._http_app import MCP_PATH, WS_PATH, McpHttpApp, metrics_access
from ._http_common import engine_error_body
from .admin_page import ServedSettings
from .h1 import AsgiHost, H1Limits, H1Server
from .h1._asgi import Receive, Scope, Send
from .h1._io import bind

if TYPE_CHECKING:
    from ..cluster import ClusterSettings

__all__ = ["McpAsgiApp", "McpHttpApp", "asgi_app", "hypercorn_config", "metrics_access", "serve_http"]

logger = logging.getLogger("mcp_trio.http")

#: Extra seconds the HTTP server gives open exchanges after our own grace period has run out.
_GRACE_MARGIN = 2.0


# ---------------------------------------------------------------------------------------------
# hypercorn (HTTP/2, and ASGI)
# ---------------------------------------------------------------------------------------------
def hypercorn_config(host: str, port: int, limits: Limits, *, certfile: str | None = None, keyfile: str | None = None,
                     reuse_port: bool = False) -> Any:
    """hypercorn settings derived from our limits (hypercorn is imported here: only
    ``http2=True`` needs it)."""
    from hypercorn.config import Config

    class _Config(Config):
        """hypercorn's settings, plus ``reuse_port`` (several processes serving one port).

        hypercorn sets ``SO_REUSEPORT`` on the sockets it creates only when it runs several
        workers itself; ``serve`` runs one and warns about ``workers``, so it is raised just
        while the sockets are made.
        """

        reuse_port = False

        def create_sockets(self) -> Any:
            if not self.reuse_port:
                return super().create_sockets()
            workers, self.workers = self.workers, 2
            try:
                return super().create_sockets()
            finally:
                self.workers = workers

    config = _Config()
    config.reuse_port = reuse_port
    config.bind = [f"[{host}]:{port}" if host.count(":") > 1 and not host.startswith("[") else f"{host}:{port}"]
    if certfile is not None:
        config.certfile = certfile
        config.keyfile = keyfile
    config.graceful_timeout = limits.grace_period + _GRACE_MARGIN
    config.keep_alive_timeout = limits.keep_alive_timeout
    config.h11_max_incomplete_size = limits.max_head_size
    config.websocket_max_message_size = limits.max_message_size
    config.websocket_ping_interval = limits.heartbeat_interval or None
    config.accesslog = None
    config.errorlog = logging.getLogger("mcp_trio.http.hypercorn")
    return config


def _asgi_host(app: McpHttpApp, limits: Limits, lifespan: Callable[[Receive, Send], Awaitable[None]] | None = None) -> AsgiHost:
    return AsgiHost(app.handle, max_body_size=limits.max_message_size, request_deadline=limits.request_deadline,
                    websocket=app.asgi_websocket, lifespan=lifespan, error_body=engine_error_body)


# ---------------------------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------------------------
async def serve_http(
    server: Server,
    limits: Limits | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allowed_origins: Iterable[str] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    json_response: bool = False,
    authenticator: Authenticator | None = None,
    handle_signals: bool = False,
    reuse_port: bool = False,
    rate_limits: RateLimits | None = None,
    metrics: str | None = None,
    http2: bool = False,
    legacy_sse: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    watch_signals: bool | None = None,
    trusted_proxies: Iterable[str] | None = None,
    proxy_headers: str = "x-forwarded",
    cluster: ClusterSettings | None = None,
) -> None:
    """Serve ``server`` over Streamable HTTP (``/mcp``) and WebSocket (``/ws``) on one port.

    Reports the bound port with ``task_status.started`` (``port=0`` picks a free one). Runs
    until ``supervisor.shutdown()`` (SIGINT/SIGTERM with ``handle_signals``, the same keyword as
    ``serve_websocket``'s; ``watch_signals`` is its old name, deprecated): it then stops
    accepting, lets in-flight requests finish within ``limits.grace_period`` (the rest are
    answered with an error), ends every session and returns.

    ``allowed_hosts``: Host values accepted (``name`` or ``name:port``; ``"*"`` for any);
    default: the loopback names when bound to loopback, else unchecked. ``allowed_origins``:
    Origin values accepted (``scheme://host[:port]``, ``"*"``); default: loopback origins when
    bound to loopback, else same-origin only. ``json_response``: answer every request with
    JSON; messages sent while serving it then go on the session's GET stream.
    ``authenticator``: every request to ``/mcp`` (and each WebSocket handshake) must carry a
    credential it accepts (401/403 with ``WWW-Authenticate`` otherwise); a session belongs to
    the caller that opened it. ``reuse_port``: bind with ``SO_REUSEPORT``, so that several
    processes (each with its own supervisor and sessions) share the port. ``metrics``: who
    may read ``/metrics`` (``metrics_access``: "public", "loopback", "scope:NAME"; default
    "scope:admin" with an ``authenticator``, else "public"). ``http2``: serve through
    hypercorn (HTTP/2 and HTTP/1.1) instead of the lean HTTP/1.1 engine. ``legacy_sse``:
    also serve the 2024-11-05 HTTP+SSE transport (``GET /sse``, ``POST /messages``).
    ``trusted_proxies``: addresses or networks (``10.0.0.0/8``) of the proxies in front,
    whose ``proxy_headers`` (``"x-forwarded"``: X-Forwarded-For/-Proto; ``"forwarded"``:
    RFC 7239) name the client: its address keys rate limits and quotas, decides ``/admin``'s
    loopback rule and is the session's peer. From any other peer those headers are ignored.
    ``cluster``: take part in a cluster on Redis: handshake-era sessions served by any
    process, shared rate limits, switches, plugin reloads and tasks (docs/cluster.md).
    """
    if watch_signals is not None:
        warnings.warn("serve_http(watch_signals=...) is now handle_signals=..., as for serve_websocket", DeprecationWarning,
                      stacklevel=2)
        handle_signals = handle_signals or watch_signals
    limits = limits or Limits()
    metrics = metrics_access(metrics, authenticator)  # a bad value stops the server here
    proxies = TrustedProxies(trusted_proxies, proxy_headers) if trusted_proxies else None
    if allowed_hosts is None and not is_loopback_name(host):
        logger.warning("serving on %s with no allowed_hosts: the Host header is not checked (DNS rebinding)", host)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(server, limits, rate_limits=rate_limits, cluster=cluster).run)
        if handle_signals:
            nursery.start_soon(supervisor.watch_signals)
        async with trio.open_nursery() as sessions:
            settings = ServedSettings(limits, rate_limits=rate_limits, authenticator=authenticator, bind_host=host,
                                      allowed_hosts=ServedSettings.listed(allowed_hosts),
                                      allowed_origins=ServedSettings.listed(allowed_origins), tls=certfile is not None,
                                      json_response=json_response, reuse_port=reuse_port,
                                      trusted_proxies=tuple(trusted_proxies or ()), proxy_headers=proxy_headers)
            app = McpHttpApp(supervisor, sessions, bind_host=host, allowed_hosts=settings.allowed_hosts,
                             allowed_origins=settings.allowed_origins, json_response=json_response, authenticator=authenticator,
                             metrics=metrics, settings=settings, legacy_sse=legacy_sse, trusted_proxies=proxies)
            background = trio.CancelScope()
            sessions.start_soon(_in_scope, background, app.run_background)
            if http2:
                from hypercorn.trio import serve as hypercorn_serve

                config = hypercorn_config(host, port, limits, certfile=certfile, keyfile=keyfile, reuse_port=reuse_port)
                serve = partial(hypercorn_serve, _asgi_host(app, limits), config, shutdown_trigger=supervisor.shutting_down.wait)
            else:
                serve = partial(_serve_h1, app, limits, host=host, port=port, certfile=certfile, keyfile=keyfile,
                                reuse_port=reuse_port, shutting_down=supervisor.shutting_down)
            binds: list[str] = await sessions.start(serve)
            bound_port = int(binds[0].rpartition(":")[2])
            for bind_url in binds:
                logger.info("serving MCP on %s%s (WebSocket %s%s)", bind_url, MCP_PATH.decode(), bind_url.replace("http", "ws", 1),
                            WS_PATH.decode())
            task_status.started(bound_port)
            await supervisor.shutting_down.wait()
            # The server stops accepting and gives open exchanges the grace period; every
            # session drains (shutdown() stopped their readers) and ends its responses.
            background.cancel()
            app.drain()
        supervisor.close()
        nursery.cancel_scope.cancel()


async def _serve_h1(app: McpHttpApp, limits: Limits, *, host: str, port: int, certfile: str | None, keyfile: str | None,
                    reuse_port: bool, shutting_down: trio.Event,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` on the h1 engine until ``shutting_down``, then drain; reports the bound
    addresses as ``scheme://host:port`` (as ``hypercorn.trio.serve`` does)."""
    ssl_context = None
    if certfile is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(certfile, keyfile)
        ssl_context.set_alpn_protocols(["http/1.1"])
    sockets = await bind(host, port, reuse_port=reuse_port)
    engine = H1Server(app.handle, H1Limits.from_limits(limits, grace_period=limits.grace_period + _GRACE_MARGIN),
                      on_upgrade=app.upgrade, error_body=engine_error_body, ssl_context=ssl_context)
    scheme = "https" if ssl_context is not None else "http"
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.serve, sockets)
        task_status.started([f"{scheme}://{f'[{h}]' if ':' in h else h}:{p}" for h, p in engine.addresses])
        await shutting_down.wait()
        engine.shutdown()


async def _in_scope(scope: trio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()


# ---------------------------------------------------------------------------------------------
# the app as ASGI, for an ASGI stack of one's own
# ---------------------------------------------------------------------------------------------
class McpAsgiApp:
    """An MCP server as an ASGI 3 application (``asgi_app``). It runs on trio (hypercorn's
    trio worker): the ASGI server's lifespan events start its supervisor (startup) and drain
    its sessions (shutdown), so a router in front of it must pass them on. Until startup,
    requests are answered 503."""

    def __init__(self, server: Server, limits: Limits | None, options: dict[str, Any], rate_limits: RateLimits | None,
                 cluster: ClusterSettings | None = None) -> None:
        self.server = server
        self._cluster = cluster
        self.limits = limits or Limits()
        self._options = options
        self._rate_limits = rate_limits
        #: The running app (None before startup and after shutdown).
        self.app: McpHttpApp | None = None
        self._host: AsgiHost | None = None
        self._not_started = AsgiHost(self._unavailable, max_body_size=self.limits.max_message_size,
                                     request_deadline=self.limits.request_deadline, lifespan=self._lifespan,
                                     error_body=engine_error_body)

    @property
    def supervisor(self) -> Supervisor | None:
        return self.app.supervisor if self.app is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = self._host
        if host is None or scope["type"] == "lifespan":
            await self._not_started(scope, receive, send)
        else:
            await host(scope, receive, send)

    async def _unavailable(self, request: Any, responder: Any) -> None:
        await responder.respond(503, [(b"content-type", b"application/json"), (b"retry-after", b"1")],
                                engine_error_body(503, "server not started: the ASGI server must send this app its "
                                                       "lifespan events (a router in front must pass them on)")[1])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        limits = self.limits
        started = False
        try:
            async with trio.open_nursery() as nursery:
                supervisor: Supervisor = await nursery.start(Supervisor(self.server, limits, rate_limits=self._rate_limits,
                                                                          cluster=self._cluster).run)
                async with trio.open_nursery() as sessions:
                    app = McpHttpApp(supervisor, sessions, **self._options)
                    background = trio.CancelScope()
                    sessions.start_soon(_in_scope, background, app.run_background)
                    self.app, self._host = app, _asgi_host(app, limits)
                    started = True
                    await send({"type": "lifespan.startup.complete"})
                    while (await receive())["type"] != "lifespan.shutdown":
                        pass
                    supervisor.shutdown()
                    background.cancel()
                    app.drain()
                    sessions.cancel_scope.deadline = trio.current_time() + limits.grace_period + _GRACE_MARGIN
                supervisor.close()
                nursery.cancel_scope.cancel()
        except Exception as exc:
            if started:
                raise
            logger.error("the MCP server did not start", exc_info=exc)
            await send({"type": "lifespan.startup.failed", "message": f"the MCP server did not start: {exc}"})
            return
        finally:
            self.app = self._host = None
        await send({"type": "lifespan.shutdown.complete"})


def asgi_app(
    server: Server,
    limits: Limits | None = None,
    *,
    bind_host: str = "127.0.0.1",
    allowed_origins: Iterable[str] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    json_response: bool = False,
    authenticator: Authenticator | None = None,
    rate_limits: RateLimits | None = None,
    metrics: str | None = None,
    legacy_sse: bool = False,
    trusted_proxies: Iterable[str] | None = None,
    proxy_headers: str = "x-forwarded",
    cluster: ClusterSettings | None = None,
) -> McpAsgiApp:
    """``server`` as an ASGI 3 application: the routes of ``serve_http`` (``/mcp``, ``/ws``,
    ``/healthz``, ``/metrics``, ``/admin``...) to mount in an ASGI stack of your own, run by
    hypercorn's trio worker (``hypercorn --worker-class trio``). The ASGI server's lifespan
    events start and stop it: a router in front must pass them on. Routes match the path
    after the router's ``root_path``. ``bind_host``: the address the ASGI server listens on,
    for the default Host and Origin policy (pass ``allowed_hosts`` when it is not loopback).
    The other keywords are ``serve_http``'s (``cluster``: its processes, hosts and
    workers serve as one service on Redis, docs/cluster.md)."""
    metrics = metrics_access(metrics, authenticator)
    proxies = TrustedProxies(trusted_proxies, proxy_headers) if trusted_proxies else None
    options = dict(bind_host=bind_host, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins, json_response=json_response,
                   authenticator=authenticator, metrics=metrics, legacy_sse=legacy_sse, trusted_proxies=proxies)
    return McpAsgiApp(server, limits, options, rate_limits, cluster)
