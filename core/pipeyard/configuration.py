"""Config objects: the ``__init__`` arguments of a model, scheduler or pipeline, frozen.

A class opts in by deriving from :class:`ConfigMixin` and decorating ``__init__`` with
:func:`register_to_config`. Each instance then has ``obj.config``, a :class:`FrozenConfig`
holding every ``__init__`` argument (defaults included) plus any *hidden* keys it was built
with: keys another class of the same family understands (a DPM-Solver option in a DDIM config)
or private ``_`` keys (``_name_or_path``). Hidden keys are not passed to ``__init__`` but are
kept and saved again, so a config survives ``A.from_config(B.from_config(cfg).config)``.

Config files use the names and layout of diffusers-format repositories: ``config.json`` or
``scheduler_config.json`` with ``_class_name`` and a version key (we write
``_pipeyard_version`` and read files that carry ``_diffusers_version``).

Example::

    class Ramp(ConfigMixin):
        config_name = "config.json"

        @register_to_config
        def __init__(self, start: float = 0.0, stop: float = 1.0):
            ...

    ramp = Ramp(stop=2.0)
    ramp.config.stop            # 2.0
    Ramp.from_config(ramp.config, start=1.0).config  # {'start': 1.0, 'stop': 2.0}
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from . import errors
from .fileio import read_json_file, write_json_atomic

logger = logging.getLogger(__name__)

#: Keys a config file carries about itself, never passed to ``__init__`` nor kept in memory.
FILE_METADATA_KEYS = frozenset({"_class_name", "_diffusers_version", "_pipeyard_version"})

#: In-memory keys that describe where an object came from, not what it is: never saved
#: (``_pipeyard_source`` is rewritten by the save of a custom pipeline from its class).
_NOT_SAVED = frozenset({"_name_or_path", "_pipeyard_source"})

T = TypeVar("T", bound="ConfigMixin")


class FrozenConfig(dict):
    """A read-only ``dict`` whose keys can also be read as attributes.

    It is a real ``dict`` (``json.dumps``, ``dict(cfg)``, ``{**cfg}`` and ``isinstance(cfg, dict)``
    work), but every way of changing it in place raises :class:`~pipeyard.errors.FrozenConfigError`:
    item or attribute assignment, ``del``, ``pop``, ``popitem``, ``setdefault``, ``update``,
    ``clear`` and ``|=``. To change a value, build a new object with ``from_config(cfg, key=value)``.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise errors.FrozenConfigError(f"setting config.{name}")

    def __delattr__(self, name: str) -> None:
        raise errors.FrozenConfigError(f"deleting config.{name}")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise errors.FrozenConfigError(f"setting config[{key!r}]")

    def __delitem__(self, key: Any) -> None:
        raise errors.FrozenConfigError(f"deleting config[{key!r}]")

    def __ior__(self, other: Any) -> FrozenConfig:
        raise errors.FrozenConfigError("config |= ...")

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise errors.FrozenConfigError("changing the config in place")

    pop = popitem = setdefault = update = clear = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        # dict subclasses pickle item by item through __setitem__, which is refused here.
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenConfig:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenConfig:
        import copy

        return type(self)({k: copy.deepcopy(v, memo) for k, v in self.items()})


class FrozenDict(FrozenConfig):
    """diffusers' name for a frozen config: build one from a mapping and install it as a config.

    Pipelines written for diffusers patch a component's config this way, and it works on every
    pipeyard :class:`ConfigMixin` (schedulers, models, pipelines)::

        new_config = dict(scheduler.config)
        new_config["steps_offset"] = 1
        scheduler._internal_dict = FrozenDict(new_config)
        scheduler.config.steps_offset   # 1

    It is a :class:`FrozenConfig`: attribute reads work and every in-place change raises
    :class:`~pipeyard.errors.FrozenConfigError`.
    """

    __slots__ = ()


