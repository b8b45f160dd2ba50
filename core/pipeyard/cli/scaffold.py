"""What ``pipeyard new NAME`` writes: a working community pipeline and its test.

The pipeline is a plain denoising loop over a ``unet`` and a ``scheduler`` (any folder saved
like ``DDPMPipeline`` loads it); the test builds a tiny random model with pipeyard itself and
runs two steps. Both pass ``pipeyard verify`` and pytest as generated, so a contributor starts
green and changes one thing at a time.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from .. import errors

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

PIPELINE_TEMPLATE = '''\
# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "{title}: a denoising loop over a UNet and a scheduler (edit me)."
# tags = ["unconditional"]
# ///
"""{title}: noise, then ``num_inference_steps`` scheduler steps, then images.

Say here what the pipeline does differently and why. It loads from any folder or Hub repo
holding a ``unet`` and a ``scheduler``, e.g. one saved by ``DDPMPipeline``::

    import torch
    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained("google/ddpm-cifar10-32", custom_pipeline="{name}")
    image = pipe(num_inference_steps=25, generator=torch.Generator().manual_seed(0)).images[0]
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch

from pipeyard import DiffusionPipeline, ImagePipelineOutput, randn_tensor
from pipeyard.errors import BatchSizeMismatchError, PipelineInputError, UnknownOutputTypeError

if TYPE_CHECKING:
    from pipeyard import SchedulerMixin, UNet2DModel


class {class_name}(DiffusionPipeline):
    """Noise -> ``num_inference_steps`` scheduler steps -> images.

    Args:
        unet: the denoiser; its config gives the sample's channels and size.
        scheduler: any pipeyard scheduler (``set_timesteps``, ``scale_model_input``, ``step``).
    """

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ) -> ImagePipelineOutput:
        """Sample ``batch_size`` images; ``output_type`` is ``"pil"`` or ``"np"``.

        ``generator`` is one ``torch.Generator`` or a list with one per image (image ``i`` then
        depends only on ``generator[i]``).

        Raises:
            PipelineInputError: ``batch_size`` is not a positive integer, ``output_type`` is
                unknown, or a generator list has another length than ``batch_size``.
        """
        self.check_inputs(batch_size, generator, output_type)
        config = self.unet.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, config.in_channels, height, width)
        sample = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        sample = sample * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        step_kwargs = self._step_kwargs(generator)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(sample, t)
            noise_pred = self.unet(model_input, t).sample
            sample = self.scheduler.step(noise_pred, t, sample, **step_kwargs).prev_sample
        images = (sample / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        return ImagePipelineOutput(images=self.numpy_to_pil(images) if output_type == "pil" else images)

    @staticmethod
    def check_inputs(batch_size: Any, generator: Any, output_type: Any) -> None:
        """Refuse unusable arguments before any work, naming the value and the fix."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise PipelineInputError(f"batch_size must be a positive integer, got {{batch_size!r}}")
        if output_type not in ("pil", "np"):
            raise UnknownOutputTypeError(output_type, ("pil", "np"))
        if isinstance(generator, list) and len(generator) != batch_size:
            fix = "pass one torch.Generator, or a list with exactly one per image"
            raise BatchSizeMismatchError("generator", len(generator), batch_size, fix)

    def _step_kwargs(self, generator: torch.Generator | list[torch.Generator] | None) -> dict[str, Any]:
        """Pass the generator to schedulers whose ``step`` draws noise (DDPM, ancestral ones)."""
        accepted = inspect.signature(self.scheduler.step).parameters
        return {{"generator": generator}} if "generator" in accepted else {{}}
'''

TEST_TEMPLATE = '''\
"""community/{name}.py, built by from_pretrained from a tiny random model and run for two steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeyard import DDPMPipeline, DDPMScheduler, DiffusionPipeline, UNet2DModel
from pipeyard.errors import BatchSizeMismatchError, PipelineInputError

PIPELINE_FILE = Path(__file__).resolve().parents[2] / "community" / "{name}.py"


def tiny_model_folder(folder: Path) -> Path:
    """A random 8x8 RGB UNet2DModel and a DDPMScheduler, saved like DDPMPipeline."""
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
    return folder


def test_{name}_makes_one_reproducible_image_per_batch_item(tmp_path):
    folder = tiny_model_folder(tmp_path / "model")
    pipe = DiffusionPipeline.from_pretrained(folder, custom_pipeline=str(PIPELINE_FILE))
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "{class_name}"

    first = pipe(batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    again = pipe(batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert first.images.shape == (2, 8, 8, 3)
    assert (first.images == again.images).all()
    images = pipe(batch_size=1, num_inference_steps=2).images
    assert images[0].size == (8, 8)

    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    listed = pipe(batch_size=2, num_inference_steps=2, generator=generators, output_type="np")
    alone = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(1), output_type="np")
    assert abs(listed.images[1] - alone.images[0]).max() < 1e-4  # image i depends only on generator[i]


def test_{name}_refuses_unusable_inputs_before_any_work(tmp_path):
    pipe = DiffusionPipeline.from_pretrained(tiny_model_folder(tmp_path / "model"), custom_pipeline=str(PIPELINE_FILE))
    with pytest.raises(PipelineInputError, match="batch_size must be a positive integer, got 0"):
        pipe(batch_size=0)
    with pytest.raises(BatchSizeMismatchError, match="generator has 1 entries but the batch has 2"):
        pipe(batch_size=2, generator=[torch.Generator()])
'''


@dataclass(frozen=True)
class Scaffold:
    """The two files of a new community pipeline."""

    pipeline: Path
    test: Path
    class_name: str


def class_name_for(name: str) -> str:
    """``my_cool`` -> ``MyCoolPipeline`` (no doubled ``Pipeline`` suffix)."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return camel if camel.endswith("Pipeline") else f"{camel}Pipeline"


def check_name(name: str) -> None:
    """A community name is a lowercase Python identifier (it becomes a module name)."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise errors.InvalidPipelineNameError(
            name, "use a lowercase Python identifier (letters, digits, underscores), e.g. 'my_pipeline'", "name"
        )


def write_scaffold(name: str, root: Path) -> Scaffold:
    """Write ``community/NAME.py`` and ``tests/community/test_NAME.py`` under ``root``.

    Raises:
        InvalidPipelineNameError: ``name`` is not a lowercase identifier.
        PipelineFileExistsError: either file exists (nothing is written then).
    """
    check_name(name)
    scaffold = Scaffold(root / "community" / f"{name}.py", root / "tests" / "community" / f"test_{name}.py",
                        class_name_for(name))
    for path in (scaffold.pipeline, scaffold.test):
        if path.exists():
            raise errors.PipelineFileExistsError(str(path))
    values = {"name": name, "class_name": scaffold.class_name, "title": scaffold.class_name}
    for path, template in ((scaffold.pipeline, PIPELINE_TEMPLATE), (scaffold.test, TEST_TEMPLATE)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return scaffold
