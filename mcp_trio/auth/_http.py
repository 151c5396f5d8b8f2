"""A small HTTP/1.1 client for talking to the identity provider (discovery, JWKS, introspection).

Why our own, on h11 and trio's ``SSLStream``, rather than httpx: the server already carries h11
(hypercorn and trio-websocket use it) and trio's TLS, and what the identity provider needs is
narrow: a GET of a small JSON document and a form POST, each with a hard deadline, a response
size cap, a redirect cap and one-line errors. Owning those few hundred lines keeps every limit
exact (the size cap counts bytes as they arrive; the deadline covers connect, TLS and the last
byte) and adds no dependency tree (httpx brings httpcore, anyio, certifi, idna, sniffio). Idle
connections are kept per origin and reused, so an introspection call on a cache miss does not
pay a TCP and TLS handshake each time (``bench/auth_verify.py``, TLS on loopback, one run:
0.44 ms a call on a reused connection, 2.8 ms on a new one; httpx2, pooled, 0.85 ms).

Not supported, on purpose: proxies (``HTTPS_PROXY`` is not read), compression, HTTP/2,
cookies. Plain ``http://`` is refused unless ``allow_http_loopback`` is set, and then only to a
loopback address (tests, an identity provider on the same host).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import h11
import trio

from ._jwt import strict_json

logger = logging.getLogger("mcp_trio.auth")

#: Seconds one fetch may take, from connecting to the last byte of the answer.
DEFAULT_TIMEOUT = 5.0
#: Largest answer accepted, in bytes (a JWKS of a few keys is a few KiB).
DEFAULT_MAX_RESPONSE_SIZE = 1024 * 1024
#: Redirects followed by a GET; a POST follows none.
DEFAULT_MAX_REDIRECTS = 3
#: Idle connections kept per origin for reuse, and for how long.
MAX_IDLE_PER_ORIGIN = 4
IDLE_TIMEOUT = 30.0
#: Largest status line plus headers accepted.
MAX_HEADER_SIZE = 16 * 1024
USER_AGENT = "mcp-trio"
_RECEIVE_SIZE = 65536
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """A request to the identity provider failed; the message is one line: what, and why."""


class UrlError(ValueError):
    """A configured URL cannot be used (not absolute, not https, carries credentials...)."""


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http_loopback: bool = False) -> str:
    """``url`` if it is an absolute https URL (or http to loopback when allowed); else ``UrlError``."""
    if not isinstance(url, str) or any(ch.isspace() for ch in url):
        raise UrlError(f"{url!r} is not a URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError:
        raise UrlError(f"{url!r} has a malformed port") from None
    if scheme not in ("https", "http") or not host:
        raise UrlError(f"{url!r} is not an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise UrlError(f"{url!r} carries credentials; configure them separately")
    if parts.fragment:
        raise UrlError(f"{url!r} has a #fragment")
    if scheme == "http":
        if not allow_http_loopback:
            raise UrlError(f"{url!r} is plain http: use https (http is allowed only to a loopback host, "
                           "with [auth.provider] allow_http_loopback = true)")
        if not is_loopback_host(host):
            raise UrlError(f"{url!r} is plain http to a host that is not loopback: use https")
    return url


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete answer: status, headers (names lower-case), body, and the URL that gave it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        """The header's values joined by ``, `` (RFC 9110 §5.3), or None."""
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        """The body as JSON (duplicate members, NaN and Infinity refused), or ``FetchError``."""
        try:
            return strict_json(self.body)
        except (ValueError, RecursionError):
            raise FetchError(f"{self.url}: the answer is not JSON") from None


class _Connection:
    __slots__ = ("http", "idle_since", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SIZE)
        self.idle_since = 0.0


class _Stale(Exception):
    """A reused idle connection turned out to be closed by the server before it answered."""


Origin = tuple[str, str, int]