def _jsonable(value: Any) -> Any:
    """Convert config values to what JSON can hold (tuples, numpy arrays, paths, dtypes)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and tensors
        return value.tolist()
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value).removeprefix("torch.")
    return value


def init_signature(cls: type) -> inspect.Signature:
    """The signature of ``cls.__init__`` as written, looking through :func:`register_to_config`."""
    init = inspect.unwrap(cls.__init__)
    return inspect.signature(init)


def init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Named ``__init__`` parameters of ``cls`` (no ``self``, ``*args``, ``**kwargs``)."""
    params = init_signature(cls).parameters
    return {
        name: p
        for name, p in list(params.items())[1:]
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def register_to_config(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a :class:`ConfigMixin` ``__init__`` so that its arguments become ``self.config``.

    Every named argument, with its default when not given, is recorded; names listed in the
    class's ``ignore_for_config`` and arguments starting with ``_`` are not.
    """

    @functools.wraps(init)
    def wrapper(self: ConfigMixin, *args: Any, **kwargs: Any) -> None:
        if not isinstance(self, ConfigMixin):
            raise TypeError(f"@register_to_config needs a ConfigMixin, {type(self).__name__} is not one")
        bound = inspect.signature(init).bind(self, *args, **kwargs)
        bound.apply_defaults()
        ignored = set(getattr(type(self), "ignore_for_config", ()))
        values: dict[str, Any] = {}
        for name, param in list(bound.signature.parameters.items())[1:]:
            if param.kind == inspect.Parameter.VAR_KEYWORD:
                continue  # extra keywords are the class's own business
            if param.kind == inspect.Parameter.VAR_POSITIONAL or name in ignored or name.startswith("_"):
                continue
            values[name] = bound.arguments[name]
        self.register_to_config(**values)
        init(self, *args, **kwargs)

    wrapper.__pipeyard_registers_config__ = True  # type: ignore[attr-defined]
    return wrapper


class ConfigMixin:
    """Gives a class a frozen ``config`` built from its ``__init__`` arguments, and config I/O.

    Class attributes:
        config_name: file name of the saved config (``config.json``, ``scheduler_config.json``,
            ``model_index.json``).
        ignore_for_config: ``__init__`` arguments not recorded in the config.
    """

    config_name: ClassVar[str] = "config.json"
    ignore_for_config: ClassVar[tuple[str, ...]] = ()

    _internal_dict: FrozenConfig

    # ------------------------------------------------------------------ the config itself

    @property
    def config(self) -> FrozenConfig:
        """The frozen config: ``__init__`` arguments plus hidden keys.

        Code that installs a new mapping as ``obj._internal_dict`` (diffusers' way of patching
        a config, usually with a :class:`FrozenDict`) is obeyed: the mapping becomes the config,
        frozen if it was not.
        """
        try:
            config = self.__dict__["_internal_dict"]
        except KeyError:
            raise AttributeError(self._no_config_message()) from None
        if not isinstance(config, FrozenConfig):
            config = FrozenConfig(config)
            object.__setattr__(self, "_internal_dict", config)
        return config

    def _no_config_message(self) -> str:
        return (
            f"{type(self).__name__} has no config yet: decorate its __init__ with "
            f"@register_to_config or call self.register_to_config(...)"
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. Reading a config key as an attribute
        # (``scheduler.num_train_timesteps``) works, with a deprecation warning, as in diffusers.
        if name == "config":
            raise AttributeError(self._no_config_message())
        config = self.__dict__.get("_internal_dict")
        if name.startswith("__") or config is None or name not in config:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        from .utils.deprecation import deprecate

        deprecate(
            "direct config name access", "1.0.0",
            f"Reading config key {name!r} as an attribute of {type(self).__name__} is deprecated: "
            f"read it from the config instead (obj.config.{name}).",
            standard_warn=False, stacklevel=3,
        )
        return config[name]

    def register_to_config(self, **values: Any) -> None:
        """Add or replace config entries; the config stays frozen for everybody else."""
        current = self.__dict__.get("_internal_dict") or {}
        object.__setattr__(self, "_internal_dict", FrozenConfig({**current, **values}))

    # ------------------------------------------------------------------ building from a config

    @classmethod
    def from_config(
        cls: type[T],
        config: Mapping[str, Any] | ConfigMixin | None = None,
        return_unused_kwargs: bool = False,
        **overrides: Any,
    ) -> T:
        """Build an instance from a config mapping (or another object's config) plus overrides.

        Keys ``__init__`` takes are passed to it; other keys are kept as hidden config; file
        metadata (``_class_name``, ``_diffusers_version``, ``_pipeyard_version``) is dropped.
        With ``return_unused_kwargs=True`` (diffusers' spelling), returns ``(obj, hidden)``:
        the object and the keys ``__init__`` did not take.

        Raises:
            MissingConfigKeyError: a required ``__init__`` argument is in neither.
            UnexpectedConfigKeyError: an override is not an ``__init__`` argument.
        """
        if isinstance(config, ConfigMixin):
            config = config.config
        config = dict(config or {})
        params = init_parameters(cls)
        unknown = [k for k in overrides if k not in params]
        if unknown:
            raise errors.UnexpectedConfigKeyError(cls.__name__, unknown, params)
        merged = {k: v for k, v in {**config, **overrides}.items() if k not in FILE_METADATA_KEYS}
        init_kwargs = {k: v for k, v in merged.items() if k in params}
        hidden = {k: v for k, v in merged.items() if k not in params}
        missing = [
            name for name, p in params.items()
            if p.default is inspect.Parameter.empty and name not in init_kwargs
        ]
        if missing:
            raise errors.MissingConfigKeyError(cls.__name__, missing, config.get("_name_or_path"))
        obj = cls(**init_kwargs)
        if hidden:
            obj.register_to_config(**hidden)
        return (obj, hidden) if return_unused_kwargs else obj  # type: ignore[return-value]

    # ------------------------------------------------------------------ files

    @classmethod
    def load_config(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        proxies: str | Mapping[str, str] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Read ``cls.config_name`` from a local folder or a Hub repo (optionally a subfolder).

        Returns the raw mapping, metadata keys included. ``revision``, ``token``, ``cache_dir``,
        ``local_files_only``, ``proxies`` and ``endpoint`` say how the Hub is reached
        (:class:`~pipeyard.hub.HubOptions`).

        Raises:
            EntryNotFoundError: the folder or repo has no such file.
            ConfigFileError: the file is not a JSON object (names file, line and column), or
                exceeds the size and nesting limits of :mod:`pipeyard.fileio`.
            InvalidRepoIdError, InvalidSubfolderError, HubOptionError: before any request.
        """
        from . import hub

        options = hub.HubOptions(revision, token, cache_dir, local_files_only, proxies, endpoint)
        return cls._read_config_file(pretrained_model_name_or_path, subfolder, options)

    @classmethod
    def _read_config_file(
        cls, pretrained_model_name_or_path: str | os.PathLike[str], subfolder: str | None, options: Any
    ) -> dict[str, Any]:
        from . import hub

        path = hub.resolve_file(pretrained_model_name_or_path, cls.config_name, subfolder=subfolder, options=options)
        return read_json_file(path)

    def save_config(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write the config as ``save_directory/<config_name>``, atomically. Returns the path."""
        directory = Path(save_directory)
        if directory.is_file():
            raise errors.ConfigError(f"cannot save config into {directory}: it is a file, not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.config_name
        write_json_atomic(path, self.config_to_save())
        return path

    def config_to_save(self) -> dict[str, Any]:
        """The config as written to disk: ``_class_name``, ``_pipeyard_version``, then the keys."""
        from . import __version__

        data = {"_class_name": type(self).__name__, "_pipeyard_version": __version__}
        kept = {k: v for k, v in self.config.items() if k not in _NOT_SAVED}
        data.update(sorted(_jsonable(kept).items()))
        return data

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        proxies: str | Mapping[str, str] | None = None,
        endpoint: str | None = None,
        **overrides: Any,
    ) -> T:
        """Build an object from a saved config (e.g. a scheduler's ``scheduler_config.json``).

        ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``proxies`` and
        ``endpoint`` say how the Hub is reached (:class:`~pipeyard.hub.HubOptions`).
        """
        from . import hub

        options = hub.HubOptions(revision, token, cache_dir, local_files_only, proxies, endpoint)
        config = cls._read_config_file(pretrained_model_name_or_path, subfolder, options)
        where = os.path.join(os.fspath(pretrained_model_name_or_path), subfolder or "", cls.config_name)
        return cls.from_file_config(config, where, **overrides)

    @classmethod
    def from_file_config(cls: type[T], config: Mapping[str, Any], path: str, **overrides: Any) -> T:
        """:meth:`from_config` of a config read from ``path``: what its values break is typed.

        A config file is data from a stranger; a value that ``__init__`` fails on without a
        check of its own (a string where a number goes) is a :class:`ConfigBuildError`
        naming the file, instead of a bare ``TypeError`` from deep inside.

        Raises:
            ConfigBuildError: ``__init__`` raised something that is not a PipeyardError.
            MissingConfigKeyError, UnexpectedConfigKeyError: as :meth:`from_config`.
        """
        try:
            return cls.from_config(config, **overrides)
        except errors.PipeyardError:
            raise
        except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError, RuntimeError, MemoryError) as exc:
            raise errors.ConfigBuildError(cls.__name__, path, f"{type(exc).__name__}: {exc}") from exc

    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """Save what rebuilds this object (for a config-only object: its config)."""
        self.save_config(save_directory)
