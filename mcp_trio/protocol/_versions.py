"""Protocol revisions and version negotiation (handshake era)."""

from __future__ import annotations

#: Revisions reachable through the ``initialize`` handshake, oldest first.
SUPPORTED_VERSIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]

#: Revisions whose sessions may send JSON-RPC batches: 2025-03-26 allowed them, 2025-06-18
#: removed them (PR 416), so a session that negotiated any other revision is refused one.
BATCH_VERSIONS: tuple[str, ...] = ("2025-03-26",)

#: The revision assumed by Streamable HTTP when a request carries no ``MCP-Protocol-Version``.
DEFAULT_HTTP_VERSION = "2025-03-26"

#: Stateless revisions: no handshake, every request carries its envelope in ``params._meta``.
STATELESS_VERSIONS: tuple[str, ...] = ("2026-07-28",)
LATEST_STATELESS_VERSION = STATELESS_VERSIONS[-1]
#: Every revision served, either era, oldest first: what ``server/discover`` advertises and
#: what an ``UnsupportedProtocolVersionError`` lists (a handshake revision in it tells a
#: dual-era client to fall back to ``initialize``).
ALL_VERSIONS: tuple[str, ...] = SUPPORTED_VERSIONS + STATELESS_VERSIONS


def negotiate_version(requested: str) -> str:
    """Echo the client's revision when we support it, otherwise offer our newest.

    The client decides whether it can live with the counter-offer (spec: lifecycle,
    "Version Negotiation"); we never refuse the handshake over a version.
    """
    return requested if requested in SUPPORTED_VERSIONS else LATEST_VERSION


def at_least(version: str, minimum: str) -> bool:
    """True when ``version`` is a revision we know and it is ``minimum`` or newer."""
    try:
        return SUPPORTED_VERSIONS.index(version) >= SUPPORTED_VERSIONS.index(minimum)
    except ValueError:
        return False
