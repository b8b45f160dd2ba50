"""Read, build and check ``registry/index.json``, the index of community pipelines.

The index is generated (``pipeyard registry build``, or ``scripts/build_registry.py``) and
shipped inside the wheel; never edit it by hand. It has two lists::

    {"version": 2,
     "pipelines": [                      one per community/*.py file, built from the file
       {"name": "one_step_unet", "file": "one_step_unet.py",
        "class": "UnetSchedulerOneForwardPipeline", "sha256": "...", "summary": "...",
        "tags": [...], "components": [{"name": "unet", "type": "UNet2DModel", "optional": false}],
        "dependencies": [...], "requires-python": ">=3.10", "requires-core": ">=0.1",
        "added-in": "0.1.0"}],
     "hub": [                            copied from registry/hub.toml, pinned
       {"name": "...", "repo": "owner/name", "commit": "<40 hex>", "file": "pipeline.py",
        "sha256": "...", "summary": "...", "tags": [...], "dependencies": [...],
        "added-in": "0.2.0"}],
     "mirror": [                         copied from registry/hub.toml [[mirror]], pinned
       {"name": "stable_diffusion_repaint", "release": "0.42.1", "sha256": "...",
        "summary": "...", "tags": [...], "class": "...", "diffusers": "<static check>",
        "added-in": "0.2.0"}]}

Community entries come from the file alone: :func:`pipeyard.host.verify.verify_package` (the
host's own checks) and, for ``components``, the parameters of the class's ``__init__`` read with
:mod:`ast`; nothing is imported. ``added-in`` is the pipeyard version that first indexed the
entry, carried over from the previous index on every rebuild.

Only ``pipelines`` are bundled code: the host trusts a community file fetched at another
revision when its sha256 equals one of them. ``hub`` entries are for discovery and integrity
(a pinned commit and digest), never trust: a listed Hub pipeline still needs
``pipeyard trust add`` or ``trust_remote_code=True``. ``mirror`` entries pin files of
diffusers' community mirror (``v<release>/<name>.py``) that a maintainer reviewed: the host
runs a mirror file without a flag only when its name and sha256 are pinned here
(:mod:`pipeyard.host.mirror`). Their ``class`` and ``diffusers`` (what the static
compatibility check says) come from the pinned bytes: found in the local module store,
carried over from the previous index while the sha256 is unchanged, or fetched with
``pipeyard registry build --fetch-mirror`` (verified only, nothing runs); None until then.
:func:`check_registry` is what ``pipeyard registry check`` runs.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from . import errors, fileio

INDEX_VERSION = 2
HUB_SOURCES_NAME = "hub.toml"

#: ``__init__`` parameters with these annotations are options, not components.
_OPTION_TYPES = frozenset({"bool", "int", "float", "str"})
_HUB_PATTERNS = {
    "name": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"),
    "repo": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    "commit": re.compile(r"^[0-9a-f]{40}$"),
    "sha256": re.compile(r"^[0-9a-f]{64}$"),
    "file": re.compile(r"^pipeline\.py$"),  # what the host loads from a Hub repo
}
_MIRROR_PATTERNS = {
    "name": _HUB_PATTERNS["name"],
    "release": re.compile(r"^\d+\.\d+\.\d+$"),  # a diffusers release: its mirror folder v<release>
    "sha256": _HUB_PATTERNS["sha256"],
}


def _version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------- community entries


def init_components(tree: ast.Module, class_name: str) -> list[dict[str, Any]]:
    """The components the class's ``__init__`` takes: name, annotation text, optional or not.

    Parameters annotated ``bool``/``int``/``float``/``str`` are options and left out; a class
    without its own ``__init__`` gives ``[]``.
    """
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return []
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # drop self
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults), *zip(args.kwonlyargs, args.kw_defaults)]
    components = []
    for arg, default in pairs:
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else None
        if annotation not in _OPTION_TYPES:
            components.append({"name": arg.arg, "type": annotation, "optional": default is not None})
    return components


def _entry(path: Path, added_in: str) -> dict[str, Any]:
    """The index entry of one community file (verified, nothing executed)."""
    from .host.verify import verify_package

    data = path.read_bytes()
    info = verify_package({path.name: data}, path.name, str(path.parent))
    if info.metadata is None or info.metadata.requires_core is None:
        raise errors.PipelineVerificationError(
            str(path), "a community pipeline needs a `# /// script` block with [tool.pipeyard] requires-core"
        )
    meta = info.metadata
    doc_lines = (info.docstring or "").strip().splitlines()
    return {
        "name": path.stem,
        "file": path.name,
        "class": info.class_name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "summary": meta.summary or (doc_lines[0] if doc_lines else ""),
        "tags": sorted(meta.tags),
        "components": init_components(ast.parse(data), info.class_name),
        "dependencies": list(meta.dependencies),
        "requires-python": meta.requires_python,
        "requires-core": meta.requires_core,
        "added-in": added_in,
    }


# --------------------------------------------------------------------------- hub entries


def _read_hub_toml(path: Path | None) -> tuple[Path, dict[str, Any]]:
    source = path or _registry_dir() / HUB_SOURCES_NAME
    if not source.is_file():
        return source, {}
    try:
        return source, tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigFileError(source, str(exc)) from None


def read_hub_sources(path: Path | None = None) -> list[dict[str, Any]]:
    """The Hub-hosted pipelines listed in ``registry/hub.toml`` (``[[pipeline]]`` tables).

    Raises:
        ConfigFileError: the file is not valid TOML, or an entry misses or malforms a field.
    """
    source, data = _read_hub_toml(path)
    return [_hub_entry(item, source) for item in data.get("pipeline", [])]


def read_mirror_pins(path: Path | None = None) -> list[dict[str, Any]]:
    """The reviewed files of diffusers' mirror pinned in ``registry/hub.toml`` (``[[mirror]]``).

    Raises:
        ConfigFileError: the file is not valid TOML, or a pin misses or malforms a field, or
            names one file twice.
    """
    source, data = _read_hub_toml(path)
    pins = [_mirror_pin(item, source) for item in data.get("mirror", [])]
    names = [pin["name"] for pin in pins]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise errors.ConfigFileError(source, f"[[mirror]] pins {', '.join(twice)} more than once; keep one sha256 per name")
    return pins


def _mirror_pin(item: dict[str, Any], source: Path) -> dict[str, Any]:
    entry = {"summary": "", "tags": [], **item}
    for key, pattern in _MIRROR_PATTERNS.items():
        if not isinstance(entry.get(key), str) or not pattern.match(entry[key]):
            name, value = entry.get("name", "?"), entry.get(key)
            raise errors.ConfigFileError(
                source, f"[[mirror]] {name!r}: {key} = {value!r} does not match {pattern.pattern}"
            )
    keys = ("name", "release", "sha256", "summary", "tags")
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise errors.ConfigFileError(source, f"[[mirror]] {entry['name']!r}: unknown key(s) {', '.join(unknown)}")
    return {key: entry[key] for key in keys} | {"tags": sorted(entry["tags"])}


def _hub_entry(item: dict[str, Any], source: Path) -> dict[str, Any]:
    entry = {"file": "pipeline.py", "summary": "", "tags": [], "dependencies": [], **item}
    for key, pattern in _HUB_PATTERNS.items():
        if not isinstance(entry.get(key), str) or not pattern.match(entry[key]):
            name, value = entry.get("name", "?"), entry.get(key)
            raise errors.ConfigFileError(
                source, f"[[pipeline]] {name!r}: {key} = {value!r} does not match {pattern.pattern}"
            )
    keys = ("name", "repo", "commit", "file", "sha256", "summary", "tags", "dependencies")
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise errors.ConfigFileError(source, f"[[pipeline]] {entry['name']!r}: unknown key(s) {', '.join(unknown)}")
    return {key: entry[key] for key in keys} | {"tags": sorted(entry["tags"])}


# --------------------------------------------------------------------------- the index


def _registry_dir() -> Path:
    from ._bundled import bundled_dir

    return bundled_dir("registry")


def index_path() -> Path:
    return _registry_dir() / "index.json"


def read_index(path: Path | None = None) -> dict[str, Any]:
    """The committed index, checked entry by entry before anyone uses it.

    The index names files and digests the host trusts, so it is read like data from a
    stranger: a community entry's ``file`` must be ``<name>.py`` (never a path such as
    ``../x.py`` or ``/etc/x.py``), names are simple names, digests 64 hexadecimal digits.

    Raises:
        ConfigFileError: the file is not a JSON object of this index version, or an entry
            misses or malforms a field (the message names the entry, the field and the fix).
    """
    target = path or index_path()
    data = fileio.read_json_file(target)
    if data.get("version") != INDEX_VERSION:
        raise errors.ConfigFileError(target, f"index version {errors.clip(repr(data.get('version')))}, this "
                                     f"pipeyard reads version {INDEX_VERSION}; {_FIX_INDEX}")
    checks = (("pipelines", _check_community_entry), ("hub", _check_indexed_hub_entry),
              ("mirror", _check_indexed_mirror_pin))
    for kind, check in checks:
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            raise errors.ConfigFileError(target, f"{kind!r} is a {type(entries).__name__}, not a list; {_FIX_INDEX}")
        for number, entry in enumerate(entries):
            problem = check(entry) if isinstance(entry, dict) else "it is not an object"
            if problem:
                label = errors.clip(repr(entry.get("name") if isinstance(entry, dict) else entry), 60)
                raise errors.ConfigFileError(target, f"{kind}[{number}] ({label}): {problem}; {_FIX_INDEX}")
    return data


_FIX_INDEX = "rebuild it with `pipeyard registry build` (a checkout) or reinstall pipeyard"
_INDEX_STRINGS = ("class", "summary", "added-in")
_INDEX_LISTS = ("tags", "dependencies")


def _field_problem(entry: dict[str, Any], key: str, ok: bool, expected: str) -> str | None:
    return None if ok else f"{key} = {errors.clip(repr(entry.get(key)), 80)} is not {expected}"


def _check_community_entry(entry: dict[str, Any]) -> str | None:
    """What is wrong with one ``pipelines`` entry of the index, or None."""
    name = entry.get("name")
    checks = [
        ("name", isinstance(name, str) and bool(_HUB_PATTERNS["name"].match(name)) and ".." not in name,
         "a simple name (letters, digits, '_', '.', '-')"),
        ("file", entry.get("file") == f"{name}.py", "'<name>.py', a file of the community folder"),
        ("sha256", isinstance(entry.get("sha256"), str) and bool(_HUB_PATTERNS["sha256"].match(entry["sha256"])),
         "64 hexadecimal digits"),
        *((key, isinstance(entry.get(key), str), "a string") for key in _INDEX_STRINGS),
        *((key, _strings(entry.get(key)), "a list of strings") for key in _INDEX_LISTS),
        ("dependencies", _requirements(entry.get("dependencies")), "a list of requirements (PEP 508)"),
        ("requires-core", _specifier(entry.get("requires-core")), "a version specifier such as '>=0.1'"),
        ("requires-python", _specifier(entry.get("requires-python")), "a version specifier such as '>=3.10'"),
        ("components", isinstance(entry.get("components", []), list), "a list"),
    ]
    return next((p for key, ok, expected in checks if (p := _field_problem(entry, key, ok, expected))), None)


def _check_indexed_hub_entry(entry: dict[str, Any]) -> str | None:
    """What is wrong with one ``hub`` entry of the index, or None."""
    checks = [
        *((key, isinstance(entry.get(key), str) and bool(pattern.match(entry[key])), f"matching {pattern.pattern}")
          for key, pattern in _HUB_PATTERNS.items()),
        *((key, isinstance(entry.get(key), str), "a string") for key in ("summary", "added-in")),
        *((key, _strings(entry.get(key)), "a list of strings") for key in _INDEX_LISTS),
        ("dependencies", _requirements(entry.get("dependencies")), "a list of requirements (PEP 508)"),
    ]
    return next((p for key, ok, expected in checks if (p := _field_problem(entry, key, ok, expected))), None)


def _check_indexed_mirror_pin(entry: dict[str, Any]) -> str | None:
    """What is wrong with one ``mirror`` pin of the index, or None (a pin lets code run unflagged)."""
    checks = [
        *((key, isinstance(entry.get(key), str) and bool(pattern.match(entry[key])), f"matching {pattern.pattern}")
          for key, pattern in _MIRROR_PATTERNS.items()),
        ("tags", _strings(entry.get("tags", [])), "a list of strings"),
    ]
    return next((p for key, ok, expected in checks if (p := _field_problem(entry, key, ok, expected))), None)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _requirements(value: Any) -> bool:
    """A list of PEP 508 requirement strings (what ``pipeyard info`` checks against the installed)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return _strings(value) and all(Requirement(v) for v in value)
    except InvalidRequirement:
        return False


