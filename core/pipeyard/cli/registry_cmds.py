"""``pipeyard list | search | info`` and ``pipeyard registry build | check``: the registry.

All of them read ``registry/index.json`` (and ``community/`` files) as text: no torch, and no
network (but ``registry build --fetch-mirror``). Names of diffusers' community mirror are shown
apart from bundled ones: pins of ``registry/hub.toml`` with their static check, and
(``list --all``) names this machine loaded from the mirror before.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import click

from .. import errors, registry
from .checkout import find_checkout, root_option


def _entries(*, mirror: bool = True) -> list[dict[str, Any]]:
    """Community, Hub (marked with ``"repo"``) then mirror pins (marked with ``"release"``)."""
    index = registry.read_index()
    return [*index.get("pipelines", []), *index.get("hub", []), *(index.get("mirror", []) if mirror else [])]


def _where(entry: dict[str, Any]) -> str:
    if "repo" in entry:
        return f"hub:{entry['repo']}"
    if "release" in entry:
        return f"mirror:v{entry['release']}"
    return "community"


def _echo_table(entries: list[dict[str, Any]]) -> None:
    if not entries:
        click.echo("no pipelines")
        return
    width = max(len(e["name"]) for e in entries)
    for entry in entries:
        click.echo(f"{entry['name']:<{width}}  {_where(entry):<10}  {entry['summary']}")


def _echo_mirror_section(pins: list[dict[str, Any]], online: bool = False) -> None:
    """The mirror names apart: pinned ones with their static check, then ones loaded before."""
    from .. import constants

    repo = constants.diffusers_mirror_repo()
    click.echo("")
    if repo is None:
        click.echo("diffusers' community mirror: off (PIPEYARD_DIFFUSERS_MIRROR)")
        return
    click.echo(f"diffusers' community mirror ({repo}): any other name is looked up there and needs trust;")
    click.echo("pinned in registry/hub.toml (reviewed; run without a flag at exactly this sha256):")
    width = max([len(p["name"]) for p in pins] + [4])
    for pin in pins:
        checked = pin.get("diffusers") or "not checked yet"
        click.echo(f"  {pin['name']:<{width}}  v{pin['release']:<8}  {checked}  {pin['summary']}".rstrip())
    if not pins:
        click.echo("  (none)")
    loaded = [s for s in _loaded_mirror_names() if s[0] not in {p["name"] for p in pins}]
    if loaded:
        click.echo("loaded from the mirror before on this machine (not pinned: trusted by you, or refused):")
        for name, folder, verdict in loaded:
            click.echo(f"  {name:<{width}}  {folder:<9}  {verdict}")
    if online:
        _echo_online_listing(repo, {p["name"] for p in pins})


def _echo_online_listing(repo: str, pinned: set[str]) -> None:
    """Every name of the mirror's default folder (one listing request; nothing is downloaded)."""
    from .. import hub
    from ..host import mirror
    from ..host.resolve import bundled_registry

    folder = mirror.default_folder()
    files = hub.dataset_folder_files(repo, folder, hub.HubOptions())
    names = [f[:-3] for f in files if f.endswith(".py") and f[:-3].isidentifier()]
    bundled = set(bundled_registry())
    others = [n for n in names if n not in pinned and n not in bundled]
    click.echo(f"in {repo} {folder}/ now ({len(names)} names; not reviewed here, each needs trust):")
    for name in others:
        click.echo(f"  {name}")
    shadowed = sorted(set(names) & bundled)
    if shadowed:
        click.echo(f"  (bundled with pipeyard, so the bundled file is used: {', '.join(shadowed)})")


def _loaded_mirror_names() -> list[tuple[str, str, str]]:
    """``(name, folder, static check)`` of mirror files this machine resolved (records, no network)."""
    from ..host import cache

    found = []
    for key, record in cache.list_records():
        kind, _, filename, folder, _ = key
        if kind != "MIRROR":
            continue
        stored = cache.load_package(record.digest, check=False)
        verdict = (registry.diffusers_verdict(stored.read_all()[stored.main], str(stored.main_path))
                   if stored is not None else "refused by the trust gate (not in the module store)")
        found.append((filename[:-3], folder, verdict))
    return sorted(set(found))


@click.command("list")
@click.option("--all", "show_all", is_flag=True,
              help="Also show diffusers' community mirror: pinned names with their static check, and names loaded before.")
@click.option("--online", is_flag=True,
              help="With --all: also list the names in the mirror's folder now (one Hub request).")
def list_pipelines(show_all: bool, online: bool) -> None:
    """List every pipeline of the registry (community files, then Hub-hosted ones)."""
    _echo_table(_entries(mirror=False))
    if show_all or online:
        _echo_mirror_section(registry.read_index().get("mirror", []), online)


