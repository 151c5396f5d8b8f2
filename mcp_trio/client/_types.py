"""The typed results and callback payloads of the client: msgspec Structs.

Most are the protocol core's own bodies (``mcp_trio.protocol._types``), the same structs the
server encodes, so a gateway decodes an upstream answer once and re-encodes it as is; the
results holding resource contents are the client's own (see ``ResourceContents``). Fields
are snake_case in Python and camelCase on the wire; an absent optional field is
``msgspec.UNSET``. Fields a server sends that a struct does not define are ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType, field

from ..protocol._types import (
    Annotations,
    AudioContent,
    CompleteResult,
    Completion,
    CreateMessageParams,
    CreateMessageResult,
    ElicitParams,
    ElicitResult,
    Icon,
    ImageContent,
    Implementation,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListRootsResult,
    ListToolsResult,
    LoggingMessageParams,
    ModelHint,
    ModelPreferences,
    Prompt,
    PromptArgument,
    PromptRef,
    Resource,
    ResourceLink,
    ResourceTemplate,
    ResourceTemplateRef,
    Root,
    SamplingMessage,
    TextContent,
    Tool,
    ToolAnnotations,
    Wire,
)


# The server's structs encode unions of untagged structs (text or blob contents), which
# msgspec cannot decode: the client reads them into one struct with both fields optional.
class ResourceContents(Wire):
    """One part of a resource: ``text`` or ``blob`` (base64) is set, the other is UNSET."""

    uri: str
    text: str | UnsetType = UNSET
    blob: str | UnsetType = UNSET
    mime_type: str | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


#: Kept for symmetry with the server's names: both are :class:`ResourceContents` here.
TextResourceContents = ResourceContents
BlobResourceContents = ResourceContents


class EmbeddedResource(Wire, tag="resource", tag_field="type"):
    resource: ResourceContents
    annotations: Annotations | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


ContentBlock = TextContent | ImageContent | AudioContent | EmbeddedResource | ResourceLink


class CallToolResult(Wire, kw_only=True):
    """A tool's answer: ``content`` blocks, optional ``structured_content``, and
    ``is_error`` (True: the tool failed, and the content says why)."""

    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")
    content: list[ContentBlock] = field(default_factory=list)
    structured_content: Any = UNSET
    is_error: bool = False


class ReadResourceResult(Wire):
    contents: list[ResourceContents]
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class PromptMessage(Wire):
    role: Literal["user", "assistant"]
    content: ContentBlock


class GetPromptResult(Wire):
    messages: list[PromptMessage]
    description: str | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")

__all__ = [
    "Annotations",
    "AudioContent",
    "BlobResourceContents",
    "CallToolResult",
    "CompleteResult",
    "Completion",
    "ContentBlock",
    "CreateMessageParams",
    "CreateMessageResult",
    "ElicitParams",
    "ElicitResult",
    "EmbeddedResource",
    "GetPromptResult",
    "Icon",
    "ImageContent",
    "Implementation",
    "ListPromptsResult",
    "ListResourceTemplatesResult",
    "ListResourcesResult",
    "ListRootsResult",
    "ListToolsResult",
    "LoggingMessageParams",
    "ModelHint",
    "ModelPreferences",
    "Prompt",
    "PromptArgument",
    "PromptMessage",
    "PromptRef",
    "ReadResourceResult",
    "Resource",
    "ResourceContents",
    "ResourceLink",
    "ResourceTemplate",
    "ResourceTemplateRef",
    "Root",
    "SamplingMessage",
    "TextContent",
    "TextResourceContents",
    "Tool",
    "ToolAnnotations",
]
