"""``mcp-trio``: the command line. Builds the objects in ``main`` and passes them down.

``serve`` imports only the transport it serves, so a stdio child pays for neither WebSocket
nor HTTP at start-up; ``bench`` and ``token`` import their modules when run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import traceback
from functools import partial
from typing import Any

from . import _limits
from ._app import AppLoadError, load_app
from ._startup import (
    RUNTIME,
    StartupError,
    bind_failure,
    lifespan_failure,
    log_level_of,
    redis_failure,
    tls_context,
    unexpected,
    warn_if_open,
)
from ._usage import UsageParser, parse_size, size_text

__all__ = ["AppLoadError", "build_parser", "load_app", "main"]

logger = logging.getLogger("mcp_trio.cli")

DEMO_APP = "mcp_trio.demo:server"
TRANSPORTS = {"stdio": "stdio", "ws": "websocket", "websocket": "websocket", "http": "http"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


# Limit flags: (flag, Limits field, type, metavar, help). All default to None so that a flag
# not given lets the environment and the config file speak (flags > env > file > defaults).
_LIMIT_FLAGS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--max-message-size", "max_message_size", parse_size, "BYTES", "largest message accepted: 4MiB, 512KiB, 65536"),
    ("--max-in-flight", "max_in_flight", _positive_int, "N", "requests running at once per connection"),
    ("--grace-period", "grace_period", _non_negative_float, "SECONDS", "time in-flight requests get at shutdown"),
    ("--page-size", "page_size", _positive_int, "N", "items per page of list results"),
    ("--send-timeout", "send_timeout", _non_negative_float, "SECONDS", "a write to a peer that stopped reading"),
    ("--client-request-timeout", "client_request_timeout", _non_negative_float, "SECONDS",
     "wait for sampling/elicitation/roots answers"),
    ("--tool-timeout", "tool_timeout", _non_negative_float, "SECONDS",
     "a tool call's time when the tool sets no timeout= of its own (0: none)"),
    ("--max-abandoned-threads", "max_abandoned_threads", _positive_int, "N",
     "threads of sync tools given up (timed out) and still running, server-wide, before sync tools are refused"),
    ("--max-abandoned-threads-per-tool", "max_abandoned_threads_per_tool", _positive_int, "N",
     "the same per tool, before that tool is refused"),
    ("--max-connections", "max_connections", _positive_int, "N", "WebSocket connections per process"),
    ("--handshake-timeout", "handshake_timeout", _non_negative_float, "SECONDS", "WebSocket opening handshake"),
    ("--idle-timeout", "idle_timeout", _non_negative_float, "SECONDS", "close a connection or session idle this long"),
    ("--heartbeat-interval", "heartbeat_interval", _non_negative_float, "SECONDS", "WebSocket ping interval"),
    ("--max-sessions", "max_sessions", _positive_int, "N", "Streamable HTTP sessions per process"),
    ("--request-deadline", "request_deadline", _non_negative_float, "SECONDS", "an HTTP request must arrive whole within"),
    ("--keep-alive-timeout", "keep_alive_timeout", _non_negative_float, "SECONDS",
     "close an HTTP connection idle this long between requests"),
    ("--max-head-size", "max_head_size", parse_size, "BYTES", "largest HTTP request head (request line and headers)"),
    ("--max-headers", "max_headers", _positive_int, "N", "header lines one HTTP request may carry"),
    ("--max-http-connections", "max_http_connections", _positive_int, "N", "TCP connections to the HTTP port"),
    ("--max-sessions-per-principal", "max_sessions_per_principal", _positive_int, "N",
     "sessions (HTTP and WebSocket) one caller may hold open"),
    ("--max-tasks-per-principal", "max_tasks_per_principal", _positive_int, "N", "tasks one caller may hold"),
    ("--max-listens-per-principal", "max_listens_per_principal", _positive_int, "N",
     "subscriptions/listen streams one caller may hold open"),
    ("--max-subscriptions-per-principal", "max_subscriptions_per_principal", _positive_int, "N",
     "resource subscriptions one caller may hold"),
    ("--max-subscriptions-per-session", "max_subscriptions_per_session", _positive_int, "N",
     "resource subscriptions one session may hold"),
    ("--max-uri-length", "max_uri_length", _positive_int, "CHARS", "longest resource URI subscribed to"),
    ("--lifespan-timeout", "lifespan_timeout", _non_negative_float, "SECONDS",
     "the server's lifespan may take this long to start, and again to stop"),
    ("--max-batch-size", "max_batch_size", _positive_int, "N", "messages in one JSON-RPC batch (revision 2025-03-26)"),
)


def _default_text(metavar: str, default: float) -> str:
    """A default as people read it in ``--help``: ``4 MiB``, ``10 s``, ``10,000``."""
    if metavar == "BYTES":
        return size_text(default)
    if metavar == "SECONDS":
        return f"{default:g} s"
    return f"{default:,}"


#: The subcommands, in the order ``--help`` lists them.
COMMANDS = ("serve", "token", "admin", "dev", "install", "bench")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only ``command``'s subcommand: ``mcp-trio serve`` (a stdio
    child a host spawns, waiting on its first answer) does not import what the others need."""
    from ._config import add_config_arguments

    def wanted(name: str) -> bool:
        return command is None or command == name

    parser = UsageParser(prog="mcp-trio", description="Serve MCP tools, resources and prompts on trio.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve an app (the built-in demo app by default)",
        description="Serve an mcp_trio.Server over stdio, WebSocket or Streamable HTTP. With no APP, "
                    "serves the built-in demo app. Settings come from flags, then MCP_TRIO_* variables, "
                    "then --config FILE, then defaults.")
    serve.add_argument("app", nargs="?", default=DEMO_APP, metavar="APP",
                       help=f"MODULE:ATTR or path/to/file.py:ATTR naming a Server, or a function with no arguments "
                            f"returning one (default: {DEMO_APP})")
    serve.add_argument("--app-dir", default=None, metavar="DIR",
                       help="look for APP's module in DIR first (default: the current directory)")
    serve.add_argument("--transport", choices=sorted(TRANSPORTS), default=None,
                       help="stdio (default), ws (WebSocket), or http (Streamable HTTP at /mcp, WebSocket at /ws, "
                            "/healthz, /metrics on one port)")
    add_config_arguments(serve)
    serve.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                       help="ws/http: serve from N processes on one port (SO_REUSEPORT); alone each has its own "
                            "supervisor, registry, limits and sessions; with --redis they serve as one (default: 1)")
    serve.add_argument("--redis", default=None, metavar="URL",
                       help="ws/http: cluster mode: share sessions, rate limits, switches, plugin reloads and tasks "
                            "with every process using this Redis (redis://, rediss://, redis+sentinel://, "
                            "redis+cluster://; docs/cluster.md)")
    # Given to the processes --workers starts: bind with SO_REUSEPORT. Not for people.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--certfile", default=None, help="ws/http: serve wss:// / https:// with this certificate (PEM)")
    serve.add_argument("--keyfile", default=None, help="ws/http: the certificate's private key (PEM)")
    serve.add_argument("--json-response", action="store_true",
                       help="http: answer every request with JSON, never an SSE stream")
    serve.add_argument("--metrics", default=None, metavar="ACCESS",
                       help="http: who may read /metrics: public, loopback or scope:NAME "
                            "(default: scope:admin with authentication configured, else public)")
    serve.add_argument("--stdio-io", choices=["auto", "threads", "fd"], default=None,
                       help="stdio: wait on the pipes (fd), or read and write them in threads (as on Windows); "
                            "auto: threads on Windows, fd elsewhere (default)")
    serve.add_argument("--http2", action="store_true", default=None,
                       help="http: serve through hypercorn, HTTP/2 (h2 over TLS, h2c) as well as HTTP/1.1, instead of "
                            "the lean HTTP/1.1 engine")
    serve.add_argument("--legacy-sse", action="store_true", default=None,
                       help="http: also serve the 2024-11-05 HTTP+SSE transport (GET /sse, POST /messages) for "
                            "clients that still use it")
    serve.add_argument("--plugins", action="append", default=None, metavar="DIR",
                       help="load tools, resources and prompts from the plugin files in DIR, and reload them "
                            "when they change (repeatable)")
    serve.add_argument("--plugin-packages", action="store_true", default=None,
                       help="also load the plugins installed packages declare (entry points: mcp_trio.plugins)")
    serve.add_argument("--no-watch", dest="watch_plugins", action="store_false", default=None,
                       help="load plugins once; do not reload them when their files change")
    serve.add_argument("--mount", action="append", default=None, metavar="PREFIX=TARGET",
                       help="serve a remote MCP server's tools, resources and prompts under PREFIX (the gateway): "
                            "TARGET is https://host/mcp, ws://host/ws or stdio:COMMAND ARGS (repeatable; "
                            "[[mount]] in the config file adds credentials and limits)")
    serve.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error", "critical"],
                       help="log level on stderr (default: warning)")
    serve.add_argument("--log-format", default=None, choices=["text", "json"], help="log line format (default: text)")
    serve.add_argument("--tracing", action="store_true", default=None,
                       help="OpenTelemetry spans for every request, exported over OTLP ([tracing] in the config file "
                            "for the rest; needs pip install 'mcp-trio[otel]')")
    limits = serve.add_argument_group("limits")
    for flag, field, kind, metavar, text in _LIMIT_FLAGS:
        default = getattr(_limits.Limits(), field)
        limits.add_argument(flag, dest=field, type=kind, default=None, metavar=metavar,
                            help=f"{text} (default: {_default_text(metavar, default)})")

    if wanted("token"):
        _add_token(commands)
    if wanted("admin"):
        _add_admin(commands)
    if wanted("dev"):
        _add_dev(commands)
    if wanted("install"):
        _add_install(commands)
    if wanted("bench"):
        _add_bench(commands)
    return parser


