"""``mcp-trio``: the command line. Builds the objects in ``main`` and passes them down."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from . import _limits
from ._limits import Limits

DEMO_APP = "mcp_trio.demo:server"


class AppLoadError(Exception):
    """``MODULE:ATTR`` does not name a ``Server``."""


def load_app(spec: str) -> Any:
    """Import ``module:attr`` (or ``path/to/file.py:attr``); ``attr`` defaults to ``server``.

    ``attr`` may be a ``Server`` or a function with no arguments that returns one.
    """
    from ._server import Server

    target, _, attr = spec.partition(":")
    attr = attr or "server"
    try:
        if target.endswith(".py") or "/" in target:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-trio", description="Serve MCP tools, resources and prompts on trio.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve an app (the built-in demo app by default)",
                                description="Serve an mcp_trio.Server. With no APP, serves the built-in demo app.")
    serve.add_argument("app", nargs="?", default=DEMO_APP, metavar="APP",
                       help=f"MODULE:ATTR or path/to/file.py:ATTR naming a Server (default: {DEMO_APP})")
    serve.add_argument("--transport", choices=["stdio"], default="stdio", help="how clients connect (default: stdio)")
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error", "critical"],
                       help="log level on stderr (default: warning)")
    serve.add_argument("--log-format", default="text", choices=["text", "json"], help="log line format (default: text)")
    limits = serve.add_argument_group("limits")
    limits.add_argument("--max-message-size", type=_positive_int, default=_limits.DEFAULT_MAX_MESSAGE_SIZE, metavar="BYTES",
                        help=f"largest message accepted (default: {_limits.DEFAULT_MAX_MESSAGE_SIZE})")
    limits.add_argument("--max-in-flight", type=_positive_int, default=_limits.DEFAULT_MAX_IN_FLIGHT, metavar="N",
                        help=f"requests running at once per connection (default: {_limits.DEFAULT_MAX_IN_FLIGHT})")
    limits.add_argument("--grace-period", type=_non_negative_float, default=_limits.DEFAULT_GRACE_PERIOD, metavar="SECONDS",
                        help=f"time in-flight requests get at shutdown (default: {_limits.DEFAULT_GRACE_PERIOD:g})")
    limits.add_argument("--page-size", type=_positive_int, default=_limits.DEFAULT_PAGE_SIZE, metavar="N",
                        help=f"items per page of list results (default: {_limits.DEFAULT_PAGE_SIZE})")
    limits.add_argument("--client-request-timeout", type=_non_negative_float, default=_limits.DEFAULT_CLIENT_REQUEST_TIMEOUT,
                        metavar="SECONDS", help="how long to wait for sampling/elicitation/roots answers "
                        f"(default: {_limits.DEFAULT_CLIENT_REQUEST_TIMEOUT:g})")
    return parser


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(
        max_message_size=args.max_message_size,
        max_in_flight=args.max_in_flight,
        grace_period=args.grace_period,
        page_size=args.page_size,
        client_request_timeout=args.client_request_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ._logging import configure_logging

    configure_logging(args.log_level, args.log_format)
    if args.command == "serve":
        try:
            app = load_app(args.app)
        except AppLoadError as exc:
            print(f"mcp-trio: {exc}", file=sys.stderr)
            return 2
        limits = limits_from(args)
        import trio

        from .transports.stdio import serve_stdio

        try:
            trio.run(serve_stdio, app, limits)
        except KeyboardInterrupt:
            return 130
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
