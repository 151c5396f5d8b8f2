"""The gate: checks on an HTTP request's head that every route relies on, sans-io.

Both HTTP servers use it, on what the wire carried (the ASGI scope's ``raw_path`` and
``headers`` as received, or the WebSocket server's own parse), before any route runs:

* **Framing** (RFC 9112 6.3): a request with ``Transfer-Encoding`` and ``Content-Length``,
  more than one ``Content-Length`` or ``Transfer-Encoding``, or a ``Content-Length`` that is
  not one decimal number is refused with 400 and the connection closed: a proxy in front that
  frames the body differently would otherwise let a second request hide inside the first
  (request smuggling). A transfer coding other than ``chunked`` is 501.
* **Headers that must be single**: ``Host``, ``Origin``, ``Content-Type``,
  ``Mcp-Session-Id``, ``MCP-Protocol-Version``, ``Last-Event-ID``: two of one are 400, never
  "the last one wins" (a proxy may have checked the first).
* **Routes** match the raw path, exactly as sent: ``/%61dmin`` is not ``/admin``, so a proxy
  that guards ``/admin`` by prefix cannot be walked around by percent-encoding.
* **Host and Origin** values are parsed strictly (``parse_authority``): ``[::1]evil.com`` is
  not a loopback host, it is no host at all.
* ``Expect: 100-continue`` is answered only once the head passed (``continue_refusal``): a body
  over the size limit is refused before the client is invited to send it.

Refusals never quote a header's value: error bodies and logs name the header, not what it
carried (it may be a credential).

It also holds the one policy of who may connect, for every transport (the HTTP app's routes,
its ``/ws``, the WebSocket server's handshake, ``/admin``, ``/metrics``): ``HostPolicy`` (Host
and Origin against DNS rebinding), ``is_loopback_name``/``is_loopback_address`` (one answer to
"is this loopback"), and ``auth_refusal`` (a refused credential as an HTTP status).

And who the client is behind a proxy: ``TrustedProxies.client`` (peer address + headers + the
trusted networks → the client's address and scheme), the one answer rate limits, ``/admin``'s
loopback rule, sessions and traces use. Forwarding headers from any other peer are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..protocol._errors import FORBIDDEN, INVALID_REQUEST

#: Headers a request may carry at most once.
SINGLE_HEADERS = frozenset({b"host", b"origin", b"content-type", b"mcp-session-id", b"mcp-protocol-version",
                            b"last-event-id", b"content-length", b"transfer-encoding", b"expect"})
_DIGITS = re.compile(rb"[0-9]{1,19}")
#: A registered name or IPv4 address (RFC 3986 reg-name, without percent-encoding).
_REG_NAME = re.compile(r"[a-z0-9._~!$&'()*+,;=-]+")
_IPV6 = re.compile(r"[0-9a-f:.]+")
_PORT = re.compile(r"[0-9]{0,5}")
_MEMO_LIMIT = 256  # entries in the Host/Origin memo (only ever grows with distinct values)


class Refusal(NamedTuple):
    """An HTTP answer refusing a request before any route: status, message, close after."""

    status: int
    message: str
    close: bool = False


def check_head(headers: Iterable[tuple[bytes, bytes]]) -> Refusal | None:
    """The refusal a request head deserves (framing, repeated headers), or None.

    ``headers``: (lower-case name, value) pairs, as received (ASGI ``scope["headers"]``).
    """
    seen: set[bytes] = set()
    for name, _ in headers:
        if name in SINGLE_HEADERS:
            if name in seen:
                if name in (b"content-length", b"transfer-encoding"):
                    return Refusal(400, f"bad request: more than one {name.decode()} header (ambiguous framing)", True)
                return Refusal(400, f"bad request: more than one {name.decode()} header")
            seen.add(name)
    if b"transfer-encoding" in seen or b"content-length" in seen:
        return _check_framing(headers, seen)
    return None


def fold_head(headers: Iterable[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], Refusal | None]:
    """The head as a dict (name -> value; a repeated header other than ``SINGLE_HEADERS``
    keeps its last value) and the refusal it deserves, in one pass: ``check_head`` for the
    HTTP hot path, which needs the dict anyway."""
    folded: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in folded and name in SINGLE_HEADERS:
            if name in (b"content-length", b"transfer-encoding"):
                return folded, Refusal(400, f"bad request: more than one {name.decode()} header (ambiguous framing)", True)
            return folded, Refusal(400, f"bad request: more than one {name.decode()} header")
        folded[name] = value
    if b"content-length" in folded or b"transfer-encoding" in folded:
        length, coding = folded.get(b"content-length"), folded.get(b"transfer-encoding")
        if length is not None and coding is not None:
            return folded, Refusal(400, "bad request: both Transfer-Encoding and Content-Length (ambiguous framing)", True)
        if length is not None and _DIGITS.fullmatch(length.strip()) is None:
            return folded, Refusal(400, "bad request: Content-Length is not a decimal number", True)
        if coding is not None and coding.strip().lower() != b"chunked":
            return folded, Refusal(501, "not implemented: the only transfer coding accepted is chunked", True)
    return folded, None


def _check_framing(headers: Iterable[tuple[bytes, bytes]], seen: set[bytes]) -> Refusal | None:
    if b"transfer-encoding" in seen and b"content-length" in seen:
        return Refusal(400, "bad request: both Transfer-Encoding and Content-Length (ambiguous framing)", True)
    for name, value in headers:
        if name == b"content-length" and _DIGITS.fullmatch(value.strip()) is None:
            return Refusal(400, "bad request: Content-Length is not a decimal number", True)
        if name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            return Refusal(501, "not implemented: the only transfer coding accepted is chunked", True)
    return None


def continue_refusal(headers: Iterable[tuple[bytes, bytes]], limit: int) -> Refusal | None:
    """For a request with ``Expect: 100-continue``: the refusal to send instead of 100
    Continue (a declared body over ``limit`` is 413), or None when the client may go on."""
    for name, value in headers:
        if name == b"content-length" and _DIGITS.fullmatch(value.strip()) and int(value) > limit:
            return Refusal(413, f"request body of {int(value)} bytes exceeds the limit of {limit} bytes", True)
    return None


def route_path(raw_path: bytes | None, path: str) -> str:
    """The path a request is routed on: the raw one, exactly as sent (no percent-decoding).
    ``path`` (the decoded one) is used only when the server gave no raw path."""
    return path if raw_path is None else raw_path.decode("latin-1")


def parse_authority(value: str) -> tuple[str, str | None] | None:
    """``host[:port]`` -> (host, port), the host lower case, an IPv6 address without its
    brackets; None unless the whole value is one valid authority (``[::1]evil.com`` is not)."""
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:]
        if end < 0 or not host or _IPV6.fullmatch(host) is None or host.count(":") < 2:
            return None
        if not rest:
            return host, None
        if rest[0] != ":" or _PORT.fullmatch(rest[1:]) is None:
            return None
        return host, rest[1:] or None
    host, colon, port = text.partition(":")
    if not host or _REG_NAME.fullmatch(host) is None or (colon and _PORT.fullmatch(port) is None):
        return None
    return host, port or None


def bracketed(host: str) -> str:
    """An IPv6 address as it appears in a Host header (``[::1]``); other hosts as they are."""
    return f"[{host}]" if ":" in host else host


# -- who may connect: Host, Origin, loopback (one policy for every transport) -------------------
def is_loopback_name(host: str) -> bool:
    """Whether a host name or address is loopback: ``localhost``, ``*.localhost`` (RFC 6761),
    ``127.0.0.0/8``, ``::1`` and IPv4-mapped loopback; brackets and a trailing dot are ignored."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def is_loopback_address(host: str | None) -> bool:
    """Whether a peer's address (``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1``) is loopback.
    Names do not count here: a peer is an address."""
    if not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return is_loopback_name(host)


