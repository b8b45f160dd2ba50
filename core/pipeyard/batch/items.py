"""The items of a job: one image each, read from a JSONL file or expanded from a grid.

An item is a seed, an optional scheduler class name and the keywords passed to the pipeline's
``__call__``. The JSONL row keys are the pipeline's own keyword names, plus four shorthands
(``steps`` -> ``num_inference_steps``, ``guidance`` -> ``guidance_scale``, ``size`` ->
``height`` and ``width``) and three keys of the job itself::

    {"id": "cat-1", "prompt": "a cat", "negative_prompt": "blurry", "seed": 1, "steps": 25,
     "guidance": 7.5, "size": [512, 512], "scheduler": "EulerDiscreteScheduler", "eta": 0.3}

* ``seed`` (required): the item's own ``torch.Generator`` is seeded with it, so the image does
  not depend on the worker or on the other items of a batch;
* ``scheduler``: a pipeyard scheduler class, built from the pipeline's scheduler config;
* ``id``: names the image file (``images/<id>.png``); without it the id is taken from the
  row's content (``item-<16 hex digits>``), so reordering the file changes nothing.

Keywords that would change how many images a call makes or where they go (``generator``,
``output_type``, ``return_dict``, ``batch_size``, ``num_images_per_prompt``) belong to the
engine and are refused in a row.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors

#: Row keys renamed to the pipeline keyword they stand for.
SHORTHANDS = {"steps": "num_inference_steps", "guidance": "guidance_scale"}
#: Keywords the engine sets itself (one image per call, its own generator and output type).
ENGINE_KEYWORDS = frozenset({"generator", "output_type", "return_dict", "batch_size", "num_images_per_prompt"})
#: An id names a file: letters, digits, ``.``, ``_``, ``-``; not starting with a dot.
_ITEM_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
#: The largest seed ``torch.Generator.manual_seed`` takes without wrapping.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Item:
    """One image to make.

    Attributes:
        id: names the image file and the manifest row.
        seed: seeds the item's own generator.
        scheduler: a pipeyard scheduler class name, or None for the pipeline's own.
        keywords: the pipeline ``__call__`` keywords (canonical names, JSON values).
        where: where the item came from, for messages (``items.jsonl:3``, ``grid #4``).
    """

    id: str
    seed: int
    scheduler: str | None
    keywords: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""

    def content(self) -> dict[str, Any]:
        """What the caller asked for this image: seed, scheduler and keywords."""
        return {"seed": self.seed, "scheduler": self.scheduler, "keywords": dict(sorted(self.keywords.items()))}


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces): what hashes are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_id(content: Mapping[str, Any]) -> str:
    """``item-<16 hex>``: the id of an item that names none, from its content."""
    return "item-" + hashlib.sha256(canonical_json(content).encode()).hexdigest()[:16]


def make_item(row: Mapping[str, Any], where: str) -> Item:
    """Check one row (a parsed JSONL line or a grid cell) and build its :class:`Item`.

    Raises:
        JobSpecError: a missing or malformed seed, id, scheduler, size, or an engine keyword.
    """
    keywords = dict(row)
    item_id = keywords.pop("id", None)
    seed = _seed(keywords.pop("seed", None), where)
    scheduler = _scheduler_name(keywords.pop("scheduler", None), where)
    keywords = _canonical_keywords(keywords, where)
    item = Item("", seed, scheduler, keywords, where)
    item_id = _item_id(item_id, where) if item_id is not None else content_id(item.content())
    return Item(item_id, seed, scheduler, keywords, where)


def _seed(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise errors.JobSpecError(
            where, f"seed must be an integer from 0 to 2**63-1, got {errors.clip(repr(value))}",
            'give every item a "seed" (it makes the image reproducible on any worker)',
        )
    return value


def _scheduler_name(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.isidentifier()):
        return value
    raise errors.JobSpecError(where, f"scheduler must be a class name, got {errors.clip(repr(value))}",
                              'e.g. "scheduler": "EulerDiscreteScheduler"')


def _item_id(value: Any, where: str) -> str:
    if isinstance(value, str) and _ITEM_ID.match(value):
        return value
    raise errors.JobSpecError(
        where, f"id {errors.clip(repr(value))} cannot name a file",
        "use 1-128 letters, digits, '.', '_' or '-', not starting with '.'",
    )


def _canonical_keywords(keywords: dict[str, Any], where: str) -> dict[str, Any]:
    """Shorthands expanded; engine keywords refused."""
    engine = sorted(ENGINE_KEYWORDS & keywords.keys())
    if engine:
        raise errors.JobSpecError(
            where, f"{', '.join(engine)} {'is' if len(engine) == 1 else 'are'} set by the engine",
            "drop it: each item makes one image with its own seeded generator",
        )
    out: dict[str, Any] = {}
    for key, value in keywords.items():
        if key == "size":
            out.update(_size(value, where))
            continue
        name = SHORTHANDS.get(key, key)
        if name in out:
            raise errors.JobSpecError(where, f"{key!r} and {name!r} are the same keyword", f"keep only {name!r}")
        out[name] = value
    return out


def _size(value: Any, where: str) -> dict[str, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return {"height": value[0], "width": value[1]}
    raise errors.JobSpecError(where, f"size must be a positive integer or [height, width], got "
                              f"{errors.clip(repr(value))}", 'e.g. "size": 512 or "size": [512, 768]')


# --------------------------------------------------------------------------- sources of items


def read_items_file(path: str | os.PathLike[str]) -> list[Item]:
    """Every item of a JSONL file (one JSON object per line; blank lines skipped).

    Raises:
        JobSpecError: a line that is not a JSON object (file and line named), or a bad row.
        DuplicateItemError: two rows with the same id.
        FileNotFoundError: no such file.
    """
    name = os.fspath(path)
    items = []
    with open(name, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                items.append(make_item(_parse_row(line, f"{name}:{number}"), f"{name}:{number}"))
    return check_unique(items)


def _parse_row(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line, object_pairs_hook=_refuse_repeated_keys)
    except (json.JSONDecodeError, ValueError) as exc:
        raise errors.JobSpecError(where, f"not a JSON object ({exc})", "write one JSON object per line") from None
    if not isinstance(row, dict):
        raise errors.JobSpecError(where, f"a JSON {type(row).__name__}, not an object",
                                  'write one object per line, e.g. {"prompt": "a cat", "seed": 1}')
    return row


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise ValueError(f"key {key!r} is given twice")
        row[key] = value
    return row


def grid_items(
    *,
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    schedulers: Sequence[str | None] = (None,),
    keywords: Mapping[str, Any] | None = None,
) -> list[Item]:
    """Every combination prompts x seeds x schedulers, with ``keywords`` on each.

    ``prompts=None`` (or empty) makes items without a prompt (unconditional pipelines).

    Raises:
        JobSpecError: an empty seeds / schedulers list, or a bad value.
    """
    for option, values in (("seeds", seeds), ("schedulers", schedulers)):
        if not values:
            raise errors.JobSpecError(f"grid {option}", "is empty", f"give at least one of {option}")
    cells: Iterable[tuple[Any, ...]] = itertools.product(list(prompts or [None]), seeds, schedulers)
    items = []
    for number, (prompt, seed, scheduler) in enumerate(cells, start=1):
        row = {**(keywords or {}), "seed": seed, "scheduler": scheduler}
        if prompt is not None:
            row["prompt"] = prompt
        items.append(make_item(row, f"grid #{number}"))
    return check_unique(items)


def check_unique(items: list[Item]) -> list[Item]:
    """``items``, when no two share an id.

    Raises:
        DuplicateItemError: naming both places.
    """
    seen: dict[str, Item] = {}
    for item in items:
        first = seen.setdefault(item.id, item)
        if first is not item:
            raise errors.DuplicateItemError(item.id, first.where, item.where)
    return items
