"""pipeyard: share and load community diffusion pipelines.

Public names are resolved lazily: ``import pipeyard`` imports neither torch nor transformers;
``pipeyard.UNet2DModel`` imports the module that defines it on first access. Each public name
is listed once in :data:`pipeyard.names.PUBLIC` (name -> module relative to this package).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .names import PUBLIC as _LAZY_NAMES  # name -> submodule that defines it (see names.py)

# Submodules reachable as attributes (pipeyard.errors, pipeyard.constants, ...).
_LAZY_MODULES = frozenset({"constants", "errors", "configuration", "hub", "modeling", "host", "trust", "plugins", "names"})

__all__ = sorted([*_LAZY_NAMES, "__version__"])


def __getattr__(name: str) -> Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pipeyard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES, *_LAZY_MODULES})


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .configuration import ConfigMixin, FrozenConfig, register_to_config
    from .errors import PipeyardError
    from .modeling import ModelMixin
    from .models.autoencoder_asym_kl import AsymmetricAutoencoderKL
    from .models.autoencoder_kl import AutoencoderKL
    from .models.outputs import (
        AutoencoderKLOutput,
        DecoderOutput,
        DiagonalGaussianDistribution,
        UNet2DConditionOutput,
        UNet2DOutput,
    )
    from .models.safety_checker import StableDiffusionSafetyChecker
    from .models.unet_2d import UNet2DModel
    from .models.unet_2d_condition import UNet2DConditionModel
    from .pipelines.base import DiffusionPipeline
    from .pipelines.ddim import DDIMPipeline
    from .pipelines.ddpm import DDPMPipeline
    from .pipelines.outputs import ImagePipelineOutput, StableDiffusionPipelineOutput
    from .pipelines.stable_diffusion import StableDiffusionPipeline
    from .pipelines.stable_diffusion_img2img import StableDiffusionImg2ImgPipeline
    from .pipelines.stable_diffusion_inpaint import StableDiffusionInpaintPipeline
    from .schedulers.common import SchedulerMixin, SchedulerOutput
    from .schedulers.ddim import DDIMScheduler
    from .schedulers.ddpm import DDPMScheduler
    from .schedulers.deis_multistep import DEISMultistepScheduler
    from .schedulers.dpmsolver_multistep import DPMSolverMultistepScheduler
    from .schedulers.dpmsolver_singlestep import DPMSolverSinglestepScheduler
    from .schedulers.euler_ancestral_discrete import EulerAncestralDiscreteScheduler
    from .schedulers.euler_discrete import EulerDiscreteScheduler
    from .schedulers.heun_discrete import HeunDiscreteScheduler
    from .schedulers.kdpm2_ancestral_discrete import KDPM2AncestralDiscreteScheduler
    from .schedulers.kdpm2_discrete import KDPM2DiscreteScheduler
    from .schedulers.lms_discrete import LMSDiscreteScheduler
    from .schedulers.pndm import PNDMScheduler
    from .schedulers.unipc_multistep import UniPCMultistepScheduler
    from .torch_utils import randn_tensor
