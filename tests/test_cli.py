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
    assert "is a int, not an mcp_trio.Server" in done.stderr


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
