"""One configuration object, from a TOML file, ``MCP_TRIO_*`` environment variables and flags.

Precedence, highest first: **flags > environment > file > defaults**. ``load_config`` is called
once, in ``main``; the ``Config`` it returns is passed down (there is no global to read).
Every table and key is checked: an unknown key (``allow_anonymus``) is an error naming where
it came from, not a silently ignored setting.

A complete file (every key is optional; shown with its default unless noted; the same, with
every limit spelt out, is in docs/security.md)::

    [server]
    transport = "stdio"              # "stdio" | "websocket" | "http"
    stdio_io = "auto"                # stdio's pipes: "fd" (trio waits on them), "threads" (a
                                     #   thread per pipe, as Windows needs), "auto": threads
                                     #   on Windows, fd elsewhere
    host = "127.0.0.1"
    port = 8000
    resource = "https://mcp.example.com/mcp"   # this server's public URL (default: none):
                                     # the JWT audience and the RFC 9728 "resource"
    allowed_origins = ["https://app.example.com"]  # browser Origins accepted (default: none)
    allowed_hosts = ["mcp.example.com"]  # Host values accepted (name or name:port; default:
                                     # loopback names on a loopback address, else any)
    log_level = "warning"            # debug | info | warning | error | critical
    log_format = "text"              # text | json
    metrics = "scope:admin"          # who may read /metrics: public | loopback | scope:NAME
                                     #   (default: scope:admin with auth configured, else public)
    trusted_proxies = ["10.0.0.0/8"] # proxies in front (addresses, networks; default: none):
                                     #   only theirs are forwarding headers believed
    proxy_headers = "x-forwarded"    # what they write: x-forwarded (X-Forwarded-For/-Proto)
                                     #   | forwarded (RFC 7239)
    http2 = false                    # http: serve through hypercorn (HTTP/2 and HTTP/1.1)
                                     #   instead of the lean HTTP/1.1 engine
    legacy_sse = false               # http: also serve the 2024-11-05 HTTP+SSE transport
                                     #   (GET /sse, POST /messages?session_id=...)

    [limits]                         # every field of mcp_trio.Limits, same names and defaults
    max_message_size = 4194304
    max_in_flight = 64
    grace_period = 10.0
    # page_size, send_timeout, client_request_timeout, max_client_requests, tool_timeout,
    # max_abandoned_threads, max_abandoned_threads_per_tool, max_connections,
    # handshake_timeout, idle_timeout, heartbeat_interval, max_message_fragments,
    # max_sessions, request_deadline, sse_replay_events, keep_alive_timeout,
    # max_sessions_per_principal, max_tasks_per_principal, max_listens_per_principal,
    # max_subscriptions_per_principal, max_subscriptions_per_session, max_uri_length,
    # max_head_size, max_headers, max_http_connections, lifespan_timeout, max_batch_size

    [auth]
    allow_anonymous = false          # no credential: anonymous principal instead of 401
    anonymous_scopes = []            # what anonymous callers hold
    required_scopes = []             # needed to connect at all (403 otherwise)
    api_key_prefix = "mcpk_"         # "Authorization: Bearer mcpk_..." is an API key
    authorization_servers = ["https://auth.example.com"]   # for the RFC 9728 document
    scopes_supported = ["read", "write", "execute", "admin"]
    trust_stdio = true               # stdio is a trusted local channel (no credential asked)

    [auth.jwt]                       # bearer JWTs; enabled when issuer or a key source is set
    issuer = "https://auth.example.com"        # required: the one accepted "iss". Alone (no
                                     #   key source below), keys come from the issuer's
                                     #   metadata (RFC 8414, then OpenID configuration)
    audience = []                    # accepted "aud" values (default: [server.resource])
    algorithms = ["RS256", "PS256", "ES256", "Ed25519", "HS256"]  # allow-list
    jwks_uri = "https://auth.example.com/jwks" # keys fetched and cached (https; default: none)
    jwks_file = "jwks.json"          # static key sources (any of them; relative paths are
    public_key_file = "issuer.pem"   #   relative to this file)
    public_key = "-----BEGIN PUBLIC KEY-----..."
    secret_file = "hs256.secret"     # an HMAC secret, >= 32 bytes
    secret = "..."                   # prefer MCP_TRIO_AUTH_JWT_SECRET or secret_file
    kid = "dev"                      # the kid of the PEM/secret key (default: none)
    leeway = 30.0                    # seconds of clock skew on exp / nbf / iat
    max_token_size = 8192            # bytes; larger tokens are refused unparsed
    scope_claims = ["scope", "scp"]  # claims scopes are read from: a name, or a dotted path
                                     #   ("realm_access.roles"); strings split on spaces

    [auth.introspection]             # RFC 7662, for opaque tokens; enabled when client_id is set
    endpoint = "https://auth.example.com/introspect"  # default: from [auth.jwt] issuer's metadata
    client_id = "mcp-server"         # this server's own client credentials at the provider
    client_secret = "..."            # prefer MCP_TRIO_AUTH_INTROSPECTION_CLIENT_SECRET
    client_secret_file = "introspection.secret"
    auth_method = "client_secret_basic"   # or "client_secret_post"
    scope_claims = ["scope"]
    cache_ttl = 60.0                 # seconds an answer is reused (never past the token's exp)
    cache_size = 10000               # answers kept; the oldest go first
    max_concurrent = 16              # calls in flight; past it new tokens get 503 at once

    [auth.provider]                  # fetching from the identity provider (all of the above)
    timeout = 5.0                    # seconds per fetch, connect to last byte
    max_response_size = 1048576      # bytes
    max_redirects = 3                # followed by GETs (never https -> http); POSTs follow none
    ca_file = "corporate-ca.pem"     # CAs to trust instead of the system's (default: system)
    allow_http_loopback = false      # plain http, to 127.0.0.1 / ::1 / localhost only
    cache_min = 60.0                 # a JWKS or metadata is kept as its Cache-Control /
    cache_max = 86400.0              #   Expires say, clamped to [cache_min, cache_max];
    cache_default = 300.0            #   cache_default when it says nothing
    refetch_interval = 30.0          # least seconds between fetches an unknown kid or a
                                     #   failure can trigger
    stale_if_error = 600.0           # seconds past their lifetime that keys still serve while
                                     #   the provider fails (then tokens get 503)

    [[auth.api_keys]]                # one table per key; mcp-trio token --api-key makes one
    name = "ci"                      # the principal's subject
    sha256 = "<64 hex digits>"       # sha256(key).hexdigest(), never the key itself
    scopes = ["read", "execute"]

    [rate_limit]                     # requests per principal (per address when anonymous)
    rate = 20.0                      # per second (default: none, no limit)
    burst = 10                       # saved up above the rate: burst + 1 pass at once
    max_concurrent = 1000            # requests running server-wide (default: none);
                                     #   past it requests are refused (-32030), not queued
    max_keys = 100000                # callers remembered at once (past it, full buckets are forgotten)
    [rate_limit.tools.search]        # per tool (optional)
    cost = 5                         # tokens of the caller's bucket per call (<= burst + 1)
    rate = 1.0                       # and a bucket of its own, per caller
    burst = 0

    [request_state]                  # protocol revision 2026-07-28: the HMAC key sealing
    secret = "..."                   #   requestState (>= 32 bytes; default: random, this
    secret_file = "state.secret"     #   process only). Servers sharing clients (--workers,
    previous_secrets = []            #   hosts behind a balancer) must share it; older keys
    ttl = 600.0                      #   still verify. ttl: seconds a state stays valid
    max_spent = 100000               # @single_use_state tools: used states remembered

    [plugins]                        # tools, resources and prompts from plugins
    directories = ["plugins"]        # folders of plugin files (relative to this file)
    entry_points = false             # also load installed packages' "mcp_trio.plugins"
    watch = true                     # reload a directory plugin when its file changes

    [tracing]                        # OpenTelemetry (pip install 'mcp-trio[otel]'; docs/tracing.md)
    enabled = false                  # a span per request and its children
    exporter = "otlp"                # otlp (OTLP/HTTP) | console (stderr) | none (recorded, dropped)
    endpoint = "http://collector:4318"   # OTLP base URL (default: OTEL_EXPORTER_OTLP_ENDPOINT,
                                     #   else http://localhost:4318)
    service_name = "weather"         # default: OTEL_SERVICE_NAME, else the app's name
    [[mount]]                        # a remote MCP server served under a prefix (the gateway;
    prefix = "weather"               #   also --mount PREFIX=TARGET): weather_forecast, weather+URI
    url = "https://weather.example/mcp"   # or ws://...; or, for a local command over stdio:
    command = ["python", "-m", "weather"] #   (a list, or one string; give url or command)
    bearer_token_env = "WEATHER_TOKEN"    # its bearer token, from a variable (must be set) ...
    bearer_token_file = "weather.token"   #   ... or a file (relative to this file)
    headers = { X-Tenant = "acme" }       # sent as written
    headers_env = { X-Api-Key = "WEATHER_KEY" }  # values from variables (must be set)
    era = "auto"                     # auto (server/discover, else initialize) | handshake | stateless
    connect_timeout = 10.0           # seconds to connect and open the session
    request_timeout = 60.0           # seconds per forwarded request, waiting for a slot included
    max_concurrency = 32             # requests forwarded at once; more wait for a slot
    max_connections = 8              # pooled HTTP connections
    scopes = []                      # scopes a caller needs for its tools, resources, prompts
    tags = []                        # tags added to its tools (switch them off by tag)
    [cluster]                        # cluster mode: state shared on Redis (docs/cluster.md)
    redis_url = "redis://redis:6379/0"  # turns it on (default: none, off); TLS: rediss://,
                                     #   auth: redis://user:password@host, Sentinel, Cluster
    # key_prefix, connect_timeout, command_timeout, probe_interval, on_unavailable,
    # session_ttl, events_per_session, max_subscriptions, task_ttl, max_tasks_per_subject,
    # stats_ttl, max_counters, max_bus_message, max_value_size, node_ttl, max_switches

Environment: ``MCP_TRIO_<TABLE>_<KEY>``, upper case, for every key above:
``MCP_TRIO_SERVER_PORT=9000``, ``MCP_TRIO_LIMITS_MAX_IN_FLIGHT=8``,
``MCP_TRIO_AUTH_JWT_SECRET=...``, ``MCP_TRIO_AUTH_INTROSPECTION_CLIENT_SECRET=...``,
``MCP_TRIO_AUTH_PROVIDER_CA_FILE=...``, ``MCP_TRIO_RATE_LIMIT_RATE=5``. Lists are comma-separated
(``MCP_TRIO_SERVER_ALLOWED_ORIGINS=https://a,https://b``); ``api_keys``,
``rate_limit.tools`` and ``MCP_TRIO_MOUNT`` take JSON; an empty value unsets an optional key.
``MCP_TRIO_CONFIG`` names the file when ``--config`` is not given. An unknown ``MCP_TRIO_*``
variable is an error (a misspelt secret must not leave a server open).
"""

