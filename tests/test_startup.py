"""``mcp-trio serve`` refusing to start: fail closed, in one line, with the next step.

These run ``main`` in this process: every case stops before a transport starts (a server that
started instead would block the test, which ``fail_after`` turns into a failure). The cases that
need a real listening port or the installed console script are in ``test_cli.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mcp_trio._cli import build_parser, main
from mcp_trio.auth import hash_api_key
from tests.test_cli import self_signed

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MCP_TRIO_* variable of the caller's, and the root logger and sys.path as they were."""
    for name in list(os.environ):
        if name.startswith("MCP_TRIO_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def serve(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """``mcp-trio serve ARGV`` in a thread; its status and stderr lines (it must not start)."""

    def run() -> int:
        try:
            return main(["serve", *argv])
        except SystemExit as exit:  # argparse's usage errors
            return int(exit.code or 0)

    with trio.fail_after(20):  # a server that started instead fails the test here (its thread is abandoned)
        status = await trio.to_thread.run_sync(run, abandon_on_cancel=True)
    return status, capsys.readouterr().err.splitlines()


def one_line(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def write(tmp_path: Path, text: str, name: str = "mcp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- 1. fail closed ---------------------------------------------------------------------------
HTTP = ("--transport", "http", "--port", "0")
RESOURCE = '[server]\nresource = "http://127.0.0.1:8000/mcp"\n'


@pytest.mark.parametrize("config, env, says", [
    # The README's secure.toml in a terminal where the secret was never exported: served anyone.
    # An issuer alone means its keys are discovered; dev.local does not answer: stopped at start.
    (RESOURCE + '[auth.jwt]\nissuer = "https://dev.local"\n', {},
     "none could be fetched from its issuer https://dev.local"),
    (RESOURCE + '[auth.jwt]\nissuer = "https://dev.local"\n', {"MCP_TRIO_AUTH_JWT_SECRET": ""},
     "export MCP_TRIO_AUTH_JWT_SECRET"),
    (RESOURCE + '[auth.jwt]\nissuer = "i"\nsecret_file = "empty.secret"\n', {},
     "empty.secret is empty: write the HMAC secret (32 bytes or more) into it"),
    (RESOURCE + '[auth.jwt]\nissuer = "i"\npublic_key_file = "empty.pem"\n', {},
     "empty.pem is empty: write the PEM public key into it"),
    (RESOURCE + '[auth.jwt]\nissuer = "i"\njwks_file = "missing.json"\n', {}, "cannot read JWKS file"),
    (RESOURCE + '[auth.jwt]\nissuer = "i"\npublic_key_file = "missing.pem"\n', {}, "cannot read"),
    ('[[auth.api_keys]]\nname = "ci"\n', {},
     "auth.api_keys[0].sha256 is required (`mcp-trio token --api-key --name NAME` prints a key and its entry)"),
    ('[[auth.api_keys]]\nname = "ci"\nsha256 = ""\n', {}, "sha256 must be 64 hex digits"),
    ('[auth]\nrequired_scopes = ["read"]\n', {}, "[auth] is set but no caller can be authenticated"),
    ('[request_state]\nprevious_secrets = ["' + SECRET + '"]\n', {}, "[request_state] has no current secret"),
    ('[request_state]\nsecret = ""\n', {}, "[request_state] has no current secret"),
    ('[request_state]\nsecret_file = "empty.secret"\n', {}, "empty.secret is empty"),
    ("", {"MCP_TRIO_SERVER_ALLOWED_ORIGINS": " , "}, "server.allowed_origins is set but names no origin"),
    ("", {"MCP_TRIO_SERVER_ALLOWED_ORIGINS": "https://a.example;https://b.example"}, "must look like https://host[:port]"),
])
async def test_a_security_setting_that_cannot_work_stops_the_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        config: str, env: dict[str, str], says: str) -> None:
    (tmp_path / "empty.secret").write_text("\n")
    (tmp_path / "empty.pem").write_text("")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, lines = await serve(capsys, "--config", str(write(tmp_path, config)), *HTTP)
    assert status == 2
    assert says in one_line(lines)


@pytest.mark.parametrize("flags, says", [
    (("--keyfile", "key.pem"), "--keyfile key.pem was given without --certfile"),
    (("--certfile", "nope.pem"), "--certfile nope.pem: No such file or directory"),
    (("--certfile", "cert.pem"), "holds no private key: pass --keyfile KEY.pem"),
    (("--certfile", "cert.pem", "--keyfile", "other.pem"), "is not the key of --certfile"),
    (("--certfile", "key.pem", "--keyfile", "key.pem"), "holds no PEM certificate"),
])
async def test_tls_that_cannot_work_stops_the_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        flags: tuple[str, ...], says: str) -> None:
    """A key without a certificate used to serve plain HTTP; a certificate path that does not
    exist used to start an "https" server that failed every handshake."""
    certfile, keyfile = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = self_signed(other)
    (tmp_path / "cert.pem").write_bytes(certfile.read_bytes())
    (tmp_path / "key.pem").write_bytes(keyfile.read_bytes())
    (tmp_path / "other.pem").write_bytes(other_key.read_bytes())
    monkeypatch.chdir(tmp_path)
    for transport in ("http", "ws"):
        status, lines = await serve(capsys, "--transport", transport, "--port", "0", *flags)
        assert status == 2
        assert says in one_line(lines)


def test_a_certificate_and_its_key_load(tmp_path: Path) -> None:
    from mcp_trio._startup import StartupError, tls_context

    certfile, keyfile = self_signed(tmp_path)
    assert tls_context(str(certfile), str(keyfile)) is not None
    assert tls_context(None, None) is None
    with pytest.raises(StartupError):
        tls_context(str(certfile), None)


async def test_tls_flags_on_stdio_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = await serve(capsys, "--certfile", "cert.pem")
    assert status == 2 and one_line(lines) == "mcp-trio: --certfile needs a network transport: pass --transport http or ws"


async def test_stdio_cannot_be_untrusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = await serve(capsys, "--config", str(write(tmp_path, "[auth]\ntrust_stdio = false\n")))
    assert status == 2 and "stdio carries no credentials" in one_line(lines)


# -- 2. APP names a Server ----------------------------------------------------------------------
APP = '''
from mcp_trio import Server

server = Server("weather")


@server.tool
async def forecast(city: str) -> str:
    return "sunny"


class Weather:
    pass


def make_server():
    return server


def make_for(city):
    return server


async def make_later():
    return server


def make_nothing():
    return 42
'''


@pytest.mark.parametrize("attr, says", [
    ("forecast", "weather_app:forecast is a tool function, not a Server: serve its Server, weather_app:server"),
    ("Weather", "weather_app:Weather is a class (Weather), not a Server: APP must name an mcp_trio.Server, or a "
                "function with no arguments that returns one (weather_app defines the Server server)"),
    ("make_for", "weather_app:make_for is a function that takes arguments (city)"),
    ("make_later", "weather_app:make_later is an async function"),
    ("make_nothing", "weather_app:make_nothing() returned an int, not an mcp_trio.Server"),
    ("srv", "weather_app has no attribute 'srv' (did you mean server?)"),
])
async def test_an_app_that_is_not_a_server_says_what_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], attr: str, says: str) -> None:
    (tmp_path / "weather_app.py").write_text(APP)
    status, lines = await serve(capsys, f"weather_app:{attr}", "--app-dir", str(tmp_path))
    assert status == 2
    assert one_line(lines).startswith(f"mcp-trio: {says}")


def test_a_factory_with_no_arguments_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_trio._app import load_app

    (tmp_path / "factory_app.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    app = load_app("factory_app:make_server")
    assert app.name == "weather" and load_app("factory_app") is app  # attr defaults to "server"


def test_modules_are_found_in_the_current_directory_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_trio._app import load_app

    (tmp_path / "cwd_app.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    assert load_app("cwd_app:server").name == "weather"


def test_a_missing_module_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_trio._app import AppLoadError, load_app

    monkeypatch.chdir(tmp_path)
    with pytest.raises(AppLoadError, match=r"no module 'nowhere' in the current directory .* pass --app-dir DIR"):
        load_app("nowhere:server")
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_here\n")
    with pytest.raises(AppLoadError, match="it imports 'no_such_dependency_here', which is not installed"):
        load_app("needs_dep:server")
    with pytest.raises(AppLoadError, match="--app-dir /no/such/dir: no such directory"):
        load_app("needs_dep:server", "/no/such/dir")


async def test_a_traceback_only_with_debug_logging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('the database is down')\n")
    status, lines = await serve(capsys, "broken_app:server", "--app-dir", str(tmp_path))
    assert status == 2
    assert one_line(lines) == ("mcp-trio: cannot import 'broken_app': it raised RuntimeError: the database is down "
                               "(--log-level debug shows the traceback)")
    sys.modules.pop("broken_app", None)
    status, lines = await serve(capsys, "broken_app:server", "--app-dir", str(tmp_path), "--log-level", "debug")
    assert status == 2
    assert lines[0].startswith("Traceback") and "RuntimeError: the database is down" in "\n".join(lines)
    assert lines[-1].startswith("mcp-trio: cannot import 'broken_app'")


# -- 3. errors a person can act on ----------------------------------------------------------------
async def test_a_misspelt_flag_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = await serve(capsys, "--trasnport", "http")
    assert status == 2
    assert one_line(lines) == ("mcp-trio serve: unknown option --trasnport (did you mean --transport?) "
                               "(see mcp-trio serve --help)")
    status, lines = await serve(capsys, "--port", "70000")
    assert status == 2 and "--port: must be between 0 and 65535 (got 70000)" in one_line(lines)
    status, lines = await serve(capsys, "--max-message-size", "4MB", "--max-in-flght", "3")
    assert status == 2 and "unknown option --max-in-flght (did you mean --max-in-flight?)" in one_line(lines)


def test_help_shows_sizes_and_durations_as_people_write_them() -> None:
    parser = build_parser()
    serve_help = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    flat = " ".join(serve_help.split())
    assert "(default: 4 MiB)" in flat and "e+06" not in flat
    assert "(default: 10 s)" in flat and "(default: 10,000)" in flat
    args = parser.parse_args(["serve", "--max-message-size", "512KiB"])
    assert args.max_message_size == 512 * 1024


@pytest.mark.parametrize("config, says", [
    ("[server]\nport = 70000\n", "mcp.toml: server.port must be at most 65535 (got 70000)"),
    ("[auth]\nallow_anonymus = true\n[limitz]\nmax_in_flight = 1\n[server]\nprot = 1\n",
     "mcp.toml: unknown settings auth.allow_anonymus (did you mean allow_anonymous?), limitz (did you mean limits?), "
     "server.prot (did you mean port?); docs/security.md lists every key"),
])
async def test_config_errors_in_plain_words(tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, says: str) -> None:
    status, lines = await serve(capsys, "--config", str(write(tmp_path, config)))
    assert status == 2 and one_line(lines).endswith(says)


async def test_an_unreadable_config_file_and_a_missing_plugin_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = await serve(capsys, "--config", str(tmp_path))
    assert status == 2 and one_line(lines).endswith("Is a directory: check --config (or $MCP_TRIO_CONFIG)")
    status, lines = await serve(capsys, "--config", str(tmp_path / "absent.toml"))
    assert status == 2 and "No such file or directory: check --config" in one_line(lines)
    status, lines = await serve(capsys, "--plugins", str(tmp_path / "absent"), *HTTP)
    assert status == 2
    assert one_line(lines) == (f"mcp-trio: plugin directory not found: {tmp_path / 'absent'}: create it, or fix "
                               "--plugins / [plugins] directories")


def test_every_unknown_environment_variable_at_once() -> None:
    from mcp_trio._config import ConfigError, load_config

    with pytest.raises(ConfigError) as caught:
        load_config(None, {"MCP_TRIO_SERVER_PROT": "1", "MCP_TRIO_AUTH_JWT_SECRT": "x"}, {})
    assert str(caught.value) == (
        "unknown environment variables MCP_TRIO_AUTH_JWT_SECRT (did you mean MCP_TRIO_AUTH_JWT_SECRET?), "
        "MCP_TRIO_SERVER_PROT (did you mean MCP_TRIO_SERVER_PORT?): unset or rename (docs/security.md lists every setting)")


def test_a_working_auth_config_still_starts(tmp_path: Path) -> None:
    """The checks refuse what cannot work, not what can: each key source alone is enough."""
    from mcp_trio._config import load_config

    (tmp_path / "hs.secret").write_text(SECRET)
    for text, env in [
        (RESOURCE + '[auth.jwt]\nissuer = "i"\n', {"MCP_TRIO_AUTH_JWT_SECRET": SECRET}),
        (RESOURCE + '[auth.jwt]\nissuer = "i"\nsecret_file = "hs.secret"\n', {}),
        (f'[[auth.api_keys]]\nname = "ci"\nsha256 = "{hash_api_key("mcpk_x")}"\n', {}),
        ('[auth]\nallow_anonymous = true\nanonymous_scopes = ["read"]\n', {}),
        ('[request_state]\nttl = 60\n', {}),
        ('[request_state]\nsecret = "' + SECRET + '"\nprevious_secrets = ["' + "t" * 40 + '"]\n', {}),
        ("[server]\nallowed_origins = [\"https://a.example\"]\n", {}),
    ]:
        config = load_config(write(tmp_path, text), env, {})
        if config.auth.enabled:
            assert config.authenticator() is not None, text


def test_failures_to_listen_are_named_wherever_they_are_nested() -> None:
    import errno
    import socket

    from mcp_trio._startup import bind_failure

    def nested(exc: BaseException) -> BaseException:
        return ExceptionGroup("outer", [ExceptionGroup("inner", [exc])])

    cases = [
        (OSError(errno.EADDRINUSE, "Address already in use"), "port 80 on 10.0.0.1 is in use: pass --port or stop the other server"),
        (OSError(errno.EACCES, "Permission denied"), "not allowed to listen on port 80 of 10.0.0.1 (ports below 1024 need "
                                                      "privileges): pass --port 8000 or another above 1023"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "cannot listen on 10.0.0.1: not an address of this machine"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot listen on 10.0.0.1: no such host name"),
    ]
    for exc, says in cases:
        failure = bind_failure(nested(exc), "10.0.0.1", 80)
        assert failure is not None and str(failure).startswith(says) and failure.status == 1
    assert bind_failure(nested(ValueError("a bug")), "10.0.0.1", 80) is None
