"""Every environment variable pipeyard reads, and the defaults derived from them.

Each value is read at call time (``constants.pipeyard_home()``), never cached at import, so
tests and long-running processes can change the environment and be obeyed at once.

=====================================  ==================================================
variable                               meaning
=====================================  ==================================================
``PIPEYARD_HOME``                      root of pipeyard's own files (module cache, trust
                                       store, resolution records); default
                                       ``~/.cache/pipeyard``
``PIPEYARD_OFFLINE``                   on: make no network request at all
``HF_HUB_OFFLINE``                     honoured like ``PIPEYARD_OFFLINE``
``PIPEYARD_TIMEOUT``                   seconds before any network request gives up (10)
``PIPEYARD_DISABLE_REMOTE_CODE``       on: refuse every custom pipeline but bundled ones
``PIPEYARD_DISABLE_PLUGIN_AUTOLOAD``   on: do not discover plugins through entry points
``PIPEYARD_COMMUNITY_URL``             URL template of community files at a revision,
                                       with ``{revision}`` and ``{name}`` fields
``PIPEYARD_DIFFUSERS_MIRROR``          the Hub dataset holding diffusers' community
                                       pipelines (default
                                       ``diffusers/community-pipelines-mirror``); ``off``
                                       (or ``0 false no``): never look names up there
``PIPEYARD_VERIFY_HUB_FILES``          ``always``: hash every Hub-cache file on every load
                                       (default ``once``: when it arrives or its stat
                                       changes)
``HF_ENDPOINT``                        the Hub's base URL (a mirror, or a test server)
``HF_HOME`` / ``HF_HUB_CACHE``         where Hub downloads are cached
``HF_TOKEN``                           the Hub token used when none is passed (read by
                                       huggingface_hub itself)
``HTTP_PROXY`` / ``HTTPS_PROXY`` /     proxies of Hub requests made without ``proxies=``,
``ALL_PROXY`` / ``NO_PROXY``           and the hosts reached directly (any case)
=====================================  ==================================================

Boolean flags are parsed strictly by :func:`flag`: unset or empty is off, ``1 true yes on``
are on, ``0 false no off`` are off (any case, surrounding spaces ignored); anything else
raises :class:`~pipeyard.errors.EnvironmentVariableError` naming the variable, the value and
these spellings. A typo never silently means "off": ``PIPEYARD_DISABLE_REMOTE_CODE=ture``
must not run remote code, and ``PIPEYARD_OFFLINE=maybe`` must not go online.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Spellings of boolean variables (case-insensitive); unset or empty is off.
TRUE_SPELLINGS = ("1", "true", "yes", "on")
FALSE_SPELLINGS = ("0", "false", "no", "off")

#: Entry-point group of distributions registering pipelines (``name = "module:Class"``).
PIPELINE_ENTRY_POINT_GROUP = "pipeyard.pipelines"
#: Entry-point group of plugins (pluggy objects implementing :mod:`pipeyard.hookspecs`).
PLUGIN_ENTRY_POINT_GROUP = "pipeyard"

#: Seconds a network request may take before it fails, when ``PIPEYARD_TIMEOUT`` is unset.
DEFAULT_TIMEOUT = 10.0

#: File names shared with diffusers-format repositories.
MODEL_INDEX_NAME = "model_index.json"
CONFIG_NAME = "config.json"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.bin"
SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def flag(name: str) -> bool:
    """A boolean variable, parsed strictly (see the module docstring).

    Raises:
        EnvironmentVariableError: the value is none of the accepted spellings.
    """
    value = os.environ.get(name, "")
    text = value.strip().lower()
    if text in TRUE_SPELLINGS:
        return True
    if not text or text in FALSE_SPELLINGS:
        return False
    from .errors import EnvironmentVariableError

    accepted = ", ".join(TRUE_SPELLINGS) + " (on) or " + ", ".join(FALSE_SPELLINGS) + " (off)"
    raise EnvironmentVariableError(name, value, accepted)


def pipeyard_home() -> Path:
    """Root folder of pipeyard's files (``PIPEYARD_HOME``, default ``~/.cache/pipeyard``)."""
    value = os.environ.get("PIPEYARD_HOME")
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "pipeyard"


