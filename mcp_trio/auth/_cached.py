"""``CachedDocument``: one thing fetched from the identity provider, kept fresh on demand.

A JWKS, or the provider's metadata. Read on the request path, so the common case is a clock
read and a comparison; the rest is about what happens when it is not fresh:

- **One fetch at a time.** Requests that find it stale while a fetch is running wait for that
  fetch instead of starting their own (a burst at expiry makes one request to the provider).
- **At most one early fetch per interval.** ``refetch()`` (a token names a ``kid`` we lack) and
  any fetch after a failure happen at most once per ``refetch_interval``; a flood of tokens
  with random ``kid``s costs the provider one request per interval, not one per token.
- **An outage never accepts a token.** When a fetch fails, the last good value is still used
  for ``stale_if_error`` seconds past its lifetime (keys the provider published recently); after
  that, or with nothing fetched yet, ``get`` raises a 503 ``AuthError`` with ``Retry-After``.
  A failure is logged once, at WARNING, with what to check; the recovery once, at INFO.

No background task: whoever needs the value and finds it stale does the fetch (with the
client's deadline), so nothing runs, and nothing needs a nursery, while no one asks. If that
request is cancelled mid-fetch, the next waiter takes over.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from ._errors import AuthError, provider_unavailable
from ._http import FetchError

logger = logging.getLogger("mcp_trio.auth")

T = TypeVar("T")

#: Least seconds between two fetches that a token can trigger (unknown ``kid``) or that follow a failure.
DEFAULT_REFETCH_INTERVAL = 30.0
#: Seconds a value past its lifetime still serves while the provider cannot be reached.
DEFAULT_STALE_IF_ERROR = 600.0


class CachedDocument(Generic[T]):
    """A value from ``fetch`` (an async callable returning the value and its lifetime in seconds).

    ``what`` names it in log lines ("JWKS from https://idp/jwks"); ``clock`` is monotonic
    seconds (``trio.current_time``; tests pass their own). ``fetch`` raises ``FetchError``
    (or a 503 ``AuthError`` from a document it depends on) when it cannot deliver.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[T, float]]],
        *,
        what: str,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
        stale_if_error: float = DEFAULT_STALE_IF_ERROR,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._fetch_value = fetch
        self.what = what
        self.refetch_interval = refetch_interval
        self.stale_if_error = stale_if_error
        self._clock = clock
        self.value: T | None = None
        self.fresh_until = -math.inf
        self._usable_until = -math.inf
        self._last_attempt = -math.inf
        self._last_ok = True
        self._attempts = 0
        self._in_flight: trio.Event | None = None
        #: Fetches completed (successful or not): what tests count, with the provider's own count.
        self.fetches = 0
        #: The last failure's message, None after a success.
        self.last_error: str | None = None

    def current(self) -> T | None:
        """The value if it is fresh, else None (then ``get``); never waits."""
        if self._clock() < self.fresh_until:
            return self.value
        return None

    async def get(self) -> T:
        """The value, fetched first if it is stale; a 503 ``AuthError`` when there is none usable."""
        if self._clock() < self.fresh_until:
            return self.value  # type: ignore[return-value]  # fresh implies fetched
        value = await self._renew(early=False)
        assert value is not None
        return value

    async def refetch(self) -> T | None:
        """Fetch again before the value's time, unless a fetch was tried less than
        ``refetch_interval`` ago: then None (nothing new to be learnt yet). A 503 ``AuthError``
        when the provider is failing, so that a token we could not check is not called bad."""
        return await self._renew(early=True)

    async def prime(self) -> None:
        """Fetch now, at start, and raise ``FetchError`` (or the 503 ``AuthError`` of a document
        this one depends on) when that fails: the caller says it once, as the reason the server
        does not start. Logs nothing."""
        value, lifetime = await self._fetch_value()
        now = self._clock()
        self._record(now, ok=True)
        self.value = value
        self.fresh_until = now + lifetime
        self._usable_until = self.fresh_until + self.stale_if_error
        self.last_error = None

    # -- the slow path ----------------------------------------------------------------------
    async def _renew(self, *, early: bool) -> T | None:
        while True:
            if self._in_flight is not None:
                attempts = self._attempts
                await self._in_flight.wait()
                if self._attempts == attempts:
                    continue  # that fetch was cancelled with its request: take over
                return self._outcome(early)
            now = self._clock()
            too_soon = now - self._last_attempt < self.refetch_interval
            if too_soon and early:
                if not self._last_ok:
                    raise self._unavailable(now)
                return None
            if too_soon and not self._last_ok:
                return self._stale_or_unavailable(now)
            await self._fetch()
            return self._outcome(early)

    async def _fetch(self) -> None:
        event = self._in_flight = trio.Event()
        try:
            try:
                value, lifetime = await self._fetch_value()
            except (FetchError, AuthError) as exc:
                now = self._clock()
                self._record(now, ok=False)
                message = str(exc) if isinstance(exc, FetchError) else f"{exc.description} (an earlier fetch failed)"
                # At most one line per refetch_interval: fetches after a failure are that rare.
                logger.warning("cannot fetch %s: %s; tokens that need it are refused with 503 until it "
                               "answers (next try in %g s at the earliest)", self.what, message, self.refetch_interval)
                self.last_error = message
            else:
                now = self._clock()
                self._record(now, ok=True)
                self.value = value
                self.fresh_until = now + lifetime
                self._usable_until = self.fresh_until + self.stale_if_error
                if self.last_error is not None:
                    logger.info("fetched %s again; the identity provider answers", self.what)
                else:
                    logger.debug("fetched %s (fresh for %g s)", self.what, lifetime)
                self.last_error = None
        finally:
            self._in_flight = None
            event.set()

    def _record(self, now: float, *, ok: bool) -> None:
        self._last_attempt = now
        self._last_ok = ok
        self._attempts += 1
        self.fetches += 1

    def _outcome(self, early: bool) -> T | None:
        if self._last_ok:
            return self.value
        now = self._clock()
        if early:
            raise self._unavailable(now)
        return self._stale_or_unavailable(now)

    def _stale_or_unavailable(self, now: float) -> T:
        if self.value is not None and now < self._usable_until:
            return self.value
        raise self._unavailable(now)

    def _unavailable(self, now: float) -> AuthError:
        return provider_unavailable(self._last_attempt + self.refetch_interval - now)