def _add_token(commands: Any) -> None:
    token = commands.add_parser("token", help="mint a development token or API key for a secured server",
                                description="Print a development JWT (or a new API key) for the server configured "
                                            "by --config.")
    from ._token import add_token_arguments

    add_token_arguments(token)


def _add_admin(commands: Any) -> None:
    admin = commands.add_parser("admin", help="switch tools on/off, reload plugins, read statistics of a running server",
                                description="Call the /admin surface of a server served over HTTP "
                                            "(needs the admin scope when it authenticates callers).")
    from ._admin_cli import add_admin_arguments

    add_admin_arguments(admin)



def _add_dev(commands: Any) -> None:
    dev = commands.add_parser("dev", help="serve an app over HTTP while you work on it: reload on change, the MCP Inspector",
                              description="Serve APP over Streamable HTTP (as serve --transport http), execute APP's file "
                                          "again whenever it changes (its tools, resources and prompts are swapped in; "
                                          "sessions stay open), and print the MCP Inspector command that connects to it.")
    dev.add_argument("app", metavar="APP", help="MODULE:ATTR or path/to/file.py:ATTR naming a Server, as for serve")
    dev.add_argument("--inspector", action="store_true", help="also start the MCP Inspector (needs npx, from Node.js)")
    dev.add_argument("--no-reload", action="store_true", help="do not reload APP when its file changes")
    dev.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                     help="any option of serve but --transport, --workers and --stdio-io (--port, --plugins, --config, ...)")


