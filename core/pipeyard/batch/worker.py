"""The worker: loads the pinned pipeline once, then turns batches of requests into images.

:class:`GenerateWorker` is the callable class both engines run: the local engine calls it in
its own process, the Ray engine hands it to ``map_batches`` (one instance per actor of the
pool). A batch is a mapping of columns (``id``, ``hash``, ``request``: the item as canonical
JSON); the answer adds ``image`` (``uint8`` arrays), ``error``, ``seconds``, ``worker`` and
``scheduler``.

Each item runs alone, with a fresh scheduler built from the pipeline's config and its own CPU
``torch.Generator`` seeded with the item's seed: its image depends on nothing else (not the
worker, not the batch, not the items before it). A failing item is reported with its error;
it does not stop the batch or kill the worker.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .images import to_uint8
from .pinning import PinnedJob, load_pinned_pipeline

#: An empty image, the placeholder of a failed item (same rank as a real one).
NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


class GenerateWorker:
    """Load the pinned pipeline once; ``worker(batch)`` makes the batch's images.

    Args:
        job: what the driver pinned (code bytes, model revision, dtype, device).
        threads: torch intra-op threads of this worker (None: leave torch's setting). Ray
            sets ``OMP_NUM_THREADS`` to the worker's CPUs; setting torch's count here makes
            the choice explicit whatever the launcher did.
    """

    def __init__(self, job: PinnedJob, threads: int | None = None) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.pipe = load_pinned_pipeline(job)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        scheduler = getattr(self.pipe, "scheduler", None)
        self.scheduler_config = dict(scheduler.config) if scheduler is not None else None
        self.scheduler_class = type(scheduler).__name__ if scheduler is not None else None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        results = [self.refused(str(item_id)) or self.run_item(json.loads(str(request)))
                   for item_id, request in zip(batch["id"], batch["request"])]
        images = [image for image, _, _, _ in results]
        return {
            "id": np.asarray([str(i) for i in batch["id"]]),
            "hash": np.asarray([str(h) for h in batch["hash"]]),
            "image": _image_column(images),
            "error": np.asarray([error for _, error, _, _ in results]),
            "seconds": np.asarray([seconds for _, _, seconds, _ in results], dtype=np.float64),
            "scheduler": np.asarray([scheduler for _, _, _, scheduler in results]),
            "worker": np.asarray([self.name] * len(results)),
        }

    def refused(self, item_id: str) -> tuple[np.ndarray, str, float, str] | None:
        """A failed result for an item this worker must not run, else None (it runs)."""
        return None

    def run_item(self, request: Mapping[str, Any]) -> tuple[np.ndarray, str, float, str]:
        """One image: ``(image, error or "", seconds, scheduler record as JSON)``."""
        start = time.perf_counter()
        try:
            scheduler = self._fresh_scheduler(request.get("scheduler"))
            image = to_uint8(self.pipe(**self._call_keywords(request)))
        except Exception as exc:  # reported per item; the batch and the worker go on
            return NO_IMAGE, f"{type(exc).__name__}: {exc}", time.perf_counter() - start, "null"
        return image, "", time.perf_counter() - start, scheduler

    def _fresh_scheduler(self, name: str | None) -> str:
        """Give the pipeline a new scheduler (the item's class, or the pipeline's own)."""
        if self.scheduler_config is None:
            return "null"
        import pipeyard

        cls = getattr(pipeyard, name) if name else type(self.pipe.scheduler)
        self.pipe.scheduler = cls.from_config(self.scheduler_config)
        record = {"class": cls.__name__, "config": dict(self.pipe.scheduler.config)}
        return json.dumps(record, sort_keys=True, default=str)

    def _call_keywords(self, request: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        keywords = dict(request["keywords"])
        keywords["generator"] = torch.Generator().manual_seed(int(request["seed"]))
        if request.get("output_type"):
            keywords["output_type"] = request["output_type"]
        return keywords


def _image_column(images: list[np.ndarray]) -> np.ndarray:
    """One array when every image has the same shape, else an object array of arrays."""
    if len({image.shape for image in images}) == 1:
        return np.stack(images)
    column = np.empty(len(images), dtype=object)
    for index, image in enumerate(images):  # item by item: numpy would broadcast a list
        column[index] = image
    return column
