"""mcp-trio: an MCP server framework on trio structured concurrency.

Write tools, resources and prompts as plain functions on a ``Server``; serve it over stdio
(``mcp-trio serve module:server``) or from Python (``mcp_trio.transports.stdio.serve_stdio``);
``asgi_app(server)`` is it as an ASGI app, to mount in an ASGI stack of your own.
"""

from typing import TYPE_CHECKING, Any

from .serving._compose import ToolCallError
from .offer._content import AssistantMessage, Audio, Image, Message, UserMessage
from .offer._mount import MountError
from .offer._remote import Remote
from .offer._tool_class import Tool, ToolDefinitionError
from .serving._context import CapabilityMissing, Context
from ._limits import Limits
from ._logging import current_principal, current_request_id
from ._paths import PathSegment, RelativePath
from .plugins._plugin import Plugin
from ._request_state import single_use_state
from ._server import Server
from ._tracing import Tracing, tracing_provider
from .serving._tasks import task_support
from .protocol._errors import InvalidParams, McpError, NoSessionError, ResourceNotFound
from .protocol._types import (
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    Icon,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

__all__ = [
    "AssistantMessage",
    "Audio",
    "BlobResourceContents",
    "CallToolResult",
    "CapabilityMissing",
    "Context",
    "EmbeddedResource",
    "Icon",
    "Image",
    "ImageContent",
    "InvalidParams",
    "Limits",
    "McpError",
    "Message",
    "NoSessionError",
    "PathSegment",
    "Plugin",
    "MountError",
    "RelativePath",
    "Remote",
    "ResourceLink",
    "ResourceNotFound",
    "Server",
    "TextContent",
    "TextResourceContents",
    "Tool",
    "ToolCallError",
    "Tracing",
    "ToolDefinitionError",
    "UserMessage",
    "asgi_app",
    "current_principal",
    "current_request_id",
    "single_use_state",
    "task_support",
    "tracing_provider",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .transports.http import asgi_app


def __getattr__(name: str) -> Any:
    # Imported when asked for: a stdio child never pays for the HTTP stack.
    if name == "asgi_app":
        from .transports.http import asgi_app

        return asgi_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
