"""Configuration: one object from a TOML file, MCP_TRIO_* variables and flags, in that order of
strength (flags > env > file > defaults); every bad setting named with where it came from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec
import pytest
from joserfc.jwk import RSAKey

from mcp_trio import Limits
from mcp_trio._config import (
    ENV_VARS,
    FLAG_KEYS,
    Config,
    ConfigError,
    add_config_arguments,
    load_config,
    overrides_from_args,
)
from mcp_trio._limiter import RateLimits, ToolLimit
from mcp_trio._token import add_token_arguments, run_token
from mcp_trio.auth import AuthError, hash_api_key

from .helpers import authenticate

SECRET = "a-development-secret-of-32-bytes-or-more"


def write(tmp_path: Path, text: str, name: str = "mcp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_named_defaults() -> None:
    config = load_config(None, {}, {})
    assert config == Config()
    assert config.to_limits() == Limits()
    assert config.rate_limits() is None
    assert config.authenticator() is None
    assert (config.server.transport, config.server.host, config.server.port) == ("stdio", "127.0.0.1", 8000)
    assert config.auth.trust_stdio and not config.auth.allow_anonymous


def test_loading_config_does_not_import_the_auth_stack() -> None:
    import subprocess
    import sys

    code = "import sys, mcp_trio._config as c; c.load_config(None, {}, {}); print('joserfc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from mcp_trio import _config
    from mcp_trio.auth import DEFAULT_ALGORITHMS

    assert _config.DEFAULT_ALGORITHMS == DEFAULT_ALGORITHMS


def test_every_limit_is_a_setting() -> None:
    import dataclasses

    names = {f.name for f in msgspec.structs.fields(Limits)}
    assert names == set(Config().limits.__struct_fields__)
    assert {f"MCP_TRIO_LIMITS_{n.upper()}" for n in names} <= set(ENV_VARS)
    assert {f"limits.{n}" for n in names} <= set(FLAG_KEYS.values())


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """
[server]
port = 1111
host = "0.0.0.0"
transport = "http"
[limits]
max_in_flight = 11
page_size = 7
grace_period = 2.5
""")
    file_only = load_config(path, {}, {})
    assert (file_only.server.port, file_only.limits.max_in_flight, file_only.limits.page_size) == (1111, 11, 7)
    env = {"MCP_TRIO_SERVER_PORT": "2222", "MCP_TRIO_LIMITS_MAX_IN_FLIGHT": "22"}
    with_env = load_config(path, env, {})
    assert (with_env.server.port, with_env.limits.max_in_flight, with_env.limits.page_size) == (2222, 22, 7)
    with_flags = load_config(path, env, {"server.port": 3333})
    assert (with_flags.server.port, with_flags.limits.max_in_flight, with_flags.limits.page_size) == (3333, 22, 7)
    assert with_flags.server.host == "0.0.0.0" and with_flags.server.transport == "http"
    # Untouched settings keep their defaults; the limits map onto Limits.
    limits = with_flags.to_limits()
    assert limits.max_in_flight == 22 and limits.page_size == 7 and limits.grace_period == 2.5
    assert limits.max_message_size == Limits().max_message_size


def test_flags_from_argparse(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    parser.add_argument("--max-in-flight", type=int, default=None)
    path = write(tmp_path, "[server]\nport = 1\n[rate_limit]\nrate = 1.0\n")
    args = parser.parse_args(["--config", str(path), "--port", "9", "--allowed-origin", "https://a.example",
                              "--allowed-origin", "https://b.example", "--rate-limit", "4", "--max-in-flight", "3"])
    overrides = overrides_from_args(args)
    assert "server.host" not in overrides  # not given: the file and env may speak
    config = load_config(args.config, {}, overrides)
    assert config.server.port == 9
    assert config.server.allowed_origins == ("https://a.example", "https://b.example")
    assert config.rate_limit.rate == 4.0 and config.limits.max_in_flight == 3


def test_env_lists_json_and_unsetting(tmp_path: Path) -> None:
    path = write(tmp_path, '[rate_limit]\nrate = 5.0\n[server]\nresource = "https://h/mcp"\n')
    env = {
        "MCP_TRIO_SERVER_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "MCP_TRIO_AUTH_JWT_ALGORITHMS": "RS256,ES256",
        "MCP_TRIO_AUTH_JWT_PUBLIC_KEY_FILE": "issuer.pem",  # a JWT setting needs a key source
        "MCP_TRIO_AUTH_API_KEYS": json.dumps([{"name": "ci", "sha256": "0" * 64, "scopes": ["read"]}]),
        "MCP_TRIO_RATE_LIMIT_TOOLS": json.dumps({"search": {"cost": 2, "rate": 1}}),
        "MCP_TRIO_RATE_LIMIT_RATE": "",  # unset what the file set
        "MCP_TRIO_AUTH_ALLOW_ANONYMOUS": "true",
        "MCP_TRIO_SERVER_RESOURCE": "",
    }
    config = load_config(path, env, {})
    assert config.server.allowed_origins == ("https://a.example", "https://b.example")
    assert config.auth.jwt.algorithms == ("RS256", "ES256")
    assert config.auth.api_keys[0].name == "ci" and config.auth.api_keys[0].scopes == ("read",)
    assert config.rate_limit.tools["search"].cost == 2.0
    assert config.rate_limit.rate is None and config.server.resource is None
    assert config.auth.allow_anonymous is True


def test_config_file_named_by_env(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 4444\n")
    assert load_config(None, {"MCP_TRIO_CONFIG": str(path)}, {}).server.port == 4444


@pytest.mark.parametrize("text, where", [
    ("[auth]\nallow_anonymus = true\n", "unknown setting auth.allow_anonymus (did you mean allow_anonymous?)"),
    ("[server]\nport = 70000\n", "server.port must be at most 65535 (got 70000)"),
    ("[server]\ntransport = \"carrier-pigeon\"\n",
     'server.transport must be one of "http", "stdio", "websocket" (got "carrier-pigeon")'),
    ("[limits]\nmax_in_flight = 0\n", "max_in_flight"),
    ("[limitz]\n", "limitz"),
    ("[rate_limit]\nrate = -1\n", "rate_limit.rate must be greater than 0 (got -1)"),
    ("[rate_limit]\nrate = 1\nburst = 1\n[rate_limit.tools.x]\ncost = 3\n", "cost 3"),
    ("[server]\nallowed_origins = [\"https://a.example/\"]\n", "allowed origin"),
    ("[server]\nresource = \"mcp.example.com\"\n", "resource"),
    ("[auth.jwt]\nleeway = -1\n", "auth.jwt.leeway must be at least 0 (got -1)"),
    ("[auth.jwt]\nleeway = \"soon\"\n", 'auth.jwt.leeway must be a number (got "soon")'),
    ("[[auth.api_keys]]\nname = \"ci\"\n", "auth.api_keys[0].sha256 is required (`mcp-trio token --api-key"),
    ("not toml ===", "not valid TOML"),
])
def test_bad_file_settings_are_named(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, {})
    assert where in str(caught.value)


def test_errors_name_their_source(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1\n")
    with pytest.raises(ConfigError, match=r'^environment: MCP_TRIO_SERVER_PORT must be an integer \(got "many"\)$'):
        load_config(path, {"MCP_TRIO_SERVER_PORT": "many"}, {})
    with pytest.raises(ConfigError, match=r"^flags: .*server\.port"):
        load_config(path, {}, {"server.port": "many"})
    bad = write(tmp_path, "[server]\nport = \"many\"\n", "bad.toml")
    with pytest.raises(ConfigError, match=f"^{bad}: .*server\\.port"):
        load_config(bad, {}, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", {}, {})


def test_unknown_environment_variable_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean MCP_TRIO_AUTH_JWT_SECRET"):
        load_config(None, {"MCP_TRIO_AUTH_JWT_SECRT": "x"}, {})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(None, {}, {"server.prot": 1})
    # Other variables are none of our business.
    assert load_config(None, {"HOME": "/root", "MCP_OTHER": "1"}, {}) == Config()


def test_secrets_are_not_in_repr() -> None:
    config = load_config(None, {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}, {})
    assert config.auth.jwt.secret == SECRET
    assert SECRET not in repr(config) and "<hidden>" in repr(config)


def test_key_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    (tmp_path / "keys" / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    (tmp_path / "keys" / "hs.secret").write_text(SECRET + "\n")
    path = write(tmp_path, """
