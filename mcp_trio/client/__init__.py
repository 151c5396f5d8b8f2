"""An MCP client on trio, for scripts, tests and gateways: stdio, WebSocket and Streamable
HTTP servers, both protocol eras, typed results.

::

    from mcp_trio.client import connect

    async with connect("http://127.0.0.1:8000/mcp") as client:
        tools = await client.list_tools()
        result = await client.call_tool("echo", {"text": "hi"})
        print(result.content[0].text)

Targets: ``stdio:COMMAND ARGS...`` (split like a shell would) or a list of arguments (the
command is spawned and spoken to over its stdin/stdout, one JSON message per line);
``ws://`` / ``wss://`` (one JSON-RPC message per text frame, subprotocol ``mcp`` offered);
``http://`` / ``https://`` (Streamable HTTP: a POST per message over a bounded pool of
keep-alive connections, the answer read as JSON or SSE, the session's GET stream held and
resumed with ``Last-Event-ID``).

Eras: ``connect(era="auto")`` probes ``server/discover`` and speaks the stateless revision
(2026-07-28: every request carries its envelope in ``params._meta``; a server that needs
input answers ``InputRequiredResult`` and the call retries with the callbacks' answers) when
the server does, else the ``initialize`` handshake (2024-11-05 to 2025-11-25).

Many requests may be in flight at once on one client. Each has a timeout (the client's
``request_timeout``, 60 s by default, or ``timeout=`` per call); a request cancelled or timed
out tells the server (``notifications/cancelled``, or the HTTP response is closed).
``docs/client.md`` documents every method and exception.
"""

from ._client import (
    CLIENT_INFO,
    DEFAULT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_PAGES,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_INPUT_ROUNDS,
    MAX_QUEUED_NOTIFICATIONS,
    Client,
    Era,
)
from ._connect import Transport, connect, open_client, parse_target
from ._errors import (
    ClientError,
    ConnectError,
    ConnectionLost,
    EraError,
    HTTPError,
    McpError,
    ProtocolError,
    RequestTimeout,
    RPCError,
    TargetError,
)
from ._http import DEFAULT_MAX_CONNECTIONS, POOL_IDLE_TIMEOUT, TokenProvider
from ._tracing import OtelRequestTracer, RequestTracer
from ._types import *  # noqa: F403 - the typed results are part of this package's API
from ._types import __all__ as _types_all
from ._wire import CLOSE_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE

__all__ = [
    "CLIENT_INFO",
    "CLOSE_TIMEOUT",
    "CONNECT_TIMEOUT",
    "Client",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "DEFAULT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_PAGES",
    "DEFAULT_REQUEST_TIMEOUT",
    "Era",
    "EraError",
    "HTTPError",
    "MAX_INPUT_ROUNDS",
    "MAX_QUEUED_NOTIFICATIONS",
    "McpError",
    "OtelRequestTracer",
    "POOL_IDLE_TIMEOUT",
    "ProtocolError",
    "RPCError",
    "RequestTimeout",
    "RequestTracer",
    "TargetError",
    "TokenProvider",
    "Transport",
    "connect",
    "open_client",
    "parse_target",
    *_types_all,
]
