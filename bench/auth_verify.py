"""What a bearer token costs at the edge: static keys vs keys fetched from a provider, and the
provider round trip itself. Run from the repository root: ``.venv/bin/python bench/auth_verify.py``.

Fast path (no I/O): ``await authenticator.authenticate(headers)`` for the same RS256 token,
with (A) static keys (``JwtVerifier``), (B) keys fetched once from a real local authorization
server and cached (``JwksVerifier``), (C) an opaque token whose introspection answer is cached.
Rounds alternate A B C A B C…; the figure is the median per-call time over the rounds.

Slow path (I/O): one introspection call over TLS on loopback, (D) on a new connection each
time vs (E) on the client's reused connection, and (F) the same POST with httpx2 (what the
official SDK uses; pooled, on trio through anyio), for the choice of HTTP client.
"""

from __future__ import annotations

import ssl
import statistics
import sys
import time
from pathlib import Path

import trio
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_trio.auth import Authenticator, HttpClient, Introspector, JwksVerifier, JwtVerifier, load_jwks  # noqa: E402
from tests.oauth_server import AuthorizationServer  # noqa: E402

AUDIENCE = "https://mcp.example.com/mcp"
CALLS = 5_000
ROUNDS = 7
SLOW_CALLS = 200


async def per_call(authenticator: Authenticator, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        await authenticator.authenticate(headers)
    return (time.perf_counter() - start) / CALLS


async def fast_path(idp: AuthorizationServer) -> None:
    token = idp.sign(audience=AUDIENCE)
    static = Authenticator(jwt=JwtVerifier(load_jwks(idp.jwks()), issuer=idp.issuer, audience=AUDIENCE))
    fetched = Authenticator(jwt=JwksVerifier(HttpClient(allow_http_loopback=True), issuer=idp.issuer,
                                             audience=AUDIENCE, jwks_uri=idp.jwks_uri))
    opaque = idp.issue_opaque()
    introspected = Authenticator(introspection=Introspector(
        HttpClient(allow_http_loopback=True), client_id=idp.client_id, client_secret=idp.client_secret,
        endpoint=idp.introspection_endpoint))
    jwt_headers = {"authorization": f"Bearer {token}"}
    opaque_headers = {"authorization": f"Bearer {opaque}"}
    await fetched.authenticate(jwt_headers)  # the one fetch
    await introspected.authenticate(opaque_headers)  # the one call
    runs: dict[str, list[float]] = {"A static keys": [], "B fetched keys, cached": [], "C introspection, cached": []}
    for _ in range(ROUNDS):
        runs["A static keys"].append(await per_call(static, jwt_headers))
        runs["B fetched keys, cached"].append(await per_call(fetched, jwt_headers))
        runs["C introspection, cached"].append(await per_call(introspected, opaque_headers))
    assert idp.count("/jwks") == 1 and idp.count("/introspect") == 1
    base = statistics.median(runs["A static keys"])
    print(f"fast path, median of {ROUNDS} rounds of {CALLS} calls (RS256 2048):")
    for name, times in runs.items():
        median = statistics.median(times)
        print(f"  {name:26s} {median * 1e6:8.2f} us/call  ({median / base:5.3f} x static)")


async def slow_path(idp: AuthorizationServer, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    form = {"token": idp.issue_opaque(), "token_type_hint": "access_token"}
    client = Introspector(HttpClient(ssl_context=context), client_id=idp.client_id, client_secret=idp.client_secret,
                          endpoint=idp.introspection_endpoint)._auth_headers

    async def ours(reuse: bool) -> float:
        http = HttpClient(ssl_context=context)
        start = time.perf_counter()
        for _ in range(SLOW_CALLS):
            answer = await http.post_form(idp.introspection_endpoint, form, client)
            assert answer.status == 200
            if not reuse:
                await http.aclose()
        took = (time.perf_counter() - start) / SLOW_CALLS
        await http.aclose()
        return took

    async def httpx() -> float | None:
        try:
            import httpx2
        except ImportError:
            return None
        async with httpx2.AsyncClient(verify=context) as http:
            start = time.perf_counter()
            for _ in range(SLOW_CALLS):
                answer = await http.post(idp.introspection_endpoint, data=form, headers=dict(client))
                assert answer.status_code == 200
            return (time.perf_counter() - start) / SLOW_CALLS

    runs: dict[str, list[float]] = {"D ours, new connection": [], "E ours, reused": [], "F httpx2, pooled": []}
    for _ in range(3):
        runs["D ours, new connection"].append(await ours(False))
        runs["E ours, reused"].append(await ours(True))
        took = await httpx()
        if took is not None:
            runs["F httpx2, pooled"].append(took)
    print(f"introspection call over TLS on loopback, median of 3 rounds of {SLOW_CALLS} calls:")
    for name, times in runs.items():
        if times:
            print(f"  {name:26s} {statistics.median(times) * 1e3:8.3f} ms/call")


async def main() -> None:
    with AuthorizationServer() as idp:
        await fast_path(idp)
    ca = trustme.CA()
    with AuthorizationServer(tls=ca) as idp:
        await slow_path(idp, ca)


if __name__ == "__main__":
    trio.run(main)