def _hostname(authority: str) -> tuple[str, str | None] | None:
    """(host without brackets or trailing dot, port) of ``host[:port]``; None unless valid."""
    parsed = parse_authority(authority)
    if parsed is None:
        return None
    host = parsed[0] if ":" in parsed[0] else parsed[0].rstrip(".")
    return (host, parsed[1]) if host else None


class HostPolicy:
    """Who may talk to a server over the network, checked on every HTTP request and every
    WebSocket handshake before anything else (DNS rebinding defence). One policy, one set of
    defaults, for every transport:

    ``Host``: with ``allowed_hosts``, exactly those (``name`` for any port, ``name:port`` for
    one; ``"*"`` for any). Without, a server bound to loopback accepts loopback names only
    (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``), and a server bound to any other
    address accepts any ``Host``: the names it is reached by are unknown here (the transport
    warns at start; the Origin check still keeps browsers out).

    ``Origin`` (browsers send it; other clients usually do not): absent is accepted. With
    ``allowed_origins``, exactly those (compared case-insensitively, without a trailing slash;
    ``"*"`` for any). Without, the page's own server (same origin: the Origin's authority is the
    ``Host``), and, on a server bound to loopback, any ``http``/``https`` page on a loopback
    name. The opaque origin ``null`` (sandboxed frames, ``file:`` pages) is refused unless listed.

    Verdicts are memoised (the same few header values repeat), within ``_MEMO_LIMIT`` entries.
    """

    def __init__(self, bind_host: str | None, *, allowed_hosts: Iterable[str] | None = None,
                 allowed_origins: Iterable[str] | None = None) -> None:
        self.loopback = bind_host is not None and is_loopback_name(bind_host)
        self.any_host = allowed_hosts is None and not self.loopback
        self._hosts: set[str] | None = None  # None: loopback names (no list given)
        self._authorities: set[tuple[str, str]] = set()
        if allowed_hosts is not None:
            self._hosts = set()
            for entry in allowed_hosts:
                entry = entry.strip().lower()
                if entry.count(":") > 1 and not entry.startswith("["):
                    entry = f"[{entry}]"  # a bare IPv6 address
                if entry == "*":
                    self.any_host = True
                    continue
                parsed = _hostname(entry)
                if parsed is None:
                    raise ValueError(f"allowed host {entry!r} is not a host name or address (with an optional :port)")
                host, port = parsed
                if port is None:
                    self._hosts.add(host)
                else:
                    self._authorities.add((host, port))
        origins = None if allowed_origins is None else {o.strip().lower().rstrip("/") for o in allowed_origins}
        self.any_origin = origins is not None and "*" in origins
        self._origins = origins
        self._memo: dict[tuple[bytes | None, bytes | None], bool] = {}

    def allows(self, host: bytes | None, origin: bytes | None) -> bool:
        """Both checks on raw header values (None: absent), memoised: the HTTP hot path."""
        key = (host, origin)
        verdict = self._memo.get(key)
        if verdict is None:
            host_text = None if host is None else host.decode("latin-1")
            verdict = self.host_allowed(host_text) and self.origin_allowed(
                None if origin is None else origin.decode("latin-1"), host_text)
            if len(self._memo) < _MEMO_LIMIT:
                self._memo[key] = verdict
        return verdict

    def host_allowed(self, authority: str | None) -> bool:
        if self.any_host:
            return True
        parsed = _hostname(authority) if authority is not None else None
        if parsed is None:
            return False  # absent, or not one valid authority ("[::1]evil.com")
        host, port = parsed
        if self._hosts is None:
            return is_loopback_name(host)
        return host in self._hosts or (port is not None and (host, port) in self._authorities)

    def origin_allowed(self, origin: str | None, host: str | None = None) -> bool:
        if origin is None:
            return True  # not a browser
        text = origin.strip().lower().rstrip("/")
        if self._origins is not None:
            return self.any_origin or text in self._origins
        try:
            parts = urlsplit(text)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https"):
            return False  # "null" (sandboxed or file:// pages), ws://, anything else
        parsed = _hostname(parts.netloc) if parts.netloc else None
        if parsed is None:
            return False
        if self.loopback and is_loopback_name(parsed[0]):
            return True
        return host is not None and _hostname(host) == parsed


