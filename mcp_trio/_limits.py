"""Every limit the server enforces, with its named default, in one frozen object.

``Limits`` is built once in ``main`` (from flags) and passed down; nothing reads a global.
"""

from __future__ import annotations

import msgspec

#: Largest accepted message (a stdio line, a WebSocket message, an HTTP body), in bytes.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: Requests one connection may have running at once; past it, its reader stops reading.
DEFAULT_MAX_IN_FLIGHT = 64
#: Seconds in-flight requests get to finish at shutdown before they are cancelled.
DEFAULT_GRACE_PERIOD = 10.0
#: Items per page of ``tools/list``, ``resources/list``, ``prompts/list``.
DEFAULT_PAGE_SIZE = 100
#: Seconds a single write may take before the peer is deemed stalled and disconnected.
DEFAULT_SEND_TIMEOUT = 30.0
#: Seconds to wait for the client to answer sampling, elicitation or roots requests.
DEFAULT_CLIENT_REQUEST_TIMEOUT = 300.0
#: Server-to-client requests one connection may have outstanding at once.
DEFAULT_MAX_CLIENT_REQUESTS = 64
#: Seconds the server's lifespan (``@server.lifespan``) may take to start, and again to stop.
DEFAULT_LIFESPAN_TIMEOUT = 30.0
#: Messages one JSON-RPC batch may hold (batches exist in protocol revision 2025-03-26 only).
DEFAULT_MAX_BATCH_SIZE = 64
#: Seconds a tool call may run when the tool sets no ``timeout=`` of its own (0: no default;
#: a tool's own ``timeout=`` wins either way, ``float("inf")`` opting it out).
DEFAULT_TOOL_TIMEOUT = 300.0
#: Threads of sync (``def``) tools that were given up (timed out or cancelled) and still run,
#: server-wide; at the cap, calls of sync tools are refused (``-32030``) until some finish.
#: Each holds one of trio's 40 worker-thread tokens until it ends: 16 leaves 24 for live calls.
DEFAULT_MAX_ABANDONED_THREADS = 16
#: The same, per tool: at the cap, calls of that tool are refused until its threads finish.
DEFAULT_MAX_ABANDONED_THREADS_PER_TOOL = 4

# -- network transports (WebSocket, Streamable HTTP) ------------------------------------------
#: Concurrent WebSocket connections per server process; more are refused at the handshake (503).
DEFAULT_MAX_CONNECTIONS = 10_000
#: Seconds a client gets to complete the WebSocket opening handshake.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Seconds without any MCP message after which a connection (or HTTP session) is closed.
DEFAULT_IDLE_TIMEOUT = 300.0
#: Seconds between WebSocket pings; a pong missing for as long again closes the connection.
DEFAULT_HEARTBEAT_INTERVAL = 20.0
#: Fragments one WebSocket message may arrive in (each fragment costs memory of its own).
DEFAULT_MAX_MESSAGE_FRAGMENTS = 1024
#: Concurrent Streamable HTTP sessions per server process; more are refused.
DEFAULT_MAX_SESSIONS = 10_000
#: Seconds one HTTP request may take to arrive whole (headers and body), however it trickles.
DEFAULT_REQUEST_DEADLINE = 30.0
#: Server-initiated SSE events kept per HTTP session for ``Last-Event-ID`` replay.
DEFAULT_SSE_REPLAY_EVENTS = 256
#: Seconds an HTTP/1.1 connection may sit idle between requests before the server closes it.
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
#: Largest HTTP request head (request line and header lines), in bytes: 431 past it.
DEFAULT_MAX_HEAD_SIZE = 16 * 1024
#: Header lines one HTTP request may carry: 431 past it.
DEFAULT_MAX_HEADERS = 100
#: Concurrent TCP connections to the HTTP port; past it a connection is answered 503 and closed.
DEFAULT_MAX_HTTP_CONNECTIONS = 10_000

# -- per principal (an authenticated caller; an anonymous one by its address) ------------------
#: Sessions (HTTP sessions and WebSocket connections) one principal may hold open at once.
DEFAULT_MAX_SESSIONS_PER_PRINCIPAL = 100
#: 2026-07-28 tasks one principal may hold at once (running, or finished and still readable).
DEFAULT_MAX_TASKS_PER_PRINCIPAL = 100
#: ``subscriptions/listen`` streams one principal may hold open at once.
DEFAULT_MAX_LISTENS_PER_PRINCIPAL = 64
#: ``resources/subscribe`` subscriptions one principal may hold over all its sessions.
DEFAULT_MAX_SUBSCRIPTIONS_PER_PRINCIPAL = 1024
#: Subscriptions one session may hold (and resources one listen stream may name).
DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION = 256
#: Longest resource URI a client may subscribe to, in characters.
DEFAULT_MAX_URI_LENGTH = 4096


# A frozen msgspec Struct, not a dataclass: defining a dataclass of this many fields costs a
# stdio child ~1.5 ms of generated code at every start (``msgspec.structs.fields`` lists them).
class Limits(msgspec.Struct, frozen=True):
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    grace_period: float = DEFAULT_GRACE_PERIOD
    page_size: int = DEFAULT_PAGE_SIZE
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    client_request_timeout: float = DEFAULT_CLIENT_REQUEST_TIMEOUT
    max_client_requests: int = DEFAULT_MAX_CLIENT_REQUESTS
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT
    max_abandoned_threads: int = DEFAULT_MAX_ABANDONED_THREADS
    max_abandoned_threads_per_tool: int = DEFAULT_MAX_ABANDONED_THREADS_PER_TOOL
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    max_message_fragments: int = DEFAULT_MAX_MESSAGE_FRAGMENTS
    max_sessions: int = DEFAULT_MAX_SESSIONS
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    sse_replay_events: int = DEFAULT_SSE_REPLAY_EVENTS
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_sessions_per_principal: int = DEFAULT_MAX_SESSIONS_PER_PRINCIPAL
    max_tasks_per_principal: int = DEFAULT_MAX_TASKS_PER_PRINCIPAL
    max_listens_per_principal: int = DEFAULT_MAX_LISTENS_PER_PRINCIPAL
    max_subscriptions_per_principal: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_PRINCIPAL
    max_subscriptions_per_session: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION
    max_uri_length: int = DEFAULT_MAX_URI_LENGTH
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    max_http_connections: int = DEFAULT_MAX_HTTP_CONNECTIONS
    lifespan_timeout: float = DEFAULT_LIFESPAN_TIMEOUT
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_in_flight", "page_size", "max_client_requests",
                     "max_connections", "max_message_fragments", "max_sessions", "max_sessions_per_principal",
                     "max_tasks_per_principal", "max_listens_per_principal", "max_subscriptions_per_principal",
                     "max_subscriptions_per_session", "max_uri_length", "max_head_size", "max_headers",
                     "max_http_connections", "max_batch_size", "max_abandoned_threads", "max_abandoned_threads_per_tool"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("grace_period", "send_timeout", "client_request_timeout", "handshake_timeout",
                     "idle_timeout", "heartbeat_interval", "request_deadline", "sse_replay_events", "tool_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not self.keep_alive_timeout > 0:
            raise ValueError("keep_alive_timeout must be positive (an idle connection must close some time)")
        if not self.lifespan_timeout > 0:
            raise ValueError("lifespan_timeout must be positive (a lifespan that awaits anything needs some time)")
