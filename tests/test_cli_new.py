"""`pipeyard new NAME`: the scaffold passes `pipeyard verify`, `registry check` and pytest as generated."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeyard import registry


def test_new_scaffold_passes_verify_registry_check_and_its_own_test(invoke, contributor_checkout, tmp_path):
    result = invoke("new", "my_sampler", "--root", contributor_checkout)
    assert result.exit_code == 0, result.output
    pipeline = contributor_checkout / "community" / "my_sampler.py"
    test = contributor_checkout / "tests" / "community" / "test_my_sampler.py"
    assert f"wrote {pipeline} (class MySamplerPipeline)" in result.output and f"wrote {test}" in result.output

    verified = invoke("verify", pipeline)
    assert verified.exit_code == 0 and verified.output.strip() == f"{pipeline}: ok", verified.output

    index = contributor_checkout / "index.json"
    registry.write_index(contributor_checkout / "community", index, hub_file=tmp_path / "none.toml")
    [entry] = registry.read_index(index)["pipelines"]
    assert entry["class"] == "MySamplerPipeline"
    assert [c["name"] for c in entry["components"]] == ["unet", "scheduler"]
    assert registry.check_registry(contributor_checkout / "community", index, contributor_checkout / "tests",
                                   tmp_path / "none.toml") == []

    (contributor_checkout / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    env = {**os.environ, "PIPEYARD_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(test)],
        cwd=contributor_checkout, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_new_refuses_to_overwrite_and_writes_nothing(invoke, contributor_checkout):
    (contributor_checkout / "tests" / "community").mkdir()
    existing = contributor_checkout / "tests" / "community" / "test_taken.py"
    existing.write_text("# mine\n")
    result = invoke("new", "taken", "--root", contributor_checkout)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"PipelineFileExistsError: {existing} exists already; pick another name or delete the file first"
    )
    assert not (contributor_checkout / "community" / "taken.py").exists()
    assert existing.read_text() == "# mine\n"


@pytest.mark.parametrize("name", ["MyPipe", "my-pipe", "1pipe", "class", "../evil"])
def test_new_refuses_names_that_are_not_lowercase_identifiers(invoke, contributor_checkout, name):
    result = invoke("new", name, "--root", contributor_checkout)
    assert result.exit_code == 1
    assert result.output.startswith(f"InvalidPipelineNameError: name {name!r} is not valid: use a lowercase")
    assert list((contributor_checkout / "community").iterdir()) == []


def test_new_outside_a_checkout_refuses_and_writes_nothing(invoke, tmp_path):
    result = invoke("new", "my_sampler", "--root", tmp_path)
    assert result.exit_code == 1
    assert result.output.startswith(f"CheckoutNotFoundError: {tmp_path} is not a pipeyard source checkout "
                                    f"(it has no community/ folder)")
    assert "pass --root PATH_TO_CHECKOUT" in result.output and list(tmp_path.iterdir()) == []


def test_the_scaffold_draws_noise_with_randn_tensor_and_validates_its_inputs(invoke, contributor_checkout):
    assert invoke("new", "checked", "--root", contributor_checkout).exit_code == 0
    text = (contributor_checkout / "community" / "checked.py").read_text()
    assert "randn_tensor(shape, generator=generator" in text and "torch.randn(" not in text
    assert "batch_size must be a positive integer" in text
    test = (contributor_checkout / "tests" / "community" / "test_checked.py").read_text()
    assert "def test_checked_refuses_unusable_inputs_before_any_work" in test


def test_class_names_do_not_double_the_pipeline_suffix():
    from pipeyard.cli.scaffold import class_name_for

    assert class_name_for("fast_pipeline") == "FastPipeline"
    assert class_name_for("img2img_x") == "Img2imgXPipeline"
