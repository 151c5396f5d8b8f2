"""A small, real OAuth authorization server for the tests: stdlib ``http.server`` on a loopback
port, in a thread, over plain HTTP or TLS (a ``trustme`` CA made by the test).

It serves what a resource server reads from an identity provider:

- RFC 8414 metadata at ``/.well-known/oauth-authorization-server{path}`` and OpenID Connect
  metadata at ``{path}/.well-known/openid-configuration`` (either can be switched off);
- a JWKS at ``/jwks`` with the ``Cache-Control`` the test sets, and key rotation
  (``rotate()``: a new key signs, the old ``kid`` is withdrawn);
- RFC 7662 introspection at ``/introspect`` (client_secret_basic or client_secret_post),
  for opaque tokens it issued (``issue_opaque``) and can revoke;
- misbehaviour on demand (``breaks[path]``): ``"500"``, ``"hang"``, ``"big"``,
  ``"big-chunked"``, ``"big-header"``, ``"garbage"``,
  and redirect chains at ``/redirect/N``.

Every request is counted per path (``count(path)``), so tests assert how often the server
under test fetched: the point of caching.
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

import trustme
from joserfc import jwt
from joserfc.jwk import RSAKey


class AuthorizationServer:
    """Start with ``with AuthorizationServer() as idp:``; ``idp.issuer`` is its issuer URL."""

    def __init__(self, *, tls: trustme.CA | None = None, issuer_path: str = "", metadata: tuple[str, ...] = ("oauth", "openid"),
                 client_id: str = "mcp-server", client_secret: str = "introspection-secret") -> None:
        self.tls = tls
        self.issuer_path = issuer_path
        self.metadata_kinds = metadata
        self.client_id = client_id
        self.client_secret = client_secret
        self.keys: list[RSAKey] = [_new_key(1)]
        self._generation = 1
        self.jwks_cache_control: str | None = "max-age=300"
        self.jwks_extra: list[dict[str, Any]] = []
        #: Overrides the "issuer" of the metadata documents (to test the RFC 8414 §3.3 check).
        self.metadata_issuer: str | None = None
        self.opaque: dict[str, dict[str, Any]] = {}
        self.breaks: dict[str, str] = {}
        #: Seconds an idle keep-alive connection stays open on the server's side.
        self.idle_timeout = 5.0
        self.requests: collections.Counter[str] = collections.Counter()
        self.introspection_auth: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> AuthorizationServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        idp = self

        class Handler(_Handler):
            server_state = idp
            timeout = idp.idle_timeout

        httpd = _Server(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._stop.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering (an outage); ``start()`` again serves on a new port."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -- addresses ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.origin + self.issuer_path

    @property
    def jwks_uri(self) -> str:
        return self.origin + "/jwks"

    @property
    def introspection_endpoint(self) -> str:
        return self.origin + "/introspect"

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    # -- tokens ---------------------------------------------------------------------------------
    @property
    def kid(self) -> str:
        return self.keys[-1].kid  # type: ignore[return-value]

    def rotate(self) -> str:
        """A new signing key; the old one is withdrawn from the JWKS. Returns the new kid."""
        self._generation += 1
        self.keys = [_new_key(self._generation)]
        return self.kid

    def sign(self, *, audience: str, subject: str = "ada", scope: str | None = "read", kid: str | None = None,
             key: RSAKey | None = None, ttl: float = 600, issuer: str | None = None, **claims: Any) -> str:
        key = key or self.keys[-1]
        now = int(time.time())
        body: dict[str, Any] = {"iss": issuer or self.issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + int(ttl),
                                **claims}
        if scope is not None:
            body["scope"] = scope
        return jwt.encode({"alg": "RS256", "kid": kid or key.kid, "typ": "at+jwt"}, body, key)

    def issue_opaque(self, **claims: Any) -> str:
        token = secrets.token_urlsafe(24)
        now = int(time.time())
        answer = {"active": True, "sub": "ada", "scope": "read", "iss": self.issuer, "exp": now + 600, "iat": now,
                  "client_id": "some-client", "token_type": "Bearer"}
        answer.update(claims)
        self.opaque[token] = answer
        return token

    def revoke(self, token: str) -> None:
        self.opaque.pop(token, None)

    # -- answers --------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.metadata_issuer or self.issuer, "jwks_uri": self.jwks_uri,
                "introspection_endpoint": self.introspection_endpoint,
                "token_endpoint": self.origin + "/token", "response_types_supported": ["code"]}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) | {"use": "sig", "alg": "RS256"} for key in self.keys] + self.jwks_extra}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer (the size-limit tests do): nothing to report


def _new_key(generation: int) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": f"key-{generation}"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection reuse is exercised
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server_state: AuthorizationServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), headers)

    def _broken(self, path: str) -> bool:
        idp = self.server_state
        mode = idp.breaks.get(path)
        if mode is None:
            return False
        if mode == "500":
            self._json(500, {"error": "server_error"})
        elif mode == "hang":
            idp._stop.wait(30)
            self.close_connection = True
        elif mode == "big":
            self._send(200, b'{"keys": [' + b" " * (2 * 1024 * 1024) + b"]}")
        elif mode == "big-chunked":  # no Content-Length: the client must count as bytes arrive
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(40):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            self.close_connection = True
        elif mode == "big-header":
            self._send(200, b"{}", {"X-Padding": "x" * (32 * 1024)})
        elif mode == "garbage":
            self._send(200, b"<html>not json</html>")
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        idp = self.server_state
        path = self.path.split("?", 1)[0]
        with idp._lock:
            idp.requests[path] += 1
        if self._broken(path):
            return
        if path.startswith("/redirect/"):
            remaining = int(path.rsplit("/", 1)[1])
            target = f"/redirect/{remaining - 1}" if remaining > 1 else "/jwks"
            self._send(302, b"", {"Location": target})
        elif path == "/to-http":
            self._send(302, b"", {"Location": f"http://127.0.0.1:{idp.port}/jwks"})
        elif path == "/jwks":
            headers = {"Cache-Control": idp.jwks_cache_control} if idp.jwks_cache_control else {}
            self._json(200, idp.jwks(), headers)
        elif path == "/.well-known/oauth-authorization-server" + idp.issuer_path and "oauth" in idp.metadata_kinds:
            self._json(200, idp.metadata(), {"Cache-Control": "max-age=3600"})
        elif path == idp.issuer_path + "/.well-known/openid-configuration" and "openid" in idp.metadata_kinds:
            self._json(200, idp.metadata(), {"Cache-Control": "max-age=3600"})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        idp = self.server_state
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        with idp._lock:
            idp.requests[path] += 1
        if self._broken(path):
            return
        if path.startswith("/redirect/"):
            self._send(307, b"", {"Location": "/introspect"})
            return
        if path != "/introspect":
            self._json(404, {"error": "not_found"})
            return
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            client_id, client_secret, method = unquote(user), unquote(password), "client_secret_basic"
        else:
            client_id, client_secret, method = form.get("client_id", ""), form.get("client_secret", ""), "client_secret_post"
        if (client_id, client_secret) != (idp.client_id, idp.client_secret):
            self._json(401, {"error": "invalid_client"}, {"WWW-Authenticate": "Basic"})
            return
        idp.introspection_auth.append(method)
        answer = idp.opaque.get(form.get("token", ""))
        self._json(200, answer if answer is not None else {"active": False})
