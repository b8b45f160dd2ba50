"""BaseOutput: the dataclass base of every model, scheduler and pipeline output.

Outputs are read by attribute (``out.sample``), by key (``out["sample"]``) or by position
(``out[0]``, counting only fields that are set), and ``to_tuple()`` gives what
``return_dict=False`` returns. Subclasses are ordinary ``@dataclass`` classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class BaseOutput:
    """Mixin for ``@dataclass`` outputs: attribute, key and index access; ``to_tuple()``."""

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are not None, in declaration order."""
        return tuple(
            getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        )

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Any:
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.to_tuple())
