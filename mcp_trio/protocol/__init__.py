"""Sans-io MCP protocol core: messages, codec, version negotiation, session state, errors.

Imports msgspec and the standard library only, never trio or a transport, so it is tested
synchronously with no sockets.
"""

from ._errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RATE_LIMITED,
    REQUEST_TIMEOUT,
    RESOURCE_NOT_FOUND,
    SERVER_OVERLOADED,
    SHUTTING_DOWN,
    InternalError,
    InvalidParams,
    InvalidRequest,
    McpError,
    MethodNotFound,
    ParseError,
    PeerError,
    RequestTimeout,
    ResourceNotFound,
    ShuttingDown,
)
from ._jsonrpc import (
    ErrorObject,
    ErrorResponse,
    Malformed,
    Message,
    MessageCodec,
    Notification,
    Request,
    RequestId,
    Response,
    error_object,
)
from ._session import ClientProfile, Phase, SessionState
from ._versions import LATEST_VERSION, SUPPORTED_VERSIONS, at_least, negotiate_version

__all__ = [name for name in dir() if not name.startswith("_")]
