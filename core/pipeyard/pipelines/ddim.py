"""DDIMPipeline: unconditional generation with deterministic (or partly stochastic) DDIM steps."""

from __future__ import annotations

import logging
from typing import Any

import torch

from .base import DiffusionPipeline
from .call_checks import Generator, check_count, check_generators, unconditional_shape
from .image_processing import IMAGE_OUTPUT_TYPES, check_output_type, postprocess
from .outputs import ImagePipelineOutput

logger = logging.getLogger(__name__)


class DDIMPipeline(DiffusionPipeline):
    """Generate images from noise with a UNet2DModel and a DDIM scheduler (Song et al., 2020).

    Whatever scheduler is passed, its config is re-read as a :class:`~pipeyard.DDIMScheduler`,
    so a DDPM repository can be sampled in 50 steps instead of 1000.

    Example::

        pipe = DDIMPipeline.from_pretrained("google/ddpm-cifar10-32")
        image = pipe(num_inference_steps=50, eta=0.0).images[0]
    """

    def __init__(self, unet: Any, scheduler: Any) -> None:
        super().__init__()
        import pipeyard

        scheduler = pipeyard.DDIMScheduler.from_config(scheduler.config)
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: Generator = None,
        eta: float = 0.0,
        num_inference_steps: int = 50,
        use_clipped_model_output: bool | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cuda_graph: bool | None = None,
    ) -> ImagePipelineOutput | tuple[Any]:
        """Sample ``batch_size`` images.

        Args:
            batch_size: number of images.
            generator: one ``torch.Generator`` or a list with one per image.
            eta: noise weight in [0, 1]: 0 is deterministic DDIM, 1 behaves like DDPM.
            num_inference_steps: denoising steps.
            use_clipped_model_output: passed to the scheduler's ``step``.
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
        if not 0.0 <= eta <= 1.0:
            logger.warning("eta=%s is outside [0, 1] (0 is DDIM, 1 is DDPM); results may be poor", eta)
        from ..torch_utils import randn_tensor

        shape = unconditional_shape(self.unet, batch_size)
        image = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(image, t).sample
            image = self.scheduler.step(
                model_output, t, image, eta=eta, use_clipped_model_output=use_clipped_model_output,
                generator=generator,
            ).prev_sample
        images = postprocess(image, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
