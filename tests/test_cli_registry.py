"""`pipeyard list | search | info | registry build | registry check`, and the index format."""

from __future__ import annotations

import ast
import json

import jsonschema
import pytest

import pipeyard
from pipeyard import errors, registry
from pipeyard._bundled import bundled_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SHA = "ab" * 32


def _hub_toml(tmp_path, **fields):
    entry = {"name": "fancy_pipe", "repo": "alice/fancy-pipe", "commit": COMMIT, "sha256": SHA,
             "summary": "Fancy sampling on the Hub.", "tags": ["hub", "fancy"], **fields}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in entry.items())
    path = tmp_path / "hub.toml"
    path.write_text(f"[[pipeline]]\n{body}\n", encoding="utf-8")
    return path


def _schema():
    return json.loads((bundled_dir("registry") / "schema.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- list / search / info


def test_list_shows_every_community_pipeline_with_its_summary(invoke):
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("one_step_unet ") and "One UNet forward" in line for line in lines)
    assert any(line.startswith("clip_guided_stable_diffusion ") for line in lines)


def test_search_matches_every_word_in_name_summary_or_tags(invoke):
    assert invoke("search", "CLIP").output.splitlines()[0].startswith("clip_guided_stable_diffusion")
    found = invoke("search", "unconditional", "timestep").output
    assert "one_step_unet" in found and "clip_guided" not in found
    assert invoke("search", "no-such-word").output.strip() == "no pipelines"


def test_info_shows_components_dependencies_and_usage(invoke):
    result = invoke("info", "one_step_unet")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "class UnetSchedulerOneForwardPipeline" in out
    assert "components: unet (UNet2DModel), scheduler (DDPMScheduler)" in out
    assert "torch>=2.1" in out and "installed 2." in out
    assert "added in:   pipeyard 0.1.0" in out
    assert "diffusers:  written for pipeyard (imports no diffusers)" in out
    assert 'custom_pipeline="one_step_unet"' in out
    assert "pipeyard run one_step_unet --model PATH_OR_REPO" in out


@pytest.mark.parametrize(("name", "usage"), [
    ("lpw_stable_diffusion", 'pipeyard run lpw_stable_diffusion --model PATH_OR_REPO --prompt "a photo of a cat"'),
    ("interpolate_stable_diffusion", "pipeyard run interpolate_stable_diffusion --model PATH_OR_REPO --prompt"),
    ("one_step_unet", "(PATH_OR_REPO: a folder or Hub repo whose model_index.json has unet, scheduler)"),
    ("img2img_stable_diffusion", "`pipeyard run` cannot run it: its __call__ needs image, which the command "
                                 "line does not supply; use it from Python (above)"),
])
def test_info_prints_a_command_line_that_works_for_the_pipeline_or_what_it_needs(invoke, name, usage):
    result = invoke("info", name)
    assert result.exit_code == 0, result.output
    command_line = result.output.split("usage (command line):\n", 1)[1]
    assert usage in command_line


def test_info_of_a_hub_entry_shows_the_pin_and_needs_trust(invoke, monkeypatch, tmp_path):
    index = registry.build_index(hub_file=_hub_toml(tmp_path, dependencies=["surely-not-installed-pkg"]))
    monkeypatch.setattr(registry, "read_index", lambda path=None: index)
    assert "fancy_pipe" in invoke("list").output and "hub:alice/fancy-pipe" in invoke("search", "fancy").output
    out = invoke("info", "fancy_pipe").output
    assert f"hub:        alice/fancy-pipe @ {COMMIT} (pipeline.py)" in out
    assert "surely-not-installed-pkg     not installed" in out
    assert "diffusers:  not checked: the file is not in the module store yet" in out
    assert f'custom_pipeline="alice/fancy-pipe", custom_revision="{COMMIT}"' in out
    assert "--trust-remote-code" in out


def test_info_of_an_unknown_name_lists_the_known_ones(invoke):
    result = invoke("info", "nope")
    assert result.exit_code == 1
    assert result.output.startswith("PipelineNotFoundError: custom pipeline 'nope' was not found")
    assert "one_step_unet" in result.output and "Traceback" not in result.output


def test_verbose_shows_the_traceback(invoke):
    result = invoke("--verbose", "info", "nope")
    assert result.exit_code == 1
    assert isinstance(result.exception, errors.PipelineNotFoundError)


# --------------------------------------------------------------------------- the index


def test_committed_index_validates_against_the_schema():
    jsonschema.validate(registry.read_index(), _schema())


def test_an_index_with_hub_entries_validates_and_keeps_them_out_of_bundled_code(tmp_path):
    index = registry.build_index(hub_file=_hub_toml(tmp_path))
    jsonschema.validate(index, _schema())
    assert [e["name"] for e in index["hub"]] == ["fancy_pipe"]
    assert SHA not in {e["sha256"] for e in index["pipelines"]}  # listed is not trusted
    assert index["hub"][0]["tags"] == ["fancy", "hub"] and index["hub"][0]["file"] == "pipeline.py"


@pytest.mark.parametrize("field, value", [("commit", "main"), ("sha256", "abc"), ("repo", "no-owner"), ("file", "x.py")])
def test_a_malformed_hub_entry_is_refused_with_its_field(tmp_path, field, value):
    with pytest.raises(errors.ConfigFileError, match=f"'fancy_pipe': {field} = '{value}'"):
        registry.read_hub_sources(_hub_toml(tmp_path, **{field: value}))


def test_components_come_from_init_parameters_without_import():
    tree = ast.parse(
        "class P(DiffusionPipeline):\n"
        "    def __init__(self, unet: UNet2DModel, scheduler, safety_checker: Checker | None = None,\n"
        "                 requires_safety_checker: bool = True, *, vae: 'AutoencoderKL' = None):\n"
        "        pass\n"
    )
    assert registry.init_components(tree, "P") == [
        {"name": "unet", "type": "UNet2DModel", "optional": False},
        {"name": "scheduler", "type": None, "optional": False},
        {"name": "safety_checker", "type": "Checker | None", "optional": True},
        {"name": "vae", "type": "'AutoencoderKL'", "optional": True},
    ]
    assert registry.init_components(ast.parse("class Q(P):\n    pass\n"), "Q") == []


def test_added_in_is_kept_across_rebuilds_and_new_entries_get_this_version(tmp_path, community_text):
    community = tmp_path / "community"
    community.mkdir()
    (community / "old_pipe.py").write_text(community_text(name="old_pipe"))
    index = tmp_path / "index.json"
    registry.write_index(community, index, hub_file=tmp_path / "none.toml")
    data = json.loads(index.read_text())
    data["pipelines"][0]["added-in"] = "0.0.9"
    index.write_text(registry.render_index(data))
    (community / "new_pipe.py").write_text(community_text(name="new_pipe"))
    assert registry.stale_entries(community, index, tmp_path / "none.toml") == ["new_pipe"]
    registry.write_index(community, index, hub_file=tmp_path / "none.toml")
    added = {e["name"]: e["added-in"] for e in registry.read_index(index)["pipelines"]}
    assert added == {"old_pipe": "0.0.9", "new_pipe": pipeyard.__version__}


# --------------------------------------------------------------------------- registry build / check


CHECKOUT = bundled_dir("community").parent  # the source checkout these tests run from


def test_registry_check_passes_on_this_checkout(invoke):
    result = invoke("registry", "check", "--root", CHECKOUT)
    assert result.exit_code == 0, result.output
    assert "index up to date, every community file verified and tested" in result.output


def _copy_of_this_checkout(tmp_path):
    import shutil

    root = tmp_path / "checkout"
    for folder in ("community", "registry"):
        shutil.copytree(CHECKOUT / folder, root / folder)
    return root


def test_registry_build_writes_what_check_expects(invoke, tmp_path):
    root = _copy_of_this_checkout(tmp_path)
    committed = registry.read_index()
    result = invoke("registry", "build", "--root", root)
    target = root / "registry" / "index.json"
    assert result.exit_code == 0 and f"wrote {target}" in result.output
    assert registry.stale_entries(root / "community", target, root / "registry" / "hub.toml") == []
    built = {e["name"]: e for e in registry.read_index(target)["pipelines"]}
    for entry in committed["pipelines"]:  # added-in is carried over from the committed index
        assert built.get(entry["name"], entry)["added-in"] == entry["added-in"]


@pytest.mark.parametrize("command", ["build", "check"])
def test_registry_commands_outside_a_checkout_refuse_and_write_nothing(invoke, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    index_before = registry.index_path().read_bytes()
    result = invoke("registry", command)
    assert result.exit_code == 1
    assert result.output.startswith(
        "CheckoutNotFoundError: . is not a pipeyard source checkout (it has no community/ folder); run the "
        "command from the checkout's root folder or pass --root PATH_TO_CHECKOUT"
    )
    assert list(tmp_path.iterdir()) == [] and registry.index_path().read_bytes() == index_before
    (tmp_path / "community").mkdir()
    result = invoke("registry", command, "--root", tmp_path)
    assert result.exit_code == 1 and "(it has no registry/ folder)" in result.output
    assert isinstance(errors.CheckoutNotFoundError(".", "x"), FileNotFoundError)


def test_new_and_registry_build_mean_the_same_community_folder(invoke, tmp_path, monkeypatch):
    root = _copy_of_this_checkout(tmp_path)
    (root / "tests").mkdir()
    monkeypatch.chdir(root)
    created = invoke("new", "my_sampler")
    assert created.exit_code == 0, created.output
    assert "pipeyard registry build   # adds it" in created.output  # the current folder: no --root
    assert invoke("registry", "build").exit_code == 0
    names = [e["name"] for e in registry.read_index(root / "registry" / "index.json")["pipelines"]]
    assert "my_sampler" in names
    assert registry.stale_entries(root / "community", root / "registry" / "index.json",
                                  root / "registry" / "hub.toml") == []


def _checkout_with(contributor_checkout, community_text, *, text=None, test=True):
    (contributor_checkout / "community" / "demo_pipe.py").write_text(text or community_text())
    if test:
        (contributor_checkout / "tests" / "test_community_demo_pipe.py").write_text("")
    index = contributor_checkout / "index.json"
    registry.write_index(contributor_checkout / "community", index, hub_file=contributor_checkout / "hub.toml")
    return index


def _check(checkout, index, hub=None):
    return registry.check_registry(checkout / "community", index, checkout / "tests", hub or checkout / "hub.toml")


def test_registry_check_fails_on_a_stale_index(contributor_checkout, community_text):
    index = _checkout_with(contributor_checkout, community_text)
    assert _check(contributor_checkout, index) == []
    (contributor_checkout / "community" / "demo_pipe.py").write_text(community_text() + "\n# edited\n")
    assert _check(contributor_checkout, index) == [f"{index}: stale entry 'demo_pipe'; run `pipeyard registry build`"]


def test_registry_check_fails_on_a_community_file_without_a_test(contributor_checkout, community_text):
    index = _checkout_with(contributor_checkout, community_text, test=False)
    [problem] = _check(contributor_checkout, index)
    assert "demo_pipe.py:1: error: no test found for 'demo_pipe'" in problem


def test_registry_check_fails_on_a_file_failing_verification(contributor_checkout, community_text):
    index = _checkout_with(contributor_checkout, community_text)
    bad = community_text(body="\n\nclass Second(DemoPipeline):\n    pass\n")
    (contributor_checkout / "community" / "demo_pipe.py").write_text(bad)
    problems = _check(contributor_checkout, index)
    assert problems[0].startswith("cannot build the index: pipeline file")
    assert len(problems) == 3 and all("is one of 2 DiffusionPipeline subclasses" in p for p in problems[1:])


def test_registry_check_checks_hub_entries_offline(contributor_checkout, community_text, tmp_path):
    from pipeyard.host import cache, resolution_record_key
    from pipeyard.host.resolve import Source, SourceKind

    hub = _hub_toml(tmp_path, name="demo_pipe")
    index = _checkout_with(contributor_checkout, community_text)
    registry.write_index(contributor_checkout / "community", index, hub_file=hub)
    assert _check(contributor_checkout, index, hub) == ["hub entry 'demo_pipe' has the name of a community pipeline"]

    hub = _hub_toml(tmp_path)
    registry.write_index(contributor_checkout / "community", index, hub_file=hub)
    assert _check(contributor_checkout, index, hub) == []  # never fetched: nothing to compare offline
    key = resolution_record_key(Source(SourceKind.HUB, "alice/fancy-pipe", "pipeline.py", COMMIT))
    cache.write_record(key, cache.ResolutionRecord(COMMIT, "cd" * 32, "hub"))
    [problem] = _check(contributor_checkout, index, hub)
    assert problem == f"hub entry 'fancy_pipe' (alice/fancy-pipe@{COMMIT[:12]}): the pinned sha256 {SHA} " \
                      f"differs from the fetched content {'cd' * 32}"
