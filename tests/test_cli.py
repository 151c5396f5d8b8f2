"""The ``mcp-trio`` command line, run as a real child process."""

from __future__ import annotations

import datetime
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.helpers import child_env

pytestmark = pytest.mark.slow


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_trio", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or child_env(), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [[], ["serve"], ["token"], ["bench"]])
def test_help_everywhere(command: list[str]) -> None:
    done = run_cli(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: mcp-trio" in done.stdout


def test_an_app_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli("serve", "no_such_module_here:server")
    assert done.returncode == 2
    assert "cannot import 'no_such_module_here'" in done.stderr
    (tmp_path / "notaserver.py").write_text("server = 42\n")
    done = run_cli("serve", f"{tmp_path / 'notaserver.py'}:server")
    assert done.returncode == 2
    assert "is an int, not an mcp_trio.Server" in done.stderr


def test_a_misspelt_setting_stops_the_server() -> None:
    env = child_env()
    env["MCP_TRIO_AUTH_JWT_SECRT"] = "oops"
    done = run_cli("serve", env=env)
    assert done.returncode == 2
    assert "MCP_TRIO_AUTH_JWT_SECRT" in done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def http_get(port: int, path: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if context is not None:
        stream = trio.SSLStream(stream, context, server_hostname="localhost", https_compatible=True)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: localhost:{port}\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def wait_for_tcp(port: int) -> None:
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.1)
        else:
            await stream.aclose()
            return


async def wait_until_serving(port: int, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    while True:
        try:
            return await http_get(port, "/healthz", context)
        except OSError:
            await trio.sleep(0.1)


async def test_workers_share_one_port_and_stop_on_sigterm() -> None:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mcp_trio", "serve", "--transport", "http", "--port", str(port), "--workers", "2"],
        env=child_env(), stderr=subprocess.PIPE)
    try:
        with trio.fail_after(30):
            status, _ = await wait_until_serving(port)
            assert status == 200
            # Both workers come up (each prints its URLs) and answer on the same port.
            banner = b""
            assert process.stderr is not None
            while banner.count(b"MCP (Streamable HTTP)") < 2:
                banner += await process.stderr.receive_some(4096)
            for _ in range(20):
                assert (await http_get(port, "/healthz"))[0] == 200
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


async def test_https_with_certfile_and_keyfile(tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mcp_trio", "serve", "--transport", "http", "--port", str(port),
         "--certfile", str(certfile), "--keyfile", str(keyfile)], env=child_env(), stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(certfile))
    try:
        with trio.fail_after(30):
            status, body = await wait_until_serving(port, context)
            assert status == 200 and b'"status":"ok"' in body
            with pytest.raises(trio.BrokenResourceError) as untrusted:
                await http_get(port, "/healthz", ssl.create_default_context())  # not trusted by default
            assert isinstance(untrusted.value.__cause__, ssl.SSLCertVerificationError)
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_wss_with_certfile_and_keyfile(tmp_path: Path) -> None:
    from trio_websocket import open_websocket_url

    from tests.test_websocket import WsClient

    certfile, keyfile = self_signed(tmp_path)
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mcp_trio", "serve", "--transport", "ws", "--port", str(port),
         "--certfile", str(certfile), "--keyfile", str(keyfile)], env=child_env(), stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(certfile))
    try:
        with trio.fail_after(30):
            await wait_for_tcp(port)
            async with open_websocket_url(f"wss://localhost:{port}/", ssl_context=context) as ws:
                client = WsClient(ws)
                await client.initialize()
                reply = await client.request("tools/call", {"name": "echo", "arguments": {"text": "over tls"}})
                assert reply["result"]["content"][0]["text"] == "over tls"
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- the first hour (issue 10): the README's path, errors in one line ---------------------------
REPO = Path(__file__).resolve().parent.parent
#: The installed console script, as a newcomer runs it (not ``python -m``, which adds the cwd).
CONSOLE_SCRIPT = Path(sys.executable).with_name("mcp-trio")


def readme_block(starting: str) -> str:
    """The README's fenced code block whose first line is ``starting``."""
    text = (REPO / "README.md").read_text()
    for block in text.split("```")[1::2]:
        body = block.split("\n", 1)[1] if "\n" in block else ""
        if body.startswith(starting):
            return body
    raise AssertionError(f"no code block starting {starting!r} in README.md")


