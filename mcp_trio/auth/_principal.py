"""Who is calling and what they may do: ``Principal``, the scope hierarchy, ``allows``.

Scopes are plain strings. Four have meaning here: ``admin`` ⊇ ``write`` ⊇ ``read``, and
``execute`` (running code or commands, granted on its own or by ``admin``). Any other scope
(``weather:read``) is matched exactly. A principal's implied scopes are expanded once, when it
is built, so a check on the request path is one ``frozenset`` subset test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: What each built-in scope grants besides itself. ``admin`` is the superuser scope: it also
#: grants ``execute``; ``write`` and ``read`` do not.
IMPLIED_SCOPES: Mapping[str, frozenset[str]] = MappingProxyType({
    "admin": frozenset({"write", "read", "execute"}),
    "write": frozenset({"read"}),
})
#: The scopes with a meaning of their own, in order of power.
BUILTIN_SCOPES: tuple[str, ...] = ("read", "write", "execute", "admin")

PrincipalKind = Literal["jwt", "introspected", "api_key", "anonymous", "local"]

_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` plus every scope they imply (``{"write"}`` -> ``{"write", "read"}``)."""
    granted = set(scopes)
    for scope in list(granted):
        granted |= IMPLIED_SCOPES.get(scope, frozenset())
    return frozenset(granted)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated (or knowingly anonymous) caller.

    ``subject`` is the JWT ``sub`` (for an introspected token: ``sub``, else ``username``,
    else ``client_id``), the API key's name, ``"anonymous"`` or ``"local"``;
    ``scopes`` what it was granted (as given; ``granted`` adds the implied ones); ``claims``
    the verified token claims (read-only; empty for API keys). Reaches tools as
    ``ctx.principal``. ``claims`` is left out of ``repr`` so a log line never carries them.
    """

    subject: str
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: _NO_CLAIMS, compare=False, repr=False)
    kind: PrincipalKind = "jwt"
    #: ``scopes`` and every scope they imply; what ``allows`` tests against.
    granted: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        scopes = frozenset(self.scopes)
        object.__setattr__(self, "scopes", scopes)
        object.__setattr__(self, "granted", expand_scopes(scopes))
        if not isinstance(self.claims, MappingProxyType):
            object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))

    def has_scope(self, scope: str) -> bool:
        return scope in self.granted


def allows(principal: Principal | None, required_scopes: Iterable[str]) -> bool:
    """Whether ``principal`` holds every one of ``required_scopes`` (hierarchy applied).

    ``None`` is a trusted channel with no authentication configured (stdio by default): it is
    allowed everything. Nothing required is always allowed.
    """
    if principal is None:
        return True
    required = required_scopes if isinstance(required_scopes, frozenset) else frozenset(required_scopes)
    return required <= principal.granted


#: The principal of a trusted local channel when one is wanted explicitly (stdio, tests).
LOCAL = Principal("local", frozenset({"admin"}), kind="local")