from __future__ import annotations

import functools
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from ._limiter import DEFAULT_BURST, DEFAULT_MAX_KEYS, RateLimits, ToolLimit
from ._limits import Limits

if typing.TYPE_CHECKING:
    from ._explain import Problem
    from ._request_state import RequestStateCodec
    from .auth import Authenticator
    from .cluster import ClusterSettings

ENV_PREFIX = "MCP_TRIO_"
#: ``mcp_trio.auth.DEFAULT_ALGORITHMS``, repeated so that loading a config does not import
#: joserfc and cryptography (tens of ms at every stdio start); a test keeps the two equal.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "Ed25519", "HS256")
#: The environment variable naming the config file when no path is given.
CONFIG_ENV = "MCP_TRIO_CONFIG"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting, from where, and why."""


#: A browser Origin: scheme://host[:port], nothing after it (RFC 6454 serialisation).
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s,;?#]+")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:[0-9]{1,5})?")


class _Section(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    transport: Literal["stdio", "websocket", "http"] = "stdio"
    stdio_io: Literal["auto", "threads", "fd"] = "auto"
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    #: This server's public URL (``https://host/mcp``): the JWT audience by default, and the
    #: ``resource`` of the RFC 9728 metadata.
    resource: str | None = None
    #: Browser ``Origin`` values accepted (exact match); requests with another Origin get 403.
    allowed_origins: tuple[str, ...] = ()
    #: ``Host`` values accepted (``name`` for any port, ``name:port``, ``"*"`` for any); others
    #: get 403. Empty: loopback names on a loopback address, any Host elsewhere (DNS rebinding:
    #: set it on a server others reach by name).
    allowed_hosts: tuple[str, ...] = ()
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "warning"
    log_format: Literal["text", "json"] = "text"
    #: Who may read /metrics (http): "public", "loopback" or "scope:NAME"; None: "scope:admin"
    #: when authentication is configured, else "public".
    metrics: str | None = None
    #: Addresses or networks of the proxies in front (``10.0.0.0/8``): only from them are
    #: forwarding headers believed, naming the client (its address, its scheme). Empty: none.
    trusted_proxies: tuple[str, ...] = ()
    #: Which forwarding headers those proxies write: "x-forwarded" (X-Forwarded-For and
    #: X-Forwarded-Proto) or "forwarded" (RFC 7239); the other family is never read.
    proxy_headers: Literal["x-forwarded", "forwarded"] = "x-forwarded"
    #: Serve HTTP through hypercorn (HTTP/2 as well as HTTP/1.1) instead of the h1 engine.
    http2: bool = False
    #: Also serve the 2024-11-05 HTTP+SSE transport (``GET /sse``, ``POST /messages``).
    legacy_sse: bool = False

    def __post_init__(self) -> None:
        if self.resource is not None and not self.resource.startswith(("https://", "http://")):
            raise ValueError("resource must be an absolute http(s) URL")
        if self.metrics is not None and self.metrics not in ("public", "loopback") and not (
                self.metrics.startswith("scope:") and len(self.metrics) > 6 and " " not in self.metrics):
            raise ValueError(f"metrics must be 'public', 'loopback' or 'scope:NAME', not {self.metrics!r}")
        for origin in self.allowed_origins:
            if _ORIGIN.fullmatch(origin) is None:
                raise ValueError(f"allowed origin {origin!r} must look like https://host[:port] (no path, one origin "
                                 "per entry; comma-separated in MCP_TRIO_SERVER_ALLOWED_ORIGINS)")
        if self.trusted_proxies:
            import ipaddress  # only a server behind proxies pays for it
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {proxy!r} must be an IP address or network like 10.0.0.0/8, 192.0.2.7 "
                                 "or 2001:db8::/32 (no names; comma-separated in MCP_TRIO_SERVER_TRUSTED_PROXIES)") from None
        for host in self.allowed_hosts:
            if host != "*" and _HOST.fullmatch(host) is None:
                raise ValueError(f"allowed host {host!r} must look like mcp.example.com, mcp.example.com:8443 or [::1] "
                                 "(no scheme, no path; comma-separated in MCP_TRIO_SERVER_ALLOWED_HOSTS)")


def _limits_struct() -> type[Struct]:
    """``LimitsConfig``: the fields of ``Limits``, same names, types and defaults."""
    hints = typing.get_type_hints(Limits)
    fields = [(f.name, hints[f.name], f.default) for f in msgspec.structs.fields(Limits)]
    return msgspec.defstruct("LimitsConfig", fields, bases=(_Section,), module=__name__)


LimitsConfig = _limits_struct()


class JwtConfig(_Section):
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jwks_uri: str | None = None
    jwks_file: str | None = None
    public_key_file: str | None = None
    public_key: str | None = None
    secret_file: str | None = None
    secret: str | None = None
    kid: str | None = None
    leeway: Annotated[float, Meta(ge=0, le=600)] = 30.0
    max_token_size: Annotated[int, Meta(ge=256, le=1024 * 1024)] = 8 * 1024
    scope_claims: tuple[str, ...] = ("scope", "scp")

    def __repr__(self) -> str:  # the secret never reaches a log line or a traceback
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f != "secret"}
        shown["secret"] = None if self.secret is None else "<hidden>"
        return "JwtConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def static_keys(self) -> bool:
        """Whether keys are configured here (files, PEM, secret) rather than fetched."""
        return any((self.jwks_file, self.public_key_file, self.public_key, self.secret_file, self.secret))

    @property
    def enabled(self) -> bool:
        """Static keys, a jwks_uri, or an issuer alone (its keys are discovered)."""
        return self.static_keys or bool(self.jwks_uri) or bool(self.issuer)


class IntrospectionConfig(_Section):
    """RFC 7662 token introspection, for opaque tokens (``[auth.introspection]``)."""

    endpoint: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    client_secret_file: str | None = None
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    scope_claims: tuple[str, ...] = ("scope",)
    cache_ttl: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    cache_size: Annotated[int, Meta(ge=1, le=10_000_000)] = 10_000
    max_concurrent: Annotated[int, Meta(ge=1, le=10_000)] = 16

    def __repr__(self) -> str:  # the secret never reaches a log line or a traceback
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f != "client_secret"}
        shown["client_secret"] = None if self.client_secret is None else "<hidden>"
        return "IntrospectionConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def enabled(self) -> bool:
        return bool(self.client_id or self.endpoint)


class ProviderConfig(_Section):
    """How the server fetches from the identity provider (``[auth.provider]``)."""

    timeout: Annotated[float, Meta(gt=0, le=120)] = 5.0
    max_response_size: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    max_redirects: Annotated[int, Meta(ge=0, le=10)] = 3
    ca_file: str | None = None
    allow_http_loopback: bool = False
    cache_min: Annotated[float, Meta(ge=1, le=86400)] = 60.0
    cache_max: Annotated[float, Meta(ge=1, le=30 * 86400)] = 86400.0
    cache_default: Annotated[float, Meta(ge=1, le=30 * 86400)] = 300.0
    refetch_interval: Annotated[float, Meta(ge=1, le=3600)] = 30.0
    stale_if_error: Annotated[float, Meta(ge=0, le=7 * 86400)] = 600.0


class ApiKeyConfig(_Section):
    name: str
    sha256: str
    scopes: tuple[str, ...] = ()


class AuthConfig(_Section):
    allow_anonymous: bool = False
    anonymous_scopes: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()
    api_key_prefix: str = "mcpk_"
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ("read", "write", "execute", "admin")
    trust_stdio: bool = True
    jwt: JwtConfig = field(default_factory=JwtConfig)
    introspection: IntrospectionConfig = field(default_factory=IntrospectionConfig)
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    api_keys: tuple[ApiKeyConfig, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether network transports authenticate at all (else every principal is None)."""
        return self.jwt.enabled or self.introspection.enabled or bool(self.api_keys) or self.allow_anonymous