def _add_install(commands: Any) -> None:
    install = commands.add_parser("install", help="register a server with Claude Desktop, Claude Code, Cursor or VS Code",
                                  description="Add (or update) a server in an MCP host's configuration file: a local "
                                              "server this Python starts over stdio, or a remote one at --url.")
    from ._install import add_install_arguments

    add_install_arguments(install)


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser("bench", help="load-test an MCP server (ours or anyone's)",
                                description="Measure an MCP server's throughput, latency and memory under load.")
    from .bench.cli import add_bench_arguments

    add_bench_arguments(bench)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    # The subcommand comes first (``mcp-trio serve ...``): build only its parser.
    args = build_parser(given[0] if given and given[0] in COMMANDS else None).parse_args(argv)
    if args.command == "token":
        from ._token import run_token

        return run_token(args)
    if args.command == "install":
        from ._install import run_install

        return run_install(args)
    if args.command == "bench":
        from .bench.cli import run_bench

        return run_bench(args)
    if args.command == "admin":
        from ._admin_cli import run_admin

        return run_admin(args)
    if args.command == "dev":
        return _dev(args)
    return _serve(args, argv)


def _dev(args: argparse.Namespace) -> int:
    """``mcp-trio dev``: ``serve --transport http`` with APP reloaded on change and the
    Inspector's command printed (or run, ``--inspector``); see ``mcp_trio._dev``."""
    from . import _dev as dev

    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--inspector", action="store_true")
    flags.add_argument("--no-reload", action="store_true")
    own, rest = flags.parse_known_args(args.options)
    for refused in ("--transport", "--workers", "--stdio-io"):
        if any(option == refused or option.startswith(refused + "=") for option in rest):
            print(f"mcp-trio: dev serves one process over HTTP: {refused} is for serve", file=sys.stderr, flush=True)
            return 2
    inspector = args.inspector or own.inspector
    if inspector:
        problem = dev.missing_npx()
        if problem is not None:
            print(f"mcp-trio: {problem}", file=sys.stderr, flush=True)
            return 2
    serve_args = build_parser().parse_args(["serve", args.app, *rest, "--transport", "http"])

    reload = not (args.no_reload or own.no_reload)

    async def develop(app: Any, url: str) -> None:
        import trio

        url = dev.loopback_url(url)
        print(f"  MCP Inspector          {dev.inspector_line(url)}", file=sys.stderr, flush=True)
        async with trio.open_nursery() as nursery:
            if reload:
                try:
                    reloader = dev.AppReloader(app, args.app, serve_args.app_dir)
                except ValueError as exc:
                    print(f"mcp-trio: {exc}", file=sys.stderr, flush=True)
                else:
                    await nursery.start(reloader.run)
            if inspector:
                nursery.start_soon(dev.run_inspector, url)

    hooks = [develop]
    return _serve(serve_args, None, after_start=hooks)


