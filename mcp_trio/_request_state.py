"""``requestState``: what a stateless server hands the client to bring back, sealed.

When a 2026-07-28 request needs input (sampling, elicitation, roots), the server answers
``InputRequiredResult`` and forgets the request. Everything it must know when the client
retries travels in ``requestState``: the answers given in earlier rounds and what the last
round asked. The client may be hostile, so the state is integrity-protected: anything the
server did not produce itself, for this caller and this request, recently, is refused.

Format (ASCII, URL-safe, opaque to clients)::

    mt1.<kid>.<payload>.<mac>

* ``payload``: base64url of a JSON object: ``exp`` (Unix seconds), ``sub`` (a digest of the
  caller: principal kind and subject), ``req`` (a digest of the request: method, tool or
  prompt name or resource URI, and the arguments in sorted-key JSON), ``ans`` (answers so
  far: input key → [digest of the question, the client's response]) and ``pend`` (keys asked
  in the last round → digest of the question).
* ``mac``: HMAC-SHA256 over ``mt1.<kid>.<payload>`` with the key ``kid`` names; compared in
  constant time before anything in the payload is read.
* ``kid``: the first 8 base64url characters of SHA-256 of the key, so a key can be rotated:
  the first key seals, every key listed verifies.

Decoding is strict: the payload and the MAC must be the canonical unpadded base64url of their
bytes (no ``=``, no ``+/`` alphabet, no stray low bits in the last character), so one state has
exactly one spelling.

Replay: a state opens as often as it is presented until it expires (``ttl``): the spec's
stateless server keeps nothing, and a client may retry a round whose answer it lost. A final
round can therefore be replayed within the ttl, running the tool again with the same answers.
A tool whose last step must not run twice (pay, send, delete) opts into single use with
``@single_use_state``: each of its states is then accepted once by this process (the MACs of
spent states are remembered until they expire, at most ``max_spent`` of them; past that, such
calls are refused with ``-32030`` until some expire). Several processes do not share that
memory: route such a tool's retries to one process, or keep its replay window short (``ttl``).

Not encrypted: the payload holds the client's own answers and digests, nothing it could not
see; tools must not put secrets in their input requests. Keys: one random 256-bit key per
``Server`` in a process by default, so a state minted by one process is refused by another.
Servers that share traffic (``--workers``, several hosts behind a balancer) must share the key:
``[request_state] secret`` (or ``secret_file``), or ``MCP_TRIO_REQUEST_STATE_SECRET``;
``mcp-trio serve --workers N`` hands its workers one random key when none is configured.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from msgspec import Raw

from .protocol._base64url import decode_strict, encode
from .protocol._errors import InvalidParams, ServerOverloaded

#: Seconds a sealed state stays valid: a user answering a form has this long to retry.
DEFAULT_STATE_TTL = 600.0
#: Shortest accepted key, in bytes (HMAC-SHA256 gains nothing above 64).
MIN_SECRET_BYTES = 32
_PREFIX = "mt1"
_DOMAIN = b"mcp-trio/request-state/v1\x00"


class RequestStateError(InvalidParams):
    """A ``requestState`` that is not one we sealed for this caller and request, or is too old
    (``-32602``; the client should start the request over without it)."""


class Answer(msgspec.Struct, array_like=True):
    """One input: the digest of the question it answers, and the client's response as sent."""

    digest: str
    response: Raw


class StatePayload(msgspec.Struct, omit_defaults=True):
    exp: int
    sub: str
    req: str
    ans: dict[str, Answer] = {}
    pend: dict[str, str] = {}


_payload_decoder = msgspec.json.Decoder(StatePayload)
_encode = msgspec.json.encode


_b64 = encode
_unb64 = decode_strict
#: Single-use states remembered at most (their MACs, until they expire): 100,000 is ~10 MB.
DEFAULT_MAX_SPENT = 100_000
_SINGLE_USE = "__mcp_single_use_state__"

F = TypeVar("F", bound=Callable[..., Any])


def single_use_state(fn: F) -> F:
    """Accept each ``requestState`` of this tool once (see the module's docstring, "Replay").

    For tools whose last step must not run twice: a retry with an already used state is
    refused with ``-32602``. Use with ``@server.tool``, in either order.
    """
    setattr(fn, _SINGLE_USE, True)
    return fn


def is_single_use(fn: Any) -> bool:
    return getattr(fn, _SINGLE_USE, False) is True


