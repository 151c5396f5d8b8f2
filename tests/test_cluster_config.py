"""Turning cluster mode on: ``[cluster] redis_url``, ``MCP_TRIO_CLUSTER_REDIS_URL``, ``--redis``;
without it nothing of cluster mode is imported; a Redis that cannot be used stops the start
with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from mcp_trio._config import ClusterConfig, ConfigError, load_config
from tests.cluster_fixtures import RedisServer

REPO = Path(__file__).resolve().parent.parent


def test_the_config_defaults_are_the_cluster_defaults() -> None:
    """``[cluster]`` repeats ``ClusterSettings``'s defaults (so loading a config imports no
    cluster code): every key is a setting, with the same default."""
    from mcp_trio.cluster import ClusterSettings

    defaults = ClusterSettings(redis_url="redis://x")
    for name, value in msgspec.structs.asdict(ClusterConfig()).items():
        if name != "redis_url":
            assert getattr(defaults, name) == value, name
    assert set(msgspec.structs.asdict(ClusterConfig())) == {f for f in ClusterSettings.__dataclass_fields__ if f != "target"}


def test_one_setting_turns_it_on_from_file_env_or_flag(tmp_path: Path) -> None:
    assert load_config(None, {}, {}).cluster_settings() is None
    file = tmp_path / "c.toml"
    file.write_text('[cluster]\nredis_url = "redis://file:6379"\nkey_prefix = "svc:"\n')
    settings = load_config(file, {}, {}).cluster_settings()
    assert settings is not None and settings.target.endpoints[0].host == "file" and settings.key_prefix == "svc:"
    env = {"MCP_TRIO_CLUSTER_REDIS_URL": "rediss://:secret@env:6380/2", "MCP_TRIO_CLUSTER_ON_UNAVAILABLE": "local"}
    settings = load_config(file, env, {}).cluster_settings()
    assert settings is not None and settings.target.tls and settings.target.db == 2 and settings.on_unavailable == "local"
    assert "secret" not in repr(load_config(file, env, {}).cluster)
    settings = load_config(file, env, {"cluster.redis_url": "redis+sentinel://s1:26379,s2/main"}).cluster_settings()
    assert settings is not None and settings.target.topology == "sentinel" and settings.target.service == "main"


@pytest.mark.parametrize(("env", "says"), [
    ({"MCP_TRIO_CLUSTER_REDIS_URL": "http://x"}, "unsupported URL"),
    ({"MCP_TRIO_CLUSTER_REDIS_URL": "redis://x", "MCP_TRIO_CLUSTER_KEY_PREFIX": "a b"}, "key_prefix"),
    ({"MCP_TRIO_CLUSTER_REDIS_URL": "redis://x", "MCP_TRIO_CLUSTER_NODE_TTL": "0"}, "node_ttl"),
    ({"MCP_TRIO_CLUSTER_ON_UNAVAILABLE": "open"}, "ON_UNAVAILABLE must be one of"),
])
def test_a_setting_that_cannot_work_stops_the_load(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(None, env, {})


def test_nothing_of_cluster_mode_is_imported_without_it() -> None:
    """A server served without ``redis_url``, and its config loaded, import no Redis client and
    no cluster code (a fresh interpreter)."""
    code = """
import sys, trio
from mcp_trio import Server
from mcp_trio._config import load_config
from mcp_trio.transports.http import serve_http
from mcp_trio.transports.websocket import serve_websocket
assert load_config(None, {}, {}).cluster_settings() is None
async def main():
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve_http(Server("a"), port=0, task_status=task_status))
        await nursery.start(lambda task_status: serve_websocket(Server("b"), port=0, task_status=task_status))
        nursery.cancel_scope.cancel()
