"""diffusers' module layout, as facts: which module path offers which name, and which pipeyard
object each name is.

:data:`TARGETS` maps a diffusers name to the pipeyard object that serves it
(``"module:attribute"``, or ``"module"`` for a module); a name means the same object wherever
diffusers offers it. :data:`MODULES` maps each diffusers module path that real files import
from to the names it offers there. Every prefix of a path is a package (``diffusers.models`` of
``diffusers.models.unets.unet_2d``), and a module offers its child modules as attributes.

Only what pipeyard really implements is listed; :func:`~pipeyard.compat.rewrite.unsupported_imports`
refuses a file that imports anything else, before it runs.
"""

from __future__ import annotations

_SCHEDULER_FILES = {
    "DDIMScheduler": "scheduling_ddim",
    "DDPMScheduler": "scheduling_ddpm",
    "DEISMultistepScheduler": "scheduling_deis_multistep",
    "DPMSolverMultistepScheduler": "scheduling_dpmsolver_multistep",
    "DPMSolverSinglestepScheduler": "scheduling_dpmsolver_singlestep",
    "EulerAncestralDiscreteScheduler": "scheduling_euler_ancestral_discrete",
    "EulerDiscreteScheduler": "scheduling_euler_discrete",
    "HeunDiscreteScheduler": "scheduling_heun_discrete",
    "KDPM2AncestralDiscreteScheduler": "scheduling_k_dpm_2_ancestral_discrete",
    "KDPM2DiscreteScheduler": "scheduling_k_dpm_2_discrete",
    "LMSDiscreteScheduler": "scheduling_lms_discrete",
    "PNDMScheduler": "scheduling_pndm",
    "UniPCMultistepScheduler": "scheduling_unipc_multistep",
}

_LOGGING = ("get_logger", "get_verbosity", "set_verbosity", "set_verbosity_debug", "set_verbosity_info",
            "set_verbosity_warning", "set_verbosity_error")
_AVAILABILITY = ("is_torch_available", "is_transformers_available", "is_accelerate_available", "is_torch_xla_available")
_FILE_NAMES = ("CONFIG_NAME", "WEIGHTS_NAME", "WEIGHTS_INDEX_NAME", "SAFETENSORS_WEIGHTS_NAME",
               "SAFE_WEIGHTS_INDEX_NAME", "ONNX_WEIGHTS_NAME", "ONNX_EXTERNAL_WEIGHTS_NAME")
_UTILS = ("BaseOutput", "deprecate", "logging", "replace_example_docstring", "PIL_INTERPOLATION", "USE_PEFT_BACKEND",
          "scale_lora_layers", "unscale_lora_layers", *_AVAILABILITY, *_FILE_NAMES)

_IMAGE_PROCESSOR = ("VaeImageProcessor", "PipelineImageInput", "is_valid_image", "is_valid_image_imagelist")
_LOADERS = ("TextualInversionLoaderMixin", "StableDiffusionLoraLoaderMixin", "LoraLoaderMixin", "IPAdapterMixin",
            "FromSingleFileMixin")
_CALLBACKS = ("PipelineCallback", "MultiPipelineCallbacks", "SDCFGCutoffCallback")
_PROCESSORS = ("AttnProcessor", "AttnProcessor2_0", "FusedAttnProcessor2_0", "SlicedAttnProcessor", "AttentionProcessor")
_IP_PROCESSORS = ("IPAdapterAttnProcessor", "IPAdapterAttnProcessor2_0")
_TRANSFORMER = ("BasicTransformerBlock", "FeedForward", "GEGLU", "Transformer2DModel", "Transformer2DModelOutput")
_BLOCKS = ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D", "DownBlock2D", "UpBlock2D", "UNetMidBlock2DCrossAttn",
           "UNetMidBlock2D", "AttnDownBlock2D", "AttnUpBlock2D", "DownEncoderBlock2D", "UpDecoderBlock2D")