def _specifier(value: Any) -> bool:
    """None, or a version specifier string (``>=0.1``)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if value is None:
        return True
    try:
        return isinstance(value, str) and SpecifierSet(value) is not None
    except InvalidSpecifier:
        return False


def _added_in(previous: dict[str, Any] | None, kind: str) -> dict[str, str]:
    """name -> ``added-in`` of the previous index's ``kind`` list."""
    entries = (previous or {}).get(kind, [])
    return {e["name"]: e["added-in"] for e in entries if "added-in" in e}


def build_index(
    community: Path | None = None, previous: dict[str, Any] | None = None, hub_file: Path | None = None,
    *, fetch_mirror: bool = False,
) -> dict[str, Any]:
    """The index for every ``*.py`` of ``community`` (default: bundled), Hub source and mirror pin.

    Args:
        previous: the index being replaced (default: the committed one), whose ``added-in``
            values (and mirror pins' checks, while their sha256 is unchanged) are kept;
            entries new to it get the running pipeyard version.
        fetch_mirror: read pinned mirror files that are neither in the module store nor
            checked in ``previous`` from diffusers' mirror (network; nothing runs).

    Raises:
        ConfigFileError: a fetched mirror file's sha256 is not the pinned one.
    """
    from ._bundled import bundled_dir

    previous = _previous(None) if previous is None else previous
    folder = community or bundled_dir("community")
    version, known = _version(), _added_in(previous, "pipelines")
    paths = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    entries = [_entry(p, known.get(p.stem, version)) for p in paths]
    known_hub = _added_in(previous, "hub")
    hub = [{**e, "added-in": known_hub.get(e["name"], version)} for e in read_hub_sources(hub_file)]
    known_mirror = {e["name"]: e for e in (previous or {}).get("mirror", [])}
    source = hub_file or _registry_dir() / HUB_SOURCES_NAME
    mirror = [
        _mirror_index_entry(pin, known_mirror.get(pin["name"]), version, fetch_mirror, source)
        for pin in read_mirror_pins(hub_file)
    ]
    return {"version": INDEX_VERSION, "pipelines": entries, "hub": hub, "mirror": mirror}