trio.run(main)
loaded = [m for m in sys.modules if m.split(".")[0] in ("coredis", "redis") or m.startswith("mcp_trio.cluster")
          or m == "mcp_trio.serving._cluster"]
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_mcp_trio_serve_without_it_imports_nothing_of_cluster_mode(transport: str) -> None:
    """``mcp-trio serve`` with no Redis URL (the command people run, its config and CLI paths
    included) imports no Redis client and no cluster code: ``-X importtime`` lists every module
    the process imported until it served."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_TRIO_CLUSTER_")}
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "mcp_trio", "serve", "tests.cluster_app:make_app",
                                "--transport", transport, "--port", "0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, text=True)
    imported: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:  # ends when the process does (it fails a start: EOF)
            if line.startswith("import time:"):
                imported.append(line.rsplit("|", 1)[-1].strip())
            elif "mcp-trio: serving" in line:
                break
        else:
            pytest.fail(f"mcp-trio serve did not start (exit status {process.wait(10)})")
    finally:
        process.terminate()
        process.wait(10)
    assert "mcp_trio.serving._supervisor" in imported  # the list is the real one
    loaded = [m for m in imported if m.split(".")[0] in ("coredis", "redis") or m.startswith("mcp_trio.cluster")
              or m == "mcp_trio.serving._cluster"]
    assert not loaded, loaded


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_trio", "serve", "tests.cluster_app:make_app", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "MCP_TRIO_REQUEST_STATE_SECRET": "s" * 32, **(env or {})})


def test_a_redis_that_cannot_be_reached_stops_the_start_in_one_line(redis_server: RedisServer) -> None:
    redis_server.stop()
    done = _serve("--transport", "http", "--redis", redis_server.url.replace("/0", ""), "--app-dir", str(REPO))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis at redis://127.0.0.1:" in lines[0], done.stderr
    assert "start it or fix cluster.redis_url" in lines[0]


def test_cluster_mode_needs_a_network_transport() -> None:
    done = _serve("--redis", "redis://127.0.0.1:6379")
    assert done.returncode == 2
    assert "--redis (cluster.redis_url) needs a network transport" in done.stderr


def test_cluster_mode_warns_when_hosts_cannot_share_request_state(redis_server: RedisServer) -> None:
    """Without a configured key, requestState is sealed with one of this process: a retry on
    another host would be refused. Said once at start (a --workers parent hands one key to all)."""
    redis_server.stop()
    env = {name: value for name, value in os.environ.items() if name != "MCP_TRIO_REQUEST_STATE_SECRET"}
    done = subprocess.run([sys.executable, "-m", "mcp_trio", "serve", "tests.cluster_app:make_app", "--port", "0",
                           "--transport", "http", "--redis", redis_server.url], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=env)
    assert "set [request_state] secret (or MCP_TRIO_REQUEST_STATE_SECRET) to the same value on every host" in done.stderr


def test_the_compose_example_is_valid_where_it_can_be_checked_here() -> None:
    """deploy/cluster (not run here: no containers in CI): HAProxy accepts its configuration,
    the servers' command is one `mcp-trio serve` accepts, and the files it names exist."""
    import json
    import re

    from mcp_trio._cli import build_parser
    from tests.cluster_fixtures import _need

    deploy = REPO / "deploy" / "cluster"
    checked = subprocess.run([_need("haproxy"), "-c", "-f", str(deploy / "haproxy.cfg")], capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stderr
    compose = (deploy / "compose.yaml").read_text()
    command = json.loads(re.search(r"command: (\[\"mcp-trio\".*?\])", compose, re.S).group(1))  # type: ignore[union-attr]
    args = build_parser().parse_args(command[1:])
    assert args.transport == "http" and args.workers == 2
    assert "MCP_TRIO_CLUSTER_REDIS_URL" in compose and "MCP_TRIO_REQUEST_STATE_SECRET" in compose
    assert "dockerfile: deploy/cluster/Dockerfile" in compose and (deploy / "Dockerfile").exists()
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg" in compose


def test_the_redis_clients_own_logger_speaks_only_at_debug(redis_server: RedisServer) -> None:
    """coredis logs a failed connection at INFO with its traceback: held at WARNING unless
    --log-level debug (where its lines help)."""
    redis_server.stop()
    url = redis_server.url
    quiet = _serve("--transport", "http", "--redis", url, "--log-level", "info")
    assert "coredis" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    loud = _serve("--transport", "http", "--redis", url, "--log-level", "debug")
    assert "coredis" in loud.stderr
