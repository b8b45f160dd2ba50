"""Reading weight files from a stranger: safetensors checked first, pickle only on request.

A weights file comes from a repository, so it is checked before a library reads it:

* **safetensors** — :func:`check_safetensors_file` reads the 8-byte little-endian header
  length, bounds it (:data:`MAX_SAFETENSORS_HEADER_BYTES`, and the file's size), parses the
  header with the limits of :mod:`pipeyard.fileio` and checks every tensor: a known dtype, a
  shape of non-negative integers, ``data_offsets`` inside the file and exactly
  ``dtype size x number of elements`` bytes long. Whatever safetensors still raises is
  translated too. A file that fails is a :class:`~pipeyard.errors.CorruptWeightsError` naming
  the file, what is wrong and what to delete.
* **pickle** (``.bin``, ``torch.save``) — unpickling can run code, so
  :class:`~pipeyard.modeling.ModelMixin` refuses these unless the caller passes
  ``allow_pickle=True``; even then they are read with ``torch.load(weights_only=True)`` only,
  and a file it refuses is an error that never suggests turning that off.
* **shard indexes** — ``weight_map`` values must be file names of the index's own folder and
  format: ``../x`` or ``/etc/x`` is refused before anything is fetched.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from . import errors, fileio

#: The largest safetensors header read (16 MiB: about 150,000 tensors; a Stable Diffusion
#: UNet's header is about 200 KiB). safetensors itself stops at 100 MB.
MAX_SAFETENSORS_HEADER_BYTES = 16 * 2**20

#: Bits per element of each dtype the safetensors format defines.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

_FIX_INDEX = (
    "A download cannot repair this: the repository's index is malformed or hostile. Do not use "
    "its weights; tell the repository's owner"
)
_FIX_PICKLE_CONTENT = (
    "Nothing of it was run. If you trust its origin, convert it to safetensors in an environment "
    "you trust; otherwise do not use it"
)


# --------------------------------------------------------------------------- safetensors


def check_safetensors_file(path: Path) -> None:
    """Check ``path``'s header against the file before safetensors opens it.

    Raises:
        CorruptWeightsError: empty or truncated file, header length out of bounds, header not
            a JSON object, a tensor record that is malformed, outside the file or of the
            wrong byte size.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 8:
            raise _corrupt(path, "it is empty" if size == 0 else f"it is {size} bytes, shorter than "
                           "the 8-byte header length a safetensors file starts with")
        (header_length,) = struct.unpack("<Q", handle.read(8))
        if header_length > size - 8:
            raise _corrupt(path, f"its header claims {header_length:,} bytes but only {size - 8:,} "
                           f"follow (the file is truncated, or not a safetensors file)")
        if header_length > MAX_SAFETENSORS_HEADER_BYTES:
            raise _corrupt(path, f"its header is {header_length:,} bytes, more than the "
                           f"{MAX_SAFETENSORS_HEADER_BYTES:,} pipeyard reads")
        raw = handle.read(header_length)
    try:
        header = fileio.parse_json_object(raw, path)
    except errors.ConfigFileError as exc:
        raise _corrupt(path, f"its JSON header is not valid: {exc.reason}") from None
    data_size = size - 8 - header_length
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _corrupt(path, "its __metadata__ is not a mapping of strings to strings")
            continue
        _check_tensor_entry(path, name, entry, data_size)


