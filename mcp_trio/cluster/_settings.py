"""Cluster settings: one Redis URL turns cluster mode on; everything else has a named default.

Parsing the URL needs no Redis client, so a configuration can be checked (and refused with
one line) without importing one. The URL forms, all with optional ``user:password@``:

* ``redis://host[:port][/db]`` and ``rediss://…`` (TLS): one Redis server;
* ``unix:///path/to/redis.sock[?db=N]``: one server on a Unix socket;
* ``redis+sentinel://host:port[,host:port…]/service[/db]`` (``rediss+sentinel://``): the
  primary of ``service`` as the Sentinels name it, followed across fail-overs;
* ``redis+cluster://host:port[,host:port…]`` (``rediss+cluster://``): a Redis Cluster, from
  any of its nodes (keys that one script touches share a hash tag, so they share a slot).

TLS options ride in the query: ``ssl_ca_certs`` (a CA file or directory), ``ssl_certfile`` and
``ssl_keyfile`` (a client certificate), ``ssl_cert_reqs=required|optional|none`` (default
``required``: the server's certificate is verified, and its name unless
``ssl_check_hostname=false``). ``sentinel_password`` (and ``sentinel_username``) authenticate
to Sentinels that need it; the URL's own credentials are for Redis itself.
"""

from __future__ import annotations

import math
import os
import ssl
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

#: Prefix of every key and channel, so several services (or environments) share one Redis.
DEFAULT_KEY_PREFIX = "mcp-trio:"
#: Longest key prefix accepted (it is repeated in every key).
MAX_KEY_PREFIX_LENGTH = 64
#: Seconds the first connection (and its checks) may take at start before the server gives up.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds one round trip (a rate-limit batch, a session read) may take before Redis is deemed
#: unreachable for that call.
DEFAULT_COMMAND_TIMEOUT = 1.0
#: Seconds between attempts to reach Redis again after a failure; meanwhile calls are answered
#: by the failure policy at once instead of each waiting for a timeout.
DEFAULT_PROBE_INTERVAL = 1.0
#: What a rate-limit decision does while Redis is unreachable: ``"closed"`` refuses the request
#: (503 with ``Retry-After``), ``"local"`` decides with this process's own buckets.
DEFAULT_ON_UNAVAILABLE: OnUnavailable = "closed"
#: Seconds an idle handshake-era HTTP session's profile and events live in Redis (every use
#: renews it); the same as the per-process ``Limits.idle_timeout`` default.
DEFAULT_SESSION_TTL = 300.0
#: Events kept per session for ``Last-Event-ID`` replay (``XADD MAXLEN ~``: Redis may keep a
#: few more until it can trim a whole node).
DEFAULT_EVENTS_PER_SESSION = 1024
#: Resource subscriptions one session may hold.
DEFAULT_MAX_SUBSCRIPTIONS = 1024
#: Seconds a task stays readable after its last update (as the local ``DEFAULT_TASK_TTL_MS``).
DEFAULT_TASK_TTL = 600.0
#: Tasks one caller may have stored at once, cluster-wide.
DEFAULT_MAX_TASKS_PER_SUBJECT = 1000
#: Seconds the cluster-wide counters live after their last update.
DEFAULT_STATS_TTL = 7 * 24 * 3600.0
#: Distinct counter names kept cluster-wide; a new name past it is dropped (and counted).
DEFAULT_MAX_COUNTERS = 10_000
#: Largest control-plane message on the cluster bus, in bytes.
DEFAULT_MAX_BUS_MESSAGE = 64 * 1024
#: Largest value (a session profile, an event, a task outcome) stored in Redis, in bytes.
DEFAULT_MAX_VALUE_SIZE = 4 * 1024 * 1024
#: Seconds a server process counts as alive after its last heartbeat (it beats three times
#: per period): past it, the tasks it was running are reported failed to whoever asks.
DEFAULT_NODE_TTL = 5.0
#: Tool and tag switches kept cluster-wide (``/admin``); past it a new switch is refused.
DEFAULT_MAX_SWITCHES = 10_000