def matches(entry: dict[str, Any], words: tuple[str, ...]) -> bool:
    """True when every word occurs (case-insensitively) in the name, class, summary or tags."""
    text = " ".join([entry["name"], entry.get("class") or "", entry["summary"], *entry["tags"]]).lower()
    return all(word.lower() in text for word in words)


@click.command()
@click.argument("text", nargs=-1, required=True)
def search(text: tuple[str, ...]) -> None:
    """Pipelines whose name, class, summary or tags contain every word of TEXT."""
    _echo_table([e for e in _entries() if matches(e, text)])


def find_entry(name: str) -> dict[str, Any]:
    """The registry entry called ``name``, or PipelineNotFoundError listing the names."""
    for entry in _entries():
        if entry["name"] == name:
            return entry
    names = ", ".join(sorted(e["name"] for e in _entries())) or "none"
    raise errors.PipelineNotFoundError(name, [
        f"registry/index.json (names: {names}); try `pipeyard search`, or `pipeyard list --all --online` "
        f"for the names of diffusers' community mirror"
    ])


def dependency_status(requirement: str) -> str:
    """``installed X.Y`` / ``not installed`` / ``X.Y installed, needs ...`` for one requirement."""
    import importlib.metadata

    from packaging.requirements import Requirement

    req = Requirement(requirement)
    try:
        installed = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    if req.specifier.contains(installed, prereleases=True):
        return f"installed {installed}"
    return f"{installed} installed, does not satisfy it"


def literal_block(docstring: str) -> str | None:
    """The first indented block after a line ending in ``::``, dedented; None without one."""
    lines = docstring.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("::")), None)
    if start is None:
        return None
    block: list[str] = []
    for line in lines[start:]:
        if line.strip() and not line.startswith((" ", "\t")):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n") or None


def usage_example(entry: dict[str, Any]) -> str:
    """The usage example of the module docstring (community files), else a generic one."""
    from .._bundled import bundled_dir
    from ..host.fetch import folder_reader
    from ..host.verify import verify_package

    if "repo" not in entry and "release" not in entry:
        folder = str(bundled_dir("community"))
        data = folder_reader(folder)(entry["file"])  # a regular file inside community/, or None
        if data is None:
            raise errors.EntryNotFoundError(folder, entry["file"], hint="rebuild the index: `pipeyard registry build`")
        docstring = verify_package({entry["file"]: data}, entry["file"], folder).docstring
        block = literal_block(docstring or "")
        if block:
            return block
    source = entry.get("repo", entry["name"])
    revision = f', custom_revision="{entry["commit"]}"' if "commit" in entry else ""
    if "release" in entry:
        revision = f', custom_revision="{entry["release"]}"'
    return f'pipe = DiffusionPipeline.from_pretrained(MODEL, custom_pipeline="{source}"{revision})'


def call_parameters(source: bytes, class_name: str) -> tuple[list[str], set[str]] | None:
    """``(required, named)`` parameters of ``class_name.__call__`` in ``source``, read with ast.

    A class that inherits ``__call__`` from a ``StableDiffusion*`` pipeline takes a prompt;
    None when it inherits one from anything else.
    """
    import ast

    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__call__":
                    return _required_and_named(item.args)
            bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
            if any(base.startswith("StableDiffusion") for base in bases):
                return [], {"prompt"}
    return None


def _required_and_named(args: Any) -> tuple[list[str], set[str]]:
    positional = [*args.posonlyargs, *args.args][1:]  # drop self
    first_default = len(positional) - len(args.defaults)
    required = [a.arg for a in positional[:first_default]]
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    return required, {a.arg for a in [*positional, *args.kwonlyargs]}


def command_line_usage(entry: dict[str, Any]) -> str:
    """A ``pipeyard run`` line that works for the entry, or what the command line cannot give it."""
    if "repo" in entry:
        return (f"pipeyard run {entry['repo']} --revision {entry['commit']} --model PATH_OR_REPO "
                f"--trust-remote-code")
    if "release" in entry:  # a mirror pin: the pinned sha256 needs no flag
        return f"pipeyard run {entry['name']} --revision {entry['release']} --model PATH_OR_REPO"
    from .._bundled import bundled_dir

    source = (bundled_dir("community") / entry["file"]).read_bytes()
    required, named = call_parameters(source, entry["class"]) or ([], set())
    cannot = [name for name in required if name != "prompt"]
    if cannot:
        return (f"`pipeyard run` cannot run it: its __call__ needs {', '.join(cannot)}, which the "
                f"command line does not supply; use it from Python (above)")
    prompt = ' --prompt "a photo of a cat"' if "prompt" in named else ""
    line = f"pipeyard run {entry['name']} --model PATH_OR_REPO{prompt}"
    components = [c["name"] for c in entry.get("components", []) if not c["optional"]]
    if components:
        line += f"\n(PATH_OR_REPO: a folder or Hub repo whose model_index.json has {', '.join(components)})"
    return line


