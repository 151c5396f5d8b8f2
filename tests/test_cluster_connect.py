"""Cluster mode's settings and connection, against real redis-server processes.

One server, a password, TLS, a Sentinel and a one-node Redis Cluster are each a real
``redis-server`` started by the test (tests/cluster_fixtures.py); the failures a person meets
(nothing listening, a wrong password, an unverifiable certificate) come out as one line.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from mcp_trio.cluster import ClusterSettings, RedisUnavailable, SettingError, open_cluster, parse_redis_url
from tests.cluster_fixtures import RedisServer, free_port

# -- settings (no Redis needed) ----------------------------------------------------------------


def test_url_forms_parse_and_never_show_the_password() -> None:
    single = parse_redis_url("redis://app:s%40cret@10.0.0.5:6380/3")
    assert (single.topology, single.endpoints[0].port, single.db, single.username, single.password) == (
        "single", 6380, 3, "app", "s@cret")
    assert str(single) == "redis://app:***@10.0.0.5:6380/3"
    sentinel = parse_redis_url("redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=x")
    assert sentinel.topology == "sentinel" and sentinel.service == "mymaster" and sentinel.db == 2
    assert [str(e) for e in sentinel.endpoints] == ["s1:26379", "s2:26379", "[::1]:26380"]
    assert "pw" not in str(sentinel) and "x" not in repr(sentinel).split("sentinel_username")[0][-5:]
    cluster = parse_redis_url("rediss+cluster://n1:7000,n2:7001?ssl_cert_reqs=none")
    assert cluster.topology == "cluster" and cluster.tls and len(cluster.endpoints) == 2
    assert parse_redis_url("unix:///run/redis.sock?db=1").unix_path == "/run/redis.sock"


@pytest.mark.parametrize(("url", "says"), [
    ("http://localhost", "unsupported URL 'http'"),
    ("localhost:6379", "unsupported URL"),
    ("redis://", "no host"),
    ("redis://a:1,b:2", "several hosts need redis+sentinel"),
    ("redis+sentinel://s1:26379", "needs the service name"),
    ("redis://localhost:99999", "bad host:port"),
    ("redis://localhost/x", "database number must be a whole number"),
    ("redis://localhost?ssl_cert_reqs=none", "TLS options need a rediss:// URL"),
    ("rediss://localhost?ssl_ca_certs=/no/such/ca.pem", "ssl_ca_certs '/no/such/ca.pem' does not exist"),
    ("redis://localhost?timeout=3", "unknown option(s) timeout"),
    ("redis+cluster://n1:7000/2", "only database 0"),
])
def test_a_url_that_cannot_work_is_one_line(url: str, says: str) -> None:
    with pytest.raises(SettingError) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert says in message and "\n" not in message and message.startswith("cluster.redis_url")


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("key_prefix", "a{b}:", "cluster.key_prefix"),
    ("key_prefix", "x" * 65, "at most 64"),
    ("command_timeout", 0.0, "cluster.command_timeout must be a positive number"),
    ("session_ttl", float("inf"), "cluster.session_ttl"),
    ("events_per_session", 0, "cluster.events_per_session must be a whole number of at least 1"),
    ("on_unavailable", "open", "'closed' or 'local'"),
])
def test_settings_are_checked(setting: str, value: object, says: str) -> None:
    with pytest.raises(SettingError, match=says.replace("(", r"\(").replace("{", r"\{")):
        ClusterSettings(redis_url="redis://localhost", **{setting: value})  # type: ignore[arg-type]


def test_nothing_redis_is_imported_without_cluster_mode() -> None:
    """Importing mcp_trio (and checking cluster settings) imports no Redis client."""
    code = ("import sys, mcp_trio, mcp_trio.cluster\n"
            "from mcp_trio.transports import http, websocket, stdio\n"
            "mcp_trio.cluster.ClusterSettings(redis_url='redis://localhost')\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('coredis', 'redis', 'anyio')], sorted(sys.modules)\n"
            "mcp_trio.cluster.SharedLimiter\n"
            "assert 'coredis' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_cluster_package_is_a_leaf() -> None:
    """cluster/ imports protocol/ and the sans-io limiter of ours, never serving or transports
    (imports inside functions count too)."""
    import ast

    package = Path(__file__).resolve().parent.parent / "mcp_trio" / "cluster"
    allowed = ("protocol", "_limiter")
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                assert (node.module or "").split(".")[0] in allowed, f"{path.name}: from {'.' * node.level}{node.module}"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcp_trio"):
                assert node.module.split(".")[1] in allowed, f"{path.name}: from {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("mcp_trio") or alias.name.split(".")[1] in allowed, path.name


# -- connecting ----------------------------------------------------------------------------------


async def test_connects_and_checks_a_real_redis(redis_server: RedisServer) -> None:
    settings = ClusterSettings(redis_url=redis_server.url, key_prefix="svc-a:")
    with trio.fail_after(10):
        async with open_cluster(settings) as cluster:
            assert await cluster.client.ping() == b"PONG"
            assert cluster.keys.bucket(("user", "ann")) == "svc-a:rl:{user|ann}"
            assert len(cluster.node_id) == 16


async def test_nothing_listening_is_one_line_within_the_deadline() -> None:
    port = free_port()
    settings = ClusterSettings(redis_url=f"redis://127.0.0.1:{port}/0", connect_timeout=2.0)
    started = time.monotonic()
    with trio.fail_after(10), pytest.raises(RedisUnavailable) as caught:
        async with open_cluster(settings):
            pytest.fail("connected to nothing")
    assert time.monotonic() - started < 2.5
    assert str(caught.value) == (f"cannot reach Redis at redis://127.0.0.1:{port} (Connection refused): "
                                 "start it or fix cluster.redis_url")
    assert caught.value.data == {"retryAfterMs": 1000}


async def test_credentials_from_the_url(start_redis) -> None:  # type: ignore[no-untyped-def]
    server = start_redis("--user", "default", "off", "--user", "app", "on", ">s3cret", "~*", "&*", "+@all")
    good = f"redis://app:s3cret@127.0.0.1:{server.port}/0"
    with trio.fail_after(10):
        async with open_cluster(ClusterSettings(redis_url=good)) as cluster:
            assert await cluster.client.ping() == b"PONG"
        with pytest.raises(RedisUnavailable) as caught:
            async with open_cluster(ClusterSettings(redis_url=f"redis://app:wrong@127.0.0.1:{server.port}/0")):
                pytest.fail("wrong password accepted")
    message = str(caught.value)
    assert message.startswith(f"Redis at redis://app:***@127.0.0.1:{server.port} refused the credentials")
    assert message.endswith("fix the user or password in cluster.redis_url") and "wrong" not in message


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-trio test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


async def test_tls_is_verified(start_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca, cert, key = _certificates(tmp_path)
    server = start_redis("--port", "0", "--tls-port", "{port}", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")
    with trio.fail_after(10):
        async with open_cluster(ClusterSettings(redis_url=f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca}")) as cluster:
            assert await cluster.client.ping() == b"PONG"
        # Without our CA the server's certificate cannot be verified: refused, in one line.
        with pytest.raises(RedisUnavailable) as caught:
            async with open_cluster(ClusterSettings(redis_url=f"rediss://127.0.0.1:{server.port}/0")):
                pytest.fail("an unverified certificate was accepted")
    assert str(caught.value).startswith(f"TLS to Redis at rediss://127.0.0.1:{server.port} failed (")
    assert "certificate verify failed" in str(caught.value)


async def test_sentinel_names_the_primary(start_redis) -> None:  # type: ignore[no-untyped-def]
    primary = start_redis()
    sentinel = start_redis("--sentinel", config=f"sentinel monitor svc 127.0.0.1 {primary.port} 1\n", name="sentinel")
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/svc"
    with trio.fail_after(10):
        async with open_cluster(ClusterSettings(redis_url=url)) as cluster:
            await cluster.client.set("k", "through-sentinel")
        assert primary.cli("GET", "k") == "through-sentinel"
        with pytest.raises(RedisUnavailable, match="no Sentinel at .* names a primary for 'other'"):
            async with open_cluster(ClusterSettings(redis_url=f"redis+sentinel://127.0.0.1:{sentinel.port}/other")):
                pytest.fail("an unknown service had a primary")


async def one_node_cluster(start_redis) -> RedisServer:  # type: ignore[no-untyped-def]
    """A real Redis Cluster of one node holding every slot."""
    node = start_redis("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    with trio.fail_after(10):
        # A node just started may refuse cluster commands for a moment on a loaded machine,
        # or take the slots and still answer with an error: ask it what it holds.
        while "cluster_slots_assigned:16384" not in node.cli("CLUSTER", "INFO"):
            try:
                node.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            except subprocess.CalledProcessError:
                await trio.sleep(0.1)
        while "cluster_state:ok" not in node.cli("CLUSTER", "INFO"):
            await trio.sleep(0.05)
    return node


async def test_redis_cluster_of_one_node(start_redis) -> None:  # type: ignore[no-untyped-def]
    node = await one_node_cluster(start_redis)
    with trio.fail_after(10):
        async with open_cluster(ClusterSettings(redis_url=f"redis+cluster://127.0.0.1:{node.port}")) as cluster:
            await cluster.client.set("k", "through-cluster")
    assert node.cli("GET", "k") == "through-cluster"


async def test_a_redis_that_does_not_answer_is_one_line_within_the_deadline(redis_server: RedisServer) -> None:
    """A stopped (SIGSTOP) redis-server accepts connections but never answers: the connect
    deadline ends the wait."""
    import signal

    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        settings = ClusterSettings(redis_url=redis_server.url, connect_timeout=0.5, command_timeout=0.3)
        started = time.monotonic()
        with trio.fail_after(10), pytest.raises(RedisUnavailable) as caught:
            async with open_cluster(settings):
                pytest.fail("a frozen Redis answered")
        assert time.monotonic() - started < 2.0
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert str(caught.value).startswith(f"Redis at redis://127.0.0.1:{redis_server.port} did not answer in time")
