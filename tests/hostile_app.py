"""An app whose functions do what takes servers down, for ``test_containment.py``.

Served in-process (WebSocket, HTTP) and as ``python -m mcp_trio serve tests/hostile_app.py:server``
(stdio). Every function here must cost its own request only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import trio

from mcp_trio import Context, Server

server = Server("hostile-app", version="0.0.1")
#: A lone surrogate, as os.listdir() and errors="surrogateescape" decoding produce.
SURROGATE = "report-\udcff.txt"


@server.tool
async def echo(text: str) -> str:
    """The bystander's tool: it must keep working whatever the others do."""
    return text


@server.tool
def parse_flags(argv: list[str]) -> str:
    """A sync tool (run in a worker thread) that parses with argparse: bad input is sys.exit(2)."""
    parser = argparse.ArgumentParser(prog="parse_flags")
    parser.add_argument("--count", type=int, required=True)
    return str(parser.parse_args(argv).count)


@server.tool
async def exits(code: int = 3) -> str:
    raise SystemExit(code)


@server.tool
async def interrupts() -> str:
    raise KeyboardInterrupt


@server.tool
def interrupts_in_a_thread() -> str:
    raise KeyboardInterrupt


@server.tool
async def exits_in_a_nursery() -> str:
    async def child() -> None:
        sys.exit(5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
    return "unreachable"


@server.tool
async def lone_surrogate() -> str:
    return SURROGATE


@server.tool
async def lone_surrogate_structured() -> dict[str, str]:
    return {"name": SURROGATE}


@server.tool
async def fails_quoting_a_surrogate() -> str:
    raise ValueError(f"cannot open {SURROGATE}")


@server.tool
async def logs_a_surrogate(ctx: Context) -> str:
    await ctx.info(SURROGATE)
    return "logged"


@dataclass
class Flags:
    count: int

    def __post_init__(self) -> None:  # run by argument validation, before the tool is called
        if self.count < 0:
            sys.exit("negative count")


@server.tool
async def takes_flags(flags: Flags) -> str:
    return str(flags.count)


@server.resource("hostile://exit")
def exiting_resource() -> str:
    sys.exit(4)


@server.resource("hostile://surrogate")
async def surrogate_resource() -> str:
    return SURROGATE


@server.resource("hostile://items/{item}")
async def exiting_template(item: str) -> str:
    raise SystemExit(f"no {item}")


@server.prompt
async def exiting_prompt() -> str:
    raise KeyboardInterrupt


@server.prompt
def surrogate_prompt() -> str:
    return SURROGATE


@server.prompt
async def plan(city: str) -> str:
    return f"Plan a trip to {city}"


@server.completion(prompt="plan", argument="city")
def exiting_completion(value: str, context: dict[str, str]) -> list[str]:
    raise SystemExit(6)
