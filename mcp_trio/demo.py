"""The built-in demo app: what ``mcp-trio serve`` serves with no APP.

It exposes every fixture the official conformance suite expects (see the project's
``shared/conformance/FIXTURES.md``), plus ``echo`` for benchmarks and ``sleep`` for
progress and cancellation, and mounts a small second server (``units``) under the prefix
``units``: ``units_convert``, ``units+units://lengths``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Annotated, Any, Literal

import msgspec
import trio

from . import (
    Audio,
    Context,
    EmbeddedResource,
    Image,
    Server,
    TextContent,
    TextResourceContents,
    UserMessage,
    task_support,
)

server = Server(
    "mcp-trio-demo",
    version="0.1.0",
    instructions="A demo server: conformance fixtures, plus echo and sleep tools.",
)


def _png_1x1() -> bytes:
    """A valid 1x1 red PNG, built here rather than shipped as an opaque blob."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence(samples: int = 800, rate: int = 8000) -> bytes:
    """A short mono 8-bit WAV of silence."""
    data = b"\x80" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


PNG = _png_1x1()
WAV = _wav_silence()


# -- conformance: tools -----------------------------------------------------------------------
@server.tool
async def test_simple_text() -> str:
    """Return a simple text response."""
    return "This is a simple text response for testing."


@server.tool
async def test_image_content() -> Image:
    """Return an image (PNG)."""
    return Image(PNG, "image/png")


@server.tool
async def test_audio_content() -> Audio:
    """Return audio (WAV)."""
    return Audio(WAV, "audio/wav")


@server.tool
async def test_embedded_resource() -> EmbeddedResource:
    """Return an embedded text resource."""
    return EmbeddedResource(resource=TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."))


@server.tool
async def test_multiple_content_types() -> list[TextContent | Image | EmbeddedResource]:
    """Return text, an image and an embedded resource together."""
    return [
        TextContent(text="Multiple content types test:"),
        Image(PNG, "image/png"),
        EmbeddedResource(resource=TextResourceContents(
            uri="test://mixed-content-resource", mime_type="application/json", text='{"test":"data","value":123}')),
    ]


@server.tool
async def test_tool_with_logging(ctx: Context) -> str:
    """Send three log messages about 50 ms apart while running."""
    await ctx.info("Tool execution started")
    await trio.sleep(0.05)
    await ctx.info("Tool processing data")
    await trio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Logging test completed"


@server.tool
async def test_error_handling() -> str:
    """Always fail: the failure is reported as a result with isError."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@server.tool
async def test_tool_with_progress(ctx: Context) -> str:
    """Report progress 0, 50 and 100 of 100."""
    for progress in (0, 50, 100):
        await ctx.report_progress(progress, 100, f"step {progress // 50 + 1} of 3")
        await trio.sleep(0.05)
    return "Progress test completed"


@server.tool
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Ask the client's model to answer the prompt."""
    result = await ctx.sample(prompt, max_tokens=100)
    content = result.content
    text = content.get("text") if isinstance(content, dict) else None
    return f"LLM response: {text if text is not None else content}"


def _elicited(result: Any) -> str:
    content = result.content if result.content is not msgspec.UNSET else None
    return f"User response: action={result.action}, content={msgspec.json.encode(content).decode()}"


@server.tool
async def test_elicitation(message: str, ctx: Context) -> str:
    """Ask the user for a username and an email address."""
    result = await ctx.elicit(message, {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    })
    return _elicited(result)


@server.tool
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicit a form whose fields all have defaults (SEP-1034)."""
    result = await ctx.elicit("Please review and update the form fields with defaults", {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
    })
    return f"Elicitation completed: action={result.action}, content={msgspec.json.encode(result.content if result.content is not msgspec.UNSET else None).decode()}"


@server.tool
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicit a form with the five enum shapes of SEP-1330."""
    options = ["option1", "option2", "option3"]
    titled = [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]
    result = await ctx.elicit("Please select options from the enum fields", {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
            "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": titled},
            "legacyEnum": {"type": "string", "description": "Select one option (legacy)", "enum": options,
                           "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                              "items": {"type": "string", "enum": options}},
            "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3,
                            "items": {"anyOf": titled}},
        },
        "required": [],
    })
    return f"Elicitation completed: action={result.action}, content={msgspec.json.encode(result.content if result.content is not msgspec.UNSET else None).decode()}"


