# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "One UNet forward at timestep 1 on random noise, then one scheduler step."
# tags = ["example", "unconditional", "test"]
# ///
"""The smallest useful custom pipeline: one denoiser call and one scheduler step.

It draws Gaussian noise shaped like the UNet's input, asks the UNet for its prediction at
timestep 1, and lets the scheduler take a single step from there. The result is not a good
image; the pipeline exists to show (and test) the whole custom-pipeline path: a bundled
community file, verified and imported by the host, then built by ``from_pretrained`` from a
folder holding a ``unet`` and a ``scheduler``::

    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained("path/to/ddpm", custom_pipeline="one_step_unet")
    sample = pipe(generator=torch.Generator().manual_seed(0))   # (1, C, H, W) tensor
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipeyard import DiffusionPipeline

if TYPE_CHECKING:
    from pipeyard import DDPMScheduler, UNet2DModel


class UnetSchedulerOneForwardPipeline(DiffusionPipeline):
    """Noise -> one UNet forward at timestep 1 -> one scheduler step.

    Args:
        unet: the denoiser; its config gives the sample's channels and size.
        scheduler: any scheduler with a diffusers-style ``step(model_output, t, sample)``.
    """

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return the scheduler's ``prev_sample`` for one step from pure noise.

        Args:
            batch_size: how many samples to draw.
            generator: makes the noise reproducible.
        """
        config = self.unet.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, config.in_channels, height, width)
        noise = torch.randn(shape, generator=generator, dtype=self.unet.dtype).to(self.unet.device)
        # The full training schedule, so that timestep 1 is on it and steps to timestep 0.
        self.scheduler.set_timesteps(self.scheduler.config.num_train_timesteps)
        timestep = 1
        prediction = self.unet(noise, timestep).sample
        return self.scheduler.step(prediction, timestep, noise).prev_sample