def digest(*parts: bytes) -> str:
    """A short (128-bit) digest of ``parts``, unambiguous however they split."""
    h = hashlib.sha256()
    for part in parts:
        h.update(b"%d:" % len(part))
        h.update(part)
    return _b64(h.digest()[:16])


def subject_of(principal: Any) -> str:
    """Whom a state belongs to: the principal's kind and subject; "" on a trusted channel."""
    if principal is None:
        return digest(b"")
    return digest(str(principal.kind).encode(), str(principal.subject).encode())


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a request-state secret needs at least {MIN_SECRET_BYTES} bytes, got {len(key)}")
    return key


class RequestStateCodec:
    """Seals and opens ``requestState`` with HMAC-SHA256 keys, an expiry and two bindings.

    ``keys``: the first seals, all verify (rotation); None: one random key, this process
    only. ``ttl``: seconds a state stays valid. ``clock``: Unix time (a test seam).
    """

    def __init__(self, keys: Sequence[str | bytes] | None = None, *, ttl: float = DEFAULT_STATE_TTL,
                 clock: Callable[[], float] = time.time, max_spent: int = DEFAULT_MAX_SPENT) -> None:
        given = [_secret_bytes(k) for k in keys] if keys else []
        if ttl <= 0:
            raise ValueError("the request-state ttl must be positive")
        self._keys: dict[str, bytes] = {}
        for key in given or [secrets.token_bytes(32)]:
            self._keys.setdefault(_b64(hashlib.sha256(key).digest())[:8], key)
        self._kid = next(iter(self._keys))
        self.ttl = ttl
        self._clock = clock
        #: True when the key came from configuration (shareable), False when made up here.
        self.shared = bool(given)
        if max_spent < 1:
            raise ValueError("max_spent must be at least 1")
        self.max_spent = max_spent
        #: MACs of single-use states already opened -> when they expire (Unix seconds).
        self._spent: dict[bytes, int] = {}

    def seal(self, *, subject: str, request: str, answers: Mapping[str, Answer], pending: Mapping[str, str]) -> str:
        payload = StatePayload(exp=int(self._clock() + self.ttl) + 1, sub=subject, req=request,
                               ans=dict(answers), pend=dict(pending))
        head = f"{_PREFIX}.{self._kid}.{_b64(_encode(payload))}"
        mac = hmac.new(self._keys[self._kid], _DOMAIN + head.encode("ascii"), hashlib.sha256).digest()
        return f"{head}.{_b64(mac)}"

    def open(self, token: str, *, subject: str, request: str, single_use: bool = False) -> StatePayload:
        """The payload of ``token``, or ``RequestStateError`` saying what is wrong with it.

        ``single_use``: refuse a state opened before (``@single_use_state`` tools)."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _PREFIX:
            raise RequestStateError("requestState is malformed: it was not issued by this server")
        key = self._keys.get(parts[1])
        if key is None:
            raise RequestStateError("requestState was sealed with a key this server does not hold "
                                    "(another server, or a rotated key)")
        try:
            mac = _unb64(parts[3])
        except ValueError:
            raise RequestStateError("requestState is malformed: bad signature encoding") from None
        expected = hmac.new(key, _DOMAIN + token[: token.rfind(".")].encode("ascii", "replace"), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise RequestStateError("requestState failed its integrity check (tampered with, or forged)")
        try:
            payload = _payload_decoder.decode(_unb64(parts[2]))
        except (ValueError, msgspec.DecodeError):  # a re-spelt payload under a valid MAC
            raise RequestStateError("requestState is malformed") from None
        if payload.exp < self._clock():
            raise RequestStateError("requestState has expired: start the request over without it")
        if not hmac.compare_digest(payload.sub, subject):
            raise RequestStateError("requestState was issued to another caller")
        if not hmac.compare_digest(payload.req, request):
            raise RequestStateError("requestState was issued for another request (method, name or arguments differ)")
        if single_use:
            self._spend(mac, payload.exp)
        return payload

    def _spend(self, mac: bytes, exp: int) -> None:
        spent = self._spent
        if mac in spent:
            raise RequestStateError("requestState was already used: this tool accepts each state once; "
                                    "start the request over without it")
        if len(spent) >= self.max_spent:
            now = self._clock()
            for old in [m for m, until in spent.items() if until < now]:
                del spent[old]
            if len(spent) >= self.max_spent:
                raise ServerOverloaded(f"too many single-use request states in use (max_spent = {self.max_spent}); "
                                       "try again later")
        spent[mac] = exp
