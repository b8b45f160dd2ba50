"""``PIPEYARD_TIMEOUT`` for huggingface_hub's requests, retries included.

huggingface_hub retries a request that got no answer, or a 408/429/5xx answer, up to five
times with a growing pause (1, 2, 4, 8, 8 s, or ``Retry-After`` + 1 s), and asks again with a
60 s timeout when a file's metadata request failed. A refused connection then took ~23 s, and
a server that hangs more than a minute, whatever ``PIPEYARD_TIMEOUT`` said.

Each of pipeyard's Hub calls (:func:`pipeyard.hub._hub_call`) opens a :class:`Deadline`:
``PIPEYARD_TIMEOUT`` seconds from its start. The HTTP transport pipeyard gives
huggingface_hub's client (:class:`DeadlineTransport`) then

- gives every request of the call that timeout (not huggingface_hub's 10 or 60 s), and
  restarts the budget whenever a response body brings data (a slow download is no hang);
- lets a failure through untouched the first time (huggingface_hub falls back on its cache,
  or retries), and while the pause before the next try would still end before the deadline;
- past that, or after :data:`MAX_FAILURES` failures, raises :class:`GaveUp`, which huggingface_hub does not retry, and which
  :mod:`pipeyard.hub` turns into an ``OfflineError`` (no answer) or a ``HubError`` (an HTTP
  status), naming the tries and the timeout.

A download that keeps receiving data is never cut by the deadline: it only bounds retrying.
Requests made outside a pipeyard call pass straight through.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import time
from collections.abc import Iterator
from typing import Any

from . import constants

#: Answers huggingface_hub retries (its ``_DEFAULT_RETRY_ON_STATUS_CODES``).
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: The most failed requests one call makes before giving up, deadline or not (huggingface_hub
#: tries 1 + 5 times, but starts again whenever a body brought some data).
MAX_FAILURES = 6

#: huggingface_hub's pause after the n-th retried failure: 1 s, doubling, at most 8 s.
_FIRST_PAUSE, _LONGEST_PAUSE = 1.0, 8.0


@dataclasses.dataclass
class Deadline:
    """The time budget of one pipeyard Hub call, shared by its requests (and their threads)."""

    timeout: float
    ends: float
    failures: int = 0
    last_failure: str = ""

    def progressed(self) -> None:
        """Data arrived: the budget runs from now again (a slow download is not a hang)."""
        self.ends = time.monotonic() + self.timeout

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def next_pause(self, retry_after: float | None) -> float:
        """The pause huggingface_hub takes before trying again after the current failure."""
        if retry_after is not None:
            return retry_after + 1.0
        retries = max(self.failures - 2, 0)  # the first failure is retried at once
        return min(_LONGEST_PAUSE, _FIRST_PAUSE * 2**retries)

    def allows_retry(self, retry_after: float | None) -> bool:
        """True while a try after the pause would start before the deadline."""
        if self.failures >= MAX_FAILURES:
            return False
        if retry_after is None and self.failures < 2:
            return True  # huggingface_hub's cache fallback, or its first retry, follows at once
        return self.remaining() - self.next_pause(retry_after) > 0


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("pipeyard_hub_deadline", default=None)


@contextlib.contextmanager
def deadline() -> Iterator[Deadline]:
    """Open the budget of one Hub call: ``PIPEYARD_TIMEOUT`` seconds from now."""
    timeout = constants.network_timeout()
    budget = Deadline(timeout, time.monotonic() + timeout)
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def current() -> Deadline | None:
    return _CURRENT.get()


class GaveUp(Exception):
    """A request that failed once the deadline left no time to try again (never retried).

    Attributes:
        tries: how many requests of the call failed.
        timeout: the ``PIPEYARD_TIMEOUT`` in force.
        status: the HTTP status of the last answer, or None when there was no answer.
        reason: what went wrong the last time.
    """

    def __init__(self, tries: int, timeout: float, status: int | None, reason: str) -> None:
        self.tries, self.timeout, self.status, self.reason = tries, timeout, status, reason
        super().__init__(
            f"{reason}; gave up after {tries} tries within PIPEYARD_TIMEOUT={timeout:g} s "
            f"(raise PIPEYARD_TIMEOUT to wait longer)"
        )


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: huggingface_hub then uses its own pause


@functools.lru_cache(maxsize=1)
def transport_class() -> type:
    """:class:`DeadlineTransport`, built on first use (httpx2 is imported only then)."""
    import httpx2

    class DeadlineTransport(httpx2.BaseTransport):
        """Wraps a transport; enforces the current :class:`Deadline` (see the module docstring)."""

        def __init__(self, inner: httpx2.BaseTransport) -> None:
            self.inner = inner

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            budget = current()
            if budget is None:
                return self.inner.handle_request(request)
            if budget.failures and budget.remaining() <= 0:
                raise GaveUp(budget.failures, budget.timeout, None, budget.last_failure or "no answer")
            seconds = budget.timeout if not budget.failures else max(min(budget.timeout, budget.remaining()), 0.1)
            request.extensions["timeout"] = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
            try:
                response = self.inner.handle_request(request)
            except httpx2.TransportError as exc:
                self._failed(budget, None, f"{request.method} {request.url}: {type(exc).__name__}: {exc}", None, exc)
                raise
            if response.status_code in RETRIED_STATUSES:
                reason = f"{request.method} {request.url} answered HTTP {response.status_code}"
                self._failed(budget, response.status_code, reason, _retry_after(response.headers), None, response)
            response.stream = _WatchedStream(response.stream, budget, f"{request.method} {request.url}", self._failed)
            return response

        @staticmethod
        def _failed(
            budget: Deadline, status: int | None, reason: str, retry_after: float | None,
            cause: BaseException | None, response: Any = None,
        ) -> None:
            budget.failures += 1
            budget.last_failure = reason
            if budget.allows_retry(retry_after):
                return
            if response is not None:
                response.close()
            raise GaveUp(budget.failures, budget.timeout, status, reason) from cause

        def close(self) -> None:
            self.inner.close()

    class _WatchedStream(httpx2.SyncByteStream):
        """A response body: data restarts the budget; a failure mid-body counts like any other."""

        def __init__(self, inner: Any, budget: Deadline, what: str, failed: Any) -> None:
            self.inner, self.budget, self.what, self.failed = inner, budget, what, failed

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self.inner:
                    if chunk:
                        self.budget.progressed()
                    yield chunk
            except httpx2.TransportError as exc:
                self.failed(self.budget, None, f"{self.what}: body cut short: {type(exc).__name__}: {exc}", None, exc)
                raise

        def close(self) -> None:
            self.inner.close()

    return DeadlineTransport
