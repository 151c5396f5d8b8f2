"""MCP message bodies (params and results) for the handshake-era revisions.

Field names are camelCase on the wire (``rename="camel"``); ``_meta`` is spelled out. Results
omit fields left at their default, so what we send is what the spec shows. Params structs
ignore unknown fields (newer clients send more than older revisions define).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType, field

ProgressToken = int | str
LoggingLevel = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


class Wire(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """Base of every MCP body: camelCase names, defaults omitted when encoding."""


# -- shared -----------------------------------------------------------------------------------
class Icon(Wire):
    """An icon a client may show for a tool, resource, prompt or the server (revision
    2025-11-25, SEP-973). ``src``: an ``https:`` URL or a base64 ``data:`` URI (what a server
    registers is checked by ``offer._icons``); ``sizes``: ``"48x48"``... or ``"any"``."""

    src: str
    mime_type: str | UnsetType = UNSET
    sizes: list[str] | UnsetType = UNSET
    theme: Literal["light", "dark"] | UnsetType = UNSET


class Implementation(Wire):
    name: str
    version: str = ""
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    website_url: str | UnsetType = UNSET
    icons: list[Icon] | UnsetType = UNSET


class Annotations(Wire):
    audience: list[Literal["user", "assistant"]] | UnsetType = UNSET
    priority: float | UnsetType = UNSET
    last_modified: str | UnsetType = UNSET


class RequestMeta(Wire):
    progress_token: ProgressToken | UnsetType = UNSET


# -- content ----------------------------------------------------------------------------------
class TextContent(Wire, tag="text", tag_field="type"):
    text: str
    annotations: Annotations | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class ImageContent(Wire, tag="image", tag_field="type"):
    data: str
    mime_type: str
    annotations: Annotations | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class AudioContent(Wire, tag="audio", tag_field="type"):
    data: str
    mime_type: str
    annotations: Annotations | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class TextResourceContents(Wire):
    uri: str
    text: str
    mime_type: str | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class BlobResourceContents(Wire):
    uri: str
    blob: str
    mime_type: str | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


ResourceContents = TextResourceContents | BlobResourceContents


class EmbeddedResource(Wire, tag="resource", tag_field="type"):
    resource: TextResourceContents | BlobResourceContents
    annotations: Annotations | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class ResourceLink(Wire, tag="resource_link", tag_field="type"):
    uri: str
    name: str
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    mime_type: str | UnsetType = UNSET
    size: int | UnsetType = UNSET
    annotations: Annotations | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


ContentBlock = TextContent | ImageContent | AudioContent | EmbeddedResource | ResourceLink
CONTENT_TYPES: tuple[type, ...] = (TextContent, ImageContent, AudioContent, EmbeddedResource, ResourceLink)


# -- lifecycle --------------------------------------------------------------------------------
class InitializeParams(Wire):
    protocol_version: str
    client_info: Implementation
    capabilities: dict[str, Any] = field(default_factory=dict)


class ListChangedCapability(Wire):
    list_changed: bool | UnsetType = UNSET


class ResourcesCapability(Wire):
    subscribe: bool | UnsetType = UNSET
    list_changed: bool | UnsetType = UNSET


class ServerCapabilities(Wire):
    tools: ListChangedCapability | UnsetType = UNSET
    resources: ResourcesCapability | UnsetType = UNSET
    prompts: ListChangedCapability | UnsetType = UNSET
    logging: dict[str, Any] | UnsetType = UNSET
    completions: dict[str, Any] | UnsetType = UNSET
    experimental: dict[str, Any] | UnsetType = UNSET


class InitializeResult(Wire):
    protocol_version: str
    capabilities: ServerCapabilities
    server_info: Implementation
    instructions: str | UnsetType = UNSET


class EmptyResult(Wire):
    """``{}``: the answer to ping, setLevel, subscribe and unsubscribe."""


# -- pagination -------------------------------------------------------------------------------
class PaginatedParams(Wire):
    cursor: str | UnsetType = UNSET


# -- tools ------------------------------------------------------------------------------------
class ToolAnnotations(Wire):
    title: str | UnsetType = UNSET
    read_only_hint: bool | UnsetType = UNSET
    destructive_hint: bool | UnsetType = UNSET
    idempotent_hint: bool | UnsetType = UNSET
    open_world_hint: bool | UnsetType = UNSET


class Tool(Wire):
    name: str
    input_schema: dict[str, Any]
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    output_schema: dict[str, Any] | UnsetType = UNSET
    annotations: ToolAnnotations | UnsetType = UNSET
    icons: list[Icon] | UnsetType = UNSET
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")


class ListToolsResult(Wire):
    tools: list[Tool]
    next_cursor: str | UnsetType = UNSET


class CallToolParams(Wire):
    name: str
    arguments: Raw | UnsetType = UNSET
    meta: RequestMeta | UnsetType = field(default=UNSET, name="_meta")


class CallToolResult(Wire, kw_only=True):
    #: First, so that an encoded result with ``_meta`` starts with it: the 2026-07-28 stamp
    #: merges its own ``_meta`` keys in there (``_stateless.ResultStamp``).
    meta: dict[str, Any] | UnsetType = field(default=UNSET, name="_meta")
    content: list[ContentBlock]
    structured_content: Any = UNSET
    is_error: bool = False


# -- resources --------------------------------------------------------------------------------
class Resource(Wire):
    uri: str
    name: str
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    mime_type: str | UnsetType = UNSET
    size: int | UnsetType = UNSET
    annotations: Annotations | UnsetType = UNSET
    icons: list[Icon] | UnsetType = UNSET


class ResourceTemplate(Wire):
    uri_template: str
    name: str
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    mime_type: str | UnsetType = UNSET
    annotations: Annotations | UnsetType = UNSET
    icons: list[Icon] | UnsetType = UNSET


class ListResourcesResult(Wire):
    resources: list[Resource]
    next_cursor: str | UnsetType = UNSET


class ListResourceTemplatesResult(Wire):
    resource_templates: list[ResourceTemplate]
    next_cursor: str | UnsetType = UNSET


class ReadResourceParams(Wire):
    uri: str
    meta: RequestMeta | UnsetType = field(default=UNSET, name="_meta")


class ReadResourceResult(Wire):
    contents: list[ResourceContents]


class SubscribeParams(Wire):
    uri: str


# -- prompts ----------------------------------------------------------------------------------
class PromptArgument(Wire):
    name: str
    description: str | UnsetType = UNSET
    required: bool = False


class Prompt(Wire):
    name: str
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    arguments: list[PromptArgument] | UnsetType = UNSET
    icons: list[Icon] | UnsetType = UNSET


class ListPromptsResult(Wire):
    prompts: list[Prompt]
    next_cursor: str | UnsetType = UNSET


class GetPromptParams(Wire):
    name: str
    arguments: dict[str, str] = field(default_factory=dict)
    meta: RequestMeta | UnsetType = field(default=UNSET, name="_meta")


class PromptMessage(Wire):
    role: Literal["user", "assistant"]
    content: ContentBlock


class GetPromptResult(Wire):
    messages: list[PromptMessage]
    description: str | UnsetType = UNSET


# -- completion -------------------------------------------------------------------------------
class PromptRef(Wire, tag="ref/prompt", tag_field="type"):
    name: str


class ResourceTemplateRef(Wire, tag="ref/resource", tag_field="type"):
    uri: str


class CompletionArgument(Wire):
    name: str
    value: str


class CompletionContext(Wire):
    arguments: dict[str, str] = field(default_factory=dict)


class CompleteParams(Wire):
    ref: PromptRef | ResourceTemplateRef
    argument: CompletionArgument
    context: CompletionContext | UnsetType = UNSET


class Completion(Wire):
    values: list[str]
    total: int | UnsetType = UNSET
    has_more: bool | UnsetType = UNSET


class CompleteResult(Wire):
    completion: Completion


# -- logging, progress, cancellation ----------------------------------------------------------
class SetLevelParams(Wire):
    level: LoggingLevel


class LoggingMessageParams(Wire):
    level: str
    data: Any
    logger: str | UnsetType = UNSET


class ProgressParams(Wire):
    progress_token: ProgressToken
    progress: float
    total: float | UnsetType = UNSET
    message: str | UnsetType = UNSET


class CancelledParams(Wire):
    request_id: int | str | UnsetType = UNSET
    reason: str | UnsetType = UNSET


class ResourceUpdatedParams(Wire):
    uri: str


# -- server -> client requests ----------------------------------------------------------------
class SamplingMessage(Wire):
    role: Literal["user", "assistant"]
    content: Any


class ModelHint(Wire):
    name: str | UnsetType = UNSET


class ModelPreferences(Wire):
    hints: list[ModelHint] | UnsetType = UNSET
    cost_priority: float | UnsetType = UNSET
    speed_priority: float | UnsetType = UNSET
    intelligence_priority: float | UnsetType = UNSET


class CreateMessageParams(Wire):
    messages: list[SamplingMessage]
    max_tokens: int
    system_prompt: str | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    model_preferences: ModelPreferences | UnsetType = UNSET
    include_context: Literal["none", "thisServer", "allServers"] | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class CreateMessageResult(Wire):
    role: str
    content: Any
    model: str = ""
    stop_reason: str | UnsetType = UNSET


class ElicitParams(Wire):
    message: str
    requested_schema: dict[str, Any]
    mode: str | UnsetType = UNSET


class ElicitResult(Wire):
    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | UnsetType = UNSET


class Root(Wire):
    uri: str
    name: str | UnsetType = UNSET


class ListRootsResult(Wire):
    roots: list[Root]
