"""HTTP/1.1 request framing: bytes in, whole requests (or one refusal) out, no I/O.

``RequestParser.feed(data)`` runs httptools (Node's llhttp, strict mode) over the bytes and
appends to ``ready``, in order, a ``Request`` for every request received whole (head and
body), or a ``Refusal`` — after which nothing more is parsed and the connection is to be
answered and closed. Everything the engine promises about framing is decided here, so it is
tested without a socket:

* llhttp refuses the request-smuggling shapes itself: Content-Length with Transfer-Encoding,
  two Content-Lengths, a bad chunk size, obs-fold, a space before a header's colon, control
  characters in a header, a bare CR or LF. Here: a Transfer-Encoding that does not end with
  ``chunked`` (400; RFC 9112 §6.1), other codings before it (501), any Transfer-Encoding in
  HTTP/1.0 (400), a missing or repeated
  ``Host`` (400; §3.2), versions other than 1.0 and 1.1 (505), an ``Expect`` other than
  ``100-continue`` (417). Each is a ``Refusal``: the server answers it and closes (§6.3).
* Limits: the head (request line and header lines, ``max_head_size``, and ``max_headers``
  lines: 431); the body, from Content-Length before any of it is read and while counting
  a chunked one (``max_body_size``: 413). httptools keeps a header line it has not seen
  the end of in a buffer of its own, so one endless line is cut at ``max_head_size`` plus
  one read (``READ_SIZE``).
* Trailers of a chunked body are counted against ``max_head_size`` and dropped.
* The path is the raw request target up to ``?``: nothing is percent-decoded, so routing
  sees what the client sent.
* Upgrades: a ``GET`` with ``Connection: upgrade`` and ``Upgrade: websocket`` and no body
  ends parsing; it is flagged ``upgrade`` and the bytes after its head are kept in
  ``upgrade_data`` for whoever takes the connection over. Any other upgrade (``h2c``...)
  is served as plain HTTP/1.1 (its Content-Length body read here, since llhttp stops at
  the head); ``CONNECT`` is refused (405 is the app's business, but the bytes after it
  are a tunnel's, so it is a ``Refusal`` here).
"""

from __future__ import annotations

import httptools

from ._limits import H1Limits

#: Bytes asked of the socket per read; also the slack on an unfinished header line (see above).
READ_SIZE = 65536

_METHODS = {m.encode(): m for m in ("GET", "POST", "DELETE", "HEAD", "PUT", "PATCH", "OPTIONS")}
#: Header names whose values decide framing or the request's validity.
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _EXPECT, _UPGRADE = (
    b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade")
_SPECIAL = frozenset({_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _EXPECT, _UPGRADE})
_OWS = (0x20, 0x09)
#: llhttp's words for the request-smuggling shapes, in the gate's (``_gate.check_head``) words.
_FRAMING_REASONS = {
    "Duplicate Content-Length": "bad request: more than one content-length header (ambiguous framing)",
    "Transfer-Encoding can't be present with Content-Length":
        "bad request: both Transfer-Encoding and Content-Length (ambiguous framing)",
    "Content-Length can't be present with Transfer-Encoding":
        "bad request: both Transfer-Encoding and Content-Length (ambiguous framing)",
}


class Request:
    """One whole HTTP request, as the app sees it.

    ``headers`` keeps every line in order, names lower-cased, values as sent minus the
    optional whitespace around them; ``path`` and ``query`` are the raw request target
    split at the first ``?`` (never percent-decoded). ``body`` is complete. ``client`` and
    ``scheme`` are filled in by the connection.
    """

    __slots__ = ("body", "client", "headers", "http_version", "keep_alive", "method", "path", "query",
                 "root_path", "scheme", "target", "upgrade")

    def __init__(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 http_version: str, keep_alive: bool, upgrade: bool = False) -> None:
        self.method = method
        self.target = target
        if target[:1] == b"/":
            path, _, query = target.partition(b"?")
        else:
            path, query = _origin_path(target)
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        #: The prefix an ASGI router mounted the app at, taken off ``path`` (``h1.AsgiHost``).
        self.root_path = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.http_version}, {len(self.body)} body bytes>"


def _origin_path(target: bytes) -> tuple[bytes, bytes]:
    """Path and query of an absolute-form (``http://host/p?q``) or asterisk-form target."""
    scheme, sep, rest = target.partition(b"://")
    if not sep:
        return target, b""  # "*" (OPTIONS), or an authority (CONNECT, refused anyway)
    slash = rest.find(b"/")
    path, _, query = (rest[slash:] if slash >= 0 else b"/").partition(b"?")
    return path, query