OnUnavailable = Literal["closed", "local"]
Topology = Literal["single", "sentinel", "cluster"]

_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"})
_KNOWN_OPTIONS = _TLS_OPTIONS | {"db", "sentinel_username", "sentinel_password"}


class SettingError(ValueError):
    """A cluster setting that cannot work; the message is one line naming the setting and the fix."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where Redis (or one Sentinel, or one cluster seed node) listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The parsed URL: what to connect to and how; ``str()`` never shows a password."""

    topology: Topology
    tls: bool
    endpoints: tuple[Endpoint, ...] = ()
    unix_path: str | None = None
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: tuple[tuple[str, str], ...] = ()
    scheme: str = "redis"

    def __str__(self) -> str:
        user = quote(self.username or "", safe="") if self.username else ""
        auth = f"{user}:***@" if self.password else (f"{user}@" if user else "")
        if self.unix_path is not None:
            return f"unix://{auth}{self.unix_path}"
        hosts = ",".join(map(str, self.endpoints))
        path = f"/{self.service}" if self.service else ""
        db = f"/{self.db}" if self.db else ""
        return f"{self.scheme}://{auth}{hosts}{path}{db}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``rediss`` URLs (verifying by default), else None."""
        if not self.tls:
            return None
        options = dict(self.tls_options)
        reqs = _CERT_REQS[options.get("ssl_cert_reqs", "required")]
        context = ssl.create_default_context()
        ca = options.get("ssl_ca_certs")
        if ca:
            context.load_verify_locations(**{("capath" if os.path.isdir(ca) else "cafile"): ca})
        if options.get("ssl_certfile"):
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
        check = options.get("ssl_check_hostname", "true" if reqs == ssl.CERT_REQUIRED else "false")
        context.check_hostname = check == "true"
        context.verify_mode = reqs
        return context


def parse_redis_url(url: str) -> RedisTarget:
    """Parse and check ``url``; raises ``SettingError`` (one line) when it cannot work."""
    where = "cluster.redis_url"
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        shown = scheme if sep else url[:20]
        raise SettingError(f"{where}: unsupported URL {shown!r}; use redis://, rediss://, unix://, "
                           "redis+sentinel:// or redis+cluster:// (TLS: rediss…)")
    topology, tls = _SCHEMES[scheme]
    parts = urlsplit(url)
    options = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if unknown:
        raise SettingError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN_OPTIONS))}")
    if not tls and _TLS_OPTIONS & set(options):
        raise SettingError(f"{where}: TLS options need a rediss:// URL (got {scheme}://)")
    if options.get("ssl_cert_reqs", "required") not in _CERT_REQS:
        raise SettingError(f"{where}: ssl_cert_reqs must be required, optional or none (got {options['ssl_cert_reqs']!r})")
    if options.get("ssl_check_hostname", "true") not in ("true", "false"):
        raise SettingError(f"{where}: ssl_check_hostname must be true or false")
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if options.get(name) and not os.path.exists(options[name]):
            raise SettingError(f"{where}: {name} {options[name]!r} does not exist")
    if options.get("ssl_keyfile") and not options.get("ssl_certfile"):
        raise SettingError(f"{where}: ssl_keyfile needs ssl_certfile")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    db = _int(options.get("db", "0"), f"{where}: db")
    tls_options = tuple(sorted((k, v) for k, v in options.items() if k in _TLS_OPTIONS))
    common = dict(topology=topology, tls=tls, username=username, password=password, tls_options=tls_options,
                  scheme=scheme, sentinel_username=options.get("sentinel_username") or None,
                  sentinel_password=options.get("sentinel_password") or None)
    if scheme == "unix":
        if not parts.path:
            raise SettingError(f"{where}: unix:// needs a socket path (unix:///run/redis.sock)")
        return RedisTarget(unix_path=unquote(parts.path), db=db, **common)  # type: ignore[arg-type]
    endpoints = tuple(_endpoint(item, 26379 if topology == "sentinel" else 6379) for item in hostlist.split(",") if item)
    if not endpoints:
        raise SettingError(f"{where}: no host in {scheme}:// URL")
    if topology == "single" and len(endpoints) > 1:
        raise SettingError(f"{where}: several hosts need redis+sentinel:// or redis+cluster://")
    path = [unquote(p) for p in parts.path.split("/") if p]
    service = None
    if topology == "sentinel":
        if not path:
            raise SettingError(f"{where}: redis+sentinel:// needs the service name (…/mymaster)")
        service, path = path[0], path[1:]
    if len(path) > 1:
        raise SettingError(f"{where}: unexpected path {parts.path!r}")
    if path:
        db = _int(path[0], f"{where}: database number")
    if topology == "cluster" and db:
        raise SettingError(f"{where}: Redis Cluster has only database 0")
    return RedisTarget(endpoints=endpoints, service=service, db=db, **common)  # type: ignore[arg-type]


