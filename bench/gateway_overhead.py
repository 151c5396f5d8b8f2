"""What a call through a mount costs: the gateway's added latency per proxied call, against a
direct call to the same upstream in the same run, and a locally mounted tool against the same
tool unmounted. Run from the repository root: ``.venv/bin/python bench/gateway_overhead.py``
(the TypeScript peer needs ``npm ci`` in bench/peers/ts, as ``make test`` does).

Processes: the official Python SDK server over Streamable HTTP (``tests/sdk_peer_app.py``),
the official TypeScript SDK server over Streamable HTTP (``tests/ts_peer_server.mjs``), and
``mcp-trio serve`` (the h1 engine, or hypercorn with ``--http2``) with both mounted (``--mount``) beside a
local ``echo`` and the same ``echo`` in a mounted server. One ``mcp_trio.client`` session per
target, sequential ``tools/call echo`` (one call in flight: latency, not throughput).

Rows, each the median over ROUNDS rounds alternating A B A B, of each round's median call:
- ``python``: A = the Python SDK server directly, B = through the gateway (``py_echo``);
- ``typescript``: A = the TypeScript SDK server directly, B = through the gateway (``ts_echo``);
- ``local mount``: A = ``echo`` on our server, B = ``local_echo`` (the same function, mounted).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mcp_trio.client import connect  # noqa: E402

ROUNDS = 7
CALLS = 300
APP = '''
from mcp_trio import Server

server = Server("gateway-bench")
mounted = Server("mounted")


@server.tool
async def echo(text: str) -> str:
    return text


@mounted.tool(name="echo")
async def mounted_echo(text: str) -> str:
    return text


server.mount(mounted, prefix="local")
'''


def spawn_port(argv: list[str], pattern: str, stream: str = "stdout") -> tuple[subprocess.Popen[bytes], int]:
    """Start a server that names its port on ``stream``; the rest of that stream is drained
    by a thread (a full pipe would stop the server)."""
    other = {"stdout": "stderr", "stderr": "stdout"}[stream]
    process = subprocess.Popen(argv, env=dict(os.environ), cwd=REPO, **{stream: subprocess.PIPE, other: subprocess.DEVNULL})
    pipe = process.stdout if stream == "stdout" else process.stderr
    assert pipe is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = pipe.readline().decode()
        found = re.search(pattern, line)
        if found:
            threading.Thread(target=pipe.read, daemon=True).start()
            return process, int(found.group(1))
    raise SystemExit(f"{' '.join(argv[:3])} did not start")


async def median_call(url: str, tool: str, calls: int) -> float:
    async with connect(url) as client:
        for _ in range(20):  # warm the connection and the server
            await client.call_tool(tool, {"text": "warm"})
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool(tool, {"text": "hello"})
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


async def main(engine: str, rounds: int, calls: int) -> None:
    from tests.test_client_peers import SDK_APP, TS_APP, TS_PEER

    node = TS_PEER / "node_modules" / ".bin" / "node"
    processes = []
    try:
        python, python_port = spawn_port([sys.executable, str(SDK_APP), "http"], r"^(\d+)$")
        processes.append(python)
        rows = {"python": (f"http://127.0.0.1:{python_port}/mcp", "echo", "py_echo")}
        mounts = ["--mount", f"py={rows['python'][0]}"]
        if node.exists():
            ts, ts_port = spawn_port([str(node), str(TS_APP), str(TS_PEER), "http"], r"^(\d+)$")
            processes.append(ts)
            rows["typescript"] = (f"http://127.0.0.1:{ts_port}/mcp", "echo", "ts_echo")
            mounts += ["--mount", f"ts={rows['typescript'][0]}"]
        with tempfile.TemporaryDirectory() as folder:
            app = Path(folder) / "gateway_bench_app.py"
            app.write_text(APP)
            gateway, port = spawn_port([sys.executable, "-m", "mcp_trio", "serve", f"{app}:server", "--transport", "http",
                                        "--port", "0", *(["--http2"] if engine == "hypercorn" else []), *mounts],
                                       r"MCP \(Streamable HTTP\)\s+http://[\d.]+:(\d+)/mcp", stream="stderr")
            processes.append(gateway)
            ours = f"http://127.0.0.1:{port}/mcp"
            results: dict[str, tuple[list[float], list[float]]] = {}
            for name, (direct, tool, proxied) in rows.items():
                a, b = [], []
                for _ in range(rounds):
                    a.append(await median_call(direct, tool, calls))
                    b.append(await median_call(ours, proxied, calls))
                results[name] = (a, b)
            a, b = [], []
            for _ in range(rounds):
                a.append(await median_call(ours, "echo", calls))
                b.append(await median_call(ours, "local_echo", calls))
            results["local mount"] = (a, b)
    finally:
        for process in reversed(processes):  # the gateway first: the upstreams then have no one connected
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"engine {engine}, {rounds} rounds A B A B, {calls} sequential calls per round; median µs per call")
    print(f"{'row':<14}{'A direct':>10}{'B mounted':>11}{'B - A':>9}{'B / A':>8}")
    for name, (a, b) in results.items():
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:<14}{ma:>10.0f}{mb:>11.0f}{mb - ma:>9.0f}{mb / ma:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["hypercorn", "h1"], default="h1")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--calls", type=int, default=CALLS)
    args = parser.parse_args()
    trio.run(main, args.engine, args.rounds, args.calls)