def _check_tensor_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    """One header record: ``{"dtype": ..., "shape": [...], "data_offsets": [begin, end]}``."""
    label = f"tensor {errors.clip(name)!r}"
    if not isinstance(entry, dict):
        raise _corrupt(path, f"{label} has no dtype / shape / data_offsets record")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS:
        raise _corrupt(path, f"{label} has dtype {errors.clip(repr(dtype))}, which safetensors does not define")
    if not _non_negative_ints(shape):
        raise _corrupt(path, f"{label} has shape {errors.clip(shape)}, not a list of non-negative integers")
    if not _non_negative_ints(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise _corrupt(path, f"{label} has data_offsets {errors.clip(offsets)}, not [begin, end] byte positions")
    begin, end = offsets
    if end > data_size:
        raise _corrupt(path, f"{label} lies at bytes {begin:,}-{end:,} of the data, but the file holds "
                       f"{data_size:,} bytes of data (it is truncated)")
    expected_bits = _element_count(shape, limit=data_size * 8) * SAFETENSORS_DTYPE_BITS[dtype]
    if expected_bits != (end - begin) * 8:
        raise _corrupt(path, f"{label} is {dtype} of shape {errors.clip(tuple(shape))}, which takes "
                       f"{_bytes_text(expected_bits)}, but its data span is {end - begin:,} bytes")


def _non_negative_ints(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def _element_count(shape: list[int], limit: int) -> int:
    """The product of ``shape``, stopped once above ``limit`` (a hostile shape stays cheap)."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > limit:
            break
    return count


def _bytes_text(bits: int) -> str:
    return f"{bits // 8:,} bytes" if bits % 8 == 0 else f"{bits / 8:,} bytes"


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with _safetensors_errors(path), safe_open(os.fspath(path), framework="pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


@contextlib.contextmanager
def _safetensors_errors(path: Path) -> Iterator[None]:
    """What safetensors raises past :func:`check_safetensors_file`, as CorruptWeightsError."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as exc:
        raise _corrupt(path, f"safetensors cannot read it ({errors.clip(_first_line(exc))})") from None


# --------------------------------------------------------------------------- pickle


def _torch_load(path: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    """A pickle checkpoint, read with ``weights_only=True``: tensors and plain containers only.

    Files in torch's zip format are memory-mapped; the legacy format cannot be and is read whole.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise _corrupt(path, _pickle_refusal(exc), _FIX_PICKLE_CONTENT) from None
    except (OSError, MemoryError):
        raise  # the file cannot be opened, or the machine is out of memory: not the file's fault
    except Exception as exc:  # on arbitrary bytes the unpickler fails in many ways (KeyError, EOFError, ...)
        raise _corrupt(path, f"torch.load cannot read it ({_torch_reason(exc)})") from None
    flat = isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    if not flat:
        raise _corrupt(path, f"it holds a {type(state).__name__}, not a flat mapping of tensor names to tensors")
    return state


def _pickle_refusal(exc: BaseException) -> str:
    """Why ``weights_only`` loading refused the file, without torch's advice to turn it off."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return (f"it names the Python object {errors.clip(found.group(1))}, which is not a tensor; "
                f"torch.load(weights_only=True) refused it")
    return f"it is not a pickle of tensors ({_torch_reason(exc)})"


def _torch_reason(exc: BaseException) -> str:
    """``Type: first line`` of a torch.load failure, or the type alone where torch gives advice."""
    line = _first_line(exc)
    if "weights_only" in line or not line:
        return type(exc).__name__
    return f"{type(exc).__name__}: {errors.clip(line)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# --------------------------------------------------------------------------- reading tensors


def read_checkpoint_shapes(path: Path, fmt: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of one checkpoint file; safetensors data is not read.

    Raises:
        CorruptWeightsError: the file fails the checks of this module.
    """
    if fmt == "safetensors":
        check_safetensors_file(path)
        return _safetensors_shapes(path)
    return {key: tuple(t.shape) for key, t in _torch_load(path, "cpu").items()}


def load_checkpoint_file(
    path: Path,
    fmt: str,
    device: torch.device,
    dtype: torch.dtype | None,
    rename: Mapping[str, str],
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(model key, tensor)`` one tensor at a time, already on ``device`` and in ``dtype``.

    Tensors are converted one by one so that peak memory stays near one copy of the weights.
    The file was checked by :func:`read_checkpoint_shapes` first.
    """
    if fmt == "safetensors":
        from safetensors import safe_open

        with _safetensors_errors(path), safe_open(os.fspath(path), framework="pt", device=str(device)) as handle:
            for key in handle.keys():
                yield rename.get(key, key), _cast(handle.get_tensor(key), dtype)
        return
    for key, tensor in _torch_load(path, device).items():
        yield rename.get(key, key), _cast(tensor, dtype)


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor


# --------------------------------------------------------------------------- shard indexes


def shards_from_index(index_path: Path, fmt: str) -> list[str]:
    """The shard file names an index's ``weight_map`` lists, each checked to lie beside it.

    Raises:
        ConfigFileError: the index is not a JSON object with a non-empty ``weight_map`` object.
        CorruptWeightsError: a shard that is not a ``.<fmt>`` file name of the index's folder.
    """
    data = fileio.read_json_file(index_path)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise errors.ConfigFileError(index_path, "no 'weight_map' object mapping tensor names to shard files")
    shard_name = re.compile(rf"\w[\w.+-]*\.{fmt}")
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard_name.fullmatch(shard):
            raise errors.CorruptWeightsError(
                index_path,
                f"its weight_map puts {errors.clip(key)!r} in {errors.clip(repr(shard))}, which is not the "
                f"name of a .{fmt} file beside the index (a path such as '../x' or '/x' is refused)",
                _FIX_INDEX,
            )
    return sorted(set(weight_map.values()))


# --------------------------------------------------------------------------- errors


def _corrupt(path: Path, reason: str, fix: str | None = None) -> errors.CorruptWeightsError:
    return errors.CorruptWeightsError(path, reason, fix or replacement_advice(path))


def replacement_advice(path: Path) -> str:
    """What to delete so that a damaged weights file is fetched again."""
    parts = Path(path).parts
    for depth in range(len(parts) - 2, 0, -1):
        name = parts[depth]
        if name.startswith(("models--", "datasets--", "spaces--")) and parts[depth + 1] == "snapshots":
            folder = Path(*parts[: depth + 1])
            return (
                f"It lies in the Hugging Face cache: delete the folder {folder} (this repository's "
                f"cached files) and load again to download it anew"
            )
    return "Replace it with an intact copy: download or save it again"
