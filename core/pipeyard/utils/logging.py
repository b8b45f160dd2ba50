"""``logging.get_logger(__name__)`` and the verbosity switches diffusers-written pipelines call.

Loggers are the standard library's, wrapped in :class:`PipelineLogger` so that the spellings
such files use all work: ``warning``, ``info``, ``debug``, ``error``, ``warn`` (without the
standard library's own DeprecationWarning for that name) and ``warning_once``. Verbosity applies
to the ``pipeyard`` logger, the parent of every logger named ``pipeyard.*``.

Example::

    from pipeyard.utils import logging

    logger = logging.get_logger(__name__)
    logger.warning("`height` is not a multiple of 8; rounding down")
    logging.set_verbosity_error()
"""

from __future__ import annotations

import logging as _stdlib_logging
from typing import Any

CRITICAL = _stdlib_logging.CRITICAL
FATAL = _stdlib_logging.FATAL
ERROR = _stdlib_logging.ERROR
WARNING = _stdlib_logging.WARNING
WARN = _stdlib_logging.WARNING
INFO = _stdlib_logging.INFO
DEBUG = _stdlib_logging.DEBUG
NOTSET = _stdlib_logging.NOTSET

#: The logger verbosity applies to.
LIBRARY_LOGGER_NAME = "pipeyard"


class PipelineLogger(_stdlib_logging.LoggerAdapter):  # type: ignore[type-arg]
    """A standard logger with diffusers' extra spellings; anything else goes to the logger."""

    def __init__(self, logger: _stdlib_logging.Logger) -> None:
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs  # no extra fields: messages read exactly as logged

    def warn(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """The old spelling of :meth:`warning`."""
        self.warning(msg, *args, **kwargs)

    def warning_once(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """:meth:`warning`, but each distinct message only once per process."""
        self._log_once(WARNING, msg, args, kwargs)

    def info_once(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """:meth:`info`, but each distinct message only once per process."""
        self._log_once(INFO, msg, args, kwargs)

    def _log_once(self, level: int, msg: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        key = (self.logger.name, level, str(msg), repr(args))
        if key in _LOGGED_ONCE:
            return
        _LOGGED_ONCE.add(key)
        self.log(level, msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)


#: (logger, level, message, arguments) already logged by a ``*_once`` method.
_LOGGED_ONCE: set[tuple[str, int, str, str]] = set()


def get_logger(name: str | None = None) -> PipelineLogger:
    """The logger called ``name`` (the ``pipeyard`` logger when None), wrapped."""
    return PipelineLogger(_stdlib_logging.getLogger(name or LIBRARY_LOGGER_NAME))


def get_verbosity() -> int:
    """The effective level of the ``pipeyard`` logger."""
    return _stdlib_logging.getLogger(LIBRARY_LOGGER_NAME).getEffectiveLevel()


def set_verbosity(verbosity: int) -> None:
    """Set the level of the ``pipeyard`` logger (``logging.INFO``, ``logging.ERROR``, ...)."""
    _stdlib_logging.getLogger(LIBRARY_LOGGER_NAME).setLevel(verbosity)


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)
