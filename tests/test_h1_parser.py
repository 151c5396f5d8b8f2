"""The HTTP/1.1 engine's request framing, without a socket (``transports/h1/_parser.py``).

Bytes go in, whole requests or one refusal come out. Hypothesis feeds the same streams
split at every possible place, the request-smuggling shapes hidden in otherwise valid
requests (each must end parsing with a refusal, and nothing behind it may be parsed), and
arbitrary bytes (never an exception).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_trio.transports.h1 import H1Limits, Refusal, Request, RequestParser
from mcp_trio.transports.h1._parser import READ_SIZE

LIMITS = H1Limits(max_head_size=2048, max_headers=20, max_body_size=1000)
BODY = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
POST = (b"POST /mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: application/json, text/event-stream\r\n"
        b"Content-Type: application/json\r\nX-Padded:   spaced value \t\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY))
GET = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = (b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: dropped\r\n\r\n")


def parse(*pieces: bytes, limits: H1Limits = LIMITS) -> RequestParser:
    parser = RequestParser(limits)
    for piece in pieces:
        parser.feed(piece)
    return parser


def only(parser: RequestParser) -> Request | Refusal:
    assert len(parser.ready) == 1, parser.ready
    return parser.ready[0]


def test_a_request_as_the_app_sees_it() -> None:
    request = only(parse(POST))
    assert isinstance(request, Request)
    assert (request.method, request.target, request.path, request.query) == ("POST", b"/mcp?x=1", b"/mcp", b"x=1")
    assert request.headers[0] == (b"host", b"127.0.0.1:8000")
    assert (b"x-padded", b"spaced value") in request.headers  # names lower-cased, OWS trimmed
    assert request.body == BODY and request.http_version == "1.1" and request.keep_alive
    assert request.header(b"content-type") == b"application/json" and request.header(b"absent") is None


def test_the_path_is_never_percent_decoded() -> None:
    request = only(parse(b"GET /%61dmin/%2e%2e/x?q=%41 HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert isinstance(request, Request) and request.path == b"/%61dmin/%2e%2e/x" and request.query == b"q=%41"
    absolute = only(parse(b"GET http://a/mcp?z HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert isinstance(absolute, Request) and absolute.path == b"/mcp" and absolute.query == b"z"


def test_pipelined_requests_come_out_in_order() -> None:
    parser = parse(GET + POST + CHUNKED + GET)
    assert [(r.method, r.path) for r in parser.ready] == [("GET", b"/healthz"), ("POST", b"/mcp"), ("POST", b"/c"), ("GET", b"/healthz")]  # type: ignore[union-attr]


def test_chunked_body_extensions_and_trailers() -> None:
    request = only(parse(CHUNKED))
    assert isinstance(request, Request) and request.body == b"hello world"
    assert all(name != b"x-trailer" for name, _ in request.headers)


def test_http10_and_keep_alive() -> None:
    closing = only(parse(b"GET / HTTP/1.0\r\n\r\n"))
    assert isinstance(closing, Request) and closing.http_version == "1.0" and not closing.keep_alive
    kept = only(parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
    assert isinstance(kept, Request) and kept.keep_alive
    closed = only(parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    assert isinstance(closed, Request) and not closed.keep_alive


@pytest.mark.parametrize(("data", "status"), [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413),  # refused from the header, nothing read
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"x" * 1001, 413),  # counted
    (b"GET /" + b"a" * 2100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 431),  # request line
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 2100 + b"\r\n\r\n", 431),  # one header
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(20)) + b"\r\n", 431),  # count
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: " + b"t" * 2100 + b"\r\n\r\n", 431),
])
def test_limits(data: bytes, status: int) -> None:
    refusal = only(parse(data))
    assert isinstance(refusal, Refusal) and refusal.status == status, refusal


def test_body_just_under_the_limit_is_fine() -> None:
    body = b"x" * 1000
    request = only(parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + body))
    assert isinstance(request, Request) and request.body == body


def test_an_endless_header_line_is_cut_off() -> None:
    parser = RequestParser(LIMITS)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
    fed = 0
    while not parser.ready:
        parser.feed(b"v" * 4096)
        fed += 4096
        assert fed < LIMITS.max_head_size + 2 * READ_SIZE
    refusal = only(parser)
    assert isinstance(refusal, Refusal) and refusal.status == 431


#: Request-smuggling and malformed shapes (RFC 9112 §6.3 and §11.2): each must be refused.
SMUGGLING = {
    "CL+TE": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE+CL": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    "two Content-Lengths": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", 400),
    "two different Content-Lengths": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nhi", 400),
    "Content-Length list": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nhi", 400),
    "signed Content-Length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nhi", 400),
    "bad chunk size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", 400),
    "chunk size overflow": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhi\r\n0\r\n\r\n", 400),
    "chunk without CRLF": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization : Bearer secret\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    "CTL in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    "bad name character": (b"GET / HTTP/1.1\r\nHost: a\r\nX(y): a\r\n\r\n", 400),
    "bare LF": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bare CR": (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    "TE chunked twice": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE chunked, gzip": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "TE gzip, chunked": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "TE identity": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "HTTP/2.0 line": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "HTTP/0.9": (b"GET /\r\n\r\n", 505),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    "unknown method": (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "space in target": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "Expect other than 100-continue": (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n", 417),
    "CONNECT": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_shapes_are_refused_and_nothing_behind_them_is_parsed(name: str) -> None:
    data, status = SMUGGLING[name]
    parser = parse(data + GET)
    refusal = only(parser)
    assert isinstance(refusal, Refusal) and refusal.status == status, refusal
    assert parser.closed
    parser.feed(GET)
    assert len(parser.ready) == 1  # nothing more is parsed after a refusal


def test_a_refusal_never_quotes_the_request() -> None:
    refusal = only(parse(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization : Bearer sekret-token\r\n\r\n"))
    assert isinstance(refusal, Refusal) and "sekret" not in refusal.message and "Authorization" not in refusal.message


def test_requests_before_a_bad_one_are_still_served() -> None:
    parser = parse(GET + POST + SMUGGLING["CL+TE"][0])
    assert [type(item) for item in parser.ready] == [Request, Request, Refusal]


def test_expect_100_continue_after_the_size_check() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    parser = parse(head)
    assert not parser.ready and parser.continue_pending
    parser.continue_sent()
    assert not parser.continue_pending
    parser.feed(b"body")
    request = only(parser)
    assert isinstance(request, Request) and request.body == b"body"
    # Too large: refused at once, no 100 Continue.
    refused = parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    assert not refused.continue_pending and isinstance(only(refused), Refusal)
    # The body already came with the head: nothing to say.
    early = parse(head + b"bo")
    assert not early.continue_pending


def test_websocket_upgrade_keeps_the_bytes_behind_its_head() -> None:
    head = (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    parser = parse(head + b"\x81\x85frame")
    request = only(parser)
    assert isinstance(request, Request) and request.upgrade and parser.closed
    assert parser.upgrade_data == b"\x81\x85frame"
    with_body = only(parse(head.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nhi")))
    assert isinstance(with_body, Refusal) and with_body.status == 400
    # Not a WebSocket upgrade without Connection: upgrade; a POST never is one.
    plain = only(parse(head.replace(b"Connection: Upgrade\r\n", b"")))
    assert isinstance(plain, Request) and not plain.upgrade


def test_other_upgrades_are_served_as_http11() -> None:
    h2c = (b"POST /mcp HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\n")
    parser = parse(h2c + b"he", b"llo" + GET)
    assert [(type(r), getattr(r, "body", None)) for r in parser.ready] == [(Request, b"hello"), (Request, b"")]
    assert not parser.ready[0].upgrade  # type: ignore[union-attr]


# -- hypothesis -------------------------------------------------------------------------------
def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _summary(parser: RequestParser) -> list[tuple[object, ...]]:
    return [(r.status,) if isinstance(r, Refusal) else (r.method, r.target, tuple(r.headers), r.body) for r in parser.ready]


STREAMS = [GET + POST + CHUNKED, CHUNKED + CHUNKED, POST * 3, *(data + GET for data, _ in SMUGGLING.values())]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_requests(stream: bytes, cuts: list[int]) -> None:
    assert _summary(parse(*_split(stream, cuts))) == _summary(parse(stream))


_NAMES = st.sampled_from([b"Accept", b"X-Trace", b"Mcp-Session-Id", b"User-Agent", b"Content-Type"])
_VALUES = st.binary(min_size=0, max_size=24).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E))
#: Header lines that make a request ambiguous or malformed, hidden among ordinary ones.
_POISON = st.sampled_from([
    (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400),
    (b"Content-Length: 3\r\nContent-Length: 3\r\n", 400),
    (b"X-Folded: a\r\n b\r\n", 400),
    (b"Bad Name: x\r\n", 400),
    (b"X-Nul: a\x00b\r\n", 400),
    (b"X-Space : x\r\n", 400),
    (b"Transfer-Encoding: chunked, identity\r\n", 400),
    (b"Host: evil\r\n", 400),
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6), _POISON, st.integers(min_value=0, max_value=6),
       st.lists(st.integers(min_value=0), max_size=6))
def test_fuzzed_smuggling_shapes_end_parsing_with_a_refusal(headers: list[tuple[bytes, bytes]], poison: tuple[bytes, int],
                                                            at: int, cuts: list[int]) -> None:
    lines = [b"%b: %b\r\n" % pair for pair in headers]
    lines.insert(min(at, len(lines)), poison[0])
    request = b"POST /mcp HTTP/1.1\r\nHost: a\r\n" + b"".join(lines) + b"\r\n0\r\n\r\n"
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    parser = parse(*_split(request + smuggled, cuts))
    refusal = only(parser)
    assert isinstance(refusal, Refusal) and refusal.status == poison[1], (request, refusal)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=6))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    parser = parse(*_split(b"POST / HTTP/1.1\r\nHost: a\r\n" + data, cuts))
    refusals = [item for item in parser.ready if isinstance(item, Refusal)]
    assert len(refusals) <= 1 and (not refusals or parser.ready[-1] is refusals[0])
