"""What ``pipeyard run`` checks before the slow load, and what it passes to ``__call__``.

* :func:`call_arguments`: the command's options mapped onto the pipeline's ``__call__``
  parameters. A ``__call__`` that takes ``**kwargs`` is followed up its classes (a community
  pipeline that forwards to ``StableDiffusionPipeline.__call__`` accepts what that one takes);
  where the chain ends in ``**kwargs`` nobody names, the options are forwarded as they are.
  Required inputs the command cannot supply (an ``image``, a ``mask_image``) are a usage error.
* :func:`check_device`: ``--device`` names a torch device this machine has.
* :func:`image_format`: ``--out``'s suffix picks the format; its folder must exist.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .. import errors

#: ``--out`` suffix -> Pillow format name.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

#: The counts ``--num-images`` maps to, in order of preference.
COUNT_NAMES = ("num_images_per_prompt", "batch_size")


@dataclass
class CallSignature:
    """The keyword names a pipeline's ``__call__`` accepts, as far as its classes tell.

    ``names``: every named parameter along the ``**kwargs`` chain; ``required``: those of the
    first ``__call__`` without a default; ``open``: the chain ends in a ``**kwargs`` that no
    base class names, so any keyword may be meant.
    """

    names: set[str] = field(default_factory=set)
    required: list[str] = field(default_factory=list)
    open: bool = False


def call_signature(pipe: Any) -> CallSignature:
    """Follow ``__call__`` up the classes of ``pipe`` while each one takes ``**kwargs``."""
    result = CallSignature()
    calls = [klass.__dict__["__call__"] for klass in type(pipe).__mro__ if "__call__" in klass.__dict__]
    for depth, call in enumerate(calls):
        params = list(inspect.signature(call).parameters.values())[1:]  # drop self
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        result.names.update(p.name for p in named)
        if depth == 0:
            result.required = [p.name for p in named if p.default is inspect.Parameter.empty]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return result
    result.open = bool(calls)
    return result


def call_arguments(pipe: Any, prompt: str | None, steps: int | None, seed: int, num_images: int) -> dict[str, Any]:
    """The options the pipeline's ``__call__`` accepts, by name; options it lacks are reported.

    Raises:
        click.UsageError: ``__call__`` requires an input the command cannot supply (exit 2).
    """
    import torch

    name = type(pipe).__name__
    signature = call_signature(pipe)
    _check_required(name, signature, prompt)
    count = next((k for k in COUNT_NAMES if k in signature.names), None)
    if count is None and signature.open:
        count = COUNT_NAMES[0] if prompt is not None or "prompt" in signature.names else COUNT_NAMES[1]
    chosen = {"--prompt": ("prompt", prompt), "--steps": ("num_inference_steps", steps),
              "--num-images": (count or "batch_size", num_images if num_images != 1 or count in signature.names else None)}
    accepted = {flag: key for flag, (key, value) in chosen.items()
                if value is not None and (key in signature.names or signature.open)}
    ignored = [flag for flag, (_, value) in chosen.items() if value is not None and flag not in accepted]
    if ignored:
        click.echo(f"note: {name}.__call__ takes no {', '.join(ignored)}; ignored", err=True)
    forwarded = [f"{flag} as {key}" for flag, key in accepted.items() if key not in signature.names]
    if forwarded:
        click.echo(f"note: {name}.__call__ takes **kwargs; forwarded {', '.join(forwarded)}", err=True)
    kwargs = {key: chosen[flag][1] for flag, key in accepted.items()}
    if "generator" in signature.names or signature.open:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    return kwargs


def _check_required(name: str, signature: CallSignature, prompt: str | None) -> None:
    if "prompt" in signature.required and prompt is None:
        raise click.UsageError(f"{name} needs a prompt: pass --prompt TEXT")
    missing = [p for p in signature.required if p != "prompt"]
    if missing:
        raise click.UsageError(
            f"{name}.__call__ needs {', '.join(missing)}, which `pipeyard run` cannot supply "
            f"(it passes --prompt, --steps, --num-images and a seeded generator); call the pipeline "
            f"from Python instead (`pipeyard info NAME` shows how)"
        )


# --------------------------------------------------------------------------- --device


def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu``, then each CUDA device, then ``mps``."""
    import torch

    devices = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(name: str) -> str:
    """Return ``name`` when it is a torch device this machine has.

    Raises:
        DeviceError: torch does not know the name, or the machine lacks the device.
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise errors.DeviceError(name, "is not a torch device name", available_devices()) from None
    if not _device_present(device):
        raise errors.DeviceError(name, "is not present on this machine", available_devices())
    return name


def _device_present(device: Any) -> bool:
    import torch

    if device.type == "cpu":
        return device.index in (None, 0)
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available() and device.index in (None, 0)
    backend = getattr(torch, device.type, None)  # cuda, xpu, ...: modules with is_available()
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        return False
    return device.index is None or device.index < backend.device_count()


# --------------------------------------------------------------------------- --out


def image_format(path: Path) -> str:
    """The Pillow format ``path``'s suffix asks for; its folder must exist already.

    Raises:
        click.BadParameter: an unknown suffix or a missing folder (exit 2).
    """
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise click.BadParameter(
            f"{str(path)!r} has no image suffix pipeyard writes; end it in {', '.join(IMAGE_FORMATS)}",
            param_hint="--out",
        )
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(
            f"folder {str(folder)!r} of {str(path)!r} does not exist; create it first (mkdir -p {folder})",
            param_hint="--out",
        )
    return fmt
