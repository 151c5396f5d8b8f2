"""Scopes from a token's claims, read from the claim(s) the operator names.

Identity providers disagree on where scopes live: ``scope`` (a space-separated string, RFC
9068 and RFC 7662), ``scp`` (a list: Azure AD, Okta), ``roles``, or a nested claim
(Keycloak's ``realm_access.roles``). ``ScopeClaims(["scope", "scp"])`` reads each named claim
and unions what it finds. A name is first looked up as it is (Auth0 names claims
``https://example.com/roles``, dots and all); only when no such top-level claim exists is it
read as a dotted path into nested objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import AuthError

#: What is read when the configuration names nothing: the RFC 9068 ``scope`` and ``scp``.
DEFAULT_SCOPE_CLAIMS: tuple[str, ...] = ("scope", "scp")
#: Most scopes taken from one token; a token carrying more is refused.
MAX_SCOPES = 256
_MISSING = object()


class ScopeClaims:
    """Reads scopes from verified claims; a claim of the wrong shape refuses the token (401)."""

    def __init__(self, names: Iterable[str] = DEFAULT_SCOPE_CLAIMS) -> None:
        self.names = tuple(names)
        if not all(isinstance(name, str) and name.strip(".") for name in self.names):
            raise ValueError("scope claim names must be non-empty strings (a claim, or a dotted path)")
        self._paths = tuple((name, tuple(name.split("."))) for name in self.names)

    def __call__(self, claims: Mapping[str, Any]) -> frozenset[str]:
        scopes: set[str] = set()
        for name, path in self._paths:
            value = claims.get(name, _MISSING)
            if value is _MISSING and len(path) > 1:
                value = _walk(claims, path)
            if value is _MISSING or value is None:
                continue
            if isinstance(value, str):
                scopes.update(value.split())
            elif isinstance(value, list) and all(isinstance(s, str) for s in value):
                scopes.update(s for s in value if s)
            else:
                raise AuthError("malformed", "token scope claim malformed")
        if len(scopes) > MAX_SCOPES:
            raise AuthError("malformed", "token carries too many scopes")
        return frozenset(scopes)

    def __repr__(self) -> str:
        return f"ScopeClaims({list(self.names)!r})"


def _walk(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = claims
    for part in path:
        if not isinstance(node, Mapping):
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node