[server]
resource = "https://mcp.example.com/mcp"
[auth.jwt]
issuer = "https://auth.example.com"
jwks_file = "keys/jwks.json"
secret_file = "keys/hs.secret"
kid = "hs"
""")
    config = load_config(path, {}, {})
    assert config.auth.jwt.jwks_file == str((tmp_path / "keys" / "jwks.json").resolve())
    authenticator = config.authenticator()
    assert authenticator is not None and authenticator.jwt is not None
    assert {k.kid for k in authenticator.jwt.keys} == {"k1", "hs"}
    assert authenticator.jwt.audiences == {"https://mcp.example.com/mcp"}


def test_authenticator_from_config_end_to_end(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
[server]
resource = "https://mcp.example.com/mcp"
[auth]
authorization_servers = ["https://auth.example.com"]
[auth.jwt]
issuer = "https://auth.example.com"
[[auth.api_keys]]
name = "ci"
sha256 = "{hash_api_key('mcpk_test-key')}"
scopes = ["read", "execute"]
""")
    config = load_config(path, {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}, {})
    authenticator = config.authenticator()
    assert authenticator is not None
    principal = authenticate(authenticator, {"x-api-key": "mcpk_test-key"})
    assert principal.subject == "ci" and principal.granted == {"read", "execute"}
    assert authenticator.metadata()["authorization_servers"] == ["https://auth.example.com"]
    with pytest.raises(AuthError) as caught:
        authenticate(authenticator, {})
    assert caught.value.status == 401