def _serve(args: argparse.Namespace, argv: list[str] | None, *, after_start: Any = ()) -> int:
    """Serve, or say in one line why not (the traceback too with ``--log-level debug``)."""
    run = _Run(args, argv)
    run.after_start = list(after_start)
    try:
        return run.serve()
    except StartupError as exc:
        if run.debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        print(f"mcp-trio: {exc}", file=sys.stderr, flush=True)
        return exc.status


class _Run:
    """One ``mcp-trio serve``: the checks that fail closed at start, then the transport."""

    def __init__(self, args: argparse.Namespace, argv: list[str] | None) -> None:
        self.args = args
        self.argv = argv
        self.debug = log_level_of(args.log_level) == "debug"
        #: Set once the transport reports it is serving: failures after it are not start-up's.
        self.started = False
        #: ``async fn(app, mcp_url)`` run beside the HTTP server once it serves (``mcp-trio dev``).
        self.after_start: list[Any] = []
        #: The OpenTelemetry provider ``[tracing]`` made, flushed at exit; None: no tracing.
        self.provider: Any = None

    def serve(self) -> int:
        from ._config import ConfigError, load_config, overrides_from_args, with_mount_flags
        from ._logging import configure_logging

        args = self.args
        if args.transport is not None:
            args.transport = TRANSPORTS[args.transport]
        try:
            config = with_mount_flags(load_config(args.config, os.environ, overrides_from_args(args)), args.mount)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        self.debug = config.server.log_level == "debug"
        configure_logging(config.server.log_level, config.server.log_format)
        transport = config.server.transport
        if config.cluster.redis_url:
            # The Redis client's own INFO lines carry tracebacks: ours say what happened, once.
            logging.getLogger("coredis").setLevel(logging.DEBUG if self.debug else logging.WARNING)
            if not config.request_state.configured and args.workers == 1 and not args.reuse_port:
                logger.warning("cluster mode with a requestState key of this process only: a 2026-07-28 retry that "
                               "reaches another host is refused; set [request_state] secret (or "
                               "MCP_TRIO_REQUEST_STATE_SECRET) to the same value on every host")
        if transport == "stdio":
            for flag, value in (("--certfile", args.certfile), ("--keyfile", args.keyfile), ("--workers", args.workers > 1),
                                ("--redis (cluster.redis_url)", bool(config.cluster.redis_url))):
                if value:
                    raise StartupError(f"{flag} needs a network transport: pass --transport http or ws")
            if not config.auth.trust_stdio:
                raise StartupError("auth.trust_stdio = false, but stdio carries no credentials: serve with "
                                   "--transport http or ws, or remove trust_stdio")
            tls = authenticator = None
        else:
            tls = tls_context(args.certfile, args.keyfile)
            try:
                authenticator = config.authenticator()  # key files are read now: a bad one stops us here
            except ConfigError as exc:
                raise StartupError(str(exc)) from exc
            if not args.reuse_port:  # a --workers child: its parent warned once for all
                warn_if_open(config.server.host, authenticator is not None)
        if args.workers > 1:
            if not config.request_state.configured:
                # One requestState key for all workers: a 2026-07-28 retry may reach any of them.
                import secrets

                os.environ["MCP_TRIO_REQUEST_STATE_SECRET"] = secrets.token_urlsafe(32)
            return _run_workers(args.workers, sys.argv[1:] if self.argv is None else self.argv)
        try:
            app = load_app(args.app, args.app_dir)
        except AppLoadError as exc:
            raise StartupError(str(exc)) from exc.__cause__
        try:
            if (config.request_state.configured or config.request_state.ttl != app.request_state.ttl
                    or config.request_state.max_spent != app.request_state.max_spent):
                app.request_state = config.request_state_codec()  # else the app's own (default: random)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        if config.tracing.enabled:
            app.tracing = self._tracing(app, config.tracing)
        for mount in config.mount:
            try:
                app.mount(mount.remote(os.environ), prefix=mount.prefix, scopes=mount.scopes, tags=mount.tags)
            except (ConfigError, ValueError) as exc:
                raise StartupError(f"[[mount]] {mount.prefix!r}: {exc}") from exc
        plugins = config.plugins
        if plugins.directories or plugins.entry_points:
            try:
                app.use_plugins(*plugins.directories, entry_points=plugins.entry_points, watch=plugins.watch)
            except FileNotFoundError as exc:
                raise StartupError(f"{exc}: create it, or fix --plugins / [plugins] directories") from exc
            except (OSError, RuntimeError) as exc:
                raise StartupError(str(exc)) from exc
        return self._run(app, config, tls, authenticator)

    def _tracing(self, app: Any, settings: Any) -> Any:
        """The app's ``Tracing`` from ``[tracing]``, or a one-line reason it cannot be had."""
        from ._tracing import Tracing, TracingUnavailable, tracing_provider

        service = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or app.name
        try:
            self.provider = tracing_provider(service, settings.exporter, settings.endpoint)
        except TracingUnavailable as exc:
            raise StartupError(f"{exc}, or turn tracing off ([tracing] enabled, --tracing)") from exc
        return Tracing(self.provider)

    def _run(self, app: Any, config: Any, tls: Any, authenticator: Any) -> int:
        try:
            return self._serve_transport(app, config, tls, authenticator)
        finally:
            if self.provider is not None:
                self.provider.shutdown()  # the spans still batched are exported now

    def _serve_transport(self, app: Any, config: Any, tls: Any, authenticator: Any) -> int:
        import trio

        server = config.server
        try:
            if server.transport == "stdio":
                from .transports.stdio import serve_stdio

                self.started = True
                trio.run(partial(serve_stdio, app, config.to_limits(), rate_limits=config.rate_limits(),
                                 io=config.server.stdio_io))
            elif server.transport == "websocket":
                trio.run(self._serve_websocket, app, config, tls, authenticator)
            else:
                trio.run(self._serve_http, app, config, authenticator)
        except KeyboardInterrupt:
            return 130
        except StartupError:
            raise
        except Exception as exc:  # the edge of the process: say what stopped it, in one line
            failure = lifespan_failure(exc) or bind_failure(exc, server.host, server.port) or redis_failure(exc)
            if failure is not None:
                raise failure from exc
            if not self.started:
                raise StartupError(unexpected(exc), RUNTIME) from exc
            logger.critical("the server stopped on an unexpected error", exc_info=exc)
            return RUNTIME
        return 0

    async def _prime_provider(self, config: Any, authenticator: Any) -> None:
        """JWT keys that come from an identity provider are fetched before serving: an issuer
        that cannot be reached (a typo, no network, or a README config whose HMAC secret was
        not exported) stops the server at start, not at each request."""
        if authenticator is None or not authenticator.fetches_keys:
            return
        from .auth import AuthError, FetchError

        jwt = config.auth.jwt
        source = f"its jwks_uri {jwt.jwks_uri}" if jwt.jwks_uri else f"its issuer {jwt.issuer}"
        try:
            await authenticator.prime()
        except (FetchError, AuthError) as exc:
            cause = str(exc) if isinstance(exc, FetchError) else exc.description
            raise StartupError(f"[auth.jwt] has no key of its own and none could be fetched from {source} ({cause}): "
                               "export MCP_TRIO_AUTH_JWT_SECRET (32 bytes or more), set secret_file, public_key_file, "
                               "jwks_file or jwks_uri in [auth.jwt], or make the identity provider reachable") from exc

    async def _serve_websocket(self, app: Any, config: Any, tls: Any, authenticator: Any) -> None:
        import trio

        from .transports.websocket import serve_websocket

        server = config.server
        await self._prime_provider(config, authenticator)
        async with trio.open_nursery() as nursery:
            ws = await nursery.start(lambda task_status: serve_websocket(
                app, config.to_limits(), host=server.host, port=server.port,
                allowed_origins=server.allowed_origins or None, allowed_hosts=server.allowed_hosts or None, ssl_context=tls,
                authenticator=authenticator, handle_signals=True, rate_limits=config.rate_limits(),
                reuse_port=self.args.reuse_port, trusted_proxies=server.trusted_proxies or None,
                proxy_headers=server.proxy_headers, cluster=config.cluster_settings(), task_status=task_status))
            self.started = True
            scheme = "wss" if tls is not None else "ws"
            print(f"mcp-trio: serving {app.name} on {scheme}://{server.host}:{ws.port}/", file=sys.stderr, flush=True)

    async def _serve_http(self, app: Any, config: Any, authenticator: Any) -> None:
        import trio

        from .transports.http import serve_http

        server, args = config.server, self.args
        await self._prime_provider(config, authenticator)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_http(
                app, config.to_limits(), host=server.host, port=server.port,
                allowed_origins=server.allowed_origins or None, allowed_hosts=server.allowed_hosts or None,
                certfile=args.certfile, keyfile=args.keyfile,
                json_response=args.json_response, authenticator=authenticator, handle_signals=True,
                rate_limits=config.rate_limits(), metrics=server.metrics, http2=server.http2, legacy_sse=server.legacy_sse,
                reuse_port=args.reuse_port, trusted_proxies=server.trusted_proxies or None,
                proxy_headers=server.proxy_headers, cluster=config.cluster_settings(), task_status=task_status))
            self.started = True
            scheme = "https" if args.certfile else "http"
            base = f"{scheme}://{server.host}:{port}"
            ws = base.replace("http", "ws", 1)
            cluster = config.cluster_settings()
            shared = f"\n  cluster                {cluster.where} (key prefix {cluster.key_prefix!r})" if cluster else ""
            legacy = f"  MCP (HTTP+SSE, 2024)   {base}/sse\n" if server.legacy_sse else ""
            print(f"mcp-trio: serving {app.name}\n  MCP (Streamable HTTP)  {base}/mcp\n  MCP (WebSocket)        {ws}/ws\n{legacy}"
                  f"  health                 {base}/healthz\n  metrics                {base}/metrics{shared}", file=sys.stderr,
                  flush=True)
            if self.after_start:
                beside = await nursery.start(_beside_serving, app)
                for hook in self.after_start:
                    beside.start_soon(hook, app, f"{base}/mcp")


async def _beside_serving(app: Any, *, task_status: Any) -> None:
    """A nursery for what runs beside a server (``mcp-trio dev``), until it starts shutting down."""
    import trio

    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await app._supervisor.shutting_down.wait()
        nursery.cancel_scope.cancel()


def _run_workers(workers: int, argv: list[str]) -> int:
    """Run ``workers`` copies of this command, each binding the port with SO_REUSEPORT.

    The kernel spreads new connections over them. Signals are passed on; each worker shuts
    down gracefully on its own, and the parent exits when all have.
    """
    child_argv = [a for a in argv if not a.startswith("--workers")]
    if "--workers" in argv:  # "--workers N" as two words
        index = argv.index("--workers")
        child_argv = argv[:index] + argv[index + 2:]
    children = [subprocess.Popen([sys.executable, "-m", "mcp_trio", *child_argv, "--reuse-port"]) for _ in range(workers)]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