@server.tool
async def test_reconnection(ctx: Context) -> str:
    """Close this call's HTTP stream mid-call; the result arrives after the client resumes.

    Over Streamable HTTP the server ends the POST's SSE stream after its priming event (an
    event id and a ``retry`` field); the client reconnects with ``GET`` + ``Last-Event-ID``
    and receives the result there (SSE polling, SEP-1699). Elsewhere it simply returns.
    """
    if ctx.close_stream(retry=0.5):
        await trio.sleep(0.1)  # the result is produced while no stream is open for it
    return "Reconnection test completed successfully"


_ADDRESS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        },
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@server.tool(name="json_schema_2020_12_tool", input_schema=_ADDRESS_SCHEMA)
async def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """A tool whose input schema uses JSON Schema 2020-12 features ($defs, $anchor, $ref,
    allOf/anyOf, if/then/else), listed exactly as declared."""
    text = f"name={name}, address={msgspec.json.encode(address).decode()}"
    contact = phone if contactMethod == "phone" else email
    return text if contact is None else f"{text}, contact={contact}"


# -- conformance: protocol revision 2026-07-28 (stateless) ------------------------------------
# Each works in both eras: under 2025-11-25 ``ctx.elicit`` and friends are requests to the
# client; under 2026-07-28 they make the call answer ``InputRequiredResult`` and the tool runs
# again when the client retries with the answers (see ``mcp_trio.serving._replay``).
_NAME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _content_of(result: Any) -> dict[str, Any]:
    return result.content if isinstance(result.content, dict) else {}


def _sampled_text(result: Any) -> str:
    content = result.content
    return str(content.get("text", content)) if isinstance(content, dict) else str(content)


@server.tool
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """Ask the user's name (elicitation, input key ``user_name``) and greet them."""
    answer = await ctx.elicit("What is your name?", _NAME_SCHEMA, key="user_name")
    return f"Hello, {_content_of(answer).get('name', 'stranger')}!"


@server.tool
async def test_input_required_result_sampling(ctx: Context) -> str:
    """Ask the client's model a question (sampling, input key ``capital_question``)."""
    answer = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    return f"The model says: {_sampled_text(answer)}"


@server.tool
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """List the client's roots (input key ``client_roots``)."""
    roots = await ctx.list_roots(key="client_roots")
    return "Roots: " + ", ".join(root.uri for root in roots)