@pytest.mark.parametrize("text, env, match", [
    ('[auth.jwt]\nsecret_file = "nope"\nissuer = "i"\n[server]\nresource = "https://h/m"\n', {}, "cannot read"),
    ("[server]\nresource = \"https://h/m\"\n", {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}, "issuer is required"),
    ("[auth.jwt]\nissuer = \"i\"\n", {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}, "needs an audience"),
    ('[auth.jwt]\nissuer = "i"\naudience = ["a"]\n', {"MCP_TRIO_AUTH_JWT_SECRET": "short"}, "at least 32"),
    ('[auth.jwt]\nissuer = "i"\naudience = ["a"]\nalgorithms = ["none"]\n', {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}, "none"),
    ('[[auth.api_keys]]\nname = "x"\nsha256 = "mcpk_plain_key"\n', {}, "64 hex"),
])
def test_bad_auth_settings_stop_the_server_at_start(tmp_path: Path, text: str, env: dict[str, str], match: str) -> None:
    config = load_config(write(tmp_path, text), env, {})
    with pytest.raises(ConfigError, match=match):
        config.authenticator()


def test_weak_rsa_in_the_jwks_file_stops_the_server(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.warns(Warning):  # joserfc warns; the server refuses
        jwk = RSAKey.import_key(pem).as_dict(private=False)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    path = write(tmp_path, '[auth.jwt]\nissuer = "i"\naudience = ["a"]\njwks_file = "jwks.json"\n')
    with pytest.raises(ConfigError, match="1024 bits"):
        load_config(path, {}, {}).authenticator()


def test_rate_limits_from_config(tmp_path: Path) -> None:
    path = write(tmp_path, """
[rate_limit]
rate = 20
burst = 5
max_concurrent = 100
[rate_limit.tools.search]
cost = 3
[rate_limit.tools.send_mail]
rate = 0.5
""")
    policy = load_config(path, {}, {}).rate_limits()
    assert policy == RateLimits(rate=20.0, burst=5, max_concurrent=100,
                                tools={"search": ToolLimit(cost=3.0), "send_mail": ToolLimit(rate=0.5)})


# -- mcp-trio token ---------------------------------------------------------------------------
def token_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_token_arguments(parser)
    return parser.parse_args(list(argv))


def dev_config(tmp_path: Path) -> Path:
    return write(tmp_path, '[server]\nresource = "http://127.0.0.1:8000/mcp"\n[auth.jwt]\nissuer = "https://dev.local"\n', "dev.toml")


def test_token_command_mints_what_the_server_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = dev_config(tmp_path)
    env = {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}
    assert run_token(token_args("--config", str(path), "--sub", "ada", "--scope", "write execute"), env) == 0
    token = capsys.readouterr().out.strip()
    authenticator = load_config(path, env, {}).authenticator()
    assert authenticator is not None
    principal = authenticate(authenticator, {"authorization": f"Bearer {token}"})
    assert principal.subject == "ada" and principal.granted == {"write", "read", "execute"}
    assert principal.claims["iss"] == "https://dev.local" and principal.claims["exp"] - principal.claims["iat"] == 3600


def test_token_command_with_a_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = RSAKey.generate_key(2048)
    (tmp_path / "dev.pem").write_bytes(key.as_pem(private=True))
    (tmp_path / "dev.pub.pem").write_bytes(key.as_pem(private=False))
    path = write(tmp_path, '[server]\nresource = "http://127.0.0.1:8000/mcp"\n'
                           '[auth.jwt]\nissuer = "https://dev.local"\npublic_key_file = "dev.pub.pem"\n')
    assert run_token(token_args("--config", str(path), "--key", str(tmp_path / "dev.pem"), "--scope", "read"), {}) == 0
    token = capsys.readouterr().out.strip()
    assert authenticate(load_config(path, {}, {}).authenticator(), {"authorization": f"Bearer {token}"}).scopes == {"read"}  # type: ignore[union-attr]


def test_token_command_warns_when_the_server_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = dev_config(tmp_path)
    env = {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}
    assert run_token(token_args("--config", str(path), "--audience", "https://elsewhere"), env) == 1
    assert "bad_audience" in capsys.readouterr().err
    assert run_token(token_args("--config", str(path)), {}) == 2
    # Fail closed (issue 10): an issuer alone has no key to mint with (its keys are the provider's).
    assert "no signing key" in capsys.readouterr().err
    with_key = write(tmp_path, '[auth.jwt]\nissuer = "i"\naudience = ["a"]\npublic_key_file = "k.pem"\n', "pub.toml")
    assert run_token(token_args("--config", str(with_key)), {}) == 2
    assert "no signing key" in capsys.readouterr().err


def test_token_command_makes_api_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_token(token_args("--api-key", "--name", "ci", "--scope", "read"), {}) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("mcpk_") and len(key) > 40
    assert f'sha256 = "{hash_api_key(key)}"' in out.err and 'name = "ci"' in out.err and '["read"]' in out.err
    # The printed table is valid config.
    table = out.err.split("\n", 1)[1]
    config = load_config(write(tmp_path, table), {}, {})
    assert authenticate(config.authenticator(), {"x-api-key": key}).subject == "ci"  # type: ignore[union-attr]




# -- keys and introspection from an identity provider ----------------------------------------------
def test_issuer_alone_discovers_and_jwks_uri_fetches(tmp_path: Path) -> None:
    from mcp_trio.auth import Introspector, JwksVerifier

    base = '[server]\nresource = "https://mcp.example.com/mcp"\n[auth.jwt]\nissuer = "https://idp.example.com/realms/acme"\n'
    discovered = load_config(write(tmp_path, base), {}, {}).authenticator()
    assert discovered is not None and isinstance(discovered.jwt, JwksVerifier)
    assert discovered.jwt.jwks_uri is None and discovered.jwt.metadata is not None
    env = {"MCP_TRIO_AUTH_JWT_JWKS_URI": "https://idp.example.com/jwks", "MCP_TRIO_AUTH_JWT_SCOPE_CLAIMS": "scp,realm_access.roles",
           "MCP_TRIO_AUTH_INTROSPECTION_CLIENT_ID": "mcp", "MCP_TRIO_AUTH_INTROSPECTION_CLIENT_SECRET": "s3cret-value",
           "MCP_TRIO_AUTH_PROVIDER_TIMEOUT": "2.5"}
    config = load_config(write(tmp_path, base), env, {})
    assert "s3cret-value" not in repr(config) and "<hidden>" in repr(config.auth.introspection)
    authenticator = config.authenticator()
    assert authenticator is not None and isinstance(authenticator.jwt, JwksVerifier)
    assert authenticator.jwt.jwks_uri == "https://idp.example.com/jwks"
    assert authenticator.jwt.scope_claims == ("scp", "realm_access.roles")
    assert authenticator.jwt.client.timeout == 2.5
    assert isinstance(authenticator.introspection, Introspector)
    assert authenticator.introspection.endpoint is None  # discovered from the issuer
    assert authenticator.introspection.client is authenticator.jwt.client  # one client, one pool
    assert "s3cret-value" not in repr(authenticator.introspection)


def test_introspection_alone_with_an_endpoint(tmp_path: Path) -> None:
    (tmp_path / "client.secret").write_text("from-a-file\n")
    config = load_config(write(tmp_path, '[auth.introspection]\nendpoint = "https://idp.example.com/introspect"\n'
                                         'client_id = "mcp"\nclient_secret_file = "client.secret"\n'
                                         'auth_method = "client_secret_post"\ncache_ttl = 5\n'), {}, {})
    authenticator = config.authenticator()
    assert authenticator is not None and authenticator.jwt is None and authenticator.introspection is not None
    assert authenticator.introspection._auth_fields == {"client_id": "mcp", "client_secret": "from-a-file"}
    assert authenticator.introspection.cache_ttl == 5


@pytest.mark.parametrize("text, match", [
    ('[auth.jwt]\nissuer = "https://idp.example.com"\njwks_uri = "http://idp.example.com/jwks"\n',
     r"\[auth.jwt\] jwks_uri: .*plain http: use https"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\njwks_uri = "http://127.0.0.1:9/jwks"\n', "allow_http_loopback = true"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\njwks_uri = "idp.example.com/jwks"\n', "not an absolute https:// URL"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\njwks_uri = "https://idp.example.com:70000/jwks"\n', "malformed port"),
    ('[auth.jwt]\nissuer = "auth-server"\n', r"\[auth.jwt\] issuer \(keys and endpoints are discovered from it\)"),
    ('[auth.jwt]\nissuer = "https://idp.example.com?tenant=1"\n', "has a query"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\njwks_uri = "https://idp.example.com/jwks"\nsecret = "' + "x" * 40 + '"\n',
     "exclude each other"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\n[auth.provider]\nca_file = "missing.pem"\n', "ca_file: cannot read"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\n[auth.provider]\nca_file = "not-a-ca.pem"\n', "holds no PEM CA"),
    ('[auth.jwt]\nissuer = "https://idp.example.com"\n[auth.provider]\ncache_min = 600\ncache_max = 60\n', "cache_min"),
    ('[auth.introspection]\nendpoint = "https://idp.example.com/introspect"\n', "client_id is required"),
    ('[auth.introspection]\nendpoint = "https://idp.example.com/introspect"\nclient_id = "mcp"\n', "needs client_secret"),
    ('[auth.introspection]\nclient_id = "mcp"\nclient_secret = "s"\n', "needs endpoint, or"),
    ('[auth.introspection]\nendpoint = "https://u:p@idp.example.com/i"\nclient_id = "mcp"\nclient_secret = "s"\n',
     r"\[auth.introspection\] endpoint: .*carries credentials"),
])
def test_unusable_provider_settings_stop_the_server_at_start(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    config = load_config(write(tmp_path, '[server]\nresource = "https://mcp.example.com/mcp"\n' + text), {}, {})
    with pytest.raises(ConfigError, match=match) as caught:
        config.authenticator()
    assert "\n" not in str(caught.value)


def test_provider_limits_are_checked_when_loaded(tmp_path: Path) -> None:
    for text in ("[auth.provider]\ntimeout = 0\n", "[auth.provider]\nmax_redirects = 50\n",
                 "[auth.introspection]\nmax_concurrent = 0\n", '[auth.introspection]\nauth_method = "private_key_jwt"\n'):
        with pytest.raises(ConfigError):
            load_config(write(tmp_path, text), {}, {})


def test_http_serving_settings_from_the_command_line() -> None:
    """``--http2``, ``--legacy-sse`` and the HTTP engine's limits are flags like the others,
    and reach ``Limits`` (and, for the engine, ``H1Limits``)."""
    from mcp_trio._cli import build_parser
    from mcp_trio.transports.h1 import H1Limits

    args = build_parser().parse_args(["serve", "--transport", "http", "--http2", "--legacy-sse", "--max-head-size", "8KiB",
                                      "--max-headers", "20", "--max-http-connections", "50", "--keep-alive-timeout", "2"])
    config = load_config(None, {"MCP_TRIO_LIMITS_MAX_HEADERS": "30"}, overrides_from_args(args))
    assert config.server.http2 and config.server.legacy_sse
    engine = H1Limits.from_limits(config.to_limits())
    assert (engine.max_head_size, engine.max_headers, engine.max_connections, engine.keep_alive_timeout) == (8192, 20, 50, 2.0)
    defaults = load_config(None, {"MCP_TRIO_SERVER_LEGACY_SSE": "true"}, {})
    assert not defaults.server.http2 and defaults.server.legacy_sse
    with pytest.raises(ConfigError, match="max_headers"):
        load_config(None, {"MCP_TRIO_LIMITS_MAX_HEADERS": "0"}, {}).to_limits()