# --------------------------------------------------------------------------- mirror pins


def diffusers_verdict(data: bytes, path: str) -> str:
    """What the static diffusers check says of a pipeline file's bytes (nothing runs)."""
    from .compat.rewrite import has_diffusers_imports, unsupported_imports
    from .host.verify import parse_module

    try:
        tree = parse_module(data, path).tree
    except errors.PipelineVerificationError as exc:
        return f"refused: {exc}"
    if not has_diffusers_imports(tree):
        return "written for pipeyard (imports no diffusers)"
    missing = unsupported_imports(tree)
    if not missing:
        return "diffusers-written; every name it imports is provided"
    return "needs " + ", ".join(f"{name} (line {line})" for line, name in missing)


def _mirror_facts(data: bytes, path: str) -> dict[str, Any]:
    """``class`` and ``diffusers`` of a pinned mirror file, from its bytes."""
    from .host.classes import pipeline_classes
    from .host.verify import parse_module

    try:
        found = pipeline_classes(parse_module(data, path).tree)
    except errors.PipelineVerificationError:
        found = []
    return {"class": found[0][0] if len(found) == 1 else None, "diffusers": diffusers_verdict(data, path)}


def mirror_source(pin: dict[str, Any]) -> Any:
    """The host's :class:`~pipeyard.host.resolve.Source` of a pin (the mirror in use, the pin's folder)."""
    from . import constants
    from .host.resolve import Source, SourceKind

    repo = constants.diffusers_mirror_repo() or constants.DEFAULT_DIFFUSERS_MIRROR
    return Source(SourceKind.MIRROR, repo, f"{pin['name']}.py", f"v{pin['release']}")