class ToolRateConfig(_Section):
    cost: Annotated[float, Meta(gt=0)] = 1.0
    rate: Annotated[float, Meta(gt=0)] | None = None
    burst: Annotated[int, Meta(ge=0)] = 0


class RateLimitConfig(_Section):
    rate: Annotated[float, Meta(gt=0)] | None = None
    burst: Annotated[int, Meta(ge=0)] = DEFAULT_BURST
    max_concurrent: Annotated[int, Meta(ge=1)] | None = None
    tools: dict[str, ToolRateConfig] = {}
    max_keys: Annotated[int, Meta(ge=1)] = DEFAULT_MAX_KEYS


class RequestStateConfig(_Section):
    """Keys that seal ``requestState`` (protocol revision 2026-07-28, ``mcp_trio._request_state``)."""

    secret: str | None = None
    secret_file: str | None = None
    previous_secrets: tuple[str, ...] = ()
    ttl: Annotated[float, Meta(gt=0, le=86400)] = 600.0
    #: Single-use states (``@single_use_state`` tools) remembered until they expire, at most.
    max_spent: Annotated[int, Meta(ge=1)] = 100_000

    def __repr__(self) -> str:  # secrets never reach a log line or a traceback
        return (f"RequestStateConfig(secret={'<hidden>' if self.secret else None}, secret_file={self.secret_file!r}, "
                f"previous_secrets=<{len(self.previous_secrets)} hidden>, ttl={self.ttl!r}, max_spent={self.max_spent!r})")

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.secret_file)


