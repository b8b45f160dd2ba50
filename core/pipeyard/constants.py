"""Every environment variable pipeyard reads, and the defaults derived from them.

Each value is read at call time (``constants.pipeyard_home()``), never cached at import, so
tests and long-running processes can change the environment and be obeyed at once.

=====================================  ==================================================
variable                               meaning
=====================================  ==================================================
``PIPEYARD_HOME``                      root of pipeyard's own files (module cache, trust
                                       store, resolution records); default
                                       ``~/.cache/pipeyard``
``PIPEYARD_OFFLINE``                   ``1``: make no network request at all
``HF_HUB_OFFLINE``                     honoured like ``PIPEYARD_OFFLINE``
``PIPEYARD_TIMEOUT``                   seconds before any network request gives up (10)
``PIPEYARD_DISABLE_REMOTE_CODE``       ``1``: refuse every custom pipeline but bundled ones
``PIPEYARD_DISABLE_PLUGIN_AUTOLOAD``   ``1``: do not discover plugins through entry points
``PIPEYARD_COMMUNITY_URL``             URL template of community files at a revision,
                                       with ``{revision}`` and ``{name}`` fields
``HF_ENDPOINT``                        the Hub's base URL (a mirror, or a test server)
``HF_HOME`` / ``HF_HUB_CACHE``         where Hub downloads are cached
``HF_TOKEN``                           the Hub token used when none is passed
``HTTP_PROXY`` / ``HTTPS_PROXY`` /     proxies of Hub requests made without ``proxies=``,
``ALL_PROXY`` / ``NO_PROXY``           and the hosts reached directly (any case)
=====================================  ==================================================
"""

from __future__ import annotations

import os
from pathlib import Path

# Values that count as "on" for boolean variables (case-insensitive).
_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})

#: Seconds a network request may take before it fails, when ``PIPEYARD_TIMEOUT`` is unset.
DEFAULT_TIMEOUT = 10.0

#: File names shared with diffusers-format repositories.
MODEL_INDEX_NAME = "model_index.json"
CONFIG_NAME = "config.json"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.bin"
SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_VALUES


def pipeyard_home() -> Path:
    """Root folder of pipeyard's files (``PIPEYARD_HOME``, default ``~/.cache/pipeyard``)."""
    value = os.environ.get("PIPEYARD_HOME")
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "pipeyard"


def is_offline() -> bool:
    """True when ``PIPEYARD_OFFLINE`` or ``HF_HUB_OFFLINE`` asks for no network at all."""
    return _flag("PIPEYARD_OFFLINE") or _flag("HF_HUB_OFFLINE")


def network_timeout() -> float:
    """Seconds any network request may take (``PIPEYARD_TIMEOUT``, default 10)."""
    value = os.environ.get("PIPEYARD_TIMEOUT")
    if not value:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        from .errors import EnvironmentVariableError

        raise EnvironmentVariableError("PIPEYARD_TIMEOUT", value, "a number of seconds, e.g. 10") from None
    if timeout <= 0:
        from .errors import EnvironmentVariableError

        raise EnvironmentVariableError("PIPEYARD_TIMEOUT", value, "a positive number of seconds")
    return timeout


def remote_code_disabled() -> bool:
    """True when ``PIPEYARD_DISABLE_REMOTE_CODE`` refuses all but bundled custom pipelines."""
    return _flag("PIPEYARD_DISABLE_REMOTE_CODE")


def plugin_autoload_disabled() -> bool:
    """True when ``PIPEYARD_DISABLE_PLUGIN_AUTOLOAD`` turns entry-point plugin discovery off."""
    return _flag("PIPEYARD_DISABLE_PLUGIN_AUTOLOAD")


def community_url_template() -> str | None:
    """URL template for community files at a revision (``PIPEYARD_COMMUNITY_URL``).

    None when unset: the host then derives the template from the ``Repository`` URL in the
    installed distribution's metadata (``[project.urls]`` of ``pyproject.toml``).
    """
    return os.environ.get("PIPEYARD_COMMUNITY_URL") or None


def hub_endpoint() -> str | None:
    """The Hub base URL from ``HF_ENDPOINT``, or None for huggingface_hub's default."""
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def hub_cache_dir() -> Path:
    """Where Hub downloads are cached (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    value = os.environ.get("HF_HUB_CACHE")
    if value:
        return Path(value).expanduser()
    home = os.environ.get("HF_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface"
    return base / "hub"


def hub_token() -> str | None:
    """The Hub token from ``HF_TOKEN`` when the caller passes none."""
    return os.environ.get("HF_TOKEN") or None


def environment_proxy(scheme: str, host: str) -> str | None:
    """The proxy URL for ``scheme://host`` from ``<SCHEME>_PROXY`` / ``ALL_PROXY``, None for
    none or when ``NO_PROXY`` lists the host."""
    import urllib.request  # not at import: it pulls in http.client and ssl

    if urllib.request.proxy_bypass_environment(host):
        return None
    found = urllib.request.getproxies_environment()
    return found.get(scheme) or found.get("all")