def _pinned_mirror_bytes(pin: dict[str, Any], fetch: bool, hub_file: Path) -> tuple[bytes, str] | None:
    """The pinned file's bytes and a path for messages: from the module store, else fetched."""
    from .host import cache

    try:
        stored = cache.load_package(pin["sha256"])
    except errors.PipelineVerificationError:
        stored = None  # an edited store copy is no copy
    if stored is not None:
        return stored.read_all()[stored.main], str(stored.main_path)
    if not fetch:
        return None
    from .host.fetch import fetch_package

    source = mirror_source(pin)
    fetched = fetch_package(source)
    digest = cache.package_digest(cache.package_hashes(fetched.files))
    if digest != pin["sha256"]:
        raise errors.ConfigFileError(
            hub_file, f"[[mirror]] {pin['name']!r}: pinned sha256 {pin['sha256']}, but {source.describe()} "
            f"at commit {fetched.commit} has sha256 {digest}; review the new file before pinning it",
        )
    return fetched.files[fetched.main], f"{fetched.origin}/{fetched.main}"


def _mirror_index_entry(
    pin: dict[str, Any], previous: dict[str, Any] | None, version: str, fetch: bool, hub_file: Path
) -> dict[str, Any]:
    """The index entry of a pin: the pin, what its bytes say (``class``, ``diffusers``), ``added-in``."""
    same = previous is not None and previous.get("sha256") == pin["sha256"]
    checked = same and previous.get("diffusers") is not None  # type: ignore[union-attr]
    found = _pinned_mirror_bytes(pin, fetch and not checked, hub_file)
    if found is not None:
        facts = _mirror_facts(*found)
    elif same:
        facts = {"class": previous.get("class"), "diffusers": previous.get("diffusers")}  # type: ignore[union-attr]
    else:
        facts = {"class": None, "diffusers": None}
    added_in = previous.get("added-in", version) if previous is not None else version
    return {**pin, **facts, "added-in": added_in}


