"""The hooks a pipeyard plugin may implement.

A plugin is any object (usually a module) with functions named like the specs below and
marked with ``pipeyard.plugins.hookimpl``. Installed distributions expose plugins under the
entry-point group ``pipeyard``::

    [project.entry-points.pipeyard]
    my_plugin = "my_package.pipeyard_plugin"

Each spec's docstring is its contract. Arguments not named in a spec are refused when the
plugin registers (pluggy validates the signature), so a typo fails loudly and early.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("pipeyard")


@hookspec(firstresult=True)
def pipeyard_resolve_pipeline(name: str, revision: str | None) -> Any:
    """Resolve a ``custom_pipeline`` name before pipeyard's own sources are tried.

    Args:
        name: the ``custom_pipeline`` value as the caller gave it.
        revision: the ``custom_revision`` value, or None.

    Returns:
        None to let other plugins and pipeyard resolve it, or a local path (``str`` or
        ``pathlib.Path``) of a pipeline ``.py`` file or a folder holding ``pipeline.py``.
        The file still goes through verification and the trust gate, where it counts as
        remote code: it runs only if its sha256 is in the user's trust store or the caller
        passed ``trust_remote_code=True``.

    The first non-None answer wins. Must not import or execute the pipeline file.
    """


@hookspec(firstresult=True)
def pipeyard_resolve_component_class(library: str, class_name: str) -> type | None:
    """Provide the class for a model_index.json entry ``[library, class_name]``.

    Called before pipeyard's own lookup, so a plugin can add libraries (``"my_lib"``) or
    override a class. Return the class (it must have a ``from_pretrained(folder)``
    classmethod, or be a pipeyard ``ModelMixin`` / ``ConfigMixin``), or None to pass.
    The first non-None answer wins.
    """


@hookspec
def pipeyard_component_libraries() -> list[str]:
    """Library names this plugin can resolve, listed in error messages as loadable.

    Return a list of strings (may be empty). Every plugin's answer is used.
    """


@hookspec
def pipeyard_pipeline_loaded(pipeline: Any) -> None:
    """Notification: ``from_pretrained`` has built ``pipeline`` (to log, compile, patch...).

    Called once per loaded pipeline, after every component is in place. The return value is
    ignored. An exception raised here propagates to the caller of ``from_pretrained``.
    """
