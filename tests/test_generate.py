"""``pipeyard.generate`` with the local engine: items, resume, manifest integrity, pinning, CLI.

The model is the shipped demo model (a 16x16 unconditional UNet2DModel + DDPM scheduler); the
pipelines are the bundled ``ddim_noise_comparative_analysis`` (returns ``.images``) and
``one_step_unet`` (returns a bare tensor). The Ray engine has its own module
(tests/test_generate_ray.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import pipeyard
from pipeyard import errors

DDIM = "ddim_noise_comparative_analysis"
FAST = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeyard.demo import copy_demo_model

    folder = tmp_path_factory.mktemp("generate") / "demo-model"
    copy_demo_model(folder)
    return folder


def run(model: Path, out: Path, **kwargs):
    kwargs.setdefault("custom_pipeline", DDIM)
    kwargs.setdefault("threads", 1)
    return pipeyard.generate(model, out, progress=False, **kwargs)


def manifest_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def image_shas(out: Path) -> dict[str, str]:
    return {row["id"]: row["image_sha256"] for row in manifest_rows(out)}


def assert_folder_intact(out: Path, expected_ids: set[str]) -> None:
    """One row per item, no duplicates; every image whole, matching its row; no temp files."""
    rows = manifest_rows(out)
    assert sorted(row["id"] for row in rows) == sorted(expected_ids)
    for row in rows:
        data = (out / row["file"]).read_bytes()
        assert len(data) == row["bytes"] and hashlib.sha256(data).hexdigest() == row["image_sha256"]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i}.png" for i in expected_ids)


# --------------------------------------------------------------------------- making images


def test_grid_makes_one_png_and_manifest_row_per_item(demo_model: Path, tmp_path: Path) -> None:
    summary = run(demo_model, tmp_path / "out", seeds=[0, 1], schedulers=[None, "DDIMScheduler"], keywords=FAST)

    assert (summary.total, summary.done, summary.skipped, summary.failed) == (4, 4, 0, {})
    rows = manifest_rows(tmp_path / "out")
    assert_folder_intact(tmp_path / "out", {row["id"] for row in rows})
    row = rows[0]
    assert row["pipeline"]["name"] == DDIM and len(row["pipeline"]["sha256"]) == 64
    assert row["model"]["revision"].startswith("sha256:") and row["worker"] and row["seconds"] >= 0
    assert row["scheduler"]["class"] == "DDIMScheduler" and "num_train_timesteps" in row["scheduler"]["config"]
    from PIL import Image

    with Image.open(tmp_path / "out" / row["file"]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"


def test_the_image_is_what_the_pipeline_makes_with_the_items_seed(demo_model: Path, tmp_path: Path) -> None:
    import torch
    from PIL import Image

    run(demo_model, tmp_path / "out", items=[{"id": "a", "seed": 7, **FAST}])
    pipe = pipeyard.DiffusionPipeline.from_pretrained(demo_model, custom_pipeline=DDIM)
    expected = pipe(generator=torch.Generator().manual_seed(7), output_type="np", **FAST).images[0]

    written = np.asarray(Image.open(tmp_path / "out" / "images" / "a.png"))
    assert np.array_equal(written, (expected * 255).round().astype(np.uint8))


def test_an_image_depends_on_its_item_only_not_on_batch_or_order(demo_model: Path, tmp_path: Path) -> None:
    rows = [{"seed": seed, **FAST} for seed in range(5)]
    run(demo_model, tmp_path / "a", items=rows, batch_size=1)
    run(demo_model, tmp_path / "b", items=rows[::-1], batch_size=3)

    assert image_shas(tmp_path / "a") == image_shas(tmp_path / "b")
    assert len(set(image_shas(tmp_path / "a").values())) == 5  # different seeds, different images


def test_a_pipeline_returning_a_bare_tensor_is_saved_too(demo_model: Path, tmp_path: Path) -> None:
    summary = run(demo_model, tmp_path / "out", seeds=[0, 1], custom_pipeline="one_step_unet")

    assert summary.done == 2
    assert manifest_rows(tmp_path / "out")[0]["pipeline"]["class"] == "UnetSchedulerOneForwardPipeline"


def test_the_built_in_pipeline_named_by_model_index_runs_without_custom_pipeline(
    demo_model: Path, tmp_path: Path
) -> None:
    summary = pipeyard.generate(demo_model, tmp_path / "out", seeds=[3], keywords=FAST, progress=False)

    assert summary.done == 1
    assert manifest_rows(tmp_path / "out")[0]["pipeline"] == {"class": "DDPMPipeline", "sha256": None}


def test_workers_hand_back_uint8_arrays_not_pil_images(demo_model: Path) -> None:
    from pipeyard.batch.pinning import pin_job
    from pipeyard.batch.worker import GenerateWorker

    pinned, _ = pin_job(demo_model, custom_pipeline=DDIM)
    worker = GenerateWorker(pinned, threads=1)
    request = json.dumps({"seed": 1, "scheduler": None, "keywords": FAST, "output_type": "np"})

    out = worker({"id": ["a", "b"], "hash": ["h1", "h2"], "request": [request, request]})

    assert out["image"].dtype == np.uint8 and out["image"].shape == (2, 16, 16, 3)
    assert np.array_equal(out["image"][0], out["image"][1])  # same seed, same image
    assert list(out["error"]) == ["", ""] and list(out["id"]) == ["a", "b"]


def test_the_progress_bar_shows_images_per_second(demo_model: Path, tmp_path: Path, capsys) -> None:
    pipeyard.generate(demo_model, tmp_path / "out", seeds=[0, 1], custom_pipeline=DDIM, keywords=FAST, threads=1)

    err = capsys.readouterr().err
    assert "generate" in err and "2/2" in err and "img/s" in err


def test_a_failing_item_is_reported_with_its_reason_and_the_others_finish(demo_model: Path, tmp_path: Path) -> None:
    summary = run(demo_model, tmp_path / "out", items=[{"id": "ok", "seed": 1, **FAST},
                                                       {"id": "bad", "seed": 2, "num_inference_steps": 0}])

    assert summary.done == 1 and list(summary.failed) == ["bad"]
    assert "InferenceStepsError" in summary.failed["bad"]
    assert any("failed bad" in line for line in summary.lines())
    assert [row["id"] for row in manifest_rows(tmp_path / "out")] == ["ok"]


# --------------------------------------------------------------------------- resume


def test_rerun_skips_finished_items_and_never_rewrites_them(demo_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(demo_model, out, seeds=[0, 1, 2], keywords=FAST)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}

    summary = run(demo_model, out, seeds=[0, 1, 2, 3, 4], keywords=FAST)

    assert (summary.done, summary.skipped) == (2, 3)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert all(after[name] == stamp for name, stamp in before.items())
    assert_folder_intact(out, set(image_shas(out)))
    assert len(image_shas(out)) == 5


def test_a_finished_id_asked_again_with_other_settings_is_refused(demo_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(demo_model, out, items=[{"id": "cat", "seed": 1, **FAST}])
    image = (out / "images" / "cat.png").read_bytes()

    with pytest.raises(errors.ItemConflictError) as caught:
        run(demo_model, out, items=[{"id": "cat", "seed": 2, **FAST}])

    assert "'cat'" in str(caught.value) and "changed: seed" in str(caught.value) and "new id" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert (out / "images" / "cat.png").read_bytes() == image


def test_another_pipeline_on_the_same_folder_is_a_conflict_not_a_mix(demo_model: Path, tmp_path: Path) -> None:
    run(demo_model, tmp_path / "out", seeds=[0], keywords={})

    with pytest.raises(errors.ItemConflictError, match="changed: pipeline"):
        run(demo_model, tmp_path / "out", seeds=[0], keywords={}, custom_pipeline="one_step_unet")


def test_a_torn_last_manifest_line_is_dropped_and_its_item_made_again(demo_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(demo_model, out, seeds=[0, 1], keywords=FAST)
    manifest = out / "manifest.jsonl"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) - 40])  # a crash in the middle of the last append

    summary = run(demo_model, out, seeds=[0, 1], keywords=FAST)

    assert (summary.done, summary.skipped) == (1, 1)
    assert_folder_intact(out, set(image_shas(out)))


def test_a_row_whose_image_is_gone_is_made_again(demo_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(demo_model, out, items=[{"id": "x", "seed": 1, **FAST}, {"id": "y", "seed": 2, **FAST}])
    sha = image_shas(out)["x"]
    (out / "images" / "x.png").unlink()

    summary = run(demo_model, out, items=[{"id": "x", "seed": 1, **FAST}, {"id": "y", "seed": 2, **FAST}])

    assert (summary.done, summary.skipped) == (1, 1)
    assert image_shas(out)["x"] == sha
    assert_folder_intact(out, {"x", "y"})


def test_a_damaged_manifest_line_is_refused_with_its_line_number(demo_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(demo_model, out, seeds=[0, 1], keywords=FAST)
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    (out / "manifest.jsonl").write_text("{not json\n" + lines[1])

    with pytest.raises(errors.ManifestError, match=r"manifest.jsonl:1: not JSON") as caught:
        run(demo_model, out, seeds=[0, 1], keywords=FAST)
    assert "move it away" in str(caught.value)


def test_a_second_job_on_a_busy_output_folder_is_refused(demo_model: Path, tmp_path: Path) -> None:
    from filelock import FileLock

    (tmp_path / "out").mkdir()
    with FileLock(str(tmp_path / "out" / ".generate.lock")):
        with pytest.raises(errors.OutputBusyError, match="another pipeyard generate job") as caught:
            run(demo_model, tmp_path / "out", seeds=[0], keywords=FAST)
    assert isinstance(caught.value, BlockingIOError)


DRIVER = textwrap.dedent("""
    import sys
    import pipeyard
    pipeyard.generate(sys.argv[1], sys.argv[2], seeds=range(int(sys.argv[3])), threads=1, batch_size=1,
                      custom_pipeline="ddim_noise_comparative_analysis", keywords={"num_inference_steps": 8},
                      progress=False)
