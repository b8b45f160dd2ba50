"""The HTTP client pipeyard gives huggingface_hub: per-load proxies and the Hub deadline.

huggingface_hub sends every request through one shared HTTP client, configured only by a
client factory (``set_client_factory``). So that ``proxies`` applies to one load and not to
the whole process, the first Hub call installs a client whose transport picks the proxy per
request from a context variable set around that load's Hub calls; requests made outside such a
call use the environment's proxies (HTTP_PROXY, NO_PROXY...) as before. The same transport
enforces each call's ``PIPEYARD_TIMEOUT``, retries included (:mod:`pipeyard.hub_deadline`).

The factory is process-wide (huggingface_hub has no other hook): outside pipeyard's calls the
client behaves like huggingface_hub's own (environment proxies, no deadline).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Iterator
from typing import Any

from . import constants

_ACTIVE_PROXIES: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "pipeyard_hub_proxies", default=()
)
_ROUTING_LOCK = threading.Lock()
_ROUTING_INSTALLED = False


@contextlib.contextmanager
def proxied(proxies: tuple[tuple[str, str], ...]) -> Iterator[None]:
    if not proxies:
        yield
        return
    token = _ACTIVE_PROXIES.set(proxies)
    try:
        yield
    finally:
        _ACTIVE_PROXIES.reset(token)


def proxy_for(scheme: str, host: str, proxies: tuple[tuple[str, str], ...]) -> str | None:
    """The proxy URL for a request, from ``proxies`` or else from the environment (None: direct)."""
    if not proxies:
        return constants.environment_proxy(scheme, host)
    table = dict(proxies)
    for key in (f"{scheme}://{host}", scheme, f"all://{host}", "all"):
        if key in table:
            return table[key]
    return None


def install_client() -> None:
    global _ROUTING_INSTALLED
    if _ROUTING_INSTALLED:
        return
    with _ROUTING_LOCK:
        if _ROUTING_INSTALLED:
            return
        import httpx2
        from huggingface_hub import get_session, set_client_factory

        from .hub_deadline import transport_class

        hooks = get_session().event_hooks  # huggingface_hub's own: offline mode, request ids

        def client() -> Any:
            transport = transport_class()(_router_class()())
            return httpx2.Client(
                transport=transport, event_hooks=hooks, follow_redirects=True, timeout=None, trust_env=False
            )

        set_client_factory(client)
        _ROUTING_INSTALLED = True


@functools.lru_cache(maxsize=1)
def _router_class() -> type:
    import httpx2

    class ProxyRouter(httpx2.BaseTransport):
        """Sends each request straight, or through the proxy the current load asked for."""

        def __init__(self) -> None:
            self._transports: dict[str | None, httpx2.HTTPTransport] = {}
            self._lock = threading.Lock()

        def _transport(self, proxy: str | None) -> httpx2.HTTPTransport:
            with self._lock:
                if proxy not in self._transports:
                    self._transports[proxy] = httpx2.HTTPTransport(proxy=proxy)
                return self._transports[proxy]

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            url = request.url
            return self._transport(proxy_for(url.scheme, url.host, _ACTIVE_PROXIES.get())).handle_request(request)

        def close(self) -> None:
            with self._lock:
                for transport in self._transports.values():
                    transport.close()
                self._transports.clear()

    return ProxyRouter