def is_offline() -> bool:
    """True when ``PIPEYARD_OFFLINE`` or ``HF_HUB_OFFLINE`` asks for no network at all."""
    pipeyard_offline, hub_offline = flag("PIPEYARD_OFFLINE"), flag("HF_HUB_OFFLINE")  # both parsed
    return pipeyard_offline or hub_offline


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


def verify_hub_files_always() -> bool:
    """True when ``PIPEYARD_VERIFY_HUB_FILES=always``: hash Hub files on every load, not once.

    Raises:
        EnvironmentVariableError: a value other than ``once`` or ``always`` (or empty).
    """
    value = os.environ.get("PIPEYARD_VERIFY_HUB_FILES", "")
    text = value.strip().lower()
    if text in ("", "once"):
        return False
    if text == "always":
        return True
    from .errors import EnvironmentVariableError

    raise EnvironmentVariableError("PIPEYARD_VERIFY_HUB_FILES", value, "'once' (the default) or 'always'")


def remote_code_disabled() -> bool:
    """True when ``PIPEYARD_DISABLE_REMOTE_CODE`` refuses all but bundled custom pipelines."""
    return flag("PIPEYARD_DISABLE_REMOTE_CODE")


def plugin_autoload_disabled() -> bool:
    """True when ``PIPEYARD_DISABLE_PLUGIN_AUTOLOAD`` turns entry-point plugin discovery off."""
    return flag("PIPEYARD_DISABLE_PLUGIN_AUTOLOAD")


def community_url_template() -> str | None:
    """URL template for community files at a revision (``PIPEYARD_COMMUNITY_URL``).

    None when unset: the host then derives the template from the ``Repository`` URL in the
    installed distribution's metadata (``[project.urls]`` of ``pyproject.toml``).
    """
    return os.environ.get("PIPEYARD_COMMUNITY_URL") or None


#: diffusers' community mirror: a Hub dataset with one folder per diffusers release.
DEFAULT_DIFFUSERS_MIRROR = "diffusers/community-pipelines-mirror"


def diffusers_mirror_repo() -> str | None:
    """The dataset repo id of diffusers' community mirror (``PIPEYARD_DIFFUSERS_MIRROR``).

    Unset or empty: :data:`DEFAULT_DIFFUSERS_MIRROR`; an off spelling (``off``, ``0``, ``false``,
    ``no``): None, the mirror is never asked.

    Raises:
        EnvironmentVariableError: neither an ``owner/name`` repo id nor an off spelling.
    """
    import re

    value = os.environ.get("PIPEYARD_DIFFUSERS_MIRROR", "")
    text = value.strip()
    if not text:
        return DEFAULT_DIFFUSERS_MIRROR
    if text.lower() in FALSE_SPELLINGS:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", text) or ".." in text:
        from .errors import EnvironmentVariableError

        raise EnvironmentVariableError(
            "PIPEYARD_DIFFUSERS_MIRROR", value,
            "a Hub dataset repo id 'owner/name', or off (" + ", ".join(FALSE_SPELLINGS) + ")",
        )
    return text


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



def environment_proxy(scheme: str, host: str) -> str | None:
    """The proxy URL for ``scheme://host`` from ``<SCHEME>_PROXY`` / ``ALL_PROXY``, None for
    none or when ``NO_PROXY`` lists the host."""
    import urllib.request  # not at import: it pulls in http.client and ssl

    if urllib.request.proxy_bypass_environment(host):
        return None
    found = urllib.request.getproxies_environment()
    return found.get(scheme) or found.get("all")
