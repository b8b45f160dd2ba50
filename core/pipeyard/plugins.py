"""Plugin wiring: one pluggy manager, entry-point discovery, register and block.

Plugins are found through the entry-point group ``pipeyard`` of installed distributions
(importlib-metadata) the first time a hook is needed, unless
``PIPEYARD_DISABLE_PLUGIN_AUTOLOAD=1``. A plugin that fails to import or to register is
skipped with one :class:`~pipeyard.errors.PipeyardWarning` naming it; the others still load.

Example::

    from pipeyard import plugins

    class CompileOnLoad:
        @plugins.hookimpl
        def pipeyard_pipeline_loaded(self, pipeline):
            pipeline.unet = torch.compile(pipeline.unet)

    plugins.register(CompileOnLoad(), name="compile-on-load")
    plugins.block("some-installed-plugin")   # never load it, now or from entry points
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pluggy

from . import constants, errors, hookspecs

hookimpl = pluggy.HookimplMarker("pipeyard")

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_autoloaded = False


def _bare_manager() -> pluggy.PluginManager:
    """The process-wide manager, created if needed, without loading entry points."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = pluggy.PluginManager("pipeyard")
            _manager.add_hookspecs(hookspecs)
        return _manager


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with entry-point plugins loaded on first use."""
    global _autoloaded
    with _lock:
        pm = _bare_manager()
        if not _autoloaded:
            _autoloaded = True
            if not constants.plugin_autoload_disabled():
                _load_entry_points(pm)
        return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    import importlib_metadata

    for entry_point in importlib_metadata.entry_points(group=constants.PLUGIN_ENTRY_POINT_GROUP):
        if pm.is_blocked(entry_point.name) or pm.has_plugin(entry_point.name):
            continue
        dist = getattr(entry_point.dist, "name", "?")
        try:
            pm.register(entry_point.load(), name=entry_point.name)
        except Exception as exc:  # one broken plugin must not take the others down
            warnings.warn(
                f"pipeyard plugin {entry_point.name!r} ({entry_point.value}, from distribution "
                f"{dist!r}) was skipped: {type(exc).__name__}: {exc}",
                errors.PipeyardWarning,
                stacklevel=3,
            )


def register(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object; returns its name.

    Raises:
        PluginError: pluggy refused it (a hook argument not in the spec, a duplicate name, or
            a blocked name); the message names the plugin and the reason.
    """
    pm = manager()
    try:
        registered = pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise errors.PluginError(f"plugin {name or plugin!r} was refused: {exc}") from exc
    if registered is None:
        raise errors.PluginError(f"plugin {name!r} is blocked; call plugins.unblock({name!r}) first")
    return registered


def unregister(name: str) -> None:
    """Remove a registered plugin by name (no error if it is not registered)."""
    pm = manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin, name=name)


def block(name: str) -> None:
    """Unregister ``name`` if present and refuse it from now on (entry points included).

    Blocking does not trigger discovery, so a plugin blocked before first use never loads.
    """
    _bare_manager().set_blocked(name)


def unblock(name: str) -> None:
    """Allow a blocked name again (pluggy >= 1.5)."""
    _bare_manager().unblock(name)


def list_plugins() -> list[str]:
    """Names of the registered plugins, sorted."""
    return sorted(name for name, plugin in manager().list_name_plugin() if plugin is not None)


def reset() -> None:
    """Forget every plugin and rediscover entry points on next use (for tests)."""
    global _manager, _autoloaded
    with _lock:
        _manager = None
        _autoloaded = False


# ---------------------------------------------------------------------- hook calls


def resolve_pipeline(name: str, revision: str | None) -> Any:
    """A plugin's answer for a ``custom_pipeline`` name, or None."""
    return manager().hook.pipeyard_resolve_pipeline(name=name, revision=revision)


def resolve_component_class(library: str, class_name: str) -> type | None:
    """A plugin's class for a model_index entry, or None."""
    return manager().hook.pipeyard_resolve_component_class(library=library, class_name=class_name)


def extra_libraries() -> list[str]:
    """Library names that plugins say they can resolve."""
    answers = manager().hook.pipeyard_component_libraries()
    return sorted({name for answer in answers for name in (answer or ())})


def pipeline_loaded(pipeline: Any) -> None:
    """Tell plugins a pipeline was built."""
    manager().hook.pipeyard_pipeline_loaded(pipeline=pipeline)
