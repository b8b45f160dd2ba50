"""DiffusionPipeline: a named set of components, saved and loaded in diffusers' layout.

A pipeline folder::

    model_index.json      {"_class_name": ..., "<component>": [library, ClassName], ...}
    unet/                 one subfolder per component, in that component's own format
    scheduler/
    ...

``from_pretrained`` reads model_index.json, picks the pipeline class (the class it is called
on; ``custom_pipeline``; or ``_class_name``), plans every component with
:func:`~pipeyard.pipelines.components.plan_components` (all errors before any loading), then
loads only the subfolders it needs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import constants, errors, fileio, hub
from ..configuration import ConfigMixin
from ..fileio import read_json_file, write_json_atomic
from . import components as comp

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    import torch

P = TypeVar("P", bound="DiffusionPipeline")
PathLike = str | os.PathLike[str]


class DiffusionPipeline(ConfigMixin):
    """Base class of every pipeline, built-in or custom.

    Subclasses take their components as named ``__init__`` parameters and call
    :meth:`register_modules` with them; ``__call__`` runs the pipeline.

    Example::

        pipe = DiffusionPipeline.from_pretrained("google/ddpm-cifar10-32")
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        image = pipe(num_inference_steps=50).images[0]
    """

    config_name = constants.MODEL_INDEX_NAME
    #: components that may be None / absent from a repository
    _optional_components: tuple[str, ...] = ()
    #: diffusers' CPU-offload order (``"text_encoder->unet->vae"``); informational in pipeyard
    model_cpu_offload_seq: str | None = None
    #: components diffusers' CPU offload leaves alone; not the execution device's witnesses
    _exclude_from_cpu_offload: tuple[str, ...] = ()

    # ------------------------------------------------------------------ components

    def register_modules(self, **modules: Any) -> None:
        """Record components as attributes and as ``[library, ClassName]`` config entries."""
        for name, module in modules.items():
            self.register_to_config(**{name: comp.component_entry(module)})
            object.__setattr__(self, name, module)

    def __setattr__(self, name: str, value: Any) -> None:
        # Reassigning a component (pipe.scheduler = other) keeps model_index.json in step.
        if name in self._component_names():
            self.register_to_config(**{name: comp.component_entry(value)})
        super().__setattr__(name, value)

    def _component_names(self) -> list[str]:
        config = self.__dict__.get("_internal_dict", {})
        return [k for k, v in config.items() if not k.startswith("_") and comp.is_component_entry(v)]

    @property
    def components(self) -> dict[str, Any]:
        """Components by name, as passed to ``__init__`` (``None`` for absent optional ones)."""
        return {name: _unwrap(getattr(self, name)) for name in self._component_names()}

    def _modules(self) -> Iterable[torch.nn.Module]:
        import torch  # the base class itself needs no torch: `import` stays light

        return (c for c in self.components.values() if isinstance(c, torch.nn.Module))

    # ------------------------------------------------------------------ devices and dtypes

    def to(self: P, *args: Any, **kwargs: Any) -> P:
        """Move every torch component: ``to("cuda")``, ``to(torch.float16)``, ``to(device, dtype)``."""
        for module in self._modules():
            module.to(*args, **kwargs)
        for graphed in self._graphed_components().values():
            graphed.clear()  # their graphs replay the old placement
        return self

    @property
    def device(self) -> torch.device:
        """Device of the first torch component (CPU when there is none)."""
        import torch

        for module in self._modules():
            for tensor in module.parameters():
                return tensor.device
        return torch.device("cpu")

    @property
    def _execution_device(self) -> torch.device:
        """Where ``__call__`` puts its tensors: the device of the first torch component that is
        not in ``_exclude_from_cpu_offload`` (pipeyard does no offloading, so this is
        :attr:`device` unless an excluded component sits elsewhere)."""
        import torch

        for name, module in self.components.items():
            if isinstance(module, torch.nn.Module) and name not in self._exclude_from_cpu_offload:
                for tensor in module.parameters():
                    return tensor.device
        return self.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the first torch component (float32 when there is none)."""
        import torch

        for module in self._modules():
            for tensor in module.parameters():
                if tensor.is_floating_point():
                    return tensor.dtype
        return torch.float32

    # ------------------------------------------------------------------ helpers for __call__

    def progress_bar(self, iterable: Iterable[Any] | None = None, total: int | None = None) -> Any:
        """A tqdm bar over ``iterable`` (or of ``total`` steps) honouring :meth:`set_progress_bar_config`."""
        from tqdm.auto import tqdm

        config = self.__dict__.get("_progress_bar_config", {})
        if iterable is None and total is None:
            raise ValueError("progress_bar needs an iterable or a total")
        return tqdm(iterable, total=total, **config) if iterable is not None else tqdm(total=total, **config)

    def maybe_free_model_hooks(self) -> None:
        """End-of-call cleanup that diffusers-written ``__call__`` bodies run.

        pipeyard installs no offload hooks, so only components' per-call caches are reset
        (a component with ``_reset_stateful_cache``)."""
        for component in self.components.values():
            reset = getattr(component, "_reset_stateful_cache", None)
            if callable(reset):
                reset()

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for every later progress bar, passed to tqdm (e.g. ``disable=True``, ``desc=``)."""
        object.__setattr__(self, "_progress_bar_config", dict(kwargs))

    @staticmethod
    def numpy_to_pil(images: np.ndarray) -> list[Any]:
        """``(batch, h, w, c)`` floats in [0, 1] -> a list of PIL images."""
        from PIL import Image

        if images.ndim == 3:
            images = images[None, ...]
        pixels = (images * 255).round().astype("uint8")
        if pixels.shape[-1] == 1:
            return [Image.fromarray(p.squeeze(-1), mode="L") for p in pixels]
        return [Image.fromarray(p) for p in pixels]

    def enable_attention_slicing(self, slice_size: str | int | None = "auto") -> None:
        """Compute attention in slices to lower peak memory (``"auto"``, ``"max"`` or an int)."""
        for component in self.components.values():
            if hasattr(component, "set_attention_slice"):
                component.set_attention_slice(slice_size)
        for graphed in self._graphed_components().values():
            graphed.clear()  # recapture with the new slicing

    def disable_attention_slicing(self) -> None:
        """Compute attention in one step again."""
        self.enable_attention_slicing(None)

    # ------------------------------------------------------------------ CUDA graphs

    def enable_cuda_graph(self, max_graphs: int = 4, *, compile: bool = False, component: str = "unet") -> None:
        """Replay ``component``'s forward from CUDA graphs, one per input shape and dtype.

        The first call at a new (batch, height, width, dtype) captures a graph, later calls
        replay it; at most ``max_graphs`` graphs are kept. ``compile=True`` captures
        ``torch.compile(unet)``. Without CUDA (or if capture fails) the model runs eagerly,
        with one :class:`~pipeyard.errors.PipeyardWarning` saying why. ``pipe.unet`` becomes a
        :class:`~pipeyard.cuda_graph.GraphedModule` that forwards every attribute to the real
        model; ``components``, ``save_pretrained`` and ``to`` still see the real model.

        Example::

            pipe.to("cuda", torch.float16)
            pipe.enable_cuda_graph()
            image = pipe("a red fox", num_inference_steps=20).images[0]
        """
        from ..cuda_graph import GraphedModule

        self.disable_cuda_graph(component)
        model = self.__dict__.get(component) if component in self._component_names() else None
        if model is None:
            raise errors.ComponentError(f"{type(self).__name__} has no {component!r} component to run from CUDA graphs")
        object.__setattr__(self, component, GraphedModule(model, max_graphs, compile=compile))

    def disable_cuda_graph(self, component: str | None = None) -> None:
        """Free the graphs of ``component`` (default: every graphed one) and restore the model."""
        for name, graphed in self._graphed_components().items():
            if component is None or name == component:
                graphed.clear()
                object.__setattr__(self, name, graphed.module)

    def _apply_cuda_graph_option(self, cuda_graph: bool | None) -> None:
        """For a pipeline's ``cuda_graph=`` call option: ``True`` enables graphs (kept for later
        calls, so captures are reused), ``False`` disables them, ``None`` leaves them as they are."""
        if cuda_graph and "unet" not in self._graphed_components():
            self.enable_cuda_graph()
        elif cuda_graph is False:
            self.disable_cuda_graph()

    def _graphed_components(self) -> dict[str, Any]:
        return {name: value for name in self._component_names() if _is_graphed(value := self.__dict__.get(name))}

    def __repr__(self) -> str:
        return f"{type(self).__name__} {json.dumps(self.config_to_save(), indent=2, default=str)}"

    # ------------------------------------------------------------------ saving

    def save_pretrained(
        self,
        save_directory: PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        *,
        trust_saved_code: bool = False,
        **_: Any,
    ) -> None:
        """Write model_index.json and each component into its subfolder.

        The folder is built next to the target and swapped in at the end in one step (Linux's
        ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, undone by the next save if cut
        between them), so an interrupted save, even by ``kill -9``, leaves the previous
        content (or nothing) rather than a half-written or mixed pipeline.

        Raises:
            SaveError: the folder cannot be written (disk full, read-only); the previous
                content is left as it was.

        A custom pipeline's code is copied into the folder, and a component class loaded from a
        repository's module has its module copied into the component's folder; reloading asks
        the trust gate like any code inside a repository. ``trust_saved_code=True`` adds that
        code's sha256 to your trust store, so your own reloads need no flag (other machines
        still ask).
        """
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        fileio.restore_interrupted_folder(target)  # a save killed between its two renames
        fileio.remove_stale_staging(target.parent, f".{target.name}.tmp-")  # folders of saves killed while writing
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-{os.getpid()}-"))
        try:
            component_digests = []
            with fileio.write_errors(target):
                for name, component in self.components.items():
                    if component is not None:
                        _save_component(component, staging / name, safe_serialization, variant)
                        component_digests.append(_export_component_code(type(component), staging / name))
                index = self.config_to_save()
                index.update(_export_custom_code(type(self), staging))
                write_json_atomic(staging / self.config_name, index)
                _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if trust_saved_code:
            from ..host.provenance import trust_saved_code as add_to_trust_store
            from ..host.trust_store import add_trusted

            add_to_trust_store(type(self))
            for digest in filter(None, component_digests):
                add_trusted(digest, source=f"component module saved by you into {target}")

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls: type[P],
        pretrained_model_name_or_path: PathLike,
        *,
        custom_pipeline: str | None = None,
        custom_revision: str | None = None,
        trust_remote_code: bool = False,
        torch_dtype: Any = None,
        variant: str | None = None,
        use_safetensors: bool | None = None,
        device: Any = None,
        low_cpu_mem_usage: bool = True,
        allow_pickle: bool = False,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        proxies: hub.ProxiesArg = None,
        endpoint: str | None = None,
        **components: Any,
    ) -> P:
        """Load a pipeline from a local folder or a Hub repo in diffusers' layout.

        Args:
            pretrained_model_name_or_path: folder or Hub repo id holding model_index.json.
            custom_pipeline: a custom pipeline (community name, local file or folder, Hub repo
                id, or installed entry point) whose class is built instead.
            custom_revision: revision of a remote ``custom_pipeline``.
            trust_remote_code: allow running remote code that is not otherwise trusted.
            torch_dtype: one dtype, or a dict per component with a ``"default"`` key.
            revision, token, cache_dir, local_files_only, proxies, endpoint: how the Hub is
                reached, for every file of the load (see :class:`~pipeyard.hub.HubOptions`);
                all but ``revision`` apply to a Hub ``custom_pipeline`` too.
            allow_pickle: load components whose only weights are pickle (``.bin``) files; off by
                default, since unpickling can run code (read with ``torch.load(weights_only=True)``).
            **components: objects to use instead of loading (``scheduler=...``), or ``None``
                to skip an optional component.

        Raises:
            UnexpectedArgumentError, MissingComponentError, ComponentTypeError,
            UnknownComponentClassError: before anything is loaded.
            InvalidRepoIdError, HubOptionError: before any request.
        """
        options = hub.HubOptions(revision, token, cache_dir, local_files_only, proxies, endpoint)
        source = hub.open_source(pretrained_model_name_or_path, options)
        model_index = _read_model_index(source)
        pipeline_cls = cls._choose_class(model_index, source, custom_pipeline, custom_revision, trust_remote_code)
        plan = comp.plan_components(pipeline_cls, model_index, components)
        classes = {
            name: comp.component_class(name, library, class_name, source, trust_remote_code=trust_remote_code)
            for name, (library, class_name) in plan.to_load.items()
        }
        options = comp.LoadOptions(torch_dtype, variant, use_safetensors, device, low_cpu_mem_usage, allow_pickle)
        from .loading import load_component

        loaded = {name: load_component(name, classes[name], source, options) for name in plan.to_load}
        pipeline = pipeline_cls(**plan.values, **plan.passed, **loaded)
        pipeline.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
        from .. import plugins

        plugins.pipeline_loaded(pipeline)
        return pipeline

    @classmethod
    def _choose_class(
        cls,
        model_index: dict[str, Any],
        source: hub.FileSource,
        custom_pipeline: str | None,
        custom_revision: str | None,
        trust_remote_code: bool,
    ) -> type:
        """The class to build: the caller's ``custom_pipeline``, the class called, or what the
        repository's model_index.json names (through the host, which knows it is repository data)."""
        from .. import host

        if custom_pipeline is not None:
            found = host.load_pipeline_class(
                custom_pipeline, custom_revision=custom_revision, trust_remote_code=trust_remote_code,
                hub_options=source.options,
            )
        elif cls is not DiffusionPipeline:
            return cls
        else:
            found = host.load_repository_pipeline_class(model_index, source, trust_remote_code=trust_remote_code)
            if found is None:
                return _builtin_pipeline_class(model_index.get("_class_name"), source.location)
        return _checked_pipeline_class(found)

    @classmethod
    def from_pipe(
        cls: type[P],
        pipeline: DiffusionPipeline,
        *,
        custom_pipeline: str | None = None,
        custom_revision: str | None = None,
        trust_remote_code: bool = False,
        **overrides: Any,
    ) -> P:
        """A pipeline of this class reusing ``pipeline``'s component objects (no copies).

        Components the new class does not take are left out; ``overrides`` replace or add
        components and must be parameters of this class. ``custom_pipeline`` builds that
        custom pipeline's class instead (through the host: verified and trust-gated as in
        :meth:`from_pretrained`).

        Example::

            walk = DiffusionPipeline.from_pipe(sd_pipe, custom_pipeline="interpolate_stable_diffusion")
        """
        if custom_pipeline is not None:
            from .. import host

            target: type = _checked_pipeline_class(host.load_pipeline_class(
                custom_pipeline, custom_revision=custom_revision, trust_remote_code=trust_remote_code,
            ))
        else:
            target = cls if cls is not DiffusionPipeline else type(pipeline)
        expected = comp.expected_components(target)
        reused = {k: v for k, v in pipeline.components.items() if k in expected}
        settings = {k: v for k, v in pipeline.config.items() if k in expected and not comp.is_component_entry(v)}
        plan = comp.plan_components(target, settings, {**reused, **overrides})
        return target(**plan.values, **plan.passed)


