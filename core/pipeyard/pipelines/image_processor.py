"""VaeImageProcessor: images in and out of a latent pipeline, with diffusers' interface.

Pipelines written for diffusers keep one of these as ``self.image_processor`` and call
``preprocess`` on input images (PIL, numpy or torch, one or a list) and ``postprocess`` on
decoded images. The conventions::

    PIL image      uint8 RGB, (width, height)
    numpy image    float32 in [0, 1], (batch, height, width, channels)
    torch image    float32, (batch, channels, height, width): [0, 1] before ``normalize``,
                   [-1, 1] (model space) after it

``preprocess``: crop -> resize to a multiple of ``vae_scale_factor`` -> RGB / grayscale ->
torch -> normalize to [-1, 1] -> binarize. ``postprocess``: [-1, 1] -> [0, 1] (per image,
skipping those the safety checker blacked out) -> ``"pt"`` / ``"np"`` / ``"pil"``. The
arithmetic follows diffusers' order, so results are bit-identical.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch

from .. import errors
from ..configuration import ConfigMixin, register_to_config
from ..utils.pil import PIL_INTERPOLATION
from . import image_regions

#: what ``preprocess`` accepts: one image or a list, as PIL, numpy or torch
PipelineImageInput = (
    PIL.Image.Image | np.ndarray | torch.Tensor | list[PIL.Image.Image] | list[np.ndarray] | list[torch.Tensor]
)

#: PIL resampling filters by the names configs use
RESAMPLE_FILTERS = PIL_INTERPOLATION

_OUTPUT_TYPES = ("pil", "np", "pt", "latent")
_RESIZE_MODES = ("default", "fill", "crop")


def is_valid_image(image: Any) -> bool:
    """One image: a PIL image, or a 2-d / 3-d numpy array or tensor."""
    return isinstance(image, PIL.Image.Image) or (isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim in (2, 3))


def is_valid_image_imagelist(images: Any) -> bool:
    """A batch ``preprocess`` accepts: a 4-d array / tensor, one image, or a list of images."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return True
    if isinstance(images, list):
        return all(is_valid_image(image) for image in images)
    return is_valid_image(images)