class PluginsConfig(_Section):
    directories: tuple[str, ...] = ()
    entry_points: bool = False
    watch: bool = True


class ClusterConfig(_Section):
    """Cluster mode (``[cluster]``, docs/cluster.md): state shared on Redis. Off unless
    ``redis_url`` is set; then ``Config.cluster_settings()`` builds ``ClusterSettings``.

    The defaults are ``mcp_trio.cluster``'s, repeated so that loading a config imports
    nothing of cluster mode (a test keeps the two equal).
    """

    redis_url: str | None = None
    key_prefix: str = "mcp-trio:"
    connect_timeout: float = 5.0
    command_timeout: float = 1.0
    probe_interval: float = 1.0
    on_unavailable: Literal["closed", "local"] = "closed"
    session_ttl: float = 300.0
    events_per_session: int = 1024
    max_subscriptions: int = 1024
    task_ttl: float = 600.0
    max_tasks_per_subject: int = 1000
    stats_ttl: float = 7 * 24 * 3600.0
    max_counters: int = 10_000
    max_bus_message: int = 64 * 1024
    max_value_size: int = 4 * 1024 * 1024
    node_ttl: float = 5.0
    max_switches: int = 10_000

    def __repr__(self) -> str:  # the URL's password never reaches a log line or a traceback
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f != "redis_url"}
        url = self.redis_url
        if url is not None and "@" in url:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://<hidden>@{rest.rpartition('@')[2]}"
        return f"ClusterConfig(redis_url={url!r}, " + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


class TracingConfig(_Section):
    """OpenTelemetry tracing (``[tracing]``; ``pip install 'mcp-trio[otel]'``, docs/tracing.md)."""

    enabled: bool = False
    #: "otlp" (OTLP over HTTP/protobuf), "console" (stderr), "none" (recorded, then dropped).
    exporter: Literal["otlp", "console", "none"] = "otlp"
    #: The OTLP collector's base URL (``http://collector:4318``); None: ``OTEL_EXPORTER_OTLP_ENDPOINT``,
    #: else ``http://localhost:4318``.
    endpoint: str | None = None
    #: ``service.name`` of the spans; None: ``OTEL_SERVICE_NAME``, else the served app's name.
    service_name: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint is not None and not self.endpoint.startswith(("https://", "http://")):
            raise ValueError("endpoint must be an http(s) URL, the collector's base (http://collector:4318)")