# ---------------------------------------------------------------------- helpers


def _is_graphed(value: Any) -> bool:
    """A :class:`~pipeyard.cuda_graph.GraphedModule` (checked without importing torch)."""
    return getattr(type(value), "_pipeyard_graphed_", False)


def _unwrap(value: Any) -> Any:
    return value.module if _is_graphed(value) else value


def _read_model_index(source: hub.FileSource) -> dict[str, Any]:
    if constants.MODEL_INDEX_NAME not in source.files:
        raise source.missing(constants.MODEL_INDEX_NAME, errors.EntryNotFoundError(
            source.location, constants.MODEL_INDEX_NAME, source.commit,
            hint="a pipeline folder needs model_index.json; to load a single model use its "
            "class's from_pretrained (e.g. UNet2DModel.from_pretrained)",
        ))
    root = source.fetch([constants.MODEL_INDEX_NAME])
    return read_json_file(root / constants.MODEL_INDEX_NAME)


def _builtin_pipeline_class(class_name: Any, location: str) -> type:
    """A pipeline class of :data:`pipeyard.names.BUILTIN_PIPELINES` named by model_index.json."""
    import pipeyard

    from ..names import BUILTIN_PIPELINES

    if isinstance(class_name, str) and class_name in BUILTIN_PIPELINES:
        return getattr(pipeyard, class_name)
    shown = repr(class_name)[:100]
    raise errors.PipelineNotFoundError(
        shown,
        [f"model_index.json of {location} names _class_name {shown}, which is not a pipeyard "
         f"pipeline (built-in: {', '.join(sorted(BUILTIN_PIPELINES))}); pass custom_pipeline=... or call "
         f"from_pretrained on the pipeline class you want"],
    )


