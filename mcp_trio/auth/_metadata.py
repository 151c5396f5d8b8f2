"""OAuth 2.0 Protected Resource Metadata (RFC 9728) and the ``WWW-Authenticate`` challenge.

The server is a resource server only: it verifies tokens an authorization server issued and
never passes a client's token on to anything. These functions build what the HTTP transport
serves at ``/.well-known/oauth-protected-resource`` and sends in 401/403 answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import AuthError

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def protected_resource_metadata(
    resource: str,
    authorization_servers: Iterable[str] = (),
    scopes_supported: Iterable[str] = (),
    *,
    resource_name: str | None = None,
    resource_documentation: str | None = None,
) -> dict[str, Any]:
    """The RFC 9728 document for ``resource`` (this server's URL, the tokens' audience).

    ``bearer_methods_supported`` is ``["header"]``: tokens are accepted in the
    ``Authorization`` header only, never in a query string or form body.
    """
    if not resource:
        raise ValueError("resource (this server's URL) is required")
    document: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": list(authorization_servers),
        "scopes_supported": sorted(set(scopes_supported)),
        "bearer_methods_supported": ["header"],
    }
    if resource_name:
        document["resource_name"] = resource_name
    if resource_documentation:
        document["resource_documentation"] = resource_documentation
    return document


def metadata_paths(resource: str) -> tuple[str, ...]:
    """The request paths the metadata document is served at, for ``resource``.

    RFC 9728 §3.1 inserts the well-known path between host and path:
    ``https://h/mcp`` -> ``/.well-known/oauth-protected-resource/mcp``. The bare
    ``/.well-known/oauth-protected-resource`` is served too, for clients that try it first.
    """
    path = urlsplit(resource).path.rstrip("/")
    return (WELL_KNOWN, WELL_KNOWN + path) if path else (WELL_KNOWN,)


def resource_metadata_url(resource: str) -> str:
    """Where a client finds the metadata of ``resource`` (RFC 9728 §3.1)."""
    parts = urlsplit(resource)
    if not parts.scheme or not parts.netloc:
        raise ValueError("resource must be an absolute URL (https://host/path)")
    return urlunsplit((parts.scheme, parts.netloc, metadata_paths(resource)[-1], "", ""))


def _quoted(value: str) -> str:
    # RFC 7235 quoted-string; our values are fixed text, URLs and scope names, but make sure
    # nothing can close the quote or start a new header line.
    cleaned = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def www_authenticate(error: AuthError | None = None, resource_metadata: str | None = None) -> str:
    """The ``WWW-Authenticate`` value for a 401 or 403 answer.

    ``error`` is the refusal (None, or one with ``error=None``, when no credential was sent:
    RFC 6750 §3.1 says then to send no error code); ``resource_metadata`` is the URL from
    ``resource_metadata_url``::

        Bearer resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"
        Bearer error="invalid_token", error_description="token expired", resource_metadata="…"
        Bearer error="insufficient_scope", scope="write", resource_metadata="…"
    """
    params: list[str] = []
    if error is not None and error.error is not None:
        params.append(f"error={_quoted(error.error)}")
        params.append(f"error_description={_quoted(error.description)}")
        if error.required_scopes:
            params.append(f"scope={_quoted(' '.join(error.required_scopes))}")
    if resource_metadata:
        params.append(f"resource_metadata={_quoted(resource_metadata)}")
    return "Bearer " + ", ".join(params) if params else "Bearer"