# -- a refused credential, as HTTP says it -------------------------------------------------------
class AuthRefusal(NamedTuple):
    """How a transport answers a credential the authenticator refused: status, JSON-RPC code,
    one line, and the ``WWW-Authenticate`` (lower-case header pairs)."""

    status: int
    code: int
    message: str
    headers: list[tuple[bytes, bytes]]


def auth_refusal(authenticator: Any, exc: Any) -> AuthRefusal:
    """The answer to an ``AuthError`` (401 or 403 with its challenge, 503 when the identity
    provider is unreachable): the same on ``/mcp``, ``/ws``, a WebSocket server and ``/admin``."""
    code = FORBIDDEN if exc.status == 403 else INVALID_REQUEST
    headers = [(name.lower().encode(), value.encode("latin-1")) for name, value in authenticator.refusal_headers(exc)]
    return AuthRefusal(exc.status, code, f"{exc.label}: {exc.description}", headers)


# -- who the client is, behind trusted proxies ---------------------------------------------------
#: Hops of a forwarding chain read at most, from the right (the nearest proxy's end). A chain
#: longer than this is read no further: what lies beyond was written by the client anyway.
MAX_FORWARDED_HOPS = 32
#: Characters of forwarding headers read at most, from the right, for the same reason.
MAX_FORWARDED_LENGTH = 8192
#: Which headers the trusted proxies write: ``X-Forwarded-For``/``-Proto``, or RFC 7239 ``Forwarded``.
PROXY_HEADERS = ("x-forwarded", "forwarded")
_FORWARDED_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')
_SCHEMES = frozenset({"http", "https"})