def _checked_pipeline_class(found: type) -> type:
    """The host returns the one class a verified file defines; it must be a DiffusionPipeline."""
    if not issubclass(found, DiffusionPipeline):
        from ..host.provenance import provenance_of

        origin = getattr(provenance_of(found), "origin", found.__module__)
        raise errors.PipelineImportError(
            origin, f"{found.__name__} is not a subclass of pipeyard.DiffusionPipeline after import"
        )
    return found


def _export_custom_code(cls: type, folder: Path) -> dict[str, Any]:
    """For a class loaded by the custom-pipeline host: copy its code, return index entries."""
    if "__pipeyard_provenance__" not in cls.__dict__:
        return {}
    from ..host.provenance import export_pipeline_code

    return export_pipeline_code(cls, folder)


def _export_component_code(cls: type, folder: Path) -> str | None:
    """For a component class loaded from a repository's module: copy the module; its digest."""
    if "__pipeyard_provenance__" not in cls.__dict__:
        return None
    from ..host.provenance import export_component_code

    return export_component_code(cls, folder)


def _save_component(component: Any, folder: Path, safe_serialization: bool, variant: str | None) -> None:
    from ..modeling import ModelMixin

    if isinstance(component, ModelMixin):
        component.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant)
    elif hasattr(component, "save_pretrained"):
        component.save_pretrained(folder)
    else:
        raise errors.ComponentError(
            f"cannot save component {folder.name!r}: a {type(component).__name__} has no save_pretrained()"
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` in one step (:func:`pipeyard.fileio.replace_folder`);
    the old content, left at ``staging``, is removed by the caller."""
    try:
        fileio.replace_folder(staging, target)
    except NotADirectoryError:
        raise errors.PipeyardError(f"cannot save a pipeline to {target}: it is a file, not a folder") from None
