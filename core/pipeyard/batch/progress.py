"""What the driver shows: a progress bar while the job runs, a summary when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerateSummary:
    """How a job went.

    Attributes:
        total: items in the job.
        done: images made by this run.
        skipped: items finished by an earlier run (same id and hash), left untouched.
        retried: items a worker started more than once (a worker died and Ray retried them).
        failed: item id -> the error; not in the manifest, so the next run tries them again.
        seconds: wall time of the run: pinning, loading the workers and making the images.
        output: the output folder.
        engine: ``local`` or ``ray``.
    """

    total: int = 0
    done: int = 0
    skipped: int = 0
    retried: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""
    engine: str = ""

    @property
    def complete(self) -> bool:
        """True when every item of the job is finished."""
        return self.done + self.skipped == self.total

    def lines(self, limit: int = 10) -> list[str]:
        """A few lines for people: the counts, then up to ``limit`` failures with reasons."""
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.engine} engine: {self.done} done, {self.skipped} skipped, {self.retried} retried, "
            f"{len(self.failed)} failed of {self.total} items in {self.seconds:.1f} s ({rate:.2f} images/s)",
            f"output: {self.output}",
        ]
        for item_id, reason in list(self.failed.items())[:limit]:
            lines.append(f"  failed {item_id}: {reason}")
        if len(self.failed) > limit:
            lines.append(f"  ... and {len(self.failed) - limit} more (GenerateSummary.failed)")
        return lines


def progress_bar(total: int, enabled: bool) -> Any:
    """A tqdm bar counting images, with items/s and ETA (tqdm's own), on stderr."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="generate", disable=not enabled, dynamic_ncols=True)