class HttpClient:
    """GETs and form POSTs to the identity provider, with a deadline, size cap and redirect cap.

    ``timeout``: seconds for one call, connect to last byte, redirects included (default 5);
    ``max_response_size``: bytes (default 1 MiB); ``max_redirects``: followed by ``get``
    (default 3; never from https to http); ``ssl_context``: whom to trust (default: the
    system's CAs); ``allow_http_loopback``: permit ``http://`` to loopback hosts.
    Every failure is ``FetchError`` with a one-line message.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        ssl_context: ssl.SSLContext | None = None,
        allow_http_loopback: bool = False,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.max_response_size = max_response_size
        self.max_redirects = max_redirects
        self.allow_http_loopback = allow_http_loopback
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._idle: dict[Origin, list[_Connection]] = {}
        #: Connections opened so far (a reused one is not counted again).
        self.connections_opened = 0

    async def get(self, url: str) -> HttpResponse:
        """GET ``url``, following up to ``max_redirects`` redirects."""
        first = url
        with trio.move_on_after(self.timeout) as deadline:
            for _ in range(self.max_redirects + 1):
                response = await self._request("GET", url, (), None)
                if response.status not in _REDIRECTS:
                    return response
                location = response.header("location")
                if not location:
                    raise FetchError(f"GET {url}: redirect {response.status} without a Location")
                target = urljoin(url, location)
                try:
                    check_url(target, allow_http_loopback=self.allow_http_loopback)
                except UrlError as exc:
                    raise FetchError(f"GET {url}: redirected to a URL that is not allowed ({exc})") from None
                if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
                    raise FetchError(f"GET {url}: redirected from https to http, refused")
                url = target
            raise FetchError(f"GET {first}: more than {self.max_redirects} redirects")
        assert deadline.cancelled_caught
        raise FetchError(f"GET {first}: no complete answer within {self.timeout:g} s")

    async def post_form(self, url: str, fields: Mapping[str, str], headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
        """POST ``fields`` as ``application/x-www-form-urlencoded``; a redirect is an error."""
        body = urlencode(fields).encode("ascii")
        with trio.move_on_after(self.timeout) as deadline:
            response = await self._request("POST", url, tuple(headers), body)
            if response.status in _REDIRECTS:
                raise FetchError(f"POST {url}: answered a redirect ({response.status}); configure the URL it points to")
            return response
        assert deadline.cancelled_caught
        raise FetchError(f"POST {url}: no complete answer within {self.timeout:g} s")

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await trio.aclose_forcefully(connection.stream)

    # -- one exchange ---------------------------------------------------------------------------
    async def _request(self, method: str, url: str, headers: tuple[tuple[str, str], ...], body: bytes | None) -> HttpResponse:
        try:
            check_url(url, allow_http_loopback=self.allow_http_loopback)
        except UrlError as exc:
            raise FetchError(f"{method} {url}: {exc}") from None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        origin = (scheme, host, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rpartition("@")[2]
        request_headers = [("Host", netloc), ("User-Agent", USER_AGENT), ("Accept", "application/json"),
                           ("Accept-Encoding", "identity"), *headers]
        if body is not None:
            request_headers += [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(body)))]
        request = h11.Request(method=method, target=target, headers=request_headers)
        connection = await self._reuse(origin)
        if connection is not None:
            try:
                return await self._exchange(connection, origin, request, body, url, reused=True)
            except _Stale:
                logger.debug("idle connection to %s was closed by the server; reconnecting", host)
        connection = await self._connect(origin, method, url)
        try:
            return await self._exchange(connection, origin, request, body, url, reused=False)
        except _Stale:  # pragma: no cover - only raised for reused connections
            raise FetchError(f"{method} {url}: the server closed the connection without answering") from None

    async def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = trio.current_time()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < IDLE_TIMEOUT:
                return connection
            await trio.aclose_forcefully(connection.stream)  # too old to trust
        return None

    async def _connect(self, origin: Origin, method: str, url: str) -> _Connection:
        scheme, host, port = origin
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise FetchError(f"{method} {url}: cannot connect to {host}:{port} ({exc.strerror or exc})") from None
        self.connections_opened += 1
        if scheme == "https":
            tls = trio.SSLStream(stream, self._ssl, server_hostname=host, https_compatible=True)
            try:
                await tls.do_handshake()
            except BaseException as exc:
                await trio.aclose_forcefully(stream)
                if not isinstance(exc, trio.BrokenResourceError):
                    raise  # cancelled: the deadline's message is the caller's to give
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise FetchError(f"{method} {url}: TLS certificate not trusted ({cause.verify_message}); "
                                     "to trust a private CA set [auth.provider] ca_file") from None
                raise FetchError(f"{method} {url}: TLS handshake failed ({cause or exc})") from None
            stream = tls
        return _Connection(stream)

    async def _exchange(self, connection: _Connection, origin: Origin, request: h11.Request, body: bytes | None,
                        url: str, *, reused: bool) -> HttpResponse:
        http = connection.http
        started = False
        try:
            try:
                data = http.send(request) or b""
                if body:
                    data += http.send(h11.Data(data=body)) or b""
                data += http.send(h11.EndOfMessage()) or b""
                await connection.stream.send_all(data)
                status = 0
                response_headers: tuple[tuple[str, str], ...] = ()
                chunks: list[bytes] = []
                size = 0
                while True:
                    event = http.next_event()
                    if event is h11.NEED_DATA:
                        http.receive_data(bytes(await connection.stream.receive_some(_RECEIVE_SIZE)))
                        continue
                    started = True
                    if isinstance(event, h11.InformationalResponse):
                        continue
                    if isinstance(event, h11.Response):
                        status = event.status_code
                        # h11 caps a head that arrives in pieces; this caps one that arrives whole.
                        if sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_HEADER_SIZE:
                            raise h11.RemoteProtocolError(f"headers over {MAX_HEADER_SIZE} bytes")
                        response_headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
                        length = next((v for k, v in response_headers if k == "content-length"), None)
                        if length is not None and length.isdigit() and int(length) > self.max_response_size:
                            raise FetchError(f"{request.method.decode()} {url}: the answer is {int(length)} bytes, "
                                             f"over the {self.max_response_size} byte limit")
                    elif isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > self.max_response_size:
                            raise FetchError(f"{request.method.decode()} {url}: the answer is over the "
                                             f"{self.max_response_size} byte limit")
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed before the end of the answer
                        raise h11.RemoteProtocolError("connection closed mid-answer")
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError, OSError) as exc:
                if reused and not started:
                    raise _Stale() from None
                what = "the connection broke" if not isinstance(exc, h11.RemoteProtocolError) else f"bad HTTP answer ({exc})"
                raise FetchError(f"{request.method.decode()} {url}: {what}") from None
        except BaseException:
            await trio.aclose_forcefully(connection.stream)
            raise
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            connection.idle_since = trio.current_time()
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
            else:
                await trio.aclose_forcefully(connection.stream)
        else:
            await trio.aclose_forcefully(connection.stream)
        return HttpResponse(status, response_headers, b"".join(chunks), url)

