"""The output folder: images, the manifest, the lock, and what resume counts as done.

Layout::

    <out>/
      images/<id>.png       one per finished item, written whole (temp file + os.replace)
      manifest.jsonl        one JSON object per finished item, appended after its image
      .generate.lock        held (filelock) by the one job writing here

Why JSONL and not Parquet: the manifest grows one row per finished image and must survive a
``kill -9`` at any instant. Appending a line is one ``write``; the worst a crash leaves is a
torn last line, which the next run drops (its image is simply made again). A Parquet file
cannot be appended to, so crash safety would need one part file per batch and a merge step.
JSONL reads with ``pandas.read_json(path, lines=True)`` or ``ray.data.read_json(path)``.

An item is finished when its row is in the manifest and its image is there with the size the
row records. The order of writes makes that safe: image first (atomic), then the row, flushed
and fsync-ed per batch. A crash between the two leaves an image without a row: the item is
made again and the file replaced by identical bytes, atomically. Nothing else is rewritten.

On opening, the manifest is read once: rows of items whose image is gone, and a torn last
line, are dropped by rewriting the manifest atomically; a damaged line anywhere else is a
:class:`~pipeyard.errors.ManifestError` (nothing is guessed). Temp files left by a killed
image write (``images/.<id>.png.*.tmp``) are removed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .. import errors
from ..fileio import write_bytes_atomic

MANIFEST_NAME = "manifest.jsonl"
IMAGES_DIR = "images"
LOCK_NAME = ".generate.lock"


class OutputFolder:
    """One job's output folder, opened under its lock (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.images = self.root / IMAGES_DIR
        self.manifest = self.root / MANIFEST_NAME
        self.finished: dict[str, dict[str, Any]] = {}
        self._handle: IO[str] | None = None

    @contextmanager
    def opened(self) -> Iterator[OutputFolder]:
        """Hold the folder's lock, load the finished rows, append to the manifest; then close.

        Raises:
            OutputBusyError: another job holds the lock.
            ManifestError: the manifest is damaged before its last line.
        """
        from filelock import FileLock, Timeout

        self.images.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise errors.OutputBusyError(str(self.root)) from None
        try:
            self._remove_stale_temp_files()
            self.finished = self._load_finished()
            with open(self.manifest, "a", encoding="utf-8") as self._handle:
                yield self
        finally:
            self._handle = None
            lock.release()

    # ------------------------------------------------------------------ reading

    def _load_finished(self) -> dict[str, dict[str, Any]]:
        rows, torn = read_manifest(self.manifest)
        kept = {row["id"]: row for row in rows if self._image_ok(row)}
        if torn or len(kept) != len(rows):
            lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in kept.values())
            write_bytes_atomic(self.manifest, lines.encode("utf-8"))
        return kept

    def _image_ok(self, row: Mapping[str, Any]) -> bool:
        if row.get("file") != f"{IMAGES_DIR}/{row['id']}.png":  # only the image the id names
            return False
        path = self.root / row["file"]
        try:
            return path.is_file() and path.stat().st_size == row.get("bytes")
        except OSError:
            return False

    def _remove_stale_temp_files(self) -> None:
        for leftover in self.images.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ writing

    def image_path(self, item_id: str) -> Path:
        return self.images / f"{item_id}.png"

    def write_image(self, item_id: str, data: bytes) -> str:
        """Write one image atomically; its path relative to the folder."""
        write_bytes_atomic(self.image_path(item_id), data)
        return f"{IMAGES_DIR}/{item_id}.png"

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append finished rows (their images are written already), flushed to disk."""
        assert self._handle is not None, "append_rows outside opened()"
        self._handle.write("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        for row in rows:
            self.finished[row["id"]] = row


def read_manifest(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The manifest's rows, and whether its last line was torn (and left out).

    Raises:
        ManifestError: a line other than the last is not a JSON object with an ``id``, or an
            id repeats.
    """
    if not path.is_file():
        return [], False
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    torn = lines[-1] != ""  # a complete file ends with a newline
    rows, seen = [], set()
    for number, line in enumerate(lines[:-1], start=1):
        row = _parse_line(line, path, number)
        if row["id"] in seen:
            raise errors.ManifestError(str(path), number, f"item {row['id']!r} appears twice")
        seen.add(row["id"])
        rows.append(row)
    return rows, torn


def _parse_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise errors.ManifestError(str(path), number, f"not JSON ({exc.msg})") from None
    if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("hash"), str):
        raise errors.ManifestError(str(path), number, "not a manifest row (an object with 'id' and 'hash')")
    return row


def timestamp() -> str:
    """UTC, to the second (``2026-11-26T13:20:05Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
