"""Attacks on what the server signs, logs and maps to files.

* ``requestState``: one spelling per state (canonical unpadded base64url only); a tool that
  must not run twice accepts each of its states once (``@single_use_state``), others document
  their replay window.
* Log injection: client text (request ids, method names, client names) cannot forge a line.
* Resource templates: ``PathSegment`` and ``RelativePath`` keep file-backed templates inside
  their directory.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from typing import Any

import pytest

from mcp_trio import Context, PathSegment, RelativePath, Server
from mcp_trio._logging import configure_logging
from mcp_trio._request_state import RequestStateCodec, RequestStateError
from mcp_trio.protocol._errors import ServerOverloaded
from tests import hostile_app
from tests.helpers import serve_in_memory
from tests.test_stateless import stateless_call

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _respellings(token: str) -> dict[str, str]:
    """The same MAC bytes, spelt three other ways a lenient decoder accepts."""
    head, mac = token.rsplit(".", 1)
    last = _ALPHABET.index(mac[-1])  # 32 bytes: the last character carries 4 unused low bits
    other_last = _ALPHABET[last ^ 0b0001]
    spellings = {"padded": f"{head}.{mac}=", "non-canonical last character": f"{head}.{mac[:-1]}{other_last}"}
    standard = mac.replace("-", "+").replace("_", "/")
    if standard != mac:
        spellings["+/ alphabet"] = f"{head}.{standard}"
    return spellings


def test_request_state_has_one_spelling() -> None:
    codec = RequestStateCodec(["k" * 32])
    seen_standard = False
    for n in range(40):  # until one MAC has a character the two alphabets spell differently
        token = codec.seal(subject="s", request=f"r{n}", answers={}, pending={})
        assert codec.open(token, subject="s", request=f"r{n}").pend == {}
        for what, spelling in _respellings(token).items():
            mac_bytes = base64.urlsafe_b64decode(spelling.rsplit(".", 1)[1].replace("+", "-").replace("/", "_") + "==")
            assert mac_bytes == base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "=")  # the same bytes...
            with pytest.raises(RequestStateError, match="malformed"):  # ...refused all the same
                codec.open(spelling, subject="s", request=f"r{n}")
            seen_standard |= what == "+/ alphabet"
        if seen_standard:
            break
    assert seen_standard
    payload = token.split(".")[2]
    with pytest.raises(RequestStateError):
        codec.open(token.replace(payload, payload + "="), subject="s", request=f"r{n}")


def _confirming_server() -> Server:
    from mcp_trio import single_use_state

    server = Server("payments")
    paid: list[int] = []

    def payer() -> Any:
        async def pay(amount: int, ctx: Context) -> str:
            answer = await ctx.elicit(f"Pay {amount}?", {"type": "object", "properties": {"ok": {"type": "boolean"}}}, key="confirm")
            if answer.action == "accept":
                paid.append(amount)
            return f"paid {amount} ({len(paid)} payment(s))"
        return pay

    server.add_tool(single_use_state(payer()), name="pay_once")
    server.add_tool(payer(), name="pay_replayable")
    return server


async def test_a_final_round_replays_only_where_the_tool_allows_it() -> None:
    answer = {"confirm": {"action": "accept", "content": {"ok": True}}}
    async with serve_in_memory(_confirming_server()) as (client, _, _):
        for name, replays in (("pay_replayable", True), ("pay_once", False)):
            first = (await stateless_call(client, "tools/call", {"name": name, "arguments": {"amount": 5}}))["result"]
            retry = {"name": name, "arguments": {"amount": 5}, "inputResponses": answer, "requestState": first["requestState"]}
            done = await stateless_call(client, "tools/call", retry)
            assert done["result"]["content"][0]["text"].startswith("paid 5"), done
            replayed = await stateless_call(client, "tools/call", retry)
            if replays:  # the documented window: until the state expires
                assert replayed["result"]["content"][0]["text"].startswith("paid 5"), replayed
            else:
                assert replayed["error"]["code"] == -32602 and "already used" in replayed["error"]["message"]


def test_single_use_memory_is_bounded() -> None:
    now = [1000.0]
    codec = RequestStateCodec(["k" * 32], ttl=10, clock=lambda: now[0], max_spent=2)
    tokens = [codec.seal(subject="s", request="r", answers={}, pending={"k": str(n)}) for n in range(4)]
    codec.open(tokens[0], subject="s", request="r", single_use=True)
    codec.open(tokens[1], subject="s", request="r", single_use=True)
    with pytest.raises(ServerOverloaded, match="max_spent = 2"):
        codec.open(tokens[2], subject="s", request="r", single_use=True)
    now[0] += 5
    fresh = codec.seal(subject="s", request="r", answers={}, pending={})
    now[0] += 7  # the first two have expired: their room is free again
    codec.open(fresh, subject="s", request="r", single_use=True)
    with pytest.raises(ValueError):
        RequestStateCodec(max_spent=0)


# -- log injection -------------------------------------------------------------------------------
FORGED = "\n2026-01-01 00:00:00,000 CRITICAL mcp_trio.auth: admin key accepted for root"
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+")


async def test_client_text_cannot_forge_a_log_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("debug", "text", stream)
    try:
        async with serve_in_memory(hostile_app.server) as (client, _, _):
            await client.initialize({"protocolVersion": "2025-11-25", "capabilities": {},
                                     "clientInfo": {"name": "x" + FORGED, "version": "1\x1b[2J"}})
            # A request id of the client's choosing, on a request that logs an error with a traceback.
            await client.send({"jsonrpc": "2.0", "id": "7" + FORGED, "method": "resources/read", "params": {"uri": "hostile://exit"}})
            reply = await client.reply_to("7" + FORGED)
            assert reply["error"]["code"] == -32603
            await client.request("no/such" + FORGED)
    finally:
        root.handlers[:], root.level = saved
    text = stream.getvalue()
    assert "admin key accepted" in text  # the client's text is there, quoted...
    for line in text.splitlines():  # ...but every line is a real record, or part of a traceback
        assert _LINE.match(line) or line.startswith("  | "), line
        assert not line.startswith("2026-01-01 00:00:00,000"), line
    assert "\x1b" not in text


def test_escape_text() -> None:
    from mcp_trio._logging import escape_text

    assert escape_text("tools/call") == "tools/call"
    assert escape_text("a\nb\r\tc\x1b[31m\u2028\x85") == "a\\nb\\r\\tc\\x1b[31m\\u2028\\x85"
    assert escape_text("caf\u00e9 \u65e5\u672c") == "caf\u00e9 \u65e5\u672c"  # printable text is left alone
    assert escape_text("bad-\udcff") == "bad-\\udcff"


# -- resource templates that map to files ----------------------------------------------------------
async def test_path_types_keep_templates_inside_their_directory() -> None:
    server = Server("files")
    seen: list[str] = []

    @server.resource("file:///docs/{name}")
    async def doc(name: PathSegment) -> str:
        seen.append(name)
        return f"doc {name}"

    @server.resource("file:///tree/{+path}")
    async def tree(path: RelativePath) -> str:
        seen.append(path)
        return f"tree {path}"

    @server.resource("file:///raw/{name}")
    async def raw(name: str) -> str:  # the documented contract: a plain str gets the text as sent
        return f"raw {name}"

    async with serve_in_memory(server) as (client, _, _):
        await client.initialize()

        async def read(uri: str) -> dict[str, Any]:
            return await client.request("resources/read", {"uri": uri})

        assert (await read("file:///docs/readme.md"))["result"]["contents"][0]["text"] == "doc readme.md"
        assert (await read("file:///tree/a/b.md"))["result"]["contents"][0]["text"] == "tree a/b.md"
        for uri in ("file:///docs/..", "file:///docs/.", "file:///docs/a\\b", "file:///tree/../etc/passwd",
                    "file:///tree/a/../../x", "file:///tree//etc", "file:///tree/a/./b", "file:///tree/a\\..\\b"):
            refused = await read(uri)
            assert refused["error"]["code"] == -32602, (uri, refused)
        assert "raw .." in (await read("file:///raw/.."))["result"]["contents"][0]["text"]
        assert "raw %2e%2e" in (await read("file:///raw/%2e%2e"))["result"]["contents"][0]["text"]  # not decoded
        assert seen == ["readme.md", "a/b.md"]
        listed = (await client.request("resources/templates/list"))["result"]["resourceTemplates"]
        assert {t["uriTemplate"] for t in listed} == {"file:///docs/{name}", "file:///tree/{+path}", "file:///raw/{name}"}
