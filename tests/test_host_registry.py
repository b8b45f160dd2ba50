"""registry/index.json is generated from community/ and must never go stale."""

from __future__ import annotations

import json

import pytest

from pipeyard import errors, registry
from pipeyard._bundled import bundled_dir
from pipeyard.host.verify import verify_package


def test_index_is_up_to_date_with_community_files():
    stale = registry.stale_entries()
    assert stale == [], f"registry/index.json is stale for {stale}: run `python scripts/build_registry.py`"
    assert registry.index_path().read_text(encoding="utf-8") == registry.render_index(registry.build_index())


@pytest.mark.parametrize("path", sorted(bundled_dir("community").glob("*.py")), ids=lambda p: p.name)
def test_every_community_file_verifies(path):
    info = verify_package({path.name: path.read_bytes()}, path.name, str(path.parent))
    assert info.metadata is not None and info.metadata.requires_core
    assert info.docstring, "community pipelines need a module docstring"


def test_index_entries_follow_the_schema():
    schema = json.loads((bundled_dir("registry") / "schema.json").read_text(encoding="utf-8"))
    item = schema["properties"]["pipelines"]["items"]
    for entry in registry.read_index()["pipelines"]:
        assert set(entry) == set(item["required"])


def test_a_changed_community_file_makes_the_index_stale(tmp_path):
    community = tmp_path / "community"
    community.mkdir()
    (community / "one_step_unet.py").write_bytes((bundled_dir("community") / "one_step_unet.py").read_bytes())
    index = tmp_path / "index.json"
    registry.write_index(community, index)
    assert registry.stale_entries(community, index) == []
    (community / "one_step_unet.py").write_text(
        (community / "one_step_unet.py").read_text() + "\n# edited\n", encoding="utf-8")
    assert registry.stale_entries(community, index) == ["one_step_unet"]


def test_a_community_file_without_a_script_block_is_refused(tmp_path):
    (tmp_path / "bare.py").write_text("from pipeyard import DiffusionPipeline\nclass P(DiffusionPipeline):\n    pass\n")
    with pytest.raises(errors.PipelineVerificationError, match="script"):
        registry.build_index(tmp_path)
