"""``deprecate``: warn about a deprecated name and hand back the values passed under it.

It follows diffusers' calling conventions, so pipelines written for diffusers keep working:

* ``deprecate(name, removal_version, message)`` or several such triples as tuples;
* ``take_from=kwargs`` (a dict): each deprecated key found is popped and its value returned;
  keys left over afterwards are an :class:`~pipeyard.errors.UnexpectedKeywordError`;
* ``take_from=obj`` (any object): the deprecated attribute's value is returned;
* ``standard_warn=False``: the message is warned alone, without the standard first sentence.

With ``take_from`` given, nothing is warned about a name that was not used. Removal versions
are diffusers' versions (that is what diffusers-written code names): a call whose version has
been reached by :data:`DIFFUSERS_API_VERSION` is refused, as diffusers refuses it.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from packaging.version import Version

from ..errors import DeprecationExpiredError, PipeyardDeprecationWarning, UnexpectedKeywordError

#: The diffusers release whose API pipeyard's diffusers surface follows.
DIFFUSERS_API_VERSION = "0.42.1"


def deprecate(
    *args: Any,
    take_from: dict[str, Any] | Any | None = None,
    standard_warn: bool = True,
    stacklevel: int = 2,
) -> Any:
    """Warn (:class:`~pipeyard.errors.PipeyardDeprecationWarning`) for each deprecated triple.

    Args:
        *args: one ``(name, removal_version, message)`` triple given flat, or several as tuples.
        take_from: the caller's ``**kwargs`` dict, or an object, to take deprecated values from.
        standard_warn: prefix the message with "`name` is deprecated and will be removed in ...".
        stacklevel: passed to :func:`warnings.warn` (2: the caller of the deprecated function).

    Returns:
        None when no value was taken, the value when one was, else a tuple of the values.

    Raises:
        DeprecationExpiredError: a removal version at or below :data:`DIFFUSERS_API_VERSION`.
        UnexpectedKeywordError: ``take_from`` is a dict still holding keys once the deprecated
            ones are taken out (the caller was given keywords it does not know).

    Example::

        def __call__(self, prompt, **kwargs):
            callback = deprecate("callback", "1.0.0", "Use `callback_on_step_end`.", take_from=kwargs)
    """
    triples = args if args and isinstance(args[0], tuple) else (args,)
    values: list[Any] = []
    for attribute, removal_version, message in triples:
        _check_not_expired(attribute, removal_version)
        found, value, what = _take(take_from, attribute)
        if found:
            values.append(value)
        if not found and take_from is not None:
            continue
        lead = f"{what} is deprecated and will be removed in version {removal_version}. " if standard_warn else ""
        warnings.warn(lead + message, PipeyardDeprecationWarning, stacklevel=stacklevel)
    if isinstance(take_from, dict) and take_from:
        _refuse_leftovers(take_from)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _check_not_expired(attribute: str, removal_version: str) -> None:
    current = Version(Version(DIFFUSERS_API_VERSION).base_version)
    if current >= Version(removal_version):
        raise DeprecationExpiredError(attribute, removal_version, DIFFUSERS_API_VERSION)


def _take(source: Any, attribute: str) -> tuple[bool, Any, str]:
    """``(found, value, how the warning names it)`` for ``attribute`` in ``source``."""
    if isinstance(source, dict):
        if attribute in source:
            return True, source.pop(attribute), f"The `{attribute}` argument"
        return False, None, ""
    if source is not None and hasattr(source, attribute):
        return True, getattr(source, attribute), f"The `{attribute}` attribute"
    return False, None, f"`{attribute}`"


def _refuse_leftovers(kwargs: dict[str, Any]) -> None:
    """Name the function that called ``deprecate`` and the keywords it did not expect."""
    frame = inspect.currentframe()
    caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
    if caller is None:
        raise UnexpectedKeywordError("<unknown>", "<unknown>", 0, list(kwargs))
    code = caller.f_code
    raise UnexpectedKeywordError(code.co_name, code.co_filename, caller.f_lineno, list(kwargs))