class MountConfig(_Section):
    """One remote MCP server mounted under a prefix (the gateway, ``Server.mount(Remote(...))``):
    ``[[mount]]`` in the file, ``--mount PREFIX=TARGET`` on the command line."""

    prefix: str
    #: ``https://host/mcp`` or ``ws://host/ws`` (``url``), or a command spoken to over stdio
    #: (``command``: a list of arguments, or one string split as a shell would).
    url: str | None = None
    command: str | tuple[str, ...] | None = None
    #: A bearer token for the upstream, from a variable or a file (never in the file itself).
    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    #: Headers sent to it as written, and headers whose values come from variables.
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}
    era: Literal["auto", "handshake", "stateless"] = "auto"
    connect_timeout: Annotated[float, Meta(gt=0)] = 10.0
    request_timeout: Annotated[float, Meta(gt=0)] = 60.0
    max_concurrency: Annotated[int, Meta(ge=1)] = 32
    max_connections: Annotated[int, Meta(ge=1)] = 8
    #: Added to every mounted definition: scopes a caller must hold, tags to switch them by.
    scopes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from .offer._mount import PREFIX

        if not PREFIX.match(self.prefix):
            raise ValueError(f"mount prefix {self.prefix!r} must be 1 to 32 letters, digits or '-'")
        if (self.url is None) == (self.command is None):
            raise ValueError(f"mount {self.prefix!r}: give url (https://..., ws://...) or command (stdio), not both")
        if self.url is not None and not self.url.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"mount {self.prefix!r}: url must start with http://, https://, ws:// or wss:// "
                             "(a local server: command = [...])")
        if self.bearer_token_env is not None and self.bearer_token_file is not None:
            raise ValueError(f"mount {self.prefix!r}: give bearer_token_env or bearer_token_file, not both")

    def target(self) -> str | list[str]:
        if self.url is not None:
            return self.url
        if isinstance(self.command, str):
            import shlex

            return shlex.split(self.command.removeprefix("stdio:"))
        return list(self.command or ())

    def credentials(self, env: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
        """The bearer token and the headers, read now: a variable that is not set, or a file
        that is empty or cannot be read, is a ``ConfigError`` naming it (fail closed)."""
        where = f"[[mount]] {self.prefix!r}"
        token = None
        if self.bearer_token_env is not None:
            token = env.get(self.bearer_token_env, "").strip()
            if not token:
                raise ConfigError(f"{where}: bearer_token_env names {self.bearer_token_env}, which is not set: export it")
        elif self.bearer_token_file is not None:
            try:
                token = Path(self.bearer_token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{where}: bearer_token_file: cannot read {self.bearer_token_file}: "
                                  f"{exc.strerror or exc}") from None
            if not token:
                raise ConfigError(f"{where}: bearer_token_file {self.bearer_token_file} is empty: write the token into it")
        headers = dict(self.headers)
        for name, variable in self.headers_env.items():
            value = env.get(variable, "").strip()
            if not value:
                raise ConfigError(f"{where}: headers_env {name} names {variable}, which is not set: export it")
            headers[name] = value
        return token, headers

    def remote(self, env: Mapping[str, str]) -> Any:
        """The ``Remote`` to mount (``Server.mount(remote, prefix=self.prefix, ...)``)."""
        from .offer._remote import Remote

        token, headers = self.credentials(env)
        return Remote(self.target(), auth=token, headers=headers, era=self.era, connect_timeout=self.connect_timeout,
                      request_timeout=self.request_timeout, max_concurrency=self.max_concurrency,
                      max_connections=self.max_connections)


def parse_mount_flag(text: str) -> MountConfig:
    """``--mount PREFIX=TARGET``: ``weather=https://host/mcp``, ``ws://...``, or
    ``stdio:command args``."""
    prefix, sep, target = text.partition("=")
    if not sep or not target:
        raise ConfigError(f"--mount {text!r}: write PREFIX=TARGET, e.g. weather=https://weather.example/mcp or "
                          "tools=stdio:python -m tools")
    options: dict[str, Any] = {"prefix": prefix}
    if target.startswith("stdio:"):
        options["command"] = target
    else:
        options["url"] = target
    try:
        return msgspec.convert(options, MountConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"--mount {text!r}: {exc}") from None


def with_mount_flags(config: Config, flags: list[str] | None) -> Config:
    """``config`` with the ``--mount`` flags' mounts added after the file's and the
    environment's (flags add mounts; they replace none)."""
    if not flags:
        return config
    mounts = (*config.mount, *(parse_mount_flag(flag) for flag in flags))
    prefixes = [mount.prefix for mount in mounts]
    repeated = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if repeated:
        raise ConfigError(f"--mount: prefix {repeated[0]!r} is used twice: give each mount its own prefix")
    return msgspec.structs.replace(config, mount=mounts)


class Config(_Section):
    """Everything ``main`` needs to build and serve: pass it down, never store it globally."""

    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # type: ignore[valid-type]
    auth: AuthConfig = field(default_factory=AuthConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    request_state: RequestStateConfig = field(default_factory=RequestStateConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    mount: tuple[MountConfig, ...] = ()
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    # -- the objects the rest of the server takes --------------------------------------------
    def to_limits(self) -> Limits:
        try:
            return Limits(**msgspec.structs.asdict(self.limits))
        except ValueError as exc:
            raise ConfigError(f"[limits]: {exc}") from None

    def rate_limits(self) -> RateLimits | None:
        """The supervisor's admission policy, or None when nothing is limited."""
        rl = self.rate_limit
        if rl.rate is None and rl.max_concurrent is None and not rl.tools:
            return None
        try:
            tools = {name: ToolLimit(t.cost, t.rate, t.burst) for name, t in rl.tools.items()}
            return RateLimits(rate=rl.rate, burst=rl.burst, tools=tools, max_concurrent=rl.max_concurrent, max_keys=rl.max_keys)
        except ValueError as exc:
            raise ConfigError(f"[rate_limit]: {exc}") from None

    def cluster_settings(self) -> ClusterSettings | None:
        """The cluster's ``ClusterSettings`` (checked: a URL or value that cannot work is a
        ``ConfigError``), or None when ``[cluster] redis_url`` is not set. Only then is
        ``mcp_trio.cluster`` imported."""
        cluster = self.cluster
        if not cluster.redis_url:
            return None
        from .cluster import ClusterSettings, SettingError

        try:
            return ClusterSettings(**msgspec.structs.asdict(cluster))
        except SettingError as exc:
            raise ConfigError(str(exc)) from None

    def request_state_codec(self) -> RequestStateCodec:
        """The ``requestState`` sealer: the configured key(s), else a random key for this process."""
        from ._request_state import RequestStateCodec

        rs = self.request_state
        secret = rs.secret
        if secret is None and rs.secret_file is not None:
            try:
                secret = Path(rs.secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"[request_state] secret_file: cannot read {rs.secret_file}: {exc.strerror or exc}") from None
            if not secret:
                raise ConfigError(f"[request_state] secret_file: {rs.secret_file} is empty: write a secret of 32 bytes "
                                  "or more into it")
        keys = [k for k in (secret, *rs.previous_secrets) if k]
        try:
            return RequestStateCodec(keys or None, ttl=rs.ttl, max_spent=rs.max_spent)
        except ValueError as exc:
            raise ConfigError(f"[request_state]: {exc}") from None

    def audience(self) -> tuple[str, ...]:
        if self.auth.jwt.audience:
            return self.auth.jwt.audience
        return (self.server.resource,) if self.server.resource else ()

    def authenticator(self) -> Authenticator | None:
        """The ``Authenticator`` for network transports, or None when auth is not configured.

        Reads the key files now, and checks every URL, CA file and secret, so a bad setting
        stops the server at start, not at a request. Nothing is fetched here: ``mcp-trio
        serve`` fetches the provider's keys next (``Authenticator.prime``), before it serves.
        """
        from .auth import (
            ApiKey,
            ApiKeyStore,
            Authenticator,
            JwtVerifier,
            KeyLoadError,
            UrlError,
            load_jwks_file,
            load_pem,
            load_secret,
        )

        auth = self.auth
        if not auth.enabled:
            return None
        jwt = auth.jwt
        try:
            verifier: Any = None
            fetched = _Fetched(self)
            if jwt.enabled:
                if not jwt.issuer:
                    raise ConfigError("[auth.jwt] issuer is required when JWTs are accepted")
                audience = self.audience()
                if not audience:
                    raise ConfigError("[auth.jwt] needs an audience: set [server] resource (this server's URL) or [auth.jwt] audience")
                if jwt.static_keys:
                    if jwt.jwks_uri:
                        raise ConfigError("[auth.jwt] jwks_uri and static keys (jwks_file, public_key[_file], secret[_file]) "
                                          "exclude each other: keep one")
                    keys = []
                    if jwt.jwks_file:
                        keys += load_jwks_file(jwt.jwks_file, jwt.algorithms)
                    for pem in (_read(jwt.public_key_file, "public_key_file") if jwt.public_key_file else None, jwt.public_key):
                        if pem:
                            keys.append(load_pem(pem, jwt.algorithms, kid=jwt.kid))
                    secret = jwt.secret or (_read(jwt.secret_file, "secret_file").strip() if jwt.secret_file else None)
                    if secret:
                        keys.append(load_secret(secret, jwt.algorithms, kid=jwt.kid))
                    verifier = JwtVerifier(keys, issuer=jwt.issuer, audience=audience, algorithms=jwt.algorithms,
                                           leeway=jwt.leeway, max_token_size=jwt.max_token_size, scope_claims=jwt.scope_claims)
                else:
                    verifier = fetched.jwks_verifier(audience)
            introspection = fetched.introspector() if auth.introspection.enabled else None
            store = ApiKeyStore(ApiKey(k.name, k.sha256, frozenset(k.scopes)) for k in auth.api_keys) if auth.api_keys else None
            return Authenticator(
                jwt=verifier, introspection=introspection, api_keys=store, api_key_prefix=auth.api_key_prefix,
                allow_anonymous=auth.allow_anonymous, anonymous_scopes=auth.anonymous_scopes,
                required_scopes=auth.required_scopes, resource=self.server.resource,
                authorization_servers=auth.authorization_servers, scopes_supported=auth.scopes_supported,
            )
        except KeyLoadError as exc:
            raise ConfigError(f"[auth.jwt]: {exc}") from None
        except ConfigError:
            raise
        except UrlError as exc:
            raise ConfigError(f"[auth]: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"[auth]: {exc}") from None


class _Fetched:
    """Builds what fetches from the identity provider: one HTTP client and one metadata cache,
    shared by the JWKS verifier and the introspector. Every URL is checked here (at start)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.provider = config.auth.provider
        self._client: Any = None
        self._metadata: Any = None

    def client(self) -> Any:
        if self._client is None:
            import ssl

            from .auth import HttpClient

            provider = self.provider
            if provider.cache_min > provider.cache_max:
                raise ConfigError("[auth.provider] cache_min must not be above cache_max")
            context = None
            if provider.ca_file:
                try:
                    context = ssl.create_default_context(cafile=provider.ca_file)
                except ssl.SSLError:  # an OSError too: test it first
                    raise ConfigError(f"[auth.provider] ca_file: {provider.ca_file} holds no PEM CA certificate") from None
                except OSError as exc:
                    raise ConfigError(f"[auth.provider] ca_file: cannot read {provider.ca_file}: {exc.strerror or exc}") from None
            self._client = HttpClient(timeout=provider.timeout, max_response_size=provider.max_response_size,
                                      max_redirects=provider.max_redirects, ssl_context=context,
                                      allow_http_loopback=provider.allow_http_loopback)
        return self._client

    def url(self, url: str, where: str) -> str:
        from .auth import UrlError, check_url

        try:
            return check_url(url, allow_http_loopback=self.provider.allow_http_loopback)
        except UrlError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def metadata(self) -> Any:
        """The issuer's metadata document (discovered on first use), or a ConfigError."""
        if self._metadata is None:
            from .auth import CachedDocument, UrlError, check_issuer, discover

            issuer = self.config.auth.jwt.issuer
            assert issuer
            try:
                check_issuer(issuer, allow_http_loopback=self.provider.allow_http_loopback)
            except UrlError as exc:
                raise ConfigError(f"[auth.jwt] issuer (keys and endpoints are discovered from it): {exc}") from None
            client, provider = self.client(), self.provider
            self._metadata = CachedDocument(
                lambda: discover(client, issuer, minimum=provider.cache_min, maximum=provider.cache_max),
                what=f"the metadata of {issuer}", refetch_interval=provider.refetch_interval,
                stale_if_error=provider.stale_if_error)
        return self._metadata

    def jwks_verifier(self, audience: tuple[str, ...]) -> Any:
        from .auth import JwksVerifier

        jwt, provider = self.config.auth.jwt, self.provider
        assert jwt.issuer
        source: dict[str, Any] = ({"jwks_uri": self.url(jwt.jwks_uri, "[auth.jwt] jwks_uri")} if jwt.jwks_uri
                                  else {"metadata": self.metadata()})
        return JwksVerifier(self.client(), issuer=jwt.issuer, audience=audience, algorithms=jwt.algorithms,
                            leeway=jwt.leeway, max_token_size=jwt.max_token_size, scope_claims=jwt.scope_claims,
                            cache_min=provider.cache_min, cache_max=provider.cache_max,
                            cache_default=provider.cache_default, refetch_interval=provider.refetch_interval,
                            stale_if_error=provider.stale_if_error, **source)

    def introspector(self) -> Any:
        from .auth import Introspector

        settings, jwt = self.config.auth.introspection, self.config.auth.jwt
        if not settings.client_id:
            raise ConfigError("[auth.introspection] client_id is required: this server's client at the provider")
        secret = settings.client_secret
        if not secret and settings.client_secret_file:
            path = settings.client_secret_file
            try:
                secret = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"[auth.introspection] client_secret_file: cannot read {path}: {exc.strerror or exc}") from None
        if not secret:
            raise ConfigError("[auth.introspection] needs client_secret (or client_secret_file, "
                              "or MCP_TRIO_AUTH_INTROSPECTION_CLIENT_SECRET)")
        if settings.endpoint:
            source: dict[str, Any] = {"endpoint": self.url(settings.endpoint, "[auth.introspection] endpoint")}
        elif jwt.issuer:
            source = {"metadata": self.metadata()}
        else:
            raise ConfigError("[auth.introspection] needs endpoint, or [auth.jwt] issuer to discover it from")
        return Introspector(self.client(), client_id=settings.client_id, client_secret=secret,
                            auth_method=settings.auth_method, issuer=jwt.issuer, audience=self.config.audience(),
                            scope_claims=settings.scope_claims, cache_ttl=settings.cache_ttl,
                            cache_size=settings.cache_size, max_concurrent=settings.max_concurrent,
                            leeway=jwt.leeway, max_token_size=jwt.max_token_size,
                            refetch_interval=self.provider.refetch_interval, **source)


def _read(path: str, what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"[auth.jwt] {what}: cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        kind = "the HMAC secret (32 bytes or more)" if what == "secret_file" else "the PEM public key"
        raise ConfigError(f"[auth.jwt] {what}: {path} is empty: write {kind} into it")
    return text


# -- sources ------------------------------------------------------------------------------------
#: Keys holding file paths: relative ones in a config file are relative to that file.
_PATH_KEYS = (("auth", "jwt", "jwks_file"), ("auth", "jwt", "public_key_file"), ("auth", "jwt", "secret_file"),
              ("auth", "introspection", "client_secret_file"), ("auth", "provider", "ca_file"),
              ("request_state", "secret_file"))


def _leaves(struct: type, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], msgspec.inspect.Type]:
    """Every settable key below ``struct``, by path, with its type."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    out: dict[tuple[str, ...], msgspec.inspect.Type] = {}
    for f in info.fields:
        path = (*prefix, f.name)
        if isinstance(f.type, msgspec.inspect.StructType):
            out.update(_leaves(f.type.cls, path))
        else:
            out[path] = f.type
    return out


@functools.cache
def _settings() -> tuple[dict[tuple[str, ...], msgspec.inspect.Type], dict[str, tuple[str, ...]]]:
    """Every settable key by path (``_LEAVES``), and ``MCP_TRIO_SERVER_PORT`` -> ("server",
    "port") for every key (``ENV_VARS``). Worked out on first use: resolving the annotations
    of every section costs a stdio child's start-up a third of its own time, and a start with
    no ``MCP_TRIO_*`` variable and no flag never needs them."""
    leaves = _leaves(Config)
    env_vars = {ENV_PREFIX + "_".join(path).upper(): path for path in leaves}
    assert len(env_vars) == len(leaves), "two settings map to one environment variable"
    return leaves, env_vars


def __getattr__(name: str) -> Any:
    """``_LEAVES`` and ``ENV_VARS``, as module attributes, computed on first use (``_settings``)."""
    if name == "_LEAVES":
        return _settings()[0]
    if name == "ENV_VARS":
        return _settings()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _kind(tp: msgspec.inspect.Type) -> str:
    if isinstance(tp, msgspec.inspect.UnionType):
        kinds = {_kind(t) for t in tp.types if not isinstance(t, msgspec.inspect.NoneType)}
        return "optional:" + kinds.pop() if len(kinds) == 1 else "scalar"
    if isinstance(tp, msgspec.inspect.Metadata):
        return _kind(tp.type)
    if isinstance(tp, (msgspec.inspect.VarTupleType, msgspec.inspect.ListType)):
        return "json" if isinstance(tp.item_type, msgspec.inspect.StructType) else "list"
    if isinstance(tp, msgspec.inspect.DictType):
        return "json"
    return "scalar"


def _env_value(name: str, raw: str, tp: msgspec.inspect.Type) -> Any:
    kind = _kind(tp)
    if kind.startswith("optional:"):
        if raw == "":
            return None
        kind = kind.partition(":")[2]
    if kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if kind == "json":
        import json  # only a JSON-valued variable pays for it

        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: not valid JSON ({exc.msg})") from None
    return raw


def _nest(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return nested


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_SCHEMA: dict[str, Any] = {}


def _schema() -> dict[str, Any]:
    """The JSON Schema of ``Config``: the known keys and allowed values, for error messages."""
    if not _SCHEMA:
        _SCHEMA.update(msgspec.json.schema(Config))
    return _SCHEMA


def _subject(problem: Problem, source: str) -> str:
    """How a person names the setting in ``source``: ``MCP_TRIO_SERVER_PORT`` in the
    environment, ``server.port`` in a file or a flag."""
    from ._explain import join_path

    if source == "environment":
        for end in range(len(problem.parts), 0, -1):
            head = problem.parts[:end]
            if all(isinstance(p, str) for p in head) and head in _settings()[0]:
                rest = join_path(problem.parts[end:])
                variable = ENV_PREFIX + "_".join(head).upper()  # type: ignore[arg-type]
                return variable + (rest if rest.startswith("[") else f".{rest}" if rest else "")
        return ENV_PREFIX + "_".join(str(p).upper() for p in problem.parts)
    return problem.path or "the configuration"


def describe(problem: Problem, source: str) -> str:
    """One problem in plain words, with a next step where one is known."""
    text = problem.text(_subject(problem, source))
    if problem.constraint == "required" and problem.parts[:2] == ("auth", "api_keys"):
        text += " (`mcp-trio token --api-key --name NAME` prints a key and its entry)"
    return text


def _check(layer: Mapping[str, Any], source: str) -> None:
    """Every unknown key of ``layer`` at once (with a did-you-mean), else its first bad value.

    (Only errors import ``_explain`` and build the schema: a plain start pays for neither.
    Flags need no key check: ``from_overrides`` admits known keys only.)
    """
    if layer and source != "flags":
        from ._explain import unknown_keys

        unknown = unknown_keys(layer, _schema())
        if unknown:
            names = ", ".join(_subject(p, source) + p.rule.removeprefix("is unknown") for p in unknown)
            raise ConfigError(f"{source}: unknown setting{'s' if len(unknown) > 1 else ''} {names}; "
                              "docs/security.md lists every key")
    try:
        msgspec.convert(layer, Config, strict=False)
    except msgspec.ValidationError as exc:
        from ._explain import explain

        raise ConfigError(f"{source}: {describe(explain(exc, layer, _schema()), source)}") from None


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML file as a dict, relative key-file paths made relative to its directory."""
    import tomllib  # only a start with a config file pays for it

    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}: check --config "
                          f"(or ${CONFIG_ENV})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}: fix the file") from None
    for keys in _PATH_KEYS:
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = str((file.parent / node[keys[-1]]).resolve())
    for mount in data.get("mount", []) if isinstance(data.get("mount"), list) else []:
        if isinstance(mount, dict) and isinstance(mount.get("bearer_token_file"), str):
            mount["bearer_token_file"] = str((file.parent / mount["bearer_token_file"]).resolve())
    plugins = data.get("plugins")
    if isinstance(plugins, dict) and isinstance(plugins.get("directories"), list):
        plugins["directories"] = [str((file.parent / d).resolve()) if isinstance(d, str) else d for d in plugins["directories"]]
    return data


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``MCP_TRIO_*`` variables of ``env`` as a nested dict of (still textual) settings."""
    flat: dict[tuple[str, ...], Any] = {}
    unknown: list[str] = []
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        leaves, env_vars = _settings()
        path = env_vars.get(name)
        if path is None:
            from ._explain import suggest

            unknown.append(name + suggest(name, list(env_vars)))
            continue
        flat[path] = _env_value(name, raw, leaves[path])
    if unknown:
        raise ConfigError(f"unknown environment variable{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))}: "
                          "unset or rename (docs/security.md lists every setting)")
    return _nest(flat)


def from_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Flags as ``{"server.port": 9000}`` (dotted) or nested dicts; None values are skipped."""
    flat: dict[tuple[str, ...], Any] = {}
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            path = tuple(key.split("."))
            if key not in _FLAG_SETTINGS and path not in _settings()[0]:
                from ._explain import suggest

                raise ConfigError(f"unknown setting {key!r}{suggest(key, ['.'.join(p) for p in _settings()[0]])}")
            flat[path] = value
        else:
            nested = _merge(nested, {key: value})
    return _merge(nested, _nest(flat))


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The configuration from ``path`` (or ``$MCP_TRIO_CONFIG``), ``env`` (default
    ``os.environ``) and ``overrides`` (flags), each layer over the one before.

    Raises ``ConfigError`` naming the source (file, environment, flags) of a bad setting.
    """
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((str(path), read_file(path)))
    layers.append(("environment", from_env(env)))
    layers.append(("flags", from_overrides(overrides or {})))
    merged: dict[str, Any] = {}
    for source, layer in layers:
        _check(layer, source)  # so an error names the layer it came from
        merged = _merge(merged, layer)
    try:
        config = msgspec.convert(merged, Config, strict=False)
    except msgspec.ValidationError as exc:
        from ._explain import explain

        raise ConfigError(f"configuration: {describe(explain(exc, merged, _schema()), 'configuration')}") from None
    config.to_limits()  # cross-field checks now, not when serving starts
    config.rate_limits()
    config.cluster_settings()  # a Redis URL that cannot work stops the server now
    check_security(config, merged, env)
    if config.request_state.configured:
        config.request_state_codec()  # a short or unreadable key stops the server now
    return config


def _given(merged: Mapping[str, Any], *path: str) -> bool:
    node: Any = merged
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def check_security(config: Config, merged: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """Fail closed: a security setting that is present but cannot work stops the server.

    Without these checks each of them would leave a server running in a weaker state than
    its operator wrote down, and say nothing: an ``[auth.jwt]`` table whose secret was never
    exported served everyone; ``required_scopes`` with no way to authenticate checked
    nothing; a ``[request_state]`` with only old keys sealed with a random one; an
    ``allowed_origins`` variable that held only commas allowed no origin at all.
    (Key *files* are read, and an empty or unreadable one refused, by ``authenticator``;
    ``trust_stdio = false`` is refused where the transport is known, by ``mcp-trio serve``.)
    """
    auth, jwt = config.auth, config.auth.jwt
    if jwt != JwtConfig() and not jwt.enabled:
        raise ConfigError("[auth.jwt] is set but has no key to verify tokens with: export MCP_TRIO_AUTH_JWT_SECRET "
                          "(32 bytes or more), or set secret_file, public_key_file or jwks_file in [auth.jwt]")
    if auth != AuthConfig(trust_stdio=auth.trust_stdio) and not auth.enabled:
        raise ConfigError("[auth] is set but no caller can be authenticated: add [auth.jwt] with a key, or "
                          "[[auth.api_keys]] (mcp-trio token --api-key makes one), or allow_anonymous = true")
    rs = config.request_state
    if (rs.previous_secrets or _given(merged, "request_state", "secret")) and not rs.configured:
        raise ConfigError("[request_state] has no current secret: set secret (32 bytes or more), secret_file or "
                          "MCP_TRIO_REQUEST_STATE_SECRET")
    if _given(merged, "server", "allowed_origins") and not config.server.allowed_origins:
        raise ConfigError("server.allowed_origins is set but names no origin: give origins like "
                          "https://app.example.com (comma-separated in MCP_TRIO_SERVER_ALLOWED_ORIGINS), or unset it")
    if _given(merged, "server", "trusted_proxies") and not config.server.trusted_proxies:
        raise ConfigError("server.trusted_proxies is set but names no proxy: give addresses or networks like 10.0.0.0/8 "
                          "(comma-separated in MCP_TRIO_SERVER_TRUSTED_PROXIES), or unset it")
    prefixes = [mount.prefix for mount in config.mount]
    repeated = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if repeated:
        raise ConfigError(f"[[mount]]: prefix {repeated[0]!r} is used twice: give each mount its own prefix")
    for mount in config.mount:
        mount.credentials(os.environ if env is None else env)  # a token variable not exported stops the server now
    if _given(merged, "server", "allowed_hosts") and not config.server.allowed_hosts:
        raise ConfigError("server.allowed_hosts is set but names no host: give hosts like mcp.example.com "
                          "(comma-separated in MCP_TRIO_SERVER_ALLOWED_HOSTS), or unset it")


# -- flags (the CLI maps its options here) -------------------------------------------------------
#: argparse ``dest`` -> setting. A flag must default to None, so that "not given" lets the
#: environment and the file speak (flags > env > file > defaults).
FLAG_KEYS: dict[str, str] = {
    "transport": "server.transport",
    "stdio_io": "server.stdio_io",
    "host": "server.host",
    "port": "server.port",
    "resource": "server.resource",
    "allowed_origins": "server.allowed_origins",
    "allowed_hosts": "server.allowed_hosts",
    "log_level": "server.log_level",
    "log_format": "server.log_format",
    "metrics": "server.metrics",
    "trusted_proxies": "server.trusted_proxies",
    "proxy_headers": "server.proxy_headers",
    "http2": "server.http2",
    "legacy_sse": "server.legacy_sse",
    "rate_limit": "rate_limit.rate",
    "burst": "rate_limit.burst",
    "max_concurrent": "rate_limit.max_concurrent",
    "allow_anonymous": "auth.allow_anonymous",
    "plugins": "plugins.directories",
    "plugin_packages": "plugins.entry_points",
    "watch_plugins": "plugins.watch",
    "redis": "cluster.redis_url",
    "tracing": "tracing.enabled",
    **{name: f"limits.{name}" for name in (f.name for f in msgspec.structs.fields(Limits))},
}


#: The settings flags map to (known to exist: no need to look them up among all settings).
_FLAG_SETTINGS = frozenset(FLAG_KEYS.values())


def overrides_from_args(args: Any) -> dict[str, Any]:
    """The settings given as flags on ``args`` (an ``argparse.Namespace``); absent ones skipped."""
    return {key: getattr(args, dest) for dest, key in FLAG_KEYS.items() if getattr(args, dest, None) is not None}


def add_config_arguments(parser: Any) -> None:
    """Add ``--config`` and the server/auth/rate-limit flags that ``FLAG_KEYS`` maps (all
    defaulting to None). Limits, transport and log flags are left to the caller's parser."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML configuration file (default: ${CONFIG_ENV}, else none)")
    parser.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    from ._usage import port_number

    parser.add_argument("--port", type=port_number, default=None, help="port to listen on (default: 8000; 0: any free port)")
    parser.add_argument("--resource", default=None, metavar="URL",
                        help="this server's public URL: the JWT audience and RFC 9728 resource")
    parser.add_argument("--allowed-origin", dest="allowed_origins", action="append", default=None, metavar="ORIGIN",
                        help="a browser Origin to accept (repeatable)")
    parser.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=None, metavar="HOST",
                        help="a Host header value to accept: name or name:port (repeatable; default: loopback "
                             "names on a loopback address, any elsewhere)")
    parser.add_argument("--trusted-proxy", dest="trusted_proxies", action="append", default=None, metavar="CIDR",
                        help="an address or network of a proxy in front (repeatable): only from these are "
                             "X-Forwarded-For/-Proto (or Forwarded) believed (default: none)")
    parser.add_argument("--proxy-headers", choices=["x-forwarded", "forwarded"], default=None,
                        help="which forwarding headers the trusted proxies write (default: x-forwarded)")
    parser.add_argument("--rate-limit", type=float, default=None, metavar="PER_SECOND",
                        help="requests per second per principal (default: no limit)")
    parser.add_argument("--burst", type=int, default=None, metavar="N",
                        help=f"requests saved up above the rate (default: {DEFAULT_BURST})")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                        help="requests running server-wide before new ones are refused (default: no cap)")
    parser.add_argument("--allow-anonymous", action="store_true", default=None,
                        help="serve callers without a credential as 'anonymous'")