async def first_tool_call(argv: list[str], cwd: Path) -> dict:
    from tests.helpers import RawClient

    process = await trio.lowlevel.open_process(argv, cwd=str(cwd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, env=child_env())
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    client = RawClient(process.stdin, process.stdout)
    try:
        with trio.fail_after(30):
            init = await client.initialize()
            assert "result" in init, (init, await process.stderr.receive_some(65536))
            return await client.request("tools/call", {"name": "forecast", "arguments": {"city": "Paris", "days": 2}})
    finally:
        await client.close()
        with trio.fail_after(15):
            await process.wait()


async def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    """``mcp-trio serve weather:server`` from the folder holding ``weather.py`` (the README's own
    file), with the installed script: it said ``No module named 'weather'`` before."""
    (tmp_path / "weather.py").write_text(readme_block("# weather.py"))
    reply = await first_tool_call([str(CONSOLE_SCRIPT), "serve", "weather:server"], tmp_path)
    assert reply["result"]["structuredContent"] == {"city": "Paris", "days": 2, "summary": ["sunny", "sunny"]}
    # From elsewhere, --app-dir names the folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reply = await first_tool_call([str(CONSOLE_SCRIPT), "serve", "weather:server", "--app-dir", str(tmp_path)], elsewhere)
    assert reply["result"]["structuredContent"]["city"] == "Paris"


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_a_port_in_use_is_one_line(transport: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--transport", transport, "--port", str(port))
    assert done.returncode == 1
    assert done.stderr == f"mcp-trio: port {port} on 127.0.0.1 is in use: pass --port or stop the other server\n"


async def test_an_open_server_beyond_loopback_says_so_once(tmp_path: Path) -> None:
    """No authentication and a non-loopback address: one WARNING line (and none on loopback,
    or when callers must authenticate)."""

    async def warnings_of(*argv: str) -> list[str]:
        process = await trio.lowlevel.open_process([sys.executable, "-m", "mcp_trio", "serve", "--transport", "http",
                                                    "--port", "0", *argv], env=child_env(), stderr=subprocess.PIPE,
                                                   stdin=subprocess.DEVNULL)
        assert process.stderr is not None
        seen = b""
        try:
            with trio.fail_after(30):
                while b"metrics" not in seen:
                    chunk = await process.stderr.receive_some(4096)
                    assert chunk, seen
                    seen += chunk
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await process.wait()
        return [line for line in seen.decode().splitlines() if "no authentication" in line]

    open_lines = await warnings_of("--host", "0.0.0.0")
    assert len(open_lines) == 1 and "WARNING" in open_lines[0], open_lines
    assert "serving on 0.0.0.0 with no authentication" in open_lines[0] and "configure [auth]" in open_lines[0]
    assert await warnings_of() == []
    from mcp_trio.auth import hash_api_key

    config = tmp_path / "keys.toml"
    config.write_text(f'[[auth.api_keys]]\nname = "ci"\nsha256 = "{hash_api_key("mcpk_x")}"\n')
    assert await warnings_of("--host", "0.0.0.0", "--config", str(config)) == []


def test_the_readme_secure_config_without_its_secret_does_not_start(tmp_path: Path) -> None:
    """The README's secure.toml in a new terminal, MCP_TRIO_AUTH_JWT_SECRET not exported: it
    used to serve everyone, silently (JwtConfig.enabled was false without a key). An issuer
    with no key of its own now means "discover the keys from the issuer": https://dev.local
    does not answer, so the server stops at start, in one line naming the secret to export."""
    config = tmp_path / "secure.toml"
    config.write_text(readme_block("# secure.toml"))
    env = {name: value for name, value in child_env().items() if not name.startswith("MCP_TRIO_")}
    done = run_cli("serve", "--config", str(config), "--port", "0", env=env, timeout=20)
    assert done.returncode == 2
    assert done.stderr.startswith("mcp-trio: [auth.jwt] has no key of its own and none could be fetched from its "
                                  "issuer https://dev.local (")
    assert "export MCP_TRIO_AUTH_JWT_SECRET (32 bytes or more)" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