#: diffusers name -> the pipeyard object serving it.
TARGETS: dict[str, str] = {
    # pipelines
    "DiffusionPipeline": "pipeyard.pipelines.base:DiffusionPipeline",
    "ImagePipelineOutput": "pipeyard.pipelines.outputs:ImagePipelineOutput",
    "StableDiffusionPipelineOutput": "pipeyard.pipelines.outputs:StableDiffusionPipelineOutput",
    "StableDiffusionPipeline": "pipeyard.pipelines.stable_diffusion:StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline": "pipeyard.pipelines.stable_diffusion_img2img:StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline": "pipeyard.pipelines.stable_diffusion_inpaint:StableDiffusionInpaintPipeline",
    "retrieve_latents": "pipeyard.pipelines.stable_diffusion_img2img:retrieve_latents",
    "preprocess": "pipeyard.pipelines.stable_diffusion_img2img:preprocess",
    "DDPMPipeline": "pipeyard.pipelines.ddpm:DDPMPipeline",
    "DDIMPipeline": "pipeyard.pipelines.ddim:DDIMPipeline",
    # models
    "ModelMixin": "pipeyard.modeling:ModelMixin",
    "AutoencoderKL": "pipeyard.models.autoencoder_kl:AutoencoderKL",
    "AsymmetricAutoencoderKL": "pipeyard.models.autoencoder_asym_kl:AsymmetricAutoencoderKL",
    "UNet2DModel": "pipeyard.models.unet_2d:UNet2DModel",
    "UNet2DConditionModel": "pipeyard.models.unet_2d_condition:UNet2DConditionModel",
    "StableDiffusionSafetyChecker": "pipeyard.models.safety_checker:StableDiffusionSafetyChecker",
    "AutoencoderKLOutput": "pipeyard.models.outputs:AutoencoderKLOutput",
    "DecoderOutput": "pipeyard.models.outputs:DecoderOutput",
    "DiagonalGaussianDistribution": "pipeyard.models.outputs:DiagonalGaussianDistribution",
    "UNet2DConditionOutput": "pipeyard.models.outputs:UNet2DConditionOutput",
    "UNet2DOutput": "pipeyard.models.outputs:UNet2DOutput",
    # configuration, outputs, tensors
    "ConfigMixin": "pipeyard.configuration:ConfigMixin",
    "register_to_config": "pipeyard.configuration:register_to_config",
    "BaseOutput": "pipeyard.outputs:BaseOutput",
    "randn_tensor": "pipeyard.torch_utils:randn_tensor",
    # the Stable Diffusion surface
    "StableDiffusionMixin": "pipeyard.pipelines.stable_diffusion_mixin:StableDiffusionMixin",
    **{name: f"pipeyard.pipelines.image_processor:{name}" for name in _IMAGE_PROCESSOR},
    "rescale_noise_cfg": "pipeyard.pipelines.sampling:rescale_noise_cfg",
    "retrieve_timesteps": "pipeyard.pipelines.sampling:retrieve_timesteps",
    **{name: f"pipeyard.pipelines.loader_mixins:{name}" for name in (*_LOADERS, "adjust_lora_scale_text_encoder")},
    **{name: f"pipeyard.pipelines.callbacks:{name}" for name in _CALLBACKS},
    # attention and blocks
    "Attention": "pipeyard.models.attention:Attention",
    "ImageProjection": "pipeyard.models.embeddings:ImageProjection",
    "MultiIPAdapterImageProjection": "pipeyard.models.embeddings:MultiIPAdapterImageProjection",
    "TimestepEmbedding": "pipeyard.models.embeddings:TimestepEmbedding",
    **{name: f"pipeyard.models.attention_processor:{name}" for name in _PROCESSORS},
    **{name: f"pipeyard.models.ip_adapter:{name}" for name in _IP_PROCESSORS},
    "AttentionMixin": "pipeyard.models.attention_processor:AttentionProcessorMixin",
    **{name: f"pipeyard.models.transformer_2d:{name}" for name in _TRANSFORMER},
    **{name: f"pipeyard.models.unet_blocks:{name}" for name in _BLOCKS},
    # utilities
    "FrozenDict": "pipeyard.configuration:FrozenDict",
    "deprecate": "pipeyard.utils.deprecation:deprecate",
    "logging": "pipeyard.utils.logging",
    **{name: f"pipeyard.utils.logging:{name}" for name in _LOGGING},
    "replace_example_docstring": "pipeyard.utils.docstrings:replace_example_docstring",
    "PIL_INTERPOLATION": "pipeyard.utils.pil:PIL_INTERPOLATION",
    "USE_PEFT_BACKEND": "pipeyard.utils.lora:USE_PEFT_BACKEND",
    "scale_lora_layers": "pipeyard.utils.lora:scale_lora_layers",
    "unscale_lora_layers": "pipeyard.utils.lora:unscale_lora_layers",
    **{name: f"pipeyard.utils.availability:{name}" for name in _AVAILABILITY},
    **{name: f"pipeyard.utils.file_names:{name}" for name in (*_FILE_NAMES, "SCHEDULER_CONFIG_NAME")},
    # schedulers
    "KarrasDiffusionSchedulers": "pipeyard.schedulers.families:KarrasDiffusionSchedulers",
    "LCMScheduler": "pipeyard.schedulers.lcm:LCMScheduler",
    "LCMSchedulerOutput": "pipeyard.schedulers.lcm:LCMSchedulerOutput",
    "RePaintScheduler": "pipeyard.schedulers.repaint:RePaintScheduler",
    "RePaintSchedulerOutput": "pipeyard.schedulers.repaint:RePaintSchedulerOutput",
    "SchedulerMixin": "pipeyard.schedulers.common:SchedulerMixin",
    "SchedulerOutput": "pipeyard.schedulers.common:SchedulerOutput",
    **{name: f"pipeyard.schedulers:{name}" for name in _SCHEDULER_FILES},
}