def _endpoint(text: str, default_port: int) -> Endpoint:
    host, port = text, default_port
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        if tail.startswith(":"):
            port = _int(tail[1:], "cluster.redis_url: port")
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = _int(number, "cluster.redis_url: port")
    if not host or not 0 < port < 65536:
        raise SettingError(f"cluster.redis_url: bad host:port {text!r}")
    return Endpoint(host, port)


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{what} must be a whole number (got {text!r})") from None
    if value < 0:
        raise SettingError(f"{what} must not be negative (got {value})")
    return value


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Everything cluster mode needs to know; ``redis_url`` is the one required setting.

    Build it with ``ClusterSettings(redis_url=...)``: the URL and every value are checked here,
    so a setting that cannot work stops the server at start with one line (``SettingError``).
    """

    redis_url: str
    key_prefix: str = DEFAULT_KEY_PREFIX
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    on_unavailable: OnUnavailable = DEFAULT_ON_UNAVAILABLE
    session_ttl: float = DEFAULT_SESSION_TTL
    events_per_session: int = DEFAULT_EVENTS_PER_SESSION
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    task_ttl: float = DEFAULT_TASK_TTL
    max_tasks_per_subject: int = DEFAULT_MAX_TASKS_PER_SUBJECT
    stats_ttl: float = DEFAULT_STATS_TTL
    max_counters: int = DEFAULT_MAX_COUNTERS
    max_bus_message: int = DEFAULT_MAX_BUS_MESSAGE
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE
    node_ttl: float = DEFAULT_NODE_TTL
    max_switches: int = DEFAULT_MAX_SWITCHES
    target: RedisTarget = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", parse_redis_url(self.redis_url))
        prefix = self.key_prefix
        if len(prefix) > MAX_KEY_PREFIX_LENGTH or any(c in prefix for c in "{} \t\r\n"):
            raise SettingError(f"cluster.key_prefix {prefix!r} must be at most {MAX_KEY_PREFIX_LENGTH} characters, "
                               "without braces or spaces (e.g. 'weather:')")
        for name in ("connect_timeout", "command_timeout", "probe_interval", "session_ttl", "task_ttl", "stats_ttl",
                     "node_ttl"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise SettingError(f"cluster.{name} must be a positive number of seconds (got {value!r})")
        for name in ("events_per_session", "max_subscriptions", "max_tasks_per_subject", "max_counters",
                     "max_bus_message", "max_value_size", "max_switches"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SettingError(f"cluster.{name} must be a whole number of at least 1 (got {value!r})")
        if self.on_unavailable not in ("closed", "local"):
            raise SettingError(f"cluster.on_unavailable must be 'closed' or 'local' (got {self.on_unavailable!r})")

    @property
    def where(self) -> str:
        """The Redis URL as it may be shown and logged (no password)."""
        return str(self.target)
