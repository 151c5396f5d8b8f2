"""Session state of the handshake era, sans-io.

``ClientProfile`` answers "who is the client and what can it do". The handshake sets it once
per session here; the stateless 2026-07-28 revision will build one per request from
``params._meta`` instead, which is why request handling takes a profile, not a session.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from ._errors import InvalidRequest
from ._types import LOG_LEVELS, Implementation, InitializeParams
from ._versions import negotiate_version


class ClientProfile(msgspec.Struct, frozen=True):
    """The client's negotiated revision, declared capabilities and self-description."""

    protocol_version: str
    capabilities: dict[str, Any]
    info: Implementation

    def supports(self, capability: str) -> bool:
        """True when the client declared ``capability`` ("sampling", "elicitation", "roots")."""
        return self.capabilities.get(capability) is not None

    def supports_form_elicitation(self) -> bool:
        elicitation = self.capabilities.get("elicitation")
        if not isinstance(elicitation, dict):
            return False
        # An empty object means "form" (2025-11-25 "Capabilities"); otherwise form must be named.
        return not elicitation or "form" in elicitation


class Phase(enum.Enum):
    NEW = "new"                  # only ping and initialize are accepted
    INITIALIZED = "initialized"  # initialize answered; everything is accepted


#: Methods a client may send before the handshake completes.
PRE_INIT_METHODS = frozenset({"initialize", "ping"})


class SessionState:
    """What one handshake-era session knows: its phase, its client, its log level."""

    __slots__ = ("phase", "client", "log_level", "initialized_notified")

    def __init__(self) -> None:
        self.phase = Phase.NEW
        self.client: ClientProfile | None = None
        #: Minimum level of ``notifications/message`` sent; None until ``logging/setLevel``.
        self.log_level: str | None = None
        self.initialized_notified = False

    def check_request(self, method: str) -> None:
        """Refuse a request the session's phase does not allow (raises ``InvalidRequest``)."""
        if self.phase is Phase.NEW and method not in PRE_INIT_METHODS:
            raise InvalidRequest(f"session not initialized: send initialize before {method!r}")

    def initialize(self, params: InitializeParams) -> ClientProfile:
        """Apply an ``initialize`` request; returns the profile with the negotiated revision."""
        if self.phase is not Phase.NEW:
            raise InvalidRequest("session already initialized")
        self.client = ClientProfile(
            protocol_version=negotiate_version(params.protocol_version),
            capabilities=params.capabilities,
            info=params.client_info,
        )
        self.phase = Phase.INITIALIZED
        return self.client

    def resume(self, client: ClientProfile, log_level: str | None) -> None:
        """Take up a session initialized elsewhere (cluster mode: another process answered
        its ``initialize``; the profile comes from the shared store)."""
        self.client = client
        self.phase = Phase.INITIALIZED
        self.log_level = log_level
        self.initialized_notified = True

    def set_log_level(self, level: str) -> None:
        self.log_level = level

    def wants_log(self, level: str) -> bool:
        """True when a log message at ``level`` should be sent to the client.

        Before ``logging/setLevel`` the server may send what it likes (spec: logging); we send
        ``info`` and above, the usual default of MCP clients.
        """
        threshold = self.log_level or "info"
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold)
