"""Result shaping: what a user's function returned, turned into an MCP result body.

Tools: ``str`` is text; ``Image``/``Audio`` and content blocks pass through as blocks; a list of
those is several blocks; anything else that encodes as JSON is ``structuredContent`` plus the
same JSON as a text block (for clients that predate structured content).
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from ._content import Message, to_block
from ._schema import InvalidArguments, OutputShape
from ..protocol._errors import InternalError
from ..protocol._jsonrpc import ErrorResponse, Response, error_object
from ..protocol._types import (
    CONTENT_TYPES,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    PromptMessage,
    ResourceContents,
    TextContent,
    TextResourceContents,
)


class ResultEncodingError(TypeError):
    """A function returned something that cannot be sent as JSON."""


def _encode_json(value: Any, encoder: msgspec.json.Encoder) -> tuple[Any, str]:
    try:
        builtins = msgspec.to_builtins(value)
        return builtins, encoder.encode(builtins).decode()
    except (TypeError, ValueError) as exc:
        raise ResultEncodingError(f"result of type {type(value).__name__} is not JSON-serialisable: {exc}") from None


def _content_list(value: Any) -> list[ContentBlock] | None:
    block = to_block(value)
    if block is not None:
        return [block]
    if isinstance(value, (list, tuple)) and value:
        blocks = [to_block(item) for item in value]
        if all(b is not None for b in blocks):
            return blocks  # type: ignore[return-value]
    return None


def tool_result(value: Any, output: OutputShape, encoder: msgspec.json.Encoder) -> CallToolResult:
    """Shape a tool's return value. ``CallToolResult`` itself passes through untouched."""
    if isinstance(value, CallToolResult):
        return value
    if value is None and output.schema is None:
        return CallToolResult(content=[])
    if output.schema is None:
        blocks = _content_list(value)
        if blocks is not None:
            return CallToolResult(content=blocks)
    if output.wrap:
        structured, text = _encode_json({"result": value}, encoder)
        return CallToolResult(content=[TextContent(text=encoder.encode(structured["result"]).decode())], structured_content=structured)
    structured, text = _encode_json(value, encoder)
    if isinstance(structured, dict):
        return CallToolResult(content=[TextContent(text=text)], structured_content=structured)
    # Undeclared non-object data: text only (structuredContent must be an object).
    return CallToolResult(content=[TextContent(text=text)])


def error_result(message: str) -> CallToolResult:
    """A tool's own failure: reported to the model as content, not as a protocol error."""
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


#: ``_meta`` key of an invalid-arguments result: one entry per problem (``InvalidArguments.details``).
INVALID_ARGUMENTS_KEY = "invalidArguments"


def invalid_arguments_result(error: InvalidArguments) -> CallToolResult:
    """Arguments that do not fit a tool, answered to the model (SEP-1303): the text names each
    argument, the rule and the value received; ``_meta`` has the same as data."""
    return CallToolResult(content=[TextContent(text=error.message)], is_error=True,
                          meta={INVALID_ARGUMENTS_KEY: error.details()})


def resource_contents(uri: str, value: Any, mime_type: str | None, encoder: msgspec.json.Encoder) -> list[ResourceContents]:
    """Shape a resource function's return: text, bytes (sent as base64), contents, or JSON data."""
    if isinstance(value, (TextResourceContents, BlobResourceContents)):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, (TextResourceContents, BlobResourceContents)) for v in value):
        return value
    if isinstance(value, str):
        return [TextResourceContents(uri=uri, text=value, mime_type=mime_type or "text/plain")]
    if isinstance(value, (bytes, bytearray, memoryview)):
        blob = base64.b64encode(bytes(value)).decode("ascii")
        return [BlobResourceContents(uri=uri, blob=blob, mime_type=mime_type or "application/octet-stream")]
    _, text = _encode_json(value, encoder)
    return [TextResourceContents(uri=uri, text=text, mime_type=mime_type or "application/json")]


def prompt_messages(value: Any) -> list[PromptMessage]:
    """Shape a prompt function's return: text, one message, or a list of messages/content."""
    items = value if isinstance(value, (list, tuple)) else [value]
    messages: list[PromptMessage] = []
    for item in items:
        if isinstance(item, PromptMessage):
            messages.append(item)
        elif isinstance(item, Message):
            messages.append(item.to_wire())
        elif isinstance(item, str) or isinstance(item, CONTENT_TYPES) or to_block(item) is not None:
            messages.append(Message(item).to_wire())
        else:
            raise ResultEncodingError(f"a prompt must return text, messages or content blocks, not {type(item).__name__}")
    return messages


# -- what cannot be sent ----------------------------------------------------------------------
def unsendable_reason(exc: BaseException) -> str:
    """Why a message could not be encoded, in words a tool's author can act on; it quotes
    none of the offending text (it cannot be sent, nor safely logged)."""
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start:exc.end]
        points = ", ".join(f"U+{ord(char):04X}" for char in bad[:3])
        return (f"the result holds text that is not valid Unicode ({points}: a lone surrogate, as os.listdir(), "
                "os.environ or errors='surrogateescape' decoding produce) and was not sent; decode such text with "
                "errors='replace', or return bytes")
    return f"the result cannot be encoded as JSON and was not sent ({type(exc).__name__})"


def unsendable_reply(message: Any, exc: BaseException) -> Response | ErrorResponse | None:
    """What answers a request instead of ``message``, its reply that failed to encode: an
    ``isError`` tool result, or ``-32603``; None when ``message`` is not a reply (a
    notification: dropped). See ``docs/security.md``, "Containment"."""
    reason = unsendable_reason(exc)
    if type(message) is Response:
        if isinstance(message.result, CallToolResult):
            return Response(message.id, error_result(reason))
        return ErrorResponse(message.id, error_object(InternalError(reason)))
    if type(message) is ErrorResponse:
        return ErrorResponse(message.id, error_object(InternalError(reason)))
    return None
