"""A job from start to end on the driver: check the items, decide what is done, run, record.

1. every item is checked against the pipeline class the driver loaded (its ``__call__``
   keywords, the scheduler names) before any image is made;
2. each item gets its hash: the sha256 of everything that determines its image (the item's
   seed, scheduler and keywords; the pipeline's sha256, or the built-in class; the model
   revision; dtype; device type). Not the worker, the engine or the batch size;
3. the manifest decides: an id finished with the same hash is skipped, an id finished with
   another hash is an :class:`~pipeyard.errors.ItemConflictError` (a finished image is never
   rewritten), anything else is made;
4. the engine streams results back; each image is written (atomically), then its row appended.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import errors
from .images import png_bytes, sha256
from .items import Item, canonical_json
from .output import OutputFolder, timestamp
from .pinning import PinnedJob
from .progress import GenerateSummary, progress_bar

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineOptions:
    """How the images are made (none of it changes an image).

    Attributes:
        engine: ``local`` (this process, no Ray) or ``ray``.
        address: the Ray cluster (``auto``, ``ray://host:10001``); None starts a local one.
        workers: Ray actors, each loading the pipeline once (the local engine has one).
        cpus_per_worker, gpus_per_worker: resources of each actor.
        batch_size: items handed to a worker at a time (each still runs alone).
        threads: torch threads per worker; None: ``cpus_per_worker`` on Ray, torch's
            default locally.
        retries: how many times an item whose worker died is run again (Ray); past that it
            is reported failed instead of killing more workers.
    """

    engine: str = "local"
    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int = 4
    threads: int | None = None
    retries: int = 3

    def check(self) -> None:
        """Raises JobSpecError on an option no engine can honour."""
        if self.engine not in ENGINES:
            raise errors.JobSpecError("engine", f"unknown engine {self.engine!r}", f"use one of {', '.join(ENGINES)}")
        for name in ("workers", "batch_size"):
            if getattr(self, name) < 1:
                raise errors.JobSpecError(name, f"must be at least 1, got {getattr(self, name)}", f"set {name} >= 1")
        if self.engine == "local" and self.workers != 1:
            raise errors.JobSpecError("workers", f"the local engine runs one worker, got {self.workers}",
                                      'use engine="ray" for several workers')
        if self.threads is not None and self.threads < 1:
            raise errors.JobSpecError("threads", f"must be at least 1, got {self.threads}", "or leave it unset")
        if self.retries < 0 or self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise errors.JobSpecError("retries, cpus_per_worker, gpus_per_worker", "must not be negative",
                                      "use 0 or more")


#: An engine: (pinned job, requests, accept one batch of results, options) -> items retried.
Engine = Callable[[PinnedJob, list[dict[str, str]], Callable[[Mapping[str, Any]], None], EngineOptions], int]


def run_job(
    pinned: PinnedJob, pipeline_cls: type, items: Sequence[Item], out: str, options: EngineOptions, progress: bool,
) -> GenerateSummary:
    """Run ``items`` into the folder ``out``; see the module docstring."""
    start = time.perf_counter()
    output_type = check_items(pipeline_cls, items)
    summary = GenerateSummary(total=len(items), output=str(out), engine=options.engine)
    folder = OutputFolder(out)
    with folder.opened():
        todo = plan(items, folder, pinned)
        summary.skipped = len(items) - len(todo)
        requests = [_request(item, digest, output_type) for item, digest in todo]
        with progress_bar(len(requests), progress) as bar:
            sink = _Sink(folder, pinned, {item.id: item for item, _ in todo}, summary, bar)
            summary.retried = _engine(options.engine)(pinned, requests, sink.accept, options) if requests else 0
    summary.seconds = time.perf_counter() - start
    return summary


def _engine(name: str) -> Engine:
    if name == "ray":
        from .ray_engine import run_ray

        return run_ray
    from .local import run_local

    return run_local


# --------------------------------------------------------------------------- checks and plan


def check_items(pipeline_cls: type, items: Sequence[Item]) -> str | None:
    """Check every item against ``pipeline_cls.__call__``; the ``output_type`` to ask for.

    Raises:
        JobSpecError: a keyword the pipeline does not take, or a pipeline with no ``generator``.
        UnknownSchedulerError: a scheduler pipeyard does not have.
    """
    from ..names import SCHEDULERS, STANDALONE_SCHEDULERS

    params = inspect.signature(pipeline_cls.__call__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "generator" not in params and not takes_any:
        raise errors.JobSpecError(
            pipeline_cls.__name__, "its __call__ takes no generator, so a seed cannot make its images reproducible",
            "use a pipeline whose __call__ takes generator=",
        )
    known = [name for name in params if name not in ("self", "generator")]
    for item in items:
        if item.scheduler is not None and item.scheduler not in {**SCHEDULERS, **STANDALONE_SCHEDULERS}:
            raise errors.UnknownSchedulerError(item.scheduler, [*SCHEDULERS, *STANDALONE_SCHEDULERS])
        unknown = sorted(set(item.keywords) - set(params))
        if unknown and not takes_any:
            raise errors.JobSpecError(item.where, f"{pipeline_cls.__name__}.__call__ takes no {', '.join(unknown)}",
                                      f"its keywords: {', '.join(known)}")
    return "np" if "output_type" in params else None


def item_hash(item: Item, pinned: PinnedJob) -> str:
    """The sha256 of everything that determines the item's image (see the module docstring)."""
    return hashlib.sha256(canonical_json(_determinants(item, pinned)).encode()).hexdigest()


def _determinants(item: Item, pinned: PinnedJob) -> dict[str, Any]:
    return {"request": item.content(), "pipeline": pinned.pipeline_key(), "model": pinned.model.revision,
            "dtype": pinned.torch_dtype, "device": device_type(pinned.device)}


def device_type(device: str | None) -> str:
    """``cpu``, ``cuda``, ``mps``...: the device index does not change an image."""
    return str(device or "cpu").split(":")[0]


def plan(items: Sequence[Item], folder: OutputFolder, pinned: PinnedJob) -> list[tuple[Item, str]]:
    """The items to make, with their hashes; finished ones (same id and hash) are left out.

    Raises:
        ItemConflictError: an id finished with another hash.
    """
    todo = []
    for item in items:
        digest = item_hash(item, pinned)
        row = folder.finished.get(item.id)
        if row is None:
            todo.append((item, digest))
        elif row["hash"] != digest:
            raise errors.ItemConflictError(item.id, str(folder.manifest), _changes(row, item, pinned))
    return todo


def _changes(row: Mapping[str, Any], item: Item, pinned: PinnedJob) -> str:
    """Which determinants differ from the finished row (for the conflict message)."""
    before = row.get("determinants") or {}
    now = _determinants(item, pinned)
    changed = [name for name in now if name != "request" and before.get(name) != now[name]]
    asked, asked_now = before.get("request") or {}, now["request"]
    changed[:0] = [name for name in asked_now if asked.get(name) != asked_now[name]]
    return "changed: " + (", ".join(changed) if changed else "the hash")


def _request(item: Item, digest: str, output_type: str | None) -> dict[str, str]:
    request = {**item.content(), "output_type": output_type}
    return {"id": item.id, "hash": digest, "request": canonical_json(request)}


# --------------------------------------------------------------------------- results


class _Sink:
    """Writes each result batch: images first, then their manifest rows in one append."""

    def __init__(self, folder: OutputFolder, pinned: PinnedJob, items: Mapping[str, Item],
                 summary: GenerateSummary, bar: Any) -> None:
        self.folder, self.pinned, self.items, self.summary, self.bar = folder, pinned, items, summary, bar

    def accept(self, batch: Mapping[str, Any]) -> None:
        rows = []
        for index, item_id in enumerate(batch["id"]):
            item_id = str(item_id)
            if item_id in self.folder.finished:  # delivered twice: keep the first, never rewrite
                continue
            error = str(batch["error"][index])
            if error:
                self.summary.failed[item_id] = error
            else:
                self.summary.failed.pop(item_id, None)
                rows.append(self._write(item_id, batch, index))
        if rows:
            self.folder.append_rows(rows)
        self.summary.done += len(rows)
        self.bar.update(len(batch["id"]))

    def _write(self, item_id: str, batch: Mapping[str, Any], index: int) -> dict[str, Any]:
        image = np.asarray(batch["image"][index], dtype=np.uint8)
        data = png_bytes(image)
        item = self.items[item_id]
        code = self.pinned.code
        return {
            "id": item_id, "hash": str(batch["hash"][index]), "file": self.folder.write_image(item_id, data),
            "bytes": len(data), "image_sha256": sha256(data), "height": int(image.shape[0]),
            "width": int(image.shape[1]), "prompt": item.keywords.get("prompt"), "seed": item.seed,
            "scheduler": _json(batch["scheduler"][index]),
            "pipeline": code.record() if code is not None else {"class": self.pinned.builtin_class, "sha256": None},
            "model": {"location": self.pinned.model.location, "revision": self.pinned.model.revision},
            "determinants": _determinants(item, self.pinned), "worker": str(batch["worker"][index]),
            "seconds": round(float(batch["seconds"][index]), 4), "finished_at": timestamp(),
        }


def _json(text: Any) -> Any:
    import json

    return json.loads(str(text))
