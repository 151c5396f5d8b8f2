"""The one error cluster mode adds: Redis could not be reached for this call."""

from __future__ import annotations

import math

from ..protocol._errors import ServerOverloaded


class RedisUnavailable(ServerOverloaded):
    """Redis did not answer (refused, timed out, lost, or refused our credentials).

    A ``ServerOverloaded`` (-32030), so the serving layer answers it as it answers any shed
    request: HTTP 503 with ``Retry-After``; ``data`` is ``{"retryAfterMs": N}``. At start the
    message is the one line a person reads: what failed, where, and what to do.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message, {"retryAfterMs": max(1, math.ceil(retry_after * 1000))})
        self.retry_after = retry_after
