"""Helpers a tool, resource or prompt returns to say "this is an image / audio / a file".

They turn into MCP content blocks during result shaping; tools may also return the protocol's
content blocks (``TextContent``, ``EmbeddedResource``, ...) directly.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal

import msgspec

from ..protocol._types import CONTENT_TYPES, AudioContent, ContentBlock, ImageContent, PromptMessage, TextContent


def _read(data: bytes | str | Path) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return Path(data).read_bytes()


def _guess(data: bytes | str | Path, mime_type: str | None, fallback: str) -> str:
    if mime_type:
        return mime_type
    if isinstance(data, (str, Path)):
        import mimetypes  # only a file named without its type pays for it (a stdio child's start does not)

        guessed, _ = mimetypes.guess_type(str(data))
        if guessed:
            return guessed
    return fallback


class Image(msgspec.Struct, frozen=True):
    """Raw image bytes (or a file path) sent as an ``image`` content block, base64-encoded."""

    data: bytes | str | Path
    mime_type: str | None = None

    def to_block(self) -> ImageContent:
        raw = _read(self.data)
        return ImageContent(data=base64.b64encode(raw).decode("ascii"), mime_type=_guess(self.data, self.mime_type, "image/png"))


class Audio(msgspec.Struct, frozen=True):
    """Raw audio bytes (or a file path) sent as an ``audio`` content block, base64-encoded."""

    data: bytes | str | Path
    mime_type: str | None = None

    def to_block(self) -> AudioContent:
        raw = _read(self.data)
        return AudioContent(data=base64.b64encode(raw).decode("ascii"), mime_type=_guess(self.data, self.mime_type, "audio/wav"))


def to_block(value: object) -> ContentBlock | None:
    """The content block ``value`` stands for, or ``None`` when it is not content-like."""
    if isinstance(value, str):
        return TextContent(text=value)
    if isinstance(value, (Image, Audio)):
        return value.to_block()
    if isinstance(value, CONTENT_TYPES):
        return value  # type: ignore[return-value]
    return None


class Message(msgspec.Struct, frozen=True):
    """One prompt message: a role and one piece of content (text, image, audio, resource)."""

    content: object
    role: Literal["user", "assistant"] = "user"

    def to_wire(self) -> PromptMessage:
        block = to_block(self.content)
        if block is None:
            raise TypeError(f"prompt message content must be text or a content block, not {type(self.content).__name__}")
        return PromptMessage(role=self.role, content=block)


def UserMessage(content: object) -> Message:  # noqa: N802 - reads like a type at call sites
    return Message(content, "user")


def AssistantMessage(content: object) -> Message:  # noqa: N802
    return Message(content, "assistant")