def render_index(index: dict[str, Any]) -> str:
    """The exact text written to ``index.json`` (stable, so staleness is a text comparison)."""
    return json.dumps(index, indent=2, sort_keys=False) + "\n"


def _previous(path: Path | None) -> dict[str, Any] | None:
    """The committed index; None when there is none or it is damaged (a rebuild replaces it)."""
    target = path or index_path()
    try:
        return read_index(target) if target.is_file() else None
    except errors.ConfigFileError:
        return None


def stale_entries(community: Path | None = None, path: Path | None = None, hub_file: Path | None = None) -> list[str]:
    """Names whose committed entry differs from what :func:`build_index` makes now."""
    previous = _previous(path) or {}
    built = build_index(community, previous, hub_file)
    stale = set()
    for kind in ("pipelines", "hub", "mirror"):
        now = {e["name"]: e for e in built[kind]}
        committed = {e["name"]: e for e in previous.get(kind, [])}
        stale |= {name for name in now.keys() | committed.keys() if now.get(name) != committed.get(name)}
    if previous.get("version") != INDEX_VERSION:
        stale.add("(index version)")
    return sorted(stale)


def write_index(
    community: Path | None = None, path: Path | None = None, hub_file: Path | None = None, *, fetch_mirror: bool = False
) -> Path:
    """Regenerate ``index.json`` from ``community/`` and ``hub.toml``; return its path.

    ``fetch_mirror``: see :func:`build_index`.
    """
    target = path or index_path()
    index = build_index(community, _previous(target), hub_file, fetch_mirror=fetch_mirror)
    fileio.write_bytes_atomic(target, render_index(index).encode("utf-8"))  # readers: the old index or the new
    return target