def diffusers_compatibility(entry: dict[str, Any]) -> str:
    """What the static diffusers check says of an entry's file (bundled files; Hub ones once stored)."""
    from .._bundled import bundled_dir
    from ..host import cache
    from ..host.fetch import folder_reader

    if "repo" in entry or "release" in entry:
        stored = cache.load_package(entry["sha256"])
        if stored is None:
            if entry.get("diffusers"):  # a mirror pin, checked when the index was built
                return entry["diffusers"]
            return "not checked: the file is not in the module store yet (load it once)"
        data, path = stored.read_all()[stored.main], str(stored.main_path)
    else:
        folder = str(bundled_dir("community"))
        data, path = folder_reader(folder)(entry["file"]) or b"", f"{folder}/{entry['file']}"
    return registry.diffusers_verdict(data, path)


def _echo_info(entry: dict[str, Any]) -> None:
    click.echo(f"name:       {entry['name']}")
    if "repo" in entry:
        click.echo(f"hub:        {entry['repo']} @ {entry['commit']} ({entry['file']})")
    elif "release" in entry:
        from ..host import mirror

        click.echo(f"mirror:     diffusers' community mirror, v{entry['release']}/{entry['name']}.py"
                   f"  class {entry.get('class') or '?'}")
        click.echo("trust:      pinned in pipeyard's registry: runs without a flag at exactly this sha256")
        if f"v{entry['release']}" != mirror.default_folder():
            click.echo(f"note:       pipeyard follows diffusers {mirror.default_folder()[1:]}; pass custom_revision=\"{entry['release']}\"")
    else:
        click.echo(f"file:       community/{entry['file']}  class {entry['class']}")
    click.echo(f"summary:    {entry['summary']}")
    click.echo(f"tags:       {', '.join(entry['tags']) or '-'}")
    click.echo(f"sha256:     {entry['sha256']}")
    click.echo(f"added in:   pipeyard {entry['added-in']}")
    click.echo(f"diffusers:  {diffusers_compatibility(entry)}")
    components = entry.get("components", [])
    click.echo("components: " + (", ".join(_component_text(c) for c in components) or "-"))
    click.echo("dependencies:")
    core = [f"pipeyard{entry['requires-core']}"] if "requires-core" in entry else []
    for requirement in [*entry.get("dependencies", []), *core]:
        click.echo(f"  {requirement:<28} {dependency_status(requirement)}")


def _component_text(component: dict[str, Any]) -> str:
    text = component["name"] + (f" ({component['type']})" if component["type"] else "")
    return text + (" optional" if component["optional"] else "")


@click.command()
@click.argument("name")
def info(name: str) -> None:
    """Everything the registry knows of NAME, whether its dependencies are installed, and usage."""
    entry = find_entry(name)
    _echo_info(entry)
    click.echo("usage (Python):")
    click.echo(textwrap.indent(usage_example(entry), "    "))
    click.echo("usage (command line):")
    click.echo(textwrap.indent(command_line_usage(entry), "    "))


# --------------------------------------------------------------------------- registry group


@click.group("registry")
def registry_group() -> None:
    """Build or check registry/index.json of a source checkout (the current folder or --root)."""


@registry_group.command()
@root_option
@click.option("--fetch-mirror", is_flag=True,
              help="Read new [[mirror]] pins from diffusers' mirror to check them (network; nothing runs).")
def build(root: Path, fetch_mirror: bool) -> None:
    """Regenerate ROOT/registry/index.json from ROOT/community/*.py and ROOT/registry/hub.toml."""
    checkout = find_checkout(root, registry=True)
    index = registry.write_index(checkout.community, checkout.index, checkout.hub_file, fetch_mirror=fetch_mirror)
    click.echo(f"wrote {index}")


@registry_group.command()
@root_option
@click.option("--tests-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where community tests live (default: ROOT/tests).")
def check(root: Path, tests_dir: Path | None) -> None:
    """Fail on a stale index, a community file failing `pipeyard verify`, or one without a test."""
    checkout = find_checkout(root, registry=True)
    problems = registry.check_registry(checkout.community, checkout.index, tests_dir or checkout.tests,
                                       checkout.hub_file)
    for problem in problems:
        click.echo(problem)
    if problems:
        click.echo(f"registry check: {len(problems)} problem(s)", err=True)
        click.get_current_context().exit(1)
    click.echo("registry check: index up to date, every community file verified and tested")
