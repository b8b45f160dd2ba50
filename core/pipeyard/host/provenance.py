"""Where a loaded pipeline class came from, and copying its code into a saved pipeline.

``load_pipeline_class`` stamps every class it returns with a :class:`Provenance`
(``cls.__pipeyard_provenance__``). ``DiffusionPipeline.save_pretrained`` then calls
:func:`export_pipeline_code`, which

* copies the pipeline file and its sibling modules into the saved folder, at the same
  relative paths, so the folder alone rebuilds the class;
* returns what model_index.json records: ``_class_name: [module_file, ClassName]`` and
  ``_pipeyard_source`` (origin, revision, commit, sha256).

A component class loaded from a repository's own module (``"unet": ["my_unet", "MyUNet"]``)
carries a provenance too: :func:`export_component_code` copies its module (and siblings)
into the component's folder, where diffusers looks for it as well, and model_index.json
records ``[module, ClassName]`` (:func:`component_module_name`).

Saving trusts nothing by itself: the saved folder's module is code inside a repository, which
the trust gate asks about on reload like any other. ``save_pretrained(..., trust_saved_code=True)``
is the explicit way to add its sha256 to your trust store (:func:`trust_saved_code`).

(diffusers saves no code, so a saved custom pipeline cannot be reloaded there.)
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import errors
from .resolve import SOURCE_RECORD_KEY, SourceKind

PROVENANCE_ATTRIBUTE = "__pipeyard_provenance__"


@dataclass(frozen=True)
class Provenance:
    """The origin of a custom pipeline class.

    Attributes:
        kind: the :class:`~pipeyard.host.resolve.SourceKind` name.
        origin: a human description of the source (``Hub repo 'a/b' at 'main'``).
        location: the path, community name, repo id or entry point value.
        revision: the revision asked for, if any.
        commit: the resolved commit, when known.
        sha256: the package digest (what the trust store records).
        root: the module-store folder holding the files (None for entry points).
        main: the pipeline file, relative to ``root``.
        files: every file of the package, relative to ``root``.
    """

    kind: str
    origin: str
    location: str
    revision: str | None
    commit: str | None
    sha256: str
    root: str | None
    main: str
    files: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The JSON-able source record written into model_index.json."""
        data = asdict(self)
        for private in ("root", "files"):
            data.pop(private)
        return data


def stamp(cls: type, provenance: Provenance) -> type:
    """Attach ``provenance`` to ``cls`` (the latest load wins; the content is the same)."""
    setattr(cls, PROVENANCE_ATTRIBUTE, provenance)
    return cls


def provenance_of(cls: type) -> Provenance | None:
    """The provenance of a class loaded by the host (not inherited by subclasses)."""
    return cls.__dict__.get(PROVENANCE_ATTRIBUTE)


def export_pipeline_code(cls: type, folder: Path) -> dict[str, Any]:
    """Copy ``cls``'s code into ``folder``; return the model_index.json entries to write.

    Raises:
        CustomPipelineError: a sibling path would overwrite a component folder's content.
    """
    provenance = provenance_of(cls)
    if provenance is None:
        return {}
    record = {SOURCE_RECORD_KEY: provenance.record()}
    if provenance.kind == SourceKind.ENTRY_POINT.name or provenance.root is None:
        return {"_class_name": cls.__name__, **record}
    for name in provenance.files:
        target = folder.joinpath(*name.split("/"))
        if target.exists():
            raise errors.CustomPipelineError(
                f"cannot save {cls.__name__}'s code file {name!r} into {folder}: a component "
                f"already uses that path; rename the module or the component"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(provenance.root).joinpath(*name.split("/")), target)
    return {"_class_name": [provenance.main, cls.__name__], **record}


def trust_saved_code(cls: type) -> str | None:
    """Add the sha256 of ``cls``'s code to the trust store (the caller's explicit choice).

    Returns the digest, or None when ``cls`` was not loaded by the host or is installed code
    (an entry point, which needs no trust).
    """
    provenance = provenance_of(cls)
    if provenance is None or provenance.kind == SourceKind.ENTRY_POINT.name:
        return None
    from .trust_store import add_trusted

    add_trusted(provenance.sha256, source=f"saved by you ({provenance.origin})")
    return provenance.sha256


def component_module_name(cls: type) -> str | None:
    """``my_unet`` for a component class the host loaded from ``my_unet.py``; else None."""
    provenance = provenance_of(cls)
    if provenance is None or provenance.kind != SourceKind.COMPONENT.name:
        return None
    return PurePosixPath(provenance.main).stem


def export_component_code(cls: type, folder: Path) -> str | None:
    """Copy a component class's module into its component ``folder``; the saved package's digest.

    The module lands at ``<folder>/<module>.py`` and its siblings at their paths relative to
    the module's folder, so the saved repository reloads it from the component's folder. The
    digest returned is the one the trust gate will see on reload (what ``trust_saved_code``
    adds). None for a class that is not a component module loaded by the host.

    Raises:
        CustomPipelineError: a sibling lies above the module's folder, or a file would
            overwrite one the component already saved.
    """
    provenance = provenance_of(cls)
    if provenance is None or provenance.kind != SourceKind.COMPONENT.name or provenance.root is None:
        return None
    base = PurePosixPath(provenance.main).parent
    hashes: dict[str, str] = {}
    for name in provenance.files:
        relative = PurePosixPath(name)
        if base != PurePosixPath(".") and base not in relative.parents:
            raise errors.CustomPipelineError(
                f"cannot save component class {cls.__name__}: its module {provenance.main!r} imports "
                f"{name!r}, which lies outside the module's folder; keep a component's modules together"
            )
        rebased = relative.relative_to(base) if base != PurePosixPath(".") else relative
        target = folder.joinpath(*rebased.parts)
        if target.exists():
            raise errors.CustomPipelineError(
                f"cannot save component class {cls.__name__}'s module file {name!r} into {folder}: "
                f"the component already saved a file there; rename the module"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        data = Path(provenance.root).joinpath(*relative.parts).read_bytes()
        target.write_bytes(data)
        hashes[f"{folder.name}/{rebased.as_posix()}"] = hashlib.sha256(data).hexdigest()
    from .cache import package_digest

    return package_digest(hashes)
