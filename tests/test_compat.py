"""diffusers-written files on pipeyard's runtime: the scoped import mapping, the layout table
checked against the real diffusers (the oracle), and the static compatibility check."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from pipeyard import errors
from pipeyard.compat import DIFFUSERS_VERSION, layout, modules
from pipeyard.host import load_pipeline_class

_DIFFUSERS_STYLE = textwrap.dedent(
    '''
    """A pipeline written for diffusers: every import names diffusers."""
    import torch
    import diffusers
    import diffusers.utils.torch_utils
    from diffusers import DiffusionPipeline
    from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
    from diffusers.utils.torch_utils import randn_tensor as draw
    from diffusers.schedulers import scheduling_ddpm as ddpm_module


    class NoisyUnet(DiffusionPipeline):
        def __init__(self, unet, scheduler):
            super().__init__()
            self.register_modules(unet=unet, scheduler=scheduler)

        @torch.no_grad()
        def __call__(self, seed: int = 0):
            size = self.unet.config.sample_size
            shape = (1, self.unet.config.in_channels, size, size)
            noise = draw(shape, generator=torch.Generator().manual_seed(seed))
            assert diffusers.utils.torch_utils.randn_tensor is draw
            assert isinstance(self.scheduler, ddpm_module.DDPMScheduler)
            return ImagePipelineOutput(images=self.unet(noise, 3).sample), diffusers.__version__
    '''
)

_RUN = textwrap.dedent(
    '''
    import importlib.abc, sys
    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "diffusers":
                raise ImportError("diffusers is not installed here")
    if sys.argv[3] == "blocked":
        sys.meta_path.insert(0, Blocked())
    else:
        import diffusers
        real = diffusers.DiffusionPipeline
    import torch
    from pipeyard import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(sys.argv[1], custom_pipeline=sys.argv[2])
    output, version = pipe(seed=1)
    torch.save(output.images, sys.argv[2] + "." + sys.argv[3] + ".pt")
    ours = [m for m in sys.modules if m.split(".")[0] == "diffusers"]
    if sys.argv[3] == "blocked":
        assert ours == [], ours
    else:
        assert diffusers.DiffusionPipeline is real and real.__module__.startswith("diffusers.")
        assert sys.modules["diffusers"] is diffusers
    print(type(pipe).__name__, version)
    '''
)


def test_a_diffusers_written_file_runs_with_and_without_diffusers_installed(tiny_ddpm_folder, tmp_path):
    """Its diffusers imports are pipeyard's classes, for that module only: nothing named diffusers
    enters sys.modules, and a real diffusers in the same process is untouched."""
    import torch

    path = tmp_path / "noisy.py"
    path.write_text(_DIFFUSERS_STYLE)
    results = {}
    for mode in ("blocked", "real"):
        done = subprocess.run(
            [sys.executable, "-c", _RUN, str(tiny_ddpm_folder), str(path), mode], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["NoisyUnet", DIFFUSERS_VERSION]
        results[mode] = torch.load(f"{path}.{mode}.pt")
    assert torch.equal(results["blocked"], results["real"])


def test_the_mapping_is_scoped_to_hosted_modules(write_pipeline, pipeline_text):
    diffusers = pytest.importorskip("diffusers")
    path = write_pipeline(text=_DIFFUSERS_STYLE)
    cls = load_pipeline_class(str(path))
    from pipeyard import DiffusionPipeline

    assert issubclass(cls, DiffusionPipeline) and not issubclass(cls, diffusers.DiffusionPipeline)
    assert sys.modules["diffusers"] is diffusers
    assert "pipeyard.compat.diffusers" in sys.modules and "diffusers.pipelines.pipeline_utils" not in {
        name for name, module in sys.modules.items() if module is sys.modules["pipeyard.compat.diffusers"]
    }


@pytest.mark.parametrize("path", sorted(layout.MODULES))
def test_every_mapped_name_is_real_in_diffusers_and_ours_in_pipeyard(path):
    """The layout is facts: each name exists at that path in diffusers 0.42.1, and the view
    serves pipeyard's own object for it."""
    diffusers_module = importlib.import_module(path)
    modules.install()
    view = importlib.import_module(modules.view_name(path))
    for name in layout.MODULES[path]:
        assert hasattr(diffusers_module, name), f"{path}.{name} is not in diffusers"
        target = layout.TARGETS[name]
        assert target.startswith("pipeyard."), (path, name, target)
        module, _, attribute = target.partition(":")
        expected = importlib.import_module(module)
        assert getattr(view, name) is (getattr(expected, attribute) if attribute else expected), (path, name)


def test_a_name_pipeyard_lacks_is_refused_before_anything_runs(write_pipeline, tmp_path):
    marker = tmp_path / "ran.txt"
    text = textwrap.dedent(
        f'''
        open({str(marker)!r}, "w").close()
        import diffusers
        from diffusers import DiffusionPipeline, StableDiffusionXLPipeline, ControlNetModel
        from diffusers.models.not_a_module import Thing


        class P(DiffusionPipeline):
            def __call__(self):
                return diffusers.FluxPipeline, diffusers.models.UNet2DModel
        '''
    )
    path = write_pipeline(text=text)
    with pytest.raises(errors.DiffusersCompatibilityError) as caught:
        load_pipeline_class(str(path))
    missing = [(line, name) for _, line, name in caught.value.missing]
    assert missing == [
        (4, "diffusers.ControlNetModel"), (4, "diffusers.StableDiffusionXLPipeline"),
        (5, "diffusers.models.not_a_module"), (10, "diffusers.FluxPipeline"),
    ]
    for part in ("StableDiffusionXLPipeline", "pipeline.py:4", "Stable Diffusion 1.x/2.x", "docs/compatibility.md"):
        assert part in str(caught.value)
    assert not marker.exists()