# --------------------------------------------------------------------------- the check


def check_registry(
    community: Path | None = None, path: Path | None = None, tests_dir: Path | None = None,
    hub_file: Path | None = None,
) -> list[str]:
    """Every problem ``pipeyard registry check`` reports (empty when all is well).

    A stale index; any lint error of a community file (:mod:`pipeyard.lint`: the host's
    checks, docstring example, a test exists); a Hub entry whose name clashes with a community
    one, or whose pinned commit or digest disagrees with what is in the local module store.
    Nothing touches the network.
    """
    from ._bundled import bundled_dir
    from .lint import error_findings, lint_pipeline_file

    folder = community or bundled_dir("community")
    try:
        stale = stale_entries(folder, path, hub_file)
    except errors.PipelineVerificationError as exc:
        problems = [f"cannot build the index: {exc}"]  # the lint findings below say where
    else:
        where = index_path() if path is None else path
        problems = [f"{where}: stale entry {name!r}; run `pipeyard registry build`" for name in stale]
    for file in sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")):
        problems += [str(f) for f in error_findings(lint_pipeline_file(file, tests_dir))]
    hub = read_hub_sources(hub_file)
    names = {p.stem for p in folder.glob("*.py")}
    problems += [f"hub entry {e['name']!r} has the name of a community pipeline" for e in hub if e["name"] in names]
    for entry in hub:
        problems += check_hub_entry_offline(entry)
    pins = read_mirror_pins(hub_file)
    problems += [f"mirror pin {p['name']!r} has the name of a community pipeline" for p in pins if p["name"] in names]
    checked = {e["name"]: e for e in (_previous(path) or {}).get("mirror", [])}
    for pin in pins:
        problems += check_mirror_pin_offline(pin, checked.get(pin["name"]))
    return problems


def check_mirror_pin_offline(pin: dict[str, Any], indexed: dict[str, Any] | None) -> list[str]:
    """What can be said of a mirror pin with no request: is it checked, does a load disagree?

    A pin whose static check is missing from the index was never read (run
    ``pipeyard registry build --fetch-mirror``); a resolution record of the pinned folder
    pointing at another sha256 means the mirror's file changed since it was reviewed.
    """
    from .host import cache, resolution_record_key

    label = f"mirror pin {pin['name']!r} (v{pin['release']}/{pin['name']}.py)"
    problems = []
    if indexed is not None and indexed.get("sha256") == pin["sha256"] and indexed.get("diffusers") is None:
        problems.append(f"{label}: its file was never checked; run `pipeyard registry build --fetch-mirror`")
    key = resolution_record_key(mirror_source(pin))
    record = cache.read_record(key) if key is not None else None
    if record is not None and record.digest != pin["sha256"]:
        problems.append(
            f"{label}: the pinned sha256 {pin['sha256']} differs from the file loaded from the mirror {record.digest}"
        )
    return problems


def check_hub_entry_offline(entry: dict[str, Any]) -> list[str]:
    """What the local module store says of a pinned Hub entry (nothing when never loaded).

    When ``repo`` at ``commit`` was loaded before, its resolution record must point at the
    digest ``sha256``, and the stored file must still hash to it and pass verification.
    """
    from .host import cache, resolution_record_key
    from .host.resolve import Source, SourceKind
    from .host.verify import verify_package

    label = f"hub entry {entry['name']!r} ({entry['repo']}@{entry['commit'][:12]})"
    key = resolution_record_key(Source(SourceKind.HUB, entry["repo"], entry["file"], entry["commit"]))
    record = cache.read_record(key) if key is not None else None
    if record is not None and record.digest != entry["sha256"]:
        return [f"{label}: the pinned sha256 {entry['sha256']} differs from the fetched content {record.digest}"]
    try:
        stored = cache.load_package(entry["sha256"])
        if stored is not None:
            verify_package(stored.read_all(), stored.main, str(stored.root))
    except errors.PipelineVerificationError as exc:
        return [f"{label}: {exc}"]
    return []
