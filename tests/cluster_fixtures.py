"""Real ``redis-server`` and ``haproxy`` processes for the cluster tests, on loopback ports.

Both are Debian packages that ``make test`` installs (``.ci/cluster-test-deps.sh``). Nothing
here fakes Redis or a load balancer: a test that asks for ``redis_server`` gets its own
``redis-server`` in a temporary directory, which it may stop and start again mid-test (the
same port, empty again: persistence is off), and ``haproxy`` balances real backends.

redis-server cannot bind port 0, so a free port is picked first and the start is retried on
another port if that one was taken in the meantime.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

#: Seconds a server gets to accept connections after it was started.
START_DEADLINE = 10.0
#: Seconds a server gets to exit after SIGTERM before it is killed.
STOP_DEADLINE = 5.0


def _need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        pytest.fail(f"{binary} not found: run `make test` (it installs redis-server and haproxy) "
                    "or `apt-get install redis-server haproxy`", pytrace=False)
    return path


def free_port(highest: int = 65535) -> int:
    """A free loopback port, at most ``highest``."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port <= highest:
            return port


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on TCP ``port`` (not another test's server that
    took the free port first: helpers run their suites side by side on one machine)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class _Process:
    """A server process on a loopback port: start (waiting until it accepts), stop, restart."""

    name = "server"
    #: The highest port this server can use.
    highest_port = 65535

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / f"{self.name}.log"

    def command(self) -> list[str]:  # pragma: no cover - each subclass has its own
        raise NotImplementedError

    def start(self) -> None:
        """Start on ``self.port`` (a free one the first time); retried on a new port if taken."""
        fixed = bool(self.port)
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port(self.highest_port)
            if self._start_once():
                return
        raise RuntimeError(f"{self.name} did not start on 127.0.0.1:{self.port}:\n{self.log.read_text(errors='replace')[-2000:]}")

    def _start_once(self) -> bool:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.directory)
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _accepts(self.port):
                if _listens(self.process.pid, self.port):
                    return True
                break  # someone else's server took the port first
            time.sleep(0.01)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``STOP_DEADLINE``); no-op when stopped."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisServer(_Process):
    """One real ``redis-server`` on 127.0.0.1, no persistence, ``extra`` arguments appended
    (``{port}`` in them is the chosen port: ``"--port", "0", "--tls-port", "{port}"`` serves
    TLS only). ``config`` is a configuration file's text, written and passed first (a
    Sentinel needs one it can rewrite)."""

    name = "redis"

    def __init__(self, directory: Path, *extra: str, config: str | None = None) -> None:
        super().__init__(directory)
        self.binary = _need("redis-server")
        self.extra = list(extra)
        self.config = config
        self.password: str | None = None
        if "--cluster-enabled" in extra:
            self.highest_port = 55535  # its cluster bus listens 10,000 ports higher

    def command(self) -> list[str]:
        first: list[str] = []
        if self.config is not None:
            path = self.directory / "redis.conf"
            path.write_text(self.config)
            first = [str(path)]
        extra = [arg.replace("{port}", str(self.port)) for arg in self.extra]
        return [self.binary, *first, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), *extra]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        """Run one command with ``redis-cli`` (a second, independent client) and return its output."""
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        result = subprocess.run([_need("redis-cli"), "-p", str(self.port), *auth, *args],
                                capture_output=True, timeout=10, check=True)
        return result.stdout.decode().strip()


class HAProxy(_Process):
    """A real ``haproxy`` on 127.0.0.1 in front of ``backends``, round-robin per request.

    ``option http-server-close`` closes the server side after each response while the client
    keeps its connection, and nothing is sticky, so every request is balanced on its own: a
    session's next request may land on any backend, as in a real deployment without affinity.
    """

    name = "haproxy"

    def __init__(self, directory: Path, backends: Sequence[tuple[str, int]], *, server_timeout: float = 60.0,
                 health: str | None = None) -> None:
        super().__init__(directory)
        self.binary = _need("haproxy")
        self.backends = list(backends)
        self.server_timeout = server_timeout
        #: A path HAProxy checks every 200 ms on each backend (a down one gets no requests).
        self.health = health
        self.config = directory / "haproxy.cfg"

    def command(self) -> list[str]:
        check = " check inter 200ms fall 1 rise 1" if self.health else ""
        servers = "\n".join(f"    server s{i} {host}:{port}{check}" for i, (host, port) in enumerate(self.backends))
        health = (f"    option httpchk\n    http-check send meth GET uri {self.health} ver HTTP/1.1 hdr Host localhost\n"
                  if self.health else "")
        self.config.write_text(f"""\
global
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    timeout client {self.server_timeout:g}s
    timeout server {self.server_timeout:g}s
    # an SSE stream (a GET, a long POST answer) is one response that lasts: as long as a tunnel
    timeout tunnel 1h
    timeout http-keep-alive 10s
    option http-server-close
    # a backend that refuses the connection (a process killed) is tried no more for this
    # request: another one gets it
    option redispatch
    retries 2

frontend mcp
    bind 127.0.0.1:{self.port}
    default_backend servers

backend servers
    balance roundrobin
{health}{servers}
""")
        return [self.binary, "-db", "-f", str(self.config)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real redis-server for this test, stopped at its end."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[object]:
    """Start more redis-servers (``start_redis(*args)``: a cluster node, a Sentinel, TLS, ACL)."""
    started: list[RedisServer] = []

    def start(*extra: str, name: str | None = None, config: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path / (name or f"redis{len(started)}"), *extra, config=config)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def start_haproxy(tmp_path: Path) -> Iterator[object]:
    """``start_haproxy([(host, port), ...])`` → a running ``HAProxy`` in front of those backends."""
    started: list[HAProxy] = []

    def start(backends: Sequence[tuple[str, int]], **options: Any) -> HAProxy:
        proxy = HAProxy(tmp_path / f"haproxy{len(started)}", backends, **options)
        started.append(proxy)
        proxy.start()
        return proxy

    try:
        yield start
    finally:
        for proxy in reversed(started):
            proxy.stop()


REPO = Path(__file__).resolve().parent.parent


class McpHost(_Process):
    """One ``mcp-trio serve`` command on a loopback port (a "host" of the cluster), serving
    ``tests.cluster_app:make_app`` over HTTP in cluster mode on ``redis_url``; with
    ``workers`` > 1 its processes share the port. ``kill9`` kills one of its processes."""

    name = "mcp"

    def __init__(self, directory: Path, redis_url: str, *args: str, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(directory)
        self.redis_url = redis_url
        self.args = list(args)
        self.workers = workers
        self.env = env or {}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mcp_trio", "serve", "tests.cluster_app:make_app", "--app-dir", str(REPO),
                "--transport", "http", "--port", str(self.port), "--redis", self.redis_url,
                "--workers", str(self.workers), *self.args]

    def _start_once(self) -> bool:
        self.log.write_bytes(b"")
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=REPO, env=env)
        deadline = time.monotonic() + START_DEADLINE * 2
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.log.read_text(errors="replace").count("mcp-trio: serving") >= self.workers:
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def pids(self) -> list[int]:
        """The processes serving (the workers, or the one process)."""
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def kill9(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)
