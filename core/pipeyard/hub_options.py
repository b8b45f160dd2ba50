"""The caller's side of a Hub load: :class:`HubOptions`, and the checks on repo ids and
subfolders, all made before any request.

Nothing here talks to the network or imports huggingface_hub; :mod:`pipeyard.hub` does.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import constants, errors

PathLike = str | os.PathLike[str]
#: ``proxies`` as a caller may give it: one URL for every request, or scheme (or
#: ``scheme://host``) -> proxy URL, e.g. ``{"https": "http://proxy:3128"}``.
ProxiesArg = str | Mapping[str, str] | None

_PROXY_KEY = re.compile(r"^(all|http|https)(://[^/\s]+)?$")
_PROXY_SCHEMES = ("http://", "https://", "socks5://", "socks5h://")
_REPO_PART = re.compile(r"^[A-Za-z0-9_.-]{1,96}$")


# ---------------------------------------------------------------------- options


@dataclass(frozen=True)
class HubOptions:
    """How one load reaches the Hub: which revision, as whom, cached where, through what.

    ``from_pretrained`` builds it once from its keywords and passes it, as one value, to
    everything the load reads from the Hub.

    Attributes:
        revision: branch, tag or commit sha of the model repo (default ``main``). A Hub
            custom pipeline has its own, ``custom_revision``; this one does not apply to it.
        token: a Hub token; ``True`` for the saved one, ``False`` for none; ``None`` for
            ``HF_TOKEN`` or the saved one. Never shown by ``repr``.
        cache_dir: the Hub cache folder (default ``HF_HUB_CACHE``).
        local_files_only: answer from the Hub cache alone, making no request.
        proxies: one proxy URL for every request, or a mapping from ``http`` / ``https`` /
            ``all`` (optionally ``scheme://host``) to a proxy URL. Stored as sorted pairs.
        endpoint: the Hub's base URL; None reads ``HF_ENDPOINT`` when a request is made.

    Example::

        options = HubOptions(revision="v1", proxies={"https": "http://proxy.local:3128"})
        source = open_source("google/ddpm-cifar10-32", options)

    Raises:
        HubOptionError: a value of the wrong type or shape, naming the option.
    """

    revision: str | None = None
    token: str | bool | None = field(default=None, repr=False)
    cache_dir: PathLike | None = None
    local_files_only: bool = False
    proxies: Any = None
    endpoint: str | None = None

    def __post_init__(self) -> None:
        _check_revision(self.revision)
        if self.token is not None and not isinstance(self.token, (str, bool)):
            raise errors.HubOptionError("token", self.token, "a token string, True, False or None")
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise errors.HubOptionError("cache_dir", self.cache_dir, "a folder path or None")
        if not isinstance(self.local_files_only, bool):
            raise errors.HubOptionError("local_files_only", self.local_files_only, "True or False")
        object.__setattr__(self, "proxies", _normalized_proxies(self.proxies))
        object.__setattr__(self, "endpoint", _normalized_endpoint(self.endpoint))

    @property
    def offline(self) -> bool:
        """True when no request may be made (``local_files_only`` or offline mode)."""
        return self.local_files_only or constants.is_offline()

    @property
    def offline_reason(self) -> str:
        return "offline mode is on" if constants.is_offline() else "local_files_only=True"

    def at(self, revision: str | None) -> HubOptions:
        """The same options for another revision (a resolved commit, a custom_revision)."""
        return self if revision == self.revision else replace(self, revision=revision)

    def hub_endpoint(self) -> str | None:
        return self.endpoint or constants.hub_endpoint()

    def hub_cache_dir(self) -> str:
        return os.fspath(self.cache_dir if self.cache_dir is not None else constants.hub_cache_dir())


def _check_revision(revision: Any) -> None:
    if revision is None:
        return
    if not isinstance(revision, str) or not revision or revision != revision.strip():
        raise errors.HubOptionError("revision", revision, "a branch, tag or commit sha")
    if ".." in revision.split("/") or revision.startswith("/") or "\\" in revision or "\x00" in revision:
        raise errors.HubOptionError(
            "revision", revision, "a branch, tag or commit sha without '..', a leading '/' or a backslash"
        )


def _normalized_proxies(proxies: Any) -> tuple[tuple[str, str], ...]:
    if proxies is None or proxies == ():
        return ()
    if isinstance(proxies, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in proxies):
        proxies = dict(proxies)
    if isinstance(proxies, str):
        proxies = {"all": proxies}
    expected = "a proxy URL, or a mapping like {'https': 'http://proxy:3128'} (keys http, https, all)"
    if not isinstance(proxies, Mapping):
        raise errors.HubOptionError("proxies", proxies, expected)
    pairs = []
    for key, url in proxies.items():
        if not isinstance(key, str) or not _PROXY_KEY.match(key) or not isinstance(url, str) or not url.strip():
            raise errors.HubOptionError("proxies", dict(proxies), expected)
        url = url.strip() if "://" in url else f"http://{url.strip()}"
        if not url.startswith(_PROXY_SCHEMES) or not urllib.parse.urlsplit(url).hostname:
            schemes = ", ".join(_PROXY_SCHEMES)
            raise errors.HubOptionError("proxies", dict(proxies), f"proxy URLs starting with {schemes}")
        pairs.append((key, url))
    return tuple(sorted(pairs))


def _normalized_endpoint(endpoint: Any) -> str | None:
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")) or \
            not urllib.parse.urlsplit(endpoint).hostname:
        raise errors.HubOptionError("endpoint", endpoint, "the Hub's base URL, e.g. 'https://huggingface.co'")
    return endpoint.rstrip("/")


def as_options(options: HubOptions | None, fields: Mapping[str, Any]) -> HubOptions:
    """``options``, or a HubOptions made of ``fields`` (giving both is a TypeError)."""
    if options is not None and fields:
        raise TypeError(f"pass either a HubOptions or its fields ({', '.join(fields)}), not both")
    return options if options is not None else HubOptions(**fields)


# ---------------------------------------------------------------------- names


def check_repo_id(value: str, argument: str) -> None:
    """Refuse ``value`` unless the Hub's naming rules allow it as a repo id (no request made).

    Raises:
        InvalidRepoIdError: names ``argument`` (where the value came from) and the rule broken.
    """
    parts = value.split("/")
    if not value:
        reason = "it is empty"
    elif len(parts) > 2:
        reason = "it has more than one '/'"
    elif not all(_REPO_PART.match(part) for part in parts):
        reason = "it holds a character other than letters, digits, '-', '_' and '.', or a part is empty or too long"
    elif any(part[0] in "-." or part[-1] in "-." for part in parts):
        reason = "a part starts or ends with '-' or '.'"
    elif "--" in value or ".." in value:
        reason = "it contains '--' or '..'"
    elif value.endswith(".git"):
        reason = "it ends with '.git'"
    else:
        return
    raise errors.InvalidRepoIdError(value, argument, reason)


def check_subfolder(subfolder: str | None) -> str | None:
    """``subfolder`` without surrounding slashes (None when empty); refuses paths that leave the root.

    Raises:
        InvalidSubfolderError: an absolute path, a ``..`` or empty part, a backslash or NUL.
    """
    if subfolder is None:
        return None
    if not isinstance(subfolder, str):
        raise errors.InvalidSubfolderError(repr(subfolder), "it is not a string")
    if subfolder.startswith("/") or os.path.isabs(subfolder):
        raise errors.InvalidSubfolderError(subfolder, "it is an absolute path")
    if "\\" in subfolder or "\x00" in subfolder:
        raise errors.InvalidSubfolderError(subfolder, "it contains a backslash or a NUL byte")
    stripped = subfolder.strip("/")
    if stripped and any(part in ("", ".", "..") for part in stripped.split("/")):
        raise errors.InvalidSubfolderError(subfolder, "a part is empty, '.' or '..'")
    return stripped or None
