"""Mirror pins: ``[[mirror]]`` of registry/hub.toml, the index's ``mirror`` list, the CLI views."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import pytest

import pipeyard
import pipeyard._bundled
from pipeyard import errors, registry
from pipeyard.compat import DIFFUSERS_VERSION
from pipeyard.host import cache, load_pipeline_class, resolution_record_key

FOLDER = f"v{DIFFUSERS_VERSION}"
REPAINT = (
    "from diffusers import DiffusionPipeline\n\n\n"
    "class RepaintPipeline(DiffusionPipeline):\n"
    "    def __init__(self, unet=None, scheduler=None):\n"
    "        super().__init__()\n"
)
REPAINT_SHA = hashlib.sha256(REPAINT.encode()).hexdigest()


def _hub_toml(tmp_path, *pins: dict) -> object:
    tables = []
    for pin in pins:
        fields = {"name": "repaint", "release": DIFFUSERS_VERSION, "sha256": REPAINT_SHA,
                  "summary": "Repaint inpainting from diffusers' mirror.", "tags": ["inpainting"], **pin}
        tables.append("[[mirror]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items()))
    path = tmp_path / "hub.toml"
    path.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def registry_dir(tmp_path, monkeypatch):
    """A bundled registry folder the test writes (community files stay the real ones)."""
    real = pipeyard._bundled.bundled_dir
    folder = tmp_path / "registry"
    folder.mkdir()
    (folder / "index.json").write_text((real("registry") / "index.json").read_text(encoding="utf-8"))
    (folder / "schema.json").write_text((real("registry") / "schema.json").read_text(encoding="utf-8"))
    monkeypatch.setattr(pipeyard._bundled, "bundled_dir", lambda kind: folder if kind == "registry" else real(kind))
    return folder


@pytest.fixture
def mirror(olah_hub, monkeypatch):
    repo_id, repo = olah_hub.new_dataset()
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", repo_id)
    return repo


# --------------------------------------------------------------------------- the schema


def test_a_pin_is_indexed_unchecked_until_its_bytes_are_read(tmp_path, registry_dir):
    index = registry.build_index(hub_file=_hub_toml(tmp_path, {}))
    [entry] = index["mirror"]
    assert entry == {"name": "repaint", "release": DIFFUSERS_VERSION, "sha256": REPAINT_SHA,
                     "summary": "Repaint inpainting from diffusers' mirror.", "tags": ["inpainting"],
                     "class": None, "diffusers": None, "added-in": pipeyard.__version__}
    jsonschema.validate(index, json.loads((registry_dir / "schema.json").read_text()))


@pytest.mark.parametrize(("field", "value"), [("release", "main"), ("release", "v0.42.1"), ("sha256", "abc"),
                                              ("name", "../x")])
def test_a_malformed_pin_is_refused_with_its_field(tmp_path, field, value):
    with pytest.raises(errors.ConfigFileError, match=f"{field} = "):
        registry.read_mirror_pins(_hub_toml(tmp_path, {field: value}))


def test_a_pin_with_an_unknown_key_or_twice_the_same_name_is_refused(tmp_path):
    with pytest.raises(errors.ConfigFileError, match="unknown key.*commit"):
        registry.read_mirror_pins(_hub_toml(tmp_path, {"commit": "0" * 40}))
    with pytest.raises(errors.ConfigFileError, match="pins repaint more than once"):
        registry.read_mirror_pins(_hub_toml(tmp_path, {}, {"sha256": "cd" * 32}))


# --------------------------------------------------------------------------- build, check, gate


def test_build_with_fetch_mirror_records_class_and_static_check_then_the_pin_loads_without_a_flag(
    tmp_path, registry_dir, mirror, hub_requests
):
    mirror.commit({f"{FOLDER}/repaint.py": REPAINT})
    hub = _hub_toml(tmp_path, {})
    registry.write_index(path=registry_dir / "index.json", hub_file=hub, fetch_mirror=True)
    [entry] = json.loads((registry_dir / "index.json").read_text())["mirror"]
    assert entry["class"] == "RepaintPipeline"
    assert entry["diffusers"] == "diffusers-written; every name it imports is provided"
    hub_requests.clear()
    registry.write_index(path=registry_dir / "index.json", hub_file=hub, fetch_mirror=True)
    assert hub_requests == []  # a checked pin with the same sha256 is not read again
    assert load_pipeline_class("repaint").__name__ == "RepaintPipeline"  # pinned: no flag


def test_build_refuses_a_mirror_file_that_is_not_the_pinned_one(tmp_path, registry_dir, mirror):
    commit = mirror.commit({f"{FOLDER}/repaint.py": REPAINT + "# changed\n"})
    with pytest.raises(errors.ConfigFileError, match=f"pinned sha256 {REPAINT_SHA}, but .* at commit {commit}"):
        registry.write_index(path=registry_dir / "index.json", hub_file=_hub_toml(tmp_path, {}), fetch_mirror=True)


def test_check_reports_unchecked_clashing_and_changed_pins(tmp_path, contributor_checkout, community_text):
    community = contributor_checkout / "community"
    (community / "demo_pipe.py").write_text(community_text())
    (contributor_checkout / "tests" / "test_community_demo_pipe.py").write_text("")
    index = contributor_checkout / "index.json"
    hub = _hub_toml(tmp_path, {}, {"name": "demo_pipe", "sha256": "cd" * 32})
    registry.write_index(community, index, hub_file=hub)
    problems = registry.check_registry(community, index, contributor_checkout / "tests", hub)
    assert "mirror pin 'demo_pipe' has the name of a community pipeline" in problems
    assert any(p.startswith("mirror pin 'repaint'") and "never checked" in p for p in problems)
    key = resolution_record_key(registry.mirror_source({"name": "repaint", "release": DIFFUSERS_VERSION}))
    cache.write_record(key, cache.ResolutionRecord("a" * 40, "ef" * 32, "mirror"))
    problems = registry.check_registry(community, index, contributor_checkout / "tests", hub)
    assert any(f"differs from the file loaded from the mirror {'ef' * 32}" in p for p in problems)


# --------------------------------------------------------------------------- the CLI


def test_list_all_shows_mirror_names_apart_with_their_static_check(invoke, tmp_path, registry_dir, mirror):
    mirror.commit({f"{FOLDER}/repaint.py": REPAINT, f"{FOLDER}/other.py": REPAINT.replace("Repaint", "Other")})
    registry.write_index(path=registry_dir / "index.json", hub_file=_hub_toml(tmp_path, {}), fetch_mirror=True)
    load_pipeline_class("other", trust_remote_code=True)
    plain = invoke("list").output
    assert "repaint" not in plain and "one_step_unet" in plain
    out = invoke("list", "--all").output
    bundled, _, mirror_part = out.partition("diffusers' community mirror")
    assert "one_step_unet" in bundled and "repaint" not in bundled
    assert f"repaint  {FOLDER}" in mirror_part and "diffusers-written; every name it imports is provided" in mirror_part
    assert "loaded from the mirror before" in mirror_part and "other" in mirror_part


def test_search_and_info_show_a_pin_as_a_mirror_name(invoke, tmp_path, registry_dir):
    registry.write_index(path=registry_dir / "index.json", hub_file=_hub_toml(tmp_path, {}))
    assert f"mirror:{FOLDER}" in invoke("search", "inpainting").output
    out = invoke("info", "repaint").output
    assert f"mirror:     diffusers' community mirror, {FOLDER}/repaint.py" in out
    assert "runs without a flag at exactly this sha256" in out
    assert "diffusers:  not checked" in out
    assert f'custom_pipeline="repaint", custom_revision="{DIFFUSERS_VERSION}"' in out


def test_list_all_says_when_the_mirror_is_off(invoke, monkeypatch):
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", "off")
    assert "diffusers' community mirror: off" in invoke("list", "--all").output


def test_list_all_online_lists_the_mirror_folder_in_one_request(invoke, mirror, hub_requests):
    mirror.commit({f"{FOLDER}/alpha.py": REPAINT, f"{FOLDER}/one_step_unet.py": REPAINT,
                   "v0.1.0/old_only.py": REPAINT})
    result = invoke("list", "--all", "--online")
    assert result.exit_code == 0, result.output
    listing = result.output.partition(f"{FOLDER}/ now")[2]
    assert "  alpha" in listing and "old_only" not in listing
    assert "bundled with pipeyard, so the bundled file is used: one_step_unet" in listing
    assert len([r for r in hub_requests if "/tree/" in r]) == 1 and len(hub_requests) == 1