@server.tool
async def test_input_required_result_request_state(ctx: Context) -> str:
    """Ask for a confirmation (input key ``confirm``); answers after a retry with its requestState."""
    answer = await ctx.elicit("Please confirm", {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                              key="confirm")
    state = "state-ok" if ctx.resumed else "no state"
    return f"Confirmed: ok={_content_of(answer).get('ok')} ({state})"


@server.tool
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """Ask for a name, a greeting from the model and the roots, all in one round."""
    name, greeting, roots = await ctx.gather(
        ctx.elicit("What is your name?", _NAME_SCHEMA, key="user_name"),
        ctx.sample("Generate a greeting", max_tokens=50, key="greeting"),
        ctx.list_roots(key="client_roots"),
    )
    return f"{_sampled_text(greeting)} {_content_of(name).get('name')} ({len(roots)} roots)"


@server.tool
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Two questions, one after the other (``step1``, then ``step2``): three rounds in all."""
    name = await ctx.elicit("Step 1: What is your name?", _NAME_SCHEMA, key="step1")
    color = await ctx.elicit("Step 2: What is your favorite color?",
                             {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}, key="step2")
    return f"{_content_of(name).get('name')} likes {_content_of(color).get('color')}"


@server.tool
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """Ask for a confirmation; a retry whose requestState was altered is refused (-32602)."""
    answer = await ctx.elicit("Please confirm", {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                              key="confirm")
    return f"Confirmed: ok={_content_of(answer).get('ok')}"


@server.tool
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Ask only what the client declared it can answer (sampling and/or elicitation)."""
    client = ctx.client
    asks = []
    if client is not None and client.supports("sampling"):
        asks.append(ctx.sample("Say something", max_tokens=20, key="sample"))
    if client is not None and client.supports("elicitation"):
        asks.append(ctx.elicit("Say something", {"type": "object", "properties": {"text": {"type": "string"}}}, key="elicit"))
    answers = await ctx.gather(*asks)
    return f"{len(answers)} answer(s)"


@server.tool
async def test_missing_capability(ctx: Context) -> str:
    """Needs sampling: a request that does not declare it is refused (-32021)."""
    answer = await ctx.sample("Hello", max_tokens=10)
    return _sampled_text(answer)


@server.tool
async def test_streaming_elicitation(ctx: Context) -> str:
    """Ask the user something: under 2026-07-28 the answer is an InputRequiredResult, never a request."""
    answer = await ctx.elicit("Anything to add?", {"type": "object", "properties": {"note": {"type": "string"}}})
    return f"User response: action={answer.action}"


@server.tool
async def test_logging_tool(ctx: Context) -> str:
    """Log three lines at info (sent only when the request asked for a log level)."""
    for line in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(line)
    return "Logging test completed"


@server.tool
async def test_trigger_tool_change() -> str:
    """Publish the tool list again (unchanged): listeners get notifications/tools/list_changed."""
    server.add_tool(test_simple_text)
    return "tools/list_changed sent"


@server.tool
async def test_trigger_prompt_change() -> str:
    """Publish the prompt list again (unchanged): listeners get notifications/prompts/list_changed."""
    server.add_prompt(test_simple_prompt)
    return "prompts/list_changed sent"


@server.tool
async def test_header_parameter(
    region: Annotated[str, msgspec.Meta(description="Where to look (mirrored in the Mcp-Param-Region header)",
                                        extra_json_schema={"x-mcp-header": "Region"})],
) -> str:
    """A tool with an argument mirrored in an HTTP header (x-mcp-header, SEP-2243)."""
    return f"region={region}"


# -- conformance: the tasks extension (io.modelcontextprotocol/tasks, 2026-07-28) -----------
# A task-capable tool becomes a task when it calls ``ctx.run_as_task()`` and the request's
# client declared the extension; elsewhere it runs as an ordinary call (see ``mcp_trio.serving._tasks``).
@server.tool
async def greet(name: str) -> str:
    """Greet someone (never a task)."""
    return f"Hello, {name}!"


@server.tool
@task_support("optional")
async def slow_compute(seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)], ctx: Context, label: str = "") -> str:
    """Compute for a while: a task unless ``seconds`` is 0 (then the answer comes at once)."""
    if seconds > 0:
        await ctx.run_as_task()
    await trio.sleep(seconds)
    return f"computed {label or 'result'} in {seconds:g} s"


@server.tool
@task_support("required")
async def failing_job(ctx: Context) -> str:
    """A job that fails after about a second (a tool error: the task completes with isError)."""
    await ctx.run_as_task()
    await trio.sleep(1)
    raise RuntimeError("the job failed, as it always does")


@server.tool(timeout=0.5)
@task_support("optional")
async def protocol_error_job(ctx: Context) -> str:
    """A job that outlives its timeout: a protocol error, so the task fails."""
    await ctx.run_as_task()
    await trio.sleep(10)
    return "never"


@server.tool
@task_support("optional")
async def confirm_delete(filename: str, ctx: Context) -> str:
    """Ask for a confirmation, as a task, before (pretending to) delete a file."""
    await ctx.run_as_task()
    answer = await ctx.elicit(f"Delete {filename}?", {"type": "object", "properties": {"confirm": {"type": "boolean"}},
                                                     "required": ["confirm"]})
    confirmed = answer.action == "accept" and _content_of(answer).get("confirm") is True
    return f"{'deleted' if confirmed else 'kept'} {filename}"


@server.tool
@task_support("optional")
async def multi_input(ctx: Context) -> str:
    """Ask two questions at once, as a task; they may be answered one at a time."""
    await ctx.run_as_task()
    first, second = await ctx.gather(
        ctx.elicit("First name?", {"type": "object", "properties": {"name": {"type": "string"}}}),
        ctx.elicit("Confirm?", {"type": "object", "properties": {"confirm": {"type": "boolean"}}}),
    )
    return f"{_content_of(first).get('name')} / {_content_of(second).get('confirm')}"