""")


def test_driver_killed_mid_job_then_rerun_gives_the_complete_set_once(demo_model: Path, tmp_path: Path) -> None:
    out, count = tmp_path / "out", 24
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(demo_model), str(out), str(count)], env=env)
    try:
        _wait_for_rows(out / "manifest.jsonl", 3, driver)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finished_before = len(manifest_rows(out))
    assert finished_before < count, "the driver finished before it was killed; make the job longer"

    summary = run(demo_model, out, seeds=range(count), keywords={"num_inference_steps": 8})

    assert summary.skipped >= finished_before - 1 and summary.done + summary.skipped == count
    assert_folder_intact(out, set(image_shas(out)))
    reference = run(demo_model, tmp_path / "reference", seeds=range(count), keywords={"num_inference_steps": 8})
    assert reference.done == count and image_shas(tmp_path / "reference") == image_shas(out)


def _wait_for_rows(manifest: Path, rows: int, driver: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        if manifest.is_file() and manifest.read_text().count("\n") >= rows:
            return
        time.sleep(0.02)
    pytest.fail(f"the driver wrote fewer than {rows} rows (exit status {driver.poll()})")


# --------------------------------------------------------------------------- items


def test_items_file_rows_take_shorthands_and_any_keyword(demo_model: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "one", "seed": 1, "steps": 2}\n\n{"seed": 2, "steps": 2, "eta": 0.5}\n')

    summary = run(demo_model, tmp_path / "out", items=items)

    rows = {row["id"]: row for row in manifest_rows(tmp_path / "out")}
    assert summary.done == 2 and "one" in rows
    other = next(row for key, row in rows.items() if key != "one")
    assert other["id"].startswith("item-")
    assert other["determinants"]["request"]["keywords"] == {"eta": 0.5, "num_inference_steps": 2}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "items.jsonl:1: not a JSON object"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"prompt": "a cat"}', "seed must be an integer"),
        ('{"seed": -1}', "seed must be an integer"),
        ('{"seed": 1, "seed": 2}', "key 'seed' is given twice"),
        ('{"seed": 1, "generator": 3}', "generator is set by the engine"),
        ('{"seed": 1, "id": "../escape"}', "cannot name a file"),
        ('{"seed": 1, "size": [0, 8]}', "size must be a positive integer"),
        ('{"seed": 1, "steps": 2, "num_inference_steps": 3}', "are the same keyword"),
    ],
)
def test_a_bad_items_file_row_is_refused_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(line + "\n")

    with pytest.raises(errors.JobSpecError, match="items.jsonl:1") as caught:
        pipeyard.generate("unused-model", tmp_path / "out", items=items, progress=False)
    assert message in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_two_rows_with_one_id_are_refused_naming_both_lines(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "seed": 1}\n{"id": "a", "seed": 2}\n')

    with pytest.raises(errors.DuplicateItemError) as caught:
        pipeyard.generate("unused-model", tmp_path / "out", items=items, progress=False)
    assert "items.jsonl:1" in str(caught.value) and "items.jsonl:2" in str(caught.value)


def test_a_keyword_the_pipeline_does_not_take_is_refused_before_any_image(demo_model: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.JobSpecError) as caught:
        run(demo_model, tmp_path / "out", items=[{"seed": 1, "prompt": "a cat"}])

    assert "items[0]" in str(caught.value) and "takes no prompt" in str(caught.value)
    assert "num_inference_steps" in str(caught.value)  # what it does take
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_an_unknown_scheduler_is_refused_before_any_image(demo_model: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.UnknownSchedulerError, match="NoSuchScheduler"):
        run(demo_model, tmp_path / "out", seeds=[0], schedulers=["NoSuchScheduler"])


def test_an_unknown_dtype_is_refused_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(errors.JobSpecError, match="'float64x' is not a dtype name.*float16"):
        pipeyard.generate("unused", tmp_path / "out", seeds=[0], torch_dtype="float64x", progress=False)


def test_several_local_workers_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(errors.JobSpecError, match='engine="ray"'):
        pipeyard.generate("unused", tmp_path / "out", seeds=[0], workers=2, progress=False)


# --------------------------------------------------------------------------- pinning


def test_a_worker_refuses_code_bytes_that_differ_from_the_pin(demo_model: Path) -> None:
    from dataclasses import replace

    from pipeyard.batch.pinning import load_pinned_pipeline, pin_job

    pinned, _ = pin_job(demo_model, custom_pipeline=DDIM)
    main = pinned.code.main
    tampered = replace(pinned, code=replace(pinned.code, files={main: pinned.code.files[main] + b"\nimport os\n"}))

    with pytest.raises(errors.PinMismatchError, match="pipeline code") as caught:
        load_pinned_pipeline(tampered)
    assert pinned.code.sha256 in str(caught.value) and isinstance(caught.value, PermissionError)


def test_a_worker_refuses_a_model_folder_changed_after_the_pin(tmp_path: Path) -> None:
    from pipeyard.demo import copy_demo_model
    from pipeyard.batch.pinning import load_pinned_pipeline, pin_job

    copy_demo_model(tmp_path / "model")
    pinned, _ = pin_job(tmp_path / "model", custom_pipeline=DDIM)
    config = tmp_path / "model" / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace("1000", "999"))

    with pytest.raises(errors.PinMismatchError, match="model files"):
        load_pinned_pipeline(pinned)


def test_a_worker_loads_the_pinned_bytes_not_the_file_the_name_points_to(demo_model: Path, tmp_path: Path) -> None:
    from pipeyard.batch.pinning import load_pinned_pipeline, pin_job
    from pipeyard.host import provenance

    source = (Path(pipeyard.__file__).parent / "_bundled" / "community" / f"{DDIM}.py")
    if not source.is_file():
        source = Path(__file__).parents[1] / "community" / f"{DDIM}.py"
    local = tmp_path / "my_pipeline.py"
    local.write_bytes(source.read_bytes())
    pinned, _ = pin_job(demo_model, custom_pipeline=str(local))
    local.write_text("raise SystemExit('this must never run')\n")  # the name now points elsewhere

    pipe = load_pinned_pipeline(pinned)

    assert provenance.provenance_of(type(pipe)).sha256 == pinned.code.sha256


def test_a_hub_model_is_pinned_to_the_commit_the_driver_resolved(olah_hub, tmp_path: Path) -> None:
    from pipeyard.demo import BUNDLED_MODEL
    from pipeyard.batch.pinning import load_pinned_pipeline, pin_job

    files = {p.relative_to(BUNDLED_MODEL).as_posix(): p.read_bytes() for p in BUNDLED_MODEL.rglob("*") if p.is_file()}
    repo_id, git = olah_hub.new_repo()
    first = git.commit(files)
    pinned, _ = pin_job(repo_id, custom_pipeline=DDIM)
    config = json.loads(files["scheduler/scheduler_config.json"])
    second = git.commit({"scheduler/scheduler_config.json": json.dumps({**config, "beta_end": 0.5})})  # main moves on

    pipe = load_pinned_pipeline(pinned)

    assert pinned.model.is_hub and pinned.model.revision == first
    assert pipe.scheduler.config.beta_end == config["beta_end"]
    summary = pipeyard.generate(repo_id, tmp_path / "out", seeds=[0], keywords=FAST, custom_pipeline=DDIM,
                                progress=False)
    row = manifest_rows(tmp_path / "out")[0]
    assert summary.done == 1 and row["model"] == {"location": repo_id, "revision": second}
    assert row["scheduler"]["config"]["beta_end"] == 0.5


def test_untrusted_code_named_by_the_model_is_refused_on_the_driver(demo_model: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    (model / "sampler.py").write_text(textwrap.dedent('''
        from pipeyard import DDIMPipeline

        class SamplerPipeline(DDIMPipeline):
            pass
    '''))
    index = json.loads((model / "model_index.json").read_text())
    index["_class_name"] = ["sampler", "SamplerPipeline"]
    (model / "model_index.json").write_text(json.dumps(index))

    with pytest.raises(errors.UntrustedCodeError):
        pipeyard.generate(model, tmp_path / "out", seeds=[0], progress=False)
    assert not (tmp_path / "out").exists()

    summary = pipeyard.generate(model, tmp_path / "out", seeds=[0], keywords=FAST, trust_remote_code=True,
                                progress=False)
    assert summary.done == 1 and manifest_rows(tmp_path / "out")[0]["pipeline"]["class"] == "SamplerPipeline"


# --------------------------------------------------------------------------- API and CLI


def test_pipeyard_generate_is_the_function_even_after_importing_its_package() -> None:
    import inspect

    from pipeyard.batch import GenerateSummary  # the package is pipeyard.batch: no name clash

    assert callable(pipeyard.generate) and "generate" in pipeyard.__all__
    assert "custom_pipeline" in inspect.signature(pipeyard.generate).parameters
    assert GenerateSummary().complete


def test_the_local_engine_imports_no_ray_and_the_package_no_torch(demo_model: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        import pipeyard.batch
        assert "torch" not in sys.modules, "import pipeyard.batch imported torch"
        pipeyard.generate({str(demo_model)!r}, {str(tmp_path / "out")!r}, seeds=[0], threads=1,
                          keywords={{"num_inference_steps": 1}}, progress=False)
        print(sorted(name for name in sys.modules if name == "ray" or name.startswith("ray.")))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert len(manifest_rows(tmp_path / "out")) == 1


def test_cli_generate_prints_the_summary_and_resumes(demo_model: Path, tmp_path: Path, invoke) -> None:
    args = ["generate", demo_model, "--out", tmp_path / "out", "--pipeline", DDIM, "--seeds", "0-1,5",
            "--steps", "2", "--threads", "1", "--no-progress"]

    first = invoke(*args)
    second = invoke(*args)

    assert first.exit_code == 0, first.output
    assert "3 done, 0 skipped" in first.output
    assert "0 done, 3 skipped" in second.output


def test_cli_generate_refuses_items_with_a_grid_and_bad_seeds(demo_model: Path, tmp_path: Path, invoke) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"seed": 1}\n')

    mixed = invoke("generate", demo_model, "--out", tmp_path / "out", "--items", items, "--seeds", "1")
    bad = invoke("generate", demo_model, "--out", tmp_path / "out", "--seeds", "1-x")

    assert mixed.exit_code == 2 and "cannot be combined" in mixed.output
    assert bad.exit_code == 1 and "JobSpecError: --seeds: '1-x'" in bad.output


def test_cli_generate_exits_1_when_an_item_failed(demo_model: Path, tmp_path: Path, invoke) -> None:
    result = invoke("generate", demo_model, "--out", tmp_path / "out", "--pipeline", DDIM, "--seeds", "0",
                    "--set", "num_inference_steps=0", "--no-progress")

    assert result.exit_code == 1 and "1 failed" in result.output and "run the same command again" in result.output
