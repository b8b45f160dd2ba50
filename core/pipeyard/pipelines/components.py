"""Pipeline components: which classes model_index.json names, which a pipeline expects, and
how each is loaded or injected.

A diffusers-format ``model_index.json`` names each component as ``[library, ClassName]``::

    {"_class_name": "StableDiffusionPipeline",
     "unet": ["diffusers", "UNet2DConditionModel"],
     "text_encoder": ["transformers", "CLIPTextModel"],
     "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
     "requires_safety_checker": true}

:func:`resolve_component_class` is the single place that turns such a pair into a class:
installed plugins first, then pipeyard's own classes (for ``pipeyard``, ``diffusers`` and the
diffusers pipeline modules that hold model classes), then transformers.

A pair whose library is none of those may name a module of the repository itself
(``"unet": ["my_unet", "MyUNet"]`` with ``unet/my_unet.py`` or ``my_unet.py``):
:func:`component_class` then asks the custom-pipeline host, which verifies, trust-gates and
imports it (:func:`pipeyard.host.load_component_class`). A repository file never shadows a
library pipeyard loads itself. Saving such a component copies its module beside its weights
(:func:`pipeyard.host.provenance.export_component_code`).

:func:`plan_components` applies the injection rules for a pipeline class: for each
``__init__`` parameter the caller's keyword wins, else the model_index entry is loaded from its
subfolder, else the parameter's default. Every error (unknown keywords, missing components,
wrong types) is raised before anything is loaded.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..configuration import init_signature

logger = logging.getLogger(__name__)

#: diffusers pipeline modules whose model_index entries name classes pipeyard provides.
DIFFUSERS_PIPELINE_MODULES = frozenset(
    {"stable_diffusion", "stable_diffusion_safe", "ddpm", "ddim", "pndm", "latent_diffusion"}
)
#: transformers classes that were renamed; old repos still name the old class.
TRANSFORMERS_RENAMES = {"CLIPFeatureExtractor": "CLIPImageProcessor"}
#: Keywords of ``from_pretrained`` that are loading options, not components.
LOADING_OPTIONS = (
    "torch_dtype", "variant", "use_safetensors", "revision", "cache_dir", "local_files_only",
    "token", "proxies", "endpoint", "device", "low_cpu_mem_usage", "allow_pickle", "custom_pipeline",
    "custom_revision", "trust_remote_code",
)


def is_component_entry(value: Any) -> bool:
    """True for a model_index ``[library, ClassName]`` pair (``[None, None]`` included)."""
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(
        v is None or isinstance(v, str) for v in value
    )


def loadable_libraries() -> list[str]:
    """The library names a model_index entry may use, plugin-provided ones included."""
    from .. import plugins

    return sorted({"pipeyard", "diffusers", "transformers", *DIFFUSERS_PIPELINE_MODULES, *plugins.extra_libraries()})


def resolve_component_class(library: str, class_name: str, component: str = "?") -> type:
    """The class a model_index ``[library, ClassName]`` entry stands for.

    Raises:
        UnknownComponentClassError: nothing can load this pair; names the component and the
            loadable libraries.
    """
    from .. import plugins

    found = plugins.resolve_component_class(library, class_name)
    if found is not None:
        return found
    if library in ("pipeyard", "diffusers") or library in DIFFUSERS_PIPELINE_MODULES:
        found = _pipeyard_class(class_name)
    elif library == "transformers":
        found = _transformers_class(class_name)
    if found is None:
        raise errors.UnknownComponentClassError(component, library, class_name, loadable_libraries())
    return found


def component_class(
    component: str, library: str, class_name: str, repository: Any, *, trust_remote_code: bool = False
) -> type:
    """The class of a model_index entry of ``repository`` (a :class:`pipeyard.hub.FileSource`).

    Libraries pipeyard loads (:func:`resolve_component_class`) first; for any other library
    name, a module of the repository through the host (trust needed, see
    :func:`pipeyard.host.load_component_class`).

    Raises:
        UnknownComponentClassError: neither answers; names the files looked for.
        UntrustedCodeError: the repository's module is not trusted (names component and file).
    """
    try:
        return resolve_component_class(library, class_name, component)
    except errors.UnknownComponentClassError as unknown:
        if library in loadable_libraries():
            raise  # a known library's class: a repository file never stands in for it
        from .. import host

        found = host.load_component_class(component, (library, class_name), repository, trust_remote_code=trust_remote_code)
        if found is None:
            raise errors.UnknownComponentClassError(
                component, library, class_name, unknown.loadable,
                looked_for=host.resolve.component_module_files(component, library),
            ) from None
        return found


def _pipeyard_class(class_name: str) -> type | None:
    """A class of :data:`pipeyard.names.LOADABLE_COMPONENTS`; None for any other name."""
    import pipeyard

    from ..names import LOADABLE_COMPONENTS

    return getattr(pipeyard, class_name) if class_name in LOADABLE_COMPONENTS else None


def _transformers_class(class_name: str) -> type | None:
    import transformers

    if class_name.startswith("_"):
        return None
    value = getattr(transformers, TRANSFORMERS_RENAMES.get(class_name, class_name), None)
    return value if isinstance(value, type) and hasattr(value, "from_pretrained") else None


def component_entry(obj: Any) -> list[str | None]:
    """The ``[library, ClassName]`` pair that records ``obj`` in model_index.json.

    A class the host loaded from a repository's module is recorded as ``[module, ClassName]``
    (saving copies the module beside the component's weights).
    """
    if obj is None:
        return [None, None]
    cls = type(obj)
    if "__pipeyard_provenance__" in cls.__dict__:
        from ..host.provenance import component_module_name

        module = component_module_name(cls)
        if module is not None:
            return [module, cls.__name__]
    return [cls.__module__.split(".")[0], cls.__name__]


# ---------------------------------------------------------------------- expected components


def expected_components(pipeline_cls: type) -> dict[str, inspect.Parameter]:
    """The named ``__init__`` parameters of a pipeline class: its components and options.

    Raises:
        ComponentError: the ``__init__`` takes ``*args`` (components must be named).
    """
    params = list(init_signature(pipeline_cls).parameters.values())[1:]
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise errors.ComponentError(
                f"{pipeline_cls.__name__}.__init__ takes *{p.name}: pipeline components must be named "
                f"parameters (e.g. def __init__(self, unet, scheduler)) so they can be loaded by name"
            )
    return {p.name: p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}


def optional_component_names(pipeline_cls: type) -> set[str]:
    """Components that may be missing: ``_optional_components`` and parameters defaulting to None."""
    params = expected_components(pipeline_cls)
    names = set(getattr(pipeline_cls, "_optional_components", ()))
    return names | {n for n, p in params.items() if p.default is None}


def _annotation_type(pipeline_cls: type, name: str) -> type | None:
    """The class a parameter is annotated with, when it resolves to one (``Optional[X]`` -> X).

    String annotations (``from __future__ import annotations``) are evaluated in the module
    that defines ``__init__``; one that does not resolve there is not checked.
    """
    init = inspect.unwrap(pipeline_cls.__init__)
    annotation = inspect.signature(init).parameters[name].annotation
    if isinstance(annotation, str):
        module = sys.modules.get(init.__module__)
        try:
            annotation = eval(annotation, dict(vars(module)) if module else {})  # noqa: S307
        except Exception:
            return None
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_args(annotation) else [annotation]
    if len(args) == 1 and isinstance(args[0], type) and args[0] not in (inspect.Parameter.empty, object, typing.Any):
        return args[0]
    return None


# ---------------------------------------------------------------------- the plan


@dataclass
class LoadOptions:
    """How components that are *loaded* (not passed in) are read."""

    torch_dtype: Any = None
    variant: str | None = None
    use_safetensors: bool | None = None
    device: Any = None
    low_cpu_mem_usage: bool = True
    allow_pickle: bool = False  # load pickle (.bin) weights, with torch.load(weights_only=True)

    def dtype_for(self, component: str) -> Any:
        """One dtype for all, or a per-component mapping with a ``"default"`` key."""
        if isinstance(self.torch_dtype, Mapping):
            return self.torch_dtype.get(component, self.torch_dtype.get("default"))
        return self.torch_dtype


@dataclass
class ComponentPlan:
    """What ``from_pretrained`` will do for each ``__init__`` parameter of a pipeline class."""

    pipeline_cls: type
    passed: dict[str, Any] = field(default_factory=dict)
    to_load: dict[str, tuple[str, str]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def plan_components(pipeline_cls: type, model_index: Mapping[str, Any], passed: Mapping[str, Any]) -> ComponentPlan:
    """Decide, for every parameter of ``pipeline_cls``, where its value comes from.

    Raises:
        UnexpectedArgumentError: a keyword that is neither a parameter nor a loading option.
        ComponentTypeError: a passed object contradicting the parameter's annotation.
        MissingComponentError: required components nobody supplies, all listed at once.
    """
    expected = expected_components(pipeline_cls)
    _reject_unknown(pipeline_cls, expected, passed)
    optional = optional_component_names(pipeline_cls)
    plan = ComponentPlan(pipeline_cls)
    missing: list[tuple[str, str]] = []
    for name, param in expected.items():
        entry = model_index.get(name)
        if name in passed:
            _check_type(pipeline_cls, name, passed[name])
            if is_component_entry(entry) and entry[0] is not None:
                _check_family(name, entry, passed[name])
            plan.passed[name] = passed[name]
        elif is_component_entry(entry) and entry[0] is not None:
            plan.to_load[name] = (entry[0], entry[1])
        elif name in model_index and not is_component_entry(entry):
            plan.values[name] = entry  # a plain config value such as requires_safety_checker
        elif param.default is not inspect.Parameter.empty:
            plan.values[name] = param.default
        elif name in optional or (is_component_entry(entry) and entry[0] is None):
            plan.values[name] = None
        else:
            missing.append((name, _describe_expected(pipeline_cls, name, entry)))
    if missing:
        raise errors.MissingComponentError(pipeline_cls.__name__, missing)
    return plan


def _reject_unknown(pipeline_cls: type, expected: Mapping[str, Any], passed: Mapping[str, Any]) -> None:
    unknown = [k for k in passed if k not in expected]
    if not unknown:
        return
    choices = [*expected, *LOADING_OPTIONS]
    suggestions = {k: difflib.get_close_matches(k, choices, n=2, cutoff=0.6) for k in unknown}
    raise errors.UnexpectedArgumentError(pipeline_cls.__name__, unknown, suggestions)


def _check_type(pipeline_cls: type, name: str, value: Any) -> None:
    if value is None:
        return
    expected = _annotation_type(pipeline_cls, name)
    if expected is not None and not isinstance(value, expected):
        raise errors.ComponentTypeError(name, expected.__name__, type(value).__name__)


def component_family(cls: type) -> type:
    """The broadest class a component may be replaced by: schedulers by any scheduler, a
    transformers model by any transformers model of the same base kind, a model by its class."""
    from ..schedulers.common import SchedulerMixin

    if issubclass(cls, SchedulerMixin):
        return SchedulerMixin
    if cls.__module__.startswith("transformers"):
        import transformers

        for base in (transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase,
                     transformers.ImageProcessingMixin, transformers.FeatureExtractionMixin):
            if issubclass(cls, base):
                return base
    return cls


def _check_family(name: str, entry: Any, value: Any) -> None:
    """A passed object must belong to the family of the class model_index.json names."""
    if value is None:
        return
    try:
        named = resolve_component_class(entry[0], entry[1], name)
    except errors.UnknownComponentClassError:
        return  # the repository's entry cannot be loaded anyway: the object replaces it
    family = component_family(named)
    if not isinstance(value, family):
        raise errors.ComponentTypeError(
            name, f"{family.__name__} (model_index.json names {entry[1]})", type(value).__name__
        )


def _describe_expected(pipeline_cls: type, name: str, entry: Any) -> str:
    annotated = _annotation_type(pipeline_cls, name)
    if annotated is not None:
        return annotated.__name__
    if is_component_entry(entry) and entry[1]:
        return str(entry[1])
    raw = expected_components(pipeline_cls)[name].annotation
    if raw is not inspect.Parameter.empty:
        return raw if isinstance(raw, str) else getattr(raw, "__name__", str(raw))
    return "an object (no annotation)"
