"""How a request's failure becomes its JSON-RPC error: the one conversion, for every path.

The answer kernel (``_kernel.answer``) and a task's settling (``_tasks``) both call
``error_of``; nothing else turns an exception into an error object. A tool's own failure never
gets here: the tool-call path (``_calls``) reports it to the model as an ``isError`` result.

* ``McpError``: itself (in the stateless era, ``-32002`` resource-not-found is ``-32602`` with
  the URI in ``data``, SEP-2164);
* ``ProtocolEscape``: the protocol error it carries out of tool code (``-32021``);
* any other ``Exception``, or a ``BaseException`` that is a failure (``SystemExit`` raised by
  user code outside ``call_user``): one log line with the traceback, and ``-32603``;
* cancellation, ``KeyboardInterrupt`` and the server's own control flow: raised again.
"""

from __future__ import annotations

import logging

from .._containment import is_failure
from ..protocol._errors import INVALID_PARAMS, RESOURCE_NOT_FOUND, InternalError, InvalidParams, McpError
from ..protocol._jsonrpc import ErrorObject, error_object
from ._replay import ProtocolEscape

logger = logging.getLogger("mcp_trio.requests")


def error_of(exc: BaseException, method: str, *, stateless: bool) -> ErrorObject:
    """The error object ``exc`` answers a ``method`` request with; raises ``exc`` again when it
    is not the request's failure (see the module's docstring)."""
    if isinstance(exc, ProtocolEscape):
        exc = exc.error
    if isinstance(exc, McpError):
        if stateless and exc.code == RESOURCE_NOT_FOUND:  # SEP-2164: -32602, with the URI in data
            return error_object(InvalidParams(exc.message, exc.data, code=INVALID_PARAMS))
        return error_object(exc)
    if isinstance(exc, Exception):
        logger.error("unexpected error in %s", method, exc_info=exc)
        return error_object(InternalError("internal error"))
    if not is_failure(exc):
        raise exc
    logger.error("unexpected %s in %s", type(exc).__name__, method, exc_info=exc)
    return error_object(InternalError("internal error"))
