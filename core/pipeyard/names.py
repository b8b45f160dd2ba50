"""The table of pipeyard's public names: where each lives, and which classes a repository may name.

``pipeyard/__init__.py`` resolves its public names lazily from :data:`PUBLIC` (name -> module,
relative to the package), so ``import pipeyard`` imports neither torch nor transformers.

A repository's data is a stranger's: a model_index.json ``_class_name``, a ``[library, Class]``
component entry or a scheduler config may name only a class of :data:`BUILTIN_PIPELINES` or of
:data:`LOADABLE_COMPONENTS`, never one that merely happens to be public (``FrozenConfig``,
``GraphedModule``, ``PipeyardError``, ``ModelMixin``...). Each class is named here once.
"""

from __future__ import annotations

#: Models a model_index.json entry may load (``["diffusers", "UNet2DModel"]``).
MODELS: dict[str, str] = {
    "AsymmetricAutoencoderKL": "models.autoencoder_asym_kl",
    "AutoencoderKL": "models.autoencoder_kl",
    "StableDiffusionSafetyChecker": "models.safety_checker",
    "UNet2DModel": "models.unet_2d",
    "UNet2DConditionModel": "models.unet_2d_condition",
}

#: Schedulers, one algorithm per module of ``pipeyard.schedulers``.
SCHEDULERS: dict[str, str] = {
    "DDIMScheduler": "schedulers.ddim",
    "DDPMScheduler": "schedulers.ddpm",
    "DEISMultistepScheduler": "schedulers.deis_multistep",
    "DPMSolverMultistepScheduler": "schedulers.dpmsolver_multistep",
    "DPMSolverSinglestepScheduler": "schedulers.dpmsolver_singlestep",
    "EulerAncestralDiscreteScheduler": "schedulers.euler_ancestral_discrete",
    "EulerDiscreteScheduler": "schedulers.euler_discrete",
    "HeunDiscreteScheduler": "schedulers.heun_discrete",
    "KDPM2AncestralDiscreteScheduler": "schedulers.kdpm2_ancestral_discrete",
    "KDPM2DiscreteScheduler": "schedulers.kdpm2_discrete",
    "LMSDiscreteScheduler": "schedulers.lms_discrete",
    "PNDMScheduler": "schedulers.pndm",
    "UniPCMultistepScheduler": "schedulers.unipc_multistep",
}

#: Schedulers of their own family (each compatible only with itself): not in SD_FAMILY.
STANDALONE_SCHEDULERS: dict[str, str] = {
    "LCMScheduler": "schedulers.lcm",
    "RePaintScheduler": "schedulers.repaint",
}

#: Built-in pipelines a model_index.json ``_class_name`` may name.
BUILTIN_PIPELINES: dict[str, str] = {
    "DDIMPipeline": "pipelines.ddim",
    "DDPMPipeline": "pipelines.ddpm",
    "StableDiffusionPipeline": "pipelines.stable_diffusion",
    "StableDiffusionImg2ImgPipeline": "pipelines.stable_diffusion_img2img",
    "StableDiffusionInpaintPipeline": "pipelines.stable_diffusion_inpaint",
}

#: Component classes a model_index.json ``[library, Class]`` entry may name.
LOADABLE_COMPONENTS: dict[str, str] = {**MODELS, **SCHEDULERS, **STANDALONE_SCHEDULERS}

#: Public names that no repository may name: bases, outputs, helpers.
_OTHER: dict[str, str] = {
    "ConfigMixin": "configuration",
    "FrozenConfig": "configuration",
    "register_to_config": "configuration",
    "PipeyardError": "errors",
    "ModelMixin": "modeling",
    "AutoencoderKLOutput": "models.outputs",
    "DecoderOutput": "models.outputs",
    "DiagonalGaussianDistribution": "models.outputs",
    "UNet2DConditionOutput": "models.outputs",
    "UNet2DOutput": "models.outputs",
    "GraphedModule": "cuda_graph",
    "DiffusionPipeline": "pipelines.base",
    "ImagePipelineOutput": "pipelines.outputs",
    "StableDiffusionPipelineOutput": "pipelines.outputs",
    "SchedulerMixin": "schedulers.common",
    "SchedulerOutput": "schedulers.common",
    "preprocess_image": "pipelines.image_processing",
    "randn_tensor": "torch_utils",
    "generate": "batch",
}

#: Every public name of ``pipeyard`` -> the module (relative to the package) defining it.
PUBLIC: dict[str, str] = {**_OTHER, **MODELS, **SCHEDULERS, **STANDALONE_SCHEDULERS, **BUILTIN_PIPELINES}