class VaeImageProcessor(ConfigMixin):
    """Pre- and post-processing of images for a VAE with diffusers' ``VaeImageProcessor`` API.

    Args:
        do_resize: resize inputs down to a multiple of ``vae_scale_factor``.
        vae_scale_factor: how much smaller the latents are than the image.
        vae_latent_channels: a tensor with this many channels is taken as latents, untouched.
        resample: PIL filter for resizing (``"lanczos"``, ``"bicubic"``, ``"bilinear"``, ...).
        reducing_gap: PIL's ``reducing_gap`` for resizing.
        do_normalize: map [0, 1] inputs to [-1, 1] (and outputs back).
        do_binarize: set values to 0 / 1 around 0.5 (masks).
        do_convert_rgb, do_convert_grayscale: convert PIL inputs; not both.

    Example::

        processor = VaeImageProcessor(vae_scale_factor=8)
        pixels = processor.preprocess(pil_image, height=512, width=512)   # (1, 3, 512, 512) in [-1, 1]
        images = processor.postprocess(decoded, output_type="pil")
    """

    @register_to_config
    def __init__(
        self,
        do_resize: bool = True,
        vae_scale_factor: int = 8,
        vae_latent_channels: int = 4,
        resample: str = "lanczos",
        reducing_gap: int | None = None,
        do_normalize: bool = True,
        do_binarize: bool = False,
        do_convert_rgb: bool = False,
        do_convert_grayscale: bool = False,
    ) -> None:
        if do_convert_rgb and do_convert_grayscale:
            raise errors.ConfigError(
                "VaeImageProcessor got do_convert_rgb=True and do_convert_grayscale=True: choose one "
                "(RGB for images, grayscale for masks)"
            )
        if resample not in RESAMPLE_FILTERS:
            raise errors.ConfigError(
                f"VaeImageProcessor resample={errors.clip(repr(resample))} is not a filter; use one of "
                f"{', '.join(RESAMPLE_FILTERS)}"
            )

    # ------------------------------------------------------------------ conversions

    @staticmethod
    def numpy_to_pil(images: np.ndarray) -> list[PIL.Image.Image]:
        """``(batch, h, w, c)`` (or one ``(h, w, c)``) floats in [0, 1] -> PIL images."""
        if images.ndim == 3:
            images = images[None, ...]
        pixels = (images * 255).round().astype("uint8")
        if pixels.shape[-1] == 1:
            return [PIL.Image.fromarray(p.squeeze(), mode="L") for p in pixels]
        return [PIL.Image.fromarray(p) for p in pixels]

    @staticmethod
    def pil_to_numpy(images: PIL.Image.Image | list[PIL.Image.Image]) -> np.ndarray:
        """PIL image(s) -> ``(batch, h, w, c)`` (``(batch, h, w)`` for grayscale) float32 in [0, 1]."""
        images = images if isinstance(images, list) else [images]
        return np.stack([np.array(image).astype(np.float32) / 255.0 for image in images], axis=0)

    @staticmethod
    def numpy_to_pt(images: np.ndarray) -> torch.Tensor:
        """``(batch, h, w, c)`` (or ``(batch, h, w)``) numpy -> ``(batch, c, h, w)`` tensor."""
        if images.ndim == 3:
            images = images[..., None]
        return torch.from_numpy(images.transpose(0, 3, 1, 2))

    @staticmethod
    def pt_to_numpy(images: torch.Tensor) -> np.ndarray:
        """``(batch, c, h, w)`` tensor -> ``(batch, h, w, c)`` float32 numpy on the CPU."""
        return images.cpu().permute(0, 2, 3, 1).float().numpy()

    @staticmethod
    def normalize(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[0, 1] -> [-1, 1]."""
        return 2.0 * images - 1.0

    @staticmethod
    def denormalize(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[-1, 1] -> [0, 1], clamped."""
        return (images * 0.5 + 0.5).clamp(0, 1)

    @staticmethod
    def convert_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
        return image.convert("RGB")

    @staticmethod
    def convert_to_grayscale(image: PIL.Image.Image) -> PIL.Image.Image:
        return image.convert("L")

    def binarize(self, image: Any) -> Any:
        """Values below 0.5 become 0, the others 1 (in place, like diffusers)."""
        image[image < 0.5] = 0
        image[image >= 0.5] = 1
        return image

    # ------------------------------------------------------------------ sizes

    def get_default_height_width(
        self, image: PIL.Image.Image | np.ndarray | torch.Tensor, height: int | None = None, width: int | None = None
    ) -> tuple[int, int]:
        """``(height, width)``: the given ones or the image's, rounded down to the VAE's multiple."""
        if isinstance(image, PIL.Image.Image):
            size = (image.height, image.width)
        elif isinstance(image, torch.Tensor):
            size = (image.shape[2], image.shape[3])
        else:
            size = (image.shape[1], image.shape[2])
        height = size[0] if height is None else height
        width = size[1] if width is None else width
        factor = self.config.vae_scale_factor
        return height - height % factor, width - width % factor

    def resize(
        self, image: PIL.Image.Image | np.ndarray | torch.Tensor, height: int, width: int, resize_mode: str = "default"
    ) -> PIL.Image.Image | np.ndarray | torch.Tensor:
        """Resize to ``(height, width)``: PIL with the configured filter, arrays with nearest.

        ``resize_mode`` (PIL images only): ``"default"`` stretches; ``"fill"`` keeps the aspect
        ratio and fills the bands left over with the image's edge pixels; ``"crop"`` keeps the
        aspect ratio and cuts off what sticks out (see :mod:`.image_regions`).

        Raises:
            PipelineInputError: an unknown ``resize_mode``, or ``"fill"`` / ``"crop"`` of an array.
        """
        if resize_mode not in _RESIZE_MODES:
            raise errors.PipelineInputError(
                f"VaeImageProcessor.resize: resize_mode={resize_mode!r} is not one of {', '.join(_RESIZE_MODES)}"
            )
        if resize_mode != "default" and not isinstance(image, PIL.Image.Image):
            raise errors.PipelineInputError(
                f"VaeImageProcessor.resize: resize_mode={resize_mode!r} needs a PIL image, got "
                f"{type(image).__name__}; convert it with numpy_to_pil / pt_to_numpy first or use 'default'"
            )
        resample = RESAMPLE_FILTERS[self.config.resample]
        if resize_mode == "fill":
            return image_regions.resize_and_fill(image, width, height, resample)
        if resize_mode == "crop":
            return image_regions.resize_and_crop(image, width, height, resample)
        if isinstance(image, PIL.Image.Image):
            return image.resize((width, height), resample=resample, reducing_gap=self.config.reducing_gap)
        if isinstance(image, torch.Tensor):
            return torch.nn.functional.interpolate(image, size=(height, width))
        resized = torch.nn.functional.interpolate(self.numpy_to_pt(image), size=(height, width))
        return self.pt_to_numpy(resized)

    def _resize_and_fill(self, image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
        """``resize(image, height, width, resize_mode="fill")`` (diffusers' private name, kept for subclasses)."""
        return image_regions.resize_and_fill(image, width, height, RESAMPLE_FILTERS[self.config.resample])

    def _resize_and_crop(self, image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
        """``resize(image, height, width, resize_mode="crop")`` (diffusers' private name, kept for subclasses)."""
        return image_regions.resize_and_crop(image, width, height, RESAMPLE_FILTERS[self.config.resample])

    # ------------------------------------------------------------------ inpainting a region

    @staticmethod
    def get_crop_region(mask_image: PIL.Image.Image, width: int, height: int, pad: int = 0) -> image_regions.Box:
        """The box around the mask's white area, padded and grown to ``width / height``
        (:func:`.image_regions.get_crop_region`)."""
        return image_regions.get_crop_region(mask_image, width, height, pad)

    def apply_overlay(
        self,
        mask: PIL.Image.Image,
        init_image: PIL.Image.Image,
        image: PIL.Image.Image,
        crop_coords: image_regions.Box | None = None,
    ) -> PIL.Image.Image:
        """Put the inpainted ``image`` (of the region ``crop_coords``, if given) back into
        ``init_image``, keeping ``init_image`` wherever ``mask`` is black."""
        return image_regions.apply_overlay(
            mask, init_image, image, crop_coords,
            lambda region, height, width: self.resize(region, height=height, width=width, resize_mode="crop"),
        )

    # ------------------------------------------------------------------ in and out

    def preprocess(
        self,
        image: PipelineImageInput,
        height: int | None = None,
        width: int | None = None,
        resize_mode: str = "default",
        crops_coords: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """Input image(s) -> a ``(batch, channels, height, width)`` tensor for the VAE.

        Raises:
            PipelineInputError: ``image`` is not an image, an array of them or a list of them.
        """
        image = self._as_batch_list(image)
        if isinstance(image[0], PIL.Image.Image):
            batch = self._pil_batch(image, height, width, resize_mode, crops_coords)
        elif isinstance(image[0], np.ndarray):
            array = np.concatenate(image, axis=0) if image[0].ndim == 4 else np.stack(image, axis=0)
            batch = self._resized(self.numpy_to_pt(array), height, width)
        else:
            batch = torch.cat(image, dim=0) if image[0].ndim == 4 else torch.stack(image, dim=0)
            if self.config.do_convert_grayscale and batch.ndim == 3:
                batch = batch.unsqueeze(1)
            if batch.shape[1] == self.config.vae_latent_channels:
                return batch  # already latents
            batch = self._resized(batch, height, width)
        return self._normalized(batch)

    def postprocess(
        self, image: torch.Tensor, output_type: str = "pil", do_denormalize: Sequence[bool] | None = None
    ) -> Any:
        """Decoded images in [-1, 1] -> ``"pil"`` images, an ``"np"`` array, a ``"pt"`` tensor in
        [0, 1], or the input unchanged for ``"latent"``.

        Args:
            do_denormalize: per image, whether to map it to [0, 1] (default: ``do_normalize``).

        Raises:
            PipelineInputError: ``image`` is not a tensor.
            UnknownOutputTypeError: an ``output_type`` other than the four.
        """
        if not isinstance(image, torch.Tensor):
            raise errors.PipelineInputError(
                f"VaeImageProcessor.postprocess needs a torch tensor (batch, channels, height, width), "
                f"got {type(image).__name__}"
            )
        if output_type not in _OUTPUT_TYPES:
            raise errors.UnknownOutputTypeError(output_type, _OUTPUT_TYPES)
        if output_type == "latent":
            return image
        image = self._denormalize_conditionally(image, do_denormalize)
        if output_type == "pt":
            return image
        array = self.pt_to_numpy(image)
        return array if output_type == "np" else self.numpy_to_pil(array)

    # ------------------------------------------------------------------ steps

    def _as_batch_list(self, image: Any) -> list[Any]:
        if self.config.do_convert_grayscale and isinstance(image, (torch.Tensor, np.ndarray)) and image.ndim == 3:
            if isinstance(image, torch.Tensor):
                image = image.unsqueeze(1)
            else:
                image = np.expand_dims(image, axis=0 if image.shape[-1] == 1 else -1)
        if isinstance(image, list) and image and isinstance(image[0], (np.ndarray, torch.Tensor)) and image[0].ndim == 4:
            warnings.warn(
                "a list of 4-d arrays/tensors as `image` is deprecated (diffusers too): concatenate them along "
                "the batch axis and pass one 4-d array or tensor",
                FutureWarning, stacklevel=3,
            )
            image = np.concatenate(image, axis=0) if isinstance(image[0], np.ndarray) else torch.cat(image, dim=0)
        if not is_valid_image_imagelist(image) or (isinstance(image, list) and not image):
            raise errors.PipelineInputError(
                f"image must be a PIL image, a numpy array or torch tensor (2-d, 3-d, or a 4-d batch), or a "
                f"list of them; got {type(image).__name__}"
            )
        return image if isinstance(image, list) else [image]

    def _pil_batch(
        self, images: list[PIL.Image.Image], height: int | None, width: int | None, resize_mode: str,
        crops_coords: tuple[int, int, int, int] | None,
    ) -> torch.Tensor:
        if crops_coords is not None:
            images = [i.crop(crops_coords) for i in images]
        if self.config.do_resize:
            height, width = self.get_default_height_width(images[0], height, width)
            images = [self.resize(i, height, width, resize_mode=resize_mode) for i in images]
        if self.config.do_convert_rgb:
            images = [self.convert_to_rgb(i) for i in images]
        elif self.config.do_convert_grayscale:
            images = [self.convert_to_grayscale(i) for i in images]
        return self.numpy_to_pt(self.pil_to_numpy(images))

    def _resized(self, batch: torch.Tensor, height: int | None, width: int | None) -> torch.Tensor:
        height, width = self.get_default_height_width(batch, height, width)
        return self.resize(batch, height, width) if self.config.do_resize else batch

    def _normalized(self, batch: torch.Tensor) -> torch.Tensor:
        do_normalize = self.config.do_normalize
        if do_normalize and batch.min() < 0:
            warnings.warn(
                f"image values reach {float(batch.min()):.3g}: a tensor or array in [-1, 1] is deprecated "
                "(diffusers too); pass images in [0, 1]. This one is used without normalizing.",
                FutureWarning, stacklevel=3,
            )
            do_normalize = False
        if do_normalize:
            batch = self.normalize(batch)
        if self.config.do_binarize:
            batch = self.binarize(batch)
        return batch

    def _denormalize_conditionally(self, images: torch.Tensor, do_denormalize: Sequence[bool] | None) -> torch.Tensor:
        if do_denormalize is None:
            return self.denormalize(images) if self.config.do_normalize else images
        return torch.stack([self.denormalize(img) if flag else img for img, flag in zip(images, do_denormalize)])
