"""``mcp-trio``: the command line. Builds the objects in ``main`` and passes them down.

``serve`` imports only the transport it serves, so a stdio child pays for neither WebSocket
nor HTTP at start-up; ``bench`` and ``token`` import their modules when run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from . import _limits

DEMO_APP = "mcp_trio.demo:server"
TRANSPORTS = {"stdio": "stdio", "ws": "websocket", "websocket": "websocket", "http": "http"}


class AppLoadError(Exception):
    """``MODULE:ATTR`` does not name a ``Server``."""


def load_app(spec: str) -> Any:
    """Import ``module:attr`` (or ``path/to/file.py:attr``); ``attr`` defaults to ``server``.

    ``attr`` may be a ``Server`` or a function with no arguments that returns one.
    """
    from ._appspec import split_app
    from ._server import Server

    target, attr, is_path = split_app(spec)  # C:\dir\app.py:server is a path on any OS
    attr = attr or "server"
    try:
        if is_path:
            path = Path(target).resolve()
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None:
                raise AppLoadError(f"cannot load {target}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except (ImportError, OSError) as exc:
        raise AppLoadError(f"cannot import {target!r}: {exc}") from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise AppLoadError(f"module {target!r} has no attribute {attr!r}") from None
    if not isinstance(app, Server) and callable(app):
        app = app()
    if not isinstance(app, Server):
        raise AppLoadError(f"{spec} is a {type(app).__name__}, not an mcp_trio.Server")
    return app


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
    ("--max-message-size", "max_message_size", _positive_int, "BYTES", "largest message accepted"),
    ("--max-in-flight", "max_in_flight", _positive_int, "N", "requests running at once per connection"),
    ("--grace-period", "grace_period", _non_negative_float, "SECONDS", "time in-flight requests get at shutdown"),
    ("--page-size", "page_size", _positive_int, "N", "items per page of list results"),
    ("--send-timeout", "send_timeout", _non_negative_float, "SECONDS", "a write to a peer that stopped reading"),
    ("--client-request-timeout", "client_request_timeout", _non_negative_float, "SECONDS",
     "wait for sampling/elicitation/roots answers"),
    ("--max-connections", "max_connections", _positive_int, "N", "WebSocket connections per process"),
    ("--handshake-timeout", "handshake_timeout", _non_negative_float, "SECONDS", "WebSocket opening handshake"),
    ("--idle-timeout", "idle_timeout", _non_negative_float, "SECONDS", "close a connection or session idle this long"),
    ("--heartbeat-interval", "heartbeat_interval", _non_negative_float, "SECONDS", "WebSocket ping interval"),
    ("--max-sessions", "max_sessions", _positive_int, "N", "Streamable HTTP sessions per process"),
    ("--request-deadline", "request_deadline", _non_negative_float, "SECONDS", "an HTTP request must arrive whole within"),
)


def build_parser() -> argparse.ArgumentParser:
    from ._config import add_config_arguments

    parser = argparse.ArgumentParser(prog="mcp-trio", description="Serve MCP tools, resources and prompts on trio.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve an app (the built-in demo app by default)",
        description="Serve an mcp_trio.Server over stdio, WebSocket or Streamable HTTP. With no APP, "
                    "serves the built-in demo app. Settings come from flags, then MCP_TRIO_* variables, "
                    "then --config FILE, then defaults.")
    serve.add_argument("app", nargs="?", default=DEMO_APP, metavar="APP",
                       help=f"MODULE:ATTR or path/to/file.py:ATTR naming a Server (default: {DEMO_APP})")
    serve.add_argument("--transport", choices=sorted(TRANSPORTS), default=None,
                       help="stdio (default), ws (WebSocket), or http (Streamable HTTP at /mcp, WebSocket at /ws, "
                            "/healthz, /metrics on one port)")
    add_config_arguments(serve)
    serve.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                       help="ws/http: serve from N processes on one port (SO_REUSEPORT); each has its own "
                            "supervisor, registry, limits and sessions (default: 1)")
    # Given to the processes --workers starts: bind with SO_REUSEPORT. Not for people.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--certfile", default=None, help="ws/http: serve wss:// / https:// with this certificate (PEM)")
    serve.add_argument("--keyfile", default=None, help="ws/http: the certificate's private key (PEM)")
    serve.add_argument("--json-response", action="store_true",
                       help="http: answer every request with JSON, never an SSE stream")
    serve.add_argument("--stdio-io", choices=["auto", "threads", "fd"], default=None,
                       help="stdio: wait on the pipes (fd), or read and write them in threads (as on Windows); "
                            "auto: threads on Windows, fd elsewhere (default)")
    serve.add_argument("--plugins", action="append", default=None, metavar="DIR",
                       help="load tools, resources and prompts from the plugin files in DIR, and reload them "
                            "when they change (repeatable)")
    serve.add_argument("--plugin-packages", action="store_true", default=None,
                       help="also load the plugins installed packages declare (entry points: mcp_trio.plugins)")
    serve.add_argument("--no-watch", dest="watch_plugins", action="store_false", default=None,
                       help="load plugins once; do not reload them when their files change")
    serve.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error", "critical"],
                       help="log level on stderr (default: warning)")
    serve.add_argument("--log-format", default=None, choices=["text", "json"], help="log line format (default: text)")
    limits = serve.add_argument_group("limits (defaults in parentheses)")
    for flag, field, kind, metavar, text in _LIMIT_FLAGS:
        default = getattr(_limits.Limits(), field)
        limits.add_argument(flag, dest=field, type=kind, default=None, metavar=metavar, help=f"{text} ({default:g})")

    token = commands.add_parser("token", help="mint a development token or API key for a secured server",
                                description="Print a development JWT (or a new API key) for the server configured "
                                            "by --config.")
    from ._token import add_token_arguments

    add_token_arguments(token)

    admin = commands.add_parser("admin", help="switch tools on/off, reload plugins, read statistics of a running server",
                                description="Call the /admin surface of a server served over HTTP "
                                            "(needs the admin scope when it authenticates callers).")
    from ._admin_cli import add_admin_arguments

    add_admin_arguments(admin)

    install = commands.add_parser("install", help="register a server with Claude Desktop, Claude Code, Cursor or VS Code",
                                  description="Add (or update) a server in an MCP host's configuration file: a local "
                                              "server this Python starts over stdio, or a remote one at --url.")
    from ._install import add_install_arguments

    add_install_arguments(install)

    bench = commands.add_parser("bench", help="load-test an MCP server (ours or anyone's)",
                                description="Measure an MCP server's throughput, latency and memory under load.")
    from .bench.cli import add_bench_arguments

    add_bench_arguments(bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    return _serve(args, argv)


def _serve(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ._config import ConfigError, load_config, overrides_from_args
    from ._logging import configure_logging

    if args.transport is not None:
        args.transport = TRANSPORTS[args.transport]
    try:
        config = load_config(args.config, os.environ, overrides_from_args(args))
    except ConfigError as exc:
        print(f"mcp-trio: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.server.log_level, config.server.log_format)
    transport = config.server.transport
    if args.workers > 1:
        if transport == "stdio":
            print("mcp-trio: --workers needs a network transport (ws or http)", file=sys.stderr)
            return 2
        if not config.request_state.configured:
            # One requestState key for all workers: a 2026-07-28 retry may reach any of them.
            import secrets

            os.environ["MCP_TRIO_REQUEST_STATE_SECRET"] = secrets.token_urlsafe(32)
        return _run_workers(args.workers, sys.argv[1:] if argv is None else argv)
    try:
        app = load_app(args.app)
    except AppLoadError as exc:
        print(f"mcp-trio: {exc}", file=sys.stderr)
        return 2
    try:
        if config.request_state.configured or config.request_state.ttl != app.request_state.ttl:
            app.request_state = config.request_state_codec()  # else the app's own (default: random)
    except ConfigError as exc:
        print(f"mcp-trio: {exc}", file=sys.stderr)
        return 2
    plugins = config.plugins
    if plugins.directories or plugins.entry_points:
        try:
            app.use_plugins(*plugins.directories, entry_points=plugins.entry_points, watch=plugins.watch)
        except (OSError, RuntimeError) as exc:
            print(f"mcp-trio: {exc}", file=sys.stderr)
            return 2
    import trio

    limits = config.to_limits()
    try:
        if transport == "stdio":
            from .transports.stdio import serve_stdio

            trio.run(partial(serve_stdio, app, limits, rate_limits=config.rate_limits(), io=config.server.stdio_io))
        elif transport == "websocket":
            trio.run(_serve_websocket, app, config, args)
        else:
            trio.run(_serve_http, app, config, args)
    except KeyboardInterrupt:
        return 130
    return 0


def _ssl_context(args: argparse.Namespace) -> Any:
    if args.certfile is None:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


async def _serve_websocket(app: Any, config: Any, args: argparse.Namespace) -> None:
    import trio

    from .transports.websocket import serve_websocket

    server = config.server
    async with trio.open_nursery() as nursery:
        ws = await nursery.start(lambda task_status: serve_websocket(
            app, config.to_limits(), host=server.host, port=server.port,
            allowed_origins=server.allowed_origins or None, ssl_context=_ssl_context(args),
            authenticator=config.authenticator(), handle_signals=True, rate_limits=config.rate_limits(),
            reuse_port=args.reuse_port, task_status=task_status))
        scheme = "wss" if args.certfile else "ws"
        print(f"mcp-trio: serving {app.name} on {scheme}://{server.host}:{ws.port}/", file=sys.stderr, flush=True)


async def _serve_http(app: Any, config: Any, args: argparse.Namespace) -> None:
    import trio

    from .transports.http import serve_http

    server = config.server
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_http(
            app, config.to_limits(), host=server.host, port=server.port,
            allowed_origins=server.allowed_origins or None, certfile=args.certfile, keyfile=args.keyfile,
            json_response=args.json_response, authenticator=config.authenticator(), watch_signals=True,
            rate_limits=config.rate_limits(),
            reuse_port=args.reuse_port, task_status=task_status))
        scheme = "https" if args.certfile else "http"
        base = f"{scheme}://{server.host}:{port}"
        ws = base.replace("http", "ws", 1)
        print(f"mcp-trio: serving {app.name}\n  MCP (Streamable HTTP)  {base}/mcp\n  MCP (WebSocket)        {ws}/ws\n"
              f"  health                 {base}/healthz\n  metrics                {base}/metrics", file=sys.stderr, flush=True)


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