def test_pipeyard_verify_reports_the_same(invoke, write_pipeline):
    path = write_pipeline(text="from diffusers import DiffusionPipeline, ControlNetModel\n\n\n"
                               "class P(DiffusionPipeline):\n    pass\n")
    result = invoke("verify", path, "--no-test-check")
    assert result.exit_code == 1 and "diffusers.ControlNetModel" in result.output


def test_optional_diffusers_imports_may_be_missing(write_pipeline):
    text = textwrap.dedent(
        '''
        from diffusers import DiffusionPipeline
        try:
            from diffusers.models.attention_processor import XFormersAttnProcessor
        except ImportError:
            XFormersAttnProcessor = None


        class P(DiffusionPipeline):
            def __call__(self):
                return XFormersAttnProcessor
        '''
    )
    cls = load_pipeline_class(str(write_pipeline(text=text)))
    assert cls()() is None


def test_a_plain_pep723_block_loads_and_diffusers_is_what_pipeyard_provides(write_pipeline):
    header = '# /// script\n# requires-python = ">=3.10"\n# dependencies = ["diffusers>=0.30", "torch"]\n# ///\n'
    body = "from diffusers import DiffusionPipeline\n\n\nclass P(DiffusionPipeline):\n    pass\n"
    assert load_pipeline_class(str(write_pipeline("ok/pipeline.py", text=header + body))).__name__ == "P"
    newer = header.replace("diffusers>=0.30", "diffusers>=0.50")
    with pytest.raises(errors.RequirementsError) as caught:
        load_pipeline_class(str(write_pipeline("newer/pipeline.py", text=newer + body)))
    assert f"{DIFFUSERS_VERSION} is what pipeyard's diffusers compatibility provides" in str(caught.value)


def test_contributed_files_still_need_requires_core(invoke, write_pipeline):
    header = '# /// script\n# dependencies = ["torch"]\n# ///\n'
    path = write_pipeline(text=header + '"""Doc.\n\n    x = 1\n\n::\n\n    custom_pipeline="p"\n"""\n'
                          "from pipeyard import DiffusionPipeline\n\n\nclass P(DiffusionPipeline):\n    pass\n")
    result = invoke("verify", path, "--no-test-check")
    assert "requires-core" in result.output and result.exit_code == 1


def test_the_compatibility_page_lists_every_mapped_module_and_name():
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "compatibility.md").read_text()
    for path, names in layout.MODULES.items():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{path}` |")), None)
        assert row is not None, f"docs/compatibility.md does not list {path}"
        assert all(f"`{name}`" in row for name in names), path


def test_errors_and_tracebacks_name_the_users_file_not_the_store_copy(write_pipeline):
    import traceback

    from pipeyard.host import cache

    text = ("from diffusers import DiffusionPipeline\n\n\nclass P(DiffusionPipeline):\n    pass\n\n\n"
            "def boom():\n    raise RuntimeError('from the user file')\n\n\nboom()\n")
    path = write_pipeline("mine/pipeline.py", text=text)
    with pytest.raises(errors.PipelineImportError) as caught:
        load_pipeline_class(str(path))
    assert str(path) in str(caught.value) and str(cache.modules_dir()) not in str(caught.value)
    frames = traceback.extract_tb(caught.value.__cause__.__traceback__)
    assert frames[-1].filename == str(path) and frames[-1].line == "raise RuntimeError('from the user file')"


def test_pipeyard_info_reports_the_static_check_of_a_stored_hub_entry(invoke, monkeypatch, tmp_path):
    from pipeyard import registry
    from pipeyard.host import cache

    text = b"from diffusers import DiffusionPipeline, ControlNetModel\n\n\nclass P(DiffusionPipeline):\n    pass\n"
    stored = cache.store_package({"pipeline.py": text}, "pipeline.py")
    entry = {"name": "cn", "repo": "alice/cn", "commit": "0" * 40, "file": "pipeline.py", "sha256": stored.digest,
             "summary": "", "tags": [], "added-in": "0.1.0", "dependencies": [], "class": "P"}
    monkeypatch.setattr(registry, "read_index", lambda path=None: {"pipelines": [entry]})
    out = invoke("info", "cn").output
    assert "diffusers:  needs diffusers.ControlNetModel (line 1)" in out


_TUTORIAL = textwrap.dedent(
    '''
    import torch
    from diffusers import DiffusionPipeline


    class OneStep(DiffusionPipeline):
        def __init__(self, unet, scheduler):
            super().__init__()
            self.register_modules(unet=unet, scheduler=scheduler)

        def __call__(self):
            size = self.unet.config.sample_size
            image = torch.randn((1, self.unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(3))
            output = self.unet(image, 1).sample
            return self.scheduler.step(output, 1, image).prev_sample  # no set_timesteps: t -> t-1
    '''
)


def test_the_tutorial_shape_steps_a_fresh_ddpm_scheduler_as_diffusers(tiny_ddpm_folder, write_pipeline):
    """The diffusers docs' first custom pipeline calls step() on a fresh DDPMScheduler."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline=str(write_pipeline(text=_TUTORIAL)))
    torch.manual_seed(0)  # step() at t=1 adds noise from the global generator, in both libraries
    got = pipe()
    unet = UNet2DModel.from_pretrained(tiny_ddpm_folder, subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(tiny_ddpm_folder, subfolder="scheduler")
    size = unet.config.sample_size
    image = torch.randn((1, unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        output = unet(image, 1).sample
        torch.manual_seed(0)
        expected = scheduler.step(output, 1, image).prev_sample
    assert torch.allclose(got, expected, atol=1e-5)
