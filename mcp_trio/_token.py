"""``mcp-trio token``: mint a development credential for a secured server.

Two commands to a secured local server::

    export MCP_TRIO_AUTH_JWT_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    mcp-trio token --config dev.toml --scope write          # prints a JWT
    mcp-trio serve --config dev.toml app:server              # accepts it

With an asymmetric key, the server's config names the public key and the token is signed with
the private one (``--key dev-private.pem``). ``--api-key`` instead prints a new random API key
and the ``[[auth.api_keys]]`` table (with its SHA-256) to paste into the config.

The token goes to stdout and nowhere else: it is never logged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

#: A development token lives an hour unless told otherwise.
DEFAULT_TTL = 3600.0


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mcp-trio token`` (the lead's CLI adds the subcommand and calls ``run_token``)."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="the server's TOML configuration (default: $MCP_TRIO_CONFIG); issuer, audience, secret come from it")
    parser.add_argument("--sub", default="dev", metavar="SUBJECT", help="the token's subject (default: dev)")
    parser.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                        help="a scope to grant: read, write, execute, admin, or your own (repeatable, or space-separated)")
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL, metavar="SECONDS",
                        help=f"lifetime of the token (default: {DEFAULT_TTL:g})")
    parser.add_argument("--key", metavar="PEM_FILE", default=None,
                        help="sign with this RSA/EC/Ed25519 private key (default: the configured HMAC secret)")
    parser.add_argument("--alg", default=None, help="signature algorithm (default: HS256, RS256, ES256 or Ed25519 by key)")
    parser.add_argument("--kid", default=None, help="key id in the token header (default: [auth.jwt] kid)")
    parser.add_argument("--issuer", default=None, help="iss (default: [auth.jwt] issuer)")
    parser.add_argument("--audience", default=None, help="aud (default: [auth.jwt] audience, else [server] resource)")
    parser.add_argument("--api-key", action="store_true",
                        help="print a new random API key and its config entry instead of a JWT")
    parser.add_argument("--name", default=None, help="with --api-key: the key's name, its principal's subject (default: --sub)")


def _fail(message: str) -> int:
    print(f"mcp-trio token: {message}", file=sys.stderr)
    return 2


def run_token(args: argparse.Namespace, env: Any = None) -> int:
    """Print a development JWT (or API key) to stdout; 0 on success, 2 on a usage error, 1 when
    the configured server would refuse what was minted (the reason goes to stderr)."""
    from ._config import ConfigError, load_config
    from .auth import (
        AuthError,
        JwtVerifier,
        KeyLoadError,
        generate_api_key,
        load_signing_key,
        mint_token,
        secret_key,
    )

    env = os.environ if env is None else env
    scopes = sorted({s for item in args.scope for s in item.split()})
    try:
        config = load_config(args.config, env)
    except ConfigError as exc:
        return _fail(str(exc))

    if args.api_key:
        key, digest = generate_api_key(config.auth.api_key_prefix)
        name = args.name or args.sub
        print(key)
        print(f"# add to the server's config (the key itself is shown once, above):\n"
              f"[[auth.api_keys]]\nname = {json.dumps(name)}\nsha256 = \"{digest}\"\nscopes = {json.dumps(scopes)}",
              file=sys.stderr)
        return 0

    jwt = config.auth.jwt
    issuer = args.issuer or jwt.issuer
    audience = args.audience or (config.audience()[0] if config.audience() else None)
    if not issuer:
        return _fail("no issuer: set [auth.jwt] issuer (or MCP_TRIO_AUTH_JWT_ISSUER) or pass --issuer")
    if not audience:
        return _fail("no audience: set [server] resource or [auth.jwt] audience, or pass --audience")
    try:
        if args.key:
            try:
                pem = Path(args.key).read_bytes()
            except OSError as exc:
                return _fail(f"cannot read {args.key}: {exc.strerror or exc}")
            signing = load_signing_key(pem)
        else:
            secret = jwt.secret
            if not secret and jwt.secret_file:
                secret = Path(jwt.secret_file).read_text(encoding="utf-8").strip()
            if not secret:
                return _fail("no signing key: configure an HMAC secret ([auth.jwt] secret, secret_file or "
                             "MCP_TRIO_AUTH_JWT_SECRET) or pass --key PRIVATE_KEY.pem")
            signing = secret_key(secret)
        token = mint_token(signing, subject=args.sub, issuer=issuer, audience=audience, scopes=scopes,
                           ttl=args.ttl, algorithm=args.alg, kid=args.kid or jwt.kid)
    except (KeyLoadError, OSError, ValueError) as exc:
        return _fail(str(exc))

    # Check it against the server as configured, so a mismatch shows now and not as a 401 later.
    try:
        authenticator = config.authenticator()
    except ConfigError as exc:
        print(token)
        print(f"mcp-trio token: warning: the server's configuration is not usable: {exc}", file=sys.stderr)
        return 1
    # Keys fetched from an identity provider are not checked here: its tokens are not minted by us.
    if authenticator is not None and isinstance(authenticator.jwt, JwtVerifier):
        try:
            authenticator.jwt.verify(token)
        except AuthError as exc:
            print(token)
            print(f"mcp-trio token: warning: the configured server would refuse this token ({exc.reason}: {exc})",
                  file=sys.stderr)
            return 1
    print(token)
    return 0
