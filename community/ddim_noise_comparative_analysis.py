# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "Unconditional DDIM: noise an image to a chosen strength and denoise it back, or sample from pure noise."
# tags = ["ddim", "unconditional", "analysis", "image-to-image"]
# ///
"""DDIM noise comparative analysis for unconditional models (UNet2DModel + any DDPM-family scheduler).

How much of an image survives a given amount of noise? The pipeline noises ``image`` to the
timestep that ``strength`` picks (``strength=0.3``: 30 % of the way along the DDIM schedule),
then runs the remaining deterministic DDIM steps back to a clean image. Low strengths give back
the input; high strengths give whatever the model believes lies under that much noise. Without
an image (or with ``strength=1``) it is plain DDIM sampling from pure noise, which is how
``pipeyard demo`` draws its grid::

    import torch
    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        "google/ddpm-ema-celebahq-256", custom_pipeline="ddim_noise_comparative_analysis"
    )
    image = torch.rand(1, 3, 256, 256) * 2 - 1          # or a real image scaled to [-1, 1]
    for strength in (0.1, 0.3, 0.5, 0.7):
        out = pipe(image=image, strength=strength, num_inference_steps=50,
                   generator=torch.Generator().manual_seed(0))
        out.images[0].save(f"strength-{strength}.png")
    samples = pipe(batch_size=4, num_inference_steps=25).images   # pure noise -> 4 images

``image`` is a ``(B, C, H, W)`` tensor in [-1, 1] at the UNet's size (a PIL image is converted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from pipeyard import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, preprocess_image, randn_tensor

if TYPE_CHECKING:
    from pipeyard import SchedulerMixin, UNet2DModel


def tensor_to_output(sample: torch.Tensor, output_type: str) -> Any:
    """``[-1, 1]`` samples as ``"pt"`` (in [0, 1]), ``"np"`` (NHWC floats) or ``"pil"`` images."""
    if output_type not in ("pil", "np", "pt"):
        raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
    images = (sample / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return images
    array = images.cpu().permute(0, 2, 3, 1).float().numpy()
    return array if output_type == "np" else DiffusionPipeline.numpy_to_pil(array)


class DDIMNoiseComparativeAnalysisPipeline(DiffusionPipeline):
    """Noise an image to ``strength`` and denoise it with DDIM; or sample from pure noise.

    Args:
        unet: an unconditional ``UNet2DModel``.
        scheduler: any DDPM-family scheduler; its config is re-read as a ``DDIMScheduler``.
    """

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=DDIMScheduler.from_config(scheduler.config))

    def start_timesteps(self, num_inference_steps: int, strength: float) -> torch.Tensor:
        """The DDIM timesteps left after skipping the first ``(1 - strength)`` of the schedule."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        kept = min(int(round(num_inference_steps * strength)), num_inference_steps)
        return self.scheduler.timesteps[num_inference_steps - kept:]

    def initial_sample(
        self, image: Any, timesteps: torch.Tensor, batch_size: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Pure noise when there is no image (or nothing is skipped), else the image noised to ``timesteps[0]``."""
        config = self.unet.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if image is None:
            shape = (batch_size, config.in_channels, height, width)
            return randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        clean = preprocess_image(image).to(device=self.device, dtype=self.unet.dtype)
        noise = randn_tensor(tuple(clean.shape), generator=generator, device=self.device, dtype=clean.dtype)
        if len(timesteps) == 0:
            return clean
        return self.scheduler.add_noise(clean, noise, timesteps[:1].repeat(clean.shape[0]))

    @torch.no_grad()
    def __call__(
        self,
        image: Any = None,
        strength: float = 0.5,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        num_inference_steps: int = 50,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple[Any, ...]:
        """Denoise ``image`` from noise level ``strength``, or sample ``batch_size`` images from noise.

        Args:
            image: ``(B, C, H, W)`` tensor in [-1, 1] or PIL image(s); ``None`` samples from noise
                (``strength`` is then 1).
            strength: 0..1, how far along the DDIM schedule the image is noised (0 returns it).
            batch_size: number of images when ``image`` is ``None``.
            generator: makes the noise reproducible.
            eta: DDIM noise weight (0: deterministic).
            num_inference_steps: length of the full DDIM schedule.
            output_type: ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict: return an ``ImagePipelineOutput`` rather than a tuple.

        Returns:
            ``.images``; as a tuple ``(images, start_timestep)`` where ``start_timestep`` is the
            timestep the image was noised to (``None`` when nothing was denoised).
        """
        timesteps = self.start_timesteps(num_inference_steps, 1.0 if image is None else strength)
        sample = self.initial_sample(image, timesteps, batch_size, generator)
        for t in self.progress_bar(timesteps):
            model_output = self.unet(sample, t).sample
            sample = self.scheduler.step(model_output, t, sample, eta=eta, generator=generator).prev_sample
        images = tensor_to_output(sample, output_type)
        if not return_dict:
            return images, (int(timesteps[0]) if len(timesteps) else None)
        return ImagePipelineOutput(images=images)
