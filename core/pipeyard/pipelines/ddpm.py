"""DDPMPipeline: unconditional image generation by ancestral sampling (Ho et al., 2020)."""

from __future__ import annotations

from typing import Any

import torch

from .base import DiffusionPipeline
from .call_checks import Generator, check_count, check_generators, unconditional_shape
from .image_processing import IMAGE_OUTPUT_TYPES, check_output_type, postprocess
from .outputs import ImagePipelineOutput


class DDPMPipeline(DiffusionPipeline):
    """Generate images from noise with a UNet2DModel and any scheduler (DDPM by default).

    Example::

        pipe = DDPMPipeline.from_pretrained("google/ddpm-cat-256")
        image = pipe(num_inference_steps=1000).images[0]
    """

    def __init__(self, unet: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: Generator = None,
        num_inference_steps: int = 1000,
        output_type: str = "pil",
        return_dict: bool = True,
        cuda_graph: bool | None = None,
    ) -> ImagePipelineOutput | tuple[Any]:
        """Sample ``batch_size`` images.

        Args:
            batch_size: number of images.
            generator: one ``torch.Generator`` or a list with one per image, for reproducibility.
            num_inference_steps: denoising steps; more is slower and (for DDPM) better.
            output_type: ``"pil"``, ``"np"`` or ``"pt"``.
            return_dict: return an :class:`ImagePipelineOutput` rather than a tuple.
            cuda_graph: ``True`` replays the UNet from CUDA graphs from now on (see
                :meth:`enable_cuda_graph`), ``False`` turns them off, ``None`` leaves them as set.

        Raises:
            BatchSizeMismatchError, UnknownOutputTypeError: before any work.
        """
        check_output_type(output_type, IMAGE_OUTPUT_TYPES)
        self._apply_cuda_graph_option(cuda_graph)
        check_count("batch_size", batch_size)
        check_generators(generator, batch_size)
        image = self._initial_noise(batch_size, generator)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(image, t).sample
            image = self.scheduler.step(model_output, t, image, generator=generator).prev_sample
        images = postprocess(image, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def _initial_noise(self, batch_size: int, generator: Generator) -> torch.Tensor:
        from ..torch_utils import randn_tensor

        shape = unconditional_shape(self.unet, batch_size)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