class ClientAddress(NamedTuple):
    """Who sent a request: its address (None when unknown) and the scheme it used (None: the
    one it connected with), as the nearest trusted proxy reports them."""

    address: str | None
    scheme: str | None = None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a peer or a forwarding header writes it: ``192.0.2.7``, ``192.0.2.7:80``,
    ``[2001:db8::1]:443``, ``2001:db8::1``; IPv4-mapped IPv6 as IPv4. None if not an address
    (``unknown``, an obfuscated ``_name``, garbage)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


class TrustedProxies:
    """The peers whose forwarding headers are believed (``[server] trusted_proxies``).

    Only a request whose TCP peer is one of ``networks`` has its forwarding headers read at
    all; from anyone else they are ignored, so a client cannot name itself. The chain is read
    from the right (the hop nearest to us) and the first address that is not a trusted proxy
    is the client (the *rightmost untrusted* rule): every hop to its left was written by that
    client and proves nothing. ``headers`` says which family the proxies write (and only that
    one is read: a proxy that sets ``X-Forwarded-For`` passes a client's own ``Forwarded``
    through untouched, and the other way round).
    """

    def __init__(self, networks: Iterable[str], headers: str = "x-forwarded") -> None:
        if headers not in PROXY_HEADERS:
            raise ValueError(f"proxy headers must be one of {', '.join(PROXY_HEADERS)}, not {headers!r}")
        self.headers = headers
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in networks:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"trusted proxy {entry!r} is not an IP address or network "
                                 "(10.0.0.0/8, 192.0.2.7, 2001:db8::/32)") from None
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` (a peer's, or a hop's) is one of the trusted proxies."""
        if not address:
            return False
        verdict = self._memo.get(address)
        if verdict is None:
            parsed = _address(address)
            verdict = parsed is not None and any(parsed in network for network in self.networks)
            if len(self._memo) < _MEMO_LIMIT:
                self._memo[address] = verdict
        return verdict

    def client(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> ClientAddress:
        """Who sent a request that came from ``peer`` with ``headers`` (lower-case names)."""
        if not self.trusts(peer):
            return ClientAddress(peer)
        if self.headers == "forwarded":
            hops = _forwarded_hops(_joined(headers, b"forwarded"))
        else:
            hops = [(hop, None) for hop in _list(_joined(headers, b"x-forwarded-for"))]
        if not hops:
            return ClientAddress(peer)
        client, index = peer, len(hops)
        for index in range(len(hops) - 1, -1, -1):
            parsed = _address(hops[index][0])
            if parsed is None:  # "unknown", "_hidden", garbage: the proxy that wrote it is all we know
                index += 1
                break
            client = str(parsed)
            if not self.trusts(client):
                break
        if self.headers == "forwarded":
            scheme = hops[index][1] if index < len(hops) else None
        else:
            protos = _list(_joined(headers, b"x-forwarded-proto"))
            scheme = None
            if protos:  # the client's own hop when each hop wrote one, else the nearest proxy's
                shift = len(hops) - len(protos)
                scheme = protos[index - shift] if shift == 0 and index < len(protos) else protos[-1]
        scheme = scheme.strip().lower() if scheme else None
        return ClientAddress(client, scheme if scheme in _SCHEMES else None)


def _joined(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    """Every ``name`` header line, in order, as one comma-separated list (RFC 9110 5.3), its
    rightmost ``MAX_FORWARDED_LENGTH`` characters."""
    text = ",".join(value.decode("latin-1") for key, value in headers if key == name)
    if len(text) > MAX_FORWARDED_LENGTH:  # the cut item is partial ("2.3.4.5" of "12.3.4.5"): dropped
        text = text[-MAX_FORWARDED_LENGTH:].partition(",")[2]
    return text


def _list(text: str) -> list[str]:
    """The rightmost ``MAX_FORWARDED_HOPS`` items of a comma-separated list, blanks dropped."""
    items = text.rsplit(",", MAX_FORWARDED_HOPS)
    if len(items) > MAX_FORWARDED_HOPS:
        items = items[1:]  # the leftmost piece may hold many more: not read
    return [item.strip() for item in items if item.strip()]


def _forwarded_hops(text: str) -> list[tuple[str, str | None]]:
    """(``for``, ``proto``) of each element of a ``Forwarded`` list (RFC 7239 section 4),
    quoted values unquoted; an element without ``for`` is an unknown hop."""
    hops: list[tuple[str, str | None]] = []
    for element in _list(text):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            match = _FORWARDED_PAIR.fullmatch(pair)
            if match is None:
                continue
            value = match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            pairs.setdefault(match.group(1).lower(), value)
        hops.append((pairs.get("for", "unknown"), pairs.get("proto")))
    return hops
