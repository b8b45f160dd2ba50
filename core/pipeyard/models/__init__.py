"""The neural networks of diffusion pipelines, in diffusers' checkpoint layout.

Public models (also reachable as ``pipeyard.<Name>``):

- :class:`~pipeyard.models.unet_2d.UNet2DModel`: unconditional DDPM-family UNet.
- :class:`~pipeyard.models.unet_2d_condition.UNet2DConditionModel`: Stable Diffusion 1.x/2.x UNet.
- :class:`~pipeyard.models.autoencoder_kl.AutoencoderKL`: the KL VAE of latent diffusion.
- :class:`~pipeyard.models.safety_checker.StableDiffusionSafetyChecker`: the SD safety checker.

Building blocks, one responsibility per module: ``activations``, ``embeddings`` (timestep
embeddings), ``resnet`` (residual blocks, down/up sampling), ``attention`` (SDPA attention with
slicing), ``transformer_2d`` (the spatial transformer of conditional UNets), ``unet_blocks``
(down/mid/up blocks and their registry), ``vae`` (encoder, decoder), ``outputs``.

Nothing is imported here, so ``import pipeyard.models`` stays cheap.
"""
