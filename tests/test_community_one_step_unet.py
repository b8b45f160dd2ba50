"""End to end: the bundled ``one_step_unet`` community pipeline built by from_pretrained."""

from __future__ import annotations

import diffusers
import torch

from pipeyard import DDPMScheduler, DiffusionPipeline, UNet2DModel


def test_one_step_unet_matches_the_same_computation_in_diffusers(tiny_ddpm_folder):
    """``tiny_ddpm_folder`` (shared fixture): a tiny UNet2DModel + DDPMScheduler saved by diffusers."""
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline="one_step_unet")
    assert type(pipe).__name__ == "UnetSchedulerOneForwardPipeline"
    assert isinstance(pipe.unet, UNet2DModel) and isinstance(pipe.scheduler, DDPMScheduler)

    torch.manual_seed(1)  # the scheduler's variance noise comes from the global generator
    sample = pipe(batch_size=2, generator=torch.Generator().manual_seed(0))

    reference_unet = diffusers.UNet2DModel.from_pretrained(tiny_ddpm_folder / "unet").eval()
    reference_scheduler = diffusers.DDPMScheduler.from_pretrained(tiny_ddpm_folder / "scheduler")
    size = reference_unet.config.sample_size
    noise = torch.randn((2, 3, size, size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        prediction = reference_unet(noise, 1).sample
    reference_scheduler.set_timesteps(reference_scheduler.config.num_train_timesteps)
    torch.manual_seed(1)
    expected = reference_scheduler.step(prediction, 1, noise).prev_sample
    assert sample.shape == (2, 3, size, size)
    torch.testing.assert_close(sample, expected, atol=1e-4, rtol=1e-4)