_PIPELINES = ("DiffusionPipeline", "ImagePipelineOutput", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
              "StableDiffusionInpaintPipeline", "DDPMPipeline", "DDIMPipeline")
_MODELS = ("ModelMixin", "AutoencoderKL", "AsymmetricAutoencoderKL", "UNet2DModel", "UNet2DConditionModel")
_SCHEDULERS = ("SchedulerMixin", *_SCHEDULER_FILES, "LCMScheduler", "RePaintScheduler")

#: diffusers module path -> the names real files import from it.
MODULES: dict[str, tuple[str, ...]] = {
    "diffusers": (*_PIPELINES, *_MODELS, *_SCHEDULERS, "ConfigMixin", "logging", "StableDiffusionMixin",
                  "VaeImageProcessor", "Transformer2DModel"),
    "diffusers.pipelines": (*_PIPELINES, "StableDiffusionMixin"),
    "diffusers.pipelines.pipeline_utils": ("DiffusionPipeline", "ImagePipelineOutput", "BaseOutput", "StableDiffusionMixin"),
    "diffusers.pipelines.stable_diffusion": (
        "StableDiffusionPipeline", "StableDiffusionPipelineOutput", "StableDiffusionSafetyChecker",
        "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    ),
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img": (
        "StableDiffusionImg2ImgPipeline", "retrieve_latents", "retrieve_timesteps", "preprocess",
    ),
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint": (
        "StableDiffusionInpaintPipeline", "retrieve_latents", "retrieve_timesteps",
    ),
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion": (
        "StableDiffusionPipeline", "StableDiffusionPipelineOutput", "StableDiffusionSafetyChecker",
        "DiffusionPipeline", "AutoencoderKL", "UNet2DConditionModel", "randn_tensor",
        "rescale_noise_cfg", "retrieve_timesteps", "VaeImageProcessor", "PipelineImageInput",
    ),
    "diffusers.pipelines.stable_diffusion.pipeline_output": ("StableDiffusionPipelineOutput", "BaseOutput"),
    "diffusers.pipelines.stable_diffusion.safety_checker": ("StableDiffusionSafetyChecker",),
    "diffusers.pipelines.ddpm": ("DDPMPipeline",),
    "diffusers.pipelines.ddpm.pipeline_ddpm": ("DDPMPipeline", "DiffusionPipeline", "ImagePipelineOutput", "randn_tensor"),
    "diffusers.pipelines.ddim": ("DDIMPipeline",),
    "diffusers.pipelines.ddim.pipeline_ddim": ("DDIMPipeline", "DiffusionPipeline", "ImagePipelineOutput", "randn_tensor"),
    "diffusers.models": (*_MODELS, "Transformer2DModel", "ImageProjection"),
    "diffusers.models.embeddings": ("ImageProjection", "MultiIPAdapterImageProjection", "TimestepEmbedding"),
    "diffusers.models.attention_processor": ("Attention", *_PROCESSORS, *_IP_PROCESSORS),
    "diffusers.models.attention": ("Attention", "AttentionMixin", "BasicTransformerBlock", "FeedForward", "GEGLU"),
    "diffusers.models.activations": ("GEGLU",),
    "diffusers.models.lora": ("adjust_lora_scale_text_encoder",),
    "diffusers.models.transformers": ("Transformer2DModel",),
    "diffusers.models.transformers.transformer_2d": ("Transformer2DModel", "Transformer2DModelOutput"),
    "diffusers.models.unets.unet_2d_blocks": _BLOCKS,
    "diffusers.image_processor": _IMAGE_PROCESSOR,
    "diffusers.loaders": _LOADERS,
    "diffusers.callbacks": _CALLBACKS,
    "diffusers.models.modeling_utils": ("ModelMixin",),
    "diffusers.models.modeling_outputs": ("AutoencoderKLOutput", "Transformer2DModelOutput"),
    "diffusers.models.unets": ("UNet2DModel", "UNet2DConditionModel"),
    "diffusers.models.unets.unet_2d": ("UNet2DModel", "UNet2DOutput"),
    "diffusers.models.unets.unet_2d_condition": ("UNet2DConditionModel", "UNet2DConditionOutput"),
    "diffusers.models.autoencoders": ("AutoencoderKL", "AsymmetricAutoencoderKL"),
    "diffusers.models.autoencoders.autoencoder_asym_kl": ("AsymmetricAutoencoderKL",),
    "diffusers.models.autoencoders.autoencoder_kl": ("AutoencoderKL", "AutoencoderKLOutput"),
    "diffusers.models.autoencoders.vae": ("DecoderOutput", "DiagonalGaussianDistribution"),
    "diffusers.configuration_utils": ("ConfigMixin", "register_to_config", "FrozenDict", "deprecate"),
    "diffusers.schedulers": (*_SCHEDULERS, "KarrasDiffusionSchedulers"),
    "diffusers.schedulers.scheduling_utils": (
        "SchedulerMixin", "SchedulerOutput", "KarrasDiffusionSchedulers", "SCHEDULER_CONFIG_NAME",
    ),
    "diffusers.schedulers.scheduling_lcm": ("LCMScheduler", "LCMSchedulerOutput"),
    "diffusers.schedulers.scheduling_repaint": ("RePaintScheduler", "RePaintSchedulerOutput"),
    **{f"diffusers.schedulers.{file}": (name, "SchedulerMixin") for name, file in _SCHEDULER_FILES.items()},
    "diffusers.utils": _UTILS,
    "diffusers.utils.logging": _LOGGING,
    "diffusers.utils.deprecation_utils": ("deprecate",),
    "diffusers.utils.doc_utils": ("replace_example_docstring",),
    "diffusers.utils.pil_utils": ("PIL_INTERPOLATION",),
    "diffusers.utils.constants": ("USE_PEFT_BACKEND", *_FILE_NAMES),
    "diffusers.utils.peft_utils": ("scale_lora_layers", "unscale_lora_layers"),
    "diffusers.utils.import_utils": _AVAILABILITY,
    "diffusers.utils.outputs": ("BaseOutput",),
    "diffusers.utils.torch_utils": ("randn_tensor",),
}


def packages() -> frozenset[str]:
    """Every module path of :data:`MODULES` and every prefix of one (the packages)."""
    found = set()
    for path in MODULES:
        parts = path.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(found)