class Refusal:
    """The request cannot be served: answer ``status`` with ``message`` and close."""

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"<Refusal {self.status} {self.message!r}>"


class _Stop(Exception):
    """Raised inside a parser callback to abandon the connection with a refusal."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.refusal = Refusal(status, message)


class RequestParser:
    """Parses one connection's requests; see the module docstring for what it refuses."""

    __slots__ = ("_body", "_body_size", "_chunked", "_content_length", "_continue", "_expect", "_head_size",
                 "_headers", "_hosts", "_in_body", "_in_head", "_limits", "_max_body", "_max_head", "_max_headers",
                 "_parser", "_raw_need", "_raw_request", "_te", "_trailers", "_unread", "_upgrade", "_upgrading",
                 "_url", "closed", "ready", "upgrade_data")

    def __init__(self, limits: H1Limits) -> None:
        self._limits = limits
        self._max_head = limits.max_head_size
        self._max_headers = limits.max_headers
        self._max_body = limits.max_body_size
        #: Requests received whole, then possibly one refusal, in the order they came (a list:
        #: it is short, and an empty deque costs an idle connection 600 bytes more).
        self.ready: list[Request | Refusal] = []
        #: True once nothing more will be parsed (a refusal, or a WebSocket upgrade).
        self.closed = False
        #: After a WebSocket upgrade request: the bytes that came behind its head.
        self.upgrade_data = b""
        #: llhttp's parser, while a request is arriving; between requests there is none (an
        #: idle keep-alive connection holds 700 bytes less, for 0.3 µs per request).
        self._parser: httptools.HttpRequestParser | None = None
        self._in_head = False
        self._in_body = False
        self._unread = 0  # bytes fed while a head was unfinished (the endless-line guard)
        self._upgrading: Request | None = None
        self._raw_request: Request | None = None  # a non-WebSocket upgrade whose body is read here
        self._raw_need = 0
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._hosts = 0
        self._content_length = -1
        self._te: bytes | None = None
        self._expect: bytes | None = None
        self._upgrade: bytes | None = None
        self._chunked = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._trailers = 0
        self._continue = False

    # -- what the connection asks -----------------------------------------------------------
    @property
    def in_message(self) -> bool:
        """A request has begun arriving and is not whole yet."""
        return self._in_head or self._in_body or self._raw_request is not None

    @property
    def continue_pending(self) -> bool:
        """The request arriving asked for ``100 Continue``, passed the size checks, and none
        of its body has come yet: the connection should say ``100 Continue`` now."""
        return self._continue and self._in_body and self._body_size == 0

    def continue_sent(self) -> None:
        self._continue = False

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data``; whole requests (or a refusal) are appended to ``ready``."""
        if self.closed or not data:
            return
        if self._raw_request is not None:
            data = self._feed_raw(data)
            if not data:
                return
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded(data[upgrade.args[0]:])
            return
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, _Stop):
                self._refuse(context.refusal)
                return
            raise  # a bug of ours in a callback: not the client's fault
        except httptools.HttpParserError as exc:
            reason = str(exc)
            self._refuse(Refusal(400, _FRAMING_REASONS.get(reason) or f"malformed request: {reason}"))
            return
        if self._in_head:
            self._unread += len(data)
            if self._unread > self._max_head + READ_SIZE:
                self._refuse(Refusal(431, f"request head exceeds the limit of {self._max_head} bytes"))
        elif not self._in_body and self._parser is parser:
            self._parser = None  # between requests: nothing of llhttp's state is needed

    def _refuse(self, refusal: Refusal) -> None:
        self.ready.append(refusal)
        self.closed = True
        self._in_head = self._in_body = False
        self._raw_request = None

    # -- upgrades ----------------------------------------------------------------------------
    def _upgraded(self, rest: bytes | bytearray) -> None:
        """llhttp stopped after the head of an upgrade request (or CONNECT)."""
        request = self._upgrading
        self._upgrading = None
        chunked, length = self._chunked, self._content_length
        self._reset()
        if request is None or request.method == "CONNECT":  # what follows is a tunnel's, not HTTP
            self._refuse(Refusal(405, "method not allowed: CONNECT"))
            return
        if request.upgrade:
            if chunked or length > 0:
                self._refuse(Refusal(400, "bad request: a WebSocket upgrade request has no body"))
                return
            self.ready.append(request)
            self.upgrade_data = bytes(rest)
            self.closed = True
            self._parser = None  # nothing more is parsed: the connection is the WebSocket's now
            return
        # Another protocol (h2c...): served as HTTP/1.1. llhttp stopped at the head, so the
        # body (Content-Length only) is read here and a fresh parser takes the rest.
        if chunked:
            self._refuse(Refusal(400, "bad request: a chunked body with an Upgrade header is not supported"))
            return
        self._parser = httptools.HttpRequestParser(self)
        if length > 0:
            self._raw_request = request
            self._raw_need = length
        else:
            self.ready.append(request)
        if rest:
            self.feed(rest)

    def _feed_raw(self, data: bytes | bytearray) -> bytes | bytearray:
        """Collect the Content-Length body of a non-WebSocket upgrade request."""
        take = data[: self._raw_need]
        self._body.append(bytes(take))
        self._raw_need -= len(take)
        if self._raw_need == 0:
            request = self._raw_request
            assert request is not None
            request.body = b"".join(self._body)
            self._body = []
            self._raw_request = None
            self.ready.append(request)
        return data[len(take):]

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._unread = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            raise _Stop(431, f"request head exceeds the limit of {self._max_head} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:  # a trailer of a chunked body: counted, dropped
            self._trailers += len(name) + len(value) + 4
            if self._trailers > self._max_head:
                raise _Stop(431, f"trailers exceed the limit of {self._max_head} bytes")
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            raise _Stop(431, f"request head exceeds the limit of {self._max_head} bytes")
        headers = self._headers
        if len(headers) >= self._max_headers:
            raise _Stop(431, f"more than {self._max_headers} header lines")
        name = name.lower()
        if value and value[-1] in _OWS:
            value = value.rstrip(b" \t")
        if name in _SPECIAL:
            self._special(name, value)
        headers.append((name, value))

    def _special(self, name: bytes, value: bytes) -> None:
        if name == _HOST:
            self._hosts += 1
        elif name == _CONTENT_LENGTH:
            self._content_length = int(value)  # llhttp accepts digits only, and only one
        elif name == _TRANSFER_ENCODING:
            self._te = value
        elif name == _EXPECT:
            if self._expect is not None:
                raise _Stop(400, "bad request: more than one Expect header")
            self._expect = value
        else:
            self._upgrade = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        version = self._parser.get_http_version()  # type: ignore[union-attr]
        if version != "1.1" and version != "1.0":
            raise _Stop(505, f"HTTP version {version} not supported: send HTTP/1.1")
        if self._hosts != 1 and (self._hosts > 1 or version == "1.1"):
            raise _Stop(400, "bad request: missing Host header" if self._hosts == 0 else "bad request: more than one Host header")
        te = self._te
        if te is not None:
            if version == "1.0":
                raise _Stop(400, "bad request: Transfer-Encoding in an HTTP/1.0 request")
            if te.lower() != b"chunked":
                codings = [coding.strip(b" \t") for coding in te.lower().split(b",")]
                if codings[-1] != b"chunked":  # the body's length cannot be known (RFC 9112 §6.1)
                    raise _Stop(400, "bad request: Transfer-Encoding must end with chunked")
                if len(codings) > 1:
                    raise _Stop(501, "transfer coding not supported: send Transfer-Encoding: chunked alone")
            self._chunked = True
        elif self._content_length > self._max_body:
            raise _Stop(413, f"request body of {self._content_length} bytes exceeds the limit of {self._max_body} bytes")
        expect = self._expect
        if expect is not None:
            if expect.lower() != b"100-continue":
                raise _Stop(417, "expectation failed: only 100-continue is supported")
            self._continue = version == "1.1" and (self._chunked or self._content_length > 0)

    def on_body(self, body: bytes) -> None:
        size = self._body_size + len(body)
        if size > self._max_body:
            raise _Stop(413, f"request body exceeds the limit of {self._max_body} bytes")
        self._body_size = size
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        raw = parser.get_method()
        method = _METHODS.get(raw) or raw.decode("ascii")
        body = self._body
        upgrade = self._upgrade
        websocket = (upgrade is not None and method == "GET" and b"websocket" in upgrade.lower()
                     and parser.should_upgrade())
        request = Request(method, self._url, self._headers, body[0] if len(body) == 1 else b"".join(body),
                          parser.get_http_version(), parser.should_keep_alive(), websocket)
        self._in_head = self._in_body = False
        if parser.should_upgrade():
            self._upgrading = request  # llhttp raises HttpParserUpgrade next: decided there
            return
        self.ready.append(request)
        self._reset()