@server.tool
@task_support("required")
async def test_tool_with_task(ctx: Context) -> str:
    """Ask the user's name the stateless way (an InputRequiredResult round), then go on as a task."""
    answer = await ctx.elicit("What is your name?", _NAME_SCHEMA, key="user_name")
    await ctx.run_as_task()
    await trio.sleep(0.1)
    return f"Hello, {_content_of(answer).get('name')}, from a task!"


# -- benchmark and behaviour tools ------------------------------------------------------------
@server.tool(read_only=True, idempotent=True)
async def echo(text: str) -> str:
    """Return the text unchanged (used by the benchmarks)."""
    return text


@server.tool
async def sleep(seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)], ctx: Context) -> str:
    """Sleep for a while, reporting progress every 100 ms; cancellable."""
    elapsed = 0.0
    step = 0.1
    while elapsed < seconds:
        await trio.sleep(min(step, seconds - elapsed))
        elapsed = min(seconds, elapsed + step)
        await ctx.report_progress(elapsed, seconds)
    return f"slept {seconds:g} s"


# -- conformance: resources -------------------------------------------------------------------
@server.resource("test://static-text", name="static-text", mime_type="text/plain", description="A static text resource")
async def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary", mime_type="image/png", description="A static binary resource (PNG)")
async def static_binary() -> bytes:
    return PNG


@server.resource("test://template/{id}/data", name="template", mime_type="application/json", description="A resource template with an id")
async def template_data(id: str) -> str:
    return msgspec.json.encode({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}).decode()


@server.resource("test://watched-resource", name="watched-resource", mime_type="text/plain", description="A resource clients may subscribe to")
async def watched_resource() -> str:
    return "Watched resource content"


# -- conformance: prompts ---------------------------------------------------------------------
@server.prompt
async def test_simple_prompt() -> str:
    """A prompt with no arguments."""
    return "This is a simple prompt for testing."


@server.prompt
async def test_prompt_with_arguments(
    arg1: Annotated[str, msgspec.Meta(description="First test argument")],
    arg2: Annotated[str, msgspec.Meta(description="Second test argument")],
) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt
async def test_prompt_with_embedded_resource(resourceUri: Annotated[str, msgspec.Meta(description="URI of the resource to embed")]) -> list[Any]:
    """A prompt that embeds a resource."""
    return [
        UserMessage(EmbeddedResource(resource=TextResourceContents(uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."))),
        UserMessage("Please process the embedded resource above."),
    ]


@server.prompt
async def test_prompt_with_image() -> list[Any]:
    """A prompt that includes an image."""
    return [UserMessage(Image(PNG, "image/png")), UserMessage("Please analyze the image above.")]


@server.prompt
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that first asks the user for context (input key ``user_context``)."""
    answer = await ctx.elicit("What context should the prompt use?",
                              {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]},
                              key="user_context")
    return f"Write about: {_content_of(answer).get('context')}"


@server.completion(prompt="test_prompt_with_arguments", argument="arg1")
async def complete_arg1(value: str, context: dict[str, str]) -> list[str]:
    return [v for v in ("paris", "park", "party", "zebra") if v.startswith(value)]


@server.completion(template="test://template/{id}/data", argument="id")
async def complete_template_id(value: str, context: dict[str, str]) -> list[str]:
    return [v for v in ("1", "12", "123", "456") if v.startswith(value)]


# -- a second server, mounted: its names are prefixed, so they never meet the fixtures' ---------
units = Server("mcp-trio-units", version="0.1.0", instructions="Unit conversions.")

_TO_METRES = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


@units.tool(read_only=True, idempotent=True)
async def convert(value: float, unit: Literal["m", "km", "mi", "ft"], to: Literal["m", "km", "mi", "ft"]) -> float:
    """Convert a length between metres, kilometres, miles and feet."""
    return value * _TO_METRES[unit] / _TO_METRES[to]


@units.resource("units://lengths", mime_type="application/json", description="The length units convert knows")
async def lengths() -> dict[str, float]:
    return _TO_METRES


# Served as units_convert and units+units://lengths (Server.mount, docs/gateway.md).
server.mount(units, prefix="units")
